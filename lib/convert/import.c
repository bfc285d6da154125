/* convert/import.c: the steps every source shares: validation against the parameter table, the mask token, dtype
 * conversion, writing the checkpoint, the --info summary. */
#include "convert/import.h"
#include "convert/rope_rows.h"
#include "formats/checkpoint.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASK_CONTENT "<|mask|>"

scp_imp_tensor *scp_import_add(scp_import *im, const char *name, const char *file, const char *src_name, scp_dtype dt,
                               int ndim, const int64_t *shape, const void *data)
{
    if (im->n == im->cap) im->t = scp_xrealloc(im->t, sizeof *im->t * (size_t)(im->cap = im->cap ? 2 * im->cap : 256));
    scp_imp_tensor *t = &im->t[im->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->src_name, sizeof t->src_name, "%s", src_name ? src_name : name);
    t->file = file;
    t->dtype = dt;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) t->numel *= (t->shape[i] = shape[i]);
    t->data = data;
    return t;
}

static scp_imp_tensor *find(scp_import *im, const char *name)
{
    for (int i = 0; i < im->n; i++)
        if (strcmp(im->t[i].name, name) == 0) return &im->t[i];
    return NULL;
}

void scp_import_unpermute_qk(scp_import *im)
{
    const scp_model_config *c = &im->cfg;
    for (int l = 0; l < c->num_layers; l++)
        for (int k = 0; k < 4; k++) {
            static const char *fmt[] = {"model.layers.%d.self_attn.q_proj.weight", "model.layers.%d.self_attn.k_proj.weight",
                                        "model.layers.%d.self_attn.q_proj.bias", "model.layers.%d.self_attn.k_proj.bias"};
            char name[128];
            snprintf(name, sizeof name, fmt[k], l);
            scp_imp_tensor *t = find(im, name);
            if (!t) continue;
            int heads = (k % 2 == 0) ? c->num_heads : c->num_kv_heads;
            int64_t cols = t->ndim == 2 ? t->shape[1] : 1;
            if (t->shape[0] != (int64_t)heads * c->head_dim) continue;   /* validation will name it */
            void *p = scp_rope_unpermute(t->data, scp_dtype_size(t->dtype), heads, c->head_dim, cols);
            free(t->owned);
            t->owned = p;
            t->data = p;
        }
}

json_t *scp_import_llama2c_tok_config(const char *bos, int bos_id, const char *eos, int eos_id, const char *unk, int unk_id)
{
    json_t *j = json_object();
    json_object_set_new(j, "tokenizer_class", json_string("llama2c"));
    if (bos) json_object_set_new(j, "bos_token", json_string(bos));
    if (bos_id >= 0) json_object_set_new(j, "bos_token_id", json_integer(bos_id));
    if (eos) json_object_set_new(j, "eos_token", json_string(eos));
    if (eos_id >= 0) json_object_set_new(j, "eos_token_id", json_integer(eos_id));
    if (unk) json_object_set_new(j, "unk_token", json_string(unk));
    if (unk_id >= 0) json_object_set_new(j, "unk_token_id", json_integer(unk_id));
    json_object_set_new(j, "added_tokens_decoder", json_object());
    return j;
}

/* ---- validation ---------------------------------------------------------------------------------------- */
static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const scp_imp_tensor *)a)->name, ((const scp_imp_tensor *)b)->name);
}

static int is_rotary_buffer(const char *name)
{
    static const char suffix[] = "rotary_emb.inv_freq";
    size_t n = strlen(name), k = sizeof suffix - 1;
    return n >= k && strcmp(name + n - k, suffix) == 0;
}

static void drop(scp_import *im, int i)
{
    free(im->t[i].owned);
    im->t[i] = im->t[--im->n];
}

