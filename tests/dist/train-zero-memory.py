"""train-zero-memory.py: a model whose whole training state does not fit one rank's address-space limit trains
on 4 CPU ranks with --zero 3, each rank under the same `ulimit -v`.

The limit is the largest rank's peak address space (VmPeak) when training a model of almost no parameters (the
libraries, MPI, the data and the activations, measured here for -np 1 and -np 4), plus 70% of the big model's
training state at 16 bytes a parameter (fp32 weights, gradients and both AdamW moments). One rank at --zero 0
needs all 16 bytes and must fail with an out-of-memory message (and runs without the limit); 4 ranks at
--zero 3 need about a quarter of them each, plus one gathered layer, and must train, with the losses of the
unlimited one-process run to 1e-5."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402
import mpi_testlib as mt  # noqa: E402

mpirun = mt.require_mpi()
if "sanitizers=yes" in subprocess.run([mt.PROG, "--version"], capture_output=True, text=True).stdout:
    skip_all("AddressSanitizer maps terabytes of shadow memory: no address-space limit in this build")
tmp = tmpdir()
VOCAB, SEQ = 512, 32
shards = td.make_shards(mt.BIN, tmp, n_docs=120, vocab=VOCAB - 1, seq_len=SEQ, val=0)
big = td.write_config(os.path.join(tmp, "big", "config.json"), vocab=VOCAB, hidden=768, layers=4, heads=12,
                      kv_heads=12, inter=2048, mask_id=VOCAB - 1)
small = td.write_config(os.path.join(tmp, "small", "config.json"), vocab=VOCAB, hidden=16, layers=1, heads=2,
                        kv_heads=2, inter=16, mask_id=VOCAB - 1)
PARAMS = 2 * VOCAB * 768 + 4 * (4 * 768 * 768 + 3 * 768 * 2048 + 2 * 768) + 768
ARGS = ["--data", shards, "--steps", "2", "--batch-tokens", str(4 * SEQ), "--micro-batch", "1", "--threads", "1",
        "-q"]


def launch(n, args, limit_kib=None):
    """mpirun -np n scp-train args, each rank under ulimit -v limit_kib; returns (returncode, stderr, largest
    VmPeak of a rank in KiB, polled from /proc while the job runs)."""
    inner = [mt.PROG] + args
    if limit_kib:
        inner = ["sh", "-c", 'ulimit -v %d && exec "$@"' % limit_kib, "sh"] + inner
    p = subprocess.Popen([mpirun, "-np", str(n), "--oversubscribe"] + inner, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    peak = 0
    while p.poll() is None:
        for pid in mt.rank_pids(p.pid, n).values():
            try:
                with open("/proc/%d/status" % pid) as f:
                    for line in f:
                        if line.startswith("VmPeak:"):
                            peak = max(peak, int(line.split()[1]))
            except OSError:
                pass
        time.sleep(0.02)
    return p.returncode, p.stderr.read(), peak


base = []
for n, z in ((1, "0"), (4, "3")):
    rc, err, peak = launch(n, ["--init", "random:" + small, "--zero", z, "-o", os.path.join(tmp, "base%d" % n)] + ARGS)
    if not ok(rc == 0 and peak > 0, "small model, -np %d --zero %s: VmPeak %.0f MiB" % (n, z, peak / 1024)):
        diag(err[-1000:])
        done()
    base.append(peak)
state_kib = 16 * PARAMS // 1024
limit = max(base) + int(0.7 * state_kib)
diag("big model: %.1fM parameters, training state %.0f MiB; limit per rank %.0f MiB" %
     (PARAMS / 1e6, state_kib / 1024, limit / 1024))

ref = os.path.join(tmp, "ref")
rc, err, peak1 = launch(1, ["--init", "random:" + big, "-o", ref] + ARGS)
ok(rc == 0 and peak1 > limit, "one rank, --zero 0, no limit: trains, VmPeak %.0f MiB is above the limit %.0f MiB" %
   (peak1 / 1024, limit / 1024))
rc, err, _ = launch(1, ["--init", "random:" + big, "-o", os.path.join(tmp, "one")] + ARGS, limit)
ok(rc != 0 and "memory" in err, "one rank, --zero 0, under the limit: fails with an out-of-memory message")
if rc == 0 or "memory" not in err:
    diag(err[-600:])
out = os.path.join(tmp, "four")
rc, err, peak4 = launch(4, ["--init", "random:" + big, "--zero", "3", "-o", out] + ARGS, limit)
if ok(rc == 0, "4 ranks, --zero 3, each under the limit: trains (largest rank's VmPeak %.0f MiB)" % (peak4 / 1024)):
    dl = mt.max_rel(mt.losses(ref), mt.losses(out))
    ok(len(mt.losses(out)) == 2 and dl <= 1e-5, "the 4-rank --zero 3 losses match one process to %.1e" % dl)
else:
    diag(err[-1500:])
done()
