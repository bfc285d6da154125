#!/usr/bin/python3
"""torch-step.py: the PyTorch peer of bench/gpu/scp-step: one masked-diffusion training step (forward, backward,
AdamW) of the same Qwen3-0.6B-shaped model on the same kind of batch (B x T random ids, about half of the positions
masked (input: the mask token, id V - 1) and scored, bidirectional attention). The model is transformers' Qwen3ForCausalLM in bf16 with SDPA
attention, a 4-D all-visible attention mask, logits for every position and cross-entropy over the masked ones,
and fused AdamW: the usual training code. Where transformers (or its Qwen3) is missing, an equivalent module
written here (same shapes and operations, F.scaled_dot_product_attention) stands in, and the output says so.
Prints one JSON object: step times, tokens/s, TFLOP/s, MFU (same FLOP count as scp-step), and the CUDA time of
the ten most expensive operators in one profiled step.

usage: torch-step.py [--tiny] [--batch B] [--seq T] [--steps N] [--peak-tflops P] [--device cuda|cpu]"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--tiny", action="store_true")
ap.add_argument("--batch", type=int, default=4)
ap.add_argument("--seq", type=int, default=2048)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--peak-tflops", type=float, default=0.0)
ap.add_argument("--device", default="cuda")
ap.add_argument("--own", action="store_true", help="use the module written here even if transformers exists")
a = ap.parse_args()
shape = dict(L=28, D=1024, H=16, KV=8, hd=128, I=3072, V=151936)
if a.tiny:
    shape = dict(L=2, D=64, H=4, KV=2, hd=16, I=128, V=1000)
    a.batch, a.seq = 2, 64
L, D, H, KV, hd, I, V = (shape[k] for k in ("L", "D", "H", "KV", "hd", "I", "V"))
B, T, dev = a.batch, a.seq, torch.device(a.device)
dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32


# ---- stand-in Qwen3 (used only without transformers) -------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, n, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(n)), eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope(x, cos, sin):  # x (B, heads, T, hd); HF rotate_half
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat((-x2, x1), -1) * sin


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2, self.qn, self.kn = RMSNorm(D), RMSNorm(D), RMSNorm(hd), RMSNorm(hd)
        self.q, self.k, self.v = nn.Linear(D, H * hd, bias=False), nn.Linear(D, KV * hd, bias=False), nn.Linear(D, KV * hd, bias=False)
        self.o = nn.Linear(H * hd, D, bias=False)
        self.gate, self.up, self.down = nn.Linear(D, I, bias=False), nn.Linear(D, I, bias=False), nn.Linear(I, D, bias=False)

    def forward(self, x, cos, sin):
        h = self.ln1(x)
        q = self.qn(self.q(h).view(B, T, H, hd)).transpose(1, 2)
        k = self.kn(self.k(h).view(B, T, KV, hd)).transpose(1, 2)
        v = self.v(h).view(B, T, KV, hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        else:  # torch < 2.0
            y = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(hd), -1) @ v
        x = x + self.o(y.transpose(1, 2).reshape(B, T, H * hd))
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Own(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, D)
        self.layers = nn.ModuleList(Layer() for _ in range(L))
        self.norm = RMSNorm(D)
        inv = 1.0 / (1e6 ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.outer(torch.arange(T).float(), inv)
        emb = torch.cat((f, f), -1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, ids):
        x = self.embed(ids)
        cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x) @ self.embed.weight.t()  # tied LM head


impl = "own"
model = None
if not a.own:
    try:
        import transformers
        cfg = transformers.Qwen3Config(vocab_size=V, hidden_size=D, intermediate_size=I, num_hidden_layers=L,
                                       num_attention_heads=H, num_key_value_heads=KV, head_dim=hd,
                                       max_position_embeddings=max(T, 4096), rope_theta=1e6, tie_word_embeddings=True,
                                       attn_implementation="sdpa")
        model = transformers.Qwen3ForCausalLM(cfg)
        impl = "transformers %s Qwen3ForCausalLM (sdpa)" % transformers.__version__
    except (ImportError, AttributeError, TypeError) as e:
        print("torch-step: transformers' Qwen3 unavailable (%s): using the stand-in module" % e, file=sys.stderr)
if model is None:
    model = Own()
def setup(model):
    if isinstance(model, Own):  # transformers' initialisation: normal(0, 0.02) matrices
        for mod in model.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, 0.0, 0.02)
    model = model.to(dev, dtype)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
        fused = True
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
        fused = False
    return model, opt, fused


model, opt, fused = setup(model)
params = sum(p.numel() for p in model.parameters())

g = torch.Generator().manual_seed(1)
ids = torch.randint(0, V, (B, T), generator=g).to(dev)
masked = (torch.rand(B, T, generator=g) < 0.5).to(dev)
inp = torch.where(masked, torch.full_like(ids, V - 1), ids)  # masked positions read the mask token (id V - 1)
allvis = torch.zeros(B, 1, T, T, dtype=dtype, device=dev)  # additive 4-D mask: every key visible


def step():
    opt.zero_grad(set_to_none=True)
    if impl.startswith("own"):
        logits = model(inp)
    else:
        logits = model(input_ids=inp, attention_mask=allvis).logits
    loss = F.cross_entropy(logits[masked].float(), ids[masked])
    loss.backward()
    opt.step()
    return loss.item()


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


t0 = time.time()
try:
    loss0 = step()
except Exception as e:  # e.g. a transformers version that refuses the 4-D mask: time the stand-in instead
    if impl == "own":
        raise
    print("torch-step: transformers step failed (%s: %s): using the stand-in module" % (type(e).__name__, e), file=sys.stderr)
    impl = "own (transformers failed: %s)" % type(e).__name__
    del model, opt
    model, opt, fused = setup(Own())
    params = sum(p.numel() for p in model.parameters())
    t0 = time.time()
    loss0 = step()
sync()
first = time.time() - t0
times, loss = [], loss0
for _ in range(a.steps):
    t0 = time.time()
    loss = step()
    sync()
    times.append(time.time() - t0)
best = min(times)
ops = {}
try:
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        step()
        sync()
    # self time (no double counting of nested operators); torch 2.x names it device_time, 1.x cuda_time
    av = list(prof.key_averages())
    keys = ("self_device_time_total", "self_cuda_time_total") if dev.type == "cuda" else ("self_cpu_time_total",)
    key = next((k for k in keys if av and getattr(av[0], k, None) is not None), keys[-1])
    av.sort(key=lambda e: -(getattr(e, key, 0) or 0))
    for e in av[:10]:
        ops[e.key] = round(getattr(e, key, 0) / 1e3, 3)  # microseconds -> ms
except Exception as e:  # the profiler is a nicety: never lose the timings for it
    print("torch-step: profiler failed: %s" % e, file=sys.stderr)
S = (H + 2 * KV) * hd
mm = L * (D * S + D * H * hd + 3.0 * D * I) + V * D
flops = 6.0 * mm * B * T + 12.0 * L * T * H * hd * B * T
print(json.dumps({"impl": impl, "torch": torch.__version__, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
                  "dtype": str(dtype), "fused_adamw": fused, "B": B, "T": T, "params": params, "first_step_s": first,
                  "best_s": best, "mean_s": sum(times) / len(times), "tok_s": B * T / best, "tflops": flops / best / 1e12,
                  "mfu": flops / best / (a.peak_tflops * 1e12) if a.peak_tflops > 0 else 0.0, "loss0": loss0,
                  "loss": loss, "ops_ms": ops}))
