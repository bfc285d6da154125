"""choice-formats.py: scp-eval choice on the task layouts of the usual datasets (MMLU, HellaSwag, ARC in its two
JSONL forms) with a small random Llama model made here (tests/importgen.py) and a byte-level tokenizer whose ids
are the bytes themselves, so that every expected context and continuation is tokenized here independently:
- every layout's log-likelihoods are the float64 PyTorch reference's log p(" " + choice | BOS, template), and the
  same items in the native layout give the same figures; answers as indices, letters, labels, strings;
- --template fills {question}, {choices} and any string field, with the escapes; an unknown field is refused
  naming it and the line's keys; a malformed template is a usage error;
- --shots/--num-shots put the rendered shots and their gold answers before every context (the context's
  tokens and its likelihoods say so);
- acc, acc_norm (log-likelihood / the choice's characters, lm-eval's len(choice)) and their standard errors
  are recomputed here from the per-choice log-likelihoods; --norm bytes and chars divide as documented;
- a malformed line is refused with exit 1, nothing on stdout, its file and line number, and its own keys."""
import atexit
import json
import math
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import importgen as g  # noqa: E402

try:
    import torch
    import llamaref
except ImportError:
    skip_all("numpy or torch not available")
for prog in ("scp-import", "scp-eval"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")

tmp = tmpdir()
atexit.register(shutil.rmtree, tmp, True)
src, ck = os.path.join(tmp, "src"), os.path.join(tmp, "ck")


# 256 byte tokens (id = the byte) and two added tokens; the model has room for the mask token import adds
c = g.config("llama", vocab=264, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
             num_hidden_layers=2, max_position_embeddings=512)
g.make_hf(src, c, "F32", seed=23, n_tokens=258)
bc = g.byte_chars()
tj = json.load(open(os.path.join(src, "tokenizer.json")))
tj["model"]["vocab"] = {bc[b]: b for b in range(256)}
tj["model"]["merges"] = []
tj["added_tokens"][0]["id"], tj["added_tokens"][1]["id"] = 256, 257
json.dump(tj, open(os.path.join(src, "tokenizer.json"), "w"))
tc = json.load(open(os.path.join(src, "tokenizer_config.json")))
tc["added_tokens_decoder"] = {"256": {"content": "<|endoftext|>", "special": True}}
json.dump(tc, open(os.path.join(src, "tokenizer_config.json"), "w"))
r = run(["scp-import", "-q", src, "-o", ck])
if r.returncode:
    diag(r.stderr.decode())
ok(r.returncode == 0, "import a random llama model with a byte-level tokenizer")
cfg = json.load(open(os.path.join(ck, "config.json")))
BOS = cfg["bos_token_id"]
W = llamaref.load_weights(ck)
memo = {}


def ref_loglik(context, cont):
    """log p(cont | BOS, context) by the reference, the ids being the UTF-8 bytes."""
    key = (context, cont)
    if key not in memo:
        ctx = [BOS] + list(context.encode())
        ids = ctx + list(cont.encode())
        lp = torch.log_softmax(llamaref.forward(W, c, ids, True), -1)
        memo[key] = float(sum(lp[p - 1, ids[p]] for p in range(len(ctx), len(ids))))
    return memo[key]


def close(a, b):
    """Agreement of float32 sums with the float64 reference: this random model's logits are large, a token's
    log-probability reaches -20 and a choice's -600 (a wrong context or continuation moves them by units)."""
    return abs(a - b) <= 2e-4 + 1e-6 * abs(b)


def all_close(out, want):
    """Every per-choice log-likelihood of out's details against want (per item, per choice)."""
    return bool(out) and len(out["details"]) == len(want) and all(
        len(it["logliks"]) == len(w) and all(close(a, b) for a, b in zip(it["logliks"], w))
        for it, w in zip(out["details"], want))


def write(name, rows):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        for x in rows:
            f.write((x if isinstance(x, str) else json.dumps(x)) + "\n")
    return path


def choice(*args):
    """scp-eval choice with --details: its JSON, or None (with the stderr shown)."""
    r = run(["scp-eval", "choice", "-m", ck, "--details", "-j", "1"] + [str(a) for a in args])
    if r.returncode:
        diag("choice %s: exit %d: %s" % (" ".join(map(str, args)), r.returncode, r.stderr.decode()))
        return None
    return json.loads(r.stdout)


# The items: (question, choices, gold); lengths differ widely so that acc and acc_norm can part, and one
# choice is not ASCII so that characters and bytes differ.
ITEMS = [("The cat sat on the", ["mat", "moon and the seven stars", "idea"], 0),
         ("Two plus two is", ["four", "five"], 1),
         ("Rain falls from the", ["sky", "ground below the old bridge", "sea", "caf\u00e9 \u00e0 l'\u00e9glise"], 3),
         ("Water is", ["wet", "dry", "a very long answer that goes on"], 2),
         ("Snow is", ["cold", "x"], 0)]
LETTERS = "ABCDEFGH"
ARC_NUM = 2   # this item's labels are 1..4, as some ARC items have
QTPL = "Question: %s\nAnswer:"


def labels(i, n):
    return [str(k + 1) for k in range(n)] if i == ARC_NUM else list(LETTERS[:n])


layouts = {
    "native": [{"context": QTPL % q, "choices": [" " + x for x in ch], "gold": gd} for q, ch, gd in ITEMS],
    "mmlu-index": [{"question": q, "choices": ch, "answer": gd} for q, ch, gd in ITEMS],
    "mmlu-letter": [{"question": q, "subject": "misc", "choices": ch, "answer": LETTERS[gd]} for q, ch, gd in ITEMS],
    "arc-hf": [{"id": "q%d" % i, "question": q, "choices": {"text": ch, "label": labels(i, len(ch))},
                "answerKey": labels(i, len(ch))[gd]} for i, (q, ch, gd) in enumerate(ITEMS)],
    "arc-jsonl": [{"id": "q%d" % i, "question": {"stem": q, "choices": [{"text": x, "label": lb} for x, lb in
                                                                       zip(ch, labels(i, len(ch)))]},
                   "answerKey": labels(i, len(ch))[gd]} for i, (q, ch, gd) in enumerate(ITEMS)],
    "hellaswag": [{"ind": i, "activity_label": "Misc", "ctx": QTPL % q, "endings": ch, "label": str(gd)}
                  for i, (q, ch, gd) in enumerate(ITEMS)],
}
want_layout = {"native": "native", "mmlu-index": "mmlu", "mmlu-letter": "mmlu", "arc-hf": "arc", "arc-jsonl": "arc",
               "hellaswag": "hellaswag"}
# the reference: context "Question: q\nAnswer:", continuation " " + choice, for every layout
ref = [[ref_loglik(QTPL % q, " " + x) for x in ch] for q, ch, _ in ITEMS]
res = {}
for name, rows in layouts.items():
    out = choice("--tasks", write(name + ".jsonl", rows))
    res[name] = out
    if not out:
        ok(False, "layout %s: scored" % name)
        continue
    d = out["details"]
    worst = max(abs(a - b) for it, rf in zip(d, ref) for a, b in zip(it["logliks"], rf))
    ok(all_close(out, ref) and all(it["layout"] == want_layout[name] for it in d),
       "layout %s: read as %s; every log-likelihood is the reference's (max difference %.1e)"
       % (name, want_layout[name], worst))
    ok([it["gold"] for it in d] == [gd for _, _, gd in ITEMS], "layout %s: the gold answers" % name)
    ok(all(it["context_tokens"] == len((QTPL % q).encode()) for it, (q, _, _) in zip(d, ITEMS)),
       "layout %s: the context is the default template's, token for token" % name)
if all(res.values()):
    base = res["native"]["details"]
    same = all(a["logliks"] == b["logliks"] and a["pred"] == b["pred"] for n in layouts
               for a, b in zip(res[n]["details"], base))
    ok(same and len({res[n]["acc"] for n in layouts}) == 1,
       "the native layout and the five others give the same per-item log-likelihoods and acc")
    diag("reference log-likelihoods: %s" % [["%.4f" % x for x in r] for r in ref])

# ---- acc, acc_norm and standard errors recomputed from the log-likelihoods ----------------------------------


def mean_stderr(xs):
    n = len(xs)
    m = sum(xs) / n
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1) / n)


