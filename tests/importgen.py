"""importgen.py: small random source models for the scp-import tests, written here without scp: safetensors
(by hand), Hugging Face directories (single file or sharded), GGUF v3 files (llama.cpp names and layouts) and
llama2.c checkpoints, plus an independent safetensors reader."""
import json
import os
import struct

import numpy as np

DT = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2), "I32": ("<i4", 4)}


def write_st(path, tensors, metadata=None):
    """tensors: name -> (dtype, shape, bytes). Header written by hand, offsets in name order."""
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        dt, shape, data = tensors[name]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    return {k: (v["dtype"], tuple(v["shape"]), d[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}


def to_f32(t):
    dt, shape, data = t
    if dt == "F32":
        return np.frombuffer(data, "<f4").reshape(shape)
    if dt == "F16":
        return np.frombuffer(data, "<f2").astype(np.float32).reshape(shape)
    if dt == "BF16":
        u = np.frombuffer(data, "<u2").astype(np.uint32) << 16
        return u.view(np.float32).reshape(shape)
    raise ValueError(dt)


def hf_params(c):
    """HF tensor names and shapes of a config (written from the transformers modeling files' layouts)."""
    D, L, H = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"]
    KV = c.get("num_key_value_heads", H)
    hd = c.get("head_dim", D // H)
    V = c["vocab_size"]
    mt = c["model_type"]
    p = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not c.get("tie_word_embeddings", False):
        p["lm_head.weight"] = (V, D)
    for l in range(L):
        a = "model.layers.%d." % l
        p[a + "input_layernorm.weight"] = (D,)
        p[a + "post_attention_layernorm.weight"] = (D,)
        p[a + "self_attn.q_proj.weight"] = (H * hd, D)
        p[a + "self_attn.k_proj.weight"] = (KV * hd, D)
        p[a + "self_attn.v_proj.weight"] = (KV * hd, D)
        p[a + "self_attn.o_proj.weight"] = (D, H * hd)
        if mt == "qwen2":
            p[a + "self_attn.q_proj.bias"] = (H * hd,)
            p[a + "self_attn.k_proj.bias"] = (KV * hd,)
            p[a + "self_attn.v_proj.bias"] = (KV * hd,)
        if mt in ("qwen3", "qwen3_moe"):
            p[a + "self_attn.q_norm.weight"] = (hd,)
            p[a + "self_attn.k_norm.weight"] = (hd,)
        if mt == "qwen3_moe":
            E, I = c["num_experts"], c["moe_intermediate_size"]
            p[a + "mlp.gate.weight"] = (E, D)
            for e in range(E):
                p[a + "mlp.experts.%d.gate_proj.weight" % e] = (I, D)
                p[a + "mlp.experts.%d.up_proj.weight" % e] = (I, D)
                p[a + "mlp.experts.%d.down_proj.weight" % e] = (D, I)
        else:
            I = c["intermediate_size"]
            p[a + "mlp.gate_proj.weight"] = (I, D)
            p[a + "mlp.up_proj.weight"] = (I, D)
            p[a + "mlp.down_proj.weight"] = (D, I)
    return p


def config(arch, tied=False, vocab=40, **kw):
    c = {"model_type": arch, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": vocab, "intermediate_size": 24, "rms_norm_eps": 1e-6,
         "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": tied,
         "architectures": ["X"], "bos_token_id": 1, "eos_token_id": 2}
    if arch in ("qwen3", "qwen3_moe"):
        c["head_dim"] = 8   # explicit and != hidden/heads, as Qwen3 does
    if arch == "qwen3_moe":
        c.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=12, norm_topk_prob=True)
    c.update(kw)
    return c


def random_tensors(c, dtype, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in hf_params(c).items():
        x = rng.standard_normal(shape).astype(np.float32)
        if dtype == "F32":
            b = x.astype("<f4").tobytes()
        elif dtype == "F16":
            b = x.astype("<f2").tobytes()
        else:   # BF16: the upper halves of random f32 values (every such pattern is a valid bf16 here)
            b = (x.view(np.uint32) >> 16).astype("<u2").tobytes()
        out[name] = (dtype, shape, b)
    return out


def byte_chars():
    """GPT-2's byte-to-character map of byte-level BPE: byte b is the character bc[b]."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def tokenizer_files(d, n_tokens):
    """A small byte-level BPE tokenizer.json with n_tokens ids: vocab 0..n-3, added tokens n-2, n-1."""
    words = ["a", "b", "ab"] + ["t%d" % i for i in range(n_tokens - 5)]
    vocab = {w: i for i, w in enumerate(words)}
    tj = {"version": "1.0", "truncation": None, "padding": None,
          "added_tokens": [{"id": n_tokens - 2, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                            "rstrip": False, "normalized": False, "special": True},
                           {"id": n_tokens - 1, "content": "<|im_start|>", "single_word": False, "lstrip": False,
                            "rstrip": False, "normalized": False, "special": True}],
          "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
          "model": {"type": "BPE", "vocab": vocab, "merges": ["a b"]}}
    json.dump(tj, open(os.path.join(d, "tokenizer.json"), "w"), indent=1)
    tc = {"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|endoftext|>",
          "added_tokens_decoder": {str(n_tokens - 2): {"content": "<|endoftext|>", "special": True}}}
    json.dump(tc, open(os.path.join(d, "tokenizer_config.json"), "w"))
    open(os.path.join(d, "special_tokens_map.json"), "w").write('{"eos_token": "<|endoftext|>"}\n')


def make_hf(d, c, dtype="F32", shards=1, seed=0, n_tokens=None, tensors=None):
    """An HF model directory; returns the tensors written."""
    os.makedirs(d, exist_ok=True)
    json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2)
    t = tensors if tensors is not None else random_tensors(c, dtype, seed)
    if shards == 1:
        write_st(os.path.join(d, "model.safetensors"), t, {"format": "pt"})
    else:
        names = sorted(t)
        wm = {}
        for s in range(shards):
            fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
            part = {n: t[n] for n in names[s::shards]}
            write_st(os.path.join(d, fn), part, {"format": "pt"})
            wm.update({n: fn for n in part})
        json.dump({"metadata": {}, "weight_map": wm}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    tokenizer_files(d, n_tokens if n_tokens is not None else c["vocab_size"])
    return t


# ---- GGUF -------------------------------------------------------------------------------------------------
GGUF_ARCH = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen3_moe": "qwen3moe"}
GGML = {"F32": 0, "F16": 1, "BF16": 30}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gkv(key, typ, val):
    out = gstr(key) + struct.pack("<I", typ)
    fmt = {0: "B", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q"}
    if typ == 8:
        return out + gstr(val)
    if typ == 9:
        et, items = val
        out += struct.pack("<IQ", et, len(items))
        return out + b"".join(gstr(x) if et == 8 else struct.pack("<" + fmt[et], x) for x in items)
    return out + struct.pack("<" + fmt[typ], val)


def write_gguf(path, kvs, tensors, version=3, align=32, n_tensors=None, n_kv=None):
    """kvs: list of (key, type, value); tensors: list of (name, ggml_type, ne list, bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    head += b"".join(gkv(*kv) for kv in kvs)
    off, infos, datas = 0, b"", []
    for name, ty, ne, data in tensors:
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", ty, off)
        pad = (align - len(data) % align) % align
        datas.append(data + b"\0" * pad)
        off += len(data) + pad
    head += infos
    head += b"\0" * ((align - len(head) % align) % align)
    open(path, "wb").write(head + b"".join(datas))


def meta_permute(w, n_head):
    """HF half-split -> Meta interleaved (llama.cpp convert_hf_to_gguf's LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_to_gguf(path, c, t, n_tokens=None, extra_kv=(), drop=(), rename=None, extra_tensors=(), tokens=None, tok_model="llama"):
    """The GGUF llama.cpp's converter would write for an HF model (llama q/k permuted to interleaved pairs)."""
    arch = GGUF_ARCH[c["model_type"]]
    H, KV = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    kvs = [("general.architecture", 8, arch), ("%s.embedding_length" % arch, 4, c["hidden_size"]),
           ("%s.block_count" % arch, 4, c["num_hidden_layers"]), ("%s.attention.head_count" % arch, 4, H),
           ("%s.attention.head_count_kv" % arch, 4, KV), ("%s.context_length" % arch, 4, c["max_position_embeddings"]),
           ("%s.rope.freq_base" % arch, 6, c["rope_theta"]),
           ("%s.attention.layer_norm_rms_epsilon" % arch, 6, c["rms_norm_eps"])]
    if "head_dim" in c:
        kvs.append(("%s.attention.key_length" % arch, 4, c["head_dim"]))
        kvs.append(("%s.attention.value_length" % arch, 4, c["head_dim"]))
    if arch == "qwen3moe":
        kvs += [("%s.expert_count" % arch, 4, c["num_experts"]), ("%s.expert_used_count" % arch, 4, c["num_experts_per_tok"]),
                ("%s.expert_feed_forward_length" % arch, 4, c["moe_intermediate_size"])]
    else:
        kvs.append(("%s.feed_forward_length" % arch, 4, c["intermediate_size"]))
    if tokens is None:
        n = n_tokens or c["vocab_size"]
        toks = ["<unk>", "<s>", "</s>"] + ["\u2581w%d" % i for i in range(n - 3)]
        types = [2, 3, 3] + [1] * (n - 3)
    else:
        toks, types = tokens
    kvs += [("tokenizer.ggml.model", 8, tok_model), ("tokenizer.ggml.tokens", 9, (8, toks)),
            ("tokenizer.ggml.token_type", 9, (5, types)),
            ("tokenizer.ggml.bos_token_id", 4, c.get("bos_token_id", 1)), ("tokenizer.ggml.eos_token_id", 4, c.get("eos_token_id", 2))]
    if tok_model == "llama":
        kvs += [("tokenizer.ggml.scores", 9, (6, [-float(i) for i in range(len(toks))])),
                ("tokenizer.ggml.unknown_token_id", 4, 0)]
    kvs += list(extra_kv)
    names = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
             "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
             "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
             "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
             "self_attn.v_proj.bias": "attn_v.bias", "self_attn.q_norm.weight": "attn_q_norm.weight",
             "self_attn.k_norm.weight": "attn_k_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
             "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
             "mlp.gate.weight": "ffn_gate_inp.weight"}
    out = []
    dt = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}

    def arrof(name):
        d, shape, b = t[name]
        return d, np.frombuffer(b, dt[d]).reshape(shape)

    for name in sorted(t):
        d, a = arrof(name)
        if name == "model.embed_tokens.weight":
            g = "token_embd.weight"
        elif name == "model.norm.weight":
            g = "output_norm.weight"
        elif name == "lm_head.weight":
            g = "output.weight"
        else:
            parts = name.split(".")
            l, rest = int(parts[2]), ".".join(parts[3:])
            if rest.startswith("mlp.experts."):
                e, kind = int(parts[5]), parts[6]
                if e != 0:
                    continue
                E = c["num_experts"]
                stack = np.stack([arrof("model.layers.%d.mlp.experts.%d.%s.weight" % (l, k, kind))[1] for k in range(E)])
                g = "blk.%d.ffn_%s_exps.weight" % (l, kind.split("_")[0])
                out.append((g, GGML[d], list(reversed(stack.shape)), stack.tobytes()))
                continue
            g = "blk.%d.%s" % (l, names[rest])
            if arch == "llama" and rest in ("self_attn.q_proj.weight", "self_attn.k_proj.weight"):
                a = meta_permute(a, H if "q_proj" in rest else KV)
        if g in drop:
            continue
        if rename and g in rename:
            g = rename[g]
        out.append((g, GGML[d], list(reversed(a.shape)), np.ascontiguousarray(a).tobytes()))
    write_gguf(path, kvs, out + list(extra_tensors))


def hf_to_llama2c(path, c, t, version=0):
    """A llama2.c checkpoint (export.py legacy_export / version1_export) of an F32 llama HF model."""
    H, KV, L = c["num_attention_heads"], c["num_key_value_heads"], c["num_hidden_layers"]
    D, I, V, S = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["max_position_embeddings"]
    hd = D // H
    shared = c.get("tie_word_embeddings", False)
    f = lambda n: np.frombuffer(t[n][2], "<f4").reshape(t[n][1])  # noqa: E731
    lay = lambda k: [f("model.layers.%d.%s" % (l, k)) for l in range(L)]  # noqa: E731
    wq = [meta_permute(x, H) for x in lay("self_attn.q_proj.weight")]
    wk = [meta_permute(x, KV) for x in lay("self_attn.k_proj.weight")]
    if version == 0:
        hdr = struct.pack("<7i", D, I, L, H, KV, V if shared else -V, S)
        ws = [f("model.embed_tokens.weight"), *lay("input_layernorm.weight"), *wq, *wk, *lay("self_attn.v_proj.weight"),
              *lay("self_attn.o_proj.weight"), *lay("post_attention_layernorm.weight"), *lay("mlp.gate_proj.weight"),
              *lay("mlp.down_proj.weight"), *lay("mlp.up_proj.weight"), f("model.norm.weight"),
              np.zeros((S, hd // 2), np.float32), np.zeros((S, hd // 2), np.float32)]
    else:
        hdr = struct.pack("<Ii7iB", 0x616B3432, 1, D, I, L, H, KV, V, S, int(shared))
        hdr += b"\0" * (256 - len(hdr))
        ws = [*lay("input_layernorm.weight"), *lay("post_attention_layernorm.weight"), f("model.norm.weight"),
              f("model.embed_tokens.weight"), *wq, *wk, *lay("self_attn.v_proj.weight"), *lay("self_attn.o_proj.weight"),
              *lay("mlp.gate_proj.weight"), *lay("mlp.down_proj.weight"), *lay("mlp.up_proj.weight")]
    if not shared:
        ws.append(f("lm_head.weight"))
    open(path, "wb").write(hdr + b"".join(np.ascontiguousarray(w, "<f4").tobytes() for w in ws))


def llama2c_tokenizer(path, n):
    toks = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b" w%d" % i for i in range(n - 3)]
    out = struct.pack("<I", max(len(x) for x in toks))
    for i, x in enumerate(toks):
        out += struct.pack("<fI", -float(i), len(x)) + x
    open(path, "wb").write(out)


def seeds(st_dir, gguf_dir, import_dir=None):
    """Seed corpora for the fuzz targets: small valid safetensors and GGUF files of every architecture, and for
    the importer GGUF and llama2.c (legacy and version 1) files."""
    for i, arch in enumerate(("llama", "qwen2", "qwen3", "qwen3_moe")):
        c = config(arch, tied=bool(i % 2), hidden_size=8, num_attention_heads=2, num_key_value_heads=1, vocab_size=12,
                   intermediate_size=8, num_hidden_layers=1, **({"head_dim": 4} if arch.startswith("qwen3") else {}))
        if arch == "qwen3_moe":
            c.update(num_experts=2, num_experts_per_tok=1, moe_intermediate_size=4)
        for dt in ("F32", "BF16"):
            t = random_tensors(c, dt, i)
            write_st(os.path.join(st_dir, "%s-%s.safetensors" % (arch, dt)), t, {"format": "pt"})
            hf_to_gguf(os.path.join(gguf_dir, "%s-%s.gguf" % (arch, dt)), c, t, n_tokens=12)
            if import_dir:
                hf_to_gguf(os.path.join(import_dir, "%s-%s.gguf" % (arch, dt)), c, t, n_tokens=10)
                if arch == "llama" and dt == "F32":
                    for v in (0, 1):
                        hf_to_llama2c(os.path.join(import_dir, "llama2c-v%d.bin" % v), dict(c, max_position_embeddings=4), t, v)


if __name__ == "__main__":
    import sys
    if len(sys.argv) in (4, 5) and sys.argv[1] == "seeds":
        seeds(*sys.argv[2:])
    else:
        sys.exit("usage: importgen.py seeds ST_DIR GGUF_DIR [IMPORT_DIR]")
