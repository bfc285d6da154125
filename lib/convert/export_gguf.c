/* convert/export_gguf.c: a checkpoint as a GGUF v3 file for llama.cpp (and its diffusion runner, llama-diffusion-cli).
 *
 * What llama.cpp's converter (convert_hf_to_gguf.py) writes for the diffusion models, and so what its runner
 * expects: general.architecture "llada" (Llama layout, q/k rows permuted to interleaved RoPE pairs, logits not
 * shifted), "dream" (Qwen2 layout, half-split RoPE kept, logits shifted: position i predicts token i + 1),
 * "rnd1" (Qwen3-MoE layout); "{arch}.attention.causal" = false; "diffusion.shift_logits"; the mask token as
 * "tokenizer.ggml.mask_token_id". We write the shift key explicitly for every non-causal export, so a Llama
 * checkpoint trained with the shift on is still sampled correctly under "llada". A causal checkpoint is written
 * under the plain architecture (llama, qwen2, qwen3, qwen3moe). Tensor names are llama.cpp's (token_embd,
 * blk.N.attn_q, ..., output_norm, output; experts stacked as blk.N.ffn_*_exps with ne = {cols, rows, experts});
 * a tied model has no output tensor. Matrices are written in the chosen type, 1-D tensors (norms, biases) in
 * F32 as llama.cpp's converter keeps them. */
#include "convert/export.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "convert/rope_rows.h"
#include "tok/llama2c_bin.h"
#include "core/io.h"
#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *scp_export_gguf_arch(const scp_model_config *c, int *diffusion_runner)
{
    int dr = 0;
    const char *a = "llama";
    switch (c->arch) {
    case SCP_ARCH_LLAMA: a = c->causal ? "llama" : "llada"; dr = !c->causal; break;
    case SCP_ARCH_QWEN2: a = c->causal ? "qwen2" : "dream"; dr = !c->causal; break;
    case SCP_ARCH_QWEN3: a = "qwen3"; break;   /* llama.cpp has no dense Qwen3 diffusion architecture */
    case SCP_ARCH_QWEN3_MOE: a = c->causal ? "qwen3moe" : "rnd1"; dr = !c->causal; break;
    }
    if (diffusion_runner) *diffusion_runner = dr;
    return a;
}

/* Which scp family an architecture name carries (an --arch override must keep the tensor layout). */
static int arch_family(const char *a, scp_arch *out)
{
    static const struct { const char *name; scp_arch arch; } t[] = {
        {"llama", SCP_ARCH_LLAMA}, {"llada", SCP_ARCH_LLAMA}, {"qwen2", SCP_ARCH_QWEN2}, {"dream", SCP_ARCH_QWEN2},
        {"qwen3", SCP_ARCH_QWEN3}, {"qwen3moe", SCP_ARCH_QWEN3_MOE}, {"rnd1", SCP_ARCH_QWEN3_MOE},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (strcmp(a, t[i].name) == 0) {
            *out = t[i].arch;
            return 0;
        }
    return -1;
}

/* Buffers the writer references until it has written. */
typedef struct owned_list {
    void **p;
    int n, cap;
} owned_list;

static void *keep(owned_list *l, void *p)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->p = scp_xrealloc(l->p, (size_t)l->cap * sizeof *l->p);
    }
    return l->p[l->n++] = p;
}

static uint32_t ggml_type(scp_dtype t)
{
    return t == SCP_F16 ? SCP_GGML_F16 : t == SCP_BF16 ? SCP_GGML_BF16 : SCP_GGML_F32;
}

/* n elements of a tensor converted to dt (a fresh buffer, or the original bytes when already dt). */
static const void *convert(owned_list *l, const void *src, scp_dtype from, scp_dtype dt, size_t n)
{
    if (from == dt) return src;
    float *f = scp_xmalloc(n * sizeof(float));
    scp_convert_to_f32(f, src, from, n);
    if (dt == SCP_F32) return keep(l, f);
    void *o = scp_xmalloc(n * scp_dtype_size(dt));
    scp_convert_from_f32(o, dt, f, n);
    free(f);
    return keep(l, o);
}

/* ---- the tokenizer vocabulary ------------------------------------------------------------------------------ */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct vocab {
    int n;                /* = vocab_size rows */
    char **tok;
    float *score;
    int32_t *type;
} vocab;

static void vocab_init(vocab *v, int n)
{
    v->n = n;
    v->tok = scp_xcalloc((size_t)n, sizeof *v->tok);
    v->score = scp_xcalloc((size_t)n, sizeof *v->score);
    v->type = scp_xcalloc((size_t)n, sizeof *v->type);
}

