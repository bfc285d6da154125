"""import-malformed.py: a table of broken sources. Each must be refused with exit 1, a message that names the
file and the fault, and no output directory (nor a temporary one) left behind."""
import atexit
import json
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done, run, tmpdir  # noqa: E402
import importgen as g  # noqa: E402

tmp = tmpdir()
atexit.register(shutil.rmtree, tmp, True)
n = 0


def new_hf(arch="llama", shards=1, tied=False):
    global n
    n += 1
    d = os.path.join(tmp, "src%d" % n)
    c = g.config(arch, tied=tied)
    t = g.make_hf(d, c, "F32", shards=shards, seed=n)
    return d, c, t


def st_bytes(header, data):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def refused(desc, src, file_pat, fault_pat, *args):
    out = os.path.join(tmp, "out-%d" % refused.k)
    refused.k += 1
    r = run(["scp-import", src, "-o", out] + list(args))
    err = r.stderr.decode(errors="replace")
    left = [x for x in os.listdir(tmp) if x.startswith(os.path.basename(out))]
    good = r.returncode == 1 and file_pat in err and fault_pat in err and not left
    if not good:
        diag("exit %d, left %s, stderr: %s" % (r.returncode, left, err.strip()))
    else:
        diag(err.strip())
    ok(good, desc)


refused.k = 0

# ---- HF directories -----------------------------------------------------------------------------------------
d, c, t = new_hf()
st = os.path.join(d, "model.safetensors")
b = open(st, "rb").read()
open(st, "wb").write(b[:len(b) - 100])
refused("truncated model.safetensors", d, "model.safetensors", "past the end of the data")

d, c, t = new_hf()
st = os.path.join(d, "model.safetensors")
open(st, "wb").write(open(st, "rb").read()[:6])
refused("model.safetensors shorter than its length field", d, "model.safetensors", "truncated")

d, c, t = new_hf()
st = os.path.join(d, "model.safetensors")
b = open(st, "rb").read()
open(st, "wb").write(struct.pack("<Q", len(b)) + b[8:])
refused("header length past the end of the file", d, "model.safetensors", "runs past the end of the file")

d, c, t = new_hf()
st = os.path.join(d, "model.safetensors")
hdr = {"model.norm.weight": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]},
       "model.embed_tokens.weight": {"dtype": "F32", "shape": [40, 16], "data_offsets": [32, 32 + 2560]}}
open(st, "wb").write(st_bytes(hdr, b"\0" * 4000))
refused("overlapping data_offsets", d, "model.safetensors", "overlap")

hdr = {"model.norm.weight": {"dtype": "F32", "shape": [16], "data_offsets": [100000, 100064]}}
open(st, "wb").write(st_bytes(hdr, b"\0" * 4000))
refused("out-of-range data_offsets", d, "model.safetensors", "past the end of the data")

hdr = {"model.norm.weight": {"dtype": "F32", "shape": [16], "data_offsets": [0, 60]}}
open(st, "wb").write(st_bytes(hdr, b"\0" * 4000))
refused("shape x dtype disagrees with the byte length", d, "model.safetensors", "needs 64 bytes")

hdr = {"model.norm.weight": {"dtype": "F12", "shape": [16], "data_offsets": [0, 64]}}
open(st, "wb").write(st_bytes(hdr, b"\0" * 64))
refused("unknown dtype", d, "model.safetensors", "unknown dtype 'F12'")

d, c, t = new_hf()
t2 = dict(t)
t2["model.norm.weight"] = ("I32", (16,), b"\0" * 64)
g.write_st(os.path.join(d, "model.safetensors"), t2)
refused("integer tensor where weights belong", d, "model.safetensors", "has dtype I32")

d, c, t = new_hf()
t2 = dict(t)
del t2["model.layers.1.mlp.up_proj.weight"]
g.write_st(os.path.join(d, "model.safetensors"), t2)
refused("tensor missing", d, d, "tensor 'model.layers.1.mlp.up_proj.weight' is missing")

d, c, t = new_hf()
t2 = dict(t)
t2["lm_head.weight"] = ("F32", (30, 16), b"\0" * (30 * 16 * 4))
g.write_st(os.path.join(d, "model.safetensors"), t2)
refused("lm_head shape disagrees with config.json", d, "model.safetensors",
        "tensor 'lm_head.weight' has shape [30,16], config.json says [40,16]")

d, c, t = new_hf()
t2 = dict(t)
t2["model.layers.0.self_attn.q_proj.bias"] = ("F32", (16,), b"\0" * 64)
g.write_st(os.path.join(d, "model.safetensors"), t2)
refused("a tensor the architecture does not have", d, "model.safetensors", "'model.layers.0.self_attn.q_proj.bias' is not part of a llama model")

d, c, t = new_hf()
open(os.path.join(d, "config.json"), "w").write('{"model_type": "llama", "hidden_size": 16,')
refused("non-JSON config.json", d, "config.json", "invalid JSON")

d, c, t = new_hf()
c2 = dict(c, model_type="gpt_neox")
json.dump(c2, open(os.path.join(d, "config.json"), "w"))
refused("unknown architecture", d, "config.json", "model_type 'gpt_neox' is not supported")

