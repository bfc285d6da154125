"""import-hf.py: scp-import on small random models generated here (tests/importgen.py): HF directories for llama,
qwen2, qwen3, qwen3_moe, single-file and sharded, F32/F16/BF16, tied and untied; every tensor kept bit-exact (or
converted exactly as PyTorch converts for --dtype); config keys; the mask token padded / appended / explicit;
tokenizer files; --info; --force; re-import. Then GGUF and llama2.c files written from the same HF models (with
llama.cpp's q/k permutation for llama) must import to the very same tensors."""
import atexit
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done, run, tmpdir  # noqa: E402
import importgen as g  # noqa: E402
import numpy as np  # noqa: E402

tmp = tmpdir()
atexit.register(shutil.rmtree, tmp, True)
n_case = 0


def imp(src, *args, expect=0):
    global n_case
    n_case += 1
    out = os.path.join(tmp, "out%d" % n_case)
    r = run(["scp-import", src, "-o", out, "-q"] + list(args))
    if r.returncode != expect:
        diag("scp-import %s %s: exit %d: %s" % (src, " ".join(args), r.returncode, r.stderr.decode()))
    return out, r


def same_tensors(src, out, grown=None):
    """Every source tensor is in the output with the same dtype, shape and bytes; `grown` names tensors that got
    one more row (the mask), whose first rows must be the original bytes."""
    o = g.read_st(os.path.join(out, "model.safetensors"))
    if sorted(o) != sorted(src):
        diag("names differ: %s" % sorted(set(o) ^ set(src)))
        return False
    for k, (dt, shape, b) in src.items():
        od, osh, ob = o[k]
        if grown and k in grown:
            if od != dt or osh != (shape[0] + 1,) + tuple(shape[1:]) or ob[:len(b)] != b:
                diag("%s: grown tensor differs" % k)
                return False
        elif (od, osh, ob) != (dt, tuple(shape), b):
            diag("%s differs: %s %s vs %s %s" % (k, od, osh, dt, shape))
            return False
    return True


def mask_row_is_mean(out, name):
    o = g.read_st(os.path.join(out, "model.safetensors"))
    a = g.to_f32(o[name]).astype(np.float64)
    mean = a[:-1].mean(0)
    if o[name][0] == "F32":
        return np.allclose(a[-1], mean, rtol=0, atol=1e-6)
    return np.allclose(a[-1], mean, rtol=1e-2, atol=1e-2)   # rounded to bf16/f16


def tok_has_mask(out, mid):
    tj = json.load(open(os.path.join(out, "tokenizer.json")))
    tc = json.load(open(os.path.join(out, "tokenizer_config.json")))
    added = [a for a in tj["added_tokens"] if a["id"] == mid]
    return (len(added) == 1 and added[0]["content"] == "<|mask|>" and added[0]["special"] is True and
            tc["added_tokens_decoder"][str(mid)]["content"] == "<|mask|>" and tc["mask_token"] == "<|mask|>" and
            tc["added_tokens_decoder"][str(mid)]["special"] is True)


cases = [
    # arch, dtype, shards, tied, tokenizer ids (vocab 40: fewer = padded embedding)
    ("llama", "F32", 1, False, 40),
    ("llama", "BF16", 3, True, 40),
    ("qwen2", "BF16", 1, True, 37),
    ("qwen2", "F32", 2, False, 40),
    ("qwen3", "BF16", 1, True, 37),
    ("qwen3", "F16", 4, False, 40),
    ("qwen3_moe", "F32", 3, False, 38),
    ("qwen3_moe", "BF16", 1, True, 40),
]
for i, (arch, dt, shards, tied, ntok) in enumerate(cases):
    c = g.config(arch, tied=tied)
    d = os.path.join(tmp, "hf-%d" % i)
    src = g.make_hf(d, c, dt, shards=shards, seed=i, n_tokens=ntok)
    out, r = imp(d)
    what = "%s %s %s %s, tokenizer %d of 40 rows" % (arch, dt, "sharded x%d" % shards if shards > 1 else "single file",
                                                       "tied" if tied else "untied", ntok)
    if not ok(r.returncode == 0, "import " + what):
        continue
    padded = ntok < 40
    grown = None if padded else {"model.embed_tokens.weight"} | (set() if tied else {"lm_head.weight"})
    ok(same_tensors(src, out, grown), "%s: every tensor bit-exact%s" % (what, "" if padded else " (+ the mask row)"))
    oc = json.load(open(os.path.join(out, "config.json")))
    mid = ntok if padded else 40
    ok(oc["mask_token_id"] == mid and oc["vocab_size"] == (40 if padded else 41) and oc["is_causal"] is True and
       oc["shift_logits"] is True and oc["model_type"] == arch and oc["tie_word_embeddings"] == tied and
       oc["hidden_size"] == 16 and oc["num_key_value_heads"] == 2 and oc["bos_token_id"] == 1,
       "%s: config.json keys, mask_token_id %d (%s)" % (what, mid, "first padded row" if padded else "appended row"))
    if not padded:
        ok(mask_row_is_mean(out, "model.embed_tokens.weight") and (tied or mask_row_is_mean(out, "lm_head.weight")),
           "%s: appended rows are the mean of the existing rows" % what)
    ok(tok_has_mask(out, mid), "%s: <|mask|> added to tokenizer.json and tokenizer_config.json" % what)
    ok(open(os.path.join(out, "special_tokens_map.json")).read() == open(os.path.join(d, "special_tokens_map.json")).read(),
       "%s: special_tokens_map.json copied" % what)
    if arch == "qwen3_moe" and not tied:
        r = run(["scp-import", "--info", out])
        info = json.loads(r.stdout) if r.returncode == 0 else {}
        E, I, D, L = 4, 12, 16, 2
        ok(info.get("architecture") == "qwen3_moe" and info["parameters"]["experts"] == L * E * 3 * I * D and
           info["parameters"]["router"] == L * E * D and info["parameters"]["embeddings"] == 2 * 40 * D and
           info["mask_token_id"] == mid and info["head_dim"] == 8 and info["dtype"] == "F32" and info["tied"] is False,
           "--info on the imported qwen3_moe checkpoint: parameter groups, mask id, head_dim, dtype")

