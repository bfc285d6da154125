"""train-surprises.py: scp-train says what it does with a command line that could be read two ways: --steps and
--tokens both given (the last one sets the run's length, named with the steps it gives), and a --resume whose
options move the learning rate at the resumed step (the rate before and after, and the options that moved it);
neither line appears when nothing is ambiguous or the rate stays."""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, done, run, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

for prog in ("scp-train", "scp-shard"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")

tmp = tmpdir()
shards = td.make_shards(BIN, tmp)
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=64, mask_id=63)
# 8 sequences of 64 tokens a step: 2k tokens are 4 steps (2000 / 512, rounded up)


def train(rundir, *args):
    return run(["scp-train", "--threads", "1", "--init", "random:" + cfg, "--data", shards, "-o",
                os.path.join(tmp, rundir), "--lr", "3e-3"] + list(args))


def resume(rundir, *args):
    return run(["scp-train", "--threads", "1", "--resume", "-o", os.path.join(tmp, rundir)] + list(args))


def steps(rundir):
    return [x["step"] for x in td.read_metrics(os.path.join(tmp, rundir)) if "loss" in x]


# ---- --steps and --tokens ----
r = train("st", "--steps", "2", "--tokens", "2k")
msg = b"--steps 2 and --tokens 2k both set the run's length: the last one given, --tokens 2k, is used (4 steps)"
ok(r.returncode == 0 and msg in r.stderr and len(steps("st")) == 4,
   "--steps 2 --tokens 2k: 4 steps, with a warning naming --tokens 2k")
r = train("ts", "--tokens", "2k", "--steps", "2")
msg = b"--steps 2 and --tokens 2k both set the run's length: the last one given, --steps 2, is used (2 steps)"
ok(r.returncode == 0 and msg in r.stderr and len(steps("ts")) == 2, "--tokens 2k --steps 2: 2 steps, named")
r = train("plain", "--tokens", "2k")
ok(r.returncode == 0 and b"both set" not in r.stderr and len(steps("plain")) == 4, "--tokens alone: no warning")
r = train("quiet", "--steps", "2", "--tokens", "2k", "-q")
ok(r.returncode == 0 and b"both set" not in r.stderr, "-q: no warning")

# ---- --resume over a changed schedule ----
# "plain" saved --tokens 2k (4 steps) at a constant 3e-3: --steps 4 is the same length, --steps 6 a longer one
# at the same constant rate
r = resume("plain", "--steps", "6")
ok(r.returncode == 0 and b"schedule changes" not in r.stderr and len(steps("plain")) == 6,
   "--resume --steps 6 on a constant schedule: the rate stays, no warning")
r = resume("plain", "--steps", "10", "--schedule", "cosine", "--warmup", "0")
after = 0.5 * 3e-3 * (1 + math.cos(math.pi * (6 + 1) / 10))
msg = ("--resume: the schedule changes at step 6: lr %.3g -> %.3g (--steps 10, --schedule cosine)" % (3e-3, after))
ok(r.returncode == 0 and msg.encode() in r.stderr and b"--warmup" not in r.stderr,
   "--resume --steps 10 --schedule cosine: the rates at step 6 and the options that changed them (%s)" %
   r.stderr.decode().strip().splitlines()[0])
ok(r.stderr.count(b"schedule changes") == 1, "one warning")
# metrics.jsonl counts the steps done: update 6 is its line "step": 7
m = [x for x in td.read_metrics(os.path.join(tmp, "plain")) if x.get("step") == 7 and "lr" in x]
ok(len(m) == 1 and abs(m[0]["lr"]["mlp"] - after) < 1e-12, "the first resumed step ran at the new rate %g (%s)" %
   (after, m[0].get("lr") if m else None))
r = resume("st", "--steps", "6", "--lr-attn", "0.5")
msg = b"--resume: the schedule changes at step 4: attn lr 0.003 -> 0.0015 (--steps 6, --lr-attn 0.5)"
ok(r.returncode == 0 and msg in r.stderr, "a group multiplier: the group's rate (%s)" %
   r.stderr.decode().strip().splitlines()[0])
r = resume("ts", "--steps", "4", "--lr", "1e-3", "-q")
ok(r.returncode == 0 and b"schedule changes" not in r.stderr, "-q: no warning")
done()
