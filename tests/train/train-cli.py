"""train-cli.py: scp-train end to end on data the test generates (Markov documents through scp-shard):
the loss falls, metrics.jsonl has its fields and the schedule's rates, checkpoints have the HF layout with the
SCP keys, groups with multiplier 0 stay frozen, NaN steps are skipped and never applied, bad inputs refused."""
import json
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

try:
    import numpy as np
except ImportError:
    skip_all("numpy not available")

for prog in ("scp-train", "scp-shard"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")

tmp = tmpdir()
shards = td.make_shards(BIN, tmp)
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=64, mask_id=63)
T = 64


def train(*args):
    return run(["scp-train", "--threads", "1"] + list(args))


# ---- conventions ----
r = run(["scp-train", "--help"])
ok(r.returncode == 0 and b"--lr-attn" in r.stdout and b"--resume" in r.stdout, "--help on stdout, exit 0")
r = run(["scp-train", "--version"])
ok(r.returncode == 0 and b"scp" in r.stdout, "--version exit 0")
r = run(["scp-train", "--bogus"])
ok(r.returncode == 2, "unknown option: exit 2")
r = train("--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "x"))
ok(r.returncode == 2 and b"--steps or --tokens" in r.stderr, "no length given: exit 2 (%s)" % r.stderr.strip()[-80:])
r = train("--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "x"), "--steps", "1", "--objective", "gan")
ok(r.returncode == 2 and b"--objective" in r.stderr, "bad --objective: exit 2")
r = train("--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "x"), "--steps", "1", "--objective", "ar",
          "--attention", "bidirectional")
ok(r.returncode == 2 and b"causal" in r.stderr, "ar with bidirectional attention: exit 2")

# ---- usage errors: --resume with --force, an unknown backend, the old -t (a warning) ----
r = train("--resume", "--force", "-o", os.path.join(tmp, "x"))
ok(r.returncode == 2 and b"--resume" in r.stderr and b"--force" in r.stderr, "--resume --force: exit 2 (%s)" %
   r.stderr.decode().strip()[-90:])
r = train("--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "x"), "--steps", "1", "--backend", "nosuch")
ok(r.returncode == 2 and b"unknown backend 'nosuch'" in r.stderr and b"cpu-bf16" in r.stderr and
   not os.path.exists(os.path.join(tmp, "x")), "--backend nosuch: exit 2 listing the backends (%s)" %
   r.stderr.decode().strip().splitlines()[0])
r = run(["scp-train", "-t", "1", "--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "old-t"),
         "--steps", "1", "-q"])
ok(r.returncode == 0 and b"-t is deprecated" in r.stderr and b"-j/--threads" in r.stderr,
   "-t still sets the threads, with a warning naming -j/--threads")

# ---- a run directory that would destroy or swallow an input: exit 2, the input untouched ----
cfg_dir = os.path.dirname(cfg)
for desc, init, out, extra in (
        ("the shard set itself", "random:" + cfg, shards, []),
        ("inside the shard set", "random:" + cfg, os.path.join(shards, "run"), []),
        ("the directory that holds the config", "random:" + cfg, cfg_dir, ["--force"]),
        ("a directory holding the shard set", "random:" + cfg, tmp, [])):
    before = sorted(os.listdir(shards)), sorted(os.listdir(cfg_dir))
    r = train("--init", init, "--data", shards, "-o", out, "--steps", "1", *extra)
    ok(r.returncode == 2 and b"-o: " in r.stderr and before == (sorted(os.listdir(shards)), sorted(os.listdir(cfg_dir))),
       "-o %s%s: exit 2, inputs untouched (%s)" % (desc, " with --force" if extra else "",
                                                    r.stderr.decode().strip().splitlines()[0]))

# ---- max_position_embeddings must cover the shards' sequences (the next-token loss reads all but the last) ----
for objective, max_pos, want in (("mdm", T - 1, 1), ("ar", T - 1, 0), ("ar", T - 2, 1), ("mdm", T, 0)):
    short = td.write_config(os.path.join(tmp, "short%d" % max_pos, "config.json"), vocab=64, mask_id=63,
                            max_position_embeddings=max_pos)
    rd = os.path.join(tmp, "short-%s-%d" % (objective, max_pos))
    r = train("--init", "random:" + short, "--data", shards, "-o", rd, "--steps", "1", "--objective", objective, "-q")
    if want:
        ok(r.returncode == 1 and b"max_position_embeddings %d" % max_pos in r.stderr and not os.path.exists(rd),
           "%s, %d-token sequences, %d positions: refused (%s)" % (objective, T, max_pos, r.stderr.decode().strip()))
    else:
        ok(r.returncode == 0, "%s, %d-token sequences, %d positions: trains" % (objective, T, max_pos))

# ---- a GPU backend where there is no GPU: one clear line, exit 1, no run directory left ----
features = run(["scp-train", "--version"]).stdout
ops = os.path.join(os.environ.get("SCP_BUILDDIR", os.path.dirname(BIN)), "tests", "model", "backend-ops")
gpus = run([ops, "--devices"]).stdout.strip() if os.access(ops, os.X_OK) else b"?"
nogpu = os.path.join(tmp, "run-nogpu")
if b"cuda=no" in features:
    r = train("--init", "random:" + cfg, "--data", shards, "-o", nogpu, "--steps", "1", "--backend", "cuda")
    ok(r.returncode == 1 and b"no CUDA backend" in r.stderr and not os.path.exists(nogpu),
       "--backend cuda in a build without CUDA: exit 1, says so, no run directory (%s)" % r.stderr.decode().strip())
elif gpus == b"0":
    for be in ("cuda", "cuda-fp32"):
        r = train("--init", "random:" + cfg, "--data", shards, "-o", nogpu, "--steps", "1", "--backend", be)
        ok(r.returncode == 1 and b"no usable GPU" in r.stderr and b"--backend cpu" in r.stderr and
           not os.path.exists(nogpu), "--backend %s without a GPU: exit 1, says so, no run directory (%s)"
           % (be, r.stderr.decode().strip()))
else:
    diag("a GPU is here (or backend-ops is not built): the no-GPU message is not checked")

# ---- a masked-diffusion run: warmup + cosine, eval lines, checkpoints ----
run1 = os.path.join(tmp, "run1")
lr, min_lr, warm, steps = 3e-3, 3e-4, 5, 40
r = train("--init", "random:" + cfg, "--data", shards, "-o", run1, "--steps", str(steps), "--batch-tokens", str(8 * T),
          "--micro-batch", "3", "--lr", str(lr), "--min-lr", str(min_lr), "--warmup", str(warm), "--schedule", "cosine",
          "--lr-attn", "2", "--lr-mlp", "0.5", "--eval-every", "20", "--eval-seqs", "32", "--save-every", "10",
          "--keep", "2", "-q")
ok(r.returncode == 0, "mdm run from random:CONFIG (%s)" % r.stderr.decode()[-200:])
m = td.read_metrics(run1)
trainl = [x for x in m if "loss" in x]
evall = [x for x in m if x.get("eval") == "val"]
ok([x["step"] for x in trainl] == list(range(1, steps + 1)), "one metrics line per step, steps 1..%d" % steps)
need = {"step", "tokens", "loss", "lr", "grad_norm", "masked_fraction", "tokens_per_s", "skipped"}
ok(all(need <= set(x) for x in trainl), "every step line has %s" % ", ".join(sorted(need)))
ok(all(x["tokens"] == x["step"] * 8 * T for x in trainl), "tokens count whole batches of 8 x %d" % T)
ok(set(trainl[0]["lr"]) == {"embed", "attn", "mlp", "norm"}, "lr per group present in the model")


def want_lr(s):   # s: 0-based update index; the schedule of train/schedule.h, written out independently here
    if s < warm:
        return lr * (s + 1) / warm
    p = (s - warm + 1) / (steps - warm)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))


bad = [(x["step"], g, v) for x in trainl for g, v in x["lr"].items()
       if abs(v - want_lr(x["step"] - 1) * {"attn": 2, "mlp": 0.5}.get(g, 1)) > 1e-12]
ok(not bad, "rates follow warmup + cosine with group multipliers%s" % ("" if not bad else ": %s" % bad[:3]))
ok(all(0.2 < x["masked_fraction"] < 0.8 for x in trainl) and
   abs(np.mean([x["masked_fraction"] for x in trainl]) - 0.5) < 0.05, "masked fraction around E[t] = 0.5")
ok([x["step"] for x in evall] == [0, 20, 40], "eval lines at steps 0, 20, 40")
e0, e1 = evall[0]["elbo"], evall[-1]["elbo"]
diag("val elbo %.4f -> %.4f (ln 64 = %.4f)" % (e0, e1, math.log(64)))
ok(abs(e0 - math.log(64)) < 0.3, "random init: bound near ln V")
ok(e1 < e0 - 0.3, "the diffusion bound on the val split falls (%.3f -> %.3f)" % (e0, e1))
ckpts = sorted(d for d in os.listdir(run1) if d.startswith("step-"))
ok(ckpts == ["step-0000030", "step-0000040"], "--keep 2 keeps the newest two (%s)" % ckpts)
ok(os.readlink(os.path.join(run1, "latest")) == "step-0000040", "latest -> step-0000040")
ck = os.path.join(run1, "latest")
ok(all(os.path.exists(os.path.join(ck, f)) for f in
       ("config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json")), "checkpoint files present")
c = json.load(open(os.path.join(ck, "config.json")))
ok(c.get("is_causal") is False and c.get("mask_token_id") == 63 and c.get("shift_logits") is True,
   "config.json: is_causal false, mask_token_id, shift_logits")
st = json.load(open(os.path.join(ck, "trainer_state.json")))
ok(st["step"] == steps and st["tokens"] == steps * 8 * T and st["cursor"] == steps * 8 and
   st["options"]["lr"] == lr and st["options"]["schedule"] == "cosine", "trainer_state.json: step, tokens, cursor, options")
w, _ = td.st_read(os.path.join(ck, "model.safetensors"))
mo, meta = td.st_read(os.path.join(ck, "optimizer.safetensors"))
ok(set(mo) == {"exp_avg." + k for k in w} | {"exp_avg_sq." + k for k in w} and
   all(mo["exp_avg_sq." + k].shape == w[k].shape for k in w), "optimizer.safetensors: both moments of every parameter")
ok(not any(n.endswith(".tmp") or ".tmp-" in n for n in os.listdir(run1)), "no temporaries left")

# ---- an existing run is not overwritten; a checkpoint without a mask id cannot train mdm ----
r = train("--init", "random:" + cfg, "--data", shards, "-o", run1, "--steps", "1")
ok(r.returncode == 1 and b"--resume" in r.stderr, "existing run refused without --resume/--force")
before = sorted(os.listdir(run1))
r = train("--resume", "-o", run1)
ok(r.returncode == 0 and (b"the run was already done at step %d: nothing to train (a larger --steps or --tokens "
                          b"continues it)" % steps) in r.stderr and sorted(os.listdir(run1)) == before,
   "--resume of a finished run: exit 0, says so and how to go on, no new checkpoint (%s)" % r.stderr.decode().strip()[-200:])
nomask = os.path.join(tmp, "nomask")
shutil.copytree(os.path.join(run1, "step-0000040"), nomask)
c2 = dict(c)
del c2["mask_token_id"]
json.dump(c2, open(os.path.join(nomask, "config.json"), "w"))
r = train("--init", nomask, "--data", shards, "-o", os.path.join(tmp, "run-nm"), "--steps", "1")
ok(r.returncode == 1 and b"mask_token_id" in r.stderr, "mdm from a checkpoint without mask_token_id refused")
r = train("--init", ck, "--data", os.path.join(tmp, "nope"), "-o", os.path.join(tmp, "run-nd"), "--steps", "1")
ok(r.returncode == 1 and b"nope" in r.stderr and not os.path.exists(os.path.join(tmp, "run-nd")),
   "missing shard set refused naming it, no run directory left")

# ---- a damaged checkpoint cannot be resumed from, and says which file is wrong ----
for victim, cut in (("optimizer.safetensors", 200), ("trainer_state.json", 30), ("model.safetensors", 100)):
    rd = os.path.join(tmp, "dmg-" + victim)
    shutil.copytree(run1, rd, symlinks=True)
    path = os.path.join(rd, "step-0000040", victim)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:cut])
    r = train("--resume", "-o", rd, "--steps", "45")
    ok(r.returncode == 1 and victim.encode() in r.stderr, "resume from a truncated %s refused: %s" %
       (victim, r.stderr.decode().strip()[-120:]))

