#!/usr/bin/python3
"""torch-step.py: the PyTorch peer of bench/gpu/scp-step: one masked-diffusion training step (forward, backward,
AdamW) of the same model (a named shape of bench/gpu/gpu_bench.py, the same config.json scp-step reads) on the same
kind of batch (B x T random ids, about half of the positions masked (input: the mask token, id V - 1) and scored,
bidirectional attention). The model is transformers' Qwen3ForCausalLM or Qwen3MoeForCausalLM from the config
(random weights) in bf16 with SDPA attention, a 4-D all-visible attention mask, logits for every position and
cross-entropy over the masked ones, and fused AdamW: the usual training code; --recompute turns on its gradient
checkpointing (what scp's --recompute does). Where transformers (or its Qwen3) is missing, an equivalent module
written here (same shapes and operations; the MoE block as transformers' Qwen3MoeSparseMoeBlock: softmax router,
top-k, renormalised weights, a loop over the experts) stands in, and the output says so.
Prints one JSON object: step times (the best of --steps after one warm-up step), tokens/s, the peak of the device
memory (torch.cuda.max_memory_allocated; -1 on the CPU), and the self time of the ten most expensive operators in
one profiled step. TFLOP/s and MFU are gpu_bench.py's, from best_s.

usage: torch-step.py [--shape NAME | --tiny] [--batch B] [--seq T] [--steps N] [--recompute] [--device cuda|cpu] [--own]"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_bench  # noqa: E402


# ---- stand-in Qwen3 and Qwen3-MoE (used only without transformers) -----------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, n, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(n)), eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope(x, cos, sin):  # x (B, heads, T, hd); HF rotate_half
    hd = x.shape[-1]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat((-x2, x1), -1) * sin


class SwiGLU(nn.Module):
    def __init__(self, D, I):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(D, I, bias=False), nn.Linear(D, I, bias=False), nn.Linear(I, D, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class SparseMoe(nn.Module):
    """x (N, D) -> (N, D): each row through its k most probable experts, weighted by their renormalised probabilities."""
    def __init__(self, c):
        super().__init__()
        self.k, self.norm = c["num_experts_per_tok"], c["norm_topk_prob"]
        self.router = nn.Linear(c["hidden_size"], c["num_experts"], bias=False)
        self.experts = nn.ModuleList(SwiGLU(c["hidden_size"], c["moe_intermediate_size"]) for _ in range(c["num_experts"]))

    def forward(self, x):
        p = torch.softmax(self.router(x).float(), -1)
        w, sel = torch.topk(p, self.k, -1)  # (N, k)
        if self.norm:
            w = w / w.sum(-1, keepdim=True)
        w = w.to(x.dtype)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.where(sel == e)
            if rows.numel():
                y = y.index_add(0, rows, expert(x[rows]) * w[rows, slot, None])
        return y


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, self.H, self.KV, self.hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        H, KV, hd = self.H, self.KV, self.hd
        self.ln1, self.ln2, self.qn, self.kn = RMSNorm(D), RMSNorm(D), RMSNorm(hd), RMSNorm(hd)
        self.q, self.k, self.v = nn.Linear(D, H * hd, bias=False), nn.Linear(D, KV * hd, bias=False), nn.Linear(D, KV * hd, bias=False)
        self.o = nn.Linear(H * hd, D, bias=False)
        self.mlp = SparseMoe(c) if c["model_type"] == "qwen3_moe" else SwiGLU(D, c["intermediate_size"])

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        H, KV, hd = self.H, self.KV, self.hd
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
        return x + self.mlp(self.ln2(x).view(B * T, D)).view(B, T, D)


class Own(nn.Module):
    def __init__(self, c, T, recompute=False):
        super().__init__()
        D, V, hd = c["hidden_size"], c["vocab_size"], c["head_dim"]
        self.embed = nn.Embedding(V, D)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(D)
        self.head = None if c["tie_word_embeddings"] else nn.Linear(D, V, bias=False)
        self.recompute = recompute
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.outer(torch.arange(T).float(), inv)
        emb = torch.cat((f, f), -1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        for mod in self.modules():  # transformers' initialisation: normal(0, 0.02) matrices
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, 0.0, 0.02)

    def forward(self, ids):
        x = self.embed(ids)
        cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)
        for layer in self.layers:
            if self.recompute and x.requires_grad:
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, use_reentrant=False)
            else:
                x = layer(x, cos, sin)
        x = self.norm(x)
        return self.head(x) if self.head is not None else x @ self.embed.weight.t()


def hf_model(c, T):
    """transformers' model of config c (random weights, SDPA), or raise ImportError/AttributeError/TypeError."""
    import transformers
    moe = c["model_type"] == "qwen3_moe"
    kw = {k: v for k, v in c.items() if k != "model_type"}
    kw["max_position_embeddings"] = max(T, kw.get("max_position_embeddings", 0))
    cfg = (transformers.Qwen3MoeConfig if moe else transformers.Qwen3Config)(attn_implementation="sdpa", **kw)
    cls = transformers.Qwen3MoeForCausalLM if moe else transformers.Qwen3ForCausalLM
    return cls(cfg), "transformers %s %s (sdpa)" % (transformers.__version__, cls.__name__)


