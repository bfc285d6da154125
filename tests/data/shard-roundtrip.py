"""shard-roundtrip.py: text -> scp-tokenize -> scp-shard -> read back -> text. The shard files are read here
with an independent parser of the documented layout (man 5 scp-shards: struct and numpy), the sequences are
put back in packing order by their packed index, and every document is rebuilt from its segments: it must
equal scp-tokenize's ids for that line token for token (BOS and EOS included), the train and val splits must
split the documents between them, and decoding the rebuilt documents must give back the original lines.
The tokenizer is a small byte-level BPE trained here by tools/scp-train-bpe, so no asset is needed."""
import json
import os
import random
import re
import struct
import subprocess
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, skip_all, done, run, tmpdir, BIN, SRCDIR  # noqa: E402

try:
    import numpy as np
except ImportError:
    skip_all("numpy not available")
for p in ("scp-tokenize", "scp-shard"):
    if not os.path.exists(os.path.join(BIN, p)):
        skip_all(p + " not built")

T = tmpdir()
rng = random.Random(4)
words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "into", "green", "forest",
         "where", "birds", "sang", "songs", "of", "old", "kings", "queens", "river", "stone", "light", "dark"]
lines = []
for i in range(300):
    n = rng.choice([1, 3, 8, 20, 60, 150])   # some documents longer than a sequence
    lines.append(" ".join(rng.choice(words) for _ in range(n)).capitalize() + rng.choice([".", "!", "?"]))
text = os.path.join(T, "corpus.txt")
open(text, "w").write("\n".join(lines) + "\n")
tok = os.path.join(T, "tokenizer.json")
r = subprocess.run(["/usr/bin/python3", os.path.join(SRCDIR, "tools", "scp-train-bpe"), text, "-o", tok, "--vocab", "400"],
                   capture_output=True)
if r.returncode != 0:
    skip_all("tools/scp-train-bpe failed: " + r.stderr.decode()[-200:])
# The special tokens' roles, as a Hugging Face model directory states them.
json.dump({"bos_token": "<s>", "eos_token": "</s>"}, open(os.path.join(T, "tokenizer_config.json"), "w"))

stream = os.path.join(T, "corpus.tok")
r = run(["scp-tokenize", "-q", "-t", tok, "--bos", "--eos", "-o", stream, text])
ok(r.returncode == 0, "scp-tokenize the corpus (a document per line)")
if r.returncode:
    diag(r.stderr.decode())
    done()
r = run(["scp-tokenize", "-q", "-t", tok, "--bos", "--eos", "--format", "ids", text])
ref = [[int(x) for x in ln.split()] for ln in r.stdout.decode().splitlines()]
ok(r.returncode == 0 and len(ref) == len(lines), "the same as id lines: %d documents" % len(ref))

shards = os.path.join(T, "set")
with open(stream, "rb") as f:
    r = run(["scp-shard", "-q", "-L", "64", "-S", "2000", "-s", "11", "-v", "0.2", "-o", shards], stdin=f)
ok(r.returncode == 0, "scp-shard from a pipe: -L 64 -v 0.2")
if r.returncode:
    diag(r.stderr.decode())
    done()
man = json.load(open(os.path.join(shards, "manifest.json")))
L = man["seq_len"]


def read_split(split):
    """(packed_index, tokens (L,), n_valid, [(doc_id, pos, doc_offset)]) for every sequence of a split."""
    out = []
    for e in sorted((e for e in man["shards"] if e["split"] == split), key=lambda e: e["index"]):
        b = open(os.path.join(shards, e["file"]), "rb").read()
        ok_crc = "%08x" % zlib.crc32(b) == e["crc32"]
        if not ok_crc:
            diag("CRC32 mismatch in " + e["file"])
        magic, ver, tb, seq_len = struct.unpack_from("<8sIII", b, 0)
        n_seqs, n_tokens, n_segs = struct.unpack_from("<QQQ", b, 48)
        assert magic == b"SCPSHRD\0" and ver == 1 and seq_len == L
        toks = np.frombuffer(b, dtype="<u2" if tb == 2 else "<u4", count=n_seqs * L, offset=128).reshape(n_seqs, L)
        o_seq = 128 + (n_seqs * L * tb + 63) // 64 * 64
        o_seg = o_seq + (n_seqs * 24 + 63) // 64 * 64
        assert len(b) == o_seg + 16 * n_segs
        for i in range(n_seqs):
            packed, seg0, nseg, nv = struct.unpack_from("<QQII", b, o_seq + 24 * i)
            segs = [struct.unpack_from("<QII", b, o_seg + 16 * (seg0 + k)) for k in range(nseg)]
            out.append((packed, toks[i], nv, segs))
    return out


docs = {}
split_of = {}
good = True
pad_ok = True
for split in ("train", "val"):
    seqs = sorted(read_split(split), key=lambda s: s[0])
    good &= [s[0] for s in seqs] == list(range(len(seqs)))
    for packed, toks, nv, segs in seqs:
        pad_ok &= bool((toks[nv:] == man["pad_value"]).all())
        for k, (d, pos, off) in enumerate(segs):
            end = segs[k + 1][1] if k + 1 < len(segs) else nv
            piece = [int(x) for x in toks[pos:end]]
            if off == 0:
                good &= d not in docs
                docs[d] = piece
                split_of[d] = split
            else:
                good &= split_of.get(d) == split and len(docs[d]) == off
                docs.setdefault(d, []).extend(piece)
