#!/usr/bin/python3
"""gpu-bench.py: what bench/gpu/bench.sh computes and runs, checked on the CPU.

- bench/gpu/gpu_bench.py's parameter counts of the named shapes against the model cards of Qwen3-0.6B, 1.7B, 4B and
  Qwen3-30B-A3B (non-embedding, total and activated parameters, printed there to two or three digits);
- its FLOP count of a training step against the matrix products that PyTorch performs in one (forward and
  backward of bench/gpu/torch-step.py's stand-in model, dense and MoE, counted operator by operator as they are
  dispatched), exactly;
- its tokens/s, TFLOP/s, MFU and the gpu-step line against a run measured on an H200 and reported in
  bench/RESULTS.md, whose figures an earlier C implementation of the count printed;
- bench.sh's command lines: a dry run (--device cpu) of the tiny dense and MoE shapes, scp-step's driver and
  torch-step.py both, must print their rows and the gpu-step line, the same parameter count on both sides, and a
  first loss near ln V (weights of scale 0.02 give near-uniform logits)."""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import SRCDIR, diag, done, ok  # noqa: E402

sys.path.insert(0, os.path.join(SRCDIR, "bench", "gpu"))
import gpu_bench  # noqa: E402


def close(x, ref, rel):
    return abs(x - ref) <= rel * abs(ref)


# ---- parameter counts against the model cards ------------------------------------------------------------------
def nonembed(c):
    return gpu_bench.matmul_params(c, active=False) - c["vocab_size"] * c["hidden_size"]


for name, card in (("qwen3-0.6b", 0.44e9), ("qwen3-1.7b", 1.4e9), ("qwen3-4b", 3.6e9)):
    n = nonembed(gpu_bench.config(name))
    ok(close(n, card, 0.03), "%s: %.4gB non-embedding parameters (model card %.2gB)" % (name, n / 1e9, card / 1e9))
full = dict(gpu_bench.config("qwen3-30b-a3b-4l"), num_hidden_layers=48)
emb = 2 * full["vocab_size"] * full["hidden_size"]  # untied: embedding and LM head
n_total, n_active = nonembed(full) + emb, gpu_bench.matmul_params(full) + full["vocab_size"] * full["hidden_size"]
ok(close(nonembed(full), 29.9e9, 0.03) and close(n_total, 30.5e9, 0.03) and close(n_active, 3.3e9, 0.03),
   "Qwen3-30B-A3B (48 layers): %.4gB non-embedding, %.4gB in all, %.4gB activated (model card 29.9B, 30.5B, 3.3B)"
   % (nonembed(full) / 1e9, n_total / 1e9, n_active / 1e9))

# ---- the FLOP count against the products of a PyTorch step -----------------------------------------------------
try:
    import torch
    import torch.nn.functional as F
    from torch.utils._python_dispatch import TorchDispatchMode
except ImportError as e:
    diag("no torch (%s): the FLOP and dry-run checks are left out" % e)
    done()

spec = importlib.util.spec_from_file_location("torch_step", os.path.join(SRCDIR, "bench", "gpu", "torch-step.py"))
torch_step = importlib.util.module_from_spec(spec)
spec.loader.exec_module(torch_step)


class MatmulFlops(TorchDispatchMode):
    """2 m k n for each (m, k) x (k, n) product dispatched (mm, addmm, bmm: what linear layers and batched
    matmuls become at the operator level, forward and backward)."""
    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        op = str(func.overloadpacket)
        if op in ("aten.mm", "aten.addmm"):
            a, b = args[-2], args[-1]
            self.flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        elif op == "aten.bmm":
            a, b = args
            self.flops += 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        return func(*args, **(kwargs or {}))


# The stand-in's attention as explicit products (q k^T, then p v) where torch has a fused SDPA, whose kernel the
# counter would not see.
sdpa = getattr(F, "scaled_dot_product_attention", None)
if sdpa is not None:
    del F.scaled_dot_product_attention
for name in ("tiny", "tiny-moe"):
    c, B, T, _ = gpu_bench.SHAPES[name]
    torch.manual_seed(0)
    model, opt, _, impl = torch_step.build(c, T, torch.device("cpu"), torch.float32, False, True)
    inp, ids, masked, allvis = torch_step.batch(c["vocab_size"], B, T, "cpu", torch.float32)
    with MatmulFlops() as counter:
        logits = model(inp)
        F.cross_entropy(logits[masked], ids[masked]).backward()
    want = gpu_bench.step_flops(c, B, T)
    ok(counter.flops == want, "%s: %d FLOPs in the products of one PyTorch step, gpu_bench.py counts %d"
       % (name, counter.flops, want))
