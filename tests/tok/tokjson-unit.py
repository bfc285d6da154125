"""tokjson-unit.py: scp-export --format hf of a checkpoint whose tokenizer is a llama2.c tokenizer.bin writes a
tokenizer.json that Hugging Face tokenizers (the Rust library through npm @anush008/tokenizers) reads and that
encodes token for token as scp-tokenize does with the tokenizer.bin. The tokenizer.bin is written here by
hand: pieces with equal scores that overlap ("ab", "bc"), pieces reachable by two splits ("abc" = a+bc = ab+c,
" ab" = " "+ab = " a"+b), byte fallback. Without npm the merge list itself is checked against the order worked
out by hand. No assets needed."""
import atexit
import json
import os
import random
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import importgen as g  # noqa: E402
from testlib import SRCDIR, diag, done, ok, run, tmpdir  # noqa: E402

T = tmpdir()
atexit.register(shutil.rmtree, T, True)


def write_bin(path, pieces):
    """llama2.c tokenizer.bin: u32 max_token_length, then per token f32 score, i32 length, bytes."""
    toks = [(0.0, b"<unk>"), (0.0, b"\n<s>\n"), (0.0, b"\n</s>\n")] + [(0.0, b"<0x%02X>" % i) for i in range(256)]
    toks += [(s, p.encode("utf-8", "surrogateescape")) for p, s in pieces]
    out = struct.pack("<I", max(len(x) for _, x in toks))
    for s, x in toks:
        out += struct.pack("<fi", s, len(x)) + x
    open(path, "wb").write(out)
    return len(toks)


# ids 259...: "bc" before "ab" with the same score, so an id-ordered merge list would take "bc" first in "abc"
PIECES = [("bc", -1.0), ("ab", -1.0), (" a", -0.5), ("cd", -2.0), ("abc", -3.0), ("bcd", -3.0), ("da", -4.0),
          (" ab", -5.0), ("a", -20.0), ("b", -21.0), ("c", -22.0), ("d", -23.0), (" ", -24.0), ("e", -25.0)]
# Worked out by hand: score order, and within a score "a b" (A, B) before "b c" (B, C); then by joined id,
# left id. In the tokenizer.json spaces are U+2581.
EXPECTED = ["\u2581 a", "a b", "b c", "c d", "ab c", "a bc", "bc d", "b cd", "d a", "\u2581a b", "\u2581 ab"]


def export(name, pieces):
    n = write_bin(os.path.join(T, name + ".bin"), pieces)
    c = g.config("llama", vocab=n)
    src = g.make_hf(os.path.join(T, name + "-hf"), c, "F32", seed=1)
    l2c = os.path.join(T, name + "-l2c.bin")
    g.hf_to_llama2c(l2c, c, src)
    ck, out = os.path.join(T, name + "-ck"), os.path.join(T, name + "-out")
    r1 = run(["scp-import", "-q", l2c, "--tokenizer", os.path.join(T, name + ".bin"), "-o", ck])
    r2 = run(["scp-export", "-q", "--format", "hf", "-o", out, ck]) if r1.returncode == 0 else r1
    if r2.returncode:
        diag((r1.stderr + r2.stderr).decode(errors="replace"))
    return n, ck, out, r2


n, ck, out, r = export("tok", PIECES)
ok(r.returncode == 0 and r.stderr == b"", "scp-export of a tokenizer.bin checkpoint: no error, no warning")
tj = json.load(open(os.path.join(out, "tokenizer.json"), encoding="utf-8")) if r.returncode == 0 else {}
tc = json.load(open(os.path.join(out, "tokenizer_config.json"), encoding="utf-8")) if r.returncode == 0 else {}
ok(os.path.exists(os.path.join(out, "tokenizer.bin")) and
   open(os.path.join(out, "tokenizer.bin"), "rb").read() == open(os.path.join(ck, "tokenizer.bin"), "rb").read(),
   "tokenizer.bin kept beside it, byte for byte")
