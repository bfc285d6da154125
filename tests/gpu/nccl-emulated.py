"""nccl-emulated.py: scp-train's GPU ranks on several CPU processes, run by tests/gpu/emulated.sh with an scp-train
whose CUDA kernels are the emulator's and whose NCCL is tests/gpu/emu/emu_nccl.cc (NCCL's calls over MPI, each
buffer checked to be emulated device memory). lib/dist/nccl.c then carries every collective of the sharded state
and of the expert exchange, on device buffers, between 2 and 4 ranks: what one GPU cannot show (there a
communicator has one rank, tests/gpu/zero-nccl.py). On the cuda-fp32 table against one process with the same
global batch and micro-batches, 4 steps:
  - dense: --zero 0 (the layer-by-layer all-reduce), 1, 2 and 3 on 2 ranks, --zero 3 on 4: losses, weights and AdamW
    moments within 1e-5 relative;
  - --reduce-dtype bf16 (the bf16 reduce-scatter), on the bf16 table: within bf16's reach of the fp32 reduction,
    and not its bits;
  - the bf16 table: the first step on 2 ranks within 1e-5 of one process, --zero 2 and 3 bit for bit;
  - qwen3_moe with the auxiliary and z losses: --expert-parallel 2 on 2 ranks (the exchange by grouped send and
    receive) and on 4 ranks with --zero 3 (two expert groups: ncclCommSplit): losses, expert loads, weights;
  - a 2-rank --zero 3 run resumed from its step-2 checkpoint (written and read from device memory) ends bit for
    bit where the uninterrupted run ends;
  - a rank that hangs (SIGSTOP) under --zero 3: rank 0, waiting on NCCL, names it within the timeout and the job
    stops (NCCL itself would wait forever).
The emulated NCCL completes a call when something waits for it, as a GPU's communicator stream does, and stops a
rank whose kernels wrote a buffer that a call in flight owned (a race with NCCL on a GPU).
Each run's trace (EMU_NCCL_TRACE) shows the NCCL calls it is there to check. Skips (77) without mpirun or an
scp-train built with MPI."""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done, tmpdir  # noqa: E402
import train_testdata as td  # noqa: E402
import mpi_testlib as mt  # noqa: E402

mpirun = mt.require_mpi()
v = subprocess.run([mt.PROG, "--version"], capture_output=True, text=True).stdout
if "nccl=yes" not in v:
    from testlib import skip_all  # noqa: E402
    skip_all("scp-train built without NCCL")
tmp = tmpdir()
shards = td.make_shards(mt.BIN, tmp)
# Heads of 8: the cuda-fp32 table's attention runs its fp32 kernels (sizes that are multiples of 16 take bf16
# operands on the tensor cores, whose roundings move with the order of the gradient sums: beyond 1e-5 in a few
# steps).
dense = td.write_config(os.path.join(tmp, "dense", "config.json"), vocab=64, hidden=64, heads=4, kv_heads=2, inter=128,
                        mask_id=63, model_type="qwen3", head_dim=8)
moe = td.write_config(os.path.join(tmp, "moe", "config.json"), vocab=64, mask_id=63, model_type="qwen3_moe",
                      head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, norm_topk_prob=True)
STEPS = 4
COMMON = ["--data", shards, "--steps", str(STEPS), "--batch-tokens", "512", "--micro-batch", "2", "--lr", "3e-3",
          "--warmup", "2", "--backend", "cuda-fp32", "--threads", "1", "-q"]
DENSE = ["--init", "random:" + dense]
MOE = ["--init", "random:" + moe, "--aux-loss", "0.05", "--z-loss", "0.01"]
TOL = 1e-5
rel = mt.dicts_rel
tensors = mt.run_tensors


def run(n, args, out):
    """scp-train in one process (n = 0) or on n ranks; the NCCL calls of each rank, {rank: {call: count}}."""
    trace = out + ".nccl"
    cmd = [mt.PROG] + args + ["-o", out] if n == 0 else mt.mpi_cmd(mpirun, n, args + ["-o", out])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ, EMU_NCCL_TRACE=trace))
    if r.returncode != 0:
        diag("%s\n%s" % (" ".join(cmd), r.stderr[-1500:]))
    calls = {}
    if os.path.exists(trace):
        for line in open(trace):
            w = line.split()
            calls[int(w[1])] = {w[i]: int(w[i + 1]) for i in range(2, len(w) - 1, 2)}
    r.calls = calls
    return r


