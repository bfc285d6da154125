"""tokenize-spm.py: tok512 (the stories260K tokenizer) as a SentencePiece .model and as a llama2.c tokenizer.bin
encodes exactly as SentencePiece itself (Debian python3-sentencepiece) does: every paragraph of the TinyStories
sample with BOS (the stories260K perplexity reference), an edge-case corpus, invalid UTF-8; both forms hash the
same, also when carried in a checkpoint directory with an added <|mask|> token; decoding round-trips."""
import atexit
import json
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ASSETS, diag, done, ok, run, skip_all, tmpdir  # noqa: E402

MODEL = os.path.join(ASSETS, "models", "tok512.model")
BIN = os.path.join(ASSETS, "models", "tok512.bin")
STORIES = os.path.join(ASSETS, "corpora", "tinystories_val.txt")
for p in (MODEL, BIN, STORIES):
    if not os.path.exists(p):
        skip_all("asset %s not found (set SCP_ASSETS)" % p)
try:
    import sentencepiece as spm
except ImportError:
    skip_all("python3-sentencepiece is not installed")

sp = spm.SentencePieceProcessor(model_file=MODEL)
T = tmpdir()
atexit.register(shutil.rmtree, T, True)


def paragraphs(text):
    """--doc paragraph: lines between blank (empty or spaces/tabs only) lines, joined by \\n."""
    out, cur = [], []
    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        if line.strip(" \t\r") == "":
            if cur:
                out.append("\n".join(cur))
                cur = []
        else:
            cur.append(line)
    if cur:
        out.append("\n".join(cur))
    return out


def ids_of(tok, args, path=None, inp=None):
    r = run(["scp-tokenize", "-t", tok, "--format", "ids", "-q"] + args + ([path] if path else ["-"]), input=inp)
    if r.returncode != 0:
        diag(r.stderr.decode(errors="replace"))
    return [[int(x) for x in l.split()] for l in r.stdout.decode().splitlines()]


def compare(a, b, what, docs):
    if a == b and a:
        return ok(True, "%s (%d documents, %d tokens)" % (what, len(a), sum(map(len, a))))
    ok(False, what)
    diag("scp %d documents, reference %d" % (len(a), len(b)))
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            diag("document %d %r" % (i, docs[i][:200] if i < len(docs) else ""))
            diag("  scp %s" % x[:60])
            diag("  ref %s" % y[:60])
            break
    return False


with open(STORIES, encoding="utf-8") as f:
    paras = paragraphs(f.read())
want = [[1] + sp.encode(p) for p in paras]
for tok in (MODEL, BIN):
    got = ids_of(tok, ["--doc", "paragraph", "--bos", "-j", "2"], STORIES)
    compare(got, want, "%s: TinyStories paragraphs with BOS = SentencePiece" % os.path.basename(tok), paras)

edge = [
    "Hello  world ", "   leading", "trailing   ", " a  b   c ", "tab\tin\ttext", "line\nbreaks\n\nhere", "\r\n x \r\n",
    "Once upon a time, there was a little girl named Lily.", "12345 3.14 1,000", "I'm can't WE'LL it's",
    "caf\u00e9 na\u00efve \u00fcber", "\u65e5\u672c\u8a9e \u4e2d\u6587", "emoji \U0001F600\U0001F468\u200D\U0001F469 ok",
    "e\u0301 combining", "<s> not a control </s> <unk>", "\u2581 literal meta \u2581\u2581", "!!!???...", "x" * 200,
    "\u00a0nbsp\u00a0", "".join("abcdefghijklmnopqrstuvwxyz"[(i * 7919 + i * i * 31) % 26] for i in range(3000)), "mixed \u041f\u0440\u0438\u0432\u0435\u0442 words",
]
edge_jsonl = os.path.join(T, "edge.jsonl")
with open(edge_jsonl, "w", encoding="utf-8") as f:
    for d in edge:
        f.write(json.dumps({"text": d}) + "\n")
want = [sp.encode(d) for d in edge]
want_nonempty = [w for w in want]
for tok in (MODEL, BIN):
    got = ids_of(tok, ["--input-format", "jsonl"], edge_jsonl)
    compare(got, want_nonempty, "%s: edge-case corpus = SentencePiece" % os.path.basename(tok), edge)