# ---- a state that training cannot reach is refused naming the file ----
for key, value, want in (("rng", ["0000000000000000"] * 4, b"all zero"), ("step", 2 ** 53 + 1, b"beyond 2^53"),
                         ("cursor", 7, b"data cursor 7 is out of range")):
    rd = os.path.join(tmp, "bad-" + key)
    shutil.copytree(run1, rd, symlinks=True)
    path = os.path.join(rd, "step-0000040", "trainer_state.json")
    stj = json.load(open(path))
    stj[key] = value
    json.dump(stj, open(path, "w"))
    r = train("--resume", "-o", rd, "--steps", "45")
    ok(r.returncode == 1 and b"trainer_state.json" in r.stderr and want in r.stderr,
       "resume from a state with %s %s refused: %s" % (key, value if key != "rng" else "0", r.stderr.decode().strip()[-100:]))
stj = json.load(open(os.path.join(run1, "latest", "trainer_state.json")))
ok(stj["options"]["data"] == shards and stj["options"]["init"] == "random:" + cfg and os.path.isabs(shards),
   "trainer_state.json names init and data by absolute paths")

# ---- frozen groups: --lr-attn 0 --lr-norm 0 leave those tensors bit for bit ----
run2 = os.path.join(tmp, "run2")
r = train("--init", ck, "--data", shards, "-o", run2, "--steps", "5", "--lr", "1e-2", "--lr-attn", "0", "--lr-norm", "0",
          "--weight-decay", "0.5", "-q")