static void vocab_free(vocab *v)
{
    for (int i = 0; i < v->n; i++) free(v->tok[i]);
    free(v->tok);
    free(v->score);
    free(v->type);
}

/* Ids no tokenizer defines become "[PADi]" UNUSED rows (llama.cpp's converter does the same). */
static void vocab_pad(vocab *v)
{
    for (int i = 0; i < v->n; i++)
        if (!v->tok[i]) {
            v->tok[i] = scp_xasprintf("[PAD%d]", i);
            v->type[i] = TT_UNUSED;
        }
}

/* tokenizer_config.json's added_tokens_decoder entries (the mask token scp-import added, among others). */
static void add_config_tokens(vocab *v, const char *dir)
{
    char *p = scp_path_join(dir, "tokenizer_config.json");
    json_t *j = scp_file_exists(p) ? scp_json_load(p) : NULL;
    free(p);
    if (!j) return;
    json_t *atd = json_object_get(j, "added_tokens_decoder");
    const char *key;
    json_t *val;
    json_object_foreach(atd, key, val) {
        char *end;
        long id = strtol(key, &end, 10);
        const char *content = json_string_value(json_object_get(val, "content"));
        if (*end || id < 0 || id >= v->n || !content) continue;
        free(v->tok[id]);
        v->tok[id] = scp_xstrdup(content);
        v->type[id] = json_is_true(json_object_get(val, "special")) ? TT_CONTROL : TT_USER;
    }
    json_decref(j);
}

/* llama2.c tokenizer.bin (read by tok/llama2c_bin.h) -> SentencePiece-style tokens: ' ' back to U+2581,
 * BOS/EOS spelled "\n<s>\n" by llama2.c's export back to "<s>", "</s>". */
static int llama2c_vocab(vocab *v, const char *path, const scp_model_config *c)
{
    scp_map m;
    if (scp_map_file(&m, path)) return -1;
    scp_llama2c_vocab lv;
    int rc = scp_llama2c_vocab_read(&lv, m.data, m.size, -1, path);
    if (!rc && lv.n > v->n) rc = scp_error("%s: %d tokens, more than the model's %d embedding rows", path, lv.n, v->n);
    for (int i = 0; !rc && i < lv.n; i++) {
        const char *s = (const char *)lv.bytes[i];
        int len = (int)lv.len[i];
        char *t = scp_xmalloc((size_t)len * 3 + 1);
        size_t k = 0;
        int a = 0, b = len;
        while (a < b && s[a] == '\n') a++;
        while (b > a && s[b - 1] == '\n') b--;
        if (!(i == c->bos_token_id || i == c->eos_token_id)) a = 0, b = len;
        for (int q = a; q < b; q++) {
            if (s[q] == ' ') {
                memcpy(t + k, "\xe2\x96\x81", 3);
                k += 3;
            } else {
                t[k++] = s[q];
            }
        }
        t[k] = 0;
        v->tok[i] = t;
        v->score[i] = lv.score[i];
        unsigned hx;
        char tail;
        v->type[i] = i == c->bos_token_id || i == c->eos_token_id ? TT_CONTROL
                     : i == 0 && strcmp(t, "<unk>") == 0          ? TT_UNKNOWN
                     : strlen(t) == 6 && sscanf(t, "<0x%2x%c", &hx, &tail) == 2 && tail == '>' ? TT_BYTE
                                                                 : TT_NORMAL;
    }
    scp_llama2c_vocab_free(&lv);
    scp_unmap(&m);
    return rc;
}

/* tokenizer.json (byte-level BPE) -> GGUF "gpt2" tokens and merges. */
static int hf_vocab(vocab *v, const char *path, char ***merges, uint64_t *nmerges)
{
    json_t *j = scp_json_load(path);
    if (!j) return -1;
    json_t *model = json_object_get(j, "model"), *voc = json_object_get(model, "vocab");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type || strcmp(type, "BPE") != 0 || !json_is_object(voc)) {
        /* type lives in j: the message is made before j is freed */
        scp_error("%s: only BPE tokenizers are exported to GGUF (model.type is '%s')", path, type ? type : "?");
        json_decref(j);
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach(voc, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= v->n) continue;
        free(v->tok[id]);
        v->tok[id] = scp_xstrdup(key);
        v->type[id] = TT_NORMAL;
    }
    size_t i;
    json_array_foreach(json_object_get(j, "added_tokens"), i, val) {
        json_int_t id = json_integer_value(json_object_get(val, "id"));
        const char *content = json_string_value(json_object_get(val, "content"));
        if (!content || id < 0 || id >= v->n) continue;
        free(v->tok[id]);
        v->tok[id] = scp_xstrdup(content);
        v->type[id] = json_is_true(json_object_get(val, "special")) ? TT_CONTROL : TT_USER;
    }
    json_t *mj = json_object_get(model, "merges");
    *nmerges = json_array_size(mj);
    *merges = scp_xcalloc(*nmerges + 1, sizeof **merges);
    json_array_foreach(mj, i, val) {
        if (json_is_string(val)) (*merges)[i] = scp_xstrdup(json_string_value(val));
        else if (json_is_array(val) && json_array_size(val) == 2)
            (*merges)[i] = scp_xasprintf("%s %s", json_string_value(json_array_get(val, 0)) ?: "",
                                         json_string_value(json_array_get(val, 1)) ?: "");
        else (*merges)[i] = scp_xstrdup("");
    }
    json_decref(j);
    return 0;
}