int scp_import_validate(scp_import *im)
{
    const scp_model_config *c = &im->cfg;
    /* Sanity bounds before the table is built: a config may come from anywhere. */
    if (c->num_layers > 4096 || c->num_experts > 4096 || (int64_t)c->num_layers * (14 + 3 * (int64_t)c->num_experts) > (1 << 22))
        return scp_error("%s: %d layers of %d experts is implausibly large", im->config_what, c->num_layers, c->num_experts);
    for (int i = 0; i < im->n;) {
        if (is_rotary_buffer(im->t[i].name) || (c->tie_word_embeddings && strcmp(im->t[i].name, "lm_head.weight") == 0)) drop(im, i);
        else i++;
    }
    qsort(im->t, (size_t)im->n, sizeof *im->t, cmp_tensor);
    for (int i = 1; i < im->n; i++)
        if (strcmp(im->t[i - 1].name, im->t[i].name) == 0)
            return scp_error("%s: tensor '%s' appears twice (also in %s)", im->t[i].file, im->t[i].src_name, im->t[i - 1].file);
    scp_param_desc *d;
    int nd = scp_param_table(c, &d);
    char *used = scp_xcalloc((size_t)im->n + 1, 1);
    int rc = 0;
    for (int k = 0; k < nd && !rc; k++) {
        scp_imp_tensor key;
        snprintf(key.name, sizeof key.name, "%s", d[k].name);
        scp_imp_tensor *t = bsearch(&key, im->t, (size_t)im->n, sizeof *im->t, cmp_tensor);
        char s1[128], s2[128];
        if (!t) {
            rc = scp_error("%s: tensor '%s' is missing (%s says it exists with shape %s)", im->source, d[k].name, im->config_what,
                           scp_shape_str(s2, sizeof s2, d[k].ndim, d[k].shape));
            break;
        }
        used[t - im->t] = 1;
        int same = t->ndim == d[k].ndim;
        for (int i = 0; same && i < t->ndim; i++) same = t->shape[i] == d[k].shape[i];
        if (!same)
            rc = scp_error("%s: tensor '%s' has shape %s, %s says %s", t->file, t->src_name, scp_shape_str(s1, sizeof s1, t->ndim, t->shape),
                           im->config_what, scp_shape_str(s2, sizeof s2, d[k].ndim, d[k].shape));
        else if (t->dtype != SCP_F32 && t->dtype != SCP_F16 && t->dtype != SCP_BF16)
            rc = scp_error("%s: tensor '%s' has dtype %s (supported: F32, F16, BF16)", t->file, t->src_name, scp_dtype_name(t->dtype));
    }
    for (int i = 0; i < im->n && !rc; i++)
        if (!used[i])
            rc = scp_error("%s: tensor '%s' is not part of a %s model as %s describes it", im->t[i].file, im->t[i].src_name,
                           scp_arch_name(c->arch), im->config_what);
    free(used);
    free(d);
    return rc;
}

/* ---- the mask token ------------------------------------------------------------------------------------ */
/* The id of "<|mask|>" among the tokenizer's added tokens, or -1; *content_at gets the content of the added
 * token with id `at` (NULL when none). */
static int added_mask_id(const scp_import *im, int at, const char **content_at)
{
    int found = -1;
    *content_at = NULL;
    json_t *added = im->tok_json ? json_object_get(im->tok_json, "added_tokens") : NULL;
    size_t i;
    json_t *a;
    json_array_foreach(added, i, a) {
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || !json_is_string(content)) continue;
        if (strcmp(json_string_value(content), MASK_CONTENT) == 0 && found < 0) found = (int)json_integer_value(id);
        if (json_integer_value(id) == at) *content_at = json_string_value(content);
    }
    json_t *dec = im->tok_config ? json_object_get(im->tok_config, "added_tokens_decoder") : NULL;
    const char *k;
    json_t *v;
    json_object_foreach(dec, k, v) {
        json_t *content = json_object_get(v, "content");
        if (!json_is_string(content)) continue;
        long id = strtol(k, NULL, 10);
        if (strcmp(json_string_value(content), MASK_CONTENT) == 0 && found < 0) found = (int)id;
        if (id == at && !*content_at) *content_at = json_string_value(content);
    }
    return found;
}

/* Grow a (V, D) matrix by one row, the mean of the existing rows (accumulated in double). */
static void append_mean_row(scp_imp_tensor *t)
{
    int64_t V = t->shape[0], D = t->shape[1];
    size_t es = scp_dtype_size(t->dtype);
    uint8_t *p = scp_xmalloc((size_t)((V + 1) * D) * es);
    memcpy(p, t->data, (size_t)(V * D) * es);
    double *acc = scp_xcalloc((size_t)D, sizeof *acc);
    float *row = scp_xmalloc((size_t)D * sizeof *row);
    for (int64_t v = 0; v < V; v++) {
        scp_convert_to_f32(row, (const uint8_t *)t->data + (size_t)(v * D) * es, t->dtype, (size_t)D);
        for (int64_t i = 0; i < D; i++) acc[i] += row[i];
    }
    for (int64_t i = 0; i < D; i++) row[i] = (float)(acc[i] / (double)V);
    scp_convert_from_f32(p + (size_t)(V * D) * es, t->dtype, row, (size_t)D);
    free(acc);
    free(row);
    free(t->owned);
    t->owned = p;
    t->data = p;
    t->shape[0] = V + 1;
    t->numel = (V + 1) * D;
}

