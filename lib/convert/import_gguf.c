/* convert/import_gguf.c: a GGUF v2/v3 file (llama.cpp) with F32, F16 or BF16 tensors and its embedded vocabulary.
 *
 * Architectures: general.architecture llama, qwen2, qwen3, qwen3moe. Tensor names (llama.cpp): token_embd,
 * blk.N.attn_norm, attn_q, attn_k, attn_v, attn_output (+ .bias for qwen2), attn_q_norm, attn_k_norm (qwen3),
 * ffn_norm, ffn_gate, ffn_up, ffn_down, or ffn_gate_inp (router) and ffn_gate_exps, ffn_up_exps,
 * ffn_down_exps (experts stacked: ne = {cols, rows, experts}), output_norm, output. A matrix with ne = {cols,
 * rows} is the row-major (rows, cols) HF matrix. llama.cpp's converter permutes q and k of the llama
 * architecture to interleaved RoPE pairs (its "normal" RoPE); qwen2/qwen3 keep HF's half-split (NeoX) order,
 * so only llama is permuted back. */
#include "convert/import.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *gguf, *hf; scp_arch arch; } archs[] = {
    {"llama", "llama", SCP_ARCH_LLAMA}, {"qwen2", "qwen2", SCP_ARCH_QWEN2},
    {"qwen3", "qwen3", SCP_ARCH_QWEN3}, {"qwen3moe", "qwen3_moe", SCP_ARCH_QWEN3_MOE},
    /* llama.cpp's diffusion architectures (scp-export writes them): LLaDA has the Llama layout, Dream Qwen2's,
     * RND1 Qwen3-MoE's. */
    {"llada", "llama", SCP_ARCH_LLAMA}, {"dream", "qwen2", SCP_ARCH_QWEN2}, {"rnd1", "qwen3_moe", SCP_ARCH_QWEN3_MOE},
};

static scp_dtype dtype_of(uint32_t ggml_type)
{
    switch (ggml_type) {
    case SCP_GGML_F32: return SCP_F32;
    case SCP_GGML_F16: return SCP_F16;
    case SCP_GGML_BF16: return SCP_BF16;
    default: return SCP_DTYPE_INVALID;
    }
}

/* A required or optional unsigned metadata value that fits an int. */
static int meta_int(const scp_gguf *g, const char *arch, const char *key, int required, int *out, const char *what)
{
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    uint64_t v;
    int rc = scp_gguf_get_uint(g, k, INT32_MAX, &v, what);
    if (rc < 0) return -1;
    if (rc == 1) {
        if (required) return scp_error("%s: metadata '%s' is missing", what, k);
        return 0;
    }
    *out = (int)v;
    return 0;
}

/* head_count_kv may be one number or one per layer (all equal for the models we run). */
static int meta_kv_heads(const scp_gguf *g, const char *arch, int *out, const char *what)
{
    char k[160];
    snprintf(k, sizeof k, "%s.attention.head_count_kv", arch);
    const scp_gguf_kv *kv = scp_gguf_find(g, k);
    if (kv && kv->type == SCP_GGUF_ARRAY) {
        if (kv->arr_n == 0 || kv->arr_type == SCP_GGUF_STRING || kv->arr_type == SCP_GGUF_BOOL)
            return scp_error("%s: metadata '%s' is not a list of integers", what, k);
        double first = scp_gguf_arr_num(kv, 0);
        for (uint64_t i = 1; i < kv->arr_n; i++)
            if (scp_gguf_arr_num(kv, i) != first) return scp_error("%s: metadata '%s' differs between layers (not supported)", what, k);
        if (!(first >= 1 && first <= INT32_MAX)) return scp_error("%s: metadata '%s' is out of range", what, k);
        *out = (int)first;
        return 0;
    }
    return meta_int(g, arch, "attention.head_count_kv", 0, out, what);
}

