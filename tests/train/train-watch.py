"""train-watch.py: a long scp-train run can be watched without a terminal and does not lose its work: the plain
log line on stderr when it is a file (--log-every N or Ns, the 30 s default, 0 and -q silence it), its fields
against metrics.jsonl (the loss is the mean of the step losses since the previous line); the epoch of every
metrics line and the step whose batch first repeats a sequence, both against the counts the test computes from
the shard set's manifest; peak memory in every step line; checkpoints by wall time (the default interval, an
explicit one, 0); --keep-best keeps the checkpoint of the lowest val NLL (computed here from the val lines, and
scored again by scp-eval ppl) through --keep 1 pruning and a --resume that makes the model worse; under mpirun
-np 2 (where the build has MPI) rank 0 alone prints and every rank saves at the steps rank 0's clock picks."""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

for prog in ("scp-train", "scp-shard", "scp-eval"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")

tmp = tmpdir()
shards = td.make_shards(BIN, tmp)
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=64, mask_id=63)
T = 64
with open(os.path.join(shards, "manifest.json")) as f:
    N_TRAIN = sum(s["sequences"] for s in json.load(f)["shards"] if s["split"] == "train")
B = 7   # sequences per step: 304 train sequences are not a whole number of steps


def train(name, *args, quiet=False):
    """scp-train with stderr into a file (not a terminal); returns (exit status, stderr text, run directory)."""
    rd = os.path.join(tmp, name)
    err = os.path.join(tmp, name + ".err")
    with open(err, "wb") as e:
        r = subprocess.run([os.path.join(BIN, "scp-train"), "--threads", "1", "--init", "random:" + cfg, "--data",
                            shards, "-o", rd, "--lr", "3e-3", "--batch-tokens", str(B * T)] +
                           (["-q"] if quiet else []) + list(args), stdout=e, stderr=e)
    with open(err) as f:
        return r.returncode, f.read(), rd


LOG = re.compile(r"^scp-train: step (\d+)/(\d+) loss (\S+) tokens/s (\S+) elapsed (\d+:\d\d(?::\d\d)?) "
                 r"ETA (\d+:\d\d(?::\d\d)?) epoch (\S+) peak_rss (\S+) MiB$")


def log_lines(text):
    return [m.groups() for m in map(LOG.match, text.splitlines()) if m]


def steps_of(rd):
    return [x for x in td.read_metrics(rd) if "loss" in x]


def ckpts(rd):
    return sorted(int(d[5:]) for d in os.listdir(rd) if re.fullmatch(r"step-\d+", d))


# ---- the log line without a terminal ----
rc, err, rd = train("log5", "--steps", "50", "--log-every", "5")
lines = log_lines(err)
ok(rc == 0 and [int(x[0]) for x in lines] == list(range(5, 51, 5)) and all(x[1] == "50" for x in lines),
   "--log-every 5, stderr a file: a line at steps 5, 10, ..., 50 of 50 (%d lines)" % len(lines))
st = {x["step"]: x for x in steps_of(rd)}
worst_loss = worst_epoch = 0.0
prev = 0
for x in lines:
    step = int(x[0])
    # the loss of the line: the mean of metrics.jsonl's step losses since the previous line
    want = sum(st[s]["loss"] for s in range(prev + 1, step + 1)) / (step - prev)
    worst_loss = max(worst_loss, abs(float(x[2]) - want))
    worst_epoch = max(worst_epoch, abs(float(x[6]) - step * B / N_TRAIN))
    prev = step
ok(worst_loss <= 5.1e-5, "each line's loss is the mean of the step losses since the line before (|diff| %.1e)"
   % worst_loss)
ok(worst_epoch <= 5.1e-4, "each line's epoch is steps x %d / %d train sequences (|diff| %.1e)"
   % (B, N_TRAIN, worst_epoch))
ok(all(float(x[3]) > 0 and 1 < float(x[7]) < 100000 for x in lines),
   "tokens/s positive, peak RSS between 1 MiB and 100 GiB (last: %s tok/s, %s MiB)" % (lines[-1][3], lines[-1][7])
   if lines else "no lines")
ok(lines and lines[-1][5] == "0:00", "ETA 0:00 at the last step")

rc, err, rd = train("logdefault", "--steps", "12")
lines = log_lines(err)
ok(rc == 0 and lines and lines[-1][0] == "12" and len(lines) <= 2,
   "no --log-every, stderr a file: the 30 s default, a line at the last step (%d lines)" % len(lines))
