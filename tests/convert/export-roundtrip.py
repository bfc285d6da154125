"""export-roundtrip.py: scp-export on small random models generated here (tests/importgen.py), for llama, qwen2,
qwen3 and qwen3_moe, tied and untied:
- the HF form keeps every tensor bit for bit (F32), or rounds exactly as PyTorch rounds to bfloat16 (--dtype bf16),
  and its config.json carries the diffusion keys (mask_token_id, is_causal false, shift_logits);
- the GGUF form holds the tensors llama.cpp's converter would write (importgen.hf_to_gguf's layout: names, ne,
  q/k permuted to interleaved pairs for the Llama layout, experts stacked), 1-D tensors in F32, matrices in
  F16 as numpy rounds them with --dtype f16; the architecture and metadata llama.cpp's diffusion runner reads;
- scp-import of either export gives back the very same tensors (round trip, bit-exact);
- errors: a damaged checkpoint, an existing output, usage."""
import atexit
import json
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import importgen as g  # noqa: E402
import numpy as np  # noqa: E402

for prog in ("scp-import", "scp-export"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")
try:
    import torch
except ImportError:
    torch = None

tmp = tmpdir()
atexit.register(shutil.rmtree, tmp, True)


def read_gguf(path):
    """A GGUF v3 reader written here from the format description: metadata dict and tensors name -> (type, ne, bytes)."""
    b = open(path, "rb").read()
    assert b[:4] == b"GGUF"
    ver, nt, nkv = struct.unpack_from("<IQQ", b, 4)
    off = 24

    def rstr():
        nonlocal off
        n = struct.unpack_from("<Q", b, off)[0]
        s = b[off + 8:off + 8 + n]
        off += 8 + n
        return s.decode()
    fmts = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rval(t):
        nonlocal off
        if t == 8:
            return rstr()
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, off)
            off += 12
            return [rval(et) for _ in range(n)]
        v = struct.unpack_from("<" + fmts[t], b, off)[0]
        off += struct.calcsize(fmts[t])
        return v
    meta = {}
    for _ in range(nkv):
        k = rstr()
        t = struct.unpack_from("<I", b, off)[0]
        off += 4
        meta[k] = rval(t)
    infos = []
    for _ in range(nt):
        name = rstr()
        nd = struct.unpack_from("<I", b, off)[0]
        off += 4
        ne = list(struct.unpack_from("<%dQ" % nd, b, off))
        off += 8 * nd
        ty, o = struct.unpack_from("<IQ", b, off)
        off += 12
        infos.append((name, ty, ne, o))
    align = meta.get("general.alignment", 32)
    data = off + (align - off % align) % align
    size = {0: 4, 1: 2, 30: 2}
    tensors = {}
    for name, ty, ne, o in infos:
        n = int(np.prod(ne)) * size[ty]
        tensors[name] = (ty, ne, b[data + o:data + o + n])
    return ver, meta, tensors


def st(path):
    return g.read_st(os.path.join(path, "model.safetensors"))


def exp(*args):
    r = run(["scp-export", "-q"] + [str(a) for a in args])
    if r.returncode != 0:
        diag("scp-export %s: exit %d: %s" % (" ".join(map(str, args)), r.returncode, r.stderr.decode()))
    return r.returncode == 0


def imp(src, out):
    r = run(["scp-import", "-q", src, "-o", out])
    if r.returncode != 0:
        diag("scp-import %s: %s" % (src, r.stderr.decode()))
    return r.returncode == 0


def bf16_bits(a):
    return torch.from_numpy(np.array(a, dtype=np.float32)).to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()


EXPECT_ARCH = {"llama": "llada", "qwen2": "dream", "qwen3": "qwen3", "qwen3_moe": "rnd1"}
CAUSAL_ARCH = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen3_moe": "qwen3moe"}

