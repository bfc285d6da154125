"""modeling_scp.py: the masked diffusion LMs that scp writes (scp-export --format hf), for PyTorch and Hugging Face
transformers.

    from transformers import AutoModelForMaskedLM
    model = AutoModelForMaskedLM.from_pretrained(DIR, trust_remote_code=True)

The architectures are scp's (formats/model_config.h): llama (attention_bias: biases on q, k, v and o), qwen2
(biases on q, k, v), qwen3 (RMSNorm over head_dim on q and k before RoPE), qwen3_moe (a router and SwiGLU experts in
every layer, norm_topk_prob), RoPE with the HF half-split pairs and Llama 3.1 scaling, tied or untied embeddings.
The SCP keys of config.json decide the rest: is_causal (false: every position sees every other), shift_logits
(true: the hidden state at i - 1 scores token i, as in Dream and RND1), mask_token_id.

forward() returns masked-LM logits (B, T, V): logits[:, i] score the token at position i. With shift_logits the
network's own outputs are moved one place right (position 0 keeps its own), so that an argmax at a masked position
is that position's prediction whatever the checkpoint's convention; forward(..., shift_logits=False) gives the
unshifted outputs. diffusion_generate() is scp-eval generate's sampler (lib/eval/sampler.c), draw for draw: the
same schedule, orders, blocks, temperature, top-k, top-p, EOS handling and random numbers for a seed;
ar_generate() its next-token decoding for causal checkpoints.

The file depends on torch alone when transformers is missing: the model then derives from torch.nn.Module and
from_pretrained reads config.json and model.safetensors itself, so that the same code runs without transformers."""
import json
import logging
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import transformers
    from transformers import PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput
    HAVE_TRANSFORMERS = True
    TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
except ImportError:
    HAVE_TRANSFORMERS = False
    TRANSFORMERS_MAJOR = 0

ARCHS = ("llama", "qwen2", "qwen3", "qwen3_moe")
ORDERS = ("low-confidence", "margin", "entropy", "random")

if not HAVE_TRANSFORMERS:
    class PretrainedConfig:
        """What this file needs of transformers' PretrainedConfig: keyword attributes, config.json in and out."""
        model_type = ""

        def __init__(self, **kwargs):
            self.tie_word_embeddings = kwargs.pop("tie_word_embeddings", True)
            for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
                setattr(self, k, kwargs.pop(k, None))
            self.torch_dtype = kwargs.pop("torch_dtype", None)
            for k, v in kwargs.items():
                setattr(self, k, v)

        @classmethod
        def from_pretrained(cls, path, **kwargs):
            if os.path.isdir(path):
                path = os.path.join(path, "config.json")
            with open(path) as f:
                d = json.load(f)
            d.update(kwargs)
            return cls(**d)

        def to_dict(self):
            return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    class _Output(dict):
        """A dict whose keys are also attributes, and whose values other than None are a tuple, as transformers'
        ModelOutput."""
        def __getitem__(self, k):
            if isinstance(k, (int, slice)):
                return tuple(v for v in self.values() if v is not None)[k]
            return dict.__getitem__(self, k)

        def __getattr__(self, k):
            try:
                return self[k]
            except KeyError:
                raise AttributeError(k) from None

    def BaseModelOutput(**kw):   # noqa: N802
        return _Output(**kw)

    def MaskedLMOutput(**kw):   # noqa: N802
        return _Output(**kw)

    def _read_safetensors(path):
        """name -> tensor of a .safetensors file (F32, F16 and BF16: what scp-export writes)."""
        dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
            data = bytearray(f.read())
        out = {}
        for name, t in header.items():
            if name == "__metadata__":
                continue
            if t["dtype"] not in dtypes:
                raise ValueError("%s: tensor %s has dtype %s (F32, F16 or BF16 expected)" % (path, name, t["dtype"]))
            lo, hi = t["data_offsets"]
            if hi > lo:
                raw = torch.frombuffer(data, dtype=torch.uint8, count=hi - lo, offset=lo)
            else:
                raw = torch.empty(0, dtype=torch.uint8)
            out[name] = raw.view(dtypes[t["dtype"]]).reshape(t["shape"]).clone()
        return out

    class PreTrainedModel(nn.Module):
        """What this file needs of transformers' PreTrainedModel: the config, from_pretrained on plain torch."""
        config_class = PretrainedConfig
        base_model_prefix = ""

        def __init__(self, config, *args, **kwargs):
            super().__init__()
            self.config = config

        def post_init(self):
            self.tie_weights()

        def tie_weights(self):
            out, inp = self.get_output_embeddings(), self.get_input_embeddings()
            if out is not None and getattr(self.config, "tie_word_embeddings", False):
                out.weight = inp.weight

        def get_input_embeddings(self):
            return None

        def get_output_embeddings(self):
            return None

        @property
        def device(self):
            return next(self.parameters()).device

        @classmethod
        def from_pretrained(cls, path, config=None, torch_dtype=None, **kwargs):
            config = config or cls.config_class.from_pretrained(path)
            model = cls(config)
            state = {}
            index = os.path.join(path, "model.safetensors.index.json")
            files = ["model.safetensors"]
            if os.path.exists(index):   # the sharded form
                with open(index) as f:
                    files = sorted(set(json.load(f)["weight_map"].values()))
            for fn in files:
                state.update(_read_safetensors(os.path.join(path, fn)))
            own = model.state_dict()
            prefix = cls.base_model_prefix + "."
            if cls.base_model_prefix and not any(k.startswith(prefix) for k in own):
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if getattr(config, "tie_word_embeddings", False):
                state.pop("lm_head.weight", None)
                own.pop("lm_head.weight", None)
            missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            if missing or extra:
                raise ValueError("%s: the checkpoint does not fit the config (missing: %s; not part of the model: %s)"
                                 % (path, ", ".join(missing[:8]) or "none", ", ".join(extra[:8]) or "none"))
            model.load_state_dict(state, strict=False)
            model.tie_weights()
            if isinstance(torch_dtype, str):
                torch_dtype = getattr(torch, torch_dtype, None)
            dtype = torch_dtype if isinstance(torch_dtype, torch.dtype) else torch.float32
            return model.to(dtype).eval()