static int read_config(scp_import *im, const char *arch_gguf, scp_arch arch, const char *path)
{
    const scp_gguf *g = &im->gguf;
    int D = 0, L = 0, I = 0, H = 0, KV = -1, hd = -1, vd = -1, rope_dim = -1, ctx = 2048, E = 0, EU = 0, EI = 0;
    if (meta_int(g, arch_gguf, "embedding_length", 1, &D, path) || meta_int(g, arch_gguf, "block_count", 1, &L, path) ||
        meta_int(g, arch_gguf, "feed_forward_length", arch != SCP_ARCH_QWEN3_MOE, &I, path) ||
        meta_int(g, arch_gguf, "attention.head_count", 1, &H, path) || meta_kv_heads(g, arch_gguf, &KV, path) ||
        meta_int(g, arch_gguf, "attention.key_length", 0, &hd, path) || meta_int(g, arch_gguf, "attention.value_length", 0, &vd, path) ||
        meta_int(g, arch_gguf, "rope.dimension_count", 0, &rope_dim, path) || meta_int(g, arch_gguf, "context_length", 0, &ctx, path) ||
        meta_int(g, arch_gguf, "expert_count", arch == SCP_ARCH_QWEN3_MOE, &E, path) ||
        meta_int(g, arch_gguf, "expert_used_count", arch == SCP_ARCH_QWEN3_MOE, &EU, path) ||
        meta_int(g, arch_gguf, "expert_feed_forward_length", arch == SCP_ARCH_QWEN3_MOE, &EI, path))
        return -1;
    if (H < 1 || D < 1) return scp_error("%s: embedding_length and attention.head_count must be positive", path);
    if (hd < 0) hd = D / H;
    if (vd >= 0 && vd != hd) return scp_error("%s: attention.value_length %d differs from key_length %d (not supported)", path, vd, hd);
    if (rope_dim >= 0 && rope_dim != hd)
        return scp_error("%s: rope.dimension_count %d is not the head size %d (partial RoPE is not supported)", path, rope_dim, hd);
    char k[160], *s = NULL;
    snprintf(k, sizeof k, "%s.rope.scaling.type", arch_gguf);
    int rc = scp_gguf_get_str(g, k, &s, path);
    if (rc < 0) return -1;
    if (rc == 0 && strcmp(s, "none") != 0) {
        rc = scp_error("%s: %s = '%s' is not supported", path, k, s);
        free(s);
        return rc;
    }
    free(s);
    if (scp_gguf_find_tensor(g, "rope_freqs.weight"))
        return scp_error("%s: tensor 'rope_freqs.weight' (Llama 3.1 RoPE scaling in GGUF) is not supported; import the HF directory", path);
    double eps = 1e-6, theta = 10000;
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch_gguf);
    if (scp_gguf_get_real(g, k, &eps, path) < 0) return -1;
    snprintf(k, sizeof k, "%s.rope.freq_base", arch_gguf);
    if (scp_gguf_get_real(g, k, &theta, path) < 0) return -1;

    const scp_gguf_tensor *emb = scp_gguf_find_tensor(g, "token_embd.weight"), *out = scp_gguf_find_tensor(g, "output.weight");
    if (!emb) return scp_error("%s: tensor 'token_embd.weight' is missing", path);
    if (emb->ndim != 2 || emb->ne[1] > INT32_MAX) return scp_error("%s: tensor 'token_embd.weight' is not a (vocab, hidden) matrix", path);
    /* A separate output matrix that is byte-identical to the embedding is a tied model written out twice. */
    int tied = !out || (out->type == emb->type && out->nbytes == emb->nbytes && out->ndim == emb->ndim &&
                        out->ne[0] == emb->ne[0] && out->ne[1] == emb->ne[1] && memcmp(out->data, emb->data, emb->nbytes) == 0);
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b}", "model_type", scp_arch_name(arch), "hidden_size", D,
                          "num_hidden_layers", L, "num_attention_heads", H, "head_dim", hd, "vocab_size", (int)emb->ne[1],
                          "max_position_embeddings", ctx, "rms_norm_eps", eps, "rope_theta", theta, "tie_word_embeddings", tied);
    if (I) json_object_set_new(j, "intermediate_size", json_integer(I));
    if (KV > 0) json_object_set_new(j, "num_key_value_heads", json_integer(KV));
    if (arch == SCP_ARCH_QWEN3_MOE) {
        json_object_set_new(j, "num_experts", json_integer(E));
        json_object_set_new(j, "num_experts_per_tok", json_integer(EU));
        json_object_set_new(j, "moe_intermediate_size", json_integer(EI));
        json_object_set_new(j, "norm_topk_prob", json_true());   /* Qwen3-MoE; llama.cpp normalises its top-k weights */
    }
    uint64_t id;
    static const char *ids[][2] = {{"tokenizer.ggml.bos_token_id", "bos_token_id"}, {"tokenizer.ggml.eos_token_id", "eos_token_id"},
                                   {"tokenizer.ggml.padding_token_id", "pad_token_id"}};
    for (int i = 0; i < 3; i++) {
        /* llama.cpp writes 0xffffffff for "none" */
        rc = scp_gguf_get_uint(g, ids[i][0], UINT64_MAX, &id, path);
        if (rc < 0) {
            json_decref(j);
            return -1;
        }
        if (rc == 0 && id < emb->ne[1]) json_object_set_new(j, ids[i][1], json_integer((json_int_t)id));
    }
    /* Diffusion metadata: the mask token, non-causal attention, logit shift (absent: llama.cpp's defaults). */
    rc = scp_gguf_get_uint(g, "tokenizer.ggml.mask_token_id", UINT64_MAX, &id, path);
    if (rc < 0) {
        json_decref(j);
        return -1;
    }
    if (rc == 0 && id < emb->ne[1]) json_object_set_new(j, "mask_token_id", json_integer((json_int_t)id));
    const scp_gguf_kv *kb;
    snprintf(k, sizeof k, "%s.attention.causal", arch_gguf);
    if ((kb = scp_gguf_find(g, k)) && kb->type == SCP_GGUF_BOOL) json_object_set_new(j, "is_causal", json_boolean(kb->v.u != 0));
    if ((kb = scp_gguf_find(g, "diffusion.shift_logits")) && kb->type == SCP_GGUF_BOOL)
        json_object_set_new(j, "shift_logits", json_boolean(kb->v.u != 0));
    rc = scp_config_from_json(&im->cfg, j, path);
    json_decref(j);
    return rc;
}

