"""tokjson-stories.py: the README's walkthrough checkpoint (stories260K imported with its tok512.bin) exported
with scp-export --format hf: Hugging Face tokenizers (npm @anush008/tokenizers, the Rust library) on the
exported tokenizer.json gives the same ids as scp-tokenize on the checkpoint's tokenizer.bin for every
paragraph of the TinyStories sample, the whole sample as one text, and odd text (characters outside the
vocabulary -> byte fallback, leading/trailing/repeated spaces, newlines, tabs, the mask token); decoding the
ids with HF gives the paragraph back. Needs ../shared/assets and npm (else skipped)."""
import atexit
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ASSETS, SRCDIR, diag, done, ok, run, skip_all, tmpdir  # noqa: E402

MODEL = os.path.join(ASSETS, "models", "stories260K.bin")
TOK = os.path.join(ASSETS, "models", "tok512.bin")
STORIES = os.path.join(ASSETS, "corpora", "tinystories_val.txt")
for p in (MODEL, TOK, STORIES):
    if not os.path.exists(p):
        skip_all("asset %s not found (set SCP_ASSETS)" % p)
NODE, NPM = shutil.which("node"), shutil.which("npm")
if not NODE or not NPM:
    skip_all("node/npm not installed (the Hugging Face tokenizers reference runs on Node)")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "scp-npm")
MODS = os.path.join(CACHE, "node_modules")
if not os.path.isdir(os.path.join(MODS, "@anush008", "tokenizers")):
    os.makedirs(CACHE, exist_ok=True)
    subprocess.run([NPM, "install", "--prefix", CACHE, "--no-audit", "--no-fund", "--silent", "@anush008/tokenizers@0.6.0"],
                   capture_output=True, timeout=600)
    if not os.path.isdir(os.path.join(MODS, "@anush008", "tokenizers")):
        skip_all("cannot install npm @anush008/tokenizers (offline?)")
ENV = dict(os.environ, NODE_PATH=MODS)

T = tmpdir()
atexit.register(shutil.rmtree, T, True)
ck, out = os.path.join(T, "ck"), os.path.join(T, "hf")
r = run(["scp-import", "-q", MODEL, "--tokenizer", TOK, "-o", ck])
r2 = run(["scp-export", "-q", "--format", "hf", "-o", out, ck]) if r.returncode == 0 else r
if not ok(r2.returncode == 0 and r2.stderr == b"", "import stories260K --tokenizer tok512.bin, export --format hf"):
    diag((r.stderr + r2.stderr).decode(errors="replace"))
    done()
names = sorted(os.listdir(out))
ok(names == ["config.json", "model.safetensors", "modeling_scp.py", "tokenizer.bin", "tokenizer.json",
            "tokenizer_config.json"],
   "the HF directory holds tokenizer.json and tokenizer_config.json beside tokenizer.bin (and the modeling code)")
tj = json.load(open(os.path.join(out, "tokenizer.json"), encoding="utf-8"))
ok(len(tj["model"]["vocab"]) == 513 and tj["model"]["vocab"]["<0x0A>"] == 13 and tj["added_tokens"][-1]["id"] == 512,
   "tokenizer.json: 512 pieces of tok512.bin + <|mask|> 512")

text = open(STORIES, encoding="utf-8").read()
paras = [p for p in text.split("\n\n") if p]
odd = ["  Once upon a time,   there was   a cat.  ", "\tTabs\tand\nnewlines\n\nin one text\n", "caf\u00e9 \u00fcber na\u00efve",
       "\u65e5\u672c\u8a9e \U0001F600 \u2764\uFE0F \u0416\u0436", "a\u2581b \u2581 \u2581", " ", "x", "<|mask|> Spot <|mask|>",
       "Lily said<|mask|>\"Hi!\"  ", "\u00a0nbsp\u00a0 \u3000ideographic", "\r\nwindows\r\n", "   \n   ", "1234 5678 3.14"]


