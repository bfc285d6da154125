"""moe-mpi.py: data-parallel scp-train of a qwen3_moe model: `mpirun -np 2` matches one process with the same
--batch-tokens and --micro-batch (the auxiliary losses are per micro-batch, weighted by its share of the global
batch, so the two runs sum the same terms): step losses, the load-balancing and z losses and the final weights to
1e-5 relative, and the per-expert loads of every step exactly (summed over ranks)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done, tmpdir  # noqa: E402
import train_testdata as td  # noqa: E402
import mpi_testlib as mt  # noqa: E402

mpirun = mt.require_mpi()
tmp = tmpdir()
shards = td.make_shards(mt.BIN, tmp)
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=64, mask_id=63, model_type="qwen3_moe", head_dim=8,
                      num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, norm_topk_prob=True)
ARGS = ["--init", "random:" + cfg, "--data", shards, "--steps", "12", "--batch-tokens", "512", "--micro-batch", "2",
        "--lr", "3e-3", "--warmup", "3", "--aux-loss", "0.05", "--z-loss", "0.01", "--threads", "1", "-q"]
TOL = 1e-5

r1, r2 = os.path.join(tmp, "one"), os.path.join(tmp, "two")
a = subprocess.run([mt.PROG] + ARGS + ["-o", r1], capture_output=True, text=True)
b = subprocess.run(mt.mpi_cmd(mpirun, 2, ARGS + ["-o", r2]), capture_output=True, text=True)
if not ok(a.returncode == 0 and b.returncode == 0, "MoE: one process and mpirun -np 2 complete"):
    diag(a.stderr[-800:] + b.stderr[-1500:])
    done()
ma = [x for x in td.read_metrics(r1) if "loss" in x]
mb = [x for x in td.read_metrics(r2) if "loss" in x]
for key in ("loss", "aux_loss", "z_loss"):
    d = mt.max_rel([x[key] for x in ma], [x[key] for x in mb])
    ok(len(ma) == 12 and d <= TOL, "MoE: %d step %s values match one process to %.1e relative" % (len(mb), key, d))
ok(len(ma) == len(mb) and all(x["expert_load"] == y["expert_load"] for x, y in zip(ma, mb)) and
   all(sum(x["expert_load"]) == 512 * 2 * 2 for x in ma),
   "MoE: per-expert loads of every step identical, summing to tokens x k x layers (last %s)" % mb[-1]["expert_load"])
dw = mt.tensors_rel(os.path.join(r1, "latest", "model.safetensors"), os.path.join(r2, "latest", "model.safetensors"))
ok(dw <= TOL, "MoE: final weights (router and experts included) %.1e relative" % dw)
done()
