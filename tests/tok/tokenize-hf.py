"""tokenize-hf.py: scp-tokenize is token-for-token identical to Hugging Face tokenizers (the native Rust library,
npm @anush008/tokenizers) on the Qwen3 tokenizer.json and on a GPT-2 tokenizer.json built from the original
encoder.json + vocab.bpe, and the raw encoder.json + vocab.bpe path to js-tiktoken's and gpt-3-encoder's GPT-2,
over an edge-case corpus written here and the whole TinyStories sample; decoding gives the text back."""
import atexit
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ASSETS, SRCDIR, diag, done, ok, run, skip_all, tmpdir  # noqa: E402

QWEN = os.path.join(ASSETS, "tokenizers", "qwen3", "tokenizer.json")
GPT2 = os.path.join(ASSETS, "tokenizers", "gpt2")
STORIES = os.path.join(ASSETS, "corpora", "tinystories_val.txt")
for p in (QWEN, os.path.join(GPT2, "encoder.json"), STORIES):
    if not os.path.exists(p):
        skip_all("asset %s not found (set SCP_ASSETS)" % p)
NODE = shutil.which("node")
NPM = shutil.which("npm")
if not NODE or not NPM:
    skip_all("node/npm not installed (the Hugging Face tokenizers reference runs on Node)")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "scp-npm")
MODS = os.path.join(CACHE, "node_modules")
need = ["@anush008/tokenizers", "js-tiktoken", "gpt-3-encoder"]
if not all(os.path.isdir(os.path.join(MODS, m)) for m in need):
    os.makedirs(CACHE, exist_ok=True)
    r = subprocess.run([NPM, "install", "--prefix", CACHE, "--no-audit", "--no-fund", "--silent",
                        "@anush008/tokenizers@0.6.0", "js-tiktoken", "gpt-3-encoder"], capture_output=True, timeout=600)
    if r.returncode != 0 or not all(os.path.isdir(os.path.join(MODS, m)) for m in need):
        skip_all("cannot install the npm reference packages (offline?)")
JS = os.path.join(SRCDIR, "tests", "tok", "tokenize-hf.js")
ENV = dict(os.environ, NODE_PATH=MODS)

T = tmpdir()
atexit.register(shutil.rmtree, T, True)

# ---- the edge-case corpus: documents with newlines go in JSONL; invalid UTF-8 in a raw line file ----
edge = [
    "日本語のテキストです。中文文本，还有한국어 텍스트。",
    "family \U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466 flags \U0001F1EF\U0001F1F5 skin \U0001F44D\U0001F3FD heart \u2764\uFE0F",
    "e\u0301 a\u0308 x\u0301\u0323 A\u030a \u00f1 n\u0303 q\u0307\u0323",
    "caf\u00e9 vs cafe\u0301, \u212b angstrom, \u2126 ohm, \uac00 vs \u1100\u1161, \u1e9b\u0323, \u0041\u030a\u0301",
    "a  b   c\t\td\n\n\ne \n  \n\tf   ",
    "   leading spaces", "trailing spaces   ", "\n\n\n", " ", "\t", "x \u00a0 y \u3000 z \u0085 w \u2028 v \u2009 u",
    "line1\r\nline2\r\n\r\nline3\r", "\r\n\r\n  \r\n x",
    "1234567890 3.14159 1,000,000 \u0661\u0662\u0663 \u00bd \u216b 2026-11-27 12345678901234567890",
    "I'm you're he's she'd we'll they've can't I'M YOU'RE HE'S WE'LL THEY'VE DON'T It'S 'sup ' s ''s rock'n'roll o'clock 'll 'LL 'Ve '\u017f",
    "Hello<|endoftext|>world <|im_start|>user\nhi<|im_end|>\n<think>x</think>",
    "<|endoftext|><|endoftext|> < |endoftext|> <|endoftext| <|im_start|><|im_end|>",
    "def f(x):\n    return x**2  # comment\n\tif (a&&b) { c++; }\n\n\n    \n",
    "!!! ??? ... \u2014\u2013 \u00abquotes\u00bb \u201csmart\u201d \u2018single\u2019 $100 @user #tag ~~~ ---",
    "a" * 300, "supercalifragilistic" * 20, "\u4e00" * 200, "\U0001F600" * 50,
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440 \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac "
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea \u0939\u093f\u0928\u094d\u0926\u0940 \u0e44\u0e17\u0e22",
    "".join("abcdefghijklmnopqrstuvwxyz"[(i * 7919 + i * i * 31) % 26] for i in range(5000)),  # one long pre-token
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8" * 100,
    " a  <|endoftext|>  b <|im_start|>\n\tx <|im_end|> ", "x<tool_call>y <tool_call> z\t<tool_call>\n<tool_call>",
    "   \n   a", "a\n", "\n a", " ?!", "  !!\n\n", "x  \n", "\u00a0\u00a0a", "tab\tsep\tvalues\t1\t2",
]
edge_jsonl = os.path.join(T, "edge.jsonl")
with open(edge_jsonl, "w", encoding="utf-8") as f:
    for d in edge:
        f.write(json.dumps({"text": d}, ensure_ascii=True) + "\n")