ok(good, "sequences in packing order continue each document exactly where the previous piece stopped")
ok(pad_ok, "positions past n_valid hold the pad value")
ok(sorted(docs) == list(range(len(ref))), "every document is found, once")
ok(all(docs[d] == ref[d] for d in docs), "every token of every document, in order, BOS and EOS included")
nval = sum(1 for s in split_of.values() if s == "val")
vt = sum(len(docs[d]) for d in docs if split_of[d] == "val")
ok(0 < nval < len(ref) and vt >= 0.2 * sum(map(len, ref)), "val holds %d whole documents, %d tokens (>= 20%%)" % (nval, vt))

ids = os.path.join(T, "back.ids")
open(ids, "w").write("".join(" ".join(map(str, docs[d])) + "\n" for d in range(len(ref))))
r = run(["scp-tokenize", "-q", "-t", tok, "--decode", "--skip-special", ids])
back = r.stdout.decode().splitlines()
ok(r.returncode == 0 and back == lines, "decoding the rebuilt documents gives back the original text")
if back != lines:
    diag("first difference: %r" % next(((a, b) for a, b in zip(back, lines) if a != b), None))

# scp-remask --show decodes with the model's tokenizer (the same tokenizer hash as the data): with the [[ ]]
# marks taken out, every document shown whole is one of the original lines.
model = os.path.join(T, "model")
os.mkdir(model)
for f in ("tokenizer.json", "tokenizer_config.json"):
    open(os.path.join(model, f), "wb").write(open(os.path.join(T, f), "rb").read())
V = man["vocab_size"]
json.dump({"model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 1,
           "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": V + 1, "max_position_embeddings": 512,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "mask_token_id": V}, open(os.path.join(model, "config.json"), "w"))
r = run(["scp-remask", "-d", shards, "-m", model, "--show", "--max-seqs", "6"])
shown = r.stdout.decode()
ok(r.returncode == 0 and shown.count("== example") == 6 and "[[" in shown, "scp-remask --show --model: 6 examples with masked spans")
if r.returncode:
    diag(r.stderr.decode())
whole = []
for block in shown.split("== example")[1:]:
    body = block.split("\n", 1)[1].replace("[[", "").replace("]]", "")
    whole += [p.strip("\n") for p in re.split(r"<s>|</s>", body)[1:-1] if p.strip("\n")]
ok(whole and all(w in lines for w in whole), "decoded text: %d whole documents shown, each an original line" % len(whole))

# The same with a SentencePiece-style tokenizer.json (Llama 2's layout: "\u2581" for a space, prepended to the text,
# and a decoder that strips the text's first space): a span decoded alone would lose the space before its first
# word, so --show prints what each span adds to the text before it.
SP = "\u2581"
chars = sorted(set("".join(lines)) - {" "}) + [SP]
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for c in chars:
    vocab[c] = len(vocab)
merges = []
for w in sorted(set(words)):
    piece = SP
    for c in w:
        merges.append("%s %s" % (piece, c))
        piece += c
        vocab.setdefault(piece, len(vocab))
merges = list(dict.fromkeys(merges))
spm_json = {"version": "1.0", "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                                                "rstrip": False, "normalized": False, "special": True}
                                               for i, t in enumerate(("<unk>", "<s>", "</s>"))],
            "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SP},
                                                               {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
            "pre_tokenizer": None, "post_processor": None,
            "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": SP}, "content": " "},
                                                         {"type": "ByteFallback"}, {"type": "Fuse"},
                                                         {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": False, "vocab": vocab,
                      "merges": merges}}
spm_model = os.path.join(T, "spm-model")
os.mkdir(spm_model)
json.dump(spm_json, open(os.path.join(spm_model, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
json.dump({"bos_token": "<s>", "eos_token": "</s>"}, open(os.path.join(spm_model, "tokenizer_config.json"), "w"))
json.dump({"model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 1,
           "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": len(vocab) + 1,
           "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "mask_token_id": len(vocab)},
          open(os.path.join(spm_model, "config.json"), "w"))
spm_stream, spm_set = os.path.join(T, "spm.tok"), os.path.join(T, "spm-set")
r = run(["scp-tokenize", "-q", "-t", os.path.join(spm_model, "tokenizer.json"), "--bos", "--eos", "-o", spm_stream, text])
if r.returncode == 0:
    r = run(["scp-shard", "-q", "-L", "64", "-s", "11", "-o", spm_set, spm_stream])
if r.returncode == 0:
    r = run(["scp-remask", "-d", spm_set, "-m", spm_model, "--show", "--max-seqs", "6", "-s", "3"])
shown = r.stdout.decode()
# SentencePiece's decoder shows no <s> or </s> and starts each document without a space, so the documents are not
# cut apart here: every word shown must be a word of the corpus. A space lost at a span's edge joins two words
# ("queensdog"). The first and last of an example may be pieces of a word cut by the packing.
pieces, bad = 0, []
for block in shown.split("== example")[1:]:
    body = block.split("\n", 1)[1].replace("[[", "").replace("]]", "")
    body = re.sub(r" ?\(\+\d+ padding\)", "", body).strip("\n")
    ws = [w for w in re.split(r"[ .!?]+", body)][1:-1]
    pieces += len(ws)
    bad += [w for w in ws if w.lower() not in words]
ok(r.returncode == 0 and "[[" in shown and pieces > 100 and not bad,
   "scp-remask --show with a SentencePiece-style tokenizer: %d words shown, each a word of the corpus: the spaces "
   "at the spans' edges are kept (%s)" % (pieces, r.stderr.decode().strip()[-200:] or (bad[:3] or "")))
if bad or pieces <= 100:
    diag("shown: %r" % shown[:400])
done()
