#!/usr/bin/python3
"""generate-gpu.py: scp-eval generate on the GPU against the CPU, on the stories260K model (imported with a mask
token), greedy (temperature 0, the same seed), with tokens/s:

- AR decoding with the key/value cache (200 tokens after "Once upon a time");
- diffusion in one step (48 masks filled from one bidirectional forward), and in 48 steps (one token a step).

The tokens must be the CPU's, or differ only where rounding explains it. The device computes the logits in
another order (and "cuda" stores bf16), so where the CPU's best two tokens are closer than the two backends'
logits differ, greedy decoding may pick the other one; after that an AR sequence is another continuation. So:
AR: the tokens agree up to the first difference, and there the CPU's margin of its token over the device's token
(in the CPU's logits of the common prefix, tests/gpu/logits-dump) is at most 3 times the largest difference
between the two backends' logits on that row (2 for the two sides of the margin, and room for the decoding
kernel's rounding, which the full forward of logits-dump does not share). One-step diffusion: every position the
same, or its CPU margin as small (same rule, on the rows of the masked canvas). A faulty kernel or cache gives a
first difference where the CPU prefers its token by far more. The 48-step run changes the canvas of every later
step at the first such flip, so it is only run for its tokens/s, with the count of equal tokens for information.
The CPU's tokens are checked against the argmax of its own logits first, so that the comparison reads the right
rows.

Backends: cuda-fp32 and cuda; SCP_GPU_DRYRUN=1 puts cpu-ref and cpu-bf16 in their place (the check without a GPU).
SCP_GEN_RANDOM=1 takes a small random Qwen3 model generated here (tests/importgen.py) instead of stories260K, and
shorter runs (24 AR tokens, 16 diffusion masks): tests/gpu/emulated.sh runs it so on the emulated CUDA tables.
Skips without a device or the assets. Prints "# generate: ..." summary lines (tests/gpu/device-check.sh shows them)."""
import array
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import ASSETS, diag, done, ok, run, skip_all, tmpdir  # noqa: E402

BUILD = os.environ.get("SCP_BUILDDIR", ".")
DUMP = os.path.join(BUILD, "tests", "gpu", "logits-dump")
dry = os.environ.get("SCP_GPU_DRYRUN", "0") == "1"
if dry:
    gpus = ["cpu-ref", "cpu-bf16"]
else:
    ops = os.path.join(BUILD, "tests", "model", "backend-ops")
    try:
        n = int(subprocess.run([ops, "--devices"], capture_output=True, text=True, timeout=60).stdout.strip() or 0)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        n = 0
    if n < 1:
        skip_all("no CUDA device")
    gpus = ["cuda-fp32", "cuda"]
small = os.environ.get("SCP_GEN_RANDOM", "0") == "1"
if not small:
    for a in ("models/stories260K.bin", "models/tok512.bin"):
        if not os.path.exists(os.path.join(ASSETS, a)):
            skip_all("asset %s not found (set SCP_ASSETS)" % a)
if not os.access(DUMP, os.X_OK):
    skip_all("no tests/gpu/logits-dump in %s" % BUILD)

tmp = tmpdir()
ckpt = os.path.join(tmp, "ckpt")
if small:
    import importgen
    src = os.path.join(tmp, "hf")
    importgen.make_hf(src, importgen.config("qwen3", vocab=40, hidden_size=32, num_attention_heads=4,
                                            num_key_value_heads=2, intermediate_size=48, num_hidden_layers=2,
                                            max_position_embeddings=128), "F32", seed=5, n_tokens=37)
    r = run(["scp-import", "-q", src, "-o", ckpt])
    what, prompt, n_ar, n_dif = "a random qwen3 model", "abab", 24, 16
else:
    r = run(["scp-import", "-q", "--force", os.path.join(ASSETS, "models/stories260K.bin"), "--tokenizer",
             os.path.join(ASSETS, "models/tok512.bin"), "-o", ckpt])
    what, prompt, n_ar, n_dif = "stories260K", "Once upon a time", 200, 48
if not ok(r.returncode == 0, "import %s with a mask token" % what):
    diag(r.stderr.decode(errors="replace"))
    done()
cfg = json.load(open(os.path.join(ckpt, "config.json")))
V, MASK, SHIFT = cfg["vocab_size"], cfg["mask_token_id"], cfg.get("shift_logits", False)

RUNS = {  # name: scp-eval generate options
    "ar": ["--mode", "ar", "-n", str(n_ar)],
    "diffusion-1": ["--mode", "diffusion", "-n", str(n_dif), "--steps", "1"],
    "diffusion-n": ["--mode", "diffusion", "-n", str(n_dif), "--steps", str(n_dif)],
}