model = tj.get("model", {})
ok(model.get("type") == "BPE" and model.get("byte_fallback") is True and model.get("unk_token") == "<unk>" and
   len(model.get("vocab", {})) == n + 1 and model["vocab"].get("<0x0A>") == 13 and model["vocab"].get("\u2581ab") == 266 and
   model["vocab"].get("<|mask|>") == n, "tokenizer.json: BPE, byte_fallback, %d pieces + <|mask|>, spaces as U+2581" % n)
ok(model.get("merges") == EXPECTED, "merges: by score, (A,B) before (B,C) on a tie, every split of a piece")
if model.get("merges") != EXPECTED:
    diag("got %r" % model.get("merges"))
added = [(a["id"], a["content"], a["special"]) for a in tj.get("added_tokens", [])]
ok(added == [(0, "<unk>", True), (1, "<s>", True), (2, "</s>", True), (n, "<|mask|>", True)],
   "added tokens: <unk> <s> </s> and the mask token scp-import added")
ok(tc.get("tokenizer_class") == "LlamaTokenizerFast" and tc.get("bos_token") == "<s>" and tc.get("eos_token") == "</s>" and
   tc.get("mask_token") == "<|mask|>" and tc.get("added_tokens_decoder", {}).get(str(n), {}).get("content") == "<|mask|>",
   "tokenizer_config.json: LlamaTokenizerFast, <s> </s>, the mask token kept")

# Documents (scp-tokenize leaves out a document of no bytes; " " is one of no tokens): the hand-made cases, then random text over the pieces' letters, spaces, newlines, a character
# outside the vocabulary and the mask token.
docs = ["eabcd", "abc", "abcd", "bcd a", "a bc", "cab", "dabc ab bc", "  abc  d ", "ab\nbc", "\u00e9a", " ", "   ", "\n",
        "\u2581", "a \u2581", "\u2581\u2581b", "<|mask|>abc", "ab<|mask|> bc", " <|mask|> ", "a\u4e00\U0001F600b", "\t a\t"]
rng = random.Random(7)
alpha = ["a", "b", "c", "d", "e", " ", " ", "\n", "\u00e9", "<|mask|>", "\u2581"]
docs += ["".join(rng.choice(alpha) for _ in range(rng.randint(1, 40))) for _ in range(400)]
jl = os.path.join(T, "docs.jsonl")
with open(jl, "w", encoding="utf-8") as f:
    for d in docs:
        f.write(json.dumps({"text": d}) + "\n")


def scp_ids(tok_args):
    r = run(["scp-tokenize"] + tok_args + ["--format", "ids", "-q", "-j", "2", "--input-format", "jsonl", jl])
    if r.returncode:
        diag(r.stderr.decode(errors="replace"))
    return r.stdout.decode().split("\n")[:len(docs)]


want = scp_ids(["-t", os.path.join(ck, "tokenizer.bin")])
ok(len(want) == len(docs) and want[0] == "271 272 260 262" and want[1] == "261 259" and want[9] == "271 198 172 267",
   "scp-tokenize on the tokenizer.bin: 'eabcd' -> _ e ab cd (leftmost of a tie), 'abc' -> _a bc, byte fallback for e-acute")
ok(scp_ids(["-m", out]) == want, "scp-tokenize reads the exported tokenizer.json the same way (%d documents)" % len(docs))

NODE, NPM = shutil.which("node"), shutil.which("npm")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "scp-npm")
MODS = os.path.join(CACHE, "node_modules")
have = os.path.isdir(os.path.join(MODS, "@anush008", "tokenizers"))
if NODE and NPM and not have:
    os.makedirs(CACHE, exist_ok=True)
    subprocess.run([NPM, "install", "--prefix", CACHE, "--no-audit", "--no-fund", "--silent", "@anush008/tokenizers@0.6.0"],
                   capture_output=True, timeout=600)
    have = os.path.isdir(os.path.join(MODS, "@anush008", "tokenizers"))


