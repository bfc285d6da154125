"""generate-choice.py: scp-eval generate and choice on a small random Llama model generated here
(tests/importgen.py), checked against a float64 PyTorch forward written here from the HF Llama math:
- AR greedy decoding gives the reference's argmax continuation, token for token;
- choice (AR) scores are the reference's exact continuation log-probabilities; the prediction is their argmax;
- diffusion with one step commits, at every masked position, the reference's bidirectional argmax (shifted or
  not); a one-token continuation's Monte-Carlo bound is exactly its masked log-probability;
- diffusion sampling is deterministic for a seed and differs across seeds; every order, with and without
  --block, leaves a complete canvas (no mask) and keeps the prompt; infill changes only the masked positions;
  --steps counts model calls; --at-eos fill pads after the first EOS; usage errors exit 2."""
import atexit
import json
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import importgen as g  # noqa: E402

try:
    import numpy as np
    import torch
    import llamaref
except ImportError:
    skip_all("numpy or torch not available")
for prog in ("scp-import", "scp-eval", "scp-export"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")

tmp = tmpdir()
atexit.register(shutil.rmtree, tmp, True)
src, ck, dif = (os.path.join(tmp, n) for n in ("src", "ck", "dif"))
c = g.config("llama", vocab=40, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
             num_hidden_layers=2, max_position_embeddings=128)
g.make_hf(src, c, "F32", seed=11, n_tokens=37)
r = run(["scp-import", "-q", src, "-o", ck])
if r.returncode:
    diag(r.stderr.decode())
ok(r.returncode == 0, "import a random llama model")
r = run(["scp-export", "-q", "--bidirectional", "-o", dif, ck])
ok(r.returncode == 0, "a bidirectional copy (scp-export --bidirectional)")
cfg = json.load(open(os.path.join(ck, "config.json")))
MASK, V, EOS, BOS = cfg["mask_token_id"], cfg["vocab_size"], cfg["eos_token_id"], cfg["bos_token_id"]
W = llamaref.load_weights(ck)


def forward(ids, causal):
    return llamaref.forward(W, c, ids, causal)


def gen(model, *args):
    r = run(["scp-eval", "generate", "-m", model, "-j", "1", "--jsonl"] + [str(a) for a in args])
    if r.returncode:
        diag("generate %s: exit %d: %s" % (" ".join(map(str, args)), r.returncode, r.stderr.decode()))
        return None
    return [json.loads(l) for l in r.stdout.decode().splitlines()]


# ---- AR greedy ---------------------------------------------------------------------------------------------
out = gen(ck, "-p", "abab", "-n", 12, "--at-eos", "ignore")
ids = out[0]["ids"] if out else []
np0 = out[0]["prompt_tokens"] if out else 0
ref = list(ids[:np0])
for _ in range(12):
    lg = forward(ref, True)[-1].clone()
    lg[MASK] = float("-inf")
    ref.append(int(lg.argmax()))
ok(out is not None and out[0]["mode"] == "ar" and ids == ref and ids[0] == BOS,
   "AR greedy: BOS + prompt + 12 tokens equal the reference's argmax decoding")
diag("AR ids %s" % ids)
out2 = gen(ck, "-p", "abab", "-n", 12, "--temperature", "1", "-s", "4", "--at-eos", "ignore")
out3 = gen(ck, "-p", "abab", "-n", 12, "--temperature", "1", "-s", "4", "--at-eos", "ignore")
ok(out2 and out2[0]["ids"] == out3[0]["ids"] and len(out2[0]["ids"]) == np0 + 12, "AR sampling: same seed, same tokens")

# ---- choice, AR ----------------------------------------------------------------------------------------------
tasks = os.path.join(tmp, "tasks.jsonl")
items = [("ab", ["a", "b", "abab"], 0), ("abba", ["ba", "ab"], 1), ("b", ["aab", "bab", "ab", "a"], 3)]
with open(tasks, "w") as f:
    for ctx, ch, gold in items:
        f.write(json.dumps({"context": ctx, "choices": ch, "gold": gold}) + "\n")
r = run(["scp-eval", "choice", "-m", ck, "--tasks", tasks, "--details", "-j", "1"])
res = json.loads(r.stdout) if r.returncode == 0 else None
if r.returncode:
    diag(r.stderr.decode())
tok = None
try:
    # the continuation ids: what generate's tokenizer gives for context + choice beyond the context's ids
    def enc(text, *extra):
        o = gen(ck, "-p", text, "-n", 0, *extra)
        return o[0]["ids"]
    worst, preds, correct = 0.0, [], 0
    for (ctx, ch, gold), d in zip(items, res["details"]):
        cids = enc(ctx)
        scores = []
        for s in ch:
            # the harness rule: the ids of context + choice after the context's ids, else the choice alone
            w = enc(ctx + s)
            if w[:len(cids)] != cids or len(w) == len(cids):
                w = cids + enc(s, "--no-bos")
            lp = torch.log_softmax(forward(w, True), -1)
            scores.append(float(sum(lp[p - 1, w[p]] for p in range(len(cids), len(w)))))
        worst = max(worst, max(abs(a - b) for a, b in zip(scores, d["scores"])))
        diag("item %s: reference %s, scp-eval %s" % (ctx, ["%.5f" % x for x in scores], ["%.5f" % x for x in d["scores"]]))
        pred = int(np.argmax(scores))
        preds.append(pred == d["pred"])
        correct += pred == gold
    ok(worst < 1e-4, "choice AR: every score is the reference's log-probability (max difference %.2e)" % worst)
    ok(all(preds) and res["correct"] == correct and res["items"] == 3 and abs(res["accuracy"] - correct / 3) < 1e-9,
       "choice AR: predictions, %d/3 correct, accuracy %.4f" % (correct, res["accuracy"]))
    se = math.sqrt(res["accuracy"] * (1 - res["accuracy"]) / 2)
    ok(abs(res["se"] - se) < 1e-9 and abs(res["chance"] - (1 / 3 + 1 / 2 + 1 / 4) / 3) < 1e-9, "choice: standard error and chance level")
except Exception as e:   # noqa: BLE001
    ok(False, "choice AR: %r" % e)

# ---- diffusion against the reference -----------------------------------------------------------------------
for shift in (0, 1):
    o = gen(dif, "-p", "abab", "-n", 6, "--steps", 1, "--shift" if shift else "--no-shift")
    if not o:
        ok(False, "diffusion one step, shift %d" % shift)
        continue
    ids = o[0]["ids"]
    npr = o[0]["prompt_tokens"]
    canvas = ids[:npr] + [MASK] * 6
    lg = forward(canvas, False)
    lg[:, MASK] = float("-inf")
    want = list(canvas)
    for p in range(npr, len(canvas)):
        want[p] = int(lg[p - 1 if shift else p].argmax())
    ok(ids == want and o[0]["steps"] == 1, "diffusion, 1 step, shift %d: every mask gets the bidirectional argmax" % shift)

# a one-token continuation: the bound is exact (l = 1 always, weight L / l = 1)
t1 = os.path.join(tmp, "one.jsonl")
open(t1, "w").write(json.dumps({"context": "abab", "choices": ["a", "b"], "gold": 0}) + "\n")
r = run(["scp-eval", "choice", "-m", dif, "--tasks", t1, "--details", "--samples", "3", "--no-shift", "-j", "1"])
if r.returncode == 0:
    d = json.loads(r.stdout)
    ctxi = gen(dif, "-p", "abab", "-n", 0)[0]["ids"]
    want = []
    for s in ("a", "b"):
        w = gen(dif, "-p", "abab" + s, "-n", 0)[0]["ids"]
        x = list(w)
        x[-1] = MASK
        want.append(float(torch.log_softmax(forward(x, False)[-1], -1)[w[-1]]))
    diff = max(abs(a - b) for a, b in zip(want, d["details"][0]["scores"]))
    ok(d["mode"] == "diffusion" and diff < 1e-4, "choice diffusion: a one-token continuation scores its masked log-probability (%.2e)" % diff)
else:
    ok(False, "choice diffusion: %s" % r.stderr.decode())
r1 = run(["scp-eval", "choice", "-m", dif, "--tasks", tasks, "--details", "--samples", "8", "-s", "3", "-j", "1"])
r2 = run(["scp-eval", "choice", "-m", dif, "--tasks", tasks, "--details", "--samples", "8", "-s", "3", "-j", "1"])
ok(r1.returncode == 0 and json.loads(r1.stdout)["details"] == json.loads(r2.stdout)["details"], "choice diffusion: deterministic for a seed")

# ---- diffusion sampling properties ---------------------------------------------------------------------------
a = gen(dif, "-p", "ab", "-n", 16, "--steps", 8, "--temperature", "1", "-s", "7")
b = gen(dif, "-p", "ab", "-n", 16, "--steps", 8, "--temperature", "1", "-s", "7")
cc = gen(dif, "-p", "ab", "-n", 16, "--steps", 8, "--temperature", "1", "-s", "8")
ok(a and a[0]["ids"] == b[0]["ids"], "diffusion: the same seed gives the same canvas")
ok(a and a[0]["ids"] != cc[0]["ids"], "diffusion: another seed gives another canvas")
ok(a and a[0]["steps"] == 8, "diffusion: --steps 8 makes 8 model calls")
# top-k 1 and a tiny top-p leave only the most probable token: any temperature then draws the argmax (one step,
# so that the commit order, which follows the confidences, plays no part)
gr = gen(dif, "-p", "ab", "-n", 16, "--steps", 1)
tk = gen(dif, "-p", "ab", "-n", 16, "--steps", 1, "--temperature", "5", "--top-k", "1", "-s", "9")
tp = gen(dif, "-p", "ab", "-n", 16, "--steps", 1, "--temperature", "5", "--top-p", "0.000001", "-s", "9")
hot = gen(dif, "-p", "ab", "-n", 16, "--steps", 1, "--temperature", "5", "-s", "9")
ok(gr and tk and tp and gr[0]["ids"] == tk[0]["ids"] == tp[0]["ids"] != hot[0]["ids"],
   "--top-k 1 and --top-p 1e-6 at temperature 5 decode as greedy does (temperature 5 alone does not)")
for order in ("low-confidence", "margin", "entropy", "random"):
    for block in (0, 4, 5):
        extra = ["--block", block] if block else []
        o = gen(dif, "-p", "ab", "-n", 16, "--steps", 8, "--order", order, "--temperature", "0.7", *extra)
        ids = o[0]["ids"] if o else [MASK]
        npr = o[0]["prompt_tokens"] if o else 0
        ok(o and MASK not in ids and len(ids) == npr + 16 and all(0 <= t < V for t in ids),
           "order %s%s: complete canvas of %d tokens, no mask left" % (order, ", --block %d" % block if block else "", len(ids)))
# infill: masks inside the prompt and a suffix
o = gen(dif, "-p", "ab<|mask|><|mask|>ab<|mask|>a", "-n", 0, "--temperature", "1", "-s", "2", "--steps", 2)
ok(o is not None, "infill runs")
if o:
    ids = o[0]["ids"]
    # the canvas before filling: the same prompt with --length 0 encodes the masks to the mask id
    tj = json.load(open(os.path.join(dif, "tokenizer.json")))
    ok(any(t["content"] == "<|mask|>" and t["id"] == MASK for t in tj["added_tokens"]), "the tokenizer knows <|mask|>")
    # the prompt's ids by hand from importgen's tokenizer.json (a = 0, b = 1, ab = 2; BOS is 1)
    enc = [BOS, 2, MASK, MASK, 2, MASK, 0]
    masked = [i for i, t in enumerate(enc) if t == MASK]
    ok(len(masked) == 3 and len(enc) == len(ids), "the prompt encodes to %d ids with 3 masks" % len(enc))
    ok(all(ids[i] == enc[i] for i in range(len(enc)) if i not in masked) and all(ids[i] != MASK for i in masked),
       "infill: tokens only where the masks were, everything else kept")
s = gen(dif, "-p", "a", "--suffix", "ab", "-n", 5, "--steps", 5)
if s:
    ids = s[0]["ids"]
    sfx = gen(ck, "-p", "ab", "-n", 0, "--no-bos")[0]["ids"]
    ok(ids[-len(sfx):] == sfx and MASK not in ids and len(ids) == s[0]["prompt_tokens"] + 5 + len(sfx),
       "--suffix: 5 tokens filled between the prompt and the suffix, which is kept")
else:
    ok(False, "--suffix")
# EOS fill: after the first committed EOS every later position is EOS. The random model rarely draws its EOS,
# so a copy of it names as EOS a token its greedy canvas holds in the middle.
g0 = gen(dif, "-p", "ab", "-n", 24, "--steps", 24, "--at-eos", "ignore")
ids0, npr = g0[0]["ids"], g0[0]["prompt_tokens"]
tok_e = ids0[npr + 8]
dif2 = os.path.join(tmp, "dif2")
shutil.copytree(dif, dif2)
c2 = json.load(open(os.path.join(dif2, "config.json")))
c2["eos_token_id"] = tok_e
json.dump(c2, open(os.path.join(dif2, "config.json"), "w"))
f = gen(dif2, "-p", "ab", "-n", 24, "--steps", 24, "--at-eos", "fill")
ids = f[0]["ids"] if f else []
first = next((i for i in range(npr, len(ids)) if ids[i] == tok_e), None)
diag("ignore: %s" % ids0)
diag("fill:   %s" % ids)
ok(f and first is not None and all(t == tok_e for t in ids[first:]) and MASK not in ids and ids0[first + 1:] != ids[first + 1:],
   "--at-eos fill: EOS (id %d) from its first commit (position %s) to the end; without fill the tail differs" % (tok_e, first))
# prompts from JSONL, text output
pj = os.path.join(tmp, "p.jsonl")
open(pj, "w").write('{"prompt": "ab"}\n\n{"prompt": "ba", "suffix": "a"}\n')
o = gen(dif, "--prompts", pj, "-n", 4, "--steps", 2)
ok(o and len(o) == 2 and o[1]["prompt"] == "ba", "--prompts: one JSON line per prompt")
r = run(["scp-eval", "generate", "-m", dif, "-p", "ab", "-n", "4", "-j", "1", "--no-bos"])
ok(r.returncode == 0 and r.stdout.decode().startswith("ab") and r.stdout.decode().endswith("\n"), "text output starts with the prompt")
# --show redraws the canvas on a terminal (script(1) provides one) and stays silent otherwise
r = run(["scp-eval", "generate", "-m", dif, "-p", "ab", "-n", "6", "--steps", "3", "--show", "-j", "1"])
ok(r.returncode == 0 and b"\033[2J" not in r.stderr, "--show draws nothing when stderr is not a terminal")
if shutil.which("script"):
    import shlex
    import subprocess
    cmd = " ".join(shlex.quote(x) for x in [os.path.join(BIN, "scp-eval"), "generate", "-m", dif, "-p", "ab", "-n", "6", "--steps", "3",
                                           "--show", "-j", "1"])
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True)
    out = r.stdout.decode(errors="replace")
    ok(r.returncode == 0 and out.count("\033[2J") >= 3 and "[step 3]" in out and "\u2591" in out,
       "--show on a terminal: one redraw per step, masks drawn as shaded blocks")