ok(r.returncode == 0, "train from a checkpoint with frozen groups")
w2, _ = td.st_read(os.path.join(run2, "latest", "model.safetensors"))
frozen = [k for k in w if "self_attn" in k or "norm" in k]
moving = [k for k in w if "mlp" in k or "embed" in k or "lm_head" in k]
ok(frozen and all(np.array_equal(w[k], w2[k]) for k in frozen), "attention and norm tensors unchanged (%d)" % len(frozen))
ok(moving and all(not np.array_equal(w[k], w2[k]) for k in moving), "mlp, embedding and lm_head tensors updated")
ok(sorted(os.listdir(os.path.join(run2, "latest"))) == sorted(os.listdir(ck)), "same checkpoint layout as the init")

# ---- NaN/Inf: a step whose loss is not finite is skipped and counted, never applied ----
nan_ck = os.path.join(tmp, "nan-ckpt")
shutil.copytree(ck, nan_ck)
wn = dict(w)
wn["model.norm.weight"] = w["model.norm.weight"].copy()
wn["model.norm.weight"][0] = np.inf
td.st_write(os.path.join(nan_ck, "model.safetensors"), wn, {"format": "pt"})
run3 = os.path.join(tmp, "run3")
r = train("--init", nan_ck, "--data", shards, "-o", run3, "--steps", "3", "-q")
m3 = td.read_metrics(run3)
ok(r.returncode == 0 and [x["skipped"] for x in m3] == [1, 2, 3], "3 non-finite steps skipped and counted")
w3, _ = td.st_read(os.path.join(run3, "latest", "model.safetensors"))
ok(all(np.array_equal(wn[k], w3[k]) for k in w), "skipped steps leave the weights untouched")
ok(json.load(open(os.path.join(run3, "latest", "trainer_state.json")))["adam_step"] == 0, "no AdamW update counted")