bad_lines = os.path.join(T, "bad.txt")
with open(bad_lines, "wb") as f:
    for b in [b"abc\xff\xfedef", b"\xc3\x28 x", b"end \xe2\x82", b"\xf0\x9f\x98 cut emoji", b"ok \xed\xa0\x80 surrogate",
              b"\xc0\xaf overlong", b"\xf4\x90\x80\x80 big", b"mixed \xe6\x97\xa5\xff\xe6\x9c\xac"]:
        f.write(b + b"\n")


def scp_ids(tok, mode, path, extra=()):
    fmt = ["--input-format", "jsonl"] if mode == "jsonl" else ["--input-format", "text", "--doc", "line"]
    r = run(["scp-tokenize", "-t", tok, "--format", "ids", "-q", "-j", "2"] + fmt + list(extra) + [path])
    if r.returncode != 0:
        diag(r.stderr.decode(errors="replace"))
    return r.stdout.decode().splitlines()


def ref_ids(kind, tok, mode, path):
    r = subprocess.run([NODE, JS, kind, tok, mode, path], capture_output=True, env=ENV, timeout=600)
    if r.returncode != 0:
        diag(r.stderr.decode(errors="replace"))
    return r.stdout.decode().splitlines()


def same(a, b, what, docs=None):
    if a == b and a:
        return ok(True, what + " (%d documents)" % len(a))
    ok(False, what)
    diag("scp %d lines, reference %d lines" % (len(a), len(b)))
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            diag("first difference at document %d:%s" % (i, (" %r" % docs[i]) if docs and i < len(docs) else ""))
            diag("  scp: " + x[:300])
            diag("  ref: " + y[:300])
            break
    return False


# GPT-2 as a tokenizer.json, built from the original files the way HF's gpt2 tokenizer.json is laid out.
with open(os.path.join(GPT2, "encoder.json"), encoding="utf-8") as f:
    enc = json.load(f)
with open(os.path.join(GPT2, "vocab.bpe"), encoding="utf-8") as f:
    merges = [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#version")]
gpt2_json = os.path.join(T, "gpt2-tokenizer.json")
with open(gpt2_json, "w", encoding="utf-8") as f:
    json.dump({"version": "1.0", "truncation": None, "padding": None,
               "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": True, "special": True}],
               "normalizer": None,
               "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
               "post_processor": None,
               "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
               "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                         "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                         "vocab": enc, "merges": merges}}, f, ensure_ascii=False)

for name, tok in (("Qwen3", QWEN), ("GPT-2 tokenizer.json", gpt2_json)):
    same(scp_ids(tok, "jsonl", edge_jsonl), ref_ids("hf", tok, "jsonl", edge_jsonl), name + ": edge-case corpus = HF tokenizers", edge)
    same(scp_ids(tok, "lines", bad_lines), ref_ids("hf", tok, "lines", bad_lines), name + ": invalid UTF-8 (as U+FFFD) = HF tokenizers")
    same(scp_ids(tok, "lines", STORIES), ref_ids("hf", tok, "lines", STORIES), name + ": TinyStories, every line = HF tokenizers")

# Variants of the Qwen3 file: the Llama 3 Split regex (\p{N}{1,3}) with ignore_merges (Llama 3's layout, on the
# hand-written Llama 3 splitter), and the Qwen regex wrapped in a group so that it goes through PCRE2 instead
# of the hand-written splitter.
with open(QWEN, encoding="utf-8") as f:
    qj = json.load(f)