static void add_mask_to_tokenizer(scp_import *im, int id)
{
    if (im->tok_json) {
        json_t *added = json_object_get(im->tok_json, "added_tokens");
        if (!json_is_array(added)) {
            added = json_array();
            json_object_set_new(im->tok_json, "added_tokens", added);
        }
        int have = 0;
        size_t i;
        json_t *a;
        json_array_foreach(added, i, a) {
            json_t *aid = json_object_get(a, "id");
            if (json_is_integer(aid) && json_integer_value(aid) == id) have = 1;
        }
        if (!have) {
            im->tok_json_dirty = 1;
            json_t *e = json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", MASK_CONTENT, "single_word", 0,
                                  "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1);
            json_array_append_new(added, e);
        }
    }
    if (im->tok_form != SCP_TOK_NONE || im->tok_config) {
        if (!im->tok_config) im->tok_config = json_object();
        json_t *dec = json_object_get(im->tok_config, "added_tokens_decoder");
        if (!json_is_object(dec)) {
            dec = json_object();
            json_object_set_new(im->tok_config, "added_tokens_decoder", dec);
        }
        char key[32];
        snprintf(key, sizeof key, "%d", id);
        const char *mt = NULL;
        if (!json_object_get(dec, key) || scp_json_get_str(im->tok_config, "mask_token", &mt, "") != 0 || strcmp(mt, MASK_CONTENT) != 0)
            im->tok_config_dirty = 1;
        if (!json_object_get(dec, key))
            json_object_set_new(dec, key, json_pack("{s:s, s:b, s:b, s:b, s:b, s:b}", "content", MASK_CONTENT, "lstrip", 0,
                                                    "normalized", 0, "rstrip", 0, "single_word", 0, "special", 1));
        json_object_set_new(im->tok_config, "mask_token", json_string(MASK_CONTENT));
    }
}

int scp_import_set_mask(scp_import *im, int mask_id)
{
    scp_model_config *c = &im->cfg;
    int V = c->vocab_size;
    const char *content_at;
    int in_tok = added_mask_id(im, -2, &content_at);
    if (im->tok_vocab > V && !(mask_id < 0 && (c->mask_token_id >= 0 || (in_tok >= 0 && in_tok < V))) && !(mask_id >= 0 && mask_id < V))
        return scp_error("%s: the tokenizer defines ids up to %d but the embedding has only %d rows: no id is free for a mask token "
                         "(give one with --mask-token)", im->tok_what ? im->tok_what : im->source, im->tok_vocab - 1, V);
    if (mask_id < 0) {
        if (c->mask_token_id >= 0) mask_id = c->mask_token_id;
        else if (in_tok >= 0 && in_tok < V) mask_id = in_tok;
        else mask_id = im->tok_vocab < V ? im->tok_vocab : V;
    } else {
        if (mask_id > V)
            return scp_error("--mask-token %d: the embedding has %d rows (an id up to %d is allowed; %d appends a row)", mask_id, V, V - 1, V);
        added_mask_id(im, mask_id, &content_at);
        if (content_at && strcmp(content_at, MASK_CONTENT) != 0)
            return scp_error("--mask-token %d: %s already defines id %d as '%s'", mask_id, im->tok_what ? im->tok_what : im->source, mask_id, content_at);
        if (!content_at && mask_id < im->tok_vocab)
            return scp_error("--mask-token %d: id %d is an ordinary token of %s (its vocabulary is ids 0 to %d); choose %d or above",
                             mask_id, mask_id, im->tok_what ? im->tok_what : im->source, im->tok_vocab - 1, im->tok_vocab);
    }
    if (mask_id == V) {
        for (int i = 0; i < im->n; i++)
            if (strcmp(im->t[i].name, "model.embed_tokens.weight") == 0 || strcmp(im->t[i].name, "lm_head.weight") == 0)
                append_mean_row(&im->t[i]);
        c->vocab_size = V + 1;
    }
    c->mask_token_id = mask_id;
    add_mask_to_tokenizer(im, mask_id);
    return 0;
}

