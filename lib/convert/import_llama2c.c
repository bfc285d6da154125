/* convert/import_llama2c.c: Karpathy's llama2.c checkpoints (export.py) with their tokenizer.bin.
 *
 * Legacy (version 0): 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
 * negative vocab_size means an untied classifier), then fp32: token embedding (V, D); attention norms (L, D);
 * wq (L, H*hd, D); wk (L, KV*hd, D); wv (L, KV*hd, D); wo (L, D, H*hd); ffn norms (L, D); w1 (L, I, D);
 * w2 (L, D, I); w3 (L, I, D); final norm (D); the old RoPE tables freq_cis_real and freq_cis_imag
 * (seq_len, hd/2 each, skipped); the classifier (V, D) when untied.
 * Version 1: u32 magic "ak42", i32 version 1, the same 7 int32, u8 shared_classifier, zero padding to 256
 * bytes, then fp32: attention norms (L, D); ffn norms (L, D); final norm (D); token embedding (V, D); wq; wk;
 * wv; wo; w1; w2; w3 (shapes as above); the classifier (V, D) when not shared.
 * Version 2 is int8-quantized and refused. Weights are nn.Linear (out, in) matrices, the HF layout, except
 * that q and k rows hold RoPE pairs interleaved (Meta's layout): they are permuted to HF's half-split.
 *
 * Its tokenizer.bin (vocab_size tokens) is read and checked by tok/llama2c_bin.h and carried byte for byte. */
#include "convert/import.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "tok/llama2c_bin.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA2C_MAGIC 0x616b3432u
#define MAX_DIM (1 << 24)

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int scp_import_read_tokenizer_bin(scp_import *im, const char *path, int vocab)
{
    scp_map m;
    if (scp_map_file(&m, path)) return -1;
    scp_llama2c_vocab v;
    int rc = scp_llama2c_vocab_read(&v, m.data, m.size, vocab, path);
    if (!rc) {
        im->tok_bin = scp_xmalloc(m.size);
        memcpy(im->tok_bin, m.data, m.size);
        im->tok_bin_len = m.size;
        im->tok_form = SCP_TOK_LLAMA2C;
        im->tok_vocab = v.n;
        im->tok_what = scp_xstrdup(path);
    }
    scp_llama2c_vocab_free(&v);
    scp_unmap(&m);
    return rc;
}

int scp_import_llama2c(scp_import *im, const char *path, const char *tokenizer_bin)
{
    im->source = scp_xstrdup(path);
    im->kind = "llama2c";
    im->config_what = "the llama2.c header";
    if (scp_map_file(&im->bin, path)) return -1;
    const uint8_t *b = im->bin.data;
    size_t size = im->bin.size, hdr;
    int32_t p[7];
    int shared;
    if (size >= 8 && rd32(b) == LLAMA2C_MAGIC) {
        int32_t version = (int32_t)rd32(b + 4);
        if (version == 2)
            return scp_error("%s: llama2.c version 2 (int8 quantized) checkpoints are not supported; export version 0 or 1 (fp32)", path);
        if (version != 1) return scp_error("%s: llama2.c version %d is not supported (0 and 1 are)", path, version);
        if (size < 256) return scp_error("%s: truncated: the version 1 header is 256 bytes, the file has %zu", path, size);
        for (int i = 0; i < 7; i++) p[i] = (int32_t)rd32(b + 8 + 4 * i);
        if (b[36] > 1) return scp_error("%s: shared_classifier flag is %u, not 0 or 1", path, b[36]);
        shared = b[36];
        hdr = 256;
    } else {
        if (size < 28) return scp_error("%s: truncated: a llama2.c header is 28 bytes, the file has %zu", path, size);
        for (int i = 0; i < 7; i++) p[i] = (int32_t)rd32(b + 4 * i);
        shared = p[5] > 0;
        if (p[5] < 0) p[5] = p[5] == INT32_MIN ? 0 : -p[5];   /* INT32_MIN has no positive twin: refused below */
        hdr = 28;
    }
    int D = p[0], I = p[1], L = p[2], H = p[3], KV = p[4], V = p[5], S = p[6];
    if (D <= 0 || I <= 0 || L <= 0 || H <= 0 || KV <= 0 || V <= 0 || S <= 0 || D > MAX_DIM || I > MAX_DIM || L > 4096 ||
        H > D || KV > H || V > MAX_DIM || S > MAX_DIM || D % H || H % KV || (D / H) % 2)
        return scp_error("%s: not a llama2.c checkpoint: header dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, "
                         "vocab_size %d, seq_len %d is impossible", path, p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
    int hd = D / H;
    int64_t qd = (int64_t)H * hd, kvd = (int64_t)KV * hd;
    /* Everything below is at most 2^24 * 2^24 per tensor: no overflow in int64. */
    uint64_t floats = (uint64_t)V * D + (uint64_t)L * (2 * (uint64_t)D + 2 * qd * D + 2 * kvd * D + 3 * (uint64_t)I * D) + (uint64_t)D;
    if (hdr == 28) floats += (uint64_t)S * hd;   /* freq_cis_real and _imag, S x hd/2 each */
    if (!shared) floats += (uint64_t)V * D;
    if (floats > (UINT64_MAX - hdr) / 4 || hdr + 4 * floats != size)
        return scp_error("%s: header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d, %s "
                         "classifier) needs %llu bytes, the file has %zu", path, D, I, L, H, KV, V, S, shared ? "shared" : "separate",
                         (unsigned long long)(hdr + 4 * floats), size);

    scp_model_config *c = &im->cfg;
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:i, s:i}", "model_type", "llama",
                          "hidden_size", D, "intermediate_size", I, "num_hidden_layers", L, "num_attention_heads", H,
                          "num_key_value_heads", KV, "head_dim", hd, "vocab_size", V, "max_position_embeddings", S,
                          "rms_norm_eps", 1e-5, "rope_theta", 10000.0, "tie_word_embeddings", shared, "bos_token_id", 1,
                          "eos_token_id", 2);
    int rc = scp_config_from_json(c, j, path);
    json_decref(j);
    if (rc) return -1;

    const float *w = (const float *)(b + hdr);   /* hdr is 28 or 256: 4-byte aligned in the mapping */
    int64_t s_vd[2] = {V, D}, s_d[1] = {D}, s_q[2] = {qd, D}, s_kv[2] = {kvd, D}, s_o[2] = {D, qd}, s_up[2] = {I, D}, s_dn[2] = {D, I};
    char name[128];
    const char *f = im->bin.path;