if sdpa is not None:
    F.scaled_dot_product_attention = sdpa

# ---- rates and the summary line against a measured run ---------------------------------------------------------
# bench/RESULTS.md, "bf16 storage on an NVIDIA H200", the final code's "cuda driver" row: the step of qwen3-0.6b
# at 4 x 2048 took 0.1660 s: 49,347 tokens/s, 246.0 TFLOP/s, 24.9% of 989.4; PyTorch's 0.2107 s; scp over PyTorch 1.27.
tok, tf, mfu = gpu_bench.rates(gpu_bench.config("qwen3-0.6b"), 4, 2048, 0.1660, 989.4)
ok(close(tok, 49347, 1e-3) and close(tf, 246.0, 1e-3) and abs(100 * mfu - 24.9) < 0.05,
   "qwen3-0.6b-4x2048 in 0.1660 s: %.0f tokens/s, %.1f TFLOP/s, MFU %.2f%% (RESULTS.md: 49,347, 246.0, 24.9%%)"
   % (tok, tf, 100 * mfu))
line = gpu_bench.summary_line("qwen3-0.6b", 4, 2048, {"best_s": 0.1660}, {"best_s": 0.2107}, 989.4)
diag(line)
m = re.fullmatch(r"gpu-step: (\S+) scp (\d+) tok/s PyTorch (\d+) tok/s ratio ([\d.]+) MFU ([\d.]+)%", line)
ok(m is not None and m.group(1) == "qwen3-0.6b-4x2048" and abs(int(m.group(2)) - 8192 / 0.1660) <= 1 and
   abs(int(m.group(3)) - 8192 / 0.2107) <= 1 and m.group(4) == "1.27" and m.group(5) == "24.9",
   "the gpu-step line: label, both tokens/s, ratio 1.27 and MFU 24.9% (as RESULTS.md)")
line = gpu_bench.summary_line("qwen3-0.6b", 4, 2048, {"best_s": 0.1660}, None, 0)
ok(line == "gpu-step: qwen3-0.6b-4x2048 scp 49349 tok/s PyTorch - tok/s ratio - MFU -",
   "a side that did not run and an unknown peak print '-': %s" % line)

# ---- bench.sh's dry run ---------------------------------------------------------------------------------------
build = os.environ.get("SCP_BUILDDIR", ".")
if not os.access(os.path.join(build, "bench", "gpu", "scp-step"), os.X_OK):
    diag("no bench/gpu/scp-step in %s: the dry run is left out" % build)
    done()
for name in ("tiny", "tiny-moe"):
    r = subprocess.run(["sh", os.path.join(SRCDIR, "bench", "gpu", "bench.sh"), "-b", build, "--device", "cpu",
                        "--shape", name, "-n", "1"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHON=sys.executable))
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    lines = [x for x in r.stdout.splitlines() if x.startswith("gpu-step: ")]
    c, B, T, _ = gpu_bench.SHAPES[name]
    ok(r.returncode == 0 and len(rows) == 2 and len(lines) == 1, "bench.sh --device cpu --shape %s: exit %d, %d JSON "
       "rows, %d gpu-step lines" % (name, r.returncode, len(rows), len(lines)))
    if len(rows) != 2 or len(lines) != 1:
        diag(r.stdout[-2000:] + r.stderr[-2000:])
        continue
    diag(lines[0])
    s, t = rows
    ok(s["params"] == t["params"] and s["B"] == t["B"] == B and s["T"] == t["T"] == T,
       "%s: scp and PyTorch hold %d and %d parameters, run %dx%d and %dx%d" % (name, s["params"], t["params"], s["B"],
                                                                            s["T"], t["B"], t["T"]))
    lnv = math.log(c["vocab_size"])
    ok(abs(s["loss0"] - lnv) < 0.1 and abs(t["loss0"] - lnv) < 0.1 and s["ops_ms"],
       "%s: first losses %.4f (scp) and %.4f (PyTorch) near ln V = %.4f; scp's time per operation printed"
       % (name, s["loss0"], t["loss0"], lnv))
    ok(re.fullmatch(r"gpu-step: %s-%dx%d scp \d+ tok/s PyTorch \d+ tok/s ratio [\d.]+ MFU -" % (name, B, T), lines[0])
       is not None, "%s: the gpu-step line has both sides (no MFU without a GPU's peak)" % name)
done()