/* ---- dtype conversion ---------------------------------------------------------------------------------- */
int scp_import_convert(scp_import *im, scp_dtype dt)
{
    if (dt == SCP_DTYPE_INVALID) return 0;
    float *tmp = NULL;
    size_t cap = 0;
    for (int i = 0; i < im->n; i++) {
        scp_imp_tensor *t = &im->t[i];
        if (t->dtype == dt) continue;
        size_t n = (size_t)t->numel;
        void *out = scp_xmalloc(n * scp_dtype_size(dt) + 1);
        if (dt == SCP_F32) {
            scp_convert_to_f32(out, t->data, t->dtype, n);
        } else {
            if (n > cap) tmp = scp_xrealloc(tmp, (cap = n) * sizeof *tmp);
            scp_convert_to_f32(tmp, t->data, t->dtype, n);
            scp_convert_from_f32(out, dt, tmp, n);
        }
        free(t->owned);
        t->owned = out;
        t->data = out;
        t->dtype = dt;
    }
    free(tmp);
    return 0;
}

/* ---- writing ------------------------------------------------------------------------------------------- */
int scp_import_write(scp_import *im, const char *dir, int replace)
{
    scp_st_writer *w = scp_st_writer_new();
    scp_dtype main_dt = SCP_F32;
    for (int i = 0; i < im->n; i++) {
        scp_imp_tensor *t = &im->t[i];
        scp_st_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
        if (strcmp(t->name, "model.embed_tokens.weight") == 0) main_dt = t->dtype;
    }
    scp_st_set_metadata(w, "scp_source", im->kind);
    scp_model_config c;
    scp_config_copy(&c, &im->cfg);
    if (!c.raw) c.raw = json_object();
    json_object_set_new(c.raw, "torch_dtype", json_string(scp_torch_dtype_name(main_dt)));
    scp_ckpt_file files[16];
    int nf = 0;
    /* tokenizer.json is rewritten only when the mask token was added, keeping its key order and full float
     * precision (scores); otherwise it is copied byte for byte. */
    char *tok_dump = NULL;
    if (im->tok_json && (im->tok_json_dirty || !im->tok_json_path)) {
        tok_dump = json_dumps(im->tok_json, JSON_INDENT(2));
        files[nf++] = (scp_ckpt_file){.name = "tokenizer.json", .data = tok_dump, .len = strlen(tok_dump)};
    } else if (im->tok_json) {
        files[nf++] = (scp_ckpt_file){.name = "tokenizer.json", .copy_from = im->tok_json_path};
    }
    if (im->tok_bin) files[nf++] = (scp_ckpt_file){.name = "tokenizer.bin", .data = im->tok_bin, .len = im->tok_bin_len};
    if (im->tok_config && (im->tok_config_dirty || !im->tok_config_path))
        files[nf++] = (scp_ckpt_file){.name = "tokenizer_config.json", .json = im->tok_config};
    else if (im->tok_config)
        files[nf++] = (scp_ckpt_file){.name = "tokenizer_config.json", .copy_from = im->tok_config_path};
    for (int i = 0; i < im->ncopy && nf < 16; i++) {
        const char *base = strrchr(im->copy_files[i], '/');
        files[nf++] = (scp_ckpt_file){.name = base ? base + 1 : im->copy_files[i], .copy_from = im->copy_files[i]};
    }
    int rc = scp_checkpoint_write(dir, replace, &c, w, files, nf);
    free(tok_dump);
    scp_config_free(&c);
    scp_st_writer_free(w);
    return rc;
}