class _ArchModelTypeFilter(logging.Filter):
    """Drops transformers' warning that config.json's model_type (the architecture) is not "scp"."""
    def filter(self, record):
        return "to instantiate a model of type scp" not in record.getMessage()


class SCPConfig(PretrainedConfig):
    """config.json of an scp checkpoint: the HF keys of its architecture (model_type) and the SCP keys.

    The architecture stays in config.json's model_type (llama, qwen2, qwen3, qwen3_moe), where scp reads it back;
    this class's own model_type, "scp", only names the family to transformers."""
    model_type = "scp"
    keys_to_ignore_at_inference = []

    def __init__(self, vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=None, head_dim=None, max_position_embeddings=2048,
                 rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None, attention_bias=False,
                 num_experts=0, num_experts_per_tok=0, moe_intermediate_size=0, norm_topk_prob=False,
                 mask_token_id=None, is_causal=True, shift_logits=True, tie_word_embeddings=False, **kwargs):
        arch = kwargs.pop("model_type", None)
        arch = kwargs.pop("scp_arch", None) or arch or "llama"
        if arch not in ARCHS:
            raise ValueError("model_type %r is not one of %s" % (arch, ", ".join(ARCHS)))
        self.scp_arch = arch
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.attention_bias = attention_bias
        self.num_experts = num_experts if arch == "qwen3_moe" else 0
        self.num_experts_per_tok = num_experts_per_tok
        self.moe_intermediate_size = moe_intermediate_size
        self.norm_topk_prob = norm_topk_prob
        self.mask_token_id = mask_token_id
        self.is_causal = is_causal
        self.shift_logits = shift_logits
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    if HAVE_TRANSFORMERS:
        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            # transformers warns whenever config.json's model_type is not the class's ("You are using a model of
            # type qwen3 to instantiate a model of type scp"); here that is by design (the docstring above), so
            # that one message is dropped and every other is kept.
            log = logging.getLogger("transformers.configuration_utils")
            quiet = _ArchModelTypeFilter()
            log.addFilter(quiet)
            try:
                return super().from_pretrained(*args, **kwargs)
            finally:
                log.removeFilter(quiet)

    def to_dict(self):
        d = super().to_dict()
        d.pop("scp_arch", None)
        d["model_type"] = self.scp_arch
        return d

    def to_diff_dict(self):
        d = super().to_diff_dict() if hasattr(super(), "to_diff_dict") else self.to_dict()
        d.pop("scp_arch", None)
        d["model_type"] = self.scp_arch
        return d


