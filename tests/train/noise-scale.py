"""noise-scale.py: scp-train's gradient noise scale and per-group diagnostics (man 5 scp-run) against a brute-force
computation in float64 PyTorch (the model written here from the HF Llama math), on a tiny model and data made here.
The next-token objective, one document of T tokens per sequence, and learning rate 0, so that every step sees the
same weights and the per-sequence gradients g_i (of the mean loss over a sequence's T - 1 targets) of all N
sequences can be computed one by one:
- in the data order (--no-shuffle) every step's |G_small|^2 (the first micro-batch) and |G_big|^2 (the step's
  batch) equal |mean of its g_i|^2, and noise_scale and noise_scale_groups equal the EMAs of McCandlish et al.'s
  appendix A estimates recomputed from those exact norms;
- shuffled, over many steps, noise_scale is within four standard deviations of the exact value tr(Sigma) / |G|^2
  (in tokens, from the g_i); the standard deviation is that of the estimator itself, found by simulating the same
  sampling (a permutation per epoch, consecutive batches) and the same EMA on the exact g_i;
- grad_norm_groups equal the group norms of the batch gradient, update_ratio_groups equal |W_after - W_before| /
  |W_before| per group read from two checkpoints;
- with two ranks (mpirun) every rank's first micro-batch, or its whole share before the all-reduce, is a small
  sample, and the estimates are their mean; under --zero 2 and 3 (the shards hold the sum over the ranks) the ranks'
  first micro-batches together are the one sample, and there are no per-group keys;
  under --zero 1 the update ratios are those of one process;
- the backend that keeps its vectors in its own memory (cpu-mirror) gives the same figures; a resumed run continues
  the averages bit for bit (trainer_state.json keeps them), and a damaged record of them is refused;
- one rank with one micro-batch has no estimate (null), and --no-grad-stats leaves the keys out;
- scp-plot draws the noise scale, group norms and update ratios, and says so when a run has none."""
import json
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, SRCDIR, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

try:
    import numpy as np
    import torch
except ImportError:
    skip_all("numpy or torch not available")

EMA = 0.99   # the documented constant (man 5 scp-run, noise_scale)
T, V, N, B, MICRO = 16, 32, 64, 8, 2
tmp = tmpdir()
docs = td.markov_docs(N, V - 1, 11, min_len=T, max_len=T)
stream = td.write_tokstream(os.path.join(tmp, "s.tok"), docs, V - 1)
shards = os.path.join(tmp, "shards")
r = run(["scp-shard", "-q", "--no-shuffle", "-L", str(T), stream, "-o", shards])
if r.returncode != 0:
    skip_all("scp-shard failed: " + r.stderr.decode()[-200:])
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=V, mask_id=V - 1, hidden=16, layers=1, heads=2,
                      kv_heads=1, inter=32)


def train(name, *args, launcher=()):
    rundir = os.path.join(tmp, name)
    r = run(list(launcher) + [os.path.join(BIN, "scp-train"), "-q", "--threads", "1", "--init", "random:" + cfg,
                              "--init-std", "0.2", "--data", shards, "-o", rundir, "--objective", "ar",
                              "--batch-tokens", str(B * T)] + list(args))
    ok(r.returncode == 0, "%s: scp-train %s (%s)" % (name, " ".join(args), r.stderr.decode().strip()[-300:]))
    return rundir, (td.read_metrics(rundir) if r.returncode == 0 else [])


def group_of(name):
    if "embed_tokens" in name or name == "lm_head.weight":
        return "embed"
    if "norm" in name:
        return "norm"
    return "attn" if "self_attn" in name else "mlp"


def load(ckdir):
    W, _ = td.st_read(os.path.join(ckdir, "model.safetensors"))
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in W.items()}