# --dtype: F32 -> BF16 rounds as PyTorch does; F16 -> F32 exactly.
c = g.config("qwen3")
d = os.path.join(tmp, "hf-f32")
src = g.make_hf(d, c, "F32", n_tokens=38)
out, r = imp(d, "--dtype", "bf16")
try:
    import torch
    o = g.read_st(os.path.join(out, "model.safetensors"))
    good = r.returncode == 0
    for k, (dt, shape, b) in src.items():
        ref = torch.from_numpy(np.frombuffer(b, "<f4").copy()).to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        good = good and o[k][0] == "BF16" and o[k][2] == ref
    ok(good, "--dtype bf16: every F32 tensor rounded to BF16 exactly as PyTorch rounds")
    ok(json.load(open(os.path.join(out, "config.json")))["torch_dtype"] == "bfloat16", "--dtype bf16: torch_dtype bfloat16")
except ImportError:
    ok(True, "# SKIP torch not available")
d = os.path.join(tmp, "hf-f16")
src = g.make_hf(d, g.config("llama"), "F16", n_tokens=38)
out, r = imp(d, "--dtype", "f32")
o = g.read_st(os.path.join(out, "model.safetensors")) if r.returncode == 0 else {}
ok(r.returncode == 0 and all(o[k][0] == "F32" and o[k][2] == np.frombuffer(b, "<f2").astype("<f4").tobytes()
                             for k, (dt, s, b) in src.items()), "--dtype f32: F16 widened exactly")

# Explicit mask ids.
d = os.path.join(tmp, "hf-explicit")
src = g.make_hf(d, g.config("qwen2"), "F32", n_tokens=36)
out, r = imp(d, "--mask-token", "39")
ok(r.returncode == 0 and json.load(open(os.path.join(out, "config.json")))["mask_token_id"] == 39 and
   same_tensors(src, out) and tok_has_mask(out, 39), "--mask-token 39: an explicit padded row, nothing grows")
out, r = imp(d, "--mask-token", "40")
ok(r.returncode == 0 and json.load(open(os.path.join(out, "config.json")))["vocab_size"] == 41 and
   same_tensors(src, out, {"model.embed_tokens.weight", "lm_head.weight"}), "--mask-token 40 (= vocab) appends a row")
out, r = imp(d, "--mask-token", "34", expect=1)
ok(r.returncode == 1 and b"<|endoftext|>" in r.stderr and not os.path.exists(out),
   "--mask-token on an existing special token is refused, naming it")
out, r = imp(d, "--mask-token", "5", expect=1)
ok(r.returncode == 1 and b"ordinary token" in r.stderr and not os.path.exists(out), "--mask-token on an ordinary token is refused")
out, r = imp(d, "--mask-token", "41", expect=1)
ok(r.returncode == 1 and b"41" in r.stderr and not os.path.exists(out), "--mask-token beyond vocab + 1 is refused")

# Re-importing a checkpoint keeps its mask token: nothing grows twice; the tokenizer is copied unchanged.
first, r = imp(d)
again, r2 = imp(first)
ok(r.returncode == 0 and r2.returncode == 0 and
   json.load(open(os.path.join(again, "config.json")))["mask_token_id"] == 36 and
   g.read_st(os.path.join(first, "model.safetensors")) == g.read_st(os.path.join(again, "model.safetensors")) and
   open(os.path.join(first, "tokenizer.json"), "rb").read() == open(os.path.join(again, "tokenizer.json"), "rb").read(),
   "re-importing an imported checkpoint is the identity (mask id kept, tokenizer.json unchanged)")

# --force and an existing DIR.
r = run(["scp-import", d, "-o", first, "-q"])
ok(r.returncode == 1 and b"already exists" in r.stderr, "an existing DIR is refused without --force")
r = run(["scp-import", d, "-o", first, "-q", "--force", "--dtype", "bf16"])
ok(r.returncode == 0 and g.read_st(os.path.join(first, "model.safetensors"))["model.norm.weight"][0] == "BF16" and
   not [n for n in os.listdir(tmp) if ".tmp-" in n or ".old-" in n], "--force replaces it, leaving no temporaries")