def argmax(xs):
    return max(range(len(xs)), key=lambda k: (xs[k], -k))


for name, lens in (("mmlu-index", lambda ch: [len(x) for x in ch]), ("native", lambda ch: [len(" " + x) for x in ch])):
    out = res.get(name)
    if not out:
        continue
    lls = [it["logliks"] for it in out["details"]]
    acc = [1.0 if argmax(ll) == gd else 0.0 for ll, (_, _, gd) in zip(lls, ITEMS)]
    accn = [1.0 if argmax([a / b for a, b in zip(ll, lens(ch))]) == gd else 0.0 for ll, (_, ch, gd) in zip(lls, ITEMS)]
    (m, s), (mn, sn) = mean_stderr(acc), mean_stderr(accn)
    ok(abs(out["acc"] - m) < 1e-12 and abs(out["acc_stderr"] - s) < 1e-9 and out["n"] == len(ITEMS) and
       out["items"] == len(ITEMS) and abs(out["accuracy"] - m) < 1e-12 and abs(out["se"] - s) < 1e-9,
       "%s: acc %.3f +- %.4f recomputed from the log-likelihoods (and the accuracy of --norm none)" % (name, m, s))
    ok(abs(out["acc_norm"] - mn) < 1e-12 and abs(out["acc_norm_stderr"] - sn) < 1e-9,
       "%s: acc_norm %.3f +- %.4f recomputed, log-likelihood / len(choice)" % (name, mn, sn))
    ok(all(it["chars"] == lens(ch) for it, (_, ch, _) in zip(out["details"], ITEMS)),
       "%s: the characters of each choice as written (%s)" % (name, out["details"][2]["chars"]))