bad = [b"abc\xff\xfedef", b"\xc3\x28 x", b"end \xe2\x82", b"ok \xed\xa0\x80 surrogate"]
bad_txt = os.path.join(T, "bad.txt")
with open(bad_txt, "wb") as f:
    f.write(b"\n".join(bad) + b"\n")
want = [sp.encode(b.decode("utf-8", errors="replace")) for b in bad]
compare(ids_of(MODEL, ["--doc", "line"], bad_txt), want, "tok512.model: invalid UTF-8 (as U+FFFD) = SentencePiece", bad)

# Decoding: SentencePiece's own decode of the same ids, and the text back where the normaliser keeps it.
texts = [p for p in paras[:300]]
src = os.path.join(T, "p.txt")
with open(src, "w", encoding="utf-8") as f:
    f.write("\n\n".join(texts) + "\n")
for tok in (MODEL, BIN):
    stream = os.path.join(T, "s.tok")
    r = run(["scp-tokenize", "-t", tok, "-q", "--doc", "paragraph", "--bos", "-o", stream, src])
    d = run(["scp-tokenize", "-t", tok, "-q", "--decode", stream])
    back = d.stdout.decode().split("\n")
    want = [sp.decode(sp.encode(p)) for p in texts]
    # a decoded document may hold newlines: rebuild from the reference instead of splitting blindly
    ok(r.returncode == 0 and d.stdout.decode() == "".join(w + "\n" for w in want),
       "%s: --decode = SentencePiece decode (300 paragraphs)" % os.path.basename(tok))
    del back

# Hashes: the header's tokenizer hash (bytes 40..47) is the same for both forms and for a checkpoint directory
# that carries tokenizer.bin plus <|mask|> at id 512.
def header(path):
    with open(path, "rb") as f:
        h = f.read(64)
    magic, ver, tb, vocab, bos, eos, pad, mask, flags, thash = struct.unpack("<8sIIIiiiiIQ", h[:48])
    return dict(vocab=vocab, bos=bos, eos=eos, pad=pad, mask=mask, hash=thash, tb=tb)


def stream_of(tok_args, name):
    p = os.path.join(T, name)
    r = run(["scp-tokenize"] + tok_args + ["-q", "-o", p, "-"], input=b"Once upon a time\n")
    return header(p) if r.returncode == 0 else {"err": r.stderr.decode()}


hm, hb = stream_of(["-t", MODEL], "m.tok"), stream_of(["-t", BIN], "b.tok")
ok(hm.get("hash") and hm.get("hash") == hb.get("hash"), "tok512.model and tok512.bin hash equal (%016x)" % hm.get("hash", 0))
ok(hm.get("vocab") == 512 and hm.get("bos") == 1 and hm.get("eos") == 2 and hm.get("mask") == -1 and hm.get("tb") == 2,
   "header: vocab 512, bos 1, eos 2, no mask, 16-bit tokens: %s" % hm)
ck = os.path.join(T, "ckpt")
os.makedirs(ck)
with open(BIN, "rb") as f, open(os.path.join(ck, "tokenizer.bin"), "wb") as g:
    g.write(f.read())
with open(os.path.join(ck, "tokenizer_config.json"), "w") as f:
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "added_tokens_decoder": {
        "512": {"content": "<|mask|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}}}, f)
hc = stream_of(["-m", ck], "c.tok")
ok(hc.get("hash") == hm.get("hash") and hc.get("vocab") == 513 and hc.get("mask") == 512 and hc.get("bos") == 1,
   "checkpoint dir (tokenizer.bin + <|mask|> 512): same hash, vocab 513, mask 512: %s" % hc)
got = ids_of(ck, [], None, b"a <|mask|> b\n") if False else None
r = run(["scp-tokenize", "-m", ck, "--format", "ids", "-q", "-"], input=b"Once<|mask|> upon\n")
ok(r.stdout.decode().split() == [str(x) for x in sp.encode("Once")] + ["512"] + [str(x) for x in sp.encode(" upon")],
   "<|mask|> in text encodes to 512: %s" % r.stdout.decode().strip())
done()
