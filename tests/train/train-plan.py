"""train-plan.py: scp-train --plan, the memory planner (man 1 scp-train, PLANNING). From config.json alone it
prints the parameter count (checked against a count made here from the config's sizes, and against the one the
trainer reports), per-rank bytes that add up to the total, ZeRO-3 state that shrinks as 1/N with the ranks (and
ZeRO-3's prefetch buffer, one gathered layer counted here from the config),
traffic per step that follows the ring formulas, whether a given memory fits (at the exact byte), the launcher's
world as the default, and usage errors for what it cannot plan. Then the plan is held against the measured peak
resident set of CPU training runs (one process at ZeRO-0; rank 1 of mpirun -np 2 at ZeRO-1) within 10%, against
the device memory cpu-mirror counts (ZeRO-0, and 2 ranks at ZeRO-1 and ZeRO-3) within 10%, and the table of the
manual is the one bench/plan-table prints.

What is measured: the peak resident set (ru_maxrss of the process, VmHWM at its end) of a run of a 23.6M-parameter
model for 2 steps of one 64-token sequence per pass, minus that of the same run with a 10k-parameter model (the
program, its libraries, the threads and their BLAS buffers, the mapped data: the same in both runs); against the
difference of the two plans' totals. The state (weights, gradients, AdamW moments: 16 bytes per parameter at
ZeRO-0) is what such a run holds, so a plan that miscounted it, or a workspace the planner did not see, moves the
figure by more than the tolerance. Under MPI rank 0 also writes the checkpoints; at ZeRO-1 the moments come to it
one tensor at a time, so its peak is the plan's too, and the ZeRO-1 comparison reads both ranks."""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, SRCDIR, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