#define ADD(nd, shape, ...) do { snprintf(name, sizeof name, __VA_ARGS__); \
        scp_import_add(im, name, f, NULL, SCP_F32, nd, shape, w); w += shape[0] * (nd == 2 ? shape[1] : 1); } while (0)
#define PER_LAYER(nd, shape, fmt) for (int l = 0; l < L; l++) ADD(nd, shape, "model.layers.%d." fmt, l)
    if (hdr == 28) {
        ADD(2, s_vd, "model.embed_tokens.weight");
        PER_LAYER(1, s_d, "input_layernorm.weight");
    } else {
        PER_LAYER(1, s_d, "input_layernorm.weight");
        PER_LAYER(1, s_d, "post_attention_layernorm.weight");
        ADD(1, s_d, "model.norm.weight");
        ADD(2, s_vd, "model.embed_tokens.weight");
    }
    PER_LAYER(2, s_q, "self_attn.q_proj.weight");
    PER_LAYER(2, s_kv, "self_attn.k_proj.weight");
    PER_LAYER(2, s_kv, "self_attn.v_proj.weight");
    PER_LAYER(2, s_o, "self_attn.o_proj.weight");
    if (hdr == 28) PER_LAYER(1, s_d, "post_attention_layernorm.weight");
    PER_LAYER(2, s_up, "mlp.gate_proj.weight");
    PER_LAYER(2, s_dn, "mlp.down_proj.weight");
    PER_LAYER(2, s_up, "mlp.up_proj.weight");
    if (hdr == 28) {
        ADD(1, s_d, "model.norm.weight");
        w += (int64_t)S * hd;
    }
    if (!shared) ADD(2, s_vd, "lm_head.weight");
#undef PER_LAYER
#undef ADD
    scp_import_unpermute_qk(im);
    if (!tokenizer_bin) {   /* the caller decides whether that is an error (it is not for --info) */
        im->tok_vocab = V;
        return 0;
    }
    if (scp_import_read_tokenizer_bin(im, tokenizer_bin, V)) return -1;
    /* llama2.c's export spells BOS and EOS "\n<s>\n" and "\n</s>\n"; the ids are SentencePiece's 1 and 2. */
    im->tok_config = scp_import_llama2c_tok_config("<s>", 1, "</s>", 2, "<unk>", 0);
    im->tok_config_dirty = 1;
    return 0;
}