# usage errors and outside input
for args in (["-p", "a"], ["-m", dif], ["-m", dif, "-p", "a", "--order", "best"], ["-m", dif, "-p", "a", "--at-eos", "x"],
             ["-m", dif, "-p", "a", "--prompts", pj]):
    r = run(["scp-eval", "generate"] + args)
    ok(r.returncode == 2, "generate %s: usage error, exit 2" % " ".join(args[-2:]))
for sub, args in (("generate", ["-p", "a"]), ("choice", ["--tasks", pj])):
    r = run(["scp-eval", sub, "-m", dif, "--backend", "nosuch"] + args)
    ok(r.returncode == 2 and b"unknown backend 'nosuch'" in r.stderr and b"cpu-bf16" in r.stderr,
       "%s --backend nosuch: exit 2 listing the backends" % sub)
# the old spellings still work, with a warning
r = run(["scp-eval", "generate", "-m", ck, "-p", "abab", "-n", "12", "--eos", "ignore", "-t", "1", "--jsonl"])
legacy = [json.loads(l) for l in r.stdout.decode().splitlines()] if r.returncode == 0 else None
new = gen(ck, "-p", "abab", "-n", 12, "--at-eos", "ignore")
ok(legacy and new and legacy[0]["ids"] == new[0]["ids"] and b"--eos is deprecated" in r.stderr and b"use --at-eos" in r.stderr and
   b"-t is deprecated" in r.stderr, "--eos and -t: the same sample as --at-eos and -j, with warnings")