# --info on a source.
r = run(["scp-import", "--info", d])
info = json.loads(r.stdout) if r.returncode == 0 else {}
D, L, V, I, H, KV, hd = 16, 2, 40, 24, 4, 2, 4
attn = L * (H * hd * D * 2 + KV * hd * D * 2 + H * hd + 2 * KV * hd)
ok(info.get("architecture") == "qwen2" and info["parameters"]["attention"] == attn and
   info["parameters"]["mlp"] == L * 3 * I * D and info["parameters"]["norms"] == (2 * L + 1) * D and
   info["parameters"]["embeddings"] == 2 * V * D and info["vocab"] == 40 and info["tokenizer_vocab"] == 36 and
   info["mask_token_id"] is None and info["layers"] == 2 and info["heads"] == 4 and info["kv_heads"] == 2,
   "--info on an HF source: groups (attention with q/k/v biases), counts, no mask yet")

# GGUF written from HF models as llama.cpp would (llama: q/k permuted to interleaved pairs) -> same tensors.
for arch, tied in (("llama", False), ("llama", True), ("qwen2", False), ("qwen3", True), ("qwen3_moe", False)):
    c = g.config(arch, tied=tied)
    d = os.path.join(tmp, "gg-%s-%d" % (arch, tied))
    src = g.make_hf(d, c, "F32", seed=7, n_tokens=37)
    gg = os.path.join(tmp, "gg-%s-%d.gguf" % (arch, tied))
    g.hf_to_gguf(gg, c, src, n_tokens=37)
    a, r1 = imp(d)
    b, r2 = imp(gg)
    A = g.read_st(os.path.join(a, "model.safetensors")) if r1.returncode == 0 else {}
    B = g.read_st(os.path.join(b, "model.safetensors")) if r2.returncode == 0 else {1: 1}
    ok(r1.returncode == 0 and r2.returncode == 0 and A == B,
       "GGUF %s (%s) imports to the same tensors as its HF source%s" % (arch, "tied" if tied else "untied",
                                                                        " (q/k un-permuted)" if arch == "llama" else ""))
    if r2.returncode == 0:
        oc = json.load(open(os.path.join(b, "config.json")))
        ok(oc["model_type"] == arch and oc["mask_token_id"] == 37 and oc["vocab_size"] == 40 and
           oc.get("head_dim") == c.get("head_dim", 4) and oc["tie_word_embeddings"] == tied and
           os.path.getsize(os.path.join(b, "tokenizer.bin")) > 0, "GGUF %s: config from the metadata, tokenizer.bin" % arch)

# llama2.c legacy and version 1 written from an HF llama model -> same tensors as the HF import.
for tied in (False, True):
    c = g.config("llama", tied=tied, vocab=40)
    d = os.path.join(tmp, "l2c-%d" % tied)
    src = g.make_hf(d, c, "F32", seed=3)
    a, r1 = imp(d)
    A = g.read_st(os.path.join(a, "model.safetensors")) if r1.returncode == 0 else {}
    tok = os.path.join(tmp, "tok40.bin")
    g.llama2c_tokenizer(tok, 40)
    for v in (0, 1):
        p = os.path.join(tmp, "l2c-%d-v%d.bin" % (tied, v))
        g.hf_to_llama2c(p, c, src, version=v)
        b, r2 = imp(p, "--tokenizer", tok)
        B = g.read_st(os.path.join(b, "model.safetensors")) if r2.returncode == 0 else {1: 1}
        ok(r1.returncode == 0 and r2.returncode == 0 and A == B,
           "llama2.c v%d (%s) imports to the same tensors as its HF source" % (v, "tied" if tied else "untied"))
        if r2.returncode == 0:
            ok(open(os.path.join(b, "tokenizer.bin"), "rb").read() == open(tok, "rb").read(),
               "llama2.c v%d: tokenizer.bin carried byte for byte" % v)
# A checkpoint in the llama2.c tokenizer form imports again unchanged (tokenizer.bin found, mask id kept).
again, r = imp(b)
ok(r.returncode == 0 and g.read_st(os.path.join(again, "model.safetensors")) == B and
   open(os.path.join(again, "tokenizer.bin"), "rb").read() == open(tok, "rb").read() and
   json.load(open(os.path.join(again, "config.json")))["mask_token_id"] == 40 and
   json.load(open(os.path.join(again, "tokenizer_config.json"))) == json.load(open(os.path.join(b, "tokenizer_config.json"))),
   "re-importing a llama2.c-form checkpoint is the identity")
r = run(["scp-import", "--info", b])
ok(r.returncode == 0 and json.loads(r.stdout)["tokenizer"] == "tokenizer.bin" and json.loads(r.stdout)["tokenizer_vocab"] == 40,
   "--info on it: tokenizer.bin form, 40 tokens")
done()