d, c, t = new_hf()
c2 = dict(c, num_attention_heads=3)
json.dump(c2, open(os.path.join(d, "config.json"), "w"))
refused("inconsistent config (heads)", d, "config.json", "not divisible")

# Sizes are read as integers within their ranges (lib/formats/model_config.h), before anything is allocated.
d, c, t = new_hf()
open(os.path.join(d, "config.json"), "w").write(json.dumps(c).replace('"num_hidden_layers": %d' % c["num_hidden_layers"],
                                                                    '"num_hidden_layers": 1e9'))
refused("num_hidden_layers 1e9", d, "config.json", "'num_hidden_layers' must be an integer from 1 to 4096, not a number")

d, c, t = new_hf()
json.dump(dict(c, hidden_size=None), open(os.path.join(d, "config.json"), "w"))
refused("hidden_size null", d, "config.json", "'hidden_size' must be an integer from 1 to 131072, not null")

d, c, t = new_hf()
json.dump(dict(c, vocab_size=1 << 31), open(os.path.join(d, "config.json"), "w"))
refused("vocab_size 2^31", d, "config.json", "'vocab_size' is 2147483648, outside the supported 1 to 1073741824")

d, c, t = new_hf()
os.remove(os.path.join(d, "config.json"))
refused("no config.json", d, d, "no config.json")

d, c, t = new_hf()
os.remove(os.path.join(d, "model.safetensors"))
refused("no weights", d, d, "no model.safetensors")

d, c, t = new_hf(shards=3)
os.remove(os.path.join(d, "model-00002-of-00003.safetensors"))
refused("sharded index naming a missing file", d, "model.safetensors.index.json", "'model-00002-of-00003.safetensors', which does not exist")

d, c, t = new_hf(shards=2)
idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
k = sorted(idx["weight_map"])[0]
idx["weight_map"][k] = "model-00002-of-00002.safetensors" if idx["weight_map"][k].startswith("model-00001") else "model-00001-of-00002.safetensors"
json.dump(idx, open(os.path.join(d, "model.safetensors.index.json"), "w"))
refused("index placing a tensor in the wrong shard", d, "safetensors", "'%s' is not there" % k)

d, c, t = new_hf(shards=2)
idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
idx["weight_map"][sorted(idx["weight_map"])[0]] = "../../etc/passwd"
json.dump(idx, open(os.path.join(d, "model.safetensors.index.json"), "w"))
refused("index naming a path outside the directory", d, "model.safetensors.index.json", "not a file in the model directory")

d, c, t = new_hf()
open(os.path.join(d, "tokenizer.json"), "w").write("{\"model\": ")
refused("broken tokenizer.json", d, "tokenizer.json", "invalid JSON")

# ---- GGUF -----------------------------------------------------------------------------------------------------
d, c, t = new_hf(tied=True)
good = os.path.join(tmp, "good.gguf")
g.hf_to_gguf(good, c, t)
gb = open(good, "rb").read()


def gguf_case(desc, data, fault, name="bad.gguf", **kw):
    p = os.path.join(tmp, name)
    open(p, "wb").write(data)
    refused(desc, p, name, fault, **kw)


r = run(["scp-import", good, "-o", os.path.join(tmp, "gg-ok"), "-q"])
ok(r.returncode == 0, "the unbroken GGUF imports (the cases below break one thing each)")
gguf_case("GGUF with a bad magic", b"GGUX" + gb[4:], "bad magic")
gguf_case("GGUF version 1", gb[:4] + struct.pack("<I", 1) + gb[8:], "version 1 is not supported")
gguf_case("GGUF with an absurd tensor count", gb[:8] + struct.pack("<Q", 1 << 60) + gb[16:], "tensor count")
gguf_case("GGUF with an absurd metadata count", gb[:16] + struct.pack("<Q", 1 << 40) + gb[24:], "metadata count")
gguf_case("GGUF truncated in the metadata", gb[:300], "truncated")
gguf_case("GGUF truncated in the data", gb[:len(gb) - 40], "run past the end of the data")
kvs = [("general.architecture", 8, "llama")]
gguf_case("GGUF tensor with an unaligned offset",
          b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + g.gkv(*kvs[0]) + g.gstr("x") + struct.pack("<IQIQ", 1, 4, 0, 3) + b"\0" * 64,
          "not a multiple of the alignment")
gguf_case("GGUF tensor with a huge offset",
          b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + g.gkv(*kvs[0]) + g.gstr("x") + struct.pack("<IQIQ", 1, 4, 0, 1 << 40) + b"\0" * 64,
          "run past the end of the data")
gguf_case("GGUF tensor of an unknown ggml type",
          b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + g.gkv(*kvs[0]) + g.gstr("x") + struct.pack("<IQIQ", 1, 4, 99, 0) + b"\0" * 64,
          "unknown ggml type 99")
gguf_case("GGUF string longer than the file", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 50) + b"abc" + b"\0" * 16,
          "truncated")
gguf_case("GGUF array longer than the file",
          b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + g.gstr("k") + struct.pack("<IIQ", 9, 4, 1 << 40) + b"\0" * 16,
          "runs past the end of the file")
