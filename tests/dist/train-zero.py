"""train-zero.py: sharded training state (--zero 0/1/2/3) on CPU ranks against one process with the same global
batch and micro-batches, for a dense llama model and a qwen3_moe model: `mpirun -np 1, 2 and 4` at every stage,
20 steps, step losses (and the MoE auxiliary losses and expert loads), final weights and AdamW moments within 1e-5
relative of one process; ZeRO-2 and ZeRO-3 bit-identical to each other; a ZeRO-2/3 checkpoint is a Hugging Face
sharded checkpoint (model-0000k-of-0000n.safetensors with its index, the optimizer state alike) that scp-eval
reads; a 4-rank ZeRO-3 run resumed from its own checkpoint ends bit for bit where the uninterrupted run ends, and
the same checkpoint resumes on 2 ranks and in one process (with a warning) within 1e-5; --zero 1 on cpu-mirror
(its state in the backend's memory) is bit for bit --backend cpu's; --recompute, --keep-gathered and
--no-prefetch change nothing; bad combinations are usage errors."""
import filecmp
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done, sanitized, tmpdir  # noqa: E402
import train_testdata as td  # noqa: E402
import mpi_testlib as mt  # noqa: E402

mpirun = mt.require_mpi()
tmp = tmpdir()
shards = td.make_shards(mt.BIN, tmp)
dense = td.write_config(os.path.join(tmp, "dense", "config.json"), vocab=64, mask_id=63)
moe = td.write_config(os.path.join(tmp, "moe", "config.json"), vocab=64, mask_id=63, model_type="qwen3_moe",
                      head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, norm_topk_prob=True)
COMMON = ["--data", shards, "--steps", "20", "--batch-tokens", "512", "--micro-batch", "2", "--lr", "3e-3",
          "--warmup", "3", "--save-every", "10", "--threads", "1", "-q"]
MODELS = {"dense": ["--init", "random:" + dense],
          "moe": ["--init", "random:" + moe, "--aux-loss", "0.05", "--z-loss", "0.01"]}
TOL = 1e-5


def run(n, args, out):
    cmd = [mt.PROG] + args + ["-o", out] if n == 0 else mt.mpi_cmd(mpirun, n, args + ["-o", out])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        diag("%s\n%s" % (" ".join(cmd), r.stderr[-1500:]))
    return r


tensors = mt.run_tensors


rel = mt.dicts_rel


def steps(rundir):
    return [x for x in td.read_metrics(rundir) if "loss" in x]


def numbers(rundir):
    """What a step computed (not how long it took): loss, gradient norm, auxiliary losses, expert loads."""
    keys = ("step", "loss", "grad_norm", "masked_fraction", "aux_loss", "z_loss", "expert_load")
    return [tuple(json.dumps(x.get(k)) for k in keys) for x in steps(rundir)]


def compare(ref, out, what, moe_model):
    a, b = steps(ref), steps(out)
    dl = mt.max_rel([x["loss"] for x in a], [x["loss"] for x in b])
    extra = ""
    if moe_model:
        dl = max(dl, mt.max_rel([x["aux_loss"] for x in a], [x["aux_loss"] for x in b]),
                 mt.max_rel([x["z_loss"] for x in a], [x["z_loss"] for x in b]))
        same_load = all(x["expert_load"] == y["expert_load"] for x, y in zip(a, b))
        extra = ", expert loads %s" % ("identical" if same_load else "DIFFER")
        dl = dl if same_load else float("inf")
    dw = rel(tensors(ref, "model"), tensors(out, "model"))
    do = rel(tensors(ref, "optimizer"), tensors(out, "optimizer"))
    ok(len(b) == 20 and max(dl, dw, do) <= TOL,
       "%s: %d steps, losses %.1e, weights %.1e, moments %.1e relative to one process (<= %g)%s" %
       (what, len(b), dl, dw, do, TOL, extra))


# Under AddressSanitizer (about three times slower) the stages that shard nothing new are left to the plain build:
# the sharded stages on every rank count still run, which is what the sanitizers watch.
SANITIZED = sanitized()
STAGES = (0, 2, 3) if SANITIZED else (0, 1, 2, 3)
if SANITIZED:
    diag("sanitizer build: --zero 1 left out of the matrix")

