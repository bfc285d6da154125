"""train-profile.py: scp-train --profile on data the test generates. The run's losses and weights are bitwise those of
the same run without it; RUNDIR/profile.json holds the counted steps (all but the process's first), the time per
step of each backend operation, and the rest of the step, which add up to the step; the operations named are the
model's (Qwen3's fused q/k norm and rotation, Llama's rotation alone); -q keeps the table off stderr; a run of one
step reports nothing; --plan refuses it; under two ranks rank 0 alone reports. (profile.json holds 9 significant
digits: the sum is checked to 1e-7.)"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ok, diag, done, run  # noqa: E402
import train_testdata as td  # noqa: E402

tmp, shards = td.trainer_fixture()
configs = {
    "llama": td.write_config(os.path.join(tmp, "llama", "config.json"), vocab=64, mask_id=63),
    "qwen3": td.write_config(os.path.join(tmp, "qwen3", "config.json"), vocab=64, mask_id=63, model_type="qwen3",
                             head_dim=8),
}


def train(out, cfg, *args):
    return run(["scp-train", "--threads", "1", "--init", "random:" + cfg, "--data", shards, "-o", out, "--steps", "4",
                "--batch-tokens", "256", "--save-every", "0"] + list(args))


def read(path):
    with open(path, "rb") as f:
        return f.read()


for arch, cfg in sorted(configs.items()):
    for backend in ("cpu", "cpu-bf16"):
        plain, prof = os.path.join(tmp, arch + backend + "-plain"), os.path.join(tmp, arch + backend + "-prof")
        a = train(plain, cfg, "--backend", backend)
        b = train(prof, cfg, "--backend", backend, "--profile")
        if not ok(a.returncode == 0 and b.returncode == 0, "%s on %s: runs with and without --profile" % (arch, backend)):
            diag(a.stderr.decode(errors="replace")[-400:] + b.stderr.decode(errors="replace")[-400:])
            continue
        la = [m["loss"] for m in td.read_metrics(plain)]
        lb = [m["loss"] for m in td.read_metrics(prof)]
        wa = read(os.path.join(plain, "latest", "model.safetensors"))
        wb = read(os.path.join(prof, "latest", "model.safetensors"))
        ok(la == lb and len(la) == 4 and wa == wb,
           "%s on %s: --profile leaves the losses and the weights bitwise alone (losses %s)" % (arch, backend, la))
        p = json.load(open(os.path.join(prof, "profile.json")))
        ops = p["ops_ms"]
        total = sum(ops.values()) + p["outside_ms"]
        ok(p["steps"] == 3 and p["first_step"] == 2,
           "%s on %s: 3 steps counted from step 2 (the first is left out): %d from %d" %
           (arch, backend, p["steps"], p["first_step"]))
        ok(abs(total - p["step_ms"]) <= 1e-7 * p["step_ms"] and p["outside_ms"] >= 0 and p["step_ms"] > 0,
           "%s on %s: the operations and the rest add up to the step: %.4f + %.4f = %.4f ms" %
           (arch, backend, sum(ops.values()), p["outside_ms"], p["step_ms"]))
        needed = ("matmul_fwd", "matmul_bwd", "rmsnorm", "attention_fwd", "attention_bwd", "swiglu", "embedding",
                  "crossentropy", "adamw")
        fused = ops["qk_norm_rope"] > 0 and ops["rope"] == 0
        rotated = ops["rope"] > 0 and ops["qk_norm_rope"] == 0
        ok(all(ops[k] > 0 for k in needed) and (fused if arch == "qwen3" else rotated) and ops["moe"] == 0,
           "%s on %s: the model's operations are timed, %s and not %s" %
           (arch, backend, "qk_norm_rope" if arch == "qwen3" else "rope", "rope" if arch == "qwen3" else "qk_norm_rope"))
        err = b.stderr.decode(errors="replace")
        ok("time per step by operation, steps 2 to 4" in err and "matmul_bwd" in err and "outside" in err,
           "%s on %s: the table on stderr" % (arch, backend))

q = os.path.join(tmp, "quiet")
r = train(q, configs["qwen3"], "--profile", "-q")
ok(r.returncode == 0 and b"time per step" not in r.stderr and os.path.exists(os.path.join(q, "profile.json")),
   "-q: no table on stderr, profile.json written")
one = os.path.join(tmp, "one")
r = run(["scp-train", "--threads", "1", "--init", "random:" + configs["llama"], "--data", shards, "-o", one,
         "--steps", "1", "--profile"])
ok(r.returncode == 0 and b"no step to report" in r.stderr and not os.path.exists(os.path.join(one, "profile.json")),
   "one step: a warning, no profile.json (%s)" % r.stderr.decode(errors="replace").strip().splitlines()[-2:])
r = run(["scp-train", "--plan", "--init", "random:" + configs["llama"], "--seq-len", "64", "--profile"])
ok(r.returncode == 2 and b"--profile" in r.stderr, "--plan --profile: exit 2 (%s)" %
   r.stderr.decode(errors="replace").strip()[-80:])

# Two ranks under mpirun: rank 0 alone reports, and the run is bitwise that of two ranks without --profile.
version = run(["scp-train", "--version"]).stdout
if shutil.which("mpirun") and b"mpi=yes" in version:
    import mpi_testlib as mt
    mpirun = mt.require_mpi()
    outs = []
    for name, extra in (("mpi-plain", []), ("mpi-prof", ["--profile"])):
        out = os.path.join(tmp, name)
        args = ["--threads", "1", "--init", "random:" + configs["qwen3"], "--data", shards, "-o", out, "--steps", "4",
                "--batch-tokens", "256", "--save-every", "0"] + extra
        outs.append((out, subprocess.run(mt.mpi_cmd(mpirun, 2, args), capture_output=True, timeout=300)))
    (pa, ra), (pb, rb) = outs
    same = ra.returncode == 0 and rb.returncode == 0 and \
        [m["loss"] for m in td.read_metrics(pa)] == [m["loss"] for m in td.read_metrics(pb)] and \
        read(os.path.join(pa, "latest", "model.safetensors")) == read(os.path.join(pb, "latest", "model.safetensors"))
    ok(same and rb.stderr.count(b"time per step by operation") == 1 and os.path.exists(os.path.join(pb, "profile.json")),
       "2 ranks: one table (rank 0's), profile.json, losses and weights bitwise those without --profile")
else:
    ok(True, "2 ranks # SKIP no mpirun, or scp-train built without MPI")
done()