static int read_tensors(scp_import *im, const char *path)
{
    const scp_gguf *g = &im->gguf;
    scp_param_desc *d;
    if (im->cfg.num_layers > 4096 || im->cfg.num_experts > 4096) return scp_error("%s: block_count or expert_count is implausibly large", path);
    int nd = scp_param_table(&im->cfg, &d);
    char *used = scp_xcalloc((size_t)g->n_tensors + 1, 1);
    int rc = 0;
    for (int k = 0; k < nd && !rc; k++) {
        char gn[128], s1[128], s2[128];
        scp_gguf_tensor_name(&d[k], gn, sizeof gn);
        const scp_gguf_tensor *t = scp_gguf_find_tensor(g, gn);
        if (!t) {
            rc = scp_error("%s: tensor '%s' is missing (the metadata says a %s model has it)", path, gn, scp_arch_name(im->cfg.arch));
            break;
        }
        used[t - g->t] = 1;
        scp_dtype dt = dtype_of(t->type);
        if (dt == SCP_DTYPE_INVALID) {
            rc = scp_error("%s: tensor '%s' has ggml type %s (supported: F32, F16, BF16)", path, gn, scp_ggml_type_name(t->type));
            break;
        }
        /* Expected in row-major order: (rows, cols), or (experts, rows, cols) for stacked experts. */
        int expert = d[k].expert >= 0;
        int64_t want[3], have[3];
        int wn = 0, hn = t->ndim;
        if (expert) want[wn++] = im->cfg.num_experts;
        want[wn++] = d[k].shape[0];
        if (d[k].ndim == 2) want[wn++] = d[k].shape[1];
        for (int i = 0; i < hn && i < 3; i++) have[i] = (int64_t)t->ne[hn - 1 - i];
        int same = hn == wn;
        for (int i = 0; same && i < wn; i++) same = have[i] == want[i];
        if (!same) {
            rc = scp_error("%s: tensor '%s' has shape %s, the metadata says %s", path, gn, scp_shape_str(s1, sizeof s1, hn > 3 ? 3 : hn, have),
                           scp_shape_str(s2, sizeof s2, wn, want));
            break;
        }
        const uint8_t *data = t->data;
        if (expert) data += (size_t)d[k].expert * (size_t)d[k].numel * scp_dtype_size(dt);
        scp_import_add(im, d[k].name, path, gn, dt, d[k].ndim, d[k].shape, data);
    }
    const scp_gguf_tensor *out = scp_gguf_find_tensor(g, "output.weight");
    if (out && im->cfg.tie_word_embeddings) used[out - g->t] = 1;   /* the duplicate of token_embd */
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++)
        if (!used[i]) rc = scp_error("%s: tensor '%s' is not part of a %s model", path, g->t[i].name, scp_arch_name(im->cfg.arch));
    free(used);
    free(d);
    return rc;
}

