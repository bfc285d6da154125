"""cuda-plugin.py: the CUDA backend is a plugin, libscp-cuda.so (lib/model/cuda_plugin.h), and the CPU backend loads
its BLAS when it first needs it (lib/model/cpu/blas.h): no program links the CUDA runtime, cuBLAS, NCCL or the
BLAS; a CPU training run fits under an address-space limit (ulimit -v) far below what the CUDA libraries alone
map; and a plugin that cannot be loaded (absent, needing a library that is not installed, from other sources)
ends the program with exit 1 and a message that names it, as does a --backend name it does not know."""
import os
import re
import resource
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import train_testdata as td  # noqa: E402

BUILDDIR = os.environ.get("SCP_BUILDDIR", os.path.dirname(BIN))
for prog in ("scp-train", "scp-shard"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")
if not shutil.which("ldd"):
    skip_all("no ldd")

features = run(["scp-train", "--version"]).stdout.decode()
cuda = "cuda=yes" in features
sanitizers = "sanitizers=yes" in features
tmp = tmpdir()

# ---- what the programs link ----
linked = re.compile(r"lib(cudart|cublas|cublasLt|nccl|openblas|blas|cblas)\.so")
programs = sorted(p for p in os.listdir(BIN) if p.startswith("scp-") and not p.endswith(".o"))
for p in programs:
    path = os.path.join(BIN, p)
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            continue   # a script
    libs = subprocess.run(["ldd", path], capture_output=True).stdout.decode()
    found = sorted(set(m.group(0) for m in linked.finditer(libs)))
    ok(not found and "libc.so" in libs,
       "%s links no CUDA runtime, cuBLAS, NCCL or BLAS (%s)" % (p, ", ".join(found) or "none"))


# ---- a CPU run under an address-space limit ----
def limited(mib, args, env=None):
    """Run a program of BIN under ulimit -v MIB, bounded in time (a hang is a failure, not a wait)."""
    def lim():
        resource.setrlimit(resource.RLIMIT_AS, (mib << 20, mib << 20))
    try:
        return run(args, preexec_fn=lim, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return None


shards = td.make_shards(BIN, tmp)
cfg = td.write_config(os.path.join(tmp, "cfg", "config.json"), vocab=64, mask_id=63)
if sanitizers:
    diag("AddressSanitizer maps terabytes of shadow memory: no address-space limit in this build")
else:
    # Two threads, each with its 128 MiB of OpenBLAS buffer: about 320 MiB in all. With CUDA linked, the CUDA
    # libraries alone took about 900 MiB before main.
    r = limited(512, ["scp-train", "-q", "--threads", "2", "--init", "random:" + cfg, "--data", shards, "-o",
                      os.path.join(tmp, "small"), "--steps", "2"])
    steps = len(td.read_metrics(os.path.join(tmp, "small"))) if r is not None and r.returncode == 0 else 0
    ok(steps == 2, "--backend cpu: 2 training steps under ulimit -v 512 MiB (%s)" %
       ("hung" if r is None else "exit %d %s" % (r.returncode, r.stderr.decode().strip()[-200:])))
    r = limited(64, ["scp-train", "--version"])
    ok(r is not None and r.returncode == 0 and b"features:" in r.stdout, "--version under ulimit -v 64 MiB")


def train(out, backend, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return run(["scp-train", "-q", "--threads", "1", "--init", "random:" + cfg, "--data", shards, "-o",
                os.path.join(tmp, out), "--steps", "1", "--backend", backend], env=e)


def fails(r, out, pattern, what):
    err = r.stderr.decode()
    ok(r.returncode == 1 and re.search(pattern, err) and not os.path.exists(os.path.join(tmp, out)),
       "%s: exit 1, no run directory (%s)" % (what, err.strip()[-300:] or "exit %d" % r.returncode))


if not cuda:
    r = train("nocuda", "cuda")
    fails(r, "nocuda", r"no CUDA backend", "--backend cuda in a build without CUDA")
    done()

# ---- the plugin cannot be loaded ----
empty = os.path.join(tmp, "empty")
os.makedirs(empty)
for be in ("cuda", "cuda-bf16", "cuda-fp32"):
    r = train("empty-" + be, be, {"SCP_PLUGIN_DIR": empty})
    fails(r, "empty-" + be, r"backend '%s': the CUDA plugin libscp-cuda\.so is not in %s \(SCP_PLUGIN_DIR\)" %
          (be, re.escape(empty)), "--backend %s, SCP_PLUGIN_DIR without the plugin" % be)
if "nccl=yes" in features:
    r = train("empty-nccl", "cuda", {"SCP_PLUGIN_DIR": empty, "SCP_NCCL_ONE_RANK": "1"})
    fails(r, "empty-nccl", r"rank 0: NCCL: the CUDA plugin libscp-cuda\.so is not in", "NCCL without the plugin")

# Stand-ins built here: a plugin that needs a library which is not installed, one without the entry point, and
# one whose entry point refuses this program (another version or table layout).
cc = shutil.which("cc") or shutil.which("gcc")


def build_so(name, source, *args):
    src = os.path.join(tmp, name + ".c")
    with open(src, "w") as f:
        f.write(source)
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    out = os.path.join(d, "libscp-cuda.so" if not name.startswith("lib") else name + ".so")
    r = subprocess.run([cc, "-shared", "-fPIC", "-o", out, src] + list(args), capture_output=True)
    if r.returncode:
        diag(r.stderr.decode())
    return d if r.returncode == 0 else None


if not cc:
    diag("no C compiler: the stand-in plugins are not built")
else:
    absent = build_so("libscp-absent", "int scp_absent_marker(void) { return 1; }\n",
                      "-Wl,-soname,libscp-absent.so")
    needs = build_so("needs", "int scp_absent_marker(void);\nint f(void) { return scp_absent_marker(); }\n",
                     "-L" + (absent or tmp), "-lscp-absent")
    if absent and needs:
        shutil.rmtree(absent)
        r = train("run-needs", "cuda", {"SCP_PLUGIN_DIR": needs})
        fails(r, "run-needs", r"cannot load the CUDA plugin: libscp-absent\.so: cannot open shared object file",
              "a plugin that needs a library which is not installed is reported with that library")
    other = build_so("other", "int scp_cuda_plugin_version_marker;\n")
    refuses = build_so("refuses", "#include <stddef.h>\nconst void *scp_cuda_plugin_entry(const char *v, size_t l, "
                       "const void *h) { (void)v; (void)l; (void)h; return NULL; }\n")
    for d, what in ((other, "a shared object without the entry point"), (refuses, "a plugin of other sources")):
        if d:
            r = train("run-other", "cuda-fp32", {"SCP_PLUGIN_DIR": d})
            fails(r, "run-other", r"%s/libscp-cuda\.so is not the CUDA plugin of this program" % re.escape(d),
                  what + " is refused")

# ---- the build's plugin ----
r = train("unknown", "cuda-fp16")
err = r.stderr.decode()
ok(r.returncode == 2 and re.search(r"unknown backend 'cuda-fp16' \(the backends: .*cuda \(also cuda-bf16\), cuda-fp32\)",
                                   err) and not os.path.exists(os.path.join(tmp, "unknown")),
   "--backend cuda-fp16: a usage error (exit 2) listing the backends, no run directory (%s)" % err.strip()[-300:])
plugin_dir = os.path.join(BUILDDIR, "lib")
ok(os.path.exists(os.path.join(plugin_dir, "libscp-cuda.so")), "the build has lib/libscp-cuda.so")
for env, what in ((None, "found as the build tree's"), ({"SCP_PLUGIN_DIR": plugin_dir}, "named by SCP_PLUGIN_DIR")):
    r = train("real", "cuda", env)
    err = r.stderr.decode()
    # Loaded, it either trains on a GPU or says there is none; never a message about the plugin itself.
    ok((r.returncode == 0 or (r.returncode == 1 and "no usable GPU" in err)) and "plugin" not in err,
       "the build's plugin, %s, loads (%s)" % (what, err.strip()[-200:] or "trained on a GPU"))
    shutil.rmtree(os.path.join(tmp, "real"), ignore_errors=True)
# A program outside the build tree looks in the folder `make install` puts the plugin in: the pkglibdir of the
# build's latest configure (another --prefix in the same build tree included).
r = subprocess.run(["make", "-s", "-C", BUILDDIR, "-f", "Makefile", "-f", "-", "scp-print-pkglibdir"],
                   input=b"scp-print-pkglibdir:\n\t@echo $(pkglibdir)\n", capture_output=True)
pkglibdir = r.stdout.decode().strip()
if r.returncode or not pkglibdir:
    diag("make did not print the build's pkglibdir: %s" % r.stderr.decode()[-200:])
elif os.path.exists(os.path.join(pkglibdir, "libscp-cuda.so")):
    diag("a plugin is installed in %s: the uninstalled program's message is not checked" % pkglibdir)
else:
    outside = os.path.join(tmp, "outside")
    os.makedirs(outside)
    shutil.copy(os.path.join(BIN, "scp-train"), outside)
    e = dict(os.environ)
    e.pop("SCP_PLUGIN_DIR", None)
    r = subprocess.run([os.path.join(outside, "scp-train"), "-q", "--init", "random:" + cfg, "--data", shards, "-o",
                        os.path.join(tmp, "outside-run"), "--steps", "1", "--backend", "cuda"], capture_output=True, env=e)
    fails(r, "outside-run", r"the CUDA plugin libscp-cuda\.so is not in %s: install it" % re.escape(pkglibdir),
          "a program outside the build tree looks in the configured pkglibdir, %s" % pkglibdir)
ops = os.path.join(BUILDDIR, "tests", "model", "backend-ops")
if os.path.exists(ops):
    r = subprocess.run([ops, "--devices"], capture_output=True)
    ok(r.returncode == 0 and re.fullmatch(rb"\d+\n", r.stdout), "backend-ops --devices counts the GPUs through the "
       "plugin (%s)" % r.stdout.decode().strip())
done()
