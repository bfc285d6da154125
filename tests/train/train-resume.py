"""train-resume.py: a run killed with SIGKILL at random moments (three times) and resumed each time ends with
bit-identical weights, optimizer moments and per-step losses to the same run left alone; SIGTERM saves a
checkpoint and exits 143, and the resumed run again matches. Annealed attention, micro-batches, warmup and
a cosine schedule are on, so the trainer RNG, the data cursor and the schedule all have to come back exactly;
a run started with relative paths resumes the same from another working directory.
The same run on the device-resident driver path (cpu-mirror) with --recompute is bit-identical too; on bf16
storage (cpu-bf16) it follows the fp32 losses closely, and resumes bit-identically after SIGTERM."""
import filecmp
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

for prog in ("scp-train", "scp-shard"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")

tmp = tmpdir()
shards = td.make_shards(BIN, tmp)
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=64, mask_id=63)
ARGS = ["--init", "random:" + cfg, "--data", shards, "--steps", "150", "--batch-tokens", "512", "--micro-batch", "3",
        "--lr", "3e-3", "--warmup", "10", "--schedule", "cosine", "--min-lr", "1e-4", "--attention", "anneal:60",
        "--save-every", "3", "--keep", "3", "--eval-every", "50", "--eval-seqs", "8", "--threads", "1", "-q"]
prog = os.path.join(BIN, "scp-train")


def losses(rundir):
    return [(x["step"], x.get("loss"), x.get("elbo")) for x in td.read_metrics(rundir)]


def same_run(a, b, what):
    la, lb = os.path.join(a, "latest"), os.path.join(b, "latest")
    okw = filecmp.cmp(os.path.join(la, "model.safetensors"), os.path.join(lb, "model.safetensors"), shallow=False)
    oko = filecmp.cmp(os.path.join(la, "optimizer.safetensors"), os.path.join(lb, "optimizer.safetensors"), shallow=False)
    ok(okw, what + ": final model.safetensors bit-identical")
    ok(oko, what + ": final optimizer.safetensors bit-identical")
    ma, mb = losses(a), losses(b)
    ok(ma == mb, what + ": every step's loss and every eval line identical (%d lines)" % len(ma))
    if ma != mb:
        diff = [(x, y) for x, y in zip(ma, mb) if x != y][:3]
        diag("first differences: %s" % diff)


ref = os.path.join(tmp, "ref")
t0 = time.time()
r = run(["scp-train"] + ARGS + ["-o", ref])
dur = time.time() - t0
ok(r.returncode == 0, "uninterrupted run (%.1f s)" % dur)

# The device-resident path of a device backend ("cpu-mirror": the CPU kernels on buffers the driver must treat
# as device memory, so weights, gradients and moments stay there and come down only for checkpoints), with
# activation recomputation: bit-identical to the plain run, checkpoints and evals included.
mir = os.path.join(tmp, "mirror")
r = run(["scp-train"] + ARGS + ["--backend", "cpu-mirror", "--recompute", "-o", mir])
ok(r.returncode == 0, "the same run with --backend cpu-mirror --recompute")
same_run(ref, mir, "cpu-mirror --recompute against cpu")

seed = int(os.environ.get("SCP_TEST_SEED", random.randrange(1 << 30)))
diag("kill moments from seed %d (SCP_TEST_SEED to repeat)" % seed)
rng = random.Random(seed)

# ---- kill -9 three times at random moments, resuming in between ----
rk = os.path.join(tmp, "killed")
kills = 0
p = subprocess.Popen([prog] + ARGS + ["-o", rk], stderr=subprocess.PIPE)
for attempt in range(3):
    # wait for the first checkpoint, then a random part of the rest of the run
    while not os.path.exists(os.path.join(rk, "latest")) and p.poll() is None:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.3) * dur)
    if p.poll() is None:
        p.kill()
        kills += 1
    p.wait()
    st = losses(rk)
    diag("attempt %d: stopped after step %s" % (attempt + 1, st[-1][0] if st else "-"))
    p = subprocess.Popen([prog, "--resume", "-o", rk, "-q"], stderr=subprocess.PIPE)
err = p.communicate()[1]
ok(p.returncode == 0, "resumed run completes (%d kills) %s" % (kills, err.decode()[-200:]))
ok(kills >= 1, "at least one kill landed mid-run")
same_run(ref, rk, "kill -9")
ok(not any(".tmp-" in n for n in os.listdir(rk)), "no temporaries left after resuming")