# BOS, the prompt and --length must fit the 128 positions (AR decoding: all but the last token)
for model, args, want in ((ck, ["-n", "129"], b"--length: sequences of 130 tokens need 129 positions"),
                          (ck, ["-n", "128"], b"the prompt and --length: sequences of"),
                          (dif, ["-n", "127"], b"the prompt and --length: sequences of 129 tokens need 129"),
                          (dif, ["-n", "100", "--suffix", "ab" * 30], b"the prompt, --length and the suffix: sequences of")):
    r = run(["scp-eval", "generate", "-m", model, "-p", "ab", "-j", "1"] + args)
    ok(r.returncode == 1 and want in r.stderr and b"max_position_embeddings 128" in r.stderr and not r.stdout,
       "generate %s %s past the positions: exit 1 (%s)" % (os.path.basename(model), " ".join(args),
                                                         r.stderr.decode().strip()))
r = run(["scp-eval", "generate", "-m", ck, "-p", "ab", "-n", "100", "-j", "1", "--at-eos", "ignore", "--jsonl"])
ok(r.returncode == 0 and len(json.loads(r.stdout)["ids"]) <= 128, "a sample within the positions")
open(tasks, "w").write(json.dumps({"context": "ab" * 200, "choices": ["a", "b"], "gold": 0}) + "\n")
r = run(["scp-eval", "choice", "-m", ck, "--tasks", tasks, "-j", "1"])
ok(r.returncode == 1 and b"line 1" in r.stderr and b"max_position_embeddings 128" in r.stderr,
   "a choice item past the positions: exit 1 naming the line (%s)" % r.stderr.decode().strip()[-120:])
open(pj, "w").write('{"prompt": 3}\n')
r = run(["scp-eval", "generate", "-m", dif, "--prompts", pj])
ok(r.returncode == 1 and b"p.jsonl" in r.stderr, "a bad prompts line: exit 1 naming the file")
open(tasks, "w").write('{"context": "a", "choices": ["a"], "gold": 0}\n')
r = run(["scp-eval", "choice", "-m", ck, "--tasks", tasks])
ok(r.returncode == 1 and b"line 1" in r.stderr, "a task with one choice: exit 1 naming the line")
r = run(["scp-eval", "choice", "-m", ck])
ok(r.returncode == 2, "choice without --tasks: exit 2")
done()