# ---- next-token objective: causal, the val NLL falls ----
run4 = os.path.join(tmp, "run4")
r = train("--init", "random:" + cfg, "--data", shards, "-o", run4, "--objective", "ar", "--steps", "30", "--lr", "3e-3",
          "--eval-every", "30", "-q")
m4 = [x for x in td.read_metrics(run4) if x.get("eval")]
ok(r.returncode == 0 and len(m4) == 2 and m4[1]["nll"] < m4[0]["nll"] - 0.3,
   "ar: val NLL falls (%s)" % [round(x.get("nll", 0), 3) for x in m4])
ok(json.load(open(os.path.join(run4, "latest", "config.json")))["is_causal"] is True, "ar checkpoint is causal")
ok("masked_fraction" not in td.read_metrics(run4)[1], "no masked fraction for ar")

# ---- the other switches run and train: doc mask, no shift, masked norm, samplers, schedules, --tokens ----
combos = [["--doc-mask", "--no-shift", "--loss-norm", "masked"],
          ["--t-sampler", "antithetic", "--mask-schedule", "cosine", "--schedule", "wsd", "--min-lr", "1e-4"],
          ["--t-sampler", "uniform", "--attention", "anneal:10", "--doc-mask", "--no-shuffle"],
          ["--objective", "ar", "--doc-mask", "--schedule", "cosine", "--warmup", "3"]]