/* Strings become JSON: they must be UTF-8 without NUL. */
static int utf8_ok(const scp_gguf_str *s)
{
    if (memchr(s->s, 0, (size_t)s->len)) return 0;
    json_t *j = json_stringn(s->s, (size_t)s->len);
    if (!j) return 0;
    json_decref(j);
    return 1;
}

/* tokenizer.ggml.model == "llama": write llama2.c's tokenizer.bin as its export does: BOS and EOS spelled
 * "\n<s>\n" and "\n</s>\n", U+2581 (SentencePiece's space) turned into ' '. */
static int llama_vocab(scp_import *im, const scp_gguf_kv *tokens, const scp_gguf_kv *scores, const char *path)
{
    int64_t bos = -1, eos = -1, unk = -1;
    uint64_t v;
    if (scp_gguf_get_uint(&im->gguf, "tokenizer.ggml.bos_token_id", UINT64_MAX, &v, path) == 0 && v < tokens->arr_n) bos = (int64_t)v;
    if (scp_gguf_get_uint(&im->gguf, "tokenizer.ggml.eos_token_id", UINT64_MAX, &v, path) == 0 && v < tokens->arr_n) eos = (int64_t)v;
    if (scp_gguf_get_uint(&im->gguf, "tokenizer.ggml.unknown_token_id", UINT64_MAX, &v, path) == 0 && v < tokens->arr_n) unk = (int64_t)v;
    size_t cap = 4, n = 4;
    for (uint64_t i = 0; i < tokens->arr_n; i++) cap += 8 + (size_t)tokens->arr_str[i].len + 8;
    uint8_t *b = scp_xmalloc(cap);
    uint32_t maxlen = 0;
    for (uint64_t i = 0; i < tokens->arr_n; i++) {
        const scp_gguf_str *s = &tokens->arr_str[i];
        float score = scores ? (float)scp_gguf_arr_num(scores, i) : 0.0f;
        uint8_t *len_at = b + n + 4;
        memcpy(b + n, &score, 4);
        n += 8;
        size_t start = n;
        if ((int64_t)i == bos || (int64_t)i == eos) {
            const char *t = (int64_t)i == bos ? "\n<s>\n" : "\n</s>\n";
            memcpy(b + n, t, strlen(t));
            n += strlen(t);
        } else {
            for (uint64_t k = 0; k < s->len; k++) {
                if (k + 2 < s->len && (uint8_t)s->s[k] == 0xe2 && (uint8_t)s->s[k + 1] == 0x96 && (uint8_t)s->s[k + 2] == 0x81) {
                    b[n++] = ' ';
                    k += 2;
                } else {
                    b[n++] = (uint8_t)s->s[k];
                }
            }
        }
        uint32_t len = (uint32_t)(n - start);
        memcpy(len_at, &len, 4);
        if (len > maxlen) maxlen = len;
    }
    memcpy(b, &maxlen, 4);
    im->tok_bin = b;
    im->tok_bin_len = n;
    im->tok_form = SCP_TOK_LLAMA2C;
    char *names[3] = {NULL, NULL, NULL};
    int64_t idv[3] = {bos, eos, unk};
    for (int i = 0; i < 3; i++)
        if (idv[i] >= 0) {
            const scp_gguf_str *s = &tokens->arr_str[idv[i]];
            names[i] = scp_xmalloc((size_t)s->len + 1);
            memcpy(names[i], s->s, (size_t)s->len);
            names[i][s->len] = 0;
        }
    im->tok_config = scp_import_llama2c_tok_config(names[0], (int)bos, names[1], (int)eos, names[2], (int)unk);
    im->tok_config_dirty = 1;
    for (int i = 0; i < 3; i++) free(names[i]);
    return 0;
}