def steps(rundir):
    return [x for x in td.read_metrics(rundir) if "loss" in x]


def made(r, n, what):
    """Every one of n ranks made calls of each kind in `what` (a dict kind: True); a line saying which."""
    got = all(r.calls.get(k, {}).get(c, 0) > 0 for k in range(n) for c in what)
    counts = ", ".join("%s %s" % (c, "/".join(str(r.calls.get(k, {}).get(c, 0)) for k in range(n))) for c in what)
    return got, counts


def compare(ref, out, r, n, what, calls, moe_metrics=False):
    a, b = steps(ref), steps(out)
    dl = mt.max_rel([x["loss"] for x in a], [x["loss"] for x in b])
    same_load = True
    if moe_metrics:
        dl = max(dl, mt.max_rel([x["aux_loss"] for x in a], [x["aux_loss"] for x in b]),
                 mt.max_rel([x["z_loss"] for x in a], [x["z_loss"] for x in b]))
        same_load = len(a) == len(b) and all(x["expert_load"] == y["expert_load"] for x, y in zip(a, b))
    dw = rel(tensors(ref, "model"), tensors(out, "model"))
    do = rel(tensors(ref, "optimizer"), tensors(out, "optimizer"))
    through, counts = made(r, n, calls)
    ok(r.returncode == 0 and len(b) == STEPS and same_load and max(dl, dw, do) <= TOL and through,
       "%s: %d steps, losses %.1e, weights %.1e, moments %.1e relative to one process (<= %g)%s; NCCL calls by rank: "
       "%s" % (what, len(b), dl, dw, do, TOL, ", expert loads " + ("identical" if same_load else "DIFFER")
               if moe_metrics else "", counts))


# ---- dense: the sharded state through NCCL ----
ref = os.path.join(tmp, "dense-ref")
r = run(0, DENSE + COMMON, ref)
ok(r.returncode == 0 and len(steps(ref)) == STEPS and not r.calls, "one process on the emulated cuda-fp32 table: %d "
   "steps, no NCCL" % len(steps(ref)))
EXPECT = {0: ["allreduce"], 1: ["allreduce", "allgather"], 2: ["reduce_scatter", "allgather"], 3: ["reduce_scatter", "allgather"]}
for z in (0, 1, 2, 3):
    out = os.path.join(tmp, "dense-np2-z%d" % z)
    extra = ["--save-every", "2"] if z == 3 else []
    r = run(2, DENSE + COMMON + ["--zero", str(z)] + extra, out)
    compare(ref, out, r, 2, "2 ranks, --zero %d" % z, EXPECT[z])
out = os.path.join(tmp, "dense-np4-z3")
compare(ref, out, run(4, DENSE + COMMON + ["--zero", "3"], out), 4, "4 ranks, --zero 3", EXPECT[3])

# ---- the bf16 reduce-scatter, on the bf16 table (cuda-fp32 keeps nothing to convert) ----
hf, hb = os.path.join(tmp, "bf16-np2-z3"), os.path.join(tmp, "bf16-np2-z3-reduce-bf16")
z3 = os.path.join(tmp, "dense-np2-z3")
BF16 = DENSE + COMMON + ["--backend", "cuda"]
r = run(2, BF16 + ["--zero", "3"], hf)
s = run(2, BF16 + ["--zero", "3", "--reduce-dtype", "bf16"], hb)
through, counts = made(s, 2, ["reduce_scatter"])
if ok(r.returncode == 0 and s.returncode == 0 and len(steps(hb)) == STEPS and through,
      "the bf16 table, 2 ranks, --zero 3, the gradients reduced in fp32 and in bf16: %d and %d steps; NCCL calls by "
      "rank: %s" % (len(steps(hf)), len(steps(hb)), counts)):
    dl = mt.max_rel(mt.losses(hf), mt.losses(hb))
    dw = rel(tensors(hf, "model"), tensors(hb, "model"))
    ok(0 < dw <= 2e-2 and dl <= 1e-3, "--reduce-dtype bf16 through NCCL: not the fp32 reduction's bits (weights %.1e "
       "apart), within bf16's reach of it (losses %.1e <= 1e-3, weights <= 2e-2)" % (dw, dl))

