#!/usr/bin/env python3
"""fuzzseeds.py: seed corpora for the libFuzzer targets of `make fuzz-run` (mk/core.am): small valid inputs of
each format, written here from the format descriptions without scp.

usage: fuzzseeds.py KIND DIR, KIND one of the keys of KINDS below."""
import json
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import importgen as g  # noqa: E402


def put(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def crc(b):
    return zlib.crc32(b) & 0xFFFFFFFF


# ---- JSON and config.json ----------------------------------------------------------------------------------
def json_seeds(d):
    put(d, "object.json", '{"a": 1, "b": [true, false, null], "c": {"d": "e\\u00e9\\n", "f": -1.5e-3}}')
    put(d, "array.json", '[1, 2.0, "x", [], {}]')
    put(d, "nested.json", '{"x": {"y": {"z": [[[0]]]}}, "big": 9223372036854775807, "small": -9223372036854775808}')
    put(d, "strings.json", '{"nul": "a\\u0000b", "surrogate": "\\ud83d\\ude00", "esc": "\\"\\\\\\/\\b\\f\\r\\t"}')


def config_seeds(d):
    for arch in ("llama", "qwen2", "qwen3", "qwen3_moe"):
        put(d, arch + ".json", json.dumps(g.config(arch)))
    put(d, "llama3-rope.json", json.dumps(g.config("llama", rope_scaling={"rope_type": "llama3", "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})))
    put(d, "scp-keys.json", json.dumps(g.config("qwen2", mask_token_id=39, is_causal=False, shift_logits=False,
                                                  eos_token_id=[2, 3], tie_word_embeddings=True)))


# ---- tokenizers ----------------------------------------------------------------------------------------------
def tokenizer_json_seeds(d):
    alpha = g.byte_chars()
    vocab = {alpha[b]: b for b in range(256)}
    vocab.update({"he": 256, "ll": 257, "hell": 258, "\u0120w": 259})
    bl = {"model": {"type": "BPE", "vocab": vocab, "merges": ["h e", "l l", "he ll", "\u0120 w"]},
          "added_tokens": [{"id": 260, "content": "<|end|>", "special": True},
                           {"id": 261, "content": "<|mask|>", "special": True, "lstrip": True, "rstrip": True}],
          "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
          "normalizer": None, "decoder": {"type": "ByteLevel"}}
    put(d, "bytelevel.json", json.dumps(bl))
    split = dict(bl, pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\s+|[a-z]+"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": True, "use_regex": False}]}, normalizer={"type": "NFC"})
    put(d, "split.json", json.dumps(split))
    pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + ["\u2581", "a", "b", "\u2581a", "ab", "\u2581ab"]
    spm = {"model": {"type": "BPE", "vocab": {p: i for i, p in enumerate(pieces)}, "byte_fallback": True, "unk_token": "<unk>",
                     "merges": [["\u2581", "a"], ["a", "b"], ["\u2581a", "b"]]},
           "added_tokens": [{"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True}],
           "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                              {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
           "pre_tokenizer": None,
           "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                        {"type": "ByteFallback"}, {"type": "Fuse"},
                                                        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}}
    put(d, "spm-style.json", json.dumps(spm))
    meta = dict(spm, normalizer=None, pre_tokenizer={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                                                      "split": True}, decoder={"type": "Metaspace", "prepend_scheme": "first"})
    put(d, "metaspace.json", json.dumps(meta))


def varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wt, payload):
    key = varint(num << 3 | wt)
    if wt == 0:
        return key + varint(payload)
    if wt == 5:
        return key + struct.pack("<f", payload)
    return key + varint(len(payload)) + payload


def spm_model_seed(d):
    """A SentencePiece ModelProto (BPE): pieces (text, score, type), trainer_spec, normalizer_spec."""
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)] + [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
    pieces += [("\u2581", -1.0, 1), ("a", -2.0, 1), ("b", -3.0, 1), ("\u2581a", -0.5, 1), ("ab", -0.7, 1), ("<user>", 0.0, 4)]
    out = b""
    for text, score, typ in pieces:
        out += field(1, 2, field(1, 2, text.encode()) + field(2, 5, score) + field(3, 0, typ))
    out += field(2, 2, field(3, 0, 2) + field(35, 0, 1) + field(40, 0, 0) + field(41, 0, 1) + field(42, 0, 2))
    out += field(3, 2, field(1, 2, b"identity") + field(3, 0, 1) + field(4, 0, 1) + field(5, 0, 1))
    put(d, "spm.model", out)


def llama2c_bin_seed(d):
    toks = [(0.0, b"<unk>"), (0.0, b"\n<s>\n"), (0.0, b"\n</s>\n")] + [(0.0, b"<0x%02X>" % i) for i in range(256)]
    toks += [(-1.0, b" "), (-2.0, b"a"), (-3.0, b"b"), (-0.5, b" a"), (-0.7, b"ab"), (-0.2, b" ab")]
    out = struct.pack("<I", max(len(x) for _, x in toks))
    for s, x in toks:
        out += struct.pack("<fi", s, len(x)) + x
    put(d, "tokenizer.bin", out)


def tokenizer_seeds(d):
    tokenizer_json_seeds(d)
    spm_model_seed(d)
    llama2c_bin_seed(d)


# ---- documents: the first byte holds the options (fuzz-textinput.c), the rest is the file ------------------
def textinput_seeds(d):
    import gzip
    import io
    import tarfile
    text = b"First line.\r\nSecond line.\n\n\nA paragraph\nof two lines.\n \t\nlast"
    jsonl = b'{"text": "one"}\n\n{"text": "two\\nlines", "id": 2}\n{"other": 1}\n[1]\n{"text": 3}\n'
    for doc in range(3):
        put(d, "text-%d" % doc, bytes([doc | 1 << 2]) + text)
    put(d, "jsonl", bytes([2 << 2]) + jsonl)
    put(d, "jsonl-skip-bad", bytes([2 << 2 | 1 << 4]) + jsonl)
    put(d, "text.gz", bytes([1]) + gzip.compress(text, mtime=0))
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        for name, data in (("a.txt", text), ("b.jsonl", jsonl), ("empty.txt", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    put(d, "members.tar", bytes([2]) + tar.getvalue())


# ---- token streams, shards, masked examples ------------------------------------------------------------------
def tokstream_seeds(d):
    for tb, docs in ((2, [[1, 5, 6, 2], [], [1, 7, 2]]), (4, [[70000, 3], [9] * 40])):
        body = b"SCPTOKS\0" + struct.pack("<IIIiiiiIQ", 1, tb, 70001 if tb == 4 else 100, 1, 2, 3, -1, 3, 0x1234)
        body += b"\0" * (64 - len(body))
        for doc in docs:
            body += struct.pack("<I", len(doc)) + b"".join(struct.pack("<H" if tb == 2 else "<I", x) for x in doc)
        body += struct.pack("<IQQ", 0xFFFFFFFF, len(docs), sum(len(x) for x in docs))
        put(d, "stream-%d.tokens" % tb, body + struct.pack("<I", crc(body)))


def align64(x):
    return (x + 63) & ~63


def shard_bytes(tb, L, seqs, split=0):
    """seqs: list of (tokens, segments as [(doc_id, pos, doc_offset)]), tokens padded to L with 3."""
    n_tokens = sum(len(t) for t, _ in seqs)
    segs = [s for _, ss in seqs for s in ss]
    tok = b""
    for t, _ in seqs:
        full = t + [3] * (L - len(t))
        tok += b"".join(struct.pack("<H" if tb == 2 else "<I", x) for x in full)
    recs, first = b"", 0
    for k, (t, ss) in enumerate(seqs):
        recs += struct.pack("<QQII", k, first, len(ss), len(t))
        first += len(ss)
    segb = b"".join(struct.pack("<QII", *s) for s in segs)
    seqs_at = align64(128 + len(tok))
    segs_at = align64(seqs_at + len(recs))
    data = tok + b"\0" * (seqs_at - 128 - len(tok)) + recs + b"\0" * (segs_at - seqs_at - len(recs)) + segb
    head = b"SCPSHRD\0" + struct.pack("<IIIIiiiiQQQQIIQiI", 1, tb, L, 100, 1, 2, 3, -1, 0xABCD, len(seqs), n_tokens,
                                        len(segs), split, 0, 0, 3, crc(data))
    head += b"\0" * (124 - len(head))
    return head + struct.pack("<I", crc(head)) + data


def shard_seeds(d):
    put(d, "train.shard", shard_bytes(2, 8, [([1, 5, 6, 2, 1, 7], [(0, 0, 0), (1, 4, 0)]), ([8, 9, 9, 9, 9, 9, 9, 9], [(1, 0, 2)])]))
    put(d, "val.shard", shard_bytes(4, 4, [([1, 50, 2], [(7, 0, 0)])], split=1))
    put(d, "empty.shard", shard_bytes(2, 16, []))


def masked_bytes(tb, T, targets, records):
    flags = 1 if targets else 0
    head = b"SCPMASK\0" + struct.pack("<IIIIiIQIIdIIQIi", 1, tb, T, 100, 99, flags, 7, 1, 0, 1e-3, 4, 0, 0xABCD, 0, -1)
    head += b"\0" * (128 - len(head))
    body, masked, maskable = head, 0, 0
    tf = "<H" if tb == 2 else "<I"
    for k, (noisy, clean, mask) in enumerate(records):
        rec = struct.pack("<QdII", k, 0.5, sum(mask), T)
        rec += b"".join(struct.pack(tf, x) for x in noisy)
        if targets:
            rec += b"".join(struct.pack(tf, x) for x in clean)
        bits = bytearray((T + 7) // 8)
        for j, m in enumerate(mask):
            bits[j // 8] |= m << (j % 8)
        rec += bytes(bits)
        rec += b"\0" * ((8 - len(rec) % 8) % 8)
        body += rec
        masked += sum(mask)
        maskable += T
    body += struct.pack("<QQQQ", 0xFFFFFFFFFFFFFFFF, len(records), masked, maskable)
    return body + struct.pack("<II", crc(body), 0)


def masked_seeds(d):
    put(d, "targets.masked", masked_bytes(2, 10, True, [([99, 5, 99, 7, 8, 9, 10, 11, 12, 13], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
                                                        [1, 0, 1, 0, 0, 0, 0, 0, 0, 0])]))
    put(d, "plain.masked", masked_bytes(4, 3, False, [([99, 99, 99], [1, 2, 3], [1, 1, 1]), ([1, 2, 3], [1, 2, 3], [0, 0, 0])]))


# ---- a checkpoint's tensors under one name ---------------------------------------------------------------------
def st_set_seeds(d):
    import tempfile
    with tempfile.TemporaryDirectory() as t:
        p = os.path.join(t, "a.safetensors")
        g.write_st(p, {"w": ("F32", [2, 3], struct.pack("<6f", *range(6))), "b": ("BF16", [4], b"\x80\x3f" * 4),
                       "h": ("F16", [1], b"\x00\x3c"), "i": ("I64", [1], b"\x07" + b"\0" * 7)}, {"format": "pt"})
        st = open(p, "rb").read()
    index = json.dumps({"metadata": {"total_size": 40}, "weight_map": {"w": "a.safetensors", "b": "a.safetensors",
                                                                        "h": "a.safetensors", "i": "a.safetensors"}})
    put(d, "index-and-shard", index.encode() + b"\0" + st)
    put(d, "index-only", json.dumps({"weight_map": {"w": "a.safetensors"}}))


# ---- trainer_state.json ---------------------------------------------------------------------------------------
TRAIN_OPTIONS = {"adam_eps": 1e-08, "attention": "bidirectional", "aux_loss": 0.0, "backend": "cpu", "batch_schedule": None,
                 "batch_tokens": 0, "beta1": 0.9, "beta2": 0.95, "clip": 1.0, "data": None, "decay_frac": 0.2, "doc_mask": False,
                 "eval_every": 0, "eval_samples": 4, "eval_seqs": 16, "grad_stats": True, "init": None, "init_random": False,
                 "init_std": 0.02, "keep": 0, "keep_best": False, "loss_norm": "length", "lr": 0.0003,
                 "lr_mult": {"attn": 1.0, "embed": 1.0, "expert": 1.0, "mlp": 1.0, "norm": 1.0, "router": 1.0},
                 "lr_scaling": "sqrt", "mask_schedule": "linear", "micro_batch": 0, "min_lr": 0.0, "objective": "mdm",
                 "save_every": 0, "save_seconds": 1800.0, "schedule": "constant", "seed": "1", "shift": None, "shuffle": True,
                 "steps": 0, "t_eps": 0.001, "t_sampler": "stratified", "threads": 0, "tokens": 0, "warmup": 0,
                 "weight_decay": 0.1, "z_loss": 0.0}


def train_state_seeds(d):
    groups = {k: 0.5 for k in ("embed", "attn", "mlp", "expert", "router", "norm", "all")}
    state = {"format": "scp-trainer-state", "step": 12, "adam_step": 11, "skipped": 1, "tokens": 49152, "cursor": 96,
             "total_steps": 500, "rng": ["0123456789abcdef", "1", "2", "3"], "data_tokenizer_hash": "8000000000000001",
             "world_size": 2, "batch_seqs": 8, "noise_scale_ema": {"steps": 3, "tr_sigma": groups, "grad_sq": groups}}
    put(d, "options.json", json.dumps(dict(state, options=TRAIN_OPTIONS)))
    put(d, "ar.json", json.dumps(dict(state, options=dict(TRAIN_OPTIONS, objective="ar", attention="causal",
                                                                  schedule="cosine", warmup=10, steps=500))))
    put(d, "no-options.json", json.dumps(dict(state, options={})))


# ---- a line of a multiple-choice task file (MMLU, ARC, HellaSwag, native layouts) ------------------------
def choice_doc_seeds(d):
    lines = [{"question": "2 + 2 =", "choices": ["3", "4", "5", "22"], "answer": 1, "subject": "math"},
             {"question": {"stem": "Which is a gas?", "choices": [{"text": "iron", "label": "A"},
                                                                  {"text": "helium", "label": "B"}]}, "answerKey": "B"},
             {"question": "Pick", "choices": {"text": ["x", "y", "z"], "label": ["1", "2", "3"]}, "answerKey": "3"},
             {"ctx": "She opened the door and", "endings": ["left.", "sang.", "flew.", "sat."], "label": "0"},
             {"context": "The sky is", "choices": [" blue", " green"], "gold": 0}]
    for i, line in enumerate(lines):
        put(d, "line-%d.json" % i, json.dumps(line))


KINDS = {"json": json_seeds, "config": config_seeds, "tokenizer": tokenizer_seeds, "textinput": textinput_seeds,
         "tokstream": tokstream_seeds, "shard": shard_seeds, "masked": masked_seeds, "st-set": st_set_seeds,
         "train-state": train_state_seeds, "choice-doc": choice_doc_seeds}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in KINDS:
        sys.exit("usage: fuzzseeds.py KIND DIR (KIND: %s)" % ", ".join(KINDS))
    os.makedirs(sys.argv[2], exist_ok=True)
    KINDS[sys.argv[1]](sys.argv[2])
