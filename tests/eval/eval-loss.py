"""eval-loss.py: scp-eval ppl and elbo on data and models the test makes.
- ppl equals a float64 PyTorch forward of the same checkpoint (written here from the HF Llama math) on the
  same sequences, each scored from its own prefix;
- shards and token-stream windows give the same figure for the same sequences; overlapping windows count right;
- a model whose logits are all zero scores ln V exactly (ppl) and ln V within its standard error (elbo);
- the bound is deterministic in the seed, and a trained model's bound is lower than its init's;
- usage errors exit 2 (an unknown backend too), a model without a mask token cannot give a bound, sequences beyond
  max_position_embeddings are refused; the old spellings --tokens and -t still work, with a warning;
- ppl of a checkpoint trained bidirectionally (is_causal false) warns that it scores it causally, unless -q."""
import json
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

try:
    import numpy as np
    import torch
except ImportError:
    skip_all("numpy or torch not available")

for prog in ("scp-train", "scp-eval", "scp-shard"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")

tmp = tmpdir()
T, V = 64, 64
# Shards packed in order (no shuffle, no val split), so that the windows of the same stream are the same sequences.
docs = td.markov_docs(120, 63, 5)
stream = td.write_tokstream(os.path.join(tmp, "s.tok"), docs, 63)
shards = os.path.join(tmp, "shards")
run(["scp-shard", "-q", "--no-shuffle", "-L", str(T), stream, "-o", shards], check=True)
flat = [t for d in docs for t in d]
n_whole = len(flat) // T
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=V, mask_id=63, hidden=32, layers=2, heads=4,
                      kv_heads=2, inter=48)
rundir = os.path.join(tmp, "run")
r = run(["scp-train", "--threads", "1", "-q", "--init", "random:" + cfg, "--data", shards, "-o", rundir, "--steps", "15",
         "--lr", "3e-3", "--save-every", "1", "--keep", "0", "--init-std", "0.2"])
ok(r.returncode == 0, "a small model trained for the figures")
ck0, ck = os.path.join(rundir, "step-0000001"), os.path.join(rundir, "latest")


def ev(*args):
    r = run(["scp-eval"] + list(args) + ["--threads", "1"])
    try:
        return r, json.loads(r.stdout)
    except ValueError:
        return r, None


# ---- ppl against PyTorch (float64) ----
def torch_nll(ckdir, seqs):
    c = json.load(open(os.path.join(ckdir, "config.json")))
    W, _ = td.st_read(os.path.join(ckdir, "model.safetensors"))
    P = {k: torch.tensor(v, dtype=torch.float64) for k, v in W.items()}
    D, H, KV = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd, eps = D // H, c["rms_norm_eps"]
    inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))

    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w

    def rot(x):
        return torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)

    x_ids = torch.tensor(seqs)
    B, L = x_ids.shape
    pos = torch.arange(L, dtype=torch.float64)
    ang = torch.outer(pos, inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    h = P["model.embed_tokens.weight"][x_ids]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        a = rms(h, P[p + "input_layernorm.weight"])
        q = (a @ P[p + "self_attn.q_proj.weight"].T).view(B, L, H, hd).transpose(1, 2)
        k = (a @ P[p + "self_attn.k_proj.weight"].T).view(B, L, KV, hd).transpose(1, 2)
        v = (a @ P[p + "self_attn.v_proj.weight"].T).view(B, L, KV, hd).transpose(1, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~causal, float("-inf"))
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, L, H * hd)
        h = h + o @ P[p + "self_attn.o_proj.weight"].T
        a = rms(h, P[p + "post_attention_layernorm.weight"])
        g = a @ P[p + "mlp.gate_proj.weight"].T
        u = a @ P[p + "mlp.up_proj.weight"].T
        h = h + (torch.nn.functional.silu(g) * u) @ P[p + "mlp.down_proj.weight"].T
    h = rms(h, P["model.norm.weight"])
    logits = h @ P.get("lm_head.weight", P["model.embed_tokens.weight"]).T
    lp = logits.log_softmax(-1)
    nll = -lp[:, :-1].gather(-1, x_ids[:, 1:, None])[..., 0]
    return float(nll.sum() / nll.numel()), float(nll.sum(1).std() / math.sqrt(B) / (L - 1)) if B > 1 else None


nseq = min(12, n_whole)
seqs = [flat[i * T:(i + 1) * T] for i in range(nseq)]
r, j = ev("ppl", "--model", ck, "--data", shards, "--split", "train", "--max-seqs", str(nseq))
ok(r.returncode == 0 and j is not None, "scp-eval ppl runs (%s)" % r.stderr.decode().strip()[-200:])
ref, _ = torch_nll(ck, seqs)
diag("ppl nll %.10f, PyTorch float64 %.10f" % (j["nll"], ref))
ok(abs(j["nll"] - ref) < 1e-5 * ref, "NLL matches PyTorch float64 to 1e-5 relative")
ok(j["seqs"] == nseq and j["tokens"] == nseq * (T - 1), "seqs and predicted tokens counted (%d x %d)" % (nseq, T - 1))
ok(abs(j["ppl"] - math.exp(j["nll"])) < 1e-9 * j["ppl"], "ppl = exp(nll)")
ok(j["se"] is not None and 0 < j["se"] < 1, "a standard error over sequences")

