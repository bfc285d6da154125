"""grad-check.py: the loss, the logits and every parameter gradient of our fp32 CPU step against PyTorch autograd
in float64, for random small models covering every switch (GQA, q/k/v and o biases, Qwen3 q/k norm with an
explicit head_dim, llama3 RoPE scaling, tied and untied embeddings, causal, bidirectional and annealed attention,
document masks with padding, logit shift on and off, AR and masked-diffusion objectives); and our AdamW against
torch.optim.AdamW on the same gradients (per-group learning rates, no decay on norms and biases).

The reference model is written here in plain torch from the checkpoint files, following the math of Hugging
Face's LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM (no transformers). Errors are norm-wise per
tensor: |ours - ref| / |ref| < 1e-4."""
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    testlib.skip_all("python3-torch/numpy not available (%s)" % e)
from grad_ref import bf16_weights, relerr, rms, rotate_half, selected, st_read, st_write, skip_without_gpu, storage_rounding  # noqa: E402

HELPER = os.path.join(os.environ.get("SCP_BUILDDIR", os.path.join(testlib.SRCDIR, "build")), "tests", "model", "grad-helper")
if not os.access(HELPER, os.X_OK):
    testlib.skip_all("tests/model/grad-helper not built")

TOL = 1e-4
TOL_ADAM = 1e-4
# grad-check-bf16.sh runs these cases on "cpu-bf16" (activations, their gradients and the weights the kernels
# read stored in bf16; fp32 master weights, gradients and moments), against the same float64 maths with bf16
# rounding wherever scp stores a value (ref_loss's bf16 switch). What is left is the fp32 arithmetic inside the
# kernels, which now and then rounds a stored value to the neighbouring bf16 number (2^-8 relative): the loss
# within 1e-6, logits within 5e-3, and gradients within 5e-2 (the k-projection bias, whose gradient is nearly
# zero by the softmax's shift invariance, is the worst). The floor asserts the converse: against the unrounded
# float64 model the logits must differ by more than 1e-4, or the storage was not bf16 at all. AdamW is compared
# on our own gradients: its update, made on the fp32 master, still matches torch to 1e-4, where a bf16 master
# would lose updates of 1e-3 relative to the weights outright.
BACKEND = os.environ.get("SCP_TEST_BACKEND", "cpu")
skip_without_gpu([BACKEND], HELPER)
BF16 = BACKEND.endswith("bf16") or BACKEND == "cuda"  # "cuda" is the bf16-storage table
TOL_LOGITS = TOL_GRAD = TOL
if BF16:
    TOL, TOL_LOGITS, TOL_GRAD = 1e-6, 5e-3, 5e-2
# The CUDA bf16 table (on a GPU, or in tests/gpu/emulated.sh) sums in other orders than the CPU, so now and then
# an fp32 result lies on the other side of a bf16 rounding boundary than the reference's; that one value, 2^-8
# off, moves everything after it by about that much, and those values round differently in turn: losses within
# 1e-2, logits 2e-2, gradients 1e-1 (the near-zero k-bias gradients the worst), still far from wrong maths.
if BF16 and BACKEND.startswith("cuda"):
    TOL, TOL_LOGITS, TOL_GRAD = 1e-2, 2e-2, 1e-1
FLOOR = 1e-4
torch.set_default_dtype(torch.float64)


# ---- the reference model (HF math, float64) ----


def inv_freq(cfg):
    hd = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.get("rope_scaling")
    if rs:  # HF _compute_llama3_parameters
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        inv_l = torch.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        is_med = ~(wl < high_wl) * ~(wl > low_wl)
        inv = torch.where(is_med, smoothed, inv_l)
    return inv


