"""import-qwen3.py: the real Qwen3 tokenizer (../shared/assets/tokenizers/qwen3) with a tiny random Qwen3 model
whose embedding is padded to 151936 rows as the real one is. The mask token must be 151669, the first padded row
(what RND1 uses), with nothing appended; tokenizer.json keeps everything and gains <|mask|>. The same model and
vocabulary as a GGUF file (tokens, types and merges laid out as llama.cpp's converter writes them, padding as
UNUSED [PAD] tokens) must give a tokenizer.json with the real file's vocabulary, merges, added tokens, normalizer
and pre-tokenizer. Skips (77) without the assets."""
import atexit
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ASSETS, ok, diag, skip_all, done, run, tmpdir  # noqa: E402
import importgen as g  # noqa: E402

QT = os.path.join(ASSETS, "tokenizers", "qwen3")
if not os.path.exists(os.path.join(QT, "tokenizer.json")):
    skip_all("asset tokenizers/qwen3/tokenizer.json not found (set SCP_ASSETS)")

tmp = tmpdir()
atexit.register(shutil.rmtree, tmp, True)
V = 151936
c = g.config("qwen3", tied=True, vocab=V, hidden_size=8, num_attention_heads=2, num_key_value_heads=1, head_dim=4,
             intermediate_size=8, num_hidden_layers=1, bos_token_id=151643, eos_token_id=151645)
