"""llamaref.py: an HF Llama forward pass in float64 PyTorch, written from the HF Llama math, as the reference that
scp-eval's tests check the program's logits and likelihoods against."""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import importgen as g  # noqa: E402


def load_weights(ckpt):
    """The checkpoint's model.safetensors as float64 tensors by name."""
    st = g.read_st(os.path.join(ckpt, "model.safetensors"))
    return {k: torch.from_numpy(g.to_f32(v).astype(np.float64)) for k, v in st.items()}


def forward(W, c, ids, causal):
    """HF LlamaForCausalLM in float64: logits (T, V) for one sequence of ids; c is the config."""
    D, H, KV = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd, T, eps = D // H, len(ids), c["rms_norm_eps"]
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]

    def rms(v, w):
        return v / torch.sqrt((v * v).mean(-1, keepdim=True) + eps) * w
    inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)

    def rope(q):   # (h, T, hd), half-split pairs (i, i + hd/2)
        q1, q2 = q[..., :hd // 2], q[..., hd // 2:]
        return q * cos + torch.cat([-q2, q1], -1) * sin
    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, H, hd).transpose(0, 1)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
        s = q @ k.transpose(1, 2) / math.sqrt(hd)
        if causal:
            s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        o = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(T, H * hd)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        gt, up = h @ W[p + "mlp.gate_proj.weight"].T, h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gt) * up) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    return x @ W.get("lm_head.weight", W["model.embed_tokens.weight"]).T