def hf_checks():
    JS = os.path.join(SRCDIR, "tests", "tok", "tokenize-hf.js")
    ENV = dict(os.environ, NODE_PATH=MODS)

    def hf_ids(path):
        r = subprocess.run([NODE, JS, "hf", path, "jsonl", jl], capture_output=True, env=ENV, timeout=300)
        if r.returncode:
            diag(r.stderr.decode(errors="replace"))
        return r.stdout.decode().split("\n")[:len(docs)]

    got = hf_ids(os.path.join(out, "tokenizer.json"))
    same = [i for i in range(len(docs)) if i < len(got) and got[i] == want[i]]
    ok(len(same) == len(docs), "Hugging Face tokenizers on tokenizer.json = scp-tokenize on tokenizer.bin (%d/%d documents, %d tokens)"
       % (len(same), len(docs), sum(len(w.split()) for w in want)))
    for i in range(len(docs)):
        if i >= len(got) or got[i] != want[i]:
            diag("first difference, document %r: scp %s, HF %s" % (docs[i], want[i], got[i] if i < len(got) else "(none)"))
            break
    # The test can fail: with "b c" ranked before "a b" (ids' order) HF takes "a bc" in "abc".
    swapped = list(EXPECTED)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    bad = dict(tj, model=dict(model, merges=swapped))
    badp = os.path.join(T, "bad.json")
    json.dump(bad, open(badp, "w", encoding="utf-8"), ensure_ascii=False)
    b = hf_ids(badp)
    ok(len(b) == len(docs) and b[0] != want[0], "negative control: with 'b c' ranked before 'a b', HF differs on 'eabcd' (%s)" % (b[0] if b else ""))

    # and without the whitespace normalisers (LlamaConverter's layout) HF differs where spaces lead, trail or repeat
    plain = dict(tj, normalizer=dict(tj["normalizer"], normalizers=tj["normalizer"]["normalizers"][2:4]))
    json.dump(plain, open(badp, "w", encoding="utf-8"), ensure_ascii=False)
    b = hf_ids(badp)
    ok(len(b) == len(docs) and b[7] != want[7] and b[1] == want[1], "negative control: without them HF differs on %r" % docs[7])


if NODE and have:
    hf_checks()
else:
    diag("npm @anush008/tokenizers not available (offline?): Hugging Face's own tokenization not checked, the merge list was")

# (a, b) and (b, a) with one score cannot both be leftmost-first in a merge list: scp-export warns.
_, _, _, r = export("cyc", [("ab", -1.0), ("ba", -1.0), ("a", -2.0), ("b", -3.0)])
ok(r.returncode == 0 and b"overlap both ways" in r.stderr, "a tie that no merge order can follow: exported, with a warning")
# "cd" and "ab" tie; "cda" scores higher than "cd": in "cdab" SentencePiece merges c+d (leftmost), then cd+a;
# a merge list can only put one of the tied merges first: exported, with a warning.
_, _, _, r = export("later", [("ab", -1.0), ("cd", -1.0), ("cda", -0.5), ("a", -2.0), ("b", -3.0), ("c", -4.0), ("d", -5.0)])
ok(r.returncode == 0 and b"score higher than an operand that ties" in r.stderr, "a tie a higher-scored merge builds on: exported, with a warning")

# A piece that is not UTF-8 cannot be a tokenizer.json key: the weights still export, with a warning, and the
# tokenizer files are copied as they are.
_, ck2, out2, r = export("bad", [("ab", -1.0), ("\udcff", -2.0), ("a", -3.0), ("b", -4.0)])
ok(r.returncode == 0 and b"not valid UTF-8" in r.stderr and not os.path.exists(os.path.join(out2, "tokenizer.json")) and
   open(os.path.join(out2, "tokenizer_config.json"), "rb").read() == open(os.path.join(ck2, "tokenizer_config.json"), "rb").read(),
   "a piece that is not UTF-8: exported with a warning, no tokenizer.json, tokenizer files copied")
done()