def ref_loss(cfg, P, ids, target, weight, visible, bf16=False):
    """P: name -> float64 leaf tensors. visible: (B, T, T) bool. Returns loss, token nll (B, T), logits.
    bf16: the same maths with scp's bf16 storage (model/backend.h "Storage"): the weights read as bf16 copies, and
    every activation scp keeps (and its gradient) rounded to bf16 where scp stores it."""
    R = storage_rounding(bf16)
    if bf16:
        P = bf16_weights(P)
    B, T = ids.shape
    D, H, KV, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    qk_norm = cfg["model_type"] == "qwen3"
    pos = torch.arange(T, dtype=torch.float64)
    freqs = torch.outer(pos, inv_freq(cfg))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    bias = torch.zeros(B, 1, T, T)
    bias[~visible.unsqueeze(1)] = float("-inf")
    h = R(P["model.embed_tokens.weight"][ids])
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        g = lambda n: P.get(p + n)  # noqa: E731
        x = R(rms(h, g("input_layernorm.weight"), eps))
        lin = lambda x, n: torch.nn.functional.linear(x, g(n + ".weight"), g(n + ".bias"))  # noqa: E731
        q = R(lin(x, "self_attn.q_proj")).view(B, T, H, hd).transpose(1, 2)
        k = R(lin(x, "self_attn.k_proj")).view(B, T, KV, hd).transpose(1, 2)
        v = R(lin(x, "self_attn.v_proj")).view(B, T, KV, hd).transpose(1, 2)
        if qk_norm:   # one entry with the rotation (qk_norm_rope_fwd): nothing stored in between
            q = rms(q, g("self_attn.q_norm.weight"), eps)
            k = rms(k, g("self_attn.k_norm.weight"), eps)
        q = R(q * cos + rotate_half(q) * sin)
        k = R(k * cos + rotate_half(k) * sin)
        k = k.repeat_interleave(H // KV, dim=1)   # HF repeat_kv: kv head j serves query heads j*rep .. j*rep+rep-1
        v = v.repeat_interleave(H // KV, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
        y = R((att @ v).transpose(1, 2).reshape(B, T, H * hd))
        h = R(h + lin(y, "self_attn.o_proj"))
        x = R(rms(h, g("post_attention_layernorm.weight"), eps))
        u = R(torch.nn.functional.silu(R(lin(x, "mlp.gate_proj"))) * R(lin(x, "mlp.up_proj")))
        h = R(h + lin(u, "mlp.down_proj"))
    h = R(rms(h, P["model.norm.weight"], eps))
    lm = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    logits = R(h @ lm.T)
    logp = torch.log_softmax(logits, dim=-1)
    tgt = torch.tensor(target, dtype=torch.long)
    has = tgt >= 0
    nll = -logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * has
    loss = (nll * torch.tensor(weight, dtype=torch.float64)).sum()
    return loss, nll, logits


def param_shapes(cfg):
    D, H, KV, hd, I, V = (cfg[k] for k in ("hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                                           "intermediate_size", "vocab_size"))
    bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (V, D)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        shapes.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                       p + "self_attn.q_proj.weight": (H * hd, D), p + "self_attn.k_proj.weight": (KV * hd, D),
                       p + "self_attn.v_proj.weight": (KV * hd, D), p + "self_attn.o_proj.weight": (D, H * hd),
                       p + "mlp.gate_proj.weight": (I, D), p + "mlp.up_proj.weight": (I, D), p + "mlp.down_proj.weight": (D, I)})
        if bias:
            shapes.update({p + "self_attn.q_proj.bias": (H * hd,), p + "self_attn.k_proj.bias": (KV * hd,),
                           p + "self_attn.v_proj.bias": (KV * hd,)})
        if cfg["model_type"] == "llama" and cfg.get("attention_bias"):
            shapes[p + "self_attn.o_proj.bias"] = (D,)
        if cfg["model_type"] == "qwen3":
            shapes.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
    return shapes


def group_of(name):  # mirrors formats/model_config.c's table and grad-helper's factors
    if "embed_tokens" in name or name.startswith("lm_head"):
        return 1.0
    if "layernorm" in name or name == "model.norm.weight":
        return 1.5
    if "self_attn" in name:
        return 2.0
    return 0.5


def decays(name):
    return name.endswith(".weight") and "norm" not in name


def make_case(rng, spec):
    cfg = {"model_type": spec["arch"], "hidden_size": spec["D"], "intermediate_size": spec["I"],
           "num_hidden_layers": spec.get("L", 2), "num_attention_heads": spec["H"], "num_key_value_heads": spec["KV"],
           "head_dim": spec.get("hd", spec["D"] // spec["H"]), "vocab_size": spec["V"], "rms_norm_eps": 1e-5,
           "rope_theta": spec.get("theta", 10000.0), "tie_word_embeddings": spec["tied"], "max_position_embeddings": 64,
           "mask_token_id": spec["V"] - 1}
    if spec.get("attention_bias"):
        cfg["attention_bias"] = True
    if spec.get("rope_scaling"):
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8}
    W = {}
    for name, shape in param_shapes(cfg).items():
        if len(shape) == 1:  # norms near 1, biases near 0, both random so their gradients are tested in general position
            base = 1.0 if "norm" in name else 0.0
            W[name] = (base + 0.2 * rng.standard_normal(shape)).astype(np.float32)
        else:
            W[name] = (0.3 * rng.standard_normal(shape)).astype(np.float32)
    B, T, V = spec["B"], spec["T"], spec["V"]
    x0 = rng.integers(0, V - 1, size=(B, T)).astype(np.int32)
    doc = None
    if spec.get("doc"):
        doc = np.zeros((B, T), np.int32)
        for b in range(B):
            cuts = sorted(rng.choice(np.arange(1, T - 2), size=2, replace=False))
            doc[b, cuts[0]:] = 1
            doc[b, cuts[1]:] = 2
            doc[b, T - 2:] = -1   # padding at the end
    if spec["obj"] == "ar":
        inp = x0.copy()
        target = np.full((B, T), -1, np.int32)
        target[:, :-1] = x0[:, 1:]
        if doc is not None:   # no prediction across a document boundary or into padding
            target[:, :-1][(doc[:, 1:] != doc[:, :-1]) | (doc[:, 1:] < 0)] = -1
        n = (target >= 0).sum()
        weight = np.where(target >= 0, 1.0 / n, 0.0).astype(np.float32)
    else:   # masked diffusion: t per sequence, each token masked with probability t, weight 1 / (t L)
        t = rng.uniform(0.3, 0.9, size=B)
        masked = rng.uniform(size=(B, T)) < t[:, None]
        masked[:, 1] = True
        inp = np.where(masked, V - 1, x0).astype(np.int32)
        target = np.full((B, T), -1, np.int32)
        if spec["shift"]:   # logits at i score token i + 1 (RND1, Dream)
            target[:, :-1] = np.where(masked[:, 1:], x0[:, 1:], -1)
        else:               # logits at i score token i (LLaDA)
            target[:] = np.where(masked, x0, -1)
        weight = (np.ones((B, T)) / (t[:, None] * T)).astype(np.float32)
    return cfg, W, inp, target, weight, doc


def visible_ref(attn, doc, B, T, helper_mask):
    """Our own statement of the mask; anneal's random future keys come from the helper's mask (the draws are the
    model's), checked to contain the causal part."""
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    if attn == "causal":
        vis = np.broadcast_to(j <= i, (B, T, T)).copy()
    elif attn == "bidirectional":
        vis = np.ones((B, T, T), bool)
    else:
        vis = helper_mask.astype(bool).copy()
        if doc is None:
            frac = (vis & (j > i)).sum() / ((j > i).sum() * B)
            testlib.ok(bool(np.all(vis | ~(j <= i))) and 0.2 < frac < 0.6,
                       "anneal mask holds the causal part and %.2f of future keys (p = 0.4)" % frac)
    if doc is not None:
        same = doc[:, :, None] == doc[:, None, :]
        pad = doc[:, :, None] < 0
        vis &= np.where(pad, np.eye(T, dtype=bool)[None], same)
    return vis


CASES = [
    dict(name="llama GQA untied causal AR", arch="llama", D=32, I=40, H=4, KV=2, V=50, tied=False, B=2, T=9, attn="causal", obj="ar", shift=True),
    dict(name="qwen2 bias tied bidirectional MDM shift", arch="qwen2", D=24, I=36, H=3, KV=1, V=41, tied=True, B=2, T=8, attn="bidirectional", obj="mdm", shift=True),
    dict(name="qwen3 qk-norm head_dim anneal MDM no-shift", arch="qwen3", D=16, I=30, H=4, KV=2, hd=6, V=45, tied=False, B=2, T=10, attn="anneal", obj="mdm", shift=False),
    dict(name="llama o-bias rope-scaling doc-mask causal AR", arch="llama", D=16, I=24, H=2, KV=2, V=33, tied=True, B=2, T=12, attn="causal", obj="ar", shift=True, doc=True, attention_bias=True, rope_scaling=True, theta=500000.0),
    dict(name="qwen3 tied GQA doc-mask bidirectional MDM no-shift", arch="qwen3", D=16, I=20, H=4, KV=1, hd=8, V=37, tied=True, B=3, T=10, attn="bidirectional", obj="mdm", shift=False, doc=True),
    dict(name="qwen2 untied anneal doc-mask MDM shift", arch="qwen2", D=16, I=20, H=2, KV=1, V=29, tied=False, B=2, T=12, attn="anneal", obj="mdm", shift=True, doc=True, L=3),
]


def run_case(k, spec):
    rng = np.random.default_rng(1000 + k)
    cfg, W, inp, target, weight, doc = make_case(rng, spec)
    d = testlib.tmpdir()
    ck = os.path.join(d, "ckpt")
    os.mkdir(ck)
    with open(os.path.join(ck, "config.json"), "w") as f:
        json.dump(cfg, f)
    st_write(os.path.join(ck, "model.safetensors"), W)
    batch = {"input": inp, "target": target, "weight": weight}
    if doc is not None:
        batch["doc"] = doc
    md = {"attn": spec["attn"], "anneal_p": "0.4", "anneal_seed": "12345"}
    st_write(os.path.join(d, "batch.safetensors"), batch, md)
    out = os.path.join(d, "out.safetensors")
    args = [HELPER, ck, os.path.join(d, "batch.safetensors"), out] + (["--adamw"] if k == 0 or k == 4 else [])
    r = subprocess.run(args, capture_output=True, env=dict(os.environ, SCP_TEST_BACKEND=BACKEND))
    if not testlib.ok(r.returncode == 0, "%s: grad-helper runs on %s" % (spec["name"], BACKEND)):
        testlib.diag(r.stderr.decode(errors="replace"))
        return
    O = st_read(out)
    B, T = inp.shape
    vis = visible_ref(spec["attn"], doc, B, T, O["mask"])
    testlib.ok(np.array_equal(vis, O["mask"].astype(bool)), "%s: attention mask as specified" % spec["name"])
    P = {n: torch.tensor(w.astype(np.float64), requires_grad=True) for n, w in W.items()}
    loss, nll, logits = ref_loss(cfg, P, torch.tensor(inp, dtype=torch.long), target, weight, torch.tensor(vis), BF16)
    loss.backward()
    e = abs(float(O["loss"][0]) - loss.item()) / abs(loss.item())
    testlib.ok(e < TOL, "%s: loss %.6f vs torch %.6f (rel %.1e)" % (spec["name"], O["loss"][0], loss.item(), e))
    e = relerr(O["token_nll"], nll.detach().numpy())
    testlib.ok(e < TOL, "%s: per-token nll (rel %.1e)" % (spec["name"], e))
    e = relerr(O["logits"], logits.detach().numpy())
    testlib.ok(e < TOL_LOGITS, "%s: logits (rel %.1e)" % (spec["name"], e))
    if BF16:
        with torch.no_grad():
            exact = ref_loss(cfg, P, torch.tensor(inp, dtype=torch.long), target, weight, torch.tensor(vis))[2]
        e = relerr(O["logits"], exact.numpy())
        testlib.ok(e > FLOOR, "%s: the storage rounds: logits %.1e from the unrounded model" % (spec["name"], e))
    worst, wname = 0.0, ""
    for n, p in P.items():
        e = relerr(O["grad." + n], p.grad.numpy())
        if e > worst:
            worst, wname = e, n
    testlib.ok(worst < TOL_GRAD and len(P) == sum(1 for n in O if n.startswith("grad.")),
               "%s: all %d parameter gradients (worst rel %.1e, %s)" % (spec["name"], len(P), worst, wname))
    if "adam.model.norm.weight" in O:
        params = {n: torch.tensor(w.astype(np.float64)) for n, w in W.items()}
        groups = [{"params": [params[n]], "lr": 1e-3 * group_of(n), "weight_decay": 0.1 if decays(n) else 0.0} for n in P]
        opt = torch.optim.AdamW(groups, betas=(0.9, 0.95), eps=1e-8)
        for step in ("grad.", "grad2."):
            for n, p in params.items():
                p.grad = torch.tensor(O[step + n].astype(np.float64))
            opt.step()
        worst, wname = 0.0, ""
        for n, p in params.items():   # error relative to the size of the two updates
            e = relerr(O["adam." + n] - W[n], (p - torch.tensor(W[n].astype(np.float64))).numpy())
            if e > worst:
                worst, wname = e, n
        testlib.ok(worst < TOL_ADAM, "%s: two AdamW steps match torch.optim.AdamW (worst rel %.1e, %s)" % (spec["name"], worst, wname))


for k, spec in selected(CASES):
    run_case(k, spec)
testlib.done()