rc, err, rd = train("logsecs", "--steps", "12", "--log-every", "1e-9s")
ok(rc == 0 and [int(x[0]) for x in log_lines(err)] == list(range(1, 13)),
   "--log-every 1e-9s: a line after every step")
rc, err, rd = train("loghour", "--steps", "12", "--log-every", "3600s")
ok(rc == 0 and [int(x[0]) for x in log_lines(err)] == [12], "--log-every 3600s: the last step's line only")
rc, err, rd = train("log0", "--steps", "12", "--log-every", "0")
ok(rc == 0 and not log_lines(err) and "step 12/12" not in err, "--log-every 0: no log line")
rc, err, rd = train("logq", "--steps", "60", quiet=True)
ok(rc == 0 and err == "", "-q: no default log line, nothing on stderr (%r)" % err[:80])
rc, err, rd = train("logqe", "--steps", "12", "--log-every", "6", quiet=True)
ok(rc == 0 and [int(x[0]) for x in log_lines(err)] == [6, 12], "-q with an explicit --log-every 6: its lines")
r = run(["scp-train", "--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "bad"), "--steps", "1",
         "--log-every", "5x"])
ok(r.returncode == 2 and b"--log-every" in r.stderr, "--log-every 5x: usage error, exit 2")

# ---- epochs: in every metrics line, and the step whose batch first repeats a sequence ----
rc, err, rd = train("epochs", "--steps", "100", "--eval-every", "25", "--eval-seqs", "4")
m = td.read_metrics(rd)
worst = max(abs(x["epoch"] - x["step"] * B / N_TRAIN) for x in m)
ok(rc == 0 and all("epoch" in x for x in m) and worst < 1e-12,
   "epoch in all %d lines (steps and evaluations) = step x %d / %d (|diff| %.1e)" % (len(m), B, N_TRAIN, worst))
first = N_TRAIN // B + 1   # its batch holds positions (first - 1) B .. first B - 1, and N_TRAIN among them
assert (first - 1) * B <= N_TRAIN < first * B
msg = "train data repeats: epoch 2 begins at step %d (" % first
ok(err.count("train data repeats") == 1 and msg in err,
   "one 'train data repeats' line, at step %d (%d sequences, %d a step)" % (first, N_TRAIN, B))
rc, err, rd = train("epochs-short", "--steps", str(first - 1))
ok(rc == 0 and "repeats" not in err, "a run that stops before position %d: no repeat line" % N_TRAIN)

# ---- peak memory ----
rss = [x.get("peak_rss_bytes") for x in m if "loss" in x]
ok(all(isinstance(v, int) and 1e6 < v < 1e11 for v in rss) and rss == sorted(rss),
   "peak_rss_bytes in every step line, between 1 MB and 100 GB, never falling (%s .. %s)" % (rss[0], rss[-1]))
ok(all("peak_device_bytes" not in x for x in m), "no device key on the CPU")

# ---- checkpoints by wall time ----
rc, err, rd = train("ck-default", "--steps", "10")
ok(rc == 0 and "checkpoints every 1800 s and at the end" in err and ckpts(rd) == [10],
   "no --save-every: every 1800 s, said at start-up; a short run saves its end only")
with open(os.path.join(rd, "latest", "trainer_state.json")) as f:
    ok(json.load(f)["options"]["save_seconds"] == 1800, "trainer_state.json keeps save_seconds 1800")
rc, err, rd = train("ck-tiny", "--steps", "10", "--save-every", "1e-9s")
ok(rc == 0 and "checkpoints every 1e-09 s" in err and ckpts(rd) == list(range(1, 11)),
   "--save-every 1e-9s: a checkpoint after every step (%s)" % ckpts(rd))
rc, err, rd = train("ck-hour", "--steps", "10", "--save-every", "3600s", "--keep", "2")
ok(rc == 0 and ckpts(rd) == [10] and "the newest 2 kept" in err, "--save-every 3600s: the end only")
rc, err, rd = train("ck-0", "--steps", "10", "--save-every", "0")
ok(rc == 0 and "checkpoints at the end only" in err and ckpts(rd) == [10], "--save-every 0: the end only")
rc, err, rd = train("ck-steps", "--steps", "10", "--save-every", "4")
ok(rc == 0 and "checkpoints every 4 steps" in err and ckpts(rd) == [4, 8, 10], "--save-every 4: steps 4, 8, 10")
r = run(["scp-train", "--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "bad"), "--steps", "1",
         "--save-every", "-1s"])
