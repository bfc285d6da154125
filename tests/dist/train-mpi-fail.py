"""train-mpi-fail.py: rank failure in a 2-rank run, with the state whole on every rank (--zero 0) and sharded
(--zero 3, where every rank writes part of each checkpoint). One rank killed with SIGKILL mid-run: the job
(mpirun and the surviving rank) exits non-zero within 60 s naming rank 1, no checkpoint is left half-written,
and `--resume` under mpirun -np 2 continues from the last complete checkpoint to the same final weights as an
uninterrupted 2-rank run (bit for bit). One rank that hangs (SIGSTOP, which MPI cannot see): rank 0 gives up
after --dist-timeout (plus at most 5 s of pinging), names rank 1, and the job exits non-zero within the bound."""
import filecmp
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done, tmpdir  # noqa: E402
import train_testdata as td  # noqa: E402
import mpi_testlib as mt  # noqa: E402

mpirun = mt.require_mpi()
tmp = tmpdir()
shards = td.make_shards(mt.BIN, tmp)
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=64, mask_id=63)
ARGS = ["--init", "random:" + cfg, "--data", shards, "--steps", "200", "--batch-tokens", "512", "--micro-batch", "2",
        "--lr", "3e-3", "--save-every", "5", "--keep", "3", "--threads", "1", "--dist-timeout", "10", "-q"]
seed = int(os.environ.get("SCP_TEST_SEED", random.randrange(1 << 30)))
diag("kill moments from seed %d (SCP_TEST_SEED to repeat)" % seed)
rng = random.Random(seed)

def start(out, args):
    return mt.start_job(mpirun, 2, args, out)


def running(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    return "(scp-train)" in st and st.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def stage(zero):
    """The kill and the hang, at ZeRO stage `zero` (3: every rank writes its shard of each checkpoint)."""
    args = ARGS + ["--zero", zero]
    tag = "--zero %s: " % zero
    ref = os.path.join(tmp, "ref" + zero)
    t0 = time.time()
    r = subprocess.run(mt.mpi_cmd(mpirun, 2, args + ["-o", ref]), capture_output=True, text=True)
    dur = time.time() - t0
    ok(r.returncode == 0, tag + "uninterrupted 2-rank run (%.1f s)" % dur)

    # ---- SIGKILL rank 1 ----
    rk = os.path.join(tmp, "killed" + zero)
    # A random moment after the first checkpoint; the job must still be running then, which a busy machine can
    # upset (the reference run's time is only a guide): if it has already finished, try again, sooner.
    frac = rng.uniform(0.05, 0.4)
    for attempt in range(4):
        shutil.rmtree(rk, ignore_errors=True)
        p, pids = start(rk, args)
        time.sleep(frac * dur)
        if p.poll() is None:
            break
        p.communicate()
        diag("attempt %d: the job finished before the kill moment (%.2f s): again, sooner" % (attempt + 1, frac * dur))
        frac /= 4
    if ok(p.poll() is None and sorted(pids) == [0, 1], tag + "2-rank job running, rank PIDs found (%s)" % pids):
        err, el = mt.signal_rank(p, pids[1], signal.SIGKILL)
        ok(p.returncode != 0 and el < 60, tag + "rank 1 killed: the job exits %d after %.1f s (< 60 s)" %
           (p.returncode, el))
        ok("rank 1" in err, tag + "the failure message names rank 1")
        if "rank 1" not in err:
            diag(err[-1500:])
        time.sleep(0.5)   # the launcher has exited; give the kernel a moment to reap what it killed
        alive = [r for r, pid in pids.items() if running(pid)]
        ok(not alive, tag + "no rank left running %s" % alive)
        latest = os.readlink(os.path.join(rk, "latest"))
        ok(os.path.exists(os.path.join(rk, latest, "trainer_state.json")),
           tag + "latest -> %s is a complete checkpoint" % latest)
        r = subprocess.run(mt.mpi_cmd(mpirun, 2, ["--resume", "--zero", zero, "-o", rk, "-q"]), capture_output=True,
                           text=True)
        ok(r.returncode == 0, tag + "--resume under mpirun -np 2 completes")
        if r.returncode:
            diag(r.stderr[-1500:])
        files = [f for f in os.listdir(os.path.join(ref, "latest")) if f.endswith(".safetensors")]
        same = all(filecmp.cmp(os.path.join(ref, "latest", f), os.path.join(rk, "latest", f), shallow=False)
                   for f in files)
        ok(same and len(files) == (2 if zero == "0" else 4) and mt.losses(ref) == mt.losses(rk),
           tag + "resumed from %s: final weights, moments (%d files) and all 200 losses identical to the "
           "uninterrupted run" % (latest, len(files)))
        ok(not any(".tmp-" in n for n in os.listdir(rk)), tag + "no temporaries left after resuming")

    # ---- SIGSTOP rank 1: a hang MPI cannot see; bounded by --dist-timeout 10 ----
    rs = os.path.join(tmp, "stopped" + zero)
    # Ten times the steps, so that the stop lands mid-run however fast the machine is (the job never finishes).
    p, pids = start(rs, [a if a != "200" else "2000" for a in args])
    time.sleep(rng.uniform(0.05, 0.5) * dur)
    running2 = p.poll() is None and sorted(pids) == [0, 1]
    if not running2:   # say why: the job's end, or the ranks it had
        if p.poll() is None:
            p.kill()
        diag("exit %s, rank PIDs %s: %s" % (p.poll(), pids, p.communicate()[1][-1500:]))
    if ok(running2, tag + "second 2-rank job running"):
        err, el = mt.signal_rank(p, pids[1], signal.SIGSTOP)
        ok(p.returncode != 0 and 9 < el < 45, tag + "rank 1 stopped: the job exits %d after %.1f s (timeout 10 s)" %
           (p.returncode, el))
        named = re.search(r"rank 0: .*rank 1 (did not reach step|does not answer)", err)
        ok(named, tag + "rank 0 names rank 1: %s" % (named.group(0) if named else "no"))
        if not named:
            diag(err[-1500:])
        latest = os.readlink(os.path.join(rs, "latest"))
        ok(os.path.exists(os.path.join(rs, latest, "trainer_state.json")),
           tag + "latest -> %s is a complete checkpoint" % latest)


stage("0")
stage("3")

import shutil  # noqa: E402
shutil.rmtree(tmp)
done()