# ---- the bf16 table (GPU users' default): the first step as one process's, ZeRO-2 and ZeRO-3 the same bits ----
# (Beyond the first step the order of the gradient sums, which the ranks change, moves a bf16 rounding now and
# then, as two rank counts do on cpu-bf16.)
b1, b2, hz2 = (os.path.join(tmp, x) for x in ("bf16-one-step", "bf16-np2-z3-one-step", "bf16-np2-z2"))
ONE = [a if a != str(STEPS) else "1" for a in BF16]
r = run(0, ONE, b1)
s = run(2, ONE + ["--zero", "3"], b2)
if ok(r.returncode == 0 and s.returncode == 0, "the bf16 table: one step in one process and on 2 ranks (--zero 3)"):
    dl = mt.max_rel(mt.losses(b1), mt.losses(b2))
    dw, do = rel(tensors(b1, "model"), tensors(b2, "model")), rel(tensors(b1, "optimizer"), tensors(b2, "optimizer"))
    ok(max(dl, dw, do) <= TOL, "the bf16 table, first step on 2 ranks: loss %.1e, weights %.1e, moments %.1e relative "
       "to one process (<= %g)" % (dl, dw, do, TOL))
r = run(2, BF16 + ["--zero", "2"], hz2)
ok(r.returncode == 0 and len(steps(hz2)) == STEPS and mt.losses(hz2) == mt.losses(hf) and
   rel(tensors(hz2, "model"), tensors(hf, "model")) == 0.0 and rel(tensors(hz2, "optimizer"), tensors(hf, "optimizer")) == 0.0,
   "the bf16 table, 2 ranks, %d steps: --zero 2 and --zero 3 bit for bit (losses, weights, moments)" % STEPS)

# ---- resumed from its own checkpoint: the device-resident shards saved and loaded ----
res = os.path.join(tmp, "dense-np2-z3-resumed")
mt.resumable(z3, res, step=2)
r = run(2, ["--resume", "--zero", "3", "--threads", "1", "-q"], res)
same = (r.returncode == 0 and [json.dumps(x) for x in mt.losses(res)] == [json.dumps(x) for x in mt.losses(z3)] and
        rel(tensors(z3, "model"), tensors(res, "model")) == 0.0 and
        rel(tensors(z3, "optimizer"), tensors(res, "optimizer")) == 0.0)
ok(same, "2 ranks, --zero 3, resumed from step 2: the losses, weights and moments of the uninterrupted run, bit for bit")

# ---- experts over the ranks ----
mref = os.path.join(tmp, "moe-ref")
r = run(0, MOE + COMMON, mref)
ok(r.returncode == 0 and len(steps(mref)) == STEPS, "qwen3_moe, one process: %d steps" % len(steps(mref)))
out = os.path.join(tmp, "moe-np2-ep2")
compare(mref, out, run(2, MOE + COMMON + ["--expert-parallel", "2"], out), 2, "qwen3_moe, 2 ranks, --expert-parallel 2",
        ["send", "recv", "allreduce"], moe_metrics=True)
out = os.path.join(tmp, "moe-np4-ep2-z3")
compare(mref, out, run(4, MOE + COMMON + ["--expert-parallel", "2", "--zero", "3"], out), 4,
        "qwen3_moe, 4 ranks, --expert-parallel 2 --zero 3 (two expert groups)",
        ["send", "recv", "reduce_scatter", "allgather", "split"], moe_metrics=True)

# ---- a rank that hangs: named by rank 0 within the timeout ----
out = os.path.join(tmp, "hang")
args = DENSE + [a if a != str(STEPS) else "5000" for a in COMMON] + ["--zero", "3", "--dist-timeout", "5",
                                                                    "--save-every", "2"]
p, pids = mt.start_job(mpirun, 2, args, out)
if ok(p.poll() is None and sorted(pids) == [0, 1], "2-rank --zero 3 job on NCCL running (%s)" % pids):
    time.sleep(0.5)
    err, el = mt.signal_rank(p, pids[1], signal.SIGSTOP)
    named = re.search(r"rank 0: .* did not complete within 5 s: rank 1 does not answer", err)
    ok(p.returncode != 0 and el < 40 and named, "rank 1 hangs: the job exits %s after %.1f s (timeout 5 s), rank 0 "
       "names it: %s" % (p.returncode, el, named.group(0) if named else err[-300:]))
else:
    p.kill()
done()
