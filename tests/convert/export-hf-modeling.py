"""export-hf-modeling.py: the modeling code scp-export --format hf writes (share/scp/hf/modeling_scp.py), run on
small random models generated here (tests/importgen.py) against scp's own forward and sampler:
- the export holds modeling_scp.py, byte for byte the repository's, and config.json's auto_map names its classes;
- llama (with attention biases and llama3 RoPE scaling), qwen2, qwen3 and qwen3_moe (norm_topk_prob on and off),
  tied and untied, causal and bidirectional, shift on and off: the module's logits of a sequence equal scp's
  (tests/gpu/logits-dump, CPU backend) within 1e-4 in float32, unshifted and shifted (row i from scp's row i - 1);
  padding keys masked by attention_mask leave the other positions' logits as they are;
- diffusion_generate gives scp-eval generate's canvas token for token: greedy with the low-confidence, margin and
  entropy orders, blocks, shift on and off, sampling with temperature, top-k, top-p and a seed (the module draws
  scp's random numbers), the random order, infill (masks in the prompt, a suffix) and --at-eos fill; ar_generate
  gives scp-eval generate's next-token decoding of the causal exports, greedy and sampled;
- with transformers installed, AutoConfig, AutoModel and AutoModelForMaskedLM with trust_remote_code load the
  export without a warning and give the same logits, and what save_pretrained writes loads again and comes back
  through scp-import with the same logits; without transformers those checks are skipped (the GPU machine's
  device-check.sh runs them)."""
import atexit
import importlib.util
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import BIN, SRCDIR, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import importgen as g  # noqa: E402

try:
    import numpy as np
    import torch
except ImportError:
    skip_all("numpy or torch not available")
