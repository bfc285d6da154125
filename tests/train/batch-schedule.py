"""batch-schedule.py: scp-train --batch-schedule and --lr-scaling (man 1 scp-train, BATCH SCHEDULES) on a small
random model and data made here, against the rules recomputed here from the man page:
- linear:START:END:TOKENS: every step's batch_tokens is START + (END - START) * min(1, seen / TOKENS) rounded down
  to whole multiples of ranks x --micro-batch sequences, and the run ends at the first step that reaches --tokens;
- the rates of every group follow warmup and cosine decay in tokens times sqrt(B / B0), B / B0 or 1;
- adaptive:K:MIN:MAX: every step's batch is K x the noise_scale logged by the step before, clamped and rounded,
  from the twentieth estimate on, never shrinking; the default MIN and MAX are --batch-tokens and 64 times it;
- --resume from a middle checkpoint repeats the uninterrupted run bit for bit (metrics and weights), both kinds;
- mpirun -np 2 follows the same linear schedule as one process (losses and weights to 1e-5), under ZeRO-3 too,
  and the adaptive batch of two ranks follows the rule from rank 0's figures;
- --plan sizes the largest batch; malformed specs, --steps with a schedule, MIN > MAX, and an adaptive schedule
  without a noise scale are refused with exit status 2 and a message naming the fault."""
import json
import math
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, SRCDIR, ok, diag, done, tmpdir  # noqa: E402
import train_testdata as td  # noqa: E402
import mpi_testlib as mt  # noqa: E402

PROG = os.path.join(BIN, "scp-train")
tmp = tmpdir()
shards = td.make_shards(BIN, tmp)
T = 64
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=64, mask_id=63)
COMMON = ["--init", "random:" + cfg, "--data", shards, "--threads", "1", "--lr", "3e-3", "-q"]
SANITIZED = "sanitizers=yes" in subprocess.run([PROG, "--version"], capture_output=True, text=True).stdout
VOLATILE = ("tokens_per_s", "peak_rss_bytes")   # wall-clock and memory figures: not the run's arithmetic


def train(name, args, launcher=()):
    out = os.path.join(tmp, name)
    r = subprocess.run(list(launcher) + [PROG] + COMMON + list(args) + ["-o", out], capture_output=True, text=True)
    ok(r.returncode == 0, "%s: scp-train %s completes (%s)" % (name, " ".join(args), r.stderr.strip()[-300:]))
    return out, (td.read_metrics(out) if r.returncode == 0 else [])


def steps_of(metrics):
    return [x for x in metrics if "loss" in x]


def rounded(tokens, quantum):
    """Sequences: tokens rounded down to whole multiples of quantum sequences, at least one quantum."""
    n = int(math.floor(tokens / T))
    n -= n % quantum
    return max(n, quantum)


def linear_batch(start, end, span, seen, quantum):
    f = 1.0 if seen >= span else seen / span
    return rounded(start + (end - start) * f, quantum) * T


# ---- linear ramp: the batches and the rates ----
START, END, SPAN, BUDGET, WARM, MIN_LR = 256, 1024, 4000, 12000, 1000, 3e-4
B0 = 512
lin, ml = train("linear", ["--batch-tokens", str(B0), "--batch-schedule", "linear:256:1024:4k", "--micro-batch", "2",
                           "--tokens", "12k", "--warmup", "1k", "--schedule", "cosine", "--min-lr", str(MIN_LR),
                           "--lr-attn", "0.5", "--save-every", "6"])
ml = steps_of(ml)
seen, want = 0, []
while seen < BUDGET:
    want.append(linear_batch(START, END, SPAN, seen, 2))
    seen += want[-1]
got = [x["batch_tokens"] for x in ml]
ok(got == want, "linear: the %d steps' batch_tokens are the ramp's, rounded to pairs of sequences (%s)" %
   (len(want), got[:12]))
ok([x["tokens"] for x in ml] == [sum(want[:i + 1]) for i in range(len(want))],
   "linear: tokens seen add up the batches; the run ends at the first step past --tokens")


