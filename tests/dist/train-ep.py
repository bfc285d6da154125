"""train-ep.py: expert parallelism (--expert-parallel P) on CPU ranks against one process with the same global batch
and micro-batches, for a qwen3_moe model of 4 experts (top-2) with the load-balancing and z losses on: P = 1, 2 and
4, and 2 expert groups of 2 (4 ranks, P = 2), with the rest whole (--zero 0) and sharded (--zero 2 and 3), 20
steps: step losses, auxiliary and z losses and expert loads, final weights and AdamW moments within 1e-5 relative
of one process; ZeRO-2 and ZeRO-3 bit-identical; --recompute bit-identical; the checkpoint is a
Hugging Face sharded checkpoint of every expert that scp-eval reads; a run resumed from its own checkpoint ends bit
for bit where the uninterrupted run ends, and the checkpoint resumes in one process and on 2 ranks; a rank that
hangs mid-exchange is named and the job stopped within the bound, a killed rank stops the job; bad combinations are
usage errors."""
import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done, sanitized, tmpdir  # noqa: E402
import train_testdata as td  # noqa: E402
import mpi_testlib as mt  # noqa: E402

mpirun = mt.require_mpi()
tmp = tmpdir()
shards = td.make_shards(mt.BIN, tmp)
moe = td.write_config(os.path.join(tmp, "moe", "config.json"), vocab=64, mask_id=63, model_type="qwen3_moe",
                      head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, norm_topk_prob=True)
dense = td.write_config(os.path.join(tmp, "dense", "config.json"), vocab=64, mask_id=63)
MODEL = ["--init", "random:" + moe, "--aux-loss", "0.05", "--z-loss", "0.01"]
COMMON = MODEL + ["--data", shards, "--steps", "20", "--batch-tokens", "512", "--micro-batch", "2", "--lr", "3e-3",
                  "--warmup", "3", "--save-every", "10", "--threads", "1", "-q"]
TOL = 1e-5
rel = mt.dicts_rel
tensors = mt.run_tensors


def run(n, args, out):
    cmd = [mt.PROG] + args + ["-o", out] if n == 0 else mt.mpi_cmd(mpirun, n, args + ["-o", out])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        diag("%s\n%s" % (" ".join(cmd), r.stderr[-1500:]))
    return r


def steps(rundir):
    return [x for x in td.read_metrics(rundir) if "loss" in x]


def numbers(rundir):
    """What a step computed (not how long it took)."""
    keys = ("step", "loss", "grad_norm", "masked_fraction", "aux_loss", "z_loss", "expert_load")
    return [tuple(json.dumps(x.get(k)) for k in keys) for x in steps(rundir)]


def compare(ref, out, what):
    a, b = steps(ref), steps(out)
    dl = max(mt.max_rel([x["loss"] for x in a], [x["loss"] for x in b]),
             mt.max_rel([x["aux_loss"] for x in a], [x["aux_loss"] for x in b]),
             mt.max_rel([x["z_loss"] for x in a], [x["z_loss"] for x in b]),
             mt.max_rel([x["grad_norm"] for x in a], [x["grad_norm"] for x in b]))
    same_load = len(a) == len(b) and all(x["expert_load"] == y["expert_load"] for x, y in zip(a, b))
    dw = rel(tensors(ref, "model"), tensors(out, "model"))
    do = rel(tensors(ref, "optimizer"), tensors(out, "optimizer"))
    ok(len(b) == 20 and same_load and max(dl, dw, do) <= TOL,
       "%s: %d steps, losses (aux, z, gradient norm) %.1e, weights %.1e, moments %.1e relative to one process "
       "(<= %g), expert loads %s" % (what, len(b), dl, dw, do, TOL, "identical" if same_load else "DIFFER"))


# Under AddressSanitizer (a few times slower) the layouts are cut to those that exercise every path once: two
# groups of 2 at every stage it runs, and one group of 4 at stage 3; the plain build runs them all.
SANITIZED = sanitized()
if SANITIZED:
    diag("sanitizer build: --expert-parallel 1 and 4 at stage 0 left to the plain build")