def rope_inv_freq(c):
    """The hd/2 RoPE inverse frequencies (formats/model_config.c, scp_rope_inv_freq), a list of floats."""
    hd = c.head_dim
    inv = [1.0 / c.rope_theta ** (2.0 * i / hd) for i in range(hd // 2)]
    rs = c.rope_scaling or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "llama3":
        # Llama 3.1: long wavelengths slowed by `factor`, short ones kept, the band between interpolated
        f, lo, hi = rs.get("factor", 8.0), rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        old = rs.get("original_max_position_embeddings", 8192)
        for i, x in enumerate(inv):
            wavelen = 2 * math.pi / x
            if wavelen < old / hi:
                continue
            if wavelen > old / lo:
                inv[i] = x / f
                continue
            smooth = (old / wavelen - lo) / (hi - lo)
            inv[i] = (1 - smooth) * x / f + smooth * x
    elif kind != "default":
        raise ValueError("rope_scaling type %r is not supported (llama3 is)" % kind)
    return inv


class SCPRMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate(x, cos, sin):
    """RoPE on x (B, heads, T, hd) with the pairs (i, i + hd/2); cos, sin (T, hd)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


class SCPAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.H, self.KV, self.hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        qkv_bias = c.scp_arch == "qwen2" or bool(c.attention_bias)
        o_bias = c.scp_arch != "qwen2" and bool(c.attention_bias)
        self.q_proj = nn.Linear(c.hidden_size, self.H * self.hd, bias=qkv_bias)
        self.k_proj = nn.Linear(c.hidden_size, self.KV * self.hd, bias=qkv_bias)
        self.v_proj = nn.Linear(c.hidden_size, self.KV * self.hd, bias=qkv_bias)
        self.o_proj = nn.Linear(self.H * self.hd, c.hidden_size, bias=o_bias)
        if c.scp_arch in ("qwen3", "qwen3_moe"):
            self.q_norm = SCPRMSNorm(self.hd, c.rms_norm_eps)
            self.k_norm = SCPRMSNorm(self.hd, c.rms_norm_eps)

    def forward(self, x, cos, sin, bias):
        """x (B, T, D); bias (B or 1, 1, T, T): 0 where a key is visible, -inf where not."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.hd)
        k = self.k_proj(x).view(B, T, self.KV, self.hd)
        v = self.v_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = rotate(q.transpose(1, 2), cos, sin), rotate(k.transpose(1, 2), cos, sin)
        rep = self.H // self.KV   # grouped-query attention: query head h reads key/value head h // rep
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        s = (q @ k.transpose(-1, -2)).float() / math.sqrt(self.hd) + bias
        o = torch.softmax(s, -1).to(v.dtype) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.H * self.hd))


class SCPMLP(nn.Module):
    def __init__(self, D, I):
        super().__init__()
        self.gate_proj = nn.Linear(D, I, bias=False)
        self.up_proj = nn.Linear(D, I, bias=False)
        self.down_proj = nn.Linear(I, D, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SCPSparseMoE(nn.Module):
    """Qwen3-MoE: softmax over the router's E logits, the top k experts (renormalised with norm_topk_prob),
    their outputs summed with those weights."""
    def __init__(self, c):
        super().__init__()
        self.k, self.norm = c.num_experts_per_tok, bool(c.norm_topk_prob)
        self.gate = nn.Linear(c.hidden_size, c.num_experts, bias=False)
        self.experts = nn.ModuleList(SCPMLP(c.hidden_size, c.moe_intermediate_size) for _ in range(c.num_experts))

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])   # (M, D)
        probs = torch.softmax(self.gate(x).float(), -1)   # (M, E)
        w, idx = torch.topk(probs, self.k, -1)   # (M, k)
        if self.norm:
            w = w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows, slot = (idx == e).nonzero(as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, expert(x[rows]) * w[rows, slot, None].to(x.dtype))
        return out.reshape(shape)


class SCPDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = SCPRMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = SCPAttention(c)
        self.post_attention_layernorm = SCPRMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = SCPSparseMoE(c) if c.scp_arch == "qwen3_moe" else SCPMLP(c.hidden_size, c.intermediate_size)

    def forward(self, x, cos, sin, bias):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, bias)
        return x + self.mlp(self.post_attention_layernorm(x))


class SCPPreTrainedModel(PreTrainedModel):
    config_class = SCPConfig
    base_model_prefix = "model"
    _no_split_modules = ["SCPDecoderLayer"]
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        std = 0.02
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, std)
        elif isinstance(module, SCPRMSNorm):
            module.weight.data.fill_(1.0)


