"""omp-wait.py: every program that runs OpenMP threads waits passively unless the user chose a wait policy
(lib/core/cli.c). The observable is the OpenMP runtime's own report of the settings it started with
(OMP_DISPLAY_ENV=verbose, GNU libgomp): with neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT in the environment it
must show what an explicit OMP_WAIT_POLICY=passive shows (libgomp documents a spin count of 0 for passive and
300000 when nothing is set); an explicit OMP_WAIT_POLICY=active or GOMP_SPINCOUNT is what the runtime uses.
The programs start themselves again to apply the default, so the arguments must arrive intact (a path with
spaces and non-ASCII bytes) and a training run must give the same bytes as one under the spinning policy."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def env_with(**settings):
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARS and k != "OMP_DISPLAY_ENV"}
    env.update(settings)
    return env


def runtime_settings(prog, **settings):
    """The 'NAME = 'VALUE'' lines libgomp prints on stderr at start-up, as a dict (empty: no OpenMP runtime)."""
    r = run([prog, "--version"], env=env_with(OMP_DISPLAY_ENV="verbose", **settings))
    return dict(re.findall(r"^\s+([A-Z_]+) = '([^']*)'", r.stderr.decode(errors="replace"), re.M))


for prog in ("scp-train", "scp-eval", "scp-shard"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")
r = run(["scp-eval", "--version"])
if b"openmp=yes" not in r.stdout:
    skip_all("built without OpenMP")
if "GOMP_SPINCOUNT" not in runtime_settings("scp-eval"):
    skip_all("the OpenMP runtime is not GNU libgomp (no GOMP_SPINCOUNT in its OMP_DISPLAY_ENV report)")

# ---- the default, program by program ----
progs = sorted(p for p in os.listdir(BIN) if p.startswith("scp-") and "." not in p)
with_openmp = []
for prog in progs:
    default = runtime_settings(prog)
    if not default:
        continue
    with_openmp.append(prog)
    passive = runtime_settings(prog, OMP_WAIT_POLICY="passive")
    ok(default.get("GOMP_SPINCOUNT") == "0" and default == passive,
       "%s, nothing set: the runtime spins 0 times, as under an explicit OMP_WAIT_POLICY=passive (spin count %s)"
       % (prog, default.get("GOMP_SPINCOUNT")))
ok("scp-train" in with_openmp and "scp-eval" in with_openmp,
   "scp-train and scp-eval run an OpenMP runtime (%s)" % " ".join(with_openmp))

# ---- the user's choice is kept ----
active = runtime_settings("scp-train", OMP_WAIT_POLICY="active")
ok(active.get("OMP_WAIT_POLICY") == "ACTIVE" and active.get("GOMP_SPINCOUNT") not in (None, "0"),
   "OMP_WAIT_POLICY=active is the runtime's policy (spin count %s)" % active.get("GOMP_SPINCOUNT"))
spin = runtime_settings("scp-train", GOMP_SPINCOUNT="12345")
ok(spin.get("GOMP_SPINCOUNT") == "12345", "GOMP_SPINCOUNT=12345 is the runtime's spin count (%s)" %
   spin.get("GOMP_SPINCOUNT"))

# ---- the arguments survive the restart; the policy changes no result ----
tmp = tmpdir()
shards = td.make_shards(BIN, tmp, n_docs=120)
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=64, mask_id=63)
runs = {}
for name, settings in (("default", {}), ("active", {"OMP_WAIT_POLICY": "active"})):
    out = os.path.join(tmp, "run %s \u00e9t\u00e9" % name)
    r = run(["scp-train", "--init", "random:" + cfg, "--data", shards, "-o", out, "--objective", "mdm",
             "--attention", "bidirectional", "--steps", "3", "--batch-tokens", "256", "--threads", "2", "--seed", "3",
             "-q"], env=env_with(**settings))
    if r.returncode != 0:
        diag(r.stderr.decode(errors="replace")[-400:])
    runs[name] = out if r.returncode == 0 else None
ok(all(runs.values()) and all(os.path.isdir(os.path.join(p, "latest")) for p in runs.values()),
   "scp-train writes its run to a path with spaces and accents under both policies")
if all(runs.values()):
    losses = {n: [m["loss"] for m in td.read_metrics(p)] for n, p in runs.items()}
    weights = {}
    for n, p in runs.items():
        with open(os.path.join(p, "latest", "model.safetensors"), "rb") as f:
            weights[n] = f.read()
    ok(len(losses["default"]) == 3 and losses["default"] == losses["active"] and weights["default"] == weights["active"],
       "3 steps on 2 threads: the same losses and the same weight bytes as under OMP_WAIT_POLICY=active (%s)"
       % losses["default"])
done()