split = qj["pre_tokenizer"]["pretokenizers"][0]
qwen_re = split["pattern"]["Regex"]
llama3_re = qwen_re.replace("\\p{N}|", "\\p{N}{1,3}|")
for name, pat, ign in (("Llama-3-style (N{1,3}, ignore_merges)", llama3_re, True), ("generic regex (PCRE2)", "(?:" + qwen_re + ")", False)):
    split["pattern"]["Regex"] = pat
    qj["model"]["ignore_merges"] = ign
    path = os.path.join(T, "variant-%d.json" % len(name))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(qj, f, ensure_ascii=False)
    same(scp_ids(path, "jsonl", edge_jsonl), ref_ids("hf", path, "jsonl", edge_jsonl), name + " tokenizer.json: edge-case corpus = HF tokenizers", edge)
    same(scp_ids(path, "lines", STORIES), ref_ids("hf", path, "lines", STORIES), name + " tokenizer.json: TinyStories lines = HF tokenizers")
# Added-token options: lstrip/rstrip on special tokens, single_word on a non-special one.
qj = json.load(open(QWEN, encoding="utf-8"))
for a in qj["added_tokens"]:
    if a["content"] in ("<|endoftext|>", "<|im_start|>"):
        a["lstrip"] = True
    if a["content"] in ("<|endoftext|>", "<|im_end|>"):
        a["rstrip"] = True
    if a["content"] == "<tool_call>":
        a["single_word"] = True