d = os.path.join(tmp, "qwen3-tiny")
src = g.make_hf(d, c, "BF16", seed=1)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(QT, f), os.path.join(d, f))
out = os.path.join(tmp, "ckpt")
r = run(["scp-import", d, "-o", out])
diag(r.stderr.decode())
ok(r.returncode == 0, "a Qwen3 model with the real Qwen3 tokenizer imports")
oc = json.load(open(os.path.join(out, "config.json")))
ok(oc["mask_token_id"] == 151669 and oc["vocab_size"] == V, "mask token 151669 (the first padded row, as RND1), no row appended")
ok(g.read_st(os.path.join(out, "model.safetensors")) == src, "every tensor bit-exact")
orig = json.load(open(os.path.join(QT, "tokenizer.json")))
tj = json.load(open(os.path.join(out, "tokenizer.json")))
extra = [a for a in tj["added_tokens"] if a not in orig["added_tokens"]]
ok(extra == [{"id": 151669, "content": "<|mask|>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}], "tokenizer.json gains exactly the <|mask|> added token")
tj["added_tokens"] = [a for a in tj["added_tokens"] if a["id"] != 151669]
ok(tj == orig, "everything else in tokenizer.json is unchanged (vocabulary, merges, regex, normalizer)")
tc = json.load(open(os.path.join(out, "tokenizer_config.json")))
oc_tc = json.load(open(os.path.join(QT, "tokenizer_config.json")))
ok(tc["added_tokens_decoder"]["151669"]["content"] == "<|mask|>" and tc["mask_token"] == "<|mask|>" and
   tc["chat_template"] == oc_tc["chat_template"] and len(tc["added_tokens_decoder"]) == len(oc_tc["added_tokens_decoder"]) + 1,
   "tokenizer_config.json: <|mask|> in added_tokens_decoder, mask_token set, the rest kept")

# The same as GGUF, laid out as llama.cpp's convert_hf_to_gguf does for a gpt2-type (byte-level BPE) vocabulary.
rev = {i: t for t, i in orig["model"]["vocab"].items()}
added = {a["id"]: a for a in orig["added_tokens"]}
toks, types = [], []
for i in range(V):
    if i in added:
        toks.append(added[i]["content"])
        types.append(3 if added[i]["special"] else 4)
    elif i in rev:
        toks.append(rev[i])
        types.append(1)
    else:
        toks.append("[PAD%d]" % i)
        types.append(5)
merges = [" ".join(m) if isinstance(m, list) else m for m in orig["model"]["merges"]]
kv = [("tokenizer.ggml.pre", 8, "qwen2"), ("tokenizer.ggml.merges", 9, (8, merges)),
      ("tokenizer.ggml.padding_token_id", 4, 151643)]
gg = os.path.join(tmp, "qwen3-tiny.gguf")
g.hf_to_gguf(gg, c, src, extra_kv=kv, tokens=(toks, types), tok_model="gpt2")
out2 = os.path.join(tmp, "ckpt-gguf")
r = run(["scp-import", gg, "-o", out2])
diag(r.stderr.decode())
ok(r.returncode == 0, "the GGUF form imports")
if r.returncode == 0:
    oc2 = json.load(open(os.path.join(out2, "config.json")))
    ok(oc2["mask_token_id"] == 151669 and oc2["vocab_size"] == V, "GGUF: mask token 151669 (UNUSED padding is not vocabulary)")
    ok(g.read_st(os.path.join(out2, "model.safetensors")) == src, "GGUF: the same tensors as the HF source")
    t2 = json.load(open(os.path.join(out2, "tokenizer.json")))
    m2 = [list(m) for m in t2["model"]["merges"]]
    om = [m if isinstance(m, list) else m.split(" ") for m in orig["model"]["merges"]]
    ok(t2["model"]["vocab"] == orig["model"]["vocab"] and m2 == om, "GGUF: BPE vocabulary and merges equal the real tokenizer.json's")
    strip = lambda a: (a["id"], a["content"], a["special"])  # noqa: E731
    ok([strip(a) for a in t2["added_tokens"]] == [strip(a) for a in orig["added_tokens"]] + [(151669, "<|mask|>", True)],
       "GGUF: added tokens (ids, contents, special flags) equal the real ones, plus <|mask|>")
    ok(t2["normalizer"] == orig["normalizer"] and t2["pre_tokenizer"] == orig["pre_tokenizer"] and
       t2["model"]["type"] == "BPE" and t2["decoder"] == orig["decoder"],
       "GGUF: normalizer, pre-tokenizer (the qwen2 regex) and decoder equal the real ones")
    tc2 = json.load(open(os.path.join(out2, "tokenizer_config.json")))
    ok(tc2["eos_token"] == "<|im_end|>" and tc2["bos_token"] == "<|endoftext|>" and tc2["pad_token"] == "<|endoftext|>" and
       tc2["added_tokens_decoder"]["151669"]["content"] == "<|mask|>", "GGUF: tokenizer_config.json special tokens and <|mask|>")

# Through the suite's tokenizer (scp-tokenize, where built): the GGUF-derived tokenizer.json encodes text exactly as
# the real one does, and both checkpoints know <|mask|> as 151669.
if os.path.exists(os.path.join(os.path.dirname(run(["scp-import", "--version"]).args[0]), "scp-tokenize")) and r.returncode == 0:
    text = ("Once upon a time, in 2024, a café served 42 crêpes... Ünïcödé, 日本語のテキスト, emojis 🙂🙃 and\n"
            "  indented code: def f(x): return x**2  # it's done\n").encode()
    ref = run(["scp-tokenize", "-t", os.path.join(QT, "tokenizer.json"), "--format", "ids", "--doc", "file"], input=text)
    a = run(["scp-tokenize", "-m", out, "--format", "ids", "--doc", "file"], input=text + b"<|mask|>")
    b = run(["scp-tokenize", "-m", out2, "--format", "ids", "--doc", "file"], input=text + b"<|mask|>")
    ids = lambda p: [int(x) for x in p.stdout.split()] if p.returncode == 0 else [p.stderr]  # noqa: E731
    ok(ref.returncode == 0 and ids(a) == ids(ref) + [151669], "scp-tokenize -m on the HF import: the real tokenizer's ids, then 151669")
    ok(ref.returncode == 0 and ids(b) == ids(ref) + [151669], "scp-tokenize -m on the GGUF import: the same ids as the real tokenizer.json")
    if ids(b) != ids(ref) + [151669]:
        diag("%s\n%s" % (ids(ref), ids(b)))
done()
