"""train-memory-limit.py: scp-train under address-space limits (ulimit -v), from too small to start up to enough:
every run ends within a bounded time, having trained or with exit 1 and an out-of-memory message; never a hang
(OpenBLAS's buffer allocations retry forever when they fail: lib/model/cpu/blas.h), never a crash. Two model
sizes on two and four threads, so that the limits fall on the threads and their BLAS buffers as well as on the
model's workspace."""
import os
import re
import resource
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

for prog in ("scp-train", "scp-shard"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")
if b"sanitizers=yes" in run(["scp-train", "--version"]).stdout:
    skip_all("AddressSanitizer maps terabytes of shadow memory: no address-space limit in this build")

TIMEOUT = 90   # seconds; a run takes one or two


def limited(mib, args):
    def lim():
        resource.setrlimit(resource.RLIMIT_AS, (mib << 20, mib << 20))
    try:
        return run(args, preexec_fn=lim, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None


tmp = tmpdir()
shards = td.make_shards(BIN, tmp)
small = td.write_config(os.path.join(tmp, "small", "config.json"), vocab=64, mask_id=63)
large = td.write_config(os.path.join(tmp, "large", "config.json"), vocab=64, hidden=128, layers=2, heads=4,
                        kv_heads=2, inter=512, mask_id=63)
# (config, threads, batch tokens, limits in MiB). Each thread takes about 136 MiB (its stack and OpenBLAS's buffer);
# the large model's workspace, about 100 MiB at 4096 tokens.
cases = [(small, 2, 512, [16, 64, 192, 320, 512]),
         (large, 4, 4096, [128, 640, 1024])]

# Below what the dynamic loader needs to map the program's own libraries, nothing of scp runs: that is the one
# failure that is not scp's message.
floor = next((m for m in range(8, 257, 8) if (lambda r: r is not None and r.returncode == 0)(
    limited(m, ["scp-train", "--version"]))), None)
ok(floor is not None, "scp-train --version runs under ulimit -v %s MiB" % floor)

seen = {"trained": 0, "workspace": 0, "threads": 0, "other": 0}
for cfg, threads, tokens, limits in cases:
    name = os.path.basename(os.path.dirname(cfg))
    for mib in limits:
        out = os.path.join(tmp, "run-%s-%d" % (name, mib))
        r = limited(mib, ["scp-train", "-q", "--threads", str(threads), "--init", "random:" + cfg, "--data", shards,
                          "-o", out, "--steps", "1", "--batch-tokens", str(tokens)])
        what = "%s model, %d threads, ulimit -v %d MiB" % (name, threads, mib)
        if r is None:
            ok(False, "%s: ends within %d s (it hangs)" % (what, TIMEOUT))
            continue
        err = r.stderr.decode().strip()
        if r.returncode == 0:
            steps = len(td.read_metrics(out))
            seen["trained"] += 1
            ok(steps == 1, "%s: trained (%d step)" % (what, steps))
        elif r.returncode == 1 and re.search(r"out of memory", err):
            kind = "workspace" if "model workspace" in err else "threads" if "BLAS buffers" in err else "other"
            seen[kind] += 1
            ok(True, "%s: exit 1, %s" % (what, err[-160:]))
        elif r.returncode == 127 and floor is not None and mib < floor and "error while loading shared" in err:
            ok(True, "%s: below what the dynamic loader needs to start (%s)" % (what, err[-120:]))
        else:
            ok(False, "%s: trained or exit 1 with an out-of-memory message (exit %d: %s)" % (what, r.returncode,
                                                                                             err[-300:]))
diag("outcomes: %s" % seen)
ok(seen["trained"] >= 2 and seen["workspace"] >= 1 and seen["threads"] >= 1,
   "the limits reach every outcome: trained %d, out of memory for the model's workspace %d, for the threads and "
   "their BLAS buffers %d" % (seen["trained"], seen["workspace"], seen["threads"]))
done()