/* Pre-tokenizer regexes by tokenizer.ggml.pre (the same strings as the models' own tokenizer.json files). */
static const struct { const char *pre, *regex; int nfc; } bpe_pres[] = {
    {"qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 1},
    {"llama-bpe", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 0},
    {"gpt-2", NULL, 0},
    {"default", NULL, 0},
};

static json_t *gstr_json(const scp_gguf_str *s)
{
    return json_stringn_nocheck(s->s, (size_t)s->len);
}

/* tokenizer.ggml.model == "gpt2": a Hugging Face tokenizer.json (byte-level BPE). Tokens of type CONTROL (3)
 * become special added tokens, USER_DEFINED (4) non-special added tokens, UNUSED (5) padding is dropped,
 * the rest is the BPE vocabulary; merges "a b" become pairs. */
static int gpt2_vocab(scp_import *im, const scp_gguf_kv *tokens, const scp_gguf_kv *types, uint64_t n, const char *path)
{
    const scp_gguf *g = &im->gguf;
    const scp_gguf_kv *merges = scp_gguf_find(g, "tokenizer.ggml.merges");
    if (!merges || merges->type != SCP_GGUF_ARRAY || merges->arr_type != SCP_GGUF_STRING)
        return scp_error("%s: tokenizer.ggml.merges is missing or not a list of strings", path);
    char *pre = NULL;
    if (scp_gguf_get_str(g, "tokenizer.ggml.pre", &pre, path) < 0) return -1;
    int k = -1;
    for (int i = 0; i < (int)(sizeof bpe_pres / sizeof *bpe_pres); i++)
        if (strcmp(pre ? pre : "default", bpe_pres[i].pre) == 0) k = i;
    if (k < 0) {
        int rc = scp_error("%s: tokenizer.ggml.pre '%s' is not supported (supported: qwen2, llama-bpe, gpt-2)", path, pre);
        free(pre);
        return rc;
    }
    free(pre);
    for (uint64_t i = 0; i < tokens->arr_n; i++)
        if (!utf8_ok(&tokens->arr_str[i])) return scp_error("%s: token %llu is not valid UTF-8", path, (unsigned long long)i);
    json_t *vocab = json_object(), *added = json_array(), *dec = json_object();
    for (uint64_t i = 0; i < n; i++) {
        int type = types ? (int)scp_gguf_arr_num(types, i) : 1;
        if (type == 5) continue;
        if (type == 3 || type == 4) {
            json_array_append_new(added, json_pack("{s:I, s:o, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i, "content",
                                                   gstr_json(&tokens->arr_str[i]), "single_word", 0, "lstrip", 0, "rstrip", 0,
                                                   "normalized", 0, "special", type == 3));
            char key[32];
            snprintf(key, sizeof key, "%llu", (unsigned long long)i);
            json_object_set_new(dec, key, json_pack("{s:o, s:b, s:b, s:b, s:b, s:b}", "content", gstr_json(&tokens->arr_str[i]),
                                                    "lstrip", 0, "normalized", 0, "rstrip", 0, "single_word", 0, "special", type == 3));
        } else {
            json_object_setn_new_nocheck(vocab, tokens->arr_str[i].s, (size_t)tokens->arr_str[i].len, json_integer((json_int_t)i));
        }
    }
    json_t *ml = json_array();
    for (uint64_t i = 0; i < merges->arr_n; i++) {
        const scp_gguf_str *m = &merges->arr_str[i];
        const char *sp = memchr(m->s, ' ', (size_t)m->len);
        if (!sp || !utf8_ok(m)) {
            json_decref(vocab), json_decref(added), json_decref(dec), json_decref(ml);
            return scp_error("%s: tokenizer.ggml.merges[%llu] is not two tokens separated by a space", path, (unsigned long long)i);
        }
        json_array_append_new(ml, json_pack("[s%, s%]", m->s, (size_t)(sp - m->s), sp + 1, (size_t)(m->s + m->len - sp - 1)));
    }
    json_t *model = json_pack("{s:s, s:n, s:n, s:s, s:s, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout", "unk_token",
                              "continuing_subword_prefix", "", "end_of_word_suffix", "", "fuse_unk", 0, "byte_fallback", 0,
                              "ignore_merges", strcmp(bpe_pres[k].pre, "llama-bpe") == 0, "vocab", vocab, "merges", ml);
    json_t *pt, *post, *decoder;
    if (bpe_pres[k].regex) {
        pt = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence", "pretokenizers", "type", "Split",
                       "pattern", "Regex", bpe_pres[k].regex, "behavior", "Isolated", "invert", 0, "type", "ByteLevel",
                       "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0);
    } else {
        pt = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1);
    }
    post = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0);
    decoder = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0);
    im->tok_json = json_pack("{s:s, s:n, s:n, s:o, s:o, s:o, s:o, s:o, s:o}", "version", "1.0", "truncation", "padding", "added_tokens",
                             added, "normalizer", bpe_pres[k].nfc ? json_pack("{s:s}", "type", "NFC") : json_null(), "pre_tokenizer", pt,
                             "post_processor", post, "decoder", decoder, "model", model);
    im->tok_json_dirty = 1;
    im->tok_form = SCP_TOK_HF;
    json_t *tc = json_pack("{s:s, s:o, s:b}", "tokenizer_class", "PreTrainedTokenizerFast", "added_tokens_decoder", dec,
                           "clean_up_tokenization_spaces", 0);
    static const char *ids[][2] = {{"tokenizer.ggml.bos_token_id", "bos_token"}, {"tokenizer.ggml.eos_token_id", "eos_token"},
                                   {"tokenizer.ggml.padding_token_id", "pad_token"}, {"tokenizer.ggml.unknown_token_id", "unk_token"}};
    for (int i = 0; i < 4; i++) {
        uint64_t v;
        if (scp_gguf_get_uint(g, ids[i][0], UINT64_MAX, &v, path) == 0 && v < tokens->arr_n)
            json_object_set_new(tc, ids[i][1], gstr_json(&tokens->arr_str[v]));
    }
    const scp_gguf_kv *ab = scp_gguf_find(g, "tokenizer.ggml.add_bos_token");
    if (ab && ab->type == SCP_GGUF_BOOL) json_object_set_new(tc, "add_bos_token", json_boolean(ab->v.u));
    im->tok_config = tc;
    im->tok_config_dirty = 1;
    return 0;
}