for name, margs in MODELS.items():
    ref = os.path.join(tmp, name + "-ref")
    if not ok(run(0, margs + COMMON, ref).returncode == 0, "%s: one process, --zero 0" % name):
        continue
    for n in (1, 2, 4):
        for z in STAGES:
            out = os.path.join(tmp, "%s-np%d-z%d" % (name, n, z))
            if ok(run(n, margs + COMMON + ["--zero", str(z)], out).returncode == 0,
                  "%s: mpirun -np %d --zero %d completes" % (name, n, z)):
                compare(ref, out, "%s, mpirun -np %d --zero %d" % (name, n, z), name == "moe")
        z2, z3 = (os.path.join(tmp, "%s-np%d-z%d" % (name, n, z)) for z in (2, 3))
        files = sorted(os.listdir(os.path.join(z3, "latest")))
        ok(all(filecmp.cmp(os.path.join(z2, "latest", f), os.path.join(z3, "latest", f), shallow=False)
               for f in files if f.endswith(".safetensors")) and numbers(z2) == numbers(z3),
           "%s, %d ranks: ZeRO-2 and ZeRO-3 bit-identical (losses, weights, moments)" % (name, n))

# ---- the sharded checkpoint: a Hugging Face sharded directory ----
z3 = os.path.join(tmp, "dense-np4-z3")
ck = os.path.join(z3, "latest")
names = sorted(os.listdir(ck))
want = ["model-%05d-of-00004.safetensors" % k for k in range(1, 5)]
ok(all(f in names for f in want) and "model.safetensors.index.json" in names and
   all("optimizer-%05d-of-00004.safetensors" % k in names for k in range(1, 5)) and
   "optimizer.safetensors.index.json" in names and "model.safetensors" not in names,
   "4-rank ZeRO-3 checkpoint: model-0000k-of-00004.safetensors and optimizer shards with their indexes")
with open(os.path.join(ck, "model.safetensors.index.json")) as f:
    index = json.load(f)
held = {}
for fn in want:
    for k in td.st_read(os.path.join(ck, fn))[0]:
        held[k] = fn
sizes = [os.path.getsize(os.path.join(ck, fn)) for fn in want]
ok(index["weight_map"] == held and len(held) == len(tensors(z3, "model")) and
   index["metadata"]["total_size"] == sum(v.nbytes for v in tensors(z3, "model").values()),
   "model.safetensors.index.json maps each of the %d tensors to the shard holding it; total_size is their bytes" %
   len(held))
ok(max(sizes) < 0.6 * sum(sizes), "no shard holds most of the model (shard bytes %s)" % sizes)
ev = subprocess.run([os.path.join(mt.BIN, "scp-eval"), "elbo", "-m", ck, "--data", shards, "--split", "val",
                     "--max-seqs", "8", "--samples", "2", "--threads", "1"], capture_output=True, text=True)
ev0 = subprocess.run([os.path.join(mt.BIN, "scp-eval"), "elbo", "-m", os.path.join(tmp, "dense-np4-z0", "latest"),
                      "--data", shards, "--split", "val", "--max-seqs", "8", "--samples", "2", "--threads", "1"],
                     capture_output=True, text=True)
try:
    e3, e0 = json.loads(ev.stdout)["nll"], json.loads(ev0.stdout)["nll"]
except (ValueError, KeyError):
    e3 = e0 = None
    diag(ev.stderr[-500:] + ev0.stderr[-500:])
ok(e3 is not None and abs(e3 - e0) <= 1e-4 * abs(e0),
   "scp-eval elbo reads the sharded checkpoint: %s nats against %s of the --zero 0 run" % (e3, e0))

# ---- resume: from the 4-rank run's own step-10 checkpoint ----


r4, r2, r1 = (os.path.join(tmp, "resume%d" % n) for n in (4, 2, 1))
for d in (r4, r2, r1):
    mt.resumable(z3, d)
a = run(4, ["--resume", "--zero", "3", "--threads", "1"], r4)
if ok(a.returncode == 0, "4-rank ZeRO-3 run resumed on 4 ranks from its step-10 checkpoint"):
    fs = [f for f in sorted(os.listdir(os.path.join(z3, "latest"))) if f.endswith(".safetensors")]
    ok(len(fs) == 8 and all(filecmp.cmp(os.path.join(z3, "latest", f), os.path.join(r4, "latest", f), shallow=False)
                            for f in fs) and numbers(r4) == numbers(z3),
       "resumed on 4 ranks: every shard file and every step's metrics bit-identical to the uninterrupted run")
