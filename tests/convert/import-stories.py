"""import-stories.py: the real stories260K model (llama2.c legacy .bin + tok512.bin, and the GGUF copy) imports;
both sources give the same tensors; the GGUF vocabulary becomes a tokenizer.bin identical to tok512.bin; the
imported HF-layout checkpoint, run by an independent HF-convention Llama forward pass in PyTorch (half-split RoPE,
rotate_half), reproduces the model's published greedy continuation of "Once upon a time" (this is what shows the
q/k RoPE permutation is right). Also a llama2.c version 1 ("ak42") file, written here from the legacy one in
export.py's version1_export order, imports to the same tensors. Skips (77) without ../shared/assets."""
import atexit
import json
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ASSETS, ok, diag, skip_all, done, run, tmpdir  # noqa: E402

BIN = os.path.join(ASSETS, "models", "stories260K.bin")
GGUF = os.path.join(ASSETS, "models", "stories260K.gguf")
TOK = os.path.join(ASSETS, "models", "tok512.bin")
SPM = os.path.join(ASSETS, "models", "tok512.model")
for p in (BIN, GGUF, TOK):
    if not os.path.exists(p):
        skip_all("asset %s not found (set SCP_ASSETS)" % p)

import numpy as np  # noqa: E402


def load_st(path):
    """A minimal independent safetensors reader: name -> (dtype, shape, bytes)."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    return {k: (v["dtype"], tuple(v["shape"]), d[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}


def arr(t):
    assert t[0] == "F32"
    return np.frombuffer(t[2], dtype="<f4").reshape(t[1])


tmp = tmpdir()
atexit.register(shutil.rmtree, tmp, True)
out_bin, out_gguf, out_v1 = (os.path.join(tmp, n) for n in ("from-bin", "from-gguf", "from-v1"))
r = run(["scp-import", BIN, "--tokenizer", TOK, "-o", out_bin])
ok(r.returncode == 0, "stories260K.bin + tok512.bin import")
diag(r.stderr.decode())
r = run(["scp-import", GGUF, "-o", out_gguf])
ok(r.returncode == 0, "stories260K.gguf imports")
diag(r.stderr.decode())
A = load_st(os.path.join(out_bin, "model.safetensors"))
B = load_st(os.path.join(out_gguf, "model.safetensors"))
ok(len(A) == 47 and sorted(A) == sorted(B), "same %d tensor names from both sources" % len(A))
ok(all(A[k] == B[k] for k in A if k in B), "every tensor bit-identical between the .bin and the .gguf import")
ok(open(os.path.join(out_gguf, "tokenizer.bin"), "rb").read() == open(TOK, "rb").read(),
   "tokenizer.bin written from the GGUF vocabulary is byte-identical to tok512.bin")
ok(open(os.path.join(out_bin, "tokenizer.bin"), "rb").read() == open(TOK, "rb").read(), "tok512.bin carried unchanged")
cfg = json.load(open(os.path.join(out_bin, "config.json")))
ok(cfg["model_type"] == "llama" and cfg["hidden_size"] == 64 and cfg["num_hidden_layers"] == 5 and
   cfg["num_attention_heads"] == 8 and cfg["num_key_value_heads"] == 4 and cfg["intermediate_size"] == 172 and
   cfg["tie_word_embeddings"] is True and "lm_head.weight" not in A, "config.json: the llama2.c header, tied classifier")
ok(cfg["mask_token_id"] == 512 and cfg["vocab_size"] == 513 and cfg["is_causal"] is True and cfg["shift_logits"] is True,
   "mask token 512 appended (vocabulary 512 -> 513), SCP keys written")
emb = arr(A["model.embed_tokens.weight"])
mean = emb[:512].astype(np.float64).mean(0).astype(np.float32)
ok(emb.shape == (513, 64) and np.allclose(emb[512], mean, rtol=0, atol=1e-7), "the mask row is the mean of the 512 rows")
tc = json.load(open(os.path.join(out_bin, "tokenizer_config.json")))
ok(tc["tokenizer_class"] == "llama2c" and tc["added_tokens_decoder"]["512"]["content"] == "<|mask|>" and
   tc["added_tokens_decoder"]["512"]["special"] is True and tc["bos_token"] == "<s>" and tc["eos_token"] == "</s>",
   "tokenizer_config.json: llama2c class, <|mask|> as added token 512, bos/eos")

# llama2.c version 1: header magic "ak42", version 1, 7 ints, shared flag, pad to 256; then norms first.
raw = open(BIN, "rb").read()
dim, hid, L, H, KV, V, S = struct.unpack("<7i", raw[:28])
hd = dim // H
f = np.frombuffer(raw[28:], dtype="<f4")
o = 0


def take(*shape):
    global o
    n = int(np.prod(shape))
    a = f[o:o + n].reshape(shape)
    o += n
    return a


emb0 = take(V, dim); att_n = take(L, dim); wq = take(L, H * hd, dim); wk = take(L, KV * hd, dim)
wv = take(L, KV * hd, dim); wo = take(L, dim, H * hd); ffn_n = take(L, dim); w1 = take(L, hid, dim)
w2 = take(L, dim, hid); w3 = take(L, hid, dim); fin = take(dim)
hdr = struct.pack("<Ii7iB", 0x616B3432, 1, dim, hid, L, H, KV, V, S, 1)
v1 = hdr + b"\0" * (256 - len(hdr)) + b"".join(
    a.astype("<f4").tobytes() for a in [*att_n, *ffn_n, fin, emb0, *wq, *wk, *wv, *wo, *w1, *w2, *w3])
v1_path = os.path.join(tmp, "stories260K-v1.bin")
open(v1_path, "wb").write(v1)
r = run(["scp-import", v1_path, "--tokenizer", TOK, "-o", out_v1])
ok(r.returncode == 0, "a llama2.c version 1 (ak42) export of the same model imports")
C = load_st(os.path.join(out_v1, "model.safetensors")) if r.returncode == 0 else {}
ok(sorted(C) == sorted(A) and all(A[k] == C[k] for k in A), "version 1 gives the same tensors as the legacy file")

# The HF-convention forward pass (independent of scp): greedy decoding from BOS + "Once upon a time".
try:
    import torch
    import sentencepiece
except ImportError as e:
    ok(True, "# SKIP no torch/sentencepiece: %s" % e)
    done()
torch.set_grad_enabled(False)
W = {k: torch.from_numpy(arr(v).astype(np.float64)) for k, v in A.items()}
eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]


def rms(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def forward(ids):
    T = len(ids)
    x = W["model.embed_tokens.weight"][ids]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    fr = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    emb_ = torch.cat((fr, fr), -1)
    cos, sin = emb_.cos(), emb_.sin()
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(L):
        p = "model.layers.%d." % l
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, H, hd).transpose(0, 1)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, 0)
        v = v.repeat_interleave(H // KV, 0)
        a = torch.softmax(q @ k.transpose(1, 2) / hd ** 0.5 + mask, -1) @ v
        x = x + a.transpose(0, 1).reshape(T, H * hd) @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = h @ W[p + "mlp.gate_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    return x @ W["model.embed_tokens.weight"][:512].T


# The checkpoint's tokenizer as the rest of the suite loads it (scp-tokenize -m DIR), where it is built:
# the same ids as SentencePiece for the text, and <|mask|> recognised as the mask id.
sp = sentencepiece.SentencePieceProcessor(model_file=SPM) if os.path.exists(SPM) else None
if sp and os.path.exists(os.path.join(os.path.dirname(run(["scp-import", "--version"]).args[0]), "scp-tokenize")):
    for o in (out_bin, out_gguf):
        r = run(["scp-tokenize", "-m", o, "--format", "ids"], input=b"Once upon a time<|mask|>\n")
        got = [int(x) for x in r.stdout.split()] if r.returncode == 0 else None
        ok(got == sp.encode("Once upon a time") + [512], "scp-tokenize -m on the %s import: SentencePiece's ids, then <|mask|> = 512"
           % ("llama2.c" if o == out_bin else "GGUF"))
if not os.path.exists(SPM):
    ok(True, "# SKIP tok512.model not found")
    done()
sp = sentencepiece.SentencePieceProcessor(model_file=SPM)
ids = [1] + sp.encode("Once upon a time")
for _ in range(30):
    ids.append(int(forward(ids)[-1].argmax()))
text = sp.decode(ids[1:])
want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
diag("greedy: " + repr(text))
ok(text[:len(want)] == want,
   "HF-layout forward pass gives the published greedy continuation (RoPE permutation right)")
done()