for k, extra in enumerate(combos):
    rd = os.path.join(tmp, "combo%d" % k)
    r = train("--init", "random:" + cfg, "--data", shards, "-o", rd, "--tokens", str(20 * 8 * T), "--lr", "3e-3", "-q",
              *extra)
    mm = td.read_metrics(rd) if r.returncode == 0 else []
    ls = [x["loss"] for x in mm]
    ok(r.returncode == 0 and len(mm) == 20 and all(math.isfinite(v) for v in ls) and
       np.mean(ls[-5:]) < np.mean(ls[:5]), "%s: 20 steps from --tokens, loss falls (%.3f -> %.3f)" %
       (" ".join(extra), np.mean(ls[:5]) if ls else 0, np.mean(ls[-5:]) if ls else 0))
    if k == 0:
        c0 = json.load(open(os.path.join(rd, "latest", "config.json")))
        ok(c0["shift_logits"] is False, "--no-shift recorded in config.json")

# ---- micro-batches add up to the global batch: same losses (up to float reassociation) ----
lsets = []
for mb in ("8", "3", "1"):
    rd = os.path.join(tmp, "mb" + mb)
    r = train("--init", "random:" + cfg, "--data", shards, "-o", rd, "--steps", "5", "--micro-batch", mb, "-q")
    lsets.append([x["loss"] for x in td.read_metrics(rd)] if r.returncode == 0 else [])
ok(all(len(l) == 5 for l in lsets) and
   max(abs(a - b) / abs(a) for l in lsets[1:] for a, b in zip(lsets[0], l)) < 1e-5,
   "micro-batches of 3 and 1 give the losses of one batch of 8")
for objective in ("mdm", "ar"):
    r = train("--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "tok-" + objective), "--objective",
              objective, "--tokens", "1000", "--batch-tokens", "256", "-q")
    st = json.load(open(os.path.join(tmp, "tok-" + objective, "latest", "trainer_state.json")))
    ok(r.returncode == 0 and st["step"] == 4 and st["tokens"] == 1024 and st["total_steps"] == 4,
       "%s: --tokens 1000 at 256 per step is 4 steps" % objective)

# ---- the data's tokenizer must be the checkpoint's ----
tokck = os.path.join(tmp, "tokck")
shutil.copytree(ck, tokck)
td.write_llama2c_tokenizer(os.path.join(tokck, "tokenizer.bin"), 64)
other = td.make_shards(BIN, tmp, name="other", n_docs=50, tok_hash=0x1234)
r = train("--init", tokck, "--data", other, "-o", os.path.join(tmp, "run5"), "--steps", "1")
ok(r.returncode == 1 and b"another tokenizer" in r.stderr, "tokenizer hash mismatch refused: %s" % r.stderr.decode().strip()[-160:])
r = train("--init", tokck, "--data", shards, "-o", os.path.join(tmp, "run6"), "--steps", "2", "-q")
ok(r.returncode == 0 and os.path.exists(os.path.join(tmp, "run6", "latest", "tokenizer.bin")),
   "tokenizer files copied into the checkpoints")

shutil.rmtree(tmp)
done()