def seq_loss(P, ids):
    """Mean next-token cross-entropy of one sequence (its T - 1 targets), HF Llama in float64."""
    c = json.load(open(cfg))
    D, H, KV = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd, eps = D // H, c["rms_norm_eps"]
    inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))

    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w

    def rot(x):
        return torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)

    x = torch.tensor(ids)[None]
    L = x.shape[1]
    ang = torch.outer(torch.arange(L, dtype=torch.float64), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    h = P["model.embed_tokens.weight"][x]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        a = rms(h, P[p + "input_layernorm.weight"])
        q = (a @ P[p + "self_attn.q_proj.weight"].T).view(1, L, H, hd).transpose(1, 2)
        k = (a @ P[p + "self_attn.k_proj.weight"].T).view(1, L, KV, hd).transpose(1, 2)
        v = (a @ P[p + "self_attn.v_proj.weight"].T).view(1, L, KV, hd).transpose(1, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        s = ((q @ k.transpose(-1, -2)) / math.sqrt(hd)).masked_fill(~causal, float("-inf"))
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(1, L, H * hd)
        h = h + o @ P[p + "self_attn.o_proj.weight"].T
        a = rms(h, P[p + "post_attention_layernorm.weight"])
        h = h + (torch.nn.functional.silu(a @ P[p + "mlp.gate_proj.weight"].T) * (a @ P[p + "mlp.up_proj.weight"].T)) \
            @ P[p + "mlp.down_proj.weight"].T
    logits = rms(h, P["model.norm.weight"]) @ P["lm_head.weight"].T
    return -logits.log_softmax(-1)[0, :-1].gather(-1, x[0, 1:, None]).mean()


def per_sequence_grads(P):
    """g (N, groups, params of the group): each sequence's gradient, flattened per group."""
    names = sorted(P)
    groups = sorted({group_of(n) for n in names})
    out = {g: [] for g in groups}
    for ids in docs:
        for p in P.values():
            p.grad = None
        seq_loss(P, ids).backward()
        for g in groups:
            out[g].append(torch.cat([P[n].grad.flatten() for n in names if group_of(n) == g]).numpy().copy())
    return {g: np.array(v) for g, v in out.items()}


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


# ---- the data order: every step's norms, and the EMAs, exactly ----
steps = N // B * 2   # two epochs
rd, mt = train("ordered", "--no-shuffle", "--lr", "0", "--micro-batch", str(MICRO), "--steps", str(steps))
P = load(os.path.join(rd, "latest"))
gr = per_sequence_grads(P)
groups = sorted(gr)
tokens = T - 1   # targets per sequence


def sq(g, rows):
    m = gr[g][rows].mean(0)
    return float(m @ m)


def replay(mt, small_rows):
    """The exact per-step norms and the EMAs of the estimates over the metrics lines mt of a run in the data order;
    small_rows(k) lists, per rank, the rows of its small sample at step k (the estimates are their mean). Returns
    the largest relative errors of grad_sq_small and grad_sq_big, and the EMAs (tr Sigma, |G|^2) per group."""
    worst_small = worst_big = 0.0
    ema_s = {g: 0.0 for g in groups}
    ema_g2 = {g: 0.0 for g in groups}
    for k, line in enumerate(mt):
        rows = [(k * B + i) % N for i in range(B)]
        big = {g: sq(g, rows) for g in groups}
        samples = small_rows(k)
        small = [{g: sq(g, [rows[i] for i in smp]) for g in groups} for smp in samples]
        bs = [len(smp) * tokens for smp in samples]
        mean_small = sum(sum(x.values()) for x in small) / len(small)
        worst_small = max(worst_small, rel(line["grad_sq_small"] or 0, mean_small))
        worst_big = max(worst_big, rel(line["grad_sq_big"] or 0, sum(big.values())))
        for g in groups:
            g2 = sum((b_big * big[g] - b * x[g]) / (b_big - b) for x, b in zip(small, bs)) / len(small)
            s = sum((x[g] - big[g]) / (1 / b - 1 / b_big) for x, b in zip(small, bs)) / len(small)
            ema_g2[g] = EMA * ema_g2[g] + (1 - EMA) * g2
            ema_s[g] = EMA * ema_s[g] + (1 - EMA) * s
    return worst_small, worst_big, ema_s, ema_g2


b_small, b_big = MICRO * tokens, B * tokens
worst_small, worst_big, ema_s, ema_g2 = replay(mt, lambda k: [range(MICRO)])
diag("largest relative error per step: |G_small|^2 %.2g, |G_big|^2 %.2g" % (worst_small, worst_big))
ok(len(mt) == steps and worst_small < 1e-4 and worst_big < 1e-4,
   "every step's |G_small|^2 and |G_big|^2 = |mean g_i|^2 over its micro-batch and batch (1e-4)")
ok(all(l["batch_small"] == b_small and l["batch_big"] == b_big for l in mt),
   "batch sizes in loss-carrying tokens: %d and %d" % (b_small, b_big))
last = mt[-1]
want = sum(ema_s.values()) / sum(ema_g2.values())
diag("noise_scale %.6g, recomputed %.6g" % (last["noise_scale"], want))
ok(rel(last["noise_scale"], want) < 1e-3, "noise_scale = EMA(tr Sigma) / EMA(|G|^2) of the exact estimates (1e-3)")
ok(all(rel(last["noise_scale_groups"][g], ema_s[g] / ema_g2[g]) < 1e-3 for g in groups if ema_g2[g] > 0),
   "noise_scale_groups likewise per group (%s)" % ", ".join("%s %.4g" % (g, ema_s[g] / ema_g2[g]) for g in groups))
first = mt[0]
ok(all(rel(first["grad_norm_groups"][g], math.sqrt(sq(g, list(range(B))))) < 1e-4 for g in groups),
   "grad_norm_groups = the group norms of the first batch's gradient")
gn = math.sqrt(sum(first["grad_norm_groups"][g] ** 2 for g in groups))
ok(rel(gn, first["grad_norm"]) < 1e-6, "the group norms make up grad_norm")
ok(all(first["update_ratio_groups"][g] == 0 for g in groups), "learning rate 0: update ratios 0")

# ---- two ranks: each rank's small sample (its first micro-batch, or its whole share before the all-reduce) ----
mpirun = shutil.which("mpirun")
have_mpi = "mpi=yes" in run(["scp-train", "--version"]).stdout.decode() and mpirun is not None
if have_mpi:
    os.environ.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                       "OMPI_MCA_rmaps_base_oversubscribe": "1"})
    os.environ.setdefault("OMPI_MCA_btl", "self,vader,tcp")
    os.environ.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    half = B // 2
    for micro, samples in ((MICRO, [range(MICRO), range(half, half + MICRO)]), (half, [range(half), range(half, B)])):
        _, m2 = train("ranks-micro%d" % micro, "--no-shuffle", "--lr", "0", "--micro-batch", str(micro), "--steps",
                      str(steps), launcher=[mpirun, "-np", "2", "--oversubscribe"])
        ws, wb, es, eg = replay(m2, lambda k: samples)
        want = sum(es.values()) / sum(eg.values())
        got = m2[-1]["noise_scale"] if m2 else float("nan")
        diag("2 ranks, micro-batch %d: largest errors %.2g %.2g, noise_scale %.6g, recomputed %.6g" %
             (micro, ws, wb, got, want))
        ok(len(m2) == steps and ws < 1e-4 and wb < 1e-4 and rel(got, want) < 1e-3,
           "2 ranks, micro-batch %d: small samples of %d tokens per rank, the estimates averaged over the ranks" %
           (micro, micro * tokens))
    # ZeRO-2/3: the shards hold the sum over the ranks after each micro-batch, so the small sample is both ranks'
    # first micro-batches together (rows 0, 1 and 4, 5), one per step; no per-group figures.
    for z in (2, 3):
        _, mz = train("ranks-zero%d" % z, "--no-shuffle", "--lr", "0", "--micro-batch", str(MICRO), "--steps",
                      str(steps), "--zero", str(z), launcher=[mpirun, "-np", "2", "--oversubscribe"])
        both = [list(range(MICRO)) + list(range(half, half + MICRO))]
        ws, wb, es, eg = replay(mz, lambda k: both)
        want = sum(es.values()) / sum(eg.values())
        got = mz[-1]["noise_scale"] if mz else float("nan")
        diag("--zero %d: largest errors %.2g %.2g, noise_scale %.6g, recomputed %.6g" % (z, ws, wb, got, want))
        ok(len(mz) == steps and ws < 1e-4 and wb < 1e-4 and rel(got, want) < 1e-3 and
           all(l["batch_small"] == 2 * MICRO * tokens for l in mz),
           "--zero %d: the ranks' first micro-batches together are the small sample (%d tokens)" %
           (z, 2 * MICRO * tokens))
        ok(mz and not any(k in l for l in mz for k in ("noise_scale_groups", "grad_norm_groups", "update_ratio_groups")),
           "--zero %d: no per-group keys (the groups' norms are not in the shards)" % z)