BUILD = os.environ.get("SCP_BUILDDIR", os.path.dirname(BIN))
DUMP = os.path.join(BUILD, "tests", "gpu", "logits-dump")
for prog in ("scp-import", "scp-export", "scp-eval"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")
if not os.path.exists(DUMP):
    skip_all("tests/gpu/logits-dump not built (make check builds it)")
try:
    import transformers
except ImportError:
    transformers = None

torch.manual_seed(0)
torch.set_num_threads(1)
tmp = tmpdir()
atexit.register(shutil.rmtree, tmp, True)
SOURCE = os.path.join(SRCDIR, "share", "scp", "hf", "modeling_scp.py")
V = 40

# name, model_type, tied, export flags, config keys
MODELS = [
    ("llama-bias-rope", "llama", False, ["--bidirectional", "--shift"],
     dict(attention_bias=True, rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                             "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    ("llama-tied-causal", "llama", True, ["--causal", "--no-shift"], {}),
    ("qwen2", "qwen2", False, ["--bidirectional", "--no-shift"], {}),
    ("qwen3-tied", "qwen3", True, ["--bidirectional", "--shift"], {}),
    ("qwen3-causal", "qwen3", False, ["--causal", "--shift"], {}),
    ("qwen3_moe", "qwen3_moe", False, ["--bidirectional", "--shift"], {}),
    ("qwen3_moe-tied-nonorm", "qwen3_moe", True, ["--bidirectional", "--no-shift"], dict(norm_topk_prob=False)),
]


def export(name, arch, tied, flags, keys, seed):
    src, ck, ex = (os.path.join(tmp, name + s) for s in ("-src", "-ck", "-hf"))
    c = g.config(arch, tied=tied, vocab=V, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=40, num_hidden_layers=2, max_position_embeddings=64, **keys)
    t = g.random_tensors(c, "F32", seed)
    if keys.get("attention_bias"):   # Llama's attention_bias: q, k, v and o biases (importgen lists Qwen2's only)
        rng = np.random.default_rng(seed)
        for l in range(c["num_hidden_layers"]):
            for p, n in (("q", 32), ("k", 16), ("v", 16), ("o", 32)):
                b = rng.standard_normal(n).astype("<f4").tobytes()
                t["model.layers.%d.self_attn.%s_proj.bias" % (l, p)] = ("F32", (n,), b)
    # the scales of a trained model: matrices 1 / sqrt(fan-in), norm weights near 1, small biases. Standard normal
    # weights everywhere would saturate every softmax and blow the residual stream up, where float32 rounding
    # alone passes 1e-4 and a wrong attention mask hardly shows.
    for n, (dt, shape, b) in t.items():
        x = np.frombuffer(b, "<f4").reshape(shape)
        if len(shape) == 2 and "embed_tokens" not in n:
            x = x / np.sqrt(shape[1])
        elif n.endswith("norm.weight"):
            x = 1 + 0.2 * x
        elif n.endswith(".bias"):
            x = 0.2 * x
        t[n] = (dt, shape, x.astype("<f4").tobytes())
    g.make_hf(src, c, "F32", n_tokens=37, tensors=t)
    r = run(["scp-import", "-q", src, "-o", ck])
    if r.returncode:
        diag(r.stderr.decode())
        return None, None
    r = run(["scp-export", "-q", "--format", "hf"] + flags + ["-o", ex, ck])
    if r.returncode:
        diag(r.stderr.decode())
        return None, None
    return ck, ex


def scp_logits(ck, ids, causal):
    """scp's logits (T, V) of ids, no shift."""
    out = os.path.join(tmp, "logits.f32")
    r = subprocess.run([DUMP] + ([] if causal else ["--bidirectional"]) + [ck, "cpu", out] + [str(i) for i in ids],
                       capture_output=True)
    if r.returncode:
        diag(r.stderr.decode())
        return None
    return np.fromfile(out, dtype="<f4").reshape(len(ids), -1)


def load_module(path):
    spec = importlib.util.spec_from_file_location("modeling_scp_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mod = None
exports = {}
for k, (name, arch, tied, flags, keys) in enumerate(MODELS):
    ck, ex = export(name, arch, tied, flags, keys, seed=20 + k)
    if not ok(ex is not None, "%s: import and export --format hf %s" % (name, " ".join(flags))):
        continue
    exports[name] = (ck, ex)
    cfg = json.load(open(os.path.join(ex, "config.json")))
    py = os.path.join(ex, "modeling_scp.py")
    same = os.path.exists(py) and open(py, "rb").read() == open(SOURCE, "rb").read()
    am = cfg.get("auto_map", {})
    ok(same and am == {"AutoConfig": "modeling_scp.SCPConfig", "AutoModel": "modeling_scp.SCPModel",
                       "AutoModelForMaskedLM": "modeling_scp.SCPForMaskedLM"} and cfg["model_type"] == arch,
       "%s: modeling_scp.py is the repository's, auto_map names its classes, model_type stays %s" % (name, arch))
    if mod is None:
        mod = load_module(py)
        diag("modeling_scp imported %s transformers" % ("with" if mod.HAVE_TRANSFORMERS else "without"))
    model = mod.SCPForMaskedLM.from_pretrained(ex).float().eval()
    causal = "--causal" in flags
    shift = "--shift" in flags
    ids = [int(t) for t in torch.randint(0, V, (23,))]
    ref = scp_logits(ck, ids, causal)
    with torch.no_grad():
        raw = model(input_ids=torch.tensor([ids]), shift_logits=False).logits[0].numpy()
        out = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    if ref is None:
        ok(False, "%s: scp's logits" % name)
        continue
    want = np.concatenate([ref[:1], ref[:-1]]) if shift else ref
    d_raw, d_out = float(np.abs(raw - ref).max()), float(np.abs(out - want).max())
    ok(d_raw <= 1e-4 and d_out <= 1e-4 and model.config.is_causal == causal and model.config.shift_logits == shift,
       "%s (%s, %s): logits equal scp's, max |diff| %.2e unshifted, %.2e as returned (shift %s)"
       % (name, "causal" if causal else "bidirectional", "tied" if tied else "untied", d_raw, d_out,
          "on" if shift else "off"))
    if name == "llama-bias-rope":
        base = mod.SCPModel.from_pretrained(ex).float().eval()   # what AutoModel loads: no LM head
        with torch.no_grad():
            h1 = base(input_ids=torch.tensor([ids])).last_hidden_state
            h2 = model.model(input_ids=torch.tensor([ids])).last_hidden_state
        ok(float((h1 - h2).abs().max()) == 0.0 and not hasattr(base, "lm_head"),
           "%s: SCPModel.from_pretrained loads the network without its head (hidden states equal)" % name)
    if name == "qwen3_moe":
        # two rows, the second right-padded: its real positions see only its real keys
        short = ids[:15]
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([short])).logits[0]
            both = model(input_ids=torch.tensor([ids, short + [0] * 8]),
                         attention_mask=torch.tensor([[1] * 23, [1] * 15 + [0] * 8])).logits
        d1, d0 = float((both[1, :15] - alone).abs().max()), float((both[0] - torch.from_numpy(out)).abs().max())
        ok(d1 < 1e-4 and d0 < 1e-4,
           "%s: attention_mask hides the padding keys (padded row = the row alone: %.2e, full row %.2e)"
           % (name, d1, d0))

# ---- diffusion_generate against scp-eval generate ----------------------------------------------------------------


def gen(model_dir, *args):
    r = run(["scp-eval", "generate", "-m", model_dir, "-j", "1", "--jsonl"] + [str(a) for a in args])
    if r.returncode:
        diag("generate %s: exit %d: %s" % (" ".join(map(str, args)), r.returncode, r.stderr.decode()))
        return None
    return json.loads(r.stdout.decode().splitlines()[0])


def compare(model, model_dir, what, prompt, length, gen_args, kw, suffix=None):
    """scp-eval generate's canvas against diffusion_generate's from the same start (the canvas with the filled
    positions masked again)."""
    o = gen(model_dir, "-p", prompt, "-n", length, *(["--suffix", suffix] if suffix else []), *gen_args)
    if o is None:
        return ok(False, what)
    mask = model.config.mask_token_id
    start = list(o["ids"])
    for i in o["filled"]:
        start[i] = mask
    if suffix is None:   # the prompt alone, the masks appended by diffusion_generate
        got = model.diffusion_generate(torch.tensor([start[:len(start) - length]]), length=length, **kw)
    else:
        got = model.diffusion_generate(torch.tensor([start]), **kw)
    got = got[0].tolist()
    if got != o["ids"]:
        diag("scp-eval:          %s" % o["ids"])
        diag("diffusion_generate: %s" % got)
    return ok(got == o["ids"] and mask not in got and len(o["filled"]) > 0,
              "%s: %d positions filled as scp-eval generate fills them" % (what, len(o["filled"])))


for name in ("qwen3-tied", "qwen2", "qwen3_moe"):
    if name not in exports:
        continue
    ck, ex = exports[name]
    model = mod.SCPForMaskedLM.from_pretrained(ex).float().eval()
    shift = bool(model.config.shift_logits)
    tag = "%s (shift %s)" % (name, "on" if shift else "off")
    compare(model, ex, tag + ", greedy low-confidence, 12 steps", "ab", 12, ["--steps", 12], dict(steps=12))
    compare(model, ex, tag + ", greedy margin, --block 4, 6 steps", "abab", 12,
            ["--steps", 6, "--block", 4, "--order", "margin"],
            dict(steps=6, block=4, order="margin"))
    compare(model, ex, tag + ", greedy entropy, 5 steps", "ba", 10, ["--steps", 5, "--order", "entropy"],
            dict(steps=5, order="entropy"))
    if name == "qwen3-tied":
        compare(model, ex, tag + ", --no-shift on a shifted export", "ab", 8, ["--steps", 4, "--no-shift"],
                dict(steps=4, shift=False))
        compare(model, ex, tag + ", temperature 0.8, top-k 6, top-p 0.9, seed 5", "ab", 12,
                ["--steps", 6, "--temperature", 0.8, "--top-k", 6, "--top-p", 0.9, "-s", 5],
                dict(steps=6, temperature=0.8, top_k=6, top_p=0.9, seed=5))
        compare(model, ex, tag + ", random order, temperature 1, --block 5, seed 9", "b", 12,
                ["--steps", 6, "--order", "random", "--temperature", 1, "--block", 5, "-s", 9],
                dict(steps=6, order="random", temperature=1.0, block=5, seed=9))
        compare(model, ex, tag + ", infill (masks in the prompt)", "ab<|mask|><|mask|>ab<|mask|>a", 0,
                ["--steps", 2, "--temperature", 1, "-s", 2], dict(steps=2, temperature=1.0, seed=2))
        compare(model, ex, tag + ", infill (a suffix)", "a", 5, ["--steps", 5], dict(steps=5), suffix="ab")
        # --at-eos fill: a copy naming as EOS a token of the greedy canvas, so that an EOS is committed
        o = gen(ex, "-p", "ab", "-n", 16, "--steps", 16, "--at-eos", "ignore")
        if o:
            tok_e = o["ids"][o["prompt_tokens"] + 5]
            ex2 = os.path.join(tmp, name + "-eos")
            shutil.copytree(ex, ex2)
            c2 = json.load(open(os.path.join(ex2, "config.json")))
            c2["eos_token_id"] = tok_e
            json.dump(c2, open(os.path.join(ex2, "config.json"), "w"))
            compare(model, ex2, tag + ", --at-eos fill (EOS %d)" % tok_e, "ab", 16, ["--steps", 16, "--at-eos", "fill"],
                    dict(steps=16, at_eos="fill", eos_token_id=tok_e))

# ---- ar_generate against scp-eval generate --mode ar (the causal exports) -----------------------------------------
for name in ("llama-tied-causal", "qwen3-causal"):
    if name not in exports:
        continue
    ck, ex = exports[name]
    model = mod.SCPForMaskedLM.from_pretrained(ex).float().eval()
    for args, kw in ((["--at-eos", "ignore"], dict(at_eos="ignore")),
                     (["--temperature", 0.9, "--top-k", 8, "--top-p", 0.95, "-s", 4, "--at-eos", "ignore"],
                      dict(temperature=0.9, top_k=8, top_p=0.95, seed=4, at_eos="ignore"))):
        o = gen(ex, "-p", "abab", "-n", 10, *args)
        if o is None:
            ok(False, "%s: scp-eval generate --mode ar %s" % (name, " ".join(map(str, args))))
            continue
        got = model.ar_generate(torch.tensor(o["ids"][:o["prompt_tokens"]]), length=10, **kw)[0].tolist()
        ok(o["mode"] == "ar" and got == o["ids"] and len(got) == o["prompt_tokens"] + 10,
           "%s: ar_generate continues as scp-eval generate does (%s)" % (name, " ".join(map(str, args))))

# ---- transformers: AutoModel with trust_remote_code ------------------------------------------------------------
if transformers is None:
    diag("transformers is not installed: the AutoConfig / AutoModel / AutoModelForMaskedLM checks are skipped")
    ok(True, "AutoConfig, AutoModel, AutoModelForMaskedLM with trust_remote_code # SKIP transformers is not installed")
else:
    import logging
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM
    diag("transformers %s" % transformers.__version__)

    class Warnings(logging.Handler):
        """transformers' warnings while an export loads: a weight left at its initial values, an unused key, a
        config it does not understand."""
        def __init__(self):
            super().__init__(logging.WARNING)
            self.seen = []

        def emit(self, record):
            self.seen.append(record.getMessage())
    warned = Warnings()
    logging.getLogger("transformers").addHandler(warned)
    for name, (ck, ex) in exports.items():
        try:
            del warned.seen[:]
            cfg = AutoConfig.from_pretrained(ex, trust_remote_code=True)
            model = AutoModelForMaskedLM.from_pretrained(ex, trust_remote_code=True, torch_dtype=torch.float32).eval()
            base = AutoModel.from_pretrained(ex, trust_remote_code=True, torch_dtype=torch.float32).eval()
            ok(not warned.seen, "%s: AutoConfig, AutoModelForMaskedLM and AutoModel load it without a warning" % name)
            for w in warned.seen[:5]:
                diag("  " + w.splitlines()[0])
            ids = [int(t) for t in torch.randint(0, V, (19,))]
            ref = scp_logits(ck, ids, bool(cfg.is_causal))
            with torch.no_grad():
                raw = model(input_ids=torch.tensor([ids]), shift_logits=False).logits[0].numpy()
                h1 = model.model(input_ids=torch.tensor([ids])).last_hidden_state
                h2 = base(input_ids=torch.tensor([ids])).last_hidden_state
            d = float(np.abs(raw - ref).max())
            ok(type(cfg).__name__ == "SCPConfig" and type(model).__name__ == "SCPForMaskedLM" and d <= 1e-4 and
               float((h1 - h2).abs().max()) == 0.0,
               "%s: AutoModelForMaskedLM (trust_remote_code) logits equal scp's (%.2e), AutoModel's hidden states "
               "equal its base model's" % (name, d))
        except Exception as e:   # noqa: BLE001
            ok(False, "%s: transformers: %r" % (name, e))
    if "qwen3-tied" in exports:
        ck, ex = exports["qwen3-tied"]
        model = AutoModelForMaskedLM.from_pretrained(ex, trust_remote_code=True, torch_dtype=torch.float32).eval()
        compare(model, ex, "qwen3-tied through AutoModelForMaskedLM, greedy, --block 4", "ab", 12,
                ["--steps", 6, "--block", 4], dict(steps=6, block=4))
    # a model saved by transformers (after a fine-tune there, say) loads again and comes back to scp unchanged
    for name in ("qwen3-tied", "qwen3_moe"):
        if name not in exports:
            continue
        ck, ex = exports[name]
        saved, ck2 = os.path.join(tmp, name + "-saved"), os.path.join(tmp, name + "-back")
        try:
            model = AutoModelForMaskedLM.from_pretrained(ex, trust_remote_code=True, torch_dtype=torch.float32).eval()
            model.save_pretrained(saved)
            again = AutoModelForMaskedLM.from_pretrained(saved, trust_remote_code=True,
                                                         torch_dtype=torch.float32).eval()
            r = run(["scp-import", "-q", saved, "-o", ck2])
            ids = [int(t) for t in torch.randint(0, V, (17,))]
            causal = bool(model.config.is_causal)
            with torch.no_grad():
                x = model(input_ids=torch.tensor([ids])).logits
                y = again(input_ids=torch.tensor([ids])).logits
            a, b = scp_logits(ck, ids, causal), scp_logits(ck2, ids, causal) if r.returncode == 0 else None
            ok(torch.equal(x, y) and b is not None and np.array_equal(a, b) and
               sorted(os.listdir(saved)) == ["config.json", "model.safetensors", "modeling_scp.py"],
               "%s: save_pretrained, then AutoModelForMaskedLM and scp-import of what it wrote: the same logits, "
               "bit for bit" % name)
        except Exception as e:   # noqa: BLE001
            ok(False, "%s: save_pretrained: %r" % (name, e))
done()