if res.get("mmlu-index"):
    ll = [it["logliks"] for it in res["mmlu-index"]["details"]]
    parted = sum(argmax(x) != argmax([a / len(b) for a, b in zip(x, ch)]) for x, (_, ch, _) in zip(ll, ITEMS))
    ok(parted > 0, "acc and acc_norm pick different choices on %d of the items" % parted)
out = choice("--tasks", os.path.join(tmp, "mmlu-index.jsonl"), "--norm", "chars")
ok(out and all(abs(s - a / len(x)) < 1e-9 * abs(s) for it, (_, ch, _) in zip(out["details"], ITEMS)
               for s, a, x in zip(it["scores"], it["logliks"], ch)) and out["accuracy"] == out["acc_norm"],
   "--norm chars: scores are log-likelihood / characters, the accuracy is acc_norm")
out = choice("--tasks", os.path.join(tmp, "mmlu-index.jsonl"), "--norm", "bytes")
ok(out and all(abs(s - a / len((" " + x).encode())) < 1e-9 * abs(s) for it, (_, ch, _) in zip(out["details"], ITEMS)
               for s, a, x in zip(it["scores"], it["logliks"], ch)),
   "--norm bytes: scores are log-likelihood / the continuation's bytes (the delimiter and UTF-8 included)")
one = write("one.jsonl", [layouts["mmlu-index"][0]])
out = choice("--tasks", one)
ok(out and out["n"] == 1 and out["acc_stderr"] is None and out["acc_norm_stderr"] is None,
   "one item: no standard error (null)")

# ---- templates ----------------------------------------------------------------------------------------------
letter = os.path.join(tmp, "mmlu-letter.jsonl")
out = choice("--tasks", letter, "--template", r"Q: {question}\n\tSubject {subject} \{x\} \\ {context}\nA:")
want = [[ref_loglik("Q: %s\n\tSubject misc {x} \\ %s\nA:" % (q, q), " " + x) for x in ch] for q, ch, _ in ITEMS]
ok(all_close(out, want),
   "--template: {question}, {context}, a string field and the escapes \\n \\t \\{ \\} \\\\, by the reference")