static int read_vocab(scp_import *im, const char *path)
{
    const scp_gguf *g = &im->gguf;
    char *model = NULL;
    int rc = scp_gguf_get_str(g, "tokenizer.ggml.model", &model, path);
    if (rc < 0) return -1;
    if (rc == 1) {
        scp_warn("%s: no tokenizer.ggml.model: the checkpoint will carry no tokenizer", path);
        im->tok_vocab = im->cfg.vocab_size;
        return 0;
    }
    const scp_gguf_kv *tokens = scp_gguf_find(g, "tokenizer.ggml.tokens"), *scores = scp_gguf_find(g, "tokenizer.ggml.scores"),
                      *types = scp_gguf_find(g, "tokenizer.ggml.token_type");
    rc = 0;
    if (!tokens || tokens->type != SCP_GGUF_ARRAY || tokens->arr_type != SCP_GGUF_STRING || tokens->arr_n == 0)
        rc = scp_error("%s: tokenizer.ggml.tokens is missing or not a list of strings", path);
    else if (tokens->arr_n > (uint64_t)im->cfg.vocab_size)
        rc = scp_error("%s: tokenizer.ggml.tokens has %llu tokens, more than the %d rows of token_embd.weight", path,
                       (unsigned long long)tokens->arr_n, im->cfg.vocab_size);
    else if (scores && (scores->type != SCP_GGUF_ARRAY || scores->arr_type != SCP_GGUF_F32 || scores->arr_n != tokens->arr_n))
        rc = scp_error("%s: tokenizer.ggml.scores must be %llu f32 values", path, (unsigned long long)tokens->arr_n);
    else if (types && (types->type != SCP_GGUF_ARRAY || types->arr_n != tokens->arr_n || types->arr_type == SCP_GGUF_STRING ||
                       types->arr_type == SCP_GGUF_F32 || types->arr_type == SCP_GGUF_F64))
        rc = scp_error("%s: tokenizer.ggml.token_type must be %llu integers", path, (unsigned long long)tokens->arr_n);
    if (rc) {
        free(model);
        return -1;
    }
    /* The tokenizer's vocabulary ends at the last token that is not padding (llama.cpp's converter pads the
     * list to the embedding's rows with UNUSED (type 5) entries). */
    uint64_t n = tokens->arr_n;
    while (types && n > 1 && scp_gguf_arr_num(types, n - 1) == 5) n--;
    im->tok_vocab = (int)n;
    im->tok_what = scp_xstrdup(path);
    if (strcmp(model, "llama") == 0) rc = llama_vocab(im, tokens, scores, path);
    else if (strcmp(model, "gpt2") == 0) rc = gpt2_vocab(im, tokens, types, n, path);
    else rc = scp_error("%s: tokenizer.ggml.model '%s' is not supported (supported: llama, gpt2)", path, model);
    free(model);
    return rc;
}