cases = [("llama", False), ("llama", True), ("qwen2", False), ("qwen3", True), ("qwen3_moe", False)]
for i, (arch, tied) in enumerate(cases):
    tag = "%s%s" % (arch, " tied" if tied else "")
    src, ck, dif = (os.path.join(tmp, "%s%d" % (n, i)) for n in ("src", "ck", "dif"))
    c = g.config(arch, tied=tied, vocab=40)
    g.make_hf(src, c, "F32", seed=i, n_tokens=37)
    if not ok(imp(src, ck), "%s: import the random model" % tag):
        continue
    ckt = st(ck)
    ckcfg = json.load(open(os.path.join(ck, "config.json")))
    mask = ckcfg["mask_token_id"]

    # HF, marked bidirectional: every tensor bit for bit, diffusion keys in config.json, tokenizer carried.
    ok(exp("--bidirectional", "-o", dif, ck), "%s: export HF --bidirectional" % tag)
    cfg = json.load(open(os.path.join(dif, "config.json")))
    ok(cfg.get("is_causal") is False and cfg.get("mask_token_id") == mask and cfg.get("shift_logits") is True
       and cfg["model_type"] == arch and cfg.get("torch_dtype") == "float32",
       "%s: HF config.json has is_causal false, mask_token_id %d, shift_logits" % (tag, mask))
    ok(st(dif) == ckt, "%s: HF tensors bit-exact" % tag)
    tj = json.load(open(os.path.join(dif, "tokenizer.json")))
    ok(any(a["content"] == "<|mask|>" and a["id"] == mask for a in tj["added_tokens"]), "%s: tokenizer.json carries <|mask|>" % tag)
    r1 = os.path.join(tmp, "r1_%d" % i)
    ok(imp(dif, r1) and st(r1) == ckt, "%s: scp-import of the HF export gives the same tensors" % tag)

    if torch is not None and i == 0:
        b16 = os.path.join(tmp, "bf16_%d" % i)
        exp("--dtype", "bf16", "-o", b16, ck)
        t16 = st(b16)
        good = all(t16[k][0] == "BF16" and t16[k][2] == bf16_bits(g.to_f32(ckt[k])) for k in ckt)
        ok(good and json.load(open(os.path.join(b16, "config.json")))["torch_dtype"] == "bfloat16",
           "%s: --dtype bf16 rounds every tensor as PyTorch does" % tag)

    # GGUF of the diffusion checkpoint.
    gg = os.path.join(tmp, "x%d.gguf" % i)
    ok(exp("--format", "gguf", "-o", gg, dif), "%s: export GGUF" % tag)
    ver, meta, gt = read_gguf(gg)
    a = meta.get("general.architecture")
    ok(ver == 3 and a == EXPECT_ARCH[arch], "%s: GGUF v3, architecture %s (got %s)" % (tag, EXPECT_ARCH[arch], a))
    ok(meta.get(a + ".attention.causal") is False and meta.get("diffusion.shift_logits") is True
       and meta.get("tokenizer.ggml.mask_token_id") == mask and meta.get(a + ".vocab_size") == c["vocab_size"] + 0
       and meta.get(a + ".block_count") == c["num_hidden_layers"] and meta.get(a + ".embedding_length") == c["hidden_size"]
       and meta.get("tokenizer.ggml.model") == "gpt2" and len(meta.get("tokenizer.ggml.tokens", [])) == cfg["vocab_size"]
       and meta["tokenizer.ggml.tokens"][mask] == "<|mask|>",
       "%s: metadata: attention.causal false, diffusion.shift_logits true, mask_token_id, sizes, vocabulary" % tag)
    # The tensors llama.cpp's converter would write for the same HF model (importgen.hf_to_gguf, F32).
    ref = os.path.join(tmp, "ref%d.gguf" % i)
    c2 = dict(cfg)
    g.hf_to_gguf(ref, c2, ckt)
    _, _, rt = read_gguf(ref)
    same = sorted(rt) == sorted(gt) and all(rt[k][1] == gt[k][1] and rt[k][2] == gt[k][2] and gt[k][0] == 0 for k in rt)
    if not same:
        diag("names: %s" % sorted(set(rt) ^ set(gt)))
        diag("differ: %s" % [k for k in rt if k in gt and rt[k][1:] != gt[k][1:]][:5])
    ok(same, "%s: GGUF tensors are the converter's (%d tensors, names, ne, bytes%s)" %
       (tag, len(gt), ", q/k permuted" if arch == "llama" else ""))
    r2 = os.path.join(tmp, "r2_%d" % i)
    ok(imp(gg, r2) and st(r2) == ckt, "%s: scp-import of the GGUF gives the same tensors" % tag)
    rc = json.load(open(os.path.join(r2, "config.json")))
    ok(rc.get("is_causal") is False and rc.get("mask_token_id") == mask and rc.get("shift_logits") is True,
       "%s: re-imported config keeps is_causal false, the mask id and the shift" % tag)

    if i == 0:
        # F16 matrices as numpy rounds them, 1-D tensors F32; --no-shift recorded.
        g16 = os.path.join(tmp, "h%d.gguf" % i)
        exp("--format", "gguf", "--dtype", "f16", "--no-shift", "-o", g16, dif)
        _, m16, t16 = read_gguf(g16)
        good = True
        for k, (ty, ne, by) in rt.items():
            a32 = np.frombuffer(by, "<f4")
            want = (1, a32.astype("<f2").tobytes()) if len(ne) >= 2 else (0, by)
            good &= (t16[k][0], t16[k][2]) == want
        ok(good and m16.get("general.file_type") == 1 and m16.get("diffusion.shift_logits") is False,
           "%s: --dtype f16: matrices rounded as numpy rounds, norms F32, shift_logits false" % tag)
        # The causal checkpoint keeps the plain architecture.
        gc = os.path.join(tmp, "c%d.gguf" % i)
        exp("-o", gc, ck)
        _, mc, _ = read_gguf(gc)
        ok(mc.get("general.architecture") == CAUSAL_ARCH[arch] and mc.get(CAUSAL_ARCH[arch] + ".attention.causal") is True,
           "%s: a causal checkpoint is exported as '%s' (format chosen from the .gguf name)" % (tag, CAUSAL_ARCH[arch]))