class SCPModel(SCPPreTrainedModel):
    """The network without its LM head: hidden states (B, T, D) after the final norm."""
    def __init__(self, config):
        super().__init__(config)
        c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(SCPDecoderLayer(c) for _ in range(c.num_hidden_layers))
        self.norm = SCPRMSNorm(c.hidden_size, c.rms_norm_eps)
        # a plain list, not a buffer: transformers may build the model on the meta device, and nothing in the
        # checkpoint would then fill a buffer in
        self.inv_freq = rope_inv_freq(c)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, causal=None, return_dict=None, **kwargs):
        """input_ids (B, T); attention_mask (B, T), 1 for tokens and 0 for padding keys; causal: None follows
        config.json's is_causal."""
        x = self.embed_tokens(input_ids)
        B, T = input_ids.shape
        causal = bool(self.config.is_causal) if causal is None else causal
        inv_freq = torch.tensor(self.inv_freq, dtype=torch.float64, device=x.device)
        ang = torch.arange(T, dtype=torch.float64, device=x.device)[:, None] * inv_freq[None, :]   # (T, hd/2)
        cos = torch.cat([ang.cos(), ang.cos()], -1).to(x.dtype)
        sin = torch.cat([ang.sin(), ang.sin()], -1).to(x.dtype)
        bias = torch.zeros(1, 1, T, T, device=x.device)
        if causal:
            bias = bias.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        if attention_mask is not None:
            bias = bias.masked_fill(attention_mask[:, None, None, :] == 0, float("-inf"))
        for layer in self.layers:
            x = layer(x, cos, sin, bias)
        x = self.norm(x)
        if return_dict is False:
            return (x,)
        return BaseModelOutput(last_hidden_state=x)


def _mix64(x):
    M = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)


class ScpRng:
    """scp's random numbers (core/rng.c): xoshiro256** seeded through splitmix64 from (seed, stream)."""
    M = (1 << 64) - 1

    def __init__(self, seed, stream):
        x = _mix64(seed & self.M) ^ _mix64((stream ^ 0x5851F42D4C957F2D) & self.M)
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & self.M
            self.s.append(_mix64(x))
        if not any(self.s):
            self.s[0] = 1

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & ScpRng.M

    def u64(self):
        s, M = self.s, self.M
        out = (self._rotl((s[1] * 5) & M, 7) * 9) & M
        t = (s[1] << 17) & M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return out

    def uniform(self):
        return (self.u64() >> 11) * 2.0 ** -53


def sampling_distribution(logits, temperature, top_k, top_p, banned):
    """The distribution a token is drawn from (eval/sampler.c): the banned id removed, temperature, top-k (ties at
    the threshold kept), softmax, top-p (the smallest set of most probable tokens whose mass reaches top_p).
    logits (V,); returns float32 probabilities (V,). Temperature 0 is the plain softmax (the argmax is drawn)."""
    p = logits.detach().float().cpu().clone()
    V = p.numel()
    if banned is not None and 0 <= banned < V:
        p[banned] = float("-inf")
    t = temperature if temperature > 0 else 1.0
    mx = p.max()
    if temperature > 0 and 0 < top_k < V:
        th = torch.sort(p, descending=True).values[top_k - 1]
        p[p < th] = float("-inf")
    e = torch.where(torch.isneginf(p), torch.zeros_like(p), torch.exp((p - mx) / torch.tensor(t, dtype=torch.float32)))
    p = (e.double() / e.double().sum()).float()
    if temperature > 0 and top_p < 1.0:
        c = torch.sort(p, descending=True).values
        acc = torch.cumsum(c.double(), 0)
        reach = (acc >= top_p).nonzero()
        th = c[int(reach[0])] if reach.numel() else c[-1]
        p = torch.where(p < th, torch.zeros_like(p), p)
        p = (p.double() / p.double().sum()).float()
    return p


def pick_token(p, temperature, u):
    """The argmax of p at temperature 0 (the first of equal maxima), else the token where the running sum of p
    first passes u."""
    if temperature <= 0:
        return int(torch.argmax(p))
    acc = torch.cumsum(p.double(), 0)
    past = (acc > u).nonzero()
    if past.numel():
        return int(past[0])
    return int((p > 0).nonzero()[-1])   # rounding: the last token with mass