path = os.path.join(T, "added-options.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(qj, f, ensure_ascii=False)
same(scp_ids(path, "jsonl", edge_jsonl), ref_ids("hf", path, "jsonl", edge_jsonl), "added tokens with lstrip/rstrip/single_word: edge-case corpus = HF tokenizers", edge)
if llama3_re == qwen_re:
    ok(False, "the Qwen3 regex did not have the expected \\p{N} alternative")
del qj

# Split behaviours through PCRE2 (on the GPT-2 vocabulary): each behavior, a literal String pattern, invert.
with open(gpt2_json, encoding="utf-8") as f:
    gj = json.load(f)
variants = [({"String": " "}, "Removed", False), ({"Regex": "\\s+"}, "MergedWithPrevious", False),
            ({"Regex": "\\s+"}, "MergedWithNext", False), ({"Regex": "[.,!?']+"}, "Contiguous", False),
            ({"Regex": "\\p{L}+"}, "Isolated", True), ({"Regex": "\\p{L}+"}, "Removed", True),
            ({"Regex": "\\p{N}|\\s"}, "MergedWithNext", True)]
for k, (pat, beh, inv) in enumerate(variants):
    gj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": pat, "behavior": beh, "invert": inv},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    path = os.path.join(T, "split-%d.json" % k)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(gj, f, ensure_ascii=False)
    same(scp_ids(path, "jsonl", edge_jsonl), ref_ids("hf", path, "jsonl", edge_jsonl),
         "Split %s %s%s: edge-case corpus = HF tokenizers" % (json.dumps(pat), beh, " invert" if inv else ""), edge)
del gj

# The whole sample as one document (blank lines, paragraph breaks and all inside one text).
whole = os.path.join(T, "whole.jsonl")
with open(STORIES, encoding="utf-8") as f, open(whole, "w", encoding="utf-8") as g:
    g.write(json.dumps({"text": f.read()}) + "\n")
for name, tok in (("Qwen3", QWEN), ("GPT-2 tokenizer.json", gpt2_json)):
    same(scp_ids(tok, "jsonl", whole), ref_ids("hf", tok, "jsonl", whole), name + ": TinyStories as one document = HF tokenizers")

# The raw GPT-2 files against the original encoder's ports (no special tokens in that text).
plain = os.path.join(T, "plain.jsonl")
with open(plain, "w", encoding="utf-8") as f:
    for d in edge:
        if "<|" not in d:
            f.write(json.dumps({"text": d}) + "\n")
enc_json = os.path.join(GPT2, "encoder.json")
mine = scp_ids(enc_json, "jsonl", plain)
same(mine, ref_ids("tiktoken-gpt2", "-", "jsonl", plain), "encoder.json + vocab.bpe: edge-case corpus = js-tiktoken gpt2")
same(scp_ids(enc_json, "lines", STORIES), ref_ids("gpt3enc", "-", "lines", STORIES), "encoder.json + vocab.bpe: TinyStories = gpt-3-encoder")
same(scp_ids(enc_json, "lines", STORIES), scp_ids(gpt2_json, "lines", STORIES), "encoder.json path = tokenizer.json path")

# Decoding gives the text back (byte-level BPE is lossless; Qwen3's NFC changes only non-NFC text).
for name, tok in (("Qwen3", QWEN), ("GPT-2", enc_json)):
    docs_in = os.path.join(T, "rt.jsonl")
    keep = [d for d in edge if "\n" not in d and "\r" not in d and "\u0085" not in d and "\u2028" not in d]
    if name == "Qwen3":
        import unicodedata
        keep = [d for d in keep if unicodedata.normalize("NFC", d) == d]
    with open(docs_in, "w", encoding="utf-8") as f:
        for d in keep:
            f.write(json.dumps({"text": d}) + "\n")
    stream = os.path.join(T, "rt.tok")
    r = run(["scp-tokenize", "-t", tok, "-q", "--input-format", "jsonl", "-o", stream, docs_in])
    d = run(["scp-tokenize", "-t", tok, "-q", "--decode", stream])
    back = d.stdout.decode("utf-8", errors="replace").split("\n")[:-1]
    if not ok(r.returncode == 0 and d.returncode == 0 and back == keep, name + ": decode(encode(text)) == text (%d documents)" % len(keep)):
        diag(r.stderr.decode() + d.stderr.decode())
        for a, b in zip(back, keep):
            if a != b:
                diag("got %r want %r" % (a, b))
                break

# SentencePiece-style BPE in tokenizer.json (Llama 2 / Mistral layout), built from tok512.model the way HF's
# LlamaConverter does: byte fallback, merges from the vocabulary, Prepend+Replace normalizer (legacy) or a
# Metaspace pre-tokenizer (prepend_scheme first).
try:
    import sentencepiece as spm
except ImportError:
    spm = None
MODEL = os.path.join(ASSETS, "models", "tok512.model")
if spm and os.path.exists(MODEL):
    sp = spm.SentencePieceProcessor(model_file=MODEL)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    normal = [i for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))]
    mer = []
    for i in normal:
        p = sp.id_to_piece(i)
        for k in range(1, len(p)):
            a, b = p[:k], p[k:]
            if a in vocab and b in vocab and vocab[a] in normal and vocab[b] in normal:
                mer.append((i, vocab[a], vocab[b], a + " " + b))
    mer.sort()
    added = [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i in (0, 1, 2)]
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None, "end_of_word_suffix": None,
             "fuse_unk": True, "byte_fallback": True, "vocab": vocab, "merges": [m[3] for m in mer]}
    dec = {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                            {"type": "ByteFallback"}, {"type": "Fuse"},
                                            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    legacy = {"version": "1.0", "added_tokens": added,
              "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                                 {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
              "pre_tokenizer": None, "post_processor": None, "decoder": dec, "model": model}
    meta = dict(legacy, normalizer=None,
                pre_tokenizer={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False})
    for name, js in (("Llama-2-style (Prepend+Replace)", legacy), ("Metaspace (prepend first)", meta)):
        path = os.path.join(T, "spm-%d.json" % len(name))
        with open(path, "w", encoding="utf-8") as f:
            json.dump(js, f, ensure_ascii=False)
        same(scp_ids(path, "jsonl", edge_jsonl), ref_ids("hf", path, "jsonl", edge_jsonl), name + " tokenizer.json: edge-case corpus = HF tokenizers", edge)
        same(scp_ids(path, "lines", STORIES), ref_ids("hf", path, "lines", STORIES), name + " tokenizer.json: TinyStories lines = HF tokenizers")
else:
    diag("python3-sentencepiece or tok512.model absent: SentencePiece-style tokenizer.json not checked")

# --no-special: the special token written in the text is not its id.
r = run(["scp-tokenize", "-t", QWEN, "--format", "ids", "-q", "-N", "-"], input=b"a<|endoftext|>b\n")
ids = r.stdout.decode().split()
ok(r.returncode == 0 and "151643" not in ids and len(ids) > 3, "--no-special encodes <|endoftext|> as text: %s" % " ".join(ids))
r = run(["scp-tokenize", "-t", QWEN, "--format", "ids", "-q", "-N", "-"], input=b"a<tool_call>b\n")
ok(r.stdout.decode().split() == ["64", "151657", "65"], "--no-special still matches non-special added tokens (<tool_call>): %s" % r.stdout.decode().strip())
r = run(["scp-tokenize", "-t", QWEN, "--format", "ids", "-q", "-"], input=b"a<|endoftext|>b\n")
ok(r.stdout.decode().split() == ["64", "151643", "65"], "special tokens in text are recognised: %s" % r.stdout.decode().strip())
done()