gguf_case("GGUF duplicate metadata key",
          b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + g.gkv("a", 4, 1) + g.gkv("a", 4, 2), "appears twice")
p = os.path.join(tmp, "q.gguf")
g.write_gguf(p, [("general.architecture", 8, "llama")], [("token_embd.weight", 2, [32, 4], b"\0" * 72)])
gguf_case("GGUF with a quantized (Q4_0) tensor", open(p, "rb").read(), "ggml type Q4_0")
g.write_gguf(p, [("general.architecture", 8, "gpt2")], [])
gguf_case("GGUF of an unsupported architecture", open(p, "rb").read(), "architecture 'gpt2' is not supported")
g.hf_to_gguf(p, c, t, drop={"blk.1.ffn_up.weight"})
gguf_case("GGUF with a tensor missing", open(p, "rb").read(), "'blk.1.ffn_up.weight' is missing")
g.hf_to_gguf(p, c, t, extra_kv=[("llama.feed_forward_length", 4, 25)])
gguf_case("GGUF with a metadata key twice", open(p, "rb").read(), "'llama.feed_forward_length' appears twice")
g.hf_to_gguf(p, dict(c, intermediate_size=25), t)
gguf_case("GGUF tensor shape disagreeing with the metadata", open(p, "rb").read(),
          "'blk.0.ffn_gate.weight' has shape [24,16], the metadata says [25,16]")
g.hf_to_gguf(p, c, t, rename={"blk.0.attn_norm.weight": "blk.0.mystery.weight"})
gguf_case("GGUF with a tensor renamed", open(p, "rb").read(), "'blk.0.attn_norm.weight' is missing")
g.hf_to_gguf(p, c, t, extra_tensors=[("blk.0.mystery.weight", 0, [16], b"\0" * 64)])
gguf_case("GGUF with an unknown tensor", open(p, "rb").read(), "'blk.0.mystery.weight' is not part of a llama model")

# ---- llama2.c -----------------------------------------------------------------------------------------------
d, c, t = new_hf(tied=True)
l2c = os.path.join(tmp, "m.bin")
g.hf_to_llama2c(l2c, c, t)
lb = open(l2c, "rb").read()
tok = os.path.join(tmp, "tok.bin")
g.llama2c_tokenizer(tok, 40)
r = run(["scp-import", l2c, "-t", tok, "-o", os.path.join(tmp, "l2c-ok"), "-q"])
ok(r.returncode == 0, "the unbroken llama2.c checkpoint imports (the cases below break one thing each)")


def l2c_case(desc, data, fault, tokp=tok):
    p = os.path.join(tmp, "bad.bin")
    open(p, "wb").write(data)
    refused(desc, p, "bad.bin" if fault != "tok" else "tok", fault if fault != "tok" else "truncated", *(["-t", tokp] if tokp else []))


l2c_case("llama2.c header with n_heads 0", struct.pack("<7i", 16, 24, 2, 0, 2, 40, 64) + lb[28:], "impossible")
l2c_case("llama2.c header with vocab_size INT32_MIN (found by fuzzing)", struct.pack("<7i", 16, 24, 2, 4, 2, -(1 << 31), 64) + lb[28:],
         "impossible")
l2c_case("llama2.c header with huge dims", struct.pack("<7i", 1 << 30, 24, 2, 4, 2, 40, 64) + lb[28:], "impossible")
l2c_case("llama2.c header whose sizes disagree with the file", lb[:-4], "the file has")
l2c_case("llama2.c file shorter than a header", lb[:20], "truncated")
l2c_case("llama2.c version 2 (int8)", struct.pack("<Ii", 0x616B3432, 2) + b"\0" * 300, "version 2")
l2c_case("llama2.c without --tokenizer", lb, "--tokenizer", tokp=None)
badtok = os.path.join(tmp, "badtok.bin")
open(badtok, "wb").write(open(tok, "rb").read()[:-5])
p = os.path.join(tmp, "m2.bin")
open(p, "wb").write(lb)
refused("truncated tokenizer.bin", p, "badtok.bin", "truncated", "-t", badtok)

# ---- usage errors exit 2 --------------------------------------------------------------------------------------
r = run(["scp-import", good])
ok(r.returncode == 2 and b"-o DIR" in r.stderr, "missing -o is a usage error (exit 2)")
r = run(["scp-import", good, "-o", os.path.join(tmp, "x"), "--dtype", "f8"])
ok(r.returncode == 2 and b"--dtype" in r.stderr, "a bad --dtype is a usage error (exit 2)")
r = run(["scp-import", good, "-o", os.path.join(tmp, "x"), "--mask-token", "many"])
ok(r.returncode == 2 and b"--mask-token" in r.stderr, "a bad --mask-token is a usage error (exit 2)")
r = run(["scp-import", "--help"])
ok(r.returncode == 0 and b"--mask-token" in r.stdout and b"--dtype" in r.stdout, "--help on stdout, exit 0")
r = run(["scp-import", "--version"])
ok(r.returncode == 0 and b"scp-import (scp)" in r.stdout, "--version on stdout, exit 0")
done()