def lr_rule(done_tokens, batch, scaling, lr=3e-3):
    if done_tokens <= WARM:
        base = lr * done_tokens / WARM
    else:
        p = min(1.0, (done_tokens - WARM) / (BUDGET - WARM))
        base = MIN_LR + (lr - MIN_LR) * 0.5 * (1 + math.cos(math.pi * p))
    return base * {"sqrt": math.sqrt(batch / B0), "linear": batch / B0, "none": 1.0}[scaling]


def lr_error(metrics, scaling):
    worst = 0.0
    for x in metrics:
        w = lr_rule(x["tokens"], x["batch_tokens"], scaling)
        for g, mult in (("attn", 0.5), ("mlp", 1.0), ("embed", 1.0), ("norm", 1.0)):
            worst = max(worst, abs(x["lr"][g] - w * mult) / (w * mult))
    return worst


ok(ml and lr_error(ml, "sqrt") < 1e-12,
   "linear, --lr-scaling sqrt: every group's rate is warmup/cosine in tokens x sqrt(B / B0) x its multiplier "
   "(%.1e relative)" % (lr_error(ml, "sqrt") if ml else float("nan")))
for scaling in ("linear", "none"):
    _, m = train("lr-" + scaling, ["--batch-tokens", str(B0), "--batch-schedule", "linear:256:1024:4k",
                                   "--micro-batch", "2", "--tokens", "12k", "--warmup", "1k", "--schedule", "cosine",
                                   "--min-lr", str(MIN_LR), "--lr-attn", "0.5", "--lr-scaling", scaling])
    m = steps_of(m)
    ok(m and lr_error(m, scaling) < 1e-12, "--lr-scaling %s: the rates follow its rule (%.1e relative)" %
       (scaling, lr_error(m, scaling) if m else float("nan")))

# the log line names the batch
r = subprocess.run([PROG] + COMMON[:-1] + ["--batch-schedule", "linear:256:1024:4k", "--micro-batch", "2", "--tokens",
                                           "2k", "--log-every", "1", "-o", os.path.join(tmp, "log")],
                   capture_output=True, text=True)
ok(r.returncode == 0 and "loss" in r.stderr and " batch 256 tokens/s" in r.stderr and "lr x sqrt(B / 512)" in r.stderr,
   "--log-every shows the batch of a schedule, and the rule is printed at the start")


# ---- adaptive: K x the logged noise scale ----
def adaptive_want(metrics, k, lo, hi, quantum, first):
    """The batch of each step from the lines before it: the rule of the man page."""
    want, cur, estimates = [], first, 0
    for x in metrics:
        want.append(cur)
        estimates += x["batch_small"] is not None
        ns = x["noise_scale"]
        if estimates >= 20 and ns is not None:
            target = rounded(min(max(k * ns, lo), hi), quantum) * T
            cur = max(cur, target)
    return want


ada, ma = train("adaptive", ["--batch-tokens", "256", "--batch-schedule", "adaptive:2:256:2048", "--micro-batch", "2",
                             "--tokens", "30k", "--save-every", "12"])
ma = steps_of(ma)
wa = adaptive_want(ma, 2.0, 256, 2048, 2, 256)
ga = [x["batch_tokens"] for x in ma]
ok(ga == wa and len(set(ga)) > 1 and ga[0] == 256 and max(ga) < 2048,
   "adaptive:2:256:2048: every batch is 2 x the noise scale of the step before, rounded to pairs of sequences, "
   "from the twentieth estimate on (%s)" % sorted(set(ga)))
ok(ma and all(abs(x["lr"]["mlp"] / (3e-3 * math.sqrt(x["batch_tokens"] / 256)) - 1) <= 1e-12 for x in ma),
   "adaptive: lr x sqrt(B / 256) at every step")
_, mc = train("clamped", ["--batch-tokens", "256", "--batch-schedule", "adaptive:50", "--micro-batch", "2",
                          "--tokens", "20k"])
