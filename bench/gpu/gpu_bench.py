#!/usr/bin/python3
"""gpu_bench.py: the named shapes of bench/gpu/bench.sh, the one FLOP count behind every MFU it prints, and its
table and summary lines. bench/gpu/torch-step.py imports it; bench.sh runs it:

  gpu_bench.py config SHAPE FILE            write SHAPE's config.json (what scp-step --config and transformers read)
  gpu_bench.py runs SHAPE                   print "B T RECOMPUTE": the shape's batch, sequence and --recompute (0/1)
  gpu_bench.py table SHAPE B T PEAK DEVICE LABEL=JSON... TORCHJSON
                                            the table of one shape's rows (scp's, then PyTorch's), the summary
                                            line last; the first scp row is the one of the line and of the
                                            per-operation times

A shape is a Hugging Face config (model_type qwen3 or qwen3_moe) with the batch and sequence it runs at by default;
its label in the summary line is NAME-BxT (e.g. qwen3-0.6b-4x2048).

Model FLOPs of a training step (forward and backward; AdamW and the elementwise work not counted), per token:
    6 * (L * (per-layer matmul parameters a token passes through) + V * D)  +  12 * L * T * H * hd
The per-layer parameters are q, k, v, o and the MLP (dense: gate, up, down, 3 D I; MoE: the router D E and k of the
E experts, k * 3 D Ie: MFU on active parameters); the LM head V D counts once whether tied or not, the embedding
lookup not at all. The last term is attention's two (T, T) products over a full (bidirectional) window: 4 T H hd
per token and layer forward, twice that backward. Recomputed forwards (--recompute) are not model FLOPs.
tests/gpu/gpu-bench.py checks the count against the matrix products a PyTorch step performs."""
import json
import sys

_QWEN3 = dict(model_type="qwen3", rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=40960,
              tie_word_embeddings=True, vocab_size=151936, head_dim=128)
_MOE = dict(_QWEN3, model_type="qwen3_moe", tie_word_embeddings=False, norm_topk_prob=True, decoder_sparse_step=1,
            mlp_only_layers=[], output_router_logits=False)

# name: (config.json, batch, sequence, --recompute)
SHAPES = {
    "qwen3-0.6b": (dict(_QWEN3, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                        intermediate_size=3072), 4, 2048, False),
    "qwen3-1.7b": (dict(_QWEN3, hidden_size=2048, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                        intermediate_size=6144), 4, 2048, False),
    # scp's fp32 master weights, gradients and AdamW moments are 16 bytes a parameter, 64 GB of 4.0B: activations of
    # every layer (about 1.7 MB a token) would not fit beside them in 80 GB.
    "qwen3-4b": (dict(_QWEN3, hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                      intermediate_size=9728), 2, 2048, True),
    # Qwen3-30B-A3B cut to 4 of its 48 layers (every expert kept): 3.1B parameters, 0.54B active per token.
    "qwen3-30b-a3b-4l": (dict(_MOE, hidden_size=2048, num_hidden_layers=4, num_attention_heads=32,
                              num_key_value_heads=4, intermediate_size=6144, num_experts=128, num_experts_per_tok=8,
                              moe_intermediate_size=768), 1, 4096, False),
    # small shapes for a dry run on the CPU (bench.sh --device cpu)
    "tiny": (dict(_QWEN3, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=16, intermediate_size=128, vocab_size=1000), 2, 64, False),
    "tiny-moe": (dict(_MOE, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=16, intermediate_size=128, vocab_size=1000, num_experts=8, num_experts_per_tok=2,
                      moe_intermediate_size=32), 2, 64, False),
}


def config(name):
    if name not in SHAPES:
        raise KeyError("unknown shape '%s' (%s)" % (name, ", ".join(SHAPES)))
    return dict(SHAPES[name][0])


def label(name, B, T):
    return "%s-%dx%d" % (name, B, T)


def layer_params(c, active=True):
    """Matmul parameters of one layer that a token passes through (active) or that the layer holds."""
    D, H, KV, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    attn = D * (H + 2 * KV) * hd + H * hd * D
    if c["model_type"] == "qwen3_moe":
        E, k = c["num_experts"], c["num_experts_per_tok"]
        return attn + D * E + (k if active else E) * 3 * D * c["moe_intermediate_size"]
    return attn + 3 * D * c["intermediate_size"]


def matmul_params(c, active=True):
    """The model's matmul parameters (the LM head once, no embedding lookup)."""
    return c["num_hidden_layers"] * layer_params(c, active) + c["vocab_size"] * c["hidden_size"]


