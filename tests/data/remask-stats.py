"""remask-stats.py: scp-remask against an independent reading of its documented formats (man 5 scp-shards,
man 5 scp-masked, parsed here with struct and numpy): each record is the shard set's sequence with exactly the
masked positions replaced by the mask id; the masked fraction matches the schedule at the drawn t (binomial
z and a chi-square over t bins); t is uniform / stratified / antithetic as asked; example i does not depend
on the thread count or on how many examples are asked for; prompts and padding stay unmasked."""
import json
import os
import struct
import subprocess
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, skip_all, done, run, tmpdir, BIN  # noqa: E402

try:
    import numpy as np
except ImportError:
    skip_all("numpy not available")

BUILD = os.environ.get("SCP_BUILDDIR", os.path.dirname(BIN))
MK = os.path.join(BUILD, "tests", "data", "shard-mkstream")
for p in (os.path.join(BIN, "scp-remask"), os.path.join(BIN, "scp-shard"), MK):
    if not os.path.exists(p):
        skip_all(p + " not built")

T = tmpdir()
EPS = 1e-3


def sh(*args):
    r = run(list(args))
    if r.returncode != 0:
        diag(r.stderr.decode())
    return r


def read_shards(d, split):
    """Sequences of a split in order: tokens (N, L), n_valid (N,)."""
    m = json.load(open(os.path.join(d, "manifest.json")))
    L = m["seq_len"]
    toks, nvs = [], []
    for e in sorted((e for e in m["shards"] if e["split"] == split), key=lambda e: e["index"]):
        b = open(os.path.join(d, e["file"]), "rb").read()
        assert b[:8] == b"SCPSHRD\0"
        tb, seq_len = struct.unpack_from("<II", b, 12)
        n_seqs, = struct.unpack_from("<Q", b, 48)
        assert seq_len == L and n_seqs == e["sequences"]
        assert zlib.crc32(b[:124]) == struct.unpack_from("<I", b, 124)[0]
        nb = n_seqs * L * tb
        toks.append(np.frombuffer(b, dtype="<u2" if tb == 2 else "<u4", count=n_seqs * L, offset=128).reshape(n_seqs, L))
        seqs = 128 + ((nb + 63) // 64) * 64
        rec = np.frombuffer(b, dtype=np.uint8, count=24 * n_seqs, offset=seqs).reshape(n_seqs, 24)
        nvs.append(rec[:, 20:24].copy().view("<u4").reshape(-1))
    return np.concatenate(toks).astype(np.int64), np.concatenate(nvs).astype(np.int64)


HDR = struct.Struct("<8sIIIIiIQIIdIIQIi")


def read_masked(path):
    b = open(path, "rb").read()
    (magic, ver, tb, L, vocab, mask_id, flags, seed, sampler, sched, eps, batch, prompt, thash, split,
     pend) = HDR.unpack_from(b, 0)
    assert magic == b"SCPMASK\0" and ver == 1
    h = dict(tb=tb, L=L, vocab=vocab, mask_id=mask_id, flags=flags, seed=seed, sampler=sampler, sched=sched,
             eps=eps, batch=batch, prompt=prompt, hash=thash, split=split)
    rs = 24 + L * tb * (2 if flags & 1 else 1) + (L + 7) // 8
    rs = (rs + 7) // 8 * 8
    n = (len(b) - 128 - 40) // rs
    assert 128 + n * rs + 40 == len(b), "file size is not header + records + trailer"
    tr = b[128 + n * rs:]
    marker, n_ex, masked, maskable, crc = struct.unpack_from("<QQQQI", tr, 0)
    h.update(trailer_ok=(marker == 2**64 - 1 and n_ex == n and crc == zlib.crc32(b[:len(b) - 8])),
             total_masked=masked, total_maskable=maskable)
    recs = np.frombuffer(b, dtype=np.uint8, count=n * rs, offset=128).reshape(n, rs)
    idx = recs[:, 0:8].copy().view("<u8").reshape(-1)
    t = recs[:, 8:16].copy().view("<f8").reshape(-1)
    nm = recs[:, 16:20].copy().view("<u4").reshape(-1)
    nmable = recs[:, 20:24].copy().view("<u4").reshape(-1)
    dt = "<u2" if tb == 2 else "<u4"
    off = 24
    noisy = recs[:, off:off + L * tb].copy().view(dt).astype(np.int64)
    off += L * tb
    targets = None
    if flags & 1:
        targets = recs[:, off:off + L * tb].copy().view(dt).astype(np.int64)
        off += L * tb
    bits = np.unpackbits(recs[:, off:off + (L + 7) // 8], axis=1, bitorder="little")[:, :L]
    return h, dict(idx=idx, t=t, n_masked=nm, n_maskable=nmable, noisy=noisy, targets=targets, mask=bits)


def prob(sched, t):
    return {0: t, 1: 1 - np.cos(np.pi * t / 2), 2: t * t}[sched]


# ---- data: 700 documents, lengths 0..300, vocabulary 3000 (ids 4..2999, bos 1, eos 2) ------------------------
stream = os.path.join(T, "a.tok")
subprocess.run([MK, "--docs", "700", "--vocab", "3000", "--min", "0", "--max", "300", "--seed", "5", "-o", stream], check=True)
shards = os.path.join(T, "set")
ok(sh("scp-shard", "-q", "-L", "256", "-S", "20000", "-s", "1", "-v", "0.1", stream, "-o", shards).returncode == 0, "make a shard set")
tokens, n_valid = read_shards(shards, "train")
N, L = tokens.shape
MASK = 3000

# ---- linear schedule, uniform t, 1 thread vs 3 threads ---------------------------------------------------------
m1, m3 = os.path.join(T, "m1"), os.path.join(T, "m3")
r = sh("scp-remask", "-d", shards, "-M", str(MASK), "-s", "9", "-T", "-j", "1", "-o", m1)
ok(r.returncode == 0 and b"masked fraction" in r.stderr, "scp-remask -j 1 (statistics on stderr)")
diag(r.stderr.decode().strip())
ok(sh("scp-remask", "-d", shards, "-M", str(MASK), "-s", "9", "-T", "-j", "3", "-q", "-o", m3).returncode == 0, "scp-remask -j 3")
ok(open(m1, "rb").read() == open(m3, "rb").read(), "the output does not depend on the thread count")
h, x = read_masked(m1)
ok(h["trailer_ok"], "trailer: example count and CRC32 over everything before it")
ok(h["L"] == L and h["mask_id"] == MASK and h["seed"] == 9 and h["vocab"] == 3000 and h["hash"] == 0x1234abcd5678ef00
   and h["flags"] == 1 and abs(h["eps"] - EPS) < 1e-15, "header: seq_len, mask id, seed, vocabulary, tokenizer hash, eps")
ok(len(x["idx"]) == N and np.array_equal(x["idx"], np.arange(N)), "one record per sequence, in order (%d)" % N)
ok(np.array_equal(x["targets"], tokens), "clean tokens are the shard set's sequences")
m = x["mask"].astype(bool)
ok(np.array_equal(x["noisy"][m], np.full(m.sum(), MASK)) and np.array_equal(x["noisy"][~m], tokens[~m]),
   "noisy = mask id exactly at the mask bits, the clean token elsewhere")
ok(np.array_equal(m.sum(1), x["n_masked"]) and int(m.sum()) == h["total_masked"], "mask counts agree with the bits")
pad = np.arange(L)[None, :] >= n_valid[:, None]
ok(not m[pad].any() and np.array_equal(x["n_maskable"], n_valid), "padding is never masked")
t = x["t"]
ok(t.min() >= EPS and t.max() <= 1, "t in [eps, 1]")
# Kolmogorov-Smirnov against U(eps, 1): critical value 1.95/sqrt(n) at 0.1%.
ts = np.sort(t)
cdf = (ts - EPS) / (1 - EPS)
D = max(np.max(np.arange(1, N + 1) / N - cdf), np.max(cdf - np.arange(N) / N))
ok(D < 1.95 / np.sqrt(N), "uniform t: KS distance %.4f < %.4f (0.1%% level, n = %d)" % (D, 1.95 / np.sqrt(N), N))


def check_fraction(x, sched, what):
    p = prob(sched, x["t"])
    n = x["n_maskable"].astype(float)
    obs, exp, var = x["n_masked"].sum(), (p * n).sum(), (p * (1 - p) * n).sum()
    z = (obs - exp) / np.sqrt(var)
    ok(abs(z) < 4.5, "%s: masked %d of %d maskable, expected %.1f at the drawn t (z = %.2f, bound 4.5)"
       % (what, obs, n.sum(), exp, z))
    # Chi-square over 5 bins of t: each bin's masked count against its binomial expectation; df 5, 0.1%: 20.5.
    edges = np.linspace(EPS, 1, 6)
    chi = 0
    for k in range(5):
        sel = (x["t"] >= edges[k]) & (x["t"] < edges[k + 1] + (k == 4))
        if sel.any():
            chi += (x["n_masked"][sel].sum() - (p * n)[sel].sum()) ** 2 / (p * (1 - p) * n)[sel].sum()
    ok(chi < 20.5, "%s: chi-square over 5 t bins %.2f (df 5, 0.1%% critical value 20.5)" % (what, chi))


check_fraction(x, 0, "linear schedule")
for name, code in (("cosine", 1), ("poly2", 2)):
    out = os.path.join(T, "m-" + name)
    ok(sh("scp-remask", "-d", shards, "-M", str(MASK), "-s", "3", "--mask-schedule", name, "-q", "-o", out).returncode == 0, "--schedule " + name)
    hh, xx = read_masked(out)
    ok(hh["sched"] == code, "header records the %s schedule" % name)
    check_fraction(xx, code, name + " schedule")

# ---- stratified and antithetic t across a batch; example i independent of how many are asked for -------------
st = os.path.join(T, "strat")
ok(sh("scp-remask", "-d", shards, "-M", str(MASK), "--t-sampler", "stratified", "-B", "8", "-q", "-o", st).returncode == 0, "stratified, batch 8")
hs, xs = read_masked(st)
full = (N // 8) * 8
strata = np.floor((xs["t"][:full] - EPS) / (1 - EPS) * 8).astype(int).reshape(-1, 8)
ok(all(sorted(row) == list(range(8)) for row in strata), "stratified: every batch of 8 has one t in each stratum (%d batches)" % (full // 8))
check_fraction(xs, 0, "stratified t")
an = os.path.join(T, "anti")
ok(sh("scp-remask", "-d", shards, "-M", str(MASK), "--t-sampler", "antithetic", "-B", "4", "-q", "-o", an).returncode == 0, "antithetic, batch 4")
ha, xa = read_masked(an)
pairs = xa["t"][:(N // 2) * 2].reshape(-1, 2)
ok(np.allclose(pairs.sum(1), 1 + EPS), "antithetic: pairs (t, 1 + eps - t)")
part = os.path.join(T, "part")
ok(sh("scp-remask", "-d", shards, "-M", str(MASK), "--t-sampler", "stratified", "-B", "8", "--max-seqs", "50", "-j", "2", "-q", "-o", part).returncode == 0, "--max-seqs 50")
hp, xp = read_masked(part)
ok(len(xp["idx"]) == 50 and all(np.array_equal(xp[k][:50], xs[k][:50]) for k in ("t", "noisy", "mask")),
   "example i is the same when fewer examples are asked for (a partial last batch included)")

# ---- prompts -------------------------------------------------------------------------------------------------
pr = os.path.join(T, "prompt")
ok(sh("scp-remask", "-d", shards, "-M", str(MASK), "-s", "9", "-P", "40", "-q", "-o", pr).returncode == 0, "--prompt-len 40")
hq, xq = read_masked(pr)
ok(not xq["mask"][:, :40].any() and np.array_equal(xq["n_maskable"], np.maximum(n_valid - 40, 0)), "the first 40 positions are never masked")
ok(np.array_equal(xq["mask"][:, 40:], x["mask"][:, 40:]) and np.array_equal(xq["t"], x["t"]), "past the prompt, the same mask as without it")
pe = os.path.join(T, "pend")
ok(sh("scp-remask", "-d", shards, "-M", str(MASK), "-E", "1", "-T", "-q", "-o", pe).returncode == 0, "--prompt-end-id 1 (BOS)")
he, xe = read_masked(pe)
# Every document starts with BOS (id 1): its prompt is that one token, which must stay unmasked.
ok(not xe["mask"][xe["targets"] == 1].any(), "each document's prompt (up to its first id 1) stays unmasked")

pe2 = os.path.join(T, "pend2")
ok(sh("scp-remask", "-d", shards, "-M", str(MASK), "-E", "2", "-q", "-o", pe2).returncode == 0, "--prompt-end-id 2 (EOS)")
h2, x2 = read_masked(pe2)
# Every document ends with EOS, so every token is prompt, also in the pieces of documents that continue from an
# earlier sequence (found by looking back through the packing order).
ok(not x2["mask"].any() and not x2["n_maskable"].any(), "--prompt-end-id EOS: whole documents are prompt, nothing masked")

# ---- the mask id, --model, --show, val split ------------------------------------------------------------------
r = sh("scp-remask", "-d", shards, "-M", "17", "-q", "-o", os.path.join(T, "bad"))
ok(r.returncode == 1 and b"mask id 17" in r.stderr and not os.path.exists(os.path.join(T, "bad")),
   "a mask id that is a real token of the data is refused, nothing written")
r = run(["scp-remask", "-d", shards, "-M", "2", "-o", os.path.join(T, "bad")])
ok(r.returncode == 1 and b"eos" in r.stderr, "the eos id as mask id is refused")
model = os.path.join(T, "model")
os.mkdir(model)
json.dump({"model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 1,
           "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 3072, "max_position_embeddings": 512,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "mask_token_id": 3001}, open(os.path.join(model, "config.json"), "w"))
mo = os.path.join(T, "mo")
r = sh("scp-remask", "-d", shards, "-m", model, "--max-seqs", "5", "-q", "-o", mo)
ok(r.returncode == 0 and read_masked(mo)[0]["mask_id"] == 3001, "--model takes config.json's mask_token_id")
r = run(["scp-remask", "-d", shards, "-M", str(MASK), "--show", "--max-seqs", "2"])
out = r.stdout.decode()
ok(r.returncode == 0 and out.count("== example") == 2 and "[[" in out and "t=" in out, "--show prints examples with masked spans marked")
vo = os.path.join(T, "val")
ok(sh("scp-remask", "-d", shards, "--split", "val", "-M", str(MASK), "-q", "-o", vo).returncode == 0 and
   read_masked(vo)[0]["split"] == 1 and np.array_equal(read_masked(vo)[1]["idx"], np.arange(len(read_shards(shards, "val")[0]))),
   "--split val")
# ---- a vocabulary past 16 bits: 4-byte tokens in the shards and the records --------------------------------------
big = os.path.join(T, "big.tok")
subprocess.run([MK, "--docs", "50", "--vocab", "100000", "--seed", "8", "-o", big], check=True)
bigset = os.path.join(T, "bigset")
ok(sh("scp-shard", "-q", "-L", "100", "-s", "2", big, "-o", bigset).returncode == 0 and
   json.load(open(os.path.join(bigset, "manifest.json")))["token_bytes"] == 4, "vocabulary 100000: 4-byte shards")
btok, bnv = read_shards(bigset, "train")
bo = os.path.join(T, "bigmask")
ok(sh("scp-remask", "-d", bigset, "-M", "100000", "-T", "-q", "-o", bo).returncode == 0, "scp-remask on 4-byte shards")
hb, xb = read_masked(bo)
mb = xb["mask"].astype(bool)
ok(hb["tb"] == 4 and btok.max() >= 65536 and np.array_equal(xb["targets"], btok) and
   (xb["noisy"][mb] == 100000).all() and np.array_equal(xb["noisy"][~mb], btok[~mb]),
   "4-byte records: ids past 65535 kept, noisy and mask consistent")

# The deprecated spellings still work, each with a warning naming the new one, and give the same bytes.
new, old = os.path.join(T, "new"), os.path.join(T, "old")
ok(sh("scp-remask", "-d", shards, "-M", str(MASK), "--t-eps", "0.01", "--t-sampler", "stratified", "-B", "4",
      "--mask-schedule", "cosine", "--max-seqs", "20", "--split", "val", "-q", "-o", new).returncode == 0, "new spellings")
r = run(["scp-remask", "-d", shards, "-M", str(MASK), "-e", "0.01", "-t", "stratified", "-B", "4", "-S", "cosine",
         "-n", "20", "-p", "val", "-q", "-o", old])
warned = [w for w in r.stderr.decode().splitlines() if "deprecated" in w]
ok(r.returncode == 0 and len(warned) == 5 and "use --t-eps" in warned[0] and "use --max-seqs" in warned[3]
   and open(old, "rb").read() == open(new, "rb").read(),
   "-e -t -S -n -p: 5 warnings, the same examples as --t-eps --t-sampler --mask-schedule --max-seqs --split")
r = run(["scp-remask", "-d", shards, "-M", str(MASK), "--eps", "0.01", "--t-sampler", "stratified", "-B", "4",
         "--schedule", "cosine", "--max-seqs", "20", "--split", "val", "-q", "-o", old])
ok(r.returncode == 0 and r.stderr.decode().count("deprecated") == 2 and open(old, "rb").read() == open(new, "rb").read(),
   "--eps and --schedule: 2 warnings, the same examples")

# Binary output is refused on a terminal (a pseudo-terminal as standard output).
import pty  # noqa: E402
master, slave = pty.openpty()
r = subprocess.run([os.path.join(BIN, "scp-remask"), "-d", shards, "-M", str(MASK), "--max-seqs", "3"], stdout=slave,
                   stderr=subprocess.PIPE)
os.close(slave)
os.close(master)
ok(r.returncode == 1 and b"terminal" in r.stderr, "binary output to a terminal is refused")

r = run(["scp-remask", "-d", shards])
ok(r.returncode == 2 and b"mask id" in r.stderr, "no mask id is a usage error")
done()