def build(c, T, dev, dtype, recompute, own):
    """(model, optimizer, fused, impl): the model on dev in dtype, in training mode, with AdamW (fused where the
    build has it)."""
    model, impl = None, "own"
    if not own:
        try:
            # built on the device where torch.device is a context (torch >= 2.0): a 4B model's initialisation on the
            # host would take longer than its steps
            with dev if hasattr(dev, "__enter__") else _nullctx():
                model, impl = hf_model(c, T)
            if recompute:
                model.gradient_checkpointing_enable()
        except (ImportError, AttributeError, TypeError, ValueError) as e:
            print("torch-step: transformers' model unavailable (%s): using the stand-in module" % e, file=sys.stderr)
            model, impl = None, "own"
    if model is None:
        model = Own(c, T, recompute)
    model = model.to(dev, dtype).train()
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
        fused = True
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
        fused = False
    return model, opt, fused, impl


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def batch(V, B, T, dev, dtype):
    """(input ids, target ids, masked positions, additive 4-D all-visible mask), all (B, T) but the mask."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (B, T), generator=g).to(dev)
    masked = (torch.rand(B, T, generator=g) < 0.5).to(dev)
    inp = torch.where(masked, torch.full_like(ids, V - 1), ids)  # masked positions read the mask token (id V - 1)
    return inp, ids, masked, torch.zeros(B, 1, T, T, dtype=dtype, device=dev)


def make_step(model, opt, impl, inp, ids, masked, allvis):
    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(inp) if impl.startswith("own") else model(input_ids=inp, attention_mask=allvis).logits
        loss = F.cross_entropy(logits[masked].float(), ids[masked])
        loss.backward()
        opt.step()
        return loss.item()
    return step


def time_steps(step, steps, sync):
    """Run one warm-up step and `steps` timed ones: {first_step_s, best_s, mean_s, loss0, loss}."""
    t0 = time.time()
    loss0 = step()
    sync()
    first = time.time() - t0
    times, loss = [], loss0
    for _ in range(steps):
        t0 = time.time()
        loss = step()
        sync()
        times.append(time.time() - t0)
    return dict(first_step_s=first, best_s=min(times), mean_s=sum(times) / len(times), loss0=loss0, loss=loss)


def profile_ops(step, sync, cuda):
    """Self time (ms) of the ten most expensive operators in one profiled step; {} where the profiler fails."""
    ops = {}
    try:
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=acts) as prof:
            step()
            sync()
        # self time (no double counting of nested operators); torch 2.x names it device_time, 1.x cuda_time
        av = list(prof.key_averages())
        keys = ("self_device_time_total", "self_cuda_time_total") if cuda else ("self_cpu_time_total",)
        key = next((k for k in keys if av and getattr(av[0], k, None) is not None), keys[-1])
        av.sort(key=lambda e: -(getattr(e, key, 0) or 0))
        for e in av[:10]:
            ops[e.key] = round(getattr(e, key, 0) / 1e3, 3)  # microseconds -> ms
    except Exception as e:  # the profiler is a nicety: never lose the timings for it
        print("torch-step: profiler failed: %s" % e, file=sys.stderr)
    return ops


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="qwen3-0.6b", choices=sorted(gpu_bench.SHAPES))
    ap.add_argument("--tiny", action="store_true", help="--shape tiny")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--seq", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--own", action="store_true", help="use the module written here even if transformers exists")
    a = ap.parse_args(argv)
    name = "tiny" if a.tiny else a.shape
    c, B, T, _ = gpu_bench.SHAPES[name]
    B, T = a.batch or B, a.seq or T
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda and not torch.cuda.is_available():
        print("torch-step: this PyTorch sees no CUDA device", file=sys.stderr)
        return 1
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model, opt, fused, impl = build(c, T, dev, dtype, a.recompute, a.own)
    data = batch(c["vocab_size"], B, T, dev, dtype)
    step = make_step(model, opt, impl, *data)
    try:
        res = time_steps(step, a.steps, sync)
    except Exception as e:  # e.g. a transformers version that refuses the 4-D mask: time the stand-in instead
        if impl == "own" or "out of memory" in str(e).lower():
            raise
        print("torch-step: transformers step failed (%s: %s): using the stand-in module" % (type(e).__name__, e),
              file=sys.stderr)
        del model, opt, step
        model, opt, fused, impl = build(c, T, dev, dtype, a.recompute, True)
        impl = "own (transformers failed: %s)" % type(e).__name__
        step = make_step(model, opt, impl, *data)
        res = time_steps(step, a.steps, sync)
    peak = torch.cuda.max_memory_allocated() if cuda else -1
    res.update(impl=impl + (" recompute" if a.recompute else ""), torch=torch.__version__, shape=name,
               device=torch.cuda.get_device_name(0) if cuda else "cpu", dtype=str(dtype), fused_adamw=fused, B=B, T=T,
               params=sum(p.numel() for p in model.parameters()), tok_s=B * T / res["best_s"],
               device_peak_bytes=peak, ops_ms=profile_ops(step, sync, cuda))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