ok(r.returncode == 2 and b"--save-every" in r.stderr, "--save-every -1s: usage error, exit 2")

# ---- --keep-best ----
# Next-token runs: 30 steps at 3e-3 lower the val NLL; resumed at a rate of 1 to step 60 they raise it, so the
# lowest val line stays at or before step 30 while the checkpoints move on.
rc, err, rd = train("best", "--objective", "ar", "--steps", "30", "--eval-every", "10", "--eval-seqs", "16",
                    "--keep-best", "--keep", "1")
ok(rc == 0 and "the lowest val loss kept as best" in err, "--keep-best said at start-up")


def lowest(rd):
    ev = [(x["nll"], x["step"]) for x in td.read_metrics(rd) if "eval" in x and x["step"] > 0]
    return min(ev)[1], dict((s, v) for v, s in ev)


def best_step(rd):
    link = os.path.join(rd, "best")
    return int(os.readlink(link)[5:]) if os.path.islink(link) else None


low, ev = lowest(rd)
ok(best_step(rd) == low and ckpts(rd) == sorted({low, 30}), "best -> step %d, the lowest val NLL of %s; kept "
   "with --keep 1: %s" % (low, ev, ckpts(rd)))
r = run(["scp-train", "--threads", "1", "--resume", "-o", rd, "--steps", "60", "--lr", "1", "--log-every", "0"])
low2, ev2 = lowest(rd)
diag("val NLL by step: %s" % " ".join("%d:%.3f" % (s, ev2[s]) for s in sorted(ev2)))
ok(r.returncode == 0 and max(ev2[s] for s in ev2 if s > 30) > ev2[low2], "the resumed run at lr 1 raises the val NLL")
ok(low2 <= 30 and best_step(rd) == low2 and ckpts(rd) == sorted({low2, 60}),
   "after --resume: best still -> step %d, the lowest of all val lines, and survives --keep 1 (%s)"
   % (low2, ckpts(rd)))
with open(os.path.join(rd, "best", "trainer_state.json")) as f:
    ok(json.load(f)["step"] == low2, "best's trainer_state.json is at step %d" % low2)
r = run(["scp-eval", "ppl", "-m", os.path.join(rd, "best"), "-d", shards, "--max-seqs", "16", "--threads", "1", "-q"])
got = json.loads(r.stdout)["nll"] if r.returncode == 0 else float("nan")
ok(abs(got - ev2[low2]) < 1e-6, "scp-eval ppl of best: %.6f, the val line of step %d: %.6f" % (got, low2, ev2[low2]))

rc, err, rd = train("best-noval", "--steps", "4", "--keep-best")
ok(rc == 0 and "--keep-best needs evaluations" in err and not os.path.islink(os.path.join(rd, "best")),
   "--keep-best without --eval-every: a warning, no best link")

# ---- two ranks: rank 0 alone prints; the clock and the best are rank 0's word, followed by every rank ----
version = run(["scp-train", "--version"]).stdout
mpirun = shutil.which("mpirun")
if b"mpi=yes" in version and mpirun:
    import mpi_testlib as mt  # noqa: E402
    mt.require_mpi()   # the environment OpenMPI needs here
    rd = os.path.join(tmp, "mpi")
    r = subprocess.run(mt.mpi_cmd(mpirun, 2, [
        "--threads", "1", "--init", "random:" + cfg, "--data", shards, "-o", rd, "--lr", "3e-3", "--objective", "ar",
        "--batch-tokens", str(B * T), "--steps", "12", "--log-every", "4", "--save-every", "1e-9s", "--keep-best",
        "--eval-every", "4", "--eval-seqs", "8"]), capture_output=True, text=True)
    lines = log_lines(r.stderr)
    ok(r.returncode == 0 and [int(x[0]) for x in lines] == [4, 8, 12],
       "mpirun -np 2: one log line at steps 4, 8, 12 (rank 0's)")
    low, ev = lowest(rd) if r.returncode == 0 else (None, {})
    ok(r.returncode == 0 and ckpts(rd) == list(range(1, 13)) and best_step(rd) == low,
       "mpirun -np 2 --save-every 1e-9s: every step saved by both ranks; best -> step %s, the lowest of %s"
       % (low, ev))
else:
    diag("no MPI in this build or no mpirun: the two-rank checks are left out")
done()