/* ---- --info -------------------------------------------------------------------------------------------- */
json_t *scp_import_info(const scp_import *im)
{
    const scp_model_config *c = &im->cfg;
    json_t *j = json_object();
    json_object_set_new(j, "source", json_string(im->source));
    json_object_set_new(j, "format", json_string(im->kind));
    json_object_set_new(j, "architecture", json_string(scp_arch_name(c->arch)));
    scp_param_desc *d;
    int nd = scp_param_table(c, &d);
    int64_t groups[SCP_GROUP_COUNT] = {0}, total = 0;
    for (int i = 0; i < nd; i++) groups[d[i].group] += d[i].numel, total += d[i].numel;
    free(d);
    json_t *p = json_object();
    static const char *names[SCP_GROUP_COUNT] = {"embeddings", "attention", "mlp", "experts", "router", "norms"};
    for (int g = 0; g < SCP_GROUP_COUNT; g++) json_object_set_new(p, names[g], json_integer(groups[g]));
    json_object_set_new(p, "total", json_integer(total));
    json_object_set_new(j, "parameters", p);
    json_object_set_new(j, "layers", json_integer(c->num_layers));
    json_object_set_new(j, "heads", json_integer(c->num_heads));
    json_object_set_new(j, "kv_heads", json_integer(c->num_kv_heads));
    json_object_set_new(j, "head_dim", json_integer(c->head_dim));
    json_object_set_new(j, "hidden", json_integer(c->hidden_size));
    json_object_set_new(j, "intermediate", json_integer(c->num_experts ? c->moe_intermediate_size : c->intermediate_size));
    if (c->num_experts) {
        json_object_set_new(j, "experts", json_integer(c->num_experts));
        json_object_set_new(j, "experts_per_token", json_integer(c->num_experts_per_tok));
    }
    json_object_set_new(j, "vocab", json_integer(c->vocab_size));
    json_object_set_new(j, "tokenizer_vocab", json_integer(im->tok_vocab));
    json_object_set_new(j, "mask_token_id", c->mask_token_id >= 0 ? json_integer(c->mask_token_id) : json_null());
    /* The dtype of the weights: one name, or "mixed". */
    const char *dt = im->n ? scp_dtype_name(im->t[0].dtype) : "none";
    for (int i = 1; i < im->n; i++)
        if (im->t[i].dtype != im->t[0].dtype) dt = "mixed";
    json_object_set_new(j, "dtype", json_string(dt));
    json_object_set_new(j, "tied", json_boolean(c->tie_word_embeddings));
    json_object_set_new(j, "causal", json_boolean(c->causal));
    static const char *forms[] = {"none", "tokenizer.json", "tokenizer.bin"};
    json_object_set_new(j, "tokenizer", json_string(forms[im->tok_form]));
    return j;
}

void scp_import_free(scp_import *im)
{
    for (int i = 0; i < im->n; i++) free(im->t[i].owned);
    free(im->t);
    for (int i = 0; i < im->nst; i++) scp_st_close(&im->st[i]);
    free(im->st);
    scp_gguf_close(&im->gguf);
    if (im->bin.data) scp_unmap(&im->bin);
    if (im->tok_json) json_decref(im->tok_json);
    if (im->tok_config) json_decref(im->tok_config);
    for (int i = 0; i < im->ncopy; i++) free(im->copy_files[i]);
    free(im->copy_files);
    free(im->tok_bin);
    free(im->tok_what);
    free(im->tok_json_path);
    free(im->tok_config_path);
    free(im->source);
    scp_config_free(&im->cfg);
    memset(im, 0, sizeof *im);
}

int scp_import_open(scp_import *im, const char *source, const char *tokenizer_bin)
{
    memset(im, 0, sizeof *im);
    if (scp_is_dir(source)) {
        if (tokenizer_bin) return scp_error("%s: --tokenizer is for llama2.c checkpoints; an HF directory carries its own", source);
        return scp_import_hf(im, source);
    }
    FILE *f = scp_fopen_in(source);
    if (!f) return -1;
    uint8_t head[8] = {0};
    size_t got = fread(head, 1, sizeof head, f);
    scp_fclose_in(f);
    size_t n = strlen(source);
    int gguf_name = n > 5 && strcmp(source + n - 5, ".gguf") == 0;
    if ((got >= 4 && (memcmp(head, "GGUF", 4) == 0 || memcmp(head, "FUGG", 4) == 0)) || gguf_name) {
        if (tokenizer_bin) return scp_error("%s: --tokenizer is for llama2.c checkpoints; a GGUF file carries its own vocabulary", source);
        return scp_import_gguf(im, source);
    }
    if (got < 8) return scp_error("%s: too short to be a GGUF file or a llama2.c checkpoint", source);
    return scp_import_llama2c(im, source, tokenizer_bin);
}
