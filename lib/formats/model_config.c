/* formats/model_config.c: HF config.json <-> scp_model_config, RoPE frequencies, the parameter table. */
#include "formats/model_config.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static const char *arch_names[] = {"llama", "qwen2", "qwen3", "qwen3_moe"};

const char *scp_arch_name(scp_arch a) { return arch_names[a]; }

static const char *group_names[SCP_GROUP_COUNT] = {"embed", "attn", "mlp", "expert", "router", "norm"};
const char *scp_group_name(scp_group g) { return group_names[g]; }

/* What a JSON value is, for messages: "null", "a string", "a number with a fraction or exponent (1e+09)"... */
static const char *json_kind(const json_t *v, char *buf, size_t n)
{
    switch (json_typeof(v)) {
    case JSON_NULL: return "null";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    case JSON_REAL: snprintf(buf, n, "a number with a fraction or exponent (%g)", json_real_value(v)); return buf;
    default: return "an integer";
    }
}

/* A size key (model_config.h has the ranges): absent leaves *dst (the default); present, it must be a JSON
 * integer in [lo, hi]. A float, even 1e9 or 64.0, is refused: HF writes sizes as integers, and a size written
 * otherwise is a damaged or hand-made file. */
static int get_size(const json_t *j, const char *key, int *dst, int64_t lo, int64_t hi, const char *what)
{
    const json_t *v = json_object_get(j, key);
    if (!v) return 0;
    char buf[96];
    if (!json_is_integer(v))
        return scp_error("%s: '%s' must be an integer from %" PRId64 " to %" PRId64 ", not %s", what, key, lo, hi,
                         json_kind(v, buf, sizeof buf));
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return scp_error("%s: '%s' is %" PRId64 ", outside the supported %" PRId64 " to %" PRId64, what, key, (int64_t)x, lo, hi);
    *dst = (int)x;
    return 0;
}

/* A float key: absent leaves *dst; present, a finite JSON number. */
static int get_finite(const json_t *j, const char *key, double *dst, const char *what)
{
    const json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) return 0;
    char buf[96];
    if (!json_is_number(v)) return scp_error("%s: '%s' must be a number, not %s", what, key, json_kind(v, buf, sizeof buf));
    if (!isfinite(json_number_value(v))) return scp_error("%s: '%s' must be finite", what, key);
    *dst = json_number_value(v);
    return 0;
}

/* a * b, or SCP_CONFIG_MAX_PARAMS + 1 when it would pass that (the operands are sizes within their ranges). */
static int64_t sat_mul(int64_t a, int64_t b)
{
    if (a && b > (SCP_CONFIG_MAX_PARAMS + 1) / a) return SCP_CONFIG_MAX_PARAMS + 1;
    return a * b;
}

/* The products that size allocations: the parameter table's entries and the total parameter count, computed
 * without overflow from the parsed sizes before anything is allocated from them. */
static int check_products(const scp_model_config *c, const char *what)
{
    int64_t D = c->hidden_size, hd = c->head_dim, qd = sat_mul(c->num_heads, hd), kvd = sat_mul(c->num_kv_heads, hd);
    int64_t tensors_per_layer = 14 + 3 * (int64_t)c->num_experts;
    if (sat_mul(c->num_layers, tensors_per_layer) > SCP_CONFIG_MAX_TENSORS)
        return scp_error("%s: %d layers of %" PRId64 " tensors each are more than the supported %d tensors", what, c->num_layers,
                         tensors_per_layer, SCP_CONFIG_MAX_TENSORS);
    /* Per layer: q, k, v, o with biases, norms, and the MLP (dense, or router plus experts). */
    int64_t layer = sat_mul(qd, D) * 2 + sat_mul(kvd, D) * 2 + qd + 2 * kvd + 4 * D + 2 * hd;
    if (c->num_experts)
        layer += sat_mul(c->num_experts, D) + sat_mul(c->num_experts, sat_mul(3 * (int64_t)c->moe_intermediate_size, D));
    else
        layer += sat_mul(3 * (int64_t)c->intermediate_size, D);
    int64_t total = sat_mul(c->num_layers, layer) + sat_mul(2 * (int64_t)c->vocab_size, D) + D;
    if (layer > SCP_CONFIG_MAX_PARAMS || total > SCP_CONFIG_MAX_PARAMS)
        return scp_error("%s: the sizes describe more than %" PRId64 " parameters (hidden_size %d, %d layers, vocabulary %d)", what,
                         (int64_t)SCP_CONFIG_MAX_PARAMS, c->hidden_size, c->num_layers, c->vocab_size);
    return 0;
}