def flops_per_token(c, T):
    return 6.0 * matmul_params(c) + 12.0 * c["num_hidden_layers"] * T * c["num_attention_heads"] * c["head_dim"]


def step_flops(c, B, T):
    return flops_per_token(c, T) * B * T


def rates(c, B, T, best_s, peak_tflops):
    """(tokens/s, TFLOP/s, MFU as a fraction; 0 without a known peak) of a step that took best_s seconds."""
    f = step_flops(c, B, T) / best_s
    return B * T / best_s, f / 1e12, f / (peak_tflops * 1e12) if peak_tflops > 0 else 0.0


def summary_line(name, B, T, scp_row, torch_row, peak_tflops, c=None):
    """gpu-step: SHAPE scp N tok/s PyTorch N tok/s ratio R MFU M%   (MFU: scp's; "-" for a side that did not run)"""
    c = c or config(name)
    s = rates(c, B, T, scp_row["best_s"], peak_tflops) if scp_row else None
    t = rates(c, B, T, torch_row["best_s"], peak_tflops) if torch_row else None
    return "gpu-step: %s scp %s tok/s PyTorch %s tok/s ratio %s MFU %s" % (
        label(name, B, T), "%.0f" % s[0] if s else "-", "%.0f" % t[0] if t else "-",
        "%.2f" % (s[0] / t[0]) if s and t else "-", "%.1f%%" % (100 * s[2]) if s and peak_tflops > 0 else "-")


def _load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _gb(r):
    v = (r or {}).get("device_peak_bytes")
    return "%8.2f" % (v / 1e9) if isinstance(v, (int, float)) and v >= 0 else "%8s" % "-"


def table(name, B, T, peak, device, scp_runs, torch_json):
    """The lines of bench.sh for one shape: scp_runs are "LABEL=FILE" (LABEL with _ for each space, FILE the JSON
    of a scp-step run, missing or empty where it failed), torch_json the PyTorch run's."""
    c = config(name)
    rows = [(lab.replace("_", " "), _load(p)) for lab, p in (x.split("=", 1) for x in scp_runs)]
    t = _load(torch_json)
    out = ["# %s on %s: %.3gB matmul parameters, %.3gB of them a token's, %.3g model GFLOP a token; dense bf16 "
           "peak %s TFLOP/s" % (label(name, B, T), device, matmul_params(c, False) / 1e9, matmul_params(c) / 1e9,
                                flops_per_token(c, T) / 1e9, peak or "unknown"),
           "# %-34s %10s %9s %8s %7s %9s %8s" % ("", "step s", "tok/s", "TFLOP/s", "MFU", "loss0", "peak GB")]
    for lab, r in rows + [("torch " + ((t or {}).get("impl") or "")[:28], t)]:
        if r:
            tok, tf, mfu = rates(c, B, T, r["best_s"], peak)
            out.append("# %-34s %10.4f %9.0f %8.1f %6.1f%% %9.4f %s" % (lab, r["best_s"], tok, tf, 100 * mfu,
                                                                        r["loss0"], _gb(r)))
        else:
            out.append("# %-34s %10s" % (lab, "failed"))
    first = next((r for _, r in rows if r), None)
    if first and first.get("ops_ms"):
        tot = sum(first["ops_ms"].values())
        out.append("# scp time per operation in one synchronised step (ms, share), %s:" % first["backend"])
        for k, v in sorted(first["ops_ms"].items(), key=lambda kv: -kv[1]):
            if v > 0:
                out.append("#   %-14s %10.2f  %5.1f%%" % (k, v, 100 * v / tot if tot else 0))
    if t and t.get("ops_ms"):
        out.append("# torch: top operators in one profiled step (ms):")
        out += ["#   %-50s %10.2f" % (k[:50], v) for k, v in t["ops_ms"].items()]
    out.append(summary_line(name, B, T, first, t, peak, c))
    return out


def main(argv):
    if len(argv) >= 3 and argv[0] == "config":
        with open(argv[2], "w") as f:
            json.dump(config(argv[1]), f, indent=1)
        return 0
    if len(argv) == 2 and argv[0] == "runs":
        _, B, T, rec = SHAPES[argv[1]] if argv[1] in SHAPES else config(argv[1])
        print(B, T, int(rec))
        return 0
    if len(argv) >= 7 and argv[0] == "table":
        print("\n".join(table(argv[1], int(argv[2]), int(argv[3]), float(argv[4]), argv[5], argv[6:-1], argv[-1])))
        return 0
    print(__doc__.split("\n\n")[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyError as e:
        print("gpu_bench.py: %s" % e.args[0], file=sys.stderr)
        sys.exit(2)