mc = steps_of(mc)
wc = adaptive_want(mc, 50.0, 256, 64 * 256, 2, 256)
gc = [x["batch_tokens"] for x in mc]
ok(gc == wc and max(gc) > 2048, "adaptive:50 with the default bounds [--batch-tokens, 64 x it]: %s" % sorted(set(gc)))


# scp-plot -p batch: the batch, and K x the noise scale of an adaptive run
if shutil.which("gnuplot"):
    plot = [sys.executable, os.path.join(SRCDIR, "tools", "scp-plot")]
    png = os.path.join(tmp, "batch.png")
    r = subprocess.run(plot + ["-p", "batch", "-o", png, ada, lin], capture_output=True, text=True)
    ok(r.returncode == 0 and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", "scp-plot -p batch draws a PNG")
else:
    diag("no gnuplot: scp-plot not run")

# ---- exact resume, both kinds ----
def resume_same(src, at, what):
    dst = os.path.join(tmp, os.path.basename(src) + "-resumed")
    mt.resumable(src, dst, at)
    r = subprocess.run([PROG, "--resume", "-q", "--threads", "1", "-o", dst], capture_output=True, text=True)
    if not ok(r.returncode == 0, "%s: --resume from step %d completes (%s)" % (what, at, r.stderr.strip()[-300:])):
        return
    strip = [{k: v for k, v in x.items() if k not in VOLATILE} for x in td.read_metrics(src)]
    again = [{k: v for k, v in x.items() if k not in VOLATILE} for x in td.read_metrics(dst)]
    wa_, wb_ = (open(os.path.join(d, "latest", "model.safetensors"), "rb").read() for d in (src, dst))
    ok(strip == again and wa_ == wb_, "%s: resumed at step %d, the metrics lines after it (%d steps) and the final "
       "weights are bit for bit those of the run that went on" % (what, at, len(strip) - at))


resume_same(lin, 6, "linear")
resume_same(ada, 12, "adaptive")

# ---- the memory plan: the largest batch ----


def plan(args):
    r = subprocess.run([PROG, "--plan", "--init", "random:" + cfg, "--seq-len", str(T), "--tokens", "12k"] + args,
                       capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else None


pf, ps = plan(["--batch-tokens", "1024"]), plan(["--batch-tokens", "512", "--batch-schedule", "linear:256:1024:4k"])
ok(pf is not None and pf == ps, "--plan of linear:256:1024:4k is that of a fixed batch of 1024 tokens (its largest)")

# ---- refusals ----


def refused(args, needle, what):
    out = os.path.join(tmp, "refused")
    r = subprocess.run([PROG] + COMMON + args + ["-o", out], capture_output=True, text=True)
    ok(r.returncode == 2 and needle in r.stderr and not os.path.exists(out),
       "refused (%s): exit %d, '%s' (%s)" % (what, r.returncode, needle, r.stderr.strip()[-200:]))


BAD = [(["--batch-schedule", "linear:256:1024", "--tokens", "4k"], "TOKENS is missing", "a ramp without its length"),
       (["--batch-schedule", "linear:a:1024:4k", "--tokens", "4k"], "START is not a count", "a ramp from no number"),
       (["--batch-schedule", "linear:256:1024:4k:9", "--tokens", "4k"], "unexpected ':9'", "a fifth field"),
       (["--batch-schedule", "linear:256:1.5:4k", "--tokens", "4k"], "END is not a whole count", "half a token"),
       (["--batch-schedule", "adaptive:0", "--tokens", "4k"], "K is not a number in (0, 1e6]", "K of 0"),
       (["--batch-schedule", "cubic:1", "--tokens", "4k"], "not linear:START:END:TOKENS or adaptive", "unknown kind"),
       (["--batch-schedule", "adaptive:2:4k:1k", "--tokens", "4k"], "MIN 4000 is above MAX 1000", "MIN > MAX"),
       (["--batch-schedule", "linear:256:1024:4k", "--steps", "5"], "not --steps", "--steps with a schedule"),
       (["--batch-schedule", "linear:256:1024:4k"], "--tokens is required", "no --tokens"),
       (["--batch-schedule", "adaptive:2", "--micro-batch", "2", "--tokens", "4k", "--no-grad-stats"],
        "--no-grad-stats turns off", "adaptive without the noise scale"),
       (["--batch-schedule", "adaptive:2", "--tokens", "4k"], "two micro-batches or more",
        "adaptive on one rank with one micro-batch"),
       (["--batch-schedule", "linear:256:1024:4k", "--tokens", "4k", "--lr-scaling", "cube"], "not sqrt, linear or none",
        "unknown --lr-scaling")]
for args, needle, what in BAD:
    refused(args, needle, what)

# ---- two ranks ----
v = subprocess.run([PROG, "--version"], capture_output=True, text=True).stdout
if "mpi=yes" not in v or not shutil.which("mpirun"):
    diag("no MPI build or no mpirun: the two-rank cases are left out")
else:
    mpirun = mt.require_mpi()
    # Batches are whole multiples of ranks x micro-batch sequences: one process with --micro-batch 4 takes the same
    # batches as two ranks with 2 each.
    # (--lr 1e-3: an AdamW update of a weight whose gradient is near 0 flips with the last bits of the sums, which
    # differ in order between one process and two ranks; a smaller rate keeps such flips well inside 1e-5)
    SCHED = ["--batch-tokens", "512", "--batch-schedule", "linear:256:1024:4k", "--tokens", "6k", "--warmup", "1k",
             "--lr", "1e-3"]
    one, m1 = train("one", SCHED + ["--micro-batch", "4"])
    two, m2 = train("two", SCHED + ["--micro-batch", "2"], launcher=[mpirun, "-np", "2", "--oversubscribe"])
    m1, m2 = steps_of(m1), steps_of(m2)
    b1, b2 = [x["batch_tokens"] for x in m1], [x["batch_tokens"] for x in m2]
    seen, want = 0, []
    while seen < 6000:
        want.append(linear_batch(START, END, SPAN, seen, 4))
        seen += want[-1]
    dl = mt.max_rel(mt.losses(one), mt.losses(two))
    dw = mt.tensors_rel(os.path.join(one, "latest", "model.safetensors"), os.path.join(two, "latest", "model.safetensors"))
    ok(b1 == want and b2 == want and dl <= 1e-5 and dw <= 1e-5,
       "mpirun -np 2: the ramp in multiples of 4 sequences as one process, losses %.1e and weights %.1e relative "
       "(<= 1e-5)" % (dl, dw))
    # ZeRO-3: the sharded state steps every batch of the ramp alike
    z3, mz = train("two-zero3", SCHED + ["--micro-batch", "2", "--zero", "3"],
                   launcher=[mpirun, "-np", "2", "--oversubscribe"])
    mz = steps_of(mz)
    dl = mt.max_rel(mt.losses(one), mt.losses(z3))
    dw = mt.dicts_rel(mt.run_tensors(one, "model"), mt.run_tensors(z3, "model"))
    ok([x["batch_tokens"] for x in mz] == want and dl <= 1e-5 and dw <= 1e-5,
       "mpirun -np 2 --zero 3: the same ramp, losses %.1e and weights %.1e relative to one process" % (dl, dw))
    if SANITIZED:
        diag("sanitizer build: the two-rank adaptive run is left to the plain build")
    else:
        _, m3 = train("two-adaptive", ["--batch-tokens", "256", "--batch-schedule", "adaptive:30:256:2048",
                                       "--micro-batch", "1", "--tokens", "20k"],
                      launcher=[mpirun, "-np", "2", "--oversubscribe"])
        m3 = steps_of(m3)
        g3 = [x["batch_tokens"] for x in m3]
        ok(g3 and g3 == adaptive_want(m3, 30.0, 256, 2048, 2, 256) and len(set(g3)) > 1,
           "mpirun -np 2, adaptive: rank 0's noise scale gives every batch, in multiples of 2 sequences (%s)" %
           sorted(set(g3)))

done()