PROG = os.path.join(BIN, "scp-train")
for prog in ("scp-train", "scp-shard"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")
VERSION = run(["scp-train", "--version"]).stdout.decode()
tmp = tmpdir()


def plan(cfg, *args, env=None):
    r = subprocess.run([PROG, "--plan", "--init", "random:" + cfg] + list(args), capture_output=True, text=True,
                       env=env)
    if r.returncode != 0:
        diag(r.stderr[-600:])
        return None
    return json.loads(r.stdout)


def layer_floats(c):
    """Parameters of one decoder layer, from the architectures' published layer shapes."""
    D, H = c["hidden_size"], c["num_attention_heads"]
    KV, hd = c.get("num_key_value_heads", H), c.get("head_dim", D // H)
    qwen3 = c["model_type"] in ("qwen3", "qwen3_moe")
    layer = D * H * hd + 2 * D * KV * hd + H * hd * D + 2 * D   # q, k, v, o; the two RMSNorms
    if c["model_type"] == "qwen2":
        layer += H * hd + 2 * KV * hd                           # q, k, v biases
    if qwen3:
        layer += 2 * hd                                         # q_norm, k_norm
    if c["model_type"] == "qwen3_moe":
        E, Ie = c["num_experts"], c["moe_intermediate_size"]
        layer += E * D + E * 3 * Ie * D                         # router; gate, up, down per expert
    else:
        layer += 3 * c["intermediate_size"] * D
    return layer


def count(c):
    """Parameters of a config: its layers, the embeddings, the final norm and (untied) the LM head."""
    D, L, V = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    return L * layer_floats(c) + V * D + D + (0 if c.get("tie_word_embeddings") else V * D)


# ---- the JSON ---------------------------------------------------------------------------------------------
FIELDS = ("weights", "master", "grads", "optimizer", "activations", "buffers", "total")
configs = {
    "llama-tied": dict(model_type="llama", vocab=300, hidden=48, layers=3, heads=4, kv_heads=2, inter=96, tie=True),
    "qwen2": dict(model_type="qwen2", vocab=300, hidden=48, layers=2, heads=6, kv_heads=2, inter=80),
    "qwen3": dict(model_type="qwen3", vocab=300, hidden=48, layers=2, heads=4, kv_heads=1, inter=80, head_dim=16),
    "qwen3-moe": dict(model_type="qwen3_moe", vocab=300, hidden=48, layers=2, heads=4, kv_heads=2, inter=0,
                      num_experts=8, num_experts_per_tok=2, moe_intermediate_size=24),
}
paths = {}
for name, kw in configs.items():
    paths[name] = td.write_config(os.path.join(tmp, name, "config.json"), mask_id=299, **kw)
    with open(paths[name]) as f:
        want = count(json.load(f))
    for backend in ("cpu", "cuda"):
        p = plan(paths[name], "--seq-len", "32", "--backend", backend)
        good = p is not None and p["params"] == want and sum(p["per_rank"][k] for k in FIELDS[:-1]) == \
            p["per_rank"]["total"] and all(p["per_rank"][k] >= 0 for k in FIELDS) and p["world"] == 1
        ok(good, "%s on %s: params %s = %d counted from the config; the per-rank fields add up to the total %s" % (
            name, backend, p and p["params"], want, p and p["per_rank"]["total"]))

# The stages on the CPU, whose fp32 weights are the master: 4 n of master, 4 n of gradients, 8 n of moments.
cfg = paths["qwen3"]
n = plan(cfg, "--seq-len", "32")["params"]
p0, pc = plan(cfg, "--seq-len", "32"), plan(cfg, "--seq-len", "32", "--backend", "cuda")
r = p0["per_rank"]
ok(r["master"] == 4 * n and r["weights"] == 0 and r["grads"] == 4 * n and r["optimizer"] == 8 * n and
   p0["memory"] == "host" and p0["comm_bytes_per_step"] == 0,
   "cpu, zero 0, one rank: master 4n, no separate compute copy, gradients 4n, moments 8n, nothing sent")
r = pc["per_rank"]
ok(pc["memory"] == "device" and pc["backend"] == "cuda" and r["master"] == 4 * n and r["weights"] == 2 * n and
   r["activations"] < p0["per_rank"]["activations"] and r["buffers"] >= 32 << 20,
   "cuda (known traits without the plugin): a bf16 compute copy 2n beside the fp32 master, bf16 activations "
   "(%d < %d bytes), cuBLAS's workspace among the buffers" % (r["activations"], p0["per_rank"]["activations"]))

# ZeRO-3 on a 24.7M-parameter model: the sharded state (master, moments, the gradient shard) falls as 1/N; the
# gathered units (the embeddings, the LM head and the largest layer) do not.
big = td.write_config(os.path.join(tmp, "big", "config.json"), vocab=8192, hidden=384, layers=8, heads=6, kv_heads=2,
                      inter=1536, mask_id=8191)
with open(big) as f:
    bigc = json.load(f)
nb = count(bigc)
Z3 = ("--seq-len", "64", "--batch-tokens", "256", "--micro-batch", "1", "--zero", "3")
z3 = {w: plan(big, *Z3, "--world", str(w), "--no-prefetch") for w in (1, 2, 4)}
for w in (2, 4):
    a, b = z3[1]["per_rank"], z3[w]["per_rank"]
    shrink = all(1.0 <= b[k] * w / a[k] < 1.002 for k in ("master", "optimizer"))
    grads_shard = (b["grads"] - b["weights"]) * w / (a["grads"] - a["weights"])   # 4 S: the gradients less 4 G
    ok(shrink and 1.0 <= grads_shard < 1.002 and abs(b["weights"] - a["weights"]) < 0.01 * a["weights"] and
       z3[w]["shard_floats"] * w >= nb,
       "zero 3 on %d ranks: master %d and moments %d bytes are 1/%d of one rank's (+padding), the gradient shard "
       "too (%.4f); the gathered units the same" % (w, b["master"], b["optimizer"], w, grads_shard))
    # The prefetch (the default): the even units after the embeddings, here layers 2, 4, 6 and 8, gathered into a
    # buffer of their own, world pieces of ceil(layer / world) floats rounded up to 16.
    per = -(-layer_floats(bigc) // w)
    per = -(-per // 16) * 16
    pf = plan(big, *Z3, "--world", str(w))["per_rank"]
    ok(pf["weights"] - b["weights"] == 4 * per * w and pf["total"] - b["total"] == 4 * per * w,
       "zero 3 on %d ranks: the prefetch adds one gathered layer, %d bytes, to the weights" % (w, 4 * per * w))
# Traffic: ring collectives, (w - 1)/w of the vector per all-gather or reduce-scatter, twice for an all-reduce.
c2 = {z: plan(big, "--seq-len", "64", "--batch-tokens", "256", "--micro-batch", "1", "--zero", str(z), "--world", "2")
      for z in range(4)}
S = c2[3]["shard_floats"]
passes = c2[3]["micro_batches"]
# ZeRO-1 cuts as ZeRO-2/3 do: its weight all-gather sends this rank's padded pieces, S floats, to the other rank
ok(c2[0]["comm_bytes_per_step"] == 4 * nb and c2[1]["comm_bytes_per_step"] == 4 * nb + 4 * S and
   c2[1]["shard_floats"] == S and
   c2[2]["comm_bytes_per_step"] == (passes + 1) * 4 * S and passes == 2 and c2[0]["micro_batches"] == 2,
   "2 ranks: zero 0 all-reduces 4n bytes per rank, zero 1 adds the weights' all-gather (4S), zero 2 reduce-scatters "
   "every pass and gathers once (%d)" % c2[2]["comm_bytes_per_step"])
ok(c2[3]["comm_bytes_per_step"] > c2[2]["comm_bytes_per_step"] and c2[2]["per_rank"]["total"] < c2[1]["per_rank"]["total"]
   < c2[0]["per_rank"]["total"] and c2[3]["per_rank"]["total"] < c2[2]["per_rank"]["total"],
   "each stage holds less and zero 3 sends more (totals %s)" % [c2[z]["per_rank"]["total"] for z in range(4)])

# Expert parallelism: a rank holds its place's experts and the rest; the expert units sharded over the world / E
# ranks of its place at stage 3; the all-to-all counted in the bytes sent.
moe = paths["qwen3-moe"]
with open(moe) as f:
    mc = json.load(f)
nm = count(mc)
Ex, D_, Ie_, L_ = mc["num_experts"], mc["hidden_size"], mc["moe_intermediate_size"], mc["num_hidden_layers"]
expert_floats = Ex * 3 * Ie_ * D_ * L_
EPA = ["--seq-len", "32", "--batch-tokens", "256", "--world", "4", "--expert-parallel", "2"]
e0, e3 = plan(moe, *EPA), plan(moe, *EPA, "--zero", "3")
m0 = plan(moe, "--seq-len", "32", "--batch-tokens", "256", "--world", "4")
rows_out = (256 // 32 // 4) * 32 * mc["num_experts_per_tok"] // 2   # a rank's M k rows, half of them to its peer
ok(e0 is not None and e0["params"] == nm - expert_floats // 2 and e0["expert_params"] == expert_floats // 2 and
   e0["per_rank"]["optimizer"] == 8 * e0["params"] and
   e0["all_to_all_bytes_per_step"] == L_ * 5 * rows_out * D_ * 4 and
   e0["comm_bytes_per_step"] < m0["comm_bytes_per_step"] + e0["all_to_all_bytes_per_step"],
   "--expert-parallel 2 of 4 ranks: params %s = %d less half the %d expert floats, moments 8 of each; the "
   "all-to-all 5 L M k/2 D 4 = %s bytes" % (e0 and e0["params"], nm, expert_floats, e0 and e0["all_to_all_bytes_per_step"]))
floor = (e0["params"] - e0["expert_params"]) / 4 + e0["expert_params"] / 2
units = 2 * L_ + 2
ok(e3 is not None and floor <= e3["shard_floats"] < floor + 16 * units and
   e3["per_rank"]["master"] == 4 * e3["shard_floats"],
   "... at stage 3: a shard of %s floats, the rest over 4 ranks and the experts over 2 (%d, + at most 16 a unit "
   "of padding)" % (e3 and e3["shard_floats"], floor))
r = subprocess.run([PROG] + ["--plan", "--init", "random:" + moe, "--zero", "1"] + EPA, capture_output=True, text=True)
ok(r.returncode == 1 and "--zero 0, 2 or 3" in r.stderr, "--expert-parallel with --zero 1: not planned (%s)" %
   r.stderr.strip()[:120])

# --gpu-memory: fits at the total exactly, not a byte below; suffixes and exponents as other counts.
tot = p0["per_rank"]["total"]
yes, no = plan(cfg, "--seq-len", "32", "--gpu-memory", str(tot)), plan(cfg, "--seq-len", "32", "--gpu-memory", str(tot - 1))
g1, g2 = plan(cfg, "--seq-len", "32", "--gpu-memory", "80G"), plan(cfg, "--seq-len", "32", "--gpu-memory", "80e9")
ok(yes["fits"] is True and no["fits"] is False and "fits" not in p0 and g1["gpu_memory"] == g2["gpu_memory"] == 80 * 10 ** 9,
   "--gpu-memory %d fits, %d does not; 80G = 80e9 bytes" % (tot, tot - 1))
# --recompute: one layer slot of activations instead of every layer's.
rc = plan(big, "--seq-len", "64", "--recompute")
nr = plan(big, "--seq-len", "64")
ok(rc["per_rank"]["activations"] < nr["per_rank"]["activations"] and rc["recompute"] is True,
   "--recompute: activations %d instead of %d bytes" % (rc["per_rank"]["activations"], nr["per_rank"]["activations"]))

# The sequence length of --data when --seq-len is not given; the default world is the launcher's.
shards = td.make_shards(BIN, tmp)
pd = plan(big, "--data", shards, "-o", os.path.join(tmp, "unused"), "--steps", "3")
ok(pd is not None and pd["seq_len"] == 64 and not os.path.exists(os.path.join(tmp, "unused")),
   "a training command line with --plan: the shard set's 64 tokens per sequence, nothing written")
env = dict(os.environ, OMPI_COMM_WORLD_SIZE="4", OMPI_COMM_WORLD_RANK="0")
pw = plan(cfg, "--seq-len", "32", "--batch-tokens", "128", env=env)
env1 = dict(env, OMPI_COMM_WORLD_RANK="1")
r1 = subprocess.run([PROG, "--plan", "--init", "random:" + cfg, "--seq-len", "32", "--batch-tokens", "128"],
                    capture_output=True, text=True, env=env1)
want_w = 4 if "mpi=yes" in VERSION else 1
ok(pw is not None and pw["world"] == want_w and r1.returncode == 0 and (r1.stdout == "") == (want_w == 4),
   "under mpirun's environment (world 4, no MPI started): the plan is for %d ranks, printed by rank 0 only" % want_w)

# What it cannot plan.
T32 = ["--seq-len", "32"]
cases = [
    (["--plan", "--init", "random:" + cfg, "--zero", "4"] + T32, 2, "out of range"),
    (["--plan"] + T32, 2, "--plan needs --init"),
    (["--plan", "--init", "random:" + cfg], 2, "--seq-len"),
    (["--plan", "--init", "random:" + cfg, "--world", "0"] + T32, 2, "out of range"),
    (["--plan", "--init", "random:" + cfg, "--world", "16"] + T32, 2, "cannot be shared by 16 ranks"),
    (["--plan", "--init", "random:" + cfg, "--seq-len", "4096"], 1, "max_position_embeddings"),
    (["--plan", "--init", "random:" + cfg, "--backend", "tpu"] + T32, 2, "unknown backend"),
    (["--plan", "--init", "random:" + cfg, "--resume"] + T32, 2, "not a --resume"),
    (["--plan", "--init", os.path.join(tmp, "nothing")] + T32, 1, "config.json"),
    (["--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "r"), "--steps", "1", "--zero", "2"], 2,
     "start scp-train with mpirun or srun"),
    (["--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "r"), "--steps", "1"] + T32, 2,
     "--seq-len is for --plan"),
    (["--init", "random:" + cfg, "--data", shards, "-o", os.path.join(tmp, "r"), "--steps", "1", "--world", "2"], 2,
     "--world is for --plan"),
]
for args, code, msg in cases:
    r = subprocess.run([PROG] + args, capture_output=True, text=True)
    ok(r.returncode == code and msg in r.stderr and r.stdout == "",
       "%s: exit %d, says '%s' (%s)" % (" ".join(a.replace(tmp, "T") for a in args), code, msg,
                                        r.stderr.strip().splitlines()[0] if r.stderr.strip() else "exit %d" % r.returncode))
r = subprocess.run([PROG, "--plan", "--init", "random:" + cfg, "--zero", "2"] + T32, capture_output=True, text=True)
ok(r.returncode == 0 and "nothing is sharded" in r.stderr and json.loads(r.stdout)["zero"] == 2,
   "--zero 2 with one rank: planned, with a warning (%s)" % r.stderr.strip())

# ---- the plan against the resident set of training runs ---------------------------------------------------------
tiny = td.write_config(os.path.join(tmp, "tiny", "config.json"), vocab=64, mask_id=63)
TRAIN = ["--data", shards, "--steps", "2", "--batch-tokens", "128", "--micro-batch", "1", "--threads", "1"]
PLAN = ["--seq-len", "64", "--batch-tokens", "128", "--micro-batch", "1"]
WRAP = os.path.join(tmp, "wrap.py")
with open(WRAP, "w") as f:   # the peak resident set of the command it runs, into PREFIX.RANK
    f.write("import os, sys\n"
            "p = os.fork()\n"
            "if p == 0:\n"
            "    os.execv(sys.argv[2], sys.argv[2:])\n"
            "_, st, ru = os.wait4(p, 0)\n"
            "with open('%s.%s' % (sys.argv[1], os.environ.get('OMPI_COMM_WORLD_RANK', '0')), 'w') as f:\n"
            "    f.write(str(ru.ru_maxrss * 1024))\n"
            "sys.exit(os.waitstatus_to_exitcode(st))\n")


def measured(cfg, launch, zero, ranks, extra=()):
    """Peak resident set of each rank of a 2-step run, bytes; None on failure."""
    out, pre = os.path.join(tmp, "run"), os.path.join(tmp, "hwm")
    shutil.rmtree(out, ignore_errors=True)
    args = launch + ["/usr/bin/python3", WRAP, pre, PROG, "--init", "random:" + cfg, "-o", out, "--zero", str(zero)] + \
        TRAIN + list(extra)
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        diag(r.stderr[-1200:])
        return None, r.stderr
    return [int(open("%s.%d" % (pre, k)).read()) for k in range(ranks)], r.stderr


def compare(label, zero, world, launch, rank, models=None, extra=()):
    bg, tn = models or (big, tiny)
    (big_rss, err), (tiny_rss, _) = measured(bg, launch, zero, world, extra), measured(tn, launch, zero, world, extra)
    if big_rss is None or tiny_rss is None:
        ok(False, "%s: the training runs" % label)
        return
    want = plan(bg, *PLAN, "--zero", str(zero), "--world", str(world), *extra)["per_rank"]["total"] - \
        plan(tn, *PLAN, "--zero", str(zero), "--world", str(world), *extra)["per_rank"]["total"]
    for k in (rank if isinstance(rank, tuple) else (rank,)):
        got = big_rss[k] - tiny_rss[k]
        diag("%s, rank %d: peak resident set %d and %d bytes, plans %d" % (label, k, big_rss[k], tiny_rss[k], want))
        ok(abs(got - want) <= 0.10 * want, "%s, rank %d: measured %.1f MiB above the 10k-parameter run, planned %.1f "
           "MiB (%+.1f%%)" % (label, k, got / 2 ** 20, want / 2 ** 20, 100.0 * (got - want) / want))
    return err


if "sanitizers=yes" in VERSION:
    ok(True, "# SKIP AddressSanitizer's shadow memory is in the resident set")
else:
    err = compare("zero 0, one process", 0, 1, [], 0)
    ok(err is not None and "(%d weights)" % nb in err, "the trainer's model has the planned %d weights" % nb)
    mpirun = shutil.which("mpirun")
    if "mpi=yes" not in VERSION or not mpirun:
        ok(True, "# SKIP no MPI in the build or no mpirun")
    else:
        import mpi_testlib as mt   # noqa: E402  (the OpenMPI environment for root and oversubscription)
        mt.require_mpi()
        # rank 0 also writes the checkpoints: ZeRO-1's moments come to it one tensor at a time
        compare("zero 1, mpirun -np 2", 1, 2, [mpirun, "-np", "2", "--oversubscribe"], (0, 1))
        for z in (2, 3):
            compare("zero %d, mpirun -np 2" % z, z, 2, [mpirun, "-np", "2", "--oversubscribe"], 1)
        # expert parallelism: a 10.6M-parameter qwen3_moe model of 8 experts, half of them on each rank
        moe_big = td.write_config(os.path.join(tmp, "moe-big", "config.json"), vocab=4096, hidden=256, layers=4,
                                  heads=4, kv_heads=2, inter=0, mask_id=4095, model_type="qwen3_moe", num_experts=8,
                                  num_experts_per_tok=2, moe_intermediate_size=512)
        moe_tiny = td.write_config(os.path.join(tmp, "moe-tiny", "config.json"), vocab=64, mask_id=63,
                                   model_type="qwen3_moe", head_dim=8, num_experts=2, num_experts_per_tok=1,
                                   moe_intermediate_size=8)
        for z in (0, 3):
            compare("--expert-parallel 2, zero %d, mpirun -np 2" % z, z, 2,
                    [mpirun, "-np", "2", "--oversubscribe"], 1, (moe_big, moe_tiny), ["--expert-parallel", "2"])

# ---- the plan against the device memory a backend counts (cpu-mirror: "cpu" with its buffers as a device's) ----
def device_peak(launch, extra):
    out = os.path.join(tmp, "devrun")
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run(launch + [PROG, "--init", "random:" + big, "-o", out, "--backend", "cpu-mirror"] + TRAIN + extra,
                       capture_output=True, text=True)
    if r.returncode:
        diag(r.stderr[-800:])
        return None
    return max(x.get("device_peak_bytes", -1) for x in td.read_metrics(out) if "loss" in x)


runs = [("one process, zero 0", [], [], 1)]
if "mpi=yes" in VERSION and shutil.which("mpirun"):
    import mpi_testlib   # noqa: E402  (the OpenMPI environment for root and oversubscription)
    for z in (1, 3):
        runs.append(("rank 0 of mpirun -np 2, zero %d" % z, [mpi_testlib.require_mpi(), "-np", "2", "--oversubscribe"],
                     ["--zero", str(z)], 2))
for label, launch, extra, world in runs:
    got = device_peak(launch, extra)
    want = plan(big, *PLAN, "--backend", "cpu-mirror", "--world", str(world), *extra)["per_rank"]["total"]
    ok(got is not None and got > 0 and abs(got - want) <= 0.10 * want,
       "cpu-mirror, %s: device_peak_bytes %s against the plan's %d (%+.1f%%)" %
       (label, got, want, 100.0 * ((got or 0) - want) / want))

# ---- the manual's table is the planner's ------------------------------------------------------------------------
r = subprocess.run(["/usr/bin/python3", os.path.join(SRCDIR, "bench", "plan-table"), BIN], capture_output=True, text=True)
with open(os.path.join(SRCDIR, "man", "scp-train.1")) as f:
    man = f.read().splitlines()
lines = r.stdout.splitlines()
missing = [x for x in lines if x not in man]
ok(r.returncode == 0 and len(lines) == 16 and not missing,
   "scp-train(1)'s tables for Qwen3-0.6B, -8B, -30B-A3B (and -30B-A3B's experts over 8 and 64 GPUs) are "
   "bench/plan-table's output%s" %
   ("" if not missing else " (differs: %s)" % missing[:2]))
done()