out = choice("--tasks", os.path.join(tmp, "arc-hf.jsonl"), "--template", r"{question}\n{choices}\nAnswer:")
want = [[ref_loglik("%s\n%s\nAnswer:" % (q, "\n".join("%s. %s" % (lb, y) for lb, y in zip(labels(i, len(ch)), ch))),
                    " " + x) for x in ch] for i, (q, ch, _) in enumerate(ITEMS)]
ok(all_close(out, want),
   "--template {choices}: one line per choice, with the item's own labels (1..4 on item 3)")
out = choice("--tasks", os.path.join(tmp, "hellaswag.jsonl"), "--template", "{activity_label}: {ctx}")
want = [[ref_loglik("Misc: " + QTPL % q, " " + x) for x in ch] for q, ch, _ in ITEMS]
ok(all_close(out, want),
   "--template on HellaSwag lines: {activity_label}: {ctx}")
r = run(["scp-eval", "choice", "-m", ck, "--tasks", letter, "--template", "{question} ({topic})"])
err = r.stderr.decode()
ok(r.returncode == 1 and not r.stdout and "mmlu-letter.jsonl: line 1:" in err and "{topic}" in err and
   "has keys question, subject, choices, answer" in err, "an unknown {field}: exit 1 naming it and the line's keys (%s)"
   % err.strip())
for bad, what in (("Q: {question", "'{' at offset 3"), ("{}", "'{' at offset 0"), (r"a\qb", "unknown escape '\\q'")):
    r = run(["scp-eval", "choice", "-m", ck, "--tasks", letter, "--template", bad])
    ok(r.returncode == 2 and what in r.stderr.decode() and not r.stdout,
       "--template %r: usage error, exit 2 (%s)" % (bad, r.stderr.decode().splitlines()[0] if r.stderr else ""))

# ---- few-shot -----------------------------------------------------------------------------------------------
SHOTS = [{"question": "Fire is", "choices": ["hot", "cold"], "answer": "A"},
         {"question": {"stem": "Ice is"}, "choices": {"text": ["warm", "frozen"], "label": ["1", "2"]}, "answerKey": "2"},
         {"ctx": "Grass is", "endings": ["green", "blue"], "label": "0"}]
shots = write("shots.jsonl", ["", SHOTS[0], SHOTS[1], "  ", SHOTS[2]])
prefix2 = "Question: Fire is\nAnswer: hot\n\nQuestion: Ice is\nAnswer: frozen\n\n"
prefix3 = prefix2 + "Grass is green\n\n"
for n, prefix in ((2, prefix2), (3, prefix3)):
    out = choice("--tasks", os.path.join(tmp, "mmlu-index.jsonl"), "--shots", shots, "--num-shots", n)
    want = [[ref_loglik(prefix + QTPL % q, " " + x) for x in ch] for q, ch, _ in ITEMS]
    ok(out and out["num_shots"] == n and
       all(it["context_tokens"] == len((prefix + QTPL % q).encode()) for it, (q, _, _) in zip(out["details"], ITEMS)) and
       out["context_tokens"] == sum(len((prefix + QTPL % q).encode()) for q, _, _ in ITEMS) and
       all_close(out, want),
       "--num-shots %d: each context is the shots (template + gold answer, blank lines between) and the item" % n)
out = choice("--tasks", os.path.join(tmp, "mmlu-index.jsonl"), "--shots", shots)
ok(out and out["num_shots"] == 3, "--shots without --num-shots: every item of the file")
out = choice("--tasks", os.path.join(tmp, "native.jsonl"), "--shots", shots, "--num-shots", 1,
             "--template", r"Q: {question}\nA:")
want = [[ref_loglik("Q: Fire is\nA: hot\n\n" + "Q: " + QTPL % q + "\nA:", " " + x) for x in ch] for q, ch, _ in ITEMS]
ok(all_close(out, want),
   "--template applies to the shots and the items alike")