# ---- errors ---------------------------------------------------------------------------------------------------
ck = os.path.join(tmp, "ck0")
r = run(["scp-export", "-o", os.path.join(tmp, "dif0"), ck])
ok(r.returncode == 1 and b"already exists" in r.stderr, "an existing output is refused without --force")
ok(exp("--force", "-o", os.path.join(tmp, "dif0"), ck), "--force replaces it")
bad = os.path.join(tmp, "bad")
shutil.copytree(ck, bad)
t = st(ck)
del t["model.norm.weight"]
g.write_st(os.path.join(bad, "model.safetensors"), t)
r = run(["scp-export", "-o", os.path.join(tmp, "bad.gguf"), bad])
ok(r.returncode == 1 and b"model.norm.weight" in r.stderr and not os.path.exists(os.path.join(tmp, "bad.gguf")),
   "a checkpoint missing a tensor: exit 1 naming it, no output")
open(os.path.join(bad, "model.safetensors"), "wb").write(b"\x10\x00\x00")
r = run(["scp-export", "-o", os.path.join(tmp, "bad2"), bad])
ok(r.returncode == 1 and b"model.safetensors" in r.stderr, "a truncated model.safetensors: exit 1 naming the file")
# A tokenizer.json of another model type is refused naming the type. The type is 34 MB long, past glibc's largest
# mmap threshold, so that jansson keeps it in a mapping of its own, unmapped when the file is freed: a message made
# after that would fault.
shutil.rmtree(bad)
shutil.copytree(ck, bad)
tj = json.load(open(os.path.join(bad, "tokenizer.json")))
tj["model"]["type"] = "WordPiece" + "x" * (34 << 20)
json.dump(tj, open(os.path.join(bad, "tokenizer.json"), "w"))
r = run(["scp-export", "-o", os.path.join(tmp, "wp.gguf"), bad])
ok(r.returncode == 1 and b"only BPE tokenizers are exported to GGUF (model.type is 'WordPiecexxx" in r.stderr
   and not os.path.exists(os.path.join(tmp, "wp.gguf")), "a tokenizer.json of another model type: exit 1 naming the type")
for args, why in ((["-o", "x"], "no checkpoint"), ([ck], "no -o"), (["--format", "onnx", "-o", "x", ck], "unknown format"),
                  (["--dtype", "f16", "-o", os.path.join(tmp, "y"), ck], "f16 HF"), (["--arch", "dream", "-o", os.path.join(tmp, "z"), ck], "--arch with hf")):
    r = run(["scp-export"] + args)
    ok(r.returncode == 2, "usage error (%s) exits 2" % why)
r = run(["scp-export", "--arch", "dream", "-o", os.path.join(tmp, "w.gguf"), ck])
ok(r.returncode == 1 and b"dream" in r.stderr, "--arch dream for a llama checkpoint is refused (tensor layout)")
done()
