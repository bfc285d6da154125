"""train_testdata.py: data the trainer tests generate themselves: token streams (man 5 scp-tokens, written
byte by byte from the format description), tiny model configs, and a learnable synthetic corpus."""
import json
import os
import random
import struct
import zlib


def write_tokstream(path, docs, vocab, bos=1, eos=2, pad=-1, mask=-1, tok_hash=0):
    """docs: list of lists of ids. Returns the path."""
    tb = 2 if vocab <= 65536 else 4
    head = b"SCPTOKS\0" + struct.pack("<III iiii I Q", 1, tb, vocab, bos, eos, pad, mask, 1, tok_hash) + bytes(16)
    assert len(head) == 64
    body = bytearray(head)
    n_tok = 0
    for d in docs:
        body += struct.pack("<I", len(d))
        body += struct.pack("<%d%s" % (len(d), "H" if tb == 2 else "I"), *d)
        n_tok += len(d)
    # The CRC32 covers everything before the CRC field itself (lib/formats/tokstream.c), trailer counts included.
    body += struct.pack("<IQQ", 0xFFFFFFFF, len(docs), n_tok)
    body += struct.pack("<I", zlib.crc32(bytes(body)) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(body)
    return path


def markov_docs(n_docs, vocab, seed, min_len=20, max_len=120, bos=1):
    """Documents from a sparse random Markov chain over ids 3..vocab-1 (each id has 3 likely successors), so a
    small model can learn it quickly; BOS first."""
    rng = random.Random(seed)
    succ = {i: [rng.randrange(3, vocab) for _ in range(3)] for i in range(3, vocab)}
    docs = []
    for _ in range(n_docs):
        n = rng.randint(min_len, max_len)
        x = rng.randrange(3, vocab)
        d = [bos, x]
        for _ in range(n - 2):
            x = rng.choice(succ[x]) if rng.random() < 0.9 else rng.randrange(3, vocab)
            d.append(x)
        docs.append(d)
    return docs


def write_config(path, vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, inter=64, mask_id=None,
                 model_type="llama", shift=True, tie=False, **extra):
    cfg = {"model_type": model_type, "hidden_size": hidden, "intermediate_size": inter,
           "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
           "vocab_size": vocab, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": tie, "bos_token_id": 1, "eos_token_id": 2, "is_causal": True,
           "shift_logits": shift}
    if mask_id is not None:
        cfg["mask_token_id"] = mask_id
    cfg.update(extra)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def read_metrics(rundir):
    with open(os.path.join(rundir, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]


def st_read(path):
    """safetensors -> (dict name -> numpy array, metadata), written from the format description."""
    import numpy as np
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__", None)
    data = raw[8 + n:]
    dt = {"F32": np.float32, "F16": np.float16, "BF16": None, "I32": np.int32, "I64": np.int64}
    out = {}
    for name, t in head.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=dt[t["dtype"]]).reshape(t["shape"]).copy()
    return out, meta


def st_write(path, tensors, meta=None):
    """numpy float32 arrays -> safetensors (names sorted, 8-byte aligned header)."""
    head, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name].astype("<f4")
        b = a.tobytes()
        head[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta:
        head["__metadata__"] = meta
    h = json.dumps(head).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_llama2c_tokenizer(path, vocab):
    """A llama2.c tokenizer.bin of `vocab` tokens: <unk>, <s>, </s>, then short distinct pieces."""
    pieces = [b"<unk>", b"<s>", b"</s>"] + [("t%d" % i).encode() for i in range(3, vocab)]
    with open(path, "wb") as f:
        f.write(struct.pack("<I", max(len(p) for p in pieces)))
        for i, p in enumerate(pieces):
            f.write(struct.pack("<fi", float(-i), len(p)) + p)
    return path


def trainer_fixture(programs=("scp-train", "scp-shard")):
    """Skips the test (exit 77) unless the programs are built; else a new temporary directory and the default
    shard set made in it (make_shards), as (tmp, shards)."""
    from testlib import BIN, skip_all, tmpdir
    for prog in programs:
        if not os.path.exists(os.path.join(BIN, prog)):
            skip_all(prog + " not built")
    tmp = tmpdir()
    return tmp, make_shards(BIN, tmp)


def make_shards(bin_dir, tmp, name="shards", n_docs=300, vocab=63, seq_len=64, seed=1, val=0.1, shuffle=True,
                tok_hash=0):
    """A shard set of Markov documents (ids < vocab) through scp-shard; returns its directory."""
    import subprocess
    stream = write_tokstream(os.path.join(tmp, name + ".tok"), markov_docs(n_docs, vocab, seed), vocab,
                             tok_hash=tok_hash)
    out = os.path.join(tmp, name)
    args = [os.path.join(bin_dir, "scp-shard"), "-q", "-L", str(seq_len), "-s", "3", stream, "-o", out]
    if val:
        args[2:2] = ["--val-fraction", str(val)]
    if not shuffle:
        args[2:2] = ["--no-shuffle"]
    subprocess.run(args, check=True)
    return out
