"""mpi_testlib.py: what the MPI tests share: skipping without mpirun or without MPI in the build, the OpenMPI
environment for root and oversubscription, rank PIDs of a running job, and comparisons of runs."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BIN, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

PROG = os.path.join(BIN, "scp-train")


def require_mpi():
    """Skip (77) unless scp-train is built with MPI and mpirun is on PATH; returns mpirun's path."""
    for prog in ("scp-train", "scp-shard"):
        if not os.path.exists(os.path.join(BIN, prog)):
            skip_all(prog + " not built")
    v = subprocess.run([PROG, "--version"], capture_output=True, text=True).stdout
    if "mpi=yes" not in v:
        skip_all("scp-train built without MPI (features: mpi=no)")
    mpirun = shutil.which("mpirun")
    if not mpirun:
        skip_all("no mpirun (install openmpi-bin)")
    # OpenMPI refuses root without these (CI runs as root) and more ranks than cores without --oversubscribe.
    os.environ["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    os.environ["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    os.environ["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    # No network probing in containers: shared memory and loopback TCP are all a one-node job needs.
    os.environ.setdefault("OMPI_MCA_btl", "self,vader,tcp")
    os.environ.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    return mpirun


def mpi_cmd(mpirun, n, args):
    return [mpirun, "-np", str(n), "--oversubscribe", PROG] + list(args)


def rank_pids(mpirun_pid, size):
    """{rank: pid} of the scp-train processes that mpirun (pid) started, from /proc."""
    res = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
            if "(scp-train)" not in st or int(st.rsplit(")", 1)[1].split()[1]) != mpirun_pid:
                continue
            with open("/proc/%s/environ" % d, "rb") as f:
                env = dict(x.split(b"=", 1) for x in f.read().split(b"\0") if b"=" in x)
        except (OSError, ValueError, IndexError):
            continue
        # a process caught while it starts (or re-executes itself) may show part of its environment: the next
        # poll sees it whole
        if env.get(b"OMPI_COMM_WORLD_SIZE") == str(size).encode() and b"OMPI_COMM_WORLD_RANK" in env:
            res[int(env[b"OMPI_COMM_WORLD_RANK"])] = int(d)
    return res


def losses(rundir):
    return [x["loss"] for x in td.read_metrics(rundir) if "loss" in x]


def max_rel(a, b):
    """Largest relative difference between two lists of numbers."""
    if len(a) != len(b):
        return float("inf")
    return max([abs(x - y) / max(abs(x), 1e-30) for x, y in zip(a, b)] + [0.0])


def dicts_rel(ta, tb):
    """Largest per-tensor ||a - b|| / ||a|| over two {name: array} dicts (inf unless the names agree)."""
    import numpy as np
    if set(ta) != set(tb):
        return float("inf")
    worst = 0.0
    for k in ta:
        x, y = ta[k].astype(np.float64), tb[k].astype(np.float64)
        worst = max(worst, float(np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)))
    return worst


def tensors_rel(a, b):
    """Largest per-tensor ||a - b|| / ||a|| over two safetensors files (same names)."""
    return dicts_rel(td.st_read(a)[0], td.st_read(b)[0])


def run_tensors(rundir, base):
    """Every tensor of rundir/latest's BASE.safetensors or of its shards (BASE-0000k-of-0000n.safetensors)."""
    d = os.path.join(rundir, "latest")
    out = {}
    for f in sorted(os.listdir(d)):
        if f.startswith(base) and f.endswith(".safetensors"):
            out.update(td.st_read(os.path.join(d, f))[0])
    return out


def resumable(src, dst, step=10):
    """A run directory holding src's checkpoint of `step` as its latest, and its metrics up to that step."""
    import json
    name = "step-%07d" % step
    os.makedirs(dst)
    shutil.copytree(os.path.join(src, name), os.path.join(dst, name))
    os.symlink(name, os.path.join(dst, "latest"))
    with open(os.path.join(src, "metrics.jsonl")) as f, open(os.path.join(dst, "metrics.jsonl"), "w") as g:
        g.writelines(line for line in f if json.loads(line)["step"] <= step)


def start_job(mpirun, n, args, out):
    """mpirun -np n of scp-train args -o out in the background, once its first checkpoint is there (or it ended,
    or 60 s passed): (the Popen, {rank: pid})."""
    import time
    p = subprocess.Popen(mpi_cmd(mpirun, n, args + ["-o", out]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(out, "latest")) and p.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    return p, rank_pids(p.pid, n)


def signal_rank(p, pid, sig, timeout=90):
    """Send sig to one rank (pid) of the job p and wait for the job to end: (its stderr, seconds it took). The
    rank is killed afterwards (a stopped one would linger), and first, with the job, when the job is still running
    after timeout (its stderr then says so)."""
    import signal as _signal
    import time

    def kill_rank():
        try:
            os.kill(pid, _signal.SIGKILL)
        except OSError:
            pass
    t0 = time.time()
    os.kill(pid, sig)
    try:
        err = p.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        kill_rank()
        p.kill()
        err = p.communicate()[1] + "\n(still running after %d s: killed)" % timeout
    el = time.time() - t0
    kill_rank()
    return err, el
