"""coll-mpi.py: the collectives of the sharded state (dist/coll.h over MPI: ring all-gather and reduce-scatter,
all-to-all with sizes, all-reduce, gather to any root) and the shard layout, checked by tests/dist/coll-check on
1, 2, 3 and 4 ranks (an odd world too: the rings must not assume a power of two)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done  # noqa: E402
import mpi_testlib as mt  # noqa: E402

mpirun = mt.require_mpi()
prog = os.path.join("tests", "dist", "coll-check")
if not os.path.exists(prog):
    prog = os.path.join(os.environ.get("SCP_BUILDDIR", "."), "tests", "dist", "coll-check")
for n in (1, 2, 3, 4):
    r = subprocess.run([mpirun, "-np", str(n), "--oversubscribe", prog], capture_output=True, text=True, timeout=120)
    lines = [x for x in r.stdout.splitlines() if x.startswith(("ok ", "not ok "))]
    good = r.returncode == 0 and len(lines) == 6 and all(x.startswith("ok ") for x in lines)
    ok(good, "%d rank%s: %d checks, %d failed" % (n, "" if n == 1 else "s", len(lines),
                                                 sum(x.startswith("not ok") for x in lines)))
    if not good:
        diag(r.stdout[-1500:] + r.stderr[-1500:])
done()