static int get_id(const json_t *j, const char *key, int *dst, const char *what)
{
    json_t *v = json_object_get(j, key);
    if (json_is_array(v)) v = json_array_get(v, 0);   /* eos_token_id may be a list: take the first */
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return scp_error("%s: %s must be a non-negative integer", what, key);
    *dst = (int)json_integer_value(v);
    return 0;
}

int scp_config_from_json(scp_model_config *c, json_t *j, const char *what)
{
    memset(c, 0, sizeof *c);
    if (!json_is_object(j)) return scp_error("%s: not a JSON object", what);
    const char *mt = NULL;
    if (scp_json_get_str(j, "model_type", &mt, what) != 0)
        return scp_error("%s: missing model_type (expected one of llama, qwen2, qwen3, qwen3_moe)", what);
    int found = 0;
    for (int a = 0; a < 4; a++)
        if (strcmp(mt, arch_names[a]) == 0) c->arch = (scp_arch)a, found = 1;
    if (!found)
        return scp_error("%s: model_type '%s' is not supported (supported: llama, qwen2, qwen3, qwen3_moe)", what, mt);

    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000.0;
    c->max_position_embeddings = 2048;
    c->bos_token_id = c->eos_token_id = c->pad_token_id = c->mask_token_id = -1;
    c->causal = 1;
    c->shift_logits = 1;
    c->num_kv_heads = -1;
    c->head_dim = -1;
    c->norm_topk_prob = 0;
    static const char *required[] = {"hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"};
    for (int i = 0; i < 4; i++)
        if (!json_object_get(j, required[i])) return scp_error("%s: missing required key '%s'", what, required[i]);
    if (get_size(j, "hidden_size", &c->hidden_size, 1, SCP_CONFIG_MAX_HIDDEN, what) ||
        get_size(j, "intermediate_size", &c->intermediate_size, 0, SCP_CONFIG_MAX_INTERMEDIATE, what) ||
        get_size(j, "num_hidden_layers", &c->num_layers, 1, SCP_CONFIG_MAX_LAYERS, what) ||
        get_size(j, "num_attention_heads", &c->num_heads, 1, SCP_CONFIG_MAX_HEADS, what) ||
        get_size(j, "num_key_value_heads", &c->num_kv_heads, 1, SCP_CONFIG_MAX_HEADS, what) ||
        get_size(j, "head_dim", &c->head_dim, 2, SCP_CONFIG_MAX_HEAD_DIM, what) ||
        get_size(j, "vocab_size", &c->vocab_size, 1, SCP_CONFIG_MAX_VOCAB, what) ||
        get_size(j, "max_position_embeddings", &c->max_position_embeddings, 1, SCP_CONFIG_MAX_POSITIONS, what) ||
        get_size(j, "num_experts", &c->num_experts, 0, SCP_CONFIG_MAX_EXPERTS, what) ||
        get_size(j, "num_experts_per_tok", &c->num_experts_per_tok, 0, SCP_CONFIG_MAX_EXPERTS, what) ||
        get_size(j, "moe_intermediate_size", &c->moe_intermediate_size, 0, SCP_CONFIG_MAX_INTERMEDIATE, what) ||
        get_id(j, "bos_token_id", &c->bos_token_id, what) || get_id(j, "eos_token_id", &c->eos_token_id, what) ||
        get_id(j, "pad_token_id", &c->pad_token_id, what) || get_id(j, "mask_token_id", &c->mask_token_id, what))
        return -1;
    if (get_finite(j, "rms_norm_eps", &c->rms_norm_eps, what) || get_finite(j, "rope_theta", &c->rope_theta, what) ||
        scp_json_get_bool(j, "tie_word_embeddings", &c->tie_word_embeddings, what) < 0 ||
        scp_json_get_bool(j, "norm_topk_prob", &c->norm_topk_prob, what) < 0 ||
        scp_json_get_bool(j, "is_causal", &c->causal, what) < 0 ||
        scp_json_get_bool(j, "shift_logits", &c->shift_logits, what) < 0)
        return -1;
    if (c->num_kv_heads < 0) c->num_kv_heads = c->num_heads;
    if (c->head_dim < 0) {
        if (c->hidden_size % c->num_heads) return scp_error("%s: hidden_size %d is not divisible by num_attention_heads %d", what, c->hidden_size, c->num_heads);
        c->head_dim = c->hidden_size / c->num_heads;
        if (c->head_dim > SCP_CONFIG_MAX_HEAD_DIM)
            return scp_error("%s: hidden_size / num_attention_heads = %d is more than the supported head size %d", what, c->head_dim,
                             SCP_CONFIG_MAX_HEAD_DIM);
    }
    if (c->num_heads % c->num_kv_heads)
        return scp_error("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what, c->num_heads, c->num_kv_heads);
    if (c->head_dim % 2) return scp_error("%s: head_dim %d must be even for RoPE", what, c->head_dim);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0)) return scp_error("%s: rms_norm_eps and rope_theta must be positive", what);

    int b = 0;
    switch (c->arch) {
    case SCP_ARCH_LLAMA:
        if (scp_json_get_bool(j, "attention_bias", &b, what) < 0) return -1;
        c->qkv_bias = c->o_bias = b;
        b = 0;
        if (scp_json_get_bool(j, "mlp_bias", &b, what) < 0) return -1;
        if (b) return scp_error("%s: mlp_bias = true is not supported", what);
        break;
    case SCP_ARCH_QWEN2: c->qkv_bias = 1; break;
    case SCP_ARCH_QWEN3:
    case SCP_ARCH_QWEN3_MOE:
        if (scp_json_get_bool(j, "attention_bias", &b, what) < 0) return -1;
        c->qkv_bias = c->o_bias = b;
        c->qk_norm = 1;
        break;
    }
    b = 0;
    if (scp_json_get_bool(j, "use_sliding_window", &b, what) < 0) return -1;
    if (b) return scp_error("%s: use_sliding_window = true is not supported", what);
    if (c->arch == SCP_ARCH_QWEN3_MOE) {
        if (c->num_experts < 1 || c->num_experts_per_tok < 1 || c->num_experts_per_tok > c->num_experts || c->moe_intermediate_size < 1)
            return scp_error("%s: qwen3_moe needs num_experts >= num_experts_per_tok >= 1 and moe_intermediate_size >= 1", what);
        int step = 1;
        if (get_size(j, "decoder_sparse_step", &step, 0, SCP_CONFIG_MAX_LAYERS, what)) return -1;
        json_t *mlp_only = json_object_get(j, "mlp_only_layers");
        if (step != 1 || (json_is_array(mlp_only) && json_array_size(mlp_only) > 0))
            return scp_error("%s: qwen3_moe with dense layers (decoder_sparse_step != 1 or mlp_only_layers) is not supported", what);
    } else {
        c->num_experts = c->num_experts_per_tok = c->moe_intermediate_size = 0;
        if (c->intermediate_size < 1) return scp_error("%s: missing or zero intermediate_size", what);
    }
    json_t *rs = json_object_get(j, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        const char *type = NULL;
        if (!json_is_object(rs)) return scp_error("%s: rope_scaling must be an object", what);
        if (scp_json_get_str(rs, "rope_type", &type, what) != 0 && scp_json_get_str(rs, "type", &type, what) != 0)
            return scp_error("%s: rope_scaling has no rope_type", what);
        if (strcmp(type, "default") != 0) {
            if (strcmp(type, "llama3") != 0) return scp_error("%s: rope_scaling type '%s' is not supported (supported: llama3)", what, type);
            c->rope_scaling_factor = 8;
            c->rope_low_freq_factor = 1;
            c->rope_high_freq_factor = 4;
            c->rope_original_max_pos = 8192;
            if (get_finite(rs, "factor", &c->rope_scaling_factor, what) ||
                get_finite(rs, "low_freq_factor", &c->rope_low_freq_factor, what) ||
                get_finite(rs, "high_freq_factor", &c->rope_high_freq_factor, what) ||
                get_size(rs, "original_max_position_embeddings", &c->rope_original_max_pos, 1, SCP_CONFIG_MAX_POSITIONS, what))
                return -1;
            /* scp_rope_inv_freq divides by the factor and by high_freq_factor - low_freq_factor */
            if (!(c->rope_scaling_factor > 0) || !(c->rope_low_freq_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor))
                return scp_error("%s: rope_scaling needs factor > 0 and 0 < low_freq_factor < high_freq_factor (has %g, %g, %g)", what,
                                 c->rope_scaling_factor, c->rope_low_freq_factor, c->rope_high_freq_factor);
        }
    }
    if (c->mask_token_id >= c->vocab_size)
        return scp_error("%s: mask_token_id %d is outside the vocabulary (%d rows)", what, c->mask_token_id, c->vocab_size);
    if (check_products(c, what)) return -1;
    c->raw = json_deep_copy(j);
    return 0;
}