def confidence(p, tok, order, u2):
    """How sure a draw is, larger first (eval/sampler.h: the orders)."""
    if order == "low-confidence":
        return float(p[tok])
    if order == "margin":
        top = torch.topk(p, min(2, p.numel())).values
        return float(top[0] - (top[1] if top.numel() > 1 else 0.0))
    if order == "entropy":
        q = p[p > 0].double()
        return float(torch.tensor(float((q * q.log()).sum()), dtype=torch.float32))
    return float(torch.tensor(u2, dtype=torch.float32))


class SCPForMaskedLM(SCPPreTrainedModel):
    # transformers 5 maps each tied parameter to its source; 4 lists them
    _tied_weights_keys = ({"lm_head.weight": "model.embed_tokens.weight"} if TRANSFORMERS_MAJOR >= 5
                          else ["lm_head.weight"])

    def __init__(self, config):
        super().__init__(config)
        self.model = SCPModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, labels=None, shift_logits=None, causal=None,
                return_dict=None, **kwargs):
        """Masked-LM logits (B, T, V), logits[:, i] scoring the token at i (see the file's header): shift_logits
        None follows config.json. labels (B, T): the ids to score, -100 where not; the loss is their mean
        cross-entropy."""
        h = self.model(input_ids=input_ids, attention_mask=attention_mask, causal=causal)[0]
        logits = self.lm_head(h)
        shift = bool(self.config.shift_logits) if shift_logits is None else shift_logits
        if shift and logits.shape[1] > 1:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], 1)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        if return_dict is False:
            return (loss, logits) if loss is not None else (logits,)
        return MaskedLMOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def diffusion_generate(self, input_ids, length=0, suffix_ids=None, steps=None, block=0, order="low-confidence",
                           temperature=0.0, top_k=0, top_p=1.0, seed=1, at_eos="stop", shift=None, mask_token_id=None,
                           eos_token_id=None, causal=False, callback=None):
        """scp-eval generate's iterative unmasking (eval/sampler.h). The canvas of each row of input_ids (B, n) or
        (n,): the row (mask ids in it are filled too: infill), `length` mask ids, then suffix_ids (a list or
        1-d tensor). Returns the filled canvases (B, n + length + len(suffix_ids)), long.

        steps: model calls in all (default: length, or 16 when length is 0); block: fill the span from the first
        mask in blocks of this many positions, left to right, the steps shared equally (0: one block); order:
        which draws are committed first, "low-confidence" (the drawn token's probability), "margin" (top-1 minus
        top-2), "entropy" (negative entropy) or "random"; temperature 0 takes the argmax; top_k 0 and top_p 1 are
        off; seed: scp's random streams, so the same seed gives scp-eval's draws; at_eos "fill" turns every
        generated position after the first committed EOS into EOS, "stop" and "ignore" leave the canvas as drawn
        (cut the text at the first EOS for "stop"); shift, mask_token_id, eos_token_id default to config.json's;
        causal=True runs the model with causal attention. callback(canvas list, call) after each model call."""
        if order not in ORDERS:
            raise ValueError("order %r is not one of %s" % (order, ", ".join(ORDERS)))
        if at_eos not in ("stop", "fill", "ignore"):
            raise ValueError("at_eos %r is not stop, fill or ignore" % at_eos)
        c = self.config
        mask = c.mask_token_id if mask_token_id is None else mask_token_id
        if mask is None or not 0 <= mask < c.vocab_size:
            raise ValueError("no usable mask token id (%r)" % (mask,))
        eos = c.eos_token_id if eos_token_id is None else eos_token_id
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        shift = bool(c.shift_logits) if shift is None else shift
        steps = steps if steps is not None else (length if length > 0 else 16)
        if steps < 1:
            raise ValueError("steps must be at least 1")
        # the sampler's numbers are single precision, as scp's are
        temperature = float(torch.tensor(temperature, dtype=torch.float32))
        top_p = float(torch.tensor(top_p, dtype=torch.float32))
        rows = torch.as_tensor(input_ids)
        rows = rows[None] if rows.dim() == 1 else rows
        suffix = [int(t) for t in (suffix_ids if suffix_ids is not None else [])]
        out = []
        for row in rows.tolist():
            canvas = row + [mask] * length + suffix
            self._fill(canvas, mask, eos, shift, steps, block, order, temperature, top_k, top_p, seed, at_eos, causal,
                       callback)
            out.append(canvas)
        return torch.tensor(out, dtype=torch.long, device=rows.device)

    @torch.no_grad()
    def ar_generate(self, input_ids, length=64, temperature=0.0, top_k=0, top_p=1.0, seed=1, at_eos="stop",
                    mask_token_id=None, eos_token_id=None):
        """scp-eval generate's next-token decoding (--mode ar, the default for causal checkpoints): each row of
        input_ids (B, n) or (n,) continued by up to `length` tokens drawn from the last position's logits under
        causal attention (the mask token never drawn), stopping after an EOS unless at_eos is "ignore".
        temperature, top_k, top_p and seed as in diffusion_generate, with scp's random streams. Returns a list of
        1-d long tensors, one per row (the EOS, when drawn, included)."""
        if at_eos not in ("stop", "fill", "ignore"):
            raise ValueError("at_eos %r is not stop, fill or ignore" % at_eos)
        c = self.config
        mask = c.mask_token_id if mask_token_id is None else mask_token_id
        eos = c.eos_token_id if eos_token_id is None else eos_token_id
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        temperature = float(torch.tensor(temperature, dtype=torch.float32))
        top_p = float(torch.tensor(top_p, dtype=torch.float32))
        rows = torch.as_tensor(input_ids)
        rows = rows[None] if rows.dim() == 1 else rows
        out = []
        for row in rows.tolist():
            if not row:
                raise ValueError("an autoregressive prompt needs at least one token (give BOS or text)")
            ids = list(row)
            for t in range(length):
                x = torch.tensor([ids], dtype=torch.long, device=self.device)
                last = self.forward(input_ids=x, shift_logits=False, causal=True, return_dict=False)[0][0, -1]
                u = ScpRng(seed, (t << 32) | len(ids)).uniform()
                p = sampling_distribution(last.float().cpu(), temperature, top_k, top_p, mask)
                tok = pick_token(p, temperature, u)
                ids.append(tok)
                if tok == eos and at_eos != "ignore":
                    break
            out.append(torch.tensor(ids, dtype=torch.long, device=rows.device))
        return out

    def _fill(self, canvas, mask, eos, shift, steps, block, order, temperature, top_k, top_p, seed, at_eos, causal,
              callback):
        """Fill every mask of canvas (a list of n ids) in place; returns the model calls made."""
        n = len(canvas)
        start = next((i for i, t in enumerate(canvas) if t == mask), n)
        if start == n:
            return 0
        span = n - start
        block = block if 0 < block < span else span
        nblocks = (span + block - 1) // block
        gen = [t == mask for t in canvas]   # the generated span: positions that were masks
        calls = 0
        dev = self.device
        for bi in range(nblocks):
            lo, hi = start + bi * block, min(start + (bi + 1) * block, n)
            S = max(1, steps // nblocks + (bi < steps % nblocks))
            M0 = sum(canvas[i] == mask for i in range(lo, hi))
            for s in range(S):
                M = sum(canvas[i] == mask for i in range(lo, hi))
                if M == 0:
                    break
                # linear schedule: M0 / S per step, the remainder over the first steps; the last takes the rest
                k = M0 // S + (s < M0 % S)
                if s == S - 1 or k > M:
                    k = M
                if k == 0:
                    continue
                ids = torch.tensor([canvas], dtype=torch.long, device=dev)
                logits = self.forward(input_ids=ids, shift_logits=shift, causal=causal, return_dict=False)[0][0]
                logits = logits.float().cpu()   # (n, V): the draws are made on the CPU, in scp's order
                cands = []
                for i in range(lo, hi):
                    if canvas[i] != mask:
                        continue
                    r = ScpRng(seed, (calls << 32) | i)
                    u, u2 = r.uniform(), r.uniform()
                    p = sampling_distribution(logits[i], temperature, top_k, top_p, mask)
                    tok = pick_token(p, temperature, u)
                    cands.append((-confidence(p, tok, order, u2), i, tok))
                cands.sort()
                for _, i, tok in cands[:k]:
                    canvas[i] = tok
                if at_eos == "fill" and eos is not None and eos >= 0:
                    # LLaDA's SFT pads answers with EOS: every generated position after the first committed EOS
                    # is EOS (prompt and suffix untouched)
                    first = next((i for i in range(start, n) if gen[i] and canvas[i] == eos), None)
                    if first is not None:
                        for i in range(first + 1, n):
                            if gen[i]:
                                canvas[i] = eos
                calls += 1
                if callback is not None:
                    callback(list(canvas), calls)
        return calls