# ---- SIGTERM: checkpoint at the step reached, exit 143; resume matches ----
rt = os.path.join(tmp, "term")
p = subprocess.Popen([prog] + ARGS + ["-o", rt], stderr=subprocess.PIPE)
while not os.path.exists(os.path.join(rt, "latest")) and p.poll() is None:
    time.sleep(0.01)
time.sleep(rng.uniform(0.02, 0.3) * dur)
p.send_signal(signal.SIGTERM)
p.communicate()
steps_done = losses(rt)[-1][0]
latest = os.readlink(os.path.join(rt, "latest"))
ok(p.returncode == 143 and latest == "step-%07d" % steps_done,
   "SIGTERM: exit %d, checkpoint %s at the last step done (%d)" % (p.returncode, latest, steps_done))
r = run(["scp-train", "--resume", "-o", rt, "-q"])
ok(r.returncode == 0, "resume after SIGTERM")
same_run(ref, rt, "SIGTERM")

# ---- relative --init and --data, resumed from another working directory ----
# trainer_state.json records them as absolute paths, so the resumed run finds them from anywhere.
rel = os.path.join(tmp, "rel")
rel_args = list(ARGS)
rel_args[rel_args.index("--init") + 1] = "random:" + os.path.relpath(cfg, tmp)
rel_args[rel_args.index("--data") + 1] = os.path.relpath(shards, tmp)
p = subprocess.Popen([prog] + rel_args + ["-o", "rel"], cwd=tmp, stderr=subprocess.PIPE)
while not os.path.exists(os.path.join(rel, "latest")) and p.poll() is None:
    time.sleep(0.01)
time.sleep(rng.uniform(0.02, 0.3) * dur)
p.send_signal(signal.SIGTERM)
p.communicate()
diag("relative paths: exit %d after step %s" % (p.returncode, losses(rel)[-1][0]))
saved = json.load(open(os.path.join(rel, "latest", "trainer_state.json")))["options"]
ok(saved["init"].startswith("random:/") and os.path.samefile(saved["init"][7:], cfg) and
   os.path.isabs(saved["data"]) and os.path.samefile(saved["data"], shards),
   "relative --init and --data saved as absolute paths (%s, %s)" % (saved["init"], saved["data"]))
r = run(["scp-train", "--resume", "-o", rel, "-q"], cwd="/")
ok(r.returncode == 0, "resumed from / %s" % r.stderr.decode()[-200:])
same_run(ref, rel, "relative paths resumed from another directory")

# ---- bf16 storage ("cpu-bf16": the CPU kernels behind bf16 activations, fp32 master weights and moments) ----
# Its losses follow the fp32 run's to bf16's precision, but not bitwise (or the storage would not round); and a
# run stopped by SIGTERM and resumed is bit-identical to it uninterrupted: the bf16 copy of the weights is made
# again from the fp32 master in the checkpoint.
bref = os.path.join(tmp, "bf16")
t0 = time.time()
r = run(["scp-train"] + ARGS + ["--backend", "cpu-bf16", "-o", bref])
bdur = time.time() - t0
ok(r.returncode == 0, "the same run with --backend cpu-bf16 (%.1f s)" % bdur)
pairs = [(x[1], y[1]) for x, y in zip(losses(bref), losses(ref)) if x[1] is not None and y[1] is not None]
worst = max(abs(x - y) / abs(y) for x, y in pairs)
ok(len(pairs) >= 140 and 0 < worst < 1e-2, "cpu-bf16 losses within %.1e of fp32's over %d steps, not equal" % (worst, len(pairs)))
bt = os.path.join(tmp, "bf16-term")
p = subprocess.Popen([prog] + ARGS + ["--backend", "cpu-bf16", "-o", bt], stderr=subprocess.PIPE)
while not os.path.exists(os.path.join(bt, "latest")) and p.poll() is None:
    time.sleep(0.01)
time.sleep(rng.uniform(0.02, 0.3) * bdur)
p.send_signal(signal.SIGTERM)
p.communicate()
ok(p.returncode == 143, "cpu-bf16: SIGTERM after step %s" % losses(bt)[-1][0])
r = run(["scp-train", "--resume", "-o", bt, "-q"])
ok(r.returncode == 0, "cpu-bf16: resume after SIGTERM")
same_run(bref, bt, "cpu-bf16 SIGTERM")

# ---- --resume with nothing to resume ----
r = run(["scp-train", "--resume", "-o", os.path.join(tmp, "none")])
ok(r.returncode == 1 and b"none" in r.stderr, "--resume without a run refused")

import shutil  # noqa: E402
shutil.rmtree(tmp)
done()