/* A run directory (scp-train's output) given where a checkpoint goes is the likeliest reason for a missing
 * DIR/config.json: -1 with a message naming the run's checkpoints when DIR has the run's "latest" link. */
static int refuse_run_dir(const char *path)
{
    size_t n = strlen(path), k = strlen("/config.json");
    if (n <= k || strcmp(path + n - k, "/config.json") != 0 || scp_file_exists(path)) return 0;
    char *dir = scp_xstrdup(path);
    dir[n - k] = 0;
    char *latest = scp_path_join(dir, "latest");
    int run = scp_file_exists(latest);
    free(latest);
    if (run) scp_error("%s: a run directory, not a checkpoint: give one of its checkpoints, such as %s/latest", dir, dir);
    free(dir);
    return run ? -1 : 0;
}

int scp_config_load(scp_model_config *c, const char *path)
{
    if (refuse_run_dir(path)) return -1;
    json_t *j = scp_json_load(path);
    if (!j) return -1;
    int rc = scp_config_from_json(c, j, path);
    json_decref(j);
    return rc;
}

json_t *scp_config_to_json(const scp_model_config *c)
{
    json_t *j = c->raw ? json_deep_copy(c->raw) : json_object();
    json_object_set_new(j, "model_type", json_string(arch_names[c->arch]));
    if (!json_object_get(j, "architectures")) {
        static const char *cls[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM"};
        json_t *a = json_array();
        json_array_append_new(a, json_string(cls[c->arch]));
        json_object_set_new(j, "architectures", a);
    }
#define SETI(k, v) json_object_set_new(j, k, json_integer(v))
    SETI("hidden_size", c->hidden_size);
    SETI("num_hidden_layers", c->num_layers);
    SETI("num_attention_heads", c->num_heads);
    SETI("num_key_value_heads", c->num_kv_heads);
    SETI("head_dim", c->head_dim);
    SETI("vocab_size", c->vocab_size);
    SETI("max_position_embeddings", c->max_position_embeddings);
    if (c->intermediate_size) SETI("intermediate_size", c->intermediate_size);
    if (c->arch == SCP_ARCH_QWEN3_MOE) {
        SETI("num_experts", c->num_experts);
        SETI("num_experts_per_tok", c->num_experts_per_tok);
        SETI("moe_intermediate_size", c->moe_intermediate_size);
        json_object_set_new(j, "norm_topk_prob", json_boolean(c->norm_topk_prob));
    }
    json_object_set_new(j, "rms_norm_eps", json_real(c->rms_norm_eps));
    json_object_set_new(j, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(j, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    if (c->arch == SCP_ARCH_LLAMA || c->arch == SCP_ARCH_QWEN3 || c->arch == SCP_ARCH_QWEN3_MOE)
        json_object_set_new(j, "attention_bias", json_boolean(c->qkv_bias));
    if (c->bos_token_id >= 0) SETI("bos_token_id", c->bos_token_id);
    if (c->eos_token_id >= 0 && !json_is_array(json_object_get(j, "eos_token_id"))) SETI("eos_token_id", c->eos_token_id);
    if (c->pad_token_id >= 0) SETI("pad_token_id", c->pad_token_id);
    if (c->mask_token_id >= 0) SETI("mask_token_id", c->mask_token_id);
    else json_object_del(j, "mask_token_id");
    json_object_set_new(j, "is_causal", json_boolean(c->causal));
    json_object_set_new(j, "shift_logits", json_boolean(c->shift_logits));
    if (c->rope_scaling_factor > 0 && !json_object_get(j, "rope_scaling")) {
        json_t *rs = json_object();
        json_object_set_new(rs, "rope_type", json_string("llama3"));
        json_object_set_new(rs, "factor", json_real(c->rope_scaling_factor));
        json_object_set_new(rs, "low_freq_factor", json_real(c->rope_low_freq_factor));
        json_object_set_new(rs, "high_freq_factor", json_real(c->rope_high_freq_factor));
        SETI("original_max_position_embeddings", c->rope_original_max_pos);
        json_object_set_new(j, "rope_scaling", rs);
    }
#undef SETI
    return j;
}

int scp_config_save(const scp_model_config *c, const char *path)
{
    json_t *j = scp_config_to_json(c);
    int rc = scp_json_save(path, j);
    json_decref(j);
    return rc;
}

void scp_config_free(scp_model_config *c)
{
    if (c->raw) json_decref(c->raw);
    c->raw = NULL;
}

void scp_config_copy(scp_model_config *dst, const scp_model_config *src)
{
    *dst = *src;
    dst->raw = src->raw ? json_deep_copy(src->raw) : NULL;
}

void scp_rope_inv_freq(const scp_model_config *c, double *inv_freq)
{
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim);
    if (c->rope_scaling_factor <= 0) return;
    /* Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between interpolated. */
    double old = c->rope_original_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor, f = c->rope_scaling_factor;
    double low_wavelen = old / lo, high_wavelen = old / hi;
    for (int i = 0; i < half; i++) {
        double wavelen = 2 * M_PI / inv_freq[i];
        if (wavelen < high_wavelen) continue;
        if (wavelen > low_wavelen) { inv_freq[i] /= f; continue; }
        double smooth = (old / wavelen - lo) / (hi - lo);
        inv_freq[i] = (1 - smooth) * inv_freq[i] / f + smooth * inv_freq[i];
    }
}

/* ---- the parameter table ---------------------------------------------------------------------------- */
/* The table being made: t[0 .. n) so far; `index` counts every tensor of the full table, the ones another
 * expert-parallel rank holds included. */
typedef struct table_maker {
    scp_param_desc *t;
    int n, index;
} table_maker;

static void add(table_maker *tm, scp_param_kind kind, scp_group g, int layer, int expert, int64_t rows,
                int64_t cols, int decay, const char *fmt, ...) __attribute__((format(printf, 9, 10)));

static void add(table_maker *tm, scp_param_kind kind, scp_group g, int layer, int expert, int64_t rows,
                int64_t cols, int decay, const char *fmt, ...)
{
    scp_param_desc *d = &tm->t[tm->n++];
    memset(d, 0, sizeof *d);
    d->index = tm->index++;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->name, sizeof d->name, fmt, ap);
    va_end(ap);
    d->kind = kind;
    d->group = g;
    d->layer = layer;
    d->expert = expert;
    d->ndim = cols ? 2 : 1;
    d->shape[0] = rows;
    d->shape[1] = cols;
    d->numel = rows * (cols ? cols : 1);
    d->decay = decay;
}

int scp_param_table(const scp_model_config *c, scp_param_desc **out)
{
    int per_layer = 13 + 1 + 3 * c->num_experts;
    table_maker tm = {scp_xcalloc((size_t)(3 + c->num_layers * per_layer), sizeof *tm.t), 0, 0};
    int e_lo = 0, e_hi = c->num_experts;
    if (c->expert_ranks > 1) scp_expert_range(c->num_experts, c->expert_ranks, c->expert_rank, &e_lo, &e_hi);
    int64_t D = c->hidden_size, hd = c->head_dim, qd = (int64_t)c->num_heads * hd, kvd = (int64_t)c->num_kv_heads * hd;
    add(&tm, SCP_P_EMBED, SCP_GROUP_EMBED, -1, -1, c->vocab_size, D, 1, "model.embed_tokens.weight");
    for (int l = 0; l < c->num_layers; l++) {
        const char *p = "model.layers";
        add(&tm, SCP_P_ATTN_NORM, SCP_GROUP_NORM, l, -1, D, 0, 0, "%s.%d.input_layernorm.weight", p, l);
        add(&tm, SCP_P_Q, SCP_GROUP_ATTN, l, -1, qd, D, 1, "%s.%d.self_attn.q_proj.weight", p, l);
        if (c->qkv_bias) add(&tm, SCP_P_QB, SCP_GROUP_ATTN, l, -1, qd, 0, 0, "%s.%d.self_attn.q_proj.bias", p, l);
        add(&tm, SCP_P_K, SCP_GROUP_ATTN, l, -1, kvd, D, 1, "%s.%d.self_attn.k_proj.weight", p, l);
        if (c->qkv_bias) add(&tm, SCP_P_KB, SCP_GROUP_ATTN, l, -1, kvd, 0, 0, "%s.%d.self_attn.k_proj.bias", p, l);
        add(&tm, SCP_P_V, SCP_GROUP_ATTN, l, -1, kvd, D, 1, "%s.%d.self_attn.v_proj.weight", p, l);
        if (c->qkv_bias) add(&tm, SCP_P_VB, SCP_GROUP_ATTN, l, -1, kvd, 0, 0, "%s.%d.self_attn.v_proj.bias", p, l);
        add(&tm, SCP_P_O, SCP_GROUP_ATTN, l, -1, D, qd, 1, "%s.%d.self_attn.o_proj.weight", p, l);
        if (c->o_bias) add(&tm, SCP_P_OB, SCP_GROUP_ATTN, l, -1, D, 0, 0, "%s.%d.self_attn.o_proj.bias", p, l);
        if (c->qk_norm) {
            add(&tm, SCP_P_QNORM, SCP_GROUP_ATTN, l, -1, hd, 0, 0, "%s.%d.self_attn.q_norm.weight", p, l);
            add(&tm, SCP_P_KNORM, SCP_GROUP_ATTN, l, -1, hd, 0, 0, "%s.%d.self_attn.k_norm.weight", p, l);
        }
        add(&tm, SCP_P_MLP_NORM, SCP_GROUP_NORM, l, -1, D, 0, 0, "%s.%d.post_attention_layernorm.weight", p, l);
        if (c->num_experts) {
            int64_t I = c->moe_intermediate_size;
            add(&tm, SCP_P_ROUTER, SCP_GROUP_ROUTER, l, -1, c->num_experts, D, 1, "%s.%d.mlp.gate.weight", p, l);
            for (int e = 0; e < c->num_experts; e++) {
                if (e < e_lo || e >= e_hi) {   /* another rank's */
                    tm.index += 3;
                    continue;
                }
                add(&tm, SCP_P_EXP_GATE, SCP_GROUP_EXPERT, l, e, I, D, 1, "%s.%d.mlp.experts.%d.gate_proj.weight", p, l, e);
                add(&tm, SCP_P_EXP_UP, SCP_GROUP_EXPERT, l, e, I, D, 1, "%s.%d.mlp.experts.%d.up_proj.weight", p, l, e);
                add(&tm, SCP_P_EXP_DOWN, SCP_GROUP_EXPERT, l, e, D, I, 1, "%s.%d.mlp.experts.%d.down_proj.weight", p, l, e);
            }
        } else {
            int64_t I = c->intermediate_size;
            add(&tm, SCP_P_GATE, SCP_GROUP_MLP, l, -1, I, D, 1, "%s.%d.mlp.gate_proj.weight", p, l);
            add(&tm, SCP_P_UP, SCP_GROUP_MLP, l, -1, I, D, 1, "%s.%d.mlp.up_proj.weight", p, l);
            add(&tm, SCP_P_DOWN, SCP_GROUP_MLP, l, -1, D, I, 1, "%s.%d.mlp.down_proj.weight", p, l);
        }
    }
    add(&tm, SCP_P_FINAL_NORM, SCP_GROUP_NORM, -1, -1, D, 0, 0, "model.norm.weight");
    if (!c->tie_word_embeddings) add(&tm, SCP_P_LM_HEAD, SCP_GROUP_EMBED, -1, -1, c->vocab_size, D, 1, "lm_head.weight");
    *out = tm.t;
    return tm.n;
}

void scp_expert_range(int E, int ranks, int rank, int *lo, int *hi)
{
    *lo = (int)((int64_t)E * rank / ranks);
    *hi = (int)((int64_t)E * (rank + 1) / ranks);
}

int64_t scp_param_count(const scp_model_config *c)
{
    scp_param_desc *t;
    int n = scp_param_table(c, &t);
    int64_t s = 0;
    for (int i = 0; i < n; i++) s += t[i].numel;
    free(t);
    return s;
}

int scp_param_units(const scp_param_desc *t, int n, int L, int64_t *lo) { return scp_param_units_split(t, n, L, 0, lo); }

int scp_param_units_split(const scp_param_desc *t, int n, int L, int split, int64_t *lo)
{
    /* The table runs embeddings, layer 0 .. L - 1 (each with its experts last), then the tail: a unit starts
     * where the layer index changes, and with split where a layer's experts start. */
    int per_layer = split ? 2 : 1, tail = 1 + L * per_layer;
    int64_t off = 0;
    int u = 0;
    lo[0] = 0;
    for (int i = 0; i < n; i++) {
        int unit = t[i].layer >= 0 ? 1 + t[i].layer * per_layer + (split && t[i].expert >= 0)
                   : (i == 0 || t[i - 1].layer < 0) && u == 0 ? 0 : tail;
        while (u < unit) lo[++u] = off;
        off += t[i].numel;
    }
    while (u < tail + 1) lo[++u] = off;
    return tail + 1;
}