/* Write the vocabulary the checkpoint carries; returns 1 (with a warning) when there is none we can write. */
static int write_vocab(scp_gguf_writer *w, const scp_export_src *s, const scp_model_config *c, vocab *v)
{
    char *bin = scp_path_join(s->dir, "tokenizer.bin"), *tj = scp_path_join(s->dir, "tokenizer.json");
    int rc = 1;
    char **merges = NULL;
    uint64_t nm = 0;
    vocab_init(v, c->vocab_size);
    if (scp_file_exists(tj)) {
        if ((rc = hf_vocab(v, tj, &merges, &nm)) == 0) {
            scp_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
            scp_gguf_set_str(w, "tokenizer.ggml.pre", c->arch == SCP_ARCH_LLAMA ? "llama-bpe" : "qwen2");
        }
    } else if (scp_file_exists(bin)) {
        if ((rc = llama2c_vocab(v, bin, c)) == 0) {
            add_config_tokens(v, s->dir);
            scp_gguf_set_str(w, "tokenizer.ggml.model", "llama");
        }
    } else {
        scp_warn("%s: no tokenizer.json or tokenizer.bin: the GGUF gets no vocabulary", s->dir);
    }
    if (rc == 0) {
        if (c->mask_token_id >= 0 && !v->tok[c->mask_token_id]) {
            v->tok[c->mask_token_id] = scp_xstrdup("<|mask|>");
            v->type[c->mask_token_id] = TT_CONTROL;
        }
        vocab_pad(v);
        scp_gguf_set_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)v->tok, (uint64_t)v->n);
        if (!merges) scp_gguf_set_arr(w, "tokenizer.ggml.scores", SCP_GGUF_F32, v->score, (uint64_t)v->n);
        scp_gguf_set_arr(w, "tokenizer.ggml.token_type", SCP_GGUF_I32, v->type, (uint64_t)v->n);
        if (merges) scp_gguf_set_str_arr(w, "tokenizer.ggml.merges", (const char *const *)merges, nm);
        for (int i = 0; i < v->n; i++)
            if (v->type[i] == TT_UNKNOWN) {
                scp_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)i);
                break;
            }
    }
    for (uint64_t i = 0; merges && i < nm; i++) free(merges[i]);
    free(merges);
    free(bin);
    free(tj);
    return rc;
}