# The same sequences as windows of the token stream.
r, jw = ev("ppl", "--model", ck, "--stream", stream, "--seq-len", str(T), "--max-seqs", str(nseq))
ok(jw is not None and jw["nll"] == j["nll"] and jw["tokens"] == j["tokens"], "windows of the stream = the shards' sequences")
r, jo = ev("ppl", "--model", ck, "--stream", stream, "--seq-len", str(T), "--stride", str(T // 2))
want = (len(flat) - T) // (T // 2) + 1
ok(jo is not None and jo["seqs"] == want and jo["tokens"] == want * (T - 1), "overlapping windows: %d of them" % want)
seqs_o = [flat[i * (T // 2):i * (T // 2) + T] for i in range(min(want, 10))]
r, jo10 = ev("ppl", "--model", ck, "--stream", stream, "--seq-len", str(T), "--stride", str(T // 2), "--max-seqs", "10")
ok(jo10 is not None and abs(jo10["nll"] - torch_nll(ck, seqs_o)[0]) < 1e-5 * jo10["nll"],
   "overlapping windows scored each from its own prefix (PyTorch)")

# ---- a model with all-zero logits: uniform over V ----
zck = os.path.join(tmp, "zero")
shutil.copytree(os.path.realpath(ck), zck)
W, meta = td.st_read(os.path.join(zck, "model.safetensors"))
W["lm_head.weight"] = np.zeros_like(W["lm_head.weight"])
td.st_write(os.path.join(zck, "model.safetensors"), W, meta)
r, jz = ev("ppl", "--model", zck, "--data", shards, "--split", "train")
ok(jz is not None and abs(jz["nll"] - math.log(V)) < 1e-6, "zero logits: ppl NLL = ln V (%s)" % (jz and jz["nll"]))
r, jze = ev("elbo", "--model", zck, "--data", shards, "--split", "train", "--samples", "8")
ok(jze is not None and abs(jze["nll"] - math.log(V)) < 4 * jze["se"] and jze["se"] < 0.1,
   "zero logits: bound = ln V within 4 standard errors (%.4f +- %.4f)" % (jze["nll"], jze["se"]))
ok(jze is not None and abs(jze["masked_fraction"] - 0.5) < 0.05, "masked fraction near E[t] = 1/2")

# ---- elbo: deterministic in the seed, lower after training ----
a = ev("elbo", "--model", ck, "--data", shards, "--split", "train", "--samples", "4", "--seed", "7", "--max-seqs", "20")[1]
b = ev("elbo", "--model", ck, "--data", shards, "--split", "train", "--samples", "4", "--seed", "7", "--max-seqs", "20")[1]
c = ev("elbo", "--model", ck, "--data", shards, "--split", "train", "--samples", "4", "--seed", "8", "--max-seqs", "20")[1]
ok(a and b and a["nll"] == b["nll"], "same seed, same bound")
ok(a and c and a["nll"] != c["nll"] and abs(a["nll"] - c["nll"]) < 5 * (a["se"] + c["se"]),
   "another seed: another draw, within the standard errors")
ok(a and a["samples"] == 4 and a["seqs"] == 20 and a["shift"] is True and a["attention"] == "bidirectional",
   "elbo reports samples, seqs, shift, attention")
i0 = ev("elbo", "--model", ck0, "--data", shards, "--split", "train", "--samples", "4", "--seed", "7", "--max-seqs", "20")[1]
diag("elbo after 1 step %.4f, after 15 steps %.4f" % (i0["nll"], a["nll"]))
ok(a["nll"] < i0["nll"], "training lowers the bound")
ns = ev("elbo", "--model", ck, "--data", shards, "--split", "train", "--samples", "4", "--seed", "7", "--max-seqs", "20",
        "--no-shift")[1]
ok(ns and ns["shift"] is False and ns["nll"] != a["nll"], "--no-shift scores each position's own logits")

# ---- errors ----
r = run(["scp-eval", "--help"])
ok(r.returncode == 0 and b"ppl" in r.stdout and b"elbo" in r.stdout, "scp-eval --help lists the subcommands")
r = run(["scp-eval", "ppl", "--help"])
ok(r.returncode == 0 and b"--max-seqs" in r.stdout, "scp-eval ppl --help")
r = run(["scp-eval", "frobnicate"])
ok(r.returncode == 2, "unknown subcommand: exit 2")
r = run(["scp-eval", "ppl", "--model", ck, "--data", shards, "--samples", "3"])
ok(r.returncode == 2, "an elbo option given to ppl: exit 2")
r = run(["scp-eval", "ppl", "--model", ck])
ok(r.returncode == 2, "no data: exit 2")
r = run(["scp-eval", "ppl", "--model", ck, "--data", shards])
ok(r.returncode == 1 and b"val" in r.stderr, "no val split: exit 1 (%s)" % r.stderr.decode().strip()[-100:])
nm = os.path.join(tmp, "nomask")
shutil.copytree(os.path.realpath(ck), nm)
cj = json.load(open(os.path.join(nm, "config.json")))
del cj["mask_token_id"]
json.dump(cj, open(os.path.join(nm, "config.json"), "w"))
r = run(["scp-eval", "elbo", "--model", nm, "--data", shards, "--split", "train"])
ok(r.returncode == 1 and b"mask_token_id" in r.stderr, "elbo without a mask token refused")
r = run(["scp-eval", "elbo", "--model", ck, "--data", shards, "--split", "train", "--backend", "nosuch"])
ok(r.returncode == 2 and b"unknown backend 'nosuch'" in r.stderr and b"cpu-bf16" in r.stderr,
   "--backend nosuch: exit 2 listing the backends")
r = run(["scp-eval", "ppl", "--model", ck, "--tokens", stream, "--seq-len", str(T), "--max-seqs", str(nseq), "-t", "1"])
ok(r.returncode == 0 and json.loads(r.stdout)["nll"] == jw["nll"] and b"--tokens is deprecated" in r.stderr and
   b"use --stream" in r.stderr and b"-t is deprecated" in r.stderr,
   "the old --tokens and -t: the same figure as --stream and -j, with warnings")
# The sequences must fit the positions: all T for elbo, T - 1 for ppl (the last token is only predicted).
for max_pos, sub, want in ((T - 1, "ppl", 0), (T - 1, "elbo", 1), (T - 2, "ppl", 1)):
    short = os.path.join(tmp, "short%d" % max_pos)
    if not os.path.exists(short):
        shutil.copytree(os.path.realpath(ck), short)
        cj = json.load(open(os.path.join(short, "config.json")))
        cj["max_position_embeddings"] = max_pos
        json.dump(cj, open(os.path.join(short, "config.json"), "w"))
    r = run(["scp-eval", sub, "--model", short, "--data", shards, "--split", "train", "--max-seqs", "2", "-j", "1"])
    if want:
        ok(r.returncode == 1 and b"max_position_embeddings %d" % max_pos in r.stderr and not r.stdout,
           "%s of %d-token sequences with %d positions: exit 1 (%s)" % (sub, T, max_pos, r.stderr.decode().strip()))
    else:
        ok(r.returncode == 0, "%s of %d-token sequences with %d positions: scored" % (sub, T, max_pos))
# A masked-diffusion checkpoint (scp-train writes is_causal false) scored by ppl: a warning pointing to elbo; the
# same weights marked causal, and -q, score without one.
warn = ("scp-eval ppl: %s was trained bidirectionally (config.json: is_causal false), but ppl scores it causally, "
        "each token from its prefix: scp-eval elbo gives its masked-diffusion bound" % ck).encode()
ok(json.load(open(os.path.join(ck, "config.json")))["is_causal"] is False, "the trained checkpoint says is_causal false")
r = run(["scp-eval", "ppl", "--model", ck, "--data", shards, "--split", "train", "--max-seqs", "2", "-j", "1"])
ok(r.returncode == 0 and warn in r.stderr and json.loads(r.stdout)["nll"] > 0,
   "ppl of a diffusion checkpoint: scored, with the warning (%s)" % r.stderr.decode().strip()[:160])
r = run(["scp-eval", "ppl", "--model", ck, "--data", shards, "--split", "train", "--max-seqs", "2", "-j", "1", "-q"])
ok(r.returncode == 0 and b"bidirectionally" not in r.stderr, "-q: no warning")
causal = os.path.join(tmp, "causal")
shutil.copytree(os.path.realpath(ck), causal)
cj = json.load(open(os.path.join(causal, "config.json")))
cj["is_causal"] = True
json.dump(cj, open(os.path.join(causal, "config.json"), "w"))
r = run(["scp-eval", "ppl", "--model", causal, "--data", shards, "--split", "train", "--max-seqs", "2", "-j", "1"])
ok(r.returncode == 0 and b"bidirectionally" not in r.stderr, "ppl of a causal checkpoint: no warning")
r = run(["scp-eval", "elbo", "--model", ck, "--data", shards, "--split", "train", "--max-seqs", "2", "-j", "1"])
ok(r.returncode == 0 and b"bidirectionally" not in r.stderr, "elbo of the diffusion checkpoint: no warning")
r = run(["scp-eval", "elbo", "--model", ck, "--data", shards, "-q"])
ok(r.returncode == 2 and b"-q is an option of 'ppl', not of 'elbo'" in r.stderr, "elbo -q: exit 2 (%s)" %
   r.stderr.decode().strip())
with open(os.path.join(tmp, "bad.tok"), "wb") as f:
    f.write(open(stream, "rb").read()[:100])
r = run(["scp-eval", "ppl", "--model", ck, "--stream", os.path.join(tmp, "bad.tok"), "--seq-len", "8"])
ok(r.returncode == 1 and b"bad.tok" in r.stderr, "truncated token stream refused naming it")

shutil.rmtree(tmp)
done()