ref = os.path.join(tmp, "ref")
ok(run(0, COMMON, ref).returncode == 0, "one process completes")
for n, p in ((2, 2), (4, 2)) if SANITIZED else ((2, 1), (2, 2), (4, 4), (4, 2)):
    out = os.path.join(tmp, "np%d-ep%d" % (n, p))
    groups = "%d expert group%s of %d" % (n // p, "s" if n // p > 1 else "", p)
    if ok(run(n, COMMON + ["--expert-parallel", str(p)], out).returncode == 0,
          "mpirun -np %d --expert-parallel %d (%s) completes" % (n, p, groups)):
        compare(ref, out, "mpirun -np %d --expert-parallel %d" % (n, p))

# on top of ZeRO-2/3: attention, norms, routers and embeddings sharded over all ranks, each expert over the ranks of
# its place (one per group)
for n, p, z in ((4, 2, 2), (4, 2, 3), (4, 4, 3)):
    out = os.path.join(tmp, "np%d-ep%d-z%d" % (n, p, z))
    if ok(run(n, COMMON + ["--expert-parallel", str(p), "--zero", str(z)], out).returncode == 0,
          "mpirun -np %d --expert-parallel %d --zero %d completes" % (n, p, z)):
        compare(ref, out, "mpirun -np %d --expert-parallel %d --zero %d" % (n, p, z))
z2, z3 = os.path.join(tmp, "np4-ep2-z2"), os.path.join(tmp, "np4-ep2-z3")
fs = [f for f in sorted(os.listdir(os.path.join(z3, "latest"))) if f.endswith(".safetensors")]
ok(len(fs) == 8 and numbers(z2) == numbers(z3) and
   all(filecmp.cmp(os.path.join(z2, "latest", f), os.path.join(z3, "latest", f), shallow=False) for f in fs),
   "2 groups of 2: ZeRO-2 and ZeRO-3 bit-identical (losses, loads, weights, moments)")

# cpu-mirror keeps its buffers as "device" memory: the rows, the expert units and their pieces move through the
# backend's entries and the groups' collectives as on GPU ranks (the counts through host memory)
out = os.path.join(tmp, "mirror-ep2-z3")
if ok(run(4, COMMON + ["--expert-parallel", "2", "--zero", "3", "--backend", "cpu-mirror"], out).returncode == 0,
      "cpu-mirror, mpirun -np 4 --expert-parallel 2 --zero 3 completes"):
    compare(ref, out, "cpu-mirror, mpirun -np 4 --expert-parallel 2 --zero 3")
# and with the rest whole (--zero 0): the gradients reduced and AdamW run where the backend keeps them, the
# checkpoints written from what that memory holds
out = os.path.join(tmp, "mirror-ep2-z0")
if ok(run(4, COMMON + ["--expert-parallel", "2", "--backend", "cpu-mirror"], out).returncode == 0,
      "cpu-mirror, mpirun -np 4 --expert-parallel 2 completes"):
    compare(ref, out, "cpu-mirror, mpirun -np 4 --expert-parallel 2")

# the tokens of a layer's rerun (--recompute) go to their experts again: the same arithmetic
rc = os.path.join(tmp, "recompute")
if ok(run(4, COMMON + ["--expert-parallel", "2", "--recompute"], rc).returncode == 0,
      "4 ranks, --expert-parallel 2 --recompute completes"):
    base = os.path.join(tmp, "np4-ep2")
    ok(numbers(rc) == numbers(base) and rel(tensors(rc, "model"), tensors(base, "model")) == 0.0,
       "--recompute: losses, loads and weights bit-identical to the run without it")

# ---- the checkpoint: every expert, in a Hugging Face sharded directory ----
ep4 = os.path.join(tmp, "np4-ep4-z3" if SANITIZED else "np4-ep4")
ck = os.path.join(ep4, "latest")
names = sorted(os.listdir(ck))
with open(os.path.join(ck, "model.safetensors.index.json")) as f:
    wmap = json.load(f)["weight_map"]
experts = sorted(k for k in wmap if ".mlp.experts." in k)
ok(all("model-%05d-of-00004.safetensors" % k in names for k in range(1, 5)) and
   set(wmap) == set(tensors(ref, "model")) and len(experts) == 2 * 4 * 3,
   "4-rank checkpoint: 4 model shards whose index names every tensor of the one-process checkpoint, the %d expert "
   "tensors of both layers included" % len(experts))


def elbo(ckpt):
    r = subprocess.run([os.path.join(mt.BIN, "scp-eval"), "elbo", "-m", ckpt, "--data", shards, "--split", "val",
                        "--max-seqs", "8", "--samples", "2", "--threads", "1"], capture_output=True, text=True)
    try:
        return json.loads(r.stdout)["nll"]
    except (ValueError, KeyError):
        diag(r.stderr[-500:])
        return None


e_ep, e_ref = elbo(ck), elbo(os.path.join(ref, "latest"))
ok(e_ep is not None and e_ref is not None and abs(e_ep - e_ref) <= 1e-4 * abs(e_ref),
   "scp-eval elbo reads it: %s nats against %s of the one-process run" % (e_ep, e_ref))

# ---- resume from the 2-group run's step-10 checkpoint ----


src = os.path.join(tmp, "np4-ep2")
r4, r2, r1 = (os.path.join(tmp, "resume%d" % n) for n in (4, 2, 1))
for d in (r4, r2, r1):
    mt.resumable(src, d)
a = run(4, ["--resume", "--expert-parallel", "2", "--threads", "1"], r4)
if ok(a.returncode == 0, "4 ranks, 2 expert groups: resumed from the step-10 checkpoint"):
    fs = [f for f in sorted(os.listdir(os.path.join(src, "latest"))) if f.endswith(".safetensors")]
    ok(len(fs) == 8 and all(filecmp.cmp(os.path.join(src, "latest", f), os.path.join(r4, "latest", f),
                                        shallow=False) for f in fs) and numbers(r4) == numbers(src),
       "resumed on 4 ranks: every shard file and every step's metrics bit-identical to the uninterrupted run")
r3 = os.path.join(tmp, "resume-z3")
mt.resumable(z3, r3)
a = run(4, ["--resume", "--expert-parallel", "2", "--zero", "3", "--threads", "1"], r3)
if ok(a.returncode == 0, "4 ranks, 2 expert groups, ZeRO-3: resumed from the step-10 checkpoint"):
    ok(all(filecmp.cmp(os.path.join(z3, "latest", f), os.path.join(r3, "latest", f), shallow=False) for f in fs)
       and numbers(r3) == numbers(z3), "resumed under ZeRO-3: every shard file and every step's metrics "
       "bit-identical to the uninterrupted run")
b = run(2, ["--resume", "--expert-parallel", "2", "--threads", "1"], r2)
c = run(0, ["--resume", "--threads", "1"], r1)
if ok(b.returncode == 0 and c.returncode == 0 and "saved by 4 ranks, resuming with 1" in c.stderr,
      "the 4-rank checkpoint resumes on 2 ranks (--expert-parallel 2) and in one process, with a warning"):
    compare(ref, r2, "resumed on 2 ranks")
    compare(ref, r1, "resumed in one process")

# ---- a rank that hangs or dies in the middle of the exchanges ----


def start(out, args):
    p, pids = mt.start_job(mpirun, 2, args, out)
    time.sleep(0.3)   # past the first checkpoint: in the steps, whose time goes mostly to the MoE layers
    return p, pids


LONG = ["5000" if a == "20" else a for a in COMMON]
LONG += ["--expert-parallel", "2", "--dist-timeout", "5", "--save-every", "5"]
for sig, what in ((signal.SIGSTOP, "hangs"), (signal.SIGKILL, "is killed")):
    out = os.path.join(tmp, "fail-%d" % sig)
    p, pids = start(out, LONG)
    if not ok(p.poll() is None and sorted(pids) == [0, 1], "2-rank expert-parallel job running (%s)" % pids):
        p.kill()
        continue
    t0 = time.time()
    os.kill(pids[1], sig)
    try:
        err = p.communicate(timeout=90)[1]
    except subprocess.TimeoutExpired:
        os.kill(pids[1], signal.SIGKILL)
        p.kill()
        err = p.communicate()[1]
    el = time.time() - t0
    if sig == signal.SIGSTOP:
        named = re.search(r"rank 0: (expert .*all-to-all|.*all-reduce|.*step).*rank 1 (does not answer|did not reach)",
                          err)
        ok(p.returncode != 0 and 4 < el < 40 and named,
           "rank 1 hangs: the job exits %d after %.1f s (timeout 5 s), rank 0 names it: %s" %
           (p.returncode, el, named.group(0)[:120] if named else "no"))
        try:
            os.kill(pids[1], signal.SIGKILL)
        except OSError:
            pass
    else:
        ok(p.returncode != 0 and el < 60, "rank 1 killed: the job exits %d after %.1f s" % (p.returncode, el))
    if p.returncode == 0 or (sig == signal.SIGSTOP and not named):
        diag(err[-1500:])
    latest = os.readlink(os.path.join(out, "latest"))
    ok(os.path.exists(os.path.join(out, latest, "model.safetensors.index.json")),
       "latest -> %s is a complete checkpoint" % latest)

# ---- refusals ----


def usage(n, args, what, needle):
    out = os.path.join(tmp, "bad")
    r = subprocess.run((mt.mpi_cmd(mpirun, n, args + ["-o", out]) if n else [mt.PROG] + args + ["-o", out]),
                       capture_output=True, text=True)
    said = [x for x in r.stderr.splitlines() if "scp-train" in x and needle in x]
    ok(r.returncode != 0 and said and not os.path.exists(os.path.join(out, "latest")),
       "%s: refused (%s)" % (what, said[0][:160] if said else "no message with '%s'" % needle))
    shutil.rmtree(out, ignore_errors=True)


usage(2, COMMON + ["--expert-parallel", "4"], "--expert-parallel 4 on 2 ranks", "must divide the 2 ranks")
usage(4, COMMON + ["--expert-parallel", "4", "--zero", "1"], "--expert-parallel with --zero 1", "ZeRO-1")
usage(2, [a if a != "random:" + moe else "random:" + dense for a in COMMON] + ["--expert-parallel", "2"],
      "--expert-parallel on a dense model", "qwen3_moe")
cfg3 = td.write_config(os.path.join(tmp, "moe3", "config.json"), vocab=64, mask_id=63, model_type="qwen3_moe",
                       head_dim=8, num_experts=3, num_experts_per_tok=2, moe_intermediate_size=24)
usage(2, [a if a != "random:" + moe else "random:" + cfg3 for a in COMMON] + ["--expert-parallel", "2"],
      "--expert-parallel 2 with 3 experts", "must divide")

shutil.rmtree(tmp)
done()