b = run(2, ["--resume", "--zero", "3", "--threads", "1"], r2)
c = subprocess.run([mt.PROG, "--resume", "-o", r1, "--threads", "1"], capture_output=True, text=True)
if ok(b.returncode == 0 and c.returncode == 0 and "saved by 4 ranks, resuming with 1" in c.stderr,
      "the 4-rank checkpoint resumes on 2 ranks (ZeRO-3) and in one process (--zero 0), with a warning"):
    ref = os.path.join(tmp, "dense-ref")
    compare(ref, r2, "resumed on 2 ranks", False)
    compare(ref, r1, "resumed in one process", False)

# ---- backends whose buffers are "device" memory (cpu-mirror: fp32, cpu-bf16: bf16 storage): the sharded state
# moves only through the backend's entries, the path GPU ranks take. cpu-mirror is the fp32 arithmetic of cpu;
# on bf16 storage two rank counts part after the first step (train-mpi.py says why), so one step is compared, and
# ZeRO-2 (the bf16 copy remade from the whole master) against ZeRO-3 (each piece rounded, then gathered) over 20.
ref = os.path.join(tmp, "dense-ref")
for z in (1, 2, 3):
    out = os.path.join(tmp, "mirror-z%d" % z)
    if ok(run(2, MODELS["dense"] + COMMON + ["--zero", str(z), "--backend", "cpu-mirror"], out).returncode == 0,
          "cpu-mirror, 2 ranks, --zero %d completes" % z):
        compare(ref, out, "cpu-mirror, 2 ranks, --zero %d" % z, False)
        cpu = os.path.join(tmp, "dense-np2-z%d" % z)
        if z == 1 and z in STAGES:   # ZeRO-1 on the backend's memory: the arithmetic of --backend cpu
            ok(numbers(out) == numbers(cpu) and rel(tensors(out, "model"), tensors(cpu, "model")) == 0.0 and
               rel(tensors(out, "optimizer"), tensors(cpu, "optimizer")) == 0.0,
               "cpu-mirror, 2 ranks, --zero 1: losses, weights and moments bit-identical to --backend cpu")
ONE = [a if a != "20" else "1" for a in COMMON]
b1, bz2, bz3 = (os.path.join(tmp, n) for n in ("bf-one", "bf-z2", "bf-z3"))
x = run(0, MODELS["dense"] + ONE + ["--backend", "cpu-bf16"], b1)
y = run(2, MODELS["dense"] + ONE + ["--backend", "cpu-bf16", "--zero", "3"], bz3)
if ok(x.returncode == 0 and y.returncode == 0, "cpu-bf16: one process and 2 ranks with --zero 3, one step"):
    dl = mt.max_rel(mt.losses(b1), mt.losses(bz3))
    dw, do = rel(tensors(b1, "model"), tensors(bz3, "model")), rel(tensors(b1, "optimizer"), tensors(bz3, "optimizer"))
    ok(max(dl, dw, do) <= TOL, "cpu-bf16, --zero 3 on 2 ranks, first step: loss %.1e, weights %.1e, moments %.1e "
       "(<= %g)" % (dl, dw, do, TOL))
bz2, bz3 = os.path.join(tmp, "bf-z2-20"), os.path.join(tmp, "bf-z3-20")
x = run(2, MODELS["dense"] + COMMON + ["--backend", "cpu-bf16", "--zero", "2"], bz2)
y = run(2, MODELS["dense"] + COMMON + ["--backend", "cpu-bf16", "--zero", "3"], bz3)
ok(x.returncode == 0 and y.returncode == 0 and numbers(bz2) == numbers(bz3) and len(numbers(bz2)) == 20 and
   rel(tensors(bz2, "model"), tensors(bz3, "model")) == 0.0,
   "cpu-bf16, 2 ranks, 20 steps: ZeRO-2 and ZeRO-3 bit-identical (the same bf16 copies of the same masters)")

# ---- bf16 reduction: the unit gradients rounded to bf16 and summed in bf16 over the ranks ----
hb = os.path.join(tmp, "reduce-bf16")
if ok(run(2, MODELS["dense"] + COMMON + ["--zero", "3", "--reduce-dtype", "bf16"], hb).returncode == 0,
      "--reduce-dtype bf16, 2 ranks, --zero 3 completes"):
    z = os.path.join(tmp, "dense-np2-z3")
    dl = mt.max_rel(mt.losses(z), mt.losses(hb))
    dw = rel(tensors(z, "model"), tensors(hb, "model"))
    ok(0 < dw <= 2e-2 and dl <= 1e-3, "--reduce-dtype bf16: not the f32 reduction's bits (weights %.1e apart), within "
       "bf16's reach of it after 20 steps (losses %.1e <= 1e-3, weights <= 2e-2)" % (dw, dl))