r = run(["scp-eval", "choice", "-m", ck, "--tasks", one, "--shots", shots, "--num-shots", "4"])
ok(r.returncode == 1 and not r.stdout and b"shots.jsonl: 3 items, fewer than --num-shots 4" in r.stderr,
   "--num-shots beyond the file: exit 1 (%s)" % r.stderr.decode().strip())
r = run(["scp-eval", "choice", "-m", ck, "--tasks", one, "--num-shots", "2"])
ok(r.returncode == 2 and b"--shots" in r.stderr, "--num-shots without --shots: usage error")
badshots = write("badshots.jsonl", [SHOTS[0], {"question": "q", "options": ["a", "b"]}])
r = run(["scp-eval", "choice", "-m", ck, "--tasks", one, "--shots", badshots])
ok(r.returncode == 1 and not r.stdout and b"badshots.jsonl: line 2: has keys question, options; expected choices or endings"
   in r.stderr, "a malformed shot: exit 1 naming the shots file and line (%s)" % r.stderr.decode().strip())

# ---- malformed lines ------------------------------------------------------------------------------------------
good = layouts["mmlu-index"][0]
BAD = [({"question": "q", "options": ["a", "b"], "answer": 0}, "has keys question, options, answer; expected choices or endings"),
       ({"text": "hello", "label": 1}, "has keys text, label; expected choices or endings"),
       ({"ctx": "x", "endings": ["a", "b"]}, "has keys ctx, endings; expected the answer under label, gold or answer"),
       ({"endings": ["a", "b"], "label": "0"}, "has keys endings, label; expected the context under ctx, context or query"),
       ({"question": {"text": "x"}, "choices": ["a", "b"], "answer": 0}, 'question has keys text; expected a "stem" string',
        ["text"]),
       ({"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "C"},
        'answerKey "C" is not one of the labels A, B'),
       ({"question": "q", "choices": ["a", "b"], "answer": "Z"}, 'answer "Z" is not one of the labels A, B'),
       ({"question": "q", "choices": ["a", "b"], "answer": 5}, "answer 5 is not an index into the 2 choices"),
       ({"ctx": "x", "endings": ["a", "b"], "label": "7"}, 'label "7" is not an index into the 2 choices'),
       ({"ctx": "x", "endings": ["a", "b"], "label": "yes"}, 'label "yes" is not one of the labels A, B nor an index'),
       ({"question": "q", "choices": ["a"], "answer": 0}, "choices has 1 entry; at least two are needed"),
       ({"question": "q", "choices": ["a", 3], "answer": 0}, "choices[1] is not a string"),
       ({"question": "q", "choices": ["a", ""], "answer": 0}, "choices[1] is empty"),
       ({"context": 7, "choices": ["a", "b"], "gold": 0}, "context is not a string"),
       ({"question": "q", "choices": ["a", "\u0000b"], "answer": 0}, "choices[1] holds a NUL character"),
       ({"question": "q\u0000", "choices": ["a", "b"], "answer": 0}, "question holds a NUL character"),
       ({"context": "c\u0000", "choices": ["a", "b"], "gold": 0}, "context holds a NUL character"),
       ("[1, 2]", "not a JSON object"),
       ('{"question": "q", "choices": ["a", "b"', "invalid JSON")]
for line, want, *inner in BAD:
    path = write("bad.jsonl", [good, "", line])
    r = run(["scp-eval", "choice", "-m", ck, "--tasks", path])
    err = r.stderr.decode()
    keys = inner[0] if inner else list(line) if isinstance(line, dict) else []
    m = re.search(r"has keys ([^;]*);", err)
    named = m.group(1).split(", ") if m else keys
    ok(r.returncode == 1 and not r.stdout and "bad.jsonl: line 3" in err and want in err and named == keys,
       "line 3 %s: exit 1, nothing on stdout (%s)" % (line if isinstance(line, str) else json.dumps(line)[:40],
                                                      err.strip()))
done()