def compare(docs, what):
    jl = os.path.join(T, "docs.jsonl")
    with open(jl, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    a = run(["scp-tokenize", "-t", os.path.join(ck, "tokenizer.bin"), "--format", "ids", "-q", "-j", "2", "--input-format", "jsonl", jl])
    b = subprocess.run([NODE, os.path.join(SRCDIR, "tests", "tok", "tokenize-hf.js"), "hf", os.path.join(out, "tokenizer.json"), "jsonl", jl],
                       capture_output=True, env=ENV, timeout=300)
    if a.returncode or b.returncode:
        diag((a.stderr + b.stderr).decode(errors="replace"))
    want, got = a.stdout.decode().split("\n")[:len(docs)], b.stdout.decode().split("\n")[:len(docs)]
    same = sum(1 for i in range(min(len(want), len(got))) if want[i] == got[i])
    ntok = sum(len(w.split()) for w in want)
    ok(len(want) == len(docs) and same == len(docs),
       "%s: HF tokenizer.json = scp-tokenize tokenizer.bin, %d/%d documents, %d tokens" % (what, same, len(docs), ntok))
    for i in range(min(len(want), len(got))):
        if want[i] != got[i]:
            diag("first difference, document %r:\n  scp %s\n  HF  %s" % (docs[i][:200], want[i][:300], got[i][:300]))
            break
    return got


# scp reads the exported directory (now through tokenizer.json) to the same token stream, tokenizer hash included,
# so data tokenised for the checkpoint trains the exported model and back.
a = run(["scp-tokenize", "-m", ck, "-q", "-o", os.path.join(T, "a.tok"), STORIES])
b = run(["scp-tokenize", "-m", out, "-q", "-o", os.path.join(T, "b.tok"), STORIES])
ok(a.returncode == 0 and b.returncode == 0 and open(os.path.join(T, "a.tok"), "rb").read() == open(os.path.join(T, "b.tok"), "rb").read(),
   "scp-tokenize -m on the export = on the checkpoint (token stream and tokenizer hash, byte for byte)")

compare(paras, "TinyStories, paragraph by paragraph")
compare([text], "TinyStories as one text")
compare(odd, "odd text")
# The empty text: no tokens from either (scp-tokenize writes no line for a document of no bytes).
jl = os.path.join(T, "empty.jsonl")
open(jl, "w").write('{"text": ""}\n')
a = run(["scp-tokenize", "-t", os.path.join(ck, "tokenizer.bin"), "--format", "ids", "-q", "--input-format", "jsonl", jl])
b = subprocess.run([NODE, os.path.join(SRCDIR, "tests", "tok", "tokenize-hf.js"), "hf", os.path.join(out, "tokenizer.json"), "jsonl", jl],
                   capture_output=True, env=ENV, timeout=300)
ok(a.returncode == 0 and b.returncode == 0 and a.stdout.split() == [] and b.stdout == b"\n", "the empty text: no tokens from either")

# HF decodes the ids back to the paragraph (SentencePiece normalisation aside: the sample has no space runs).
js = """const {Tokenizer} = require("@anush008/tokenizers");
(async () => { const t = Tokenizer.fromFile(process.argv[2]); const docs = require("fs").readFileSync(process.argv[3], "utf8")
  .split("\\n").filter((l) => l).map((l) => JSON.parse(l).text); let same = 0;
  for (const d of docs) { const e = await t.encode(d, null, {addSpecialTokens: true});
    const ids = e.getIds(); if (ids[0] !== 1) continue; if ((await t.decode(ids, true)) === d) same++; }
  console.log(same + " " + docs.length); })().catch((e) => { console.error(String(e)); process.exit(1); });"""
keep = [p for p in paras if "  " not in p and p == p.strip(" ")]
jl = os.path.join(T, "dec.jsonl")
with open(jl, "w", encoding="utf-8") as f:
    for d in keep:
        f.write(json.dumps({"text": d}) + "\n")
jsf = os.path.join(T, "dec.js")
open(jsf, "w").write(js)
r = subprocess.run([NODE, jsf, os.path.join(out, "tokenizer.json"), jl], capture_output=True, env=ENV, timeout=300)
ok(r.returncode == 0 and r.stdout.decode().split() == [str(len(keep))] * 2,
   "HF adds <s> and decodes the ids back to the paragraph (%s of %d)" % (r.stdout.decode().split()[:1], len(keep)))
if r.returncode:
    diag(r.stderr.decode(errors="replace"))
done()