u = subprocess.run(mt.mpi_cmd(mpirun, 2, MODELS["dense"] + COMMON + ["--zero", "1", "--reduce-dtype", "bf16", "-o",
                                                                      os.path.join(tmp, "rb1")]),
                   capture_output=True, text=True)
ok(u.returncode == 2 and "--reduce-dtype bf16 applies to --zero 2 and 3" in u.stderr,
   "--reduce-dtype bf16 with --zero 1: a usage error")

# ---- options that must not change the arithmetic ----
base = MODELS["dense"] + COMMON + ["--zero", "3"]
rc, kg = os.path.join(tmp, "recompute"), os.path.join(tmp, "keep")
x, y = run(2, base + ["--recompute"], rc), run(2, base + ["--keep-gathered"], kg)
if ok(x.returncode == 0 and y.returncode == 0, "ZeRO-3 with --recompute and with --keep-gathered complete"):
    z = os.path.join(tmp, "dense-np2-z3")
    ok(numbers(rc) == numbers(z) and rel(tensors(rc, "model"), tensors(z, "model")) == 0.0 and
       numbers(kg) == numbers(z) and rel(tensors(kg, "model"), tensors(z, "model")) == 0.0,
       "--recompute and --keep-gathered: losses and weights bit-identical to plain ZeRO-3")
# The next unit's all-gather started while one runs (the default) against each gathered when reached: the same
# bits, on cpu (MPI on host memory) and on cpu-mirror (the GPU ranks' path through the collectives' table).
for backend, ref_dir in (("cpu", "dense-np2-z3"), ("cpu-mirror", "mirror-z3")):
    npf = os.path.join(tmp, "no-prefetch-" + backend)
    if ok(run(2, base + ["--no-prefetch", "--backend", backend], npf).returncode == 0,
          "ZeRO-3 --no-prefetch on %s completes" % backend):
        z = os.path.join(tmp, ref_dir)
        ok(numbers(npf) == numbers(z) and rel(tensors(npf, "model"), tensors(z, "model")) == 0.0 and
           rel(tensors(npf, "optimizer"), tensors(z, "optimizer")) == 0.0,
           "%s, 2 ranks: ZeRO-3 with and without prefetch bit-identical (losses, weights, moments)" % backend)

# ---- refusals ----
bad = run(2, MODELS["dense"] + ["--data", shards, "--steps", "2", "--batch-tokens", "576", "--micro-batch", "2",
                                "--zero", "2", "--threads", "1", "-q"], os.path.join(tmp, "bad"))
ok(bad.returncode != 0 and "same number" in bad.stderr,
   "--zero 2 with 9 sequences over 2 ranks in micro-batches of 2 (5 and 4 rows: 3 and 2 micro-batches): refused")
u = subprocess.run([mt.PROG] + MODELS["dense"] + COMMON + ["--zero", "3", "-o", os.path.join(tmp, "z3one")],
                   capture_output=True, text=True)
ok(u.returncode == 2 and "mpirun" in u.stderr and not os.path.exists(os.path.join(tmp, "z3one")),
   "--zero 3 without a launcher: a usage error that says to start it with mpirun or srun, nothing written")
u = subprocess.run([mt.PROG] + MODELS["dense"] + COMMON + ["--zero", "4", "-o", os.path.join(tmp, "z4")],
                   capture_output=True, text=True)
ok(u.returncode == 2 and "--zero" in u.stderr, "--zero 4: a usage error")
u = subprocess.run([mt.PROG] + MODELS["dense"] + COMMON + ["--keep-gathered", "-o", os.path.join(tmp, "kg0")],
                   capture_output=True, text=True)
ok(u.returncode == 2 and "--keep-gathered" in u.stderr, "--keep-gathered without --zero 3: a usage error")
u = subprocess.run([mt.PROG] + MODELS["dense"] + COMMON + ["--zero", "2", "--no-prefetch", "-o", os.path.join(tmp, "np2")],
                   capture_output=True, text=True)
ok(u.returncode == 2 and "--no-prefetch applies to --zero 3" in u.stderr, "--no-prefetch without --zero 3: a usage error")

shutil.rmtree(tmp)
done()