def generate(backend, opts):
    try:
        r = run(["scp-eval", "generate", "--model", ckpt, "--prompt", prompt, "--at-eos", "ignore",
                 "--seed", "1", "--jsonl", "--backend", backend] + opts, timeout=300)
        if r.returncode != 0:
            diag("scp-eval generate --backend %s: %s" % (backend, r.stderr.decode(errors="replace").strip()))
            return None
        return json.loads(r.stdout.decode().splitlines()[-1])
    except (ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def logits(backend, ids, bidirectional):
    """The (len(ids), V) logits of one sequence on backend, as a list of rows."""
    out = os.path.join(tmp, "logits.f32")
    r = subprocess.run([DUMP] + (["--bidirectional"] if bidirectional else []) + [ckpt, backend, out] +
                       [str(i) for i in ids], capture_output=True, timeout=120)
    if r.returncode != 0:
        diag("logits-dump %s: %s" % (backend, r.stderr.decode(errors="replace").strip()))
        return None
    a = array.array("f")
    with open(out, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return [a[i * V:(i + 1) * V] for i in range(len(ids))]


def argmax(row):
    return max((v for v in range(V) if v != MASK), key=lambda v: row[v])


def tie(lc, lg, c, g):
    """(explained, margin, diff): whether the CPU's margin of token c over g on row lc is within 3 times the
    largest difference between the rows lc and lg (the two backends' logits)."""
    d = max(abs(x - y) for x, y in zip(lc, lg))
    m = lc[c] - lc[g]
    return m <= 3 * d, m, d


def tok_s(s):
    return len(s["filled"]) / s["seconds"] if s and s["seconds"] > 0 else 0.0


res = {}
for name, opts in RUNS.items():
    for be in ["cpu"] + gpus:
        s = res[name, be] = generate(be, opts)
        ok(s is not None and len(s["filled"]) > 0 and MASK not in s["ids"],
           "%s on %s: %d tokens generated" % (name, be, len(s["filled"]) if s else 0))

# The reading of the CPU's runs: its tokens are the argmax of its own logits (causal rows of the generated
# sequence for AR; the rows of the masked canvas for one-step diffusion, shifted where shift_logits says so).
ar, d1 = res["ar", "cpu"], res["diffusion-1", "cpu"]
if ar and d1:
    rows = logits("cpu", ar["ids"][:-1], False)
    ok(rows is not None and all(argmax(rows[p - 1]) == ar["ids"][p] for p in ar["filled"]),
       "cpu AR tokens: the argmax of the CPU's causal logits at every position")
    canvas = d1["ids"][:d1["prompt_tokens"]] + [MASK] * len(d1["filled"])
    crow = logits("cpu", canvas, True)
    ok(crow is not None and all(argmax(crow[p - 1 if SHIFT else p]) == d1["ids"][p] for p in d1["filled"]),
       "cpu one-step diffusion tokens: the argmax of the CPU's bidirectional logits of the masked canvas")
else:
    rows = crow = None

summary = []
for be in gpus:
    g = res["ar", be]
    if ar and g and rows is not None:
        diff = [p for p in ar["filled"] if g["ids"][p] != ar["ids"][p]]
        if not diff:
            ok(True, "%s AR: the CPU's %d tokens" % (be, len(ar["filled"])))
            agree = "same %d tokens" % len(ar["filled"])
        else:
            p = diff[0]
            prefix = ar["ids"][:p]
            lg = logits(be, prefix, False)
            expl, m, d = tie(rows[p - 1], lg[-1], ar["ids"][p], g["ids"][p]) if lg else (False, float("nan"), 0)
            ok(expl, "%s AR: the CPU's tokens up to position %d of %d; there the CPU's margin %.3g of token %d over "
               "%d is within 3 x the backends' largest logit difference %.3g" % (be, p, len(ar["ids"]), m,
                                                                                 ar["ids"][p], g["ids"][p], d))
            agree = "same first %d of %d tokens, then %s" % (p - ar["prompt_tokens"], len(ar["filled"]),
                                                              "a near tie" if expl else "a difference rounding does not explain")
        summary.append("# generate: %s AR with the key/value cache %.0f tok/s (cpu %.0f), %s"
                       % (be, tok_s(g), tok_s(ar), agree))
    g, same1 = res["diffusion-1", be], "-"
    if d1 and g and crow is not None:
        diff = [p for p in d1["filled"] if g["ids"][p] != d1["ids"][p]]
        lg = logits(be, canvas, True) if diff else None
        bad = []
        for p in diff:
            r_ = p - 1 if SHIFT else p
            expl, m, d = tie(crow[r_], lg[r_], d1["ids"][p], g["ids"][p]) if lg else (False, float("nan"), 0)
            if not expl:
                bad.append(p)
            diag("%s diffusion, one step: position %d: %d (cpu) against %d, CPU margin %.3g, logit difference %.3g"
                 % (be, p, d1["ids"][p], g["ids"][p], m, d))
        same1 = "%d of %d" % (len(d1["filled"]) - len(diff), len(d1["filled"]))
        ok(not bad, "%s one-step diffusion: %d of %d tokens the CPU's, the others near ties (positions not "
           "explained: %s)" % (be, len(d1["filled"]) - len(diff), len(d1["filled"]), bad or "none"))
    gn, cn = res["diffusion-n", be], res["diffusion-n", "cpu"]
    if gn and cn:
        same = sum(gn["ids"][p] == cn["ids"][p] for p in cn["filled"])
        summary.append("# generate: %s diffusion %.0f tok/s in %d steps (cpu %.0f), %d of %d tokens the CPU's; "
                       "in one step %s" % (be, tok_s(gn), n_dif, tok_s(cn), same, len(cn["filled"]), same1))
for line in summary:
    print(line)
done()