int scp_import_gguf(scp_import *im, const char *path)
{
    im->source = scp_xstrdup(path);
    im->kind = "gguf";
    im->config_what = "the GGUF metadata";
    if (scp_gguf_open(&im->gguf, path)) return -1;
    char *arch_name = NULL;
    int rc = scp_gguf_get_str(&im->gguf, "general.architecture", &arch_name, path);
    if (rc) return rc < 0 ? -1 : scp_error("%s: no general.architecture", path);
    int a = -1;
    for (int i = 0; i < (int)(sizeof archs / sizeof *archs); i++)
        if (strcmp(arch_name, archs[i].gguf) == 0) a = i;
    if (a < 0) {
        rc = scp_error("%s: architecture '%s' is not supported (supported: llama, qwen2, qwen3, qwen3moe, llada, dream, rnd1)", path, arch_name);
        free(arch_name);
        return rc;
    }
    free(arch_name);
    for (uint64_t i = 0; i < im->gguf.n_tensors; i++) {
        const scp_gguf_tensor *t = &im->gguf.t[i];
        if (dtype_of(t->type) == SCP_DTYPE_INVALID)
            return scp_error("%s: tensor '%s' has ggml type %s (supported: F32, F16, BF16; quantized models cannot be trained)", path,
                             t->name, scp_ggml_type_name(t->type));
    }
    if (read_config(im, archs[a].gguf, archs[a].arch, path) || read_tensors(im, path)) return -1;
    if (archs[a].arch == SCP_ARCH_LLAMA) scp_import_unpermute_qk(im);
    return read_vocab(im, path);
}
