"""zero-nccl.py (GPU): the sharded state of --zero 2 and 3 on GPU ranks, through NCCL, on one GPU: `mpirun -np 1`
with SCP_NCCL_ONE_RANK=1, so that the reduce-scatters and all-gathers of dist/coll.h run as NCCL calls on device
memory (an identity over one rank), against the unsharded run on the same backend. cuda-fp32: 20 steps, losses,
weights and moments within 1e-5; cuda (bf16 storage): the first step within 1e-5 (beyond it the order of the
gradient sums, which sharding changes, moves a bf16 rounding now and then, as two rank counts do on cpu-bf16),
and ZeRO-2 against ZeRO-3 bit for bit over 20 steps. Skips (77) without a GPU, NCCL, MPI or mpirun."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402
import mpi_testlib as mt  # noqa: E402

BUILD = os.environ.get("SCP_BUILDDIR", ".")
try:
    gpus = int(subprocess.run([os.path.join(BUILD, "tests", "model", "backend-ops"), "--devices"], capture_output=True).stdout or 0)
except (OSError, ValueError):
    gpus = 0
if gpus == 0:
    skip_all("no CUDA device")
mpirun = mt.require_mpi()
v = subprocess.run([mt.PROG, "--version"], capture_output=True, text=True).stdout
if "nccl=yes" not in v or "cuda=yes" not in v:
    skip_all("scp-train built without CUDA or NCCL (%s)" % v.strip().splitlines()[-1])
os.environ["SCP_NCCL_ONE_RANK"] = "1"
tmp = tmpdir()
shards = td.make_shards(mt.BIN, tmp)
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=64, hidden=64, heads=4, kv_heads=2, inter=128,
                      mask_id=63)
BASE = ["--init", "random:" + cfg, "--data", shards, "--steps", "20", "--batch-tokens", "512", "--micro-batch", "2",
        "--lr", "3e-3", "--warmup", "3", "-q"]


def train(backend, zero, out, steps="20"):
    args = [a if a != "20" else steps for a in BASE] + ["--backend", backend, "--zero", str(zero), "-o", out]
    r = subprocess.run(mt.mpi_cmd(mpirun, 1, args), capture_output=True, text=True)
    if r.returncode != 0:
        diag(r.stderr[-1500:])
    return r.returncode == 0


tensors = mt.run_tensors


def compare(a, b, what, n):
    dl = mt.max_rel(mt.losses(a), mt.losses(b))
    dw, do = mt.dicts_rel(tensors(a, "model"), tensors(b, "model")), mt.dicts_rel(tensors(a, "optimizer"),
                                                                                  tensors(b, "optimizer"))
    ok(len(mt.losses(b)) == n and max(dl, dw, do) <= 1e-5,
       "%s: losses %.1e, weights %.1e, moments %.1e relative to the unsharded run (<= 1e-5)" % (what, dl, dw, do))


ref = os.path.join(tmp, "fp32-z0")
if ok(train("cuda-fp32", 0, ref), "cuda-fp32, --zero 0 through NCCL, 20 steps"):
    for z in (2, 3):
        out = os.path.join(tmp, "fp32-z%d" % z)
        if ok(train("cuda-fp32", z, out), "cuda-fp32, --zero %d through NCCL" % z):
            compare(ref, out, "cuda-fp32, --zero %d" % z, 20)
one, one3 = os.path.join(tmp, "bf-z0"), os.path.join(tmp, "bf-z3")
if ok(train("cuda", 0, one, "1") and train("cuda", 3, one3, "1"), "cuda (bf16), --zero 0 and 3, one step"):
    compare(one, one3, "cuda (bf16), --zero 3, first step", 1)
b2, b3 = os.path.join(tmp, "bf-z2-20"), os.path.join(tmp, "bf-z3-20")
if ok(train("cuda", 2, b2) and train("cuda", 3, b3), "cuda (bf16), --zero 2 and 3, 20 steps"):
    ok(mt.losses(b2) == mt.losses(b3) and mt.dicts_rel(tensors(b2, "model"), tensors(b3, "model")) == 0.0,
       "cuda (bf16): ZeRO-2 and ZeRO-3 bit-identical over 20 steps")
shutil.rmtree(tmp)
done()