else:
    diag("no MPI: the two-rank checks are not run")

# ---- shuffled: noise_scale within the estimator's statistical error of the exact value ----
steps_s = 400
rd, ms = train("shuffled", "--lr", "0", "--micro-batch", str(MICRO), "--steps", str(steps_s))
Ws, _ = td.st_read(os.path.join(rd, "latest", "model.safetensors"))
ok(all(np.array_equal(Ws[n], P[n].detach().numpy().astype(np.float32)) for n in P), "the same weights as the first run")
flat = np.concatenate([gr[g] for g in groups], 1)   # (N, all params)
Gm = flat.mean(0)
sigma = ((flat - Gm) ** 2).sum(1).sum() / (N - 1)   # tr(Sigma) per sequence, unbiased
# Sampling without replacement from the N sequences: E|G_b|^2 = |G|^2 + tr(Sigma) (1/b - 1/N) for b sequences, so
# the estimates (appendix A) target tr(Sigma) and |G|^2 - tr(Sigma) / N; in tokens tr(Sigma) scales by T - 1.
exact = sigma * tokens / (float(Gm @ Gm) - sigma / N)
K = flat @ flat.T   # (N, N) Gram matrix: |mean over S|^2 = sum of K over S x S / |S|^2
rng = np.random.default_rng(5)
sims = 2000
es = np.zeros(sims)
eg = np.zeros(sims)
for k in range(steps_s):
    if k % (N // B) == 0:
        perm = np.argsort(rng.random((sims, N)), 1)
    rows = perm[:, (k % (N // B)) * B:(k % (N // B) + 1) * B]
    Kb = K[rows[:, :, None], rows[:, None, :]]                 # (sims, B, B)
    big = Kb.sum((1, 2)) / B ** 2
    small = Kb[:, :MICRO, :MICRO].sum((1, 2)) / MICRO ** 2
    g2 = (b_big * big - b_small * small) / (b_big - b_small)
    s = (small - big) / (1 / b_small - 1 / b_big)
    eg = EMA * eg + (1 - EMA) * g2
    es = EMA * es + (1 - EMA) * s
sim = es / eg
sd = float(sim.std())
got = ms[-1]["noise_scale"] if ms else float("nan")
diag("noise_scale %.4g tokens; exact %.4g; estimator over %d simulated runs: mean %.4g, sd %.3g" %
     (got, exact, sims, sim.mean(), sd))
ok(abs(sim.mean() - exact) < sd, "the simulated estimator is centred on the exact value (bias below one sd)")
ok(abs(got - exact) < 4 * sd, "noise_scale within 4 sd of the exact tr(Sigma) / |G|^2 (%.4g +- %.3g)" % (exact, sd))

# ---- update ratios against two checkpoints ----
rd, mu = train("update", "--lr", "1e-2", "--steps", "2", "--save-every", "1", "--micro-batch", str(MICRO),
               "--warmup", "0")
W1, _ = td.st_read(os.path.join(rd, "step-0000001", "model.safetensors"))
W2, _ = td.st_read(os.path.join(rd, "step-0000002", "model.safetensors"))
worst = 0.0
for g in groups:
    names = [n for n in W1 if group_of(n) == g]
    dw = math.sqrt(sum(float(((W2[n].astype(np.float64) - W1[n]) ** 2).sum()) for n in names))
    w = math.sqrt(sum(float((W1[n].astype(np.float64) ** 2).sum()) for n in names))
    diag("%s: update ratio %.6g, from the checkpoints %.6g" % (g, mu[1]["update_ratio_groups"][g], dw / w))
    worst = max(worst, rel(mu[1]["update_ratio_groups"][g], dw / w))
ok(len(mu) == 2 and worst < 1e-4, "update_ratio_groups = |W2 - W1| / |W1| per group from the checkpoints (1e-4)")

# The backend that keeps its vectors in its own memory (cpu-mirror, as a device does): the same figures.
rd, mm = train("update-mirror", "--lr", "1e-2", "--steps", "2", "--micro-batch", str(MICRO), "--warmup", "0",
               "--backend", "cpu-mirror")
keys = ("grad_sq_small", "grad_sq_big", "noise_scale", "grad_norm_groups", "update_ratio_groups")
flat_line = lambda l: [l[k] for k in keys[:3]] + [l[k][g] for k in keys[3:] for g in groups]  # noqa: E731
ok(len(mm) == 2 and all(rel(a, b) < 1e-6 for x, y in zip(mm, mu) for a, b in zip(flat_line(x), flat_line(y))),
   "--backend cpu-mirror (vectors in backend memory): the same statistics as cpu")

# ZeRO-1 (each rank updates its shard of the weights, then they are gathered): the same update ratios.
if have_mpi:
    _, mz1 = train("update-zero1", "--lr", "1e-2", "--steps", "2", "--micro-batch", str(MICRO), "--warmup", "0",
                   "--zero", "1", launcher=[mpirun, "-np", "2", "--oversubscribe"])
    worst = max((rel(x["update_ratio_groups"][g], y["update_ratio_groups"][g]) for x, y in zip(mz1, mu)
                 for g in groups), default=1.0)
    ok(len(mz1) == 2 and worst < 1e-4, "--zero 1 on 2 ranks: the update ratios of one process (%.1e)" % worst)

# A resumed run continues the averages (trainer_state.json keeps them): the same figures as a run left alone.
ra, ma = train("resume-a", "--lr", "1e-2", "--steps", "6", "--save-every", "3", "--micro-batch", str(MICRO))
rb = os.path.join(tmp, "resume-b")
shutil.copytree(ra, rb, symlinks=True)
shutil.rmtree(os.path.join(rb, "step-0000006"))
os.unlink(os.path.join(rb, "latest"))
os.symlink("step-0000003", os.path.join(rb, "latest"))
state = json.load(open(os.path.join(rb, "latest", "trainer_state.json")))
ok(state.get("noise_scale_ema", {}).get("steps") == 3, "trainer_state.json keeps the averages (3 steps folded in)")
r = run(["scp-train", "--resume", "-o", rb, "-q", "--threads", "1"])
mb = td.read_metrics(rb) if r.returncode == 0 else []
ok(len(mb) == 6 and all(x["noise_scale"] == y["noise_scale"] and x["noise_scale_groups"] == y["noise_scale_groups"]
                        for x, y in zip(ma[3:], mb[3:])),
   "resumed at step 3: noise_scale of steps 4-6 bit for bit those of the run left alone (%s)" % r.stderr.decode()[-200:])

# A damaged record of the averages is refused, naming the file and the key.
rc_ = os.path.join(tmp, "resume-c")
shutil.copytree(ra, rc_, symlinks=True)
sp = os.path.join(rc_, "latest", "trainer_state.json")
state = json.load(open(sp))
state["noise_scale_ema"]["grad_sq"]["attn"] = "x"
json.dump(state, open(sp, "w"))
r = run(["scp-train", "--resume", "-o", rc_, "-q", "--steps", "8"])
ok(r.returncode == 1 and b"trainer_state.json: 'noise_scale_ema.grad_sq.attn' must be a finite number" in r.stderr,
   "a damaged noise_scale_ema: exit 1, the file and the key named (%s)" % r.stderr.decode().strip())

# ---- when there is no estimate, and when it is off ----
rd, m1 = train("one-micro", "--lr", "0", "--steps", "2")
ok(m1 and all(l["noise_scale"] is None and l["grad_sq_small"] is None and l["batch_small"] is None for l in m1)
   and all(v is None for v in m1[-1]["noise_scale_groups"].values()),
   "one rank, one micro-batch: noise_scale and the raw estimates are null")
ok(m1 and "grad_norm_groups" in m1[0] and "update_ratio_groups" in m1[0], "the per-group diagnostics are still there")
rd, m0 = train("off", "--lr", "0", "--steps", "2", "--micro-batch", str(MICRO), "--no-grad-stats")
keys = ("noise_scale", "noise_scale_groups", "grad_sq_small", "grad_sq_big", "grad_norm_groups", "update_ratio_groups")
ok(m0 and not any(k in l for l in m0 for k in keys), "--no-grad-stats: none of the keys")

# ---- the plots of these keys ----
if shutil.which("gnuplot"):
    plot = [sys.executable, os.path.join(SRCDIR, "tools", "scp-plot")]
    for panel, runs in (("noise", ["ordered", "shuffled"]), ("grad-norm", ["ordered", "update"]),
                        ("update-ratio", ["update"])):
        png = os.path.join(tmp, panel + ".png")
        r = run(plot + ["-p", panel, "-o", png] + [os.path.join(tmp, x) for x in runs])
        ok(r.returncode == 0 and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", "scp-plot -p %s draws a PNG" % panel)
    r = run(plot + ["-p", "noise", "-o", os.path.join(tmp, "off.png"), os.path.join(tmp, "off")])
    ok(r.returncode == 1 and b"no noise_scale" in r.stderr and not os.path.exists(os.path.join(tmp, "off.png")),
       "scp-plot -p noise of a run without the keys: exit 1, says so (%s)" % r.stderr.decode().strip())
else:
    diag("no gnuplot: scp-plot not run")

# The x axis's tick labels: distinct, three significant digits (1.0M, 1.2M and 1.4M are not all "1M").
import importlib.machinery  # noqa: E402
sp = importlib.machinery.SourceFileLoader("scp_plot", os.path.join(SRCDIR, "tools", "scp-plot")).load_module()
for xmax, want in ((1.4e6, '"0" 0, "500k" 500000, "1M" 1000000, "1.5M" 1500000'),
                   (1.1e6, '"0" 0, "200k" 200000, "400k" 400000, "600k" 600000, "800k" 800000, "1M" 1000000, '
                           '"1.2M" 1200000'),
                   (45, '"0" 0, "10" 10, "20" 20, "30" 30, "40" 40, "50" 50'),
                   (2.6e9, '"0" 0, "500M" 500000000, "1G" 1000000000, "1.5G" 1500000000, "2G" 2000000000, '
                           '"2.5G" 2500000000, "3G" 3000000000')):
    got = sp.x_tics(xmax)
    ok(got == "set xtics (%s)" % want, "scp-plot's ticks up to %g: %s" % (xmax, got))
ok(sp.si(1250000) == "1.25M" and sp.si(999) == "999" and sp.si(1500) == "1.5k", "scp-plot's labels: 1.25M, 999, 1.5k")
done()