int scp_export_gguf(const scp_export_src *s, const scp_export_opts *o, const char *out_path)
{
    scp_dtype dt = o->dtype == SCP_DTYPE_INVALID ? SCP_F32 : o->dtype;
    if (dt != SCP_F32 && dt != SCP_F16 && dt != SCP_BF16) return scp_error("--dtype %s: GGUF is written in F32, F16 or BF16", scp_dtype_name(dt));
    scp_model_config c;
    scp_config_copy(&c, &s->cfg);
    if (o->causal >= 0) c.causal = o->causal;
    if (o->shift >= 0) c.shift_logits = o->shift;
    int rc = 0;
    if (c.rope_scaling_factor != 0)
        rc = scp_error("%s: Llama 3.1 RoPE scaling is not exported to GGUF (llama.cpp wants a rope_freqs tensor)", s->dir);
    const char *arch = o->arch ? o->arch : scp_export_gguf_arch(&c, NULL);
    scp_arch fam = SCP_ARCH_LLAMA;
    if (!rc && arch_family(arch, &fam))
        rc = scp_error("--arch %s: not one of llama, llada, qwen2, dream, qwen3, qwen3moe, rnd1", arch);
    if (!rc && fam != c.arch)
        rc = scp_error("--arch %s: the checkpoint is a %s model, whose tensors that architecture does not hold", arch, scp_arch_name(c.arch));
    if (rc) {
        scp_config_free(&c);
        return -1;
    }
    /* llama.cpp runs Llama-layout models (llama, llada) with interleaved RoPE pairs: permute q and k. */
    int permute = c.arch == SCP_ARCH_LLAMA;

    scp_gguf_writer *w = scp_gguf_writer_new();
    char k[160];
#define KEY(x) (snprintf(k, sizeof k, "%s.%s", arch, x), k)
    scp_gguf_set_str(w, "general.architecture", arch);
    const char *base = strrchr(s->dir, '/');
    char *name = scp_xstrdup(o->name ? o->name : base && base[1] ? base + 1 : s->dir);
    scp_gguf_set_str(w, "general.name", name);
    free(name);
    scp_gguf_set_u32(w, "general.file_type", dt == SCP_F16 ? 1 : dt == SCP_BF16 ? 32 : 0);
    scp_gguf_set_u32(w, KEY("context_length"), (uint32_t)c.max_position_embeddings);
    scp_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c.hidden_size);
    scp_gguf_set_u32(w, KEY("block_count"), (uint32_t)c.num_layers);
    if (c.intermediate_size > 0) scp_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c.intermediate_size);
    scp_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c.num_heads);
    scp_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c.num_kv_heads);
    scp_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c.head_dim);
    scp_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c.head_dim);
    scp_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c.head_dim);
    scp_gguf_set_f32(w, KEY("rope.freq_base"), (float)c.rope_theta);
    scp_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c.rms_norm_eps);
    scp_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c.vocab_size);
    if (c.num_experts > 0) {
        scp_gguf_set_u32(w, KEY("expert_count"), (uint32_t)c.num_experts);
        scp_gguf_set_u32(w, KEY("expert_used_count"), (uint32_t)c.num_experts_per_tok);
        scp_gguf_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)c.moe_intermediate_size);
        scp_gguf_set_bool(w, KEY("expert_weights_norm"), c.norm_topk_prob);
    }
    scp_gguf_set_bool(w, KEY("attention.causal"), c.causal);
    if (!c.causal) scp_gguf_set_bool(w, "diffusion.shift_logits", c.shift_logits);
#undef KEY
    if (c.bos_token_id >= 0) scp_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c.bos_token_id);
    if (c.eos_token_id >= 0) scp_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)c.eos_token_id);
    if (c.pad_token_id >= 0) scp_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)c.pad_token_id);
    if (c.mask_token_id >= 0) scp_gguf_set_u32(w, "tokenizer.ggml.mask_token_id", (uint32_t)c.mask_token_id);
    if (c.bos_token_id >= 0) scp_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    vocab v = {0};
    if (write_vocab(w, s, &c, &v) < 0) rc = -1;

    owned_list own = {0};
    for (int i = 0; i < s->n && !rc; i++) {
        const scp_param_desc *d = &s->desc[i];
        const scp_tensor_info *t = s->t[i];
        if (d->expert > 0) continue;   /* stacked with expert 0 */
        char gn[128];
        scp_gguf_tensor_name(d, gn, sizeof gn);
        scp_dtype to = d->ndim == 2 ? dt : SCP_F32;
        uint64_t ne[3] = {d->ndim == 2 ? (uint64_t)d->shape[1] : (uint64_t)d->shape[0], d->ndim == 2 ? (uint64_t)d->shape[0] : 1, 1};
        int nd = d->ndim;
        const void *data;
        if (d->expert == 0) {
            /* (experts, rows, cols): expert e's matrix is the table entry of the same layer and kind. */
            size_t each = (size_t)d->numel * scp_dtype_size(to);
            uint8_t *buf = keep(&own, scp_xmalloc(each * (size_t)c.num_experts));
            for (int j = i; j < s->n; j++) {
                const scp_param_desc *e = &s->desc[j];
                if (e->kind != d->kind || e->layer != d->layer || e->expert < 0) continue;
                memcpy(buf + each * (size_t)e->expert, convert(&own, s->t[j]->data, s->t[j]->dtype, to, (size_t)e->numel), each);
            }
            data = buf;
            ne[2] = (uint64_t)c.num_experts;
            nd = 3;
        } else {
            data = convert(&own, t->data, t->dtype, to, (size_t)t->numel);
            int heads = d->kind == SCP_P_Q || d->kind == SCP_P_QB ? c.num_heads : d->kind == SCP_P_K || d->kind == SCP_P_KB ? c.num_kv_heads : 0;
            if (permute && heads) data = keep(&own, scp_rope_permute(data, scp_dtype_size(to), heads, c.head_dim, d->ndim == 2 ? d->shape[1] : 1));
        }
        scp_gguf_add_tensor(w, gn, ggml_type(to), nd, ne, data);
    }
    if (!rc) rc = scp_gguf_write(w, out_path);
    for (int i = 0; i < own.n; i++) free(own.p[i]);
    free(own.p);
    vocab_free(&v);
    scp_gguf_writer_free(w);
    scp_config_free(&c);
    return rc;
}
