/* convert/export.c: open a checkpoint for export, and the Hugging Face directory form (convert/export_gguf.c: GGUF). */
#include "convert/export.h"
#include "convert/hf_modeling.h"
#include "formats/checkpoint.h"
#include "core/error.h"
#include "core/io.h"
#include "tok/tokjson_write.h"

#include <stdlib.h>
#include <string.h>

int scp_export_open(scp_export_src *s, const char *dir)
{
    memset(s, 0, sizeof *s);
    s->dir = scp_xstrdup(dir);
    if (!scp_is_dir(dir)) return scp_error("%s: not a checkpoint directory", dir);
    char *p = scp_path_join(dir, "config.json");
    int rc = scp_config_load(&s->cfg, p);
    free(p);
    if (rc) return -1;
    p = scp_path_join(dir, "model.safetensors");
    rc = scp_st_open(&s->st, p);
    if (rc) {
        free(p);
        return -1;
    }
    s->n = scp_param_table(&s->cfg, &s->desc);
    s->t = scp_xcalloc((size_t)s->n, sizeof *s->t);
    int used = 0;
    char b1[64], b2[64];
    for (int i = 0; i < s->n && !rc; i++) {
        const scp_param_desc *d = &s->desc[i];
        const scp_tensor_info *t = scp_st_find(&s->st, d->name);
        if (!t) {
            rc = scp_error("%s: tensor '%s' is missing (config.json says a %s model has it)", p, d->name, scp_arch_name(s->cfg.arch));
            break;
        }
        int same = t->ndim == d->ndim;
        for (int k = 0; same && k < d->ndim; k++) same = t->shape[k] == d->shape[k];
        if (!same)
            rc = scp_error("%s: tensor '%s' has shape %s, config.json says %s", p, d->name, scp_shape_str(b1, sizeof b1, t->ndim, t->shape),
                           scp_shape_str(b2, sizeof b2, d->ndim, d->shape));
        else if (t->dtype != SCP_F32 && t->dtype != SCP_F16 && t->dtype != SCP_BF16)
            rc = scp_error("%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", p, d->name, scp_dtype_name(t->dtype));
        s->t[i] = t;
        used++;
    }
    if (!rc && used != s->st.n) {
        /* A tensor the table does not name (a tied model's lm_head is the one tolerated). */
        for (int k = 0; k < s->st.n && !rc; k++) {
            int known = 0;
            for (int i = 0; i < s->n && !known; i++) known = s->t[i] == &s->st.t[k];
            if (!known && !(s->cfg.tie_word_embeddings && strcmp(s->st.t[k].name, "lm_head.weight") == 0))
                rc = scp_error("%s: tensor '%s' is not part of a %s model", p, s->st.t[k].name, scp_arch_name(s->cfg.arch));
        }
    }
    free(p);
    return rc;
}

void scp_export_close(scp_export_src *s)
{
    if (s->st.t) scp_st_close(&s->st);
    scp_config_free(&s->cfg);
    free(s->desc);
    free(s->t);
    free(s->dir);
    memset(s, 0, sizeof *s);
}

/* The tensor's bytes in dtype dt: the original bytes when already dt (bit-exact), else a converted copy
 * (*owned set, to be freed). */
static const void *as_dtype(const scp_tensor_info *t, scp_dtype dt, void **owned)
{
    *owned = NULL;
    if (t->dtype == dt) return t->data;
    float *f = scp_xmalloc((size_t)t->numel * sizeof(float));
    scp_convert_to_f32(f, t->data, t->dtype, (size_t)t->numel);
    if (dt == SCP_F32) return *owned = f;
    void *o = scp_xmalloc((size_t)t->numel * scp_dtype_size(dt));
    scp_convert_from_f32(o, dt, f, (size_t)t->numel);
    free(f);
    return *owned = o;
}

/* transformers loads the model through the modeling code written beside it (trust_remote_code): auto_map names
 * its classes, architectures the masked-LM head. */
static void set_auto_map(json_t *raw)
{
    json_t *m = json_object();
    json_object_set_new(m, "AutoConfig", json_string("modeling_scp.SCPConfig"));
    json_object_set_new(m, "AutoModel", json_string("modeling_scp.SCPModel"));
    json_object_set_new(m, "AutoModelForMaskedLM", json_string("modeling_scp.SCPForMaskedLM"));
    json_object_set_new(raw, "auto_map", m);
    json_t *a = json_array();
    json_array_append_new(a, json_string("SCPForMaskedLM"));
    json_object_set_new(raw, "architectures", a);
}

int scp_export_hf(const scp_export_src *s, const scp_export_opts *o, const char *out_dir)
{
    scp_dtype dt = o->dtype == SCP_DTYPE_INVALID ? SCP_F32 : o->dtype;
    if (dt != SCP_F32 && dt != SCP_BF16) return scp_error("--dtype %s: the HF form is written in F32 or BF16", scp_dtype_name(dt));
    scp_model_config c;
    scp_config_copy(&c, &s->cfg);
    if (o->causal >= 0) c.causal = o->causal;
    if (o->shift >= 0) c.shift_logits = o->shift;
    json_object_set_new(c.raw, "torch_dtype", json_string(scp_torch_dtype_name(dt)));
    set_auto_map(c.raw);
    scp_st_writer *w = scp_st_writer_new();
    for (int i = 0; i < s->n; i++) {
        void *owned;
        const void *data = as_dtype(s->t[i], dt, &owned);
        if (owned) scp_st_add_owned(w, s->desc[i].name, dt, s->desc[i].ndim, s->desc[i].shape, owned);
        else scp_st_add(w, s->desc[i].name, dt, s->desc[i].ndim, s->desc[i].shape, data);
    }
    scp_ckpt_file files[20];   /* the tokenizer files, tokenizer.json and its config, the modeling code */
    char *paths[16];
    int nf = 0;
    /* a tokenizer.bin gets a tokenizer.json (and a completed tokenizer_config.json) beside it */
    char *tok_json = NULL;
    json_t *tok_cfg = NULL;
    int made = scp_tok_export_hf(s->dir, &tok_json, &tok_cfg);
    if (made < 0) {   /* the weights still export; the tokenizer files are copied as they are */
        scp_warn("%s (no tokenizer.json written; the tokenizer files are copied as they are)", scp_last_error());
        made = 0;
    }
    for (int i = 0; scp_checkpoint_tokenizer_files[i] && nf < 16; i++) {
        char *p = scp_path_join(s->dir, scp_checkpoint_tokenizer_files[i]);
        if (made && strcmp(scp_checkpoint_tokenizer_files[i], "tokenizer_config.json") == 0) {
            free(p);
            continue;
        }
        if (!scp_file_exists(p)) {
            free(p);
            continue;
        }
        paths[nf] = p;
        files[nf] = (scp_ckpt_file){.name = scp_checkpoint_tokenizer_files[i], .copy_from = p};
        nf++;
    }
    int ncopy = nf;
    if (made) {
        files[nf++] = (scp_ckpt_file){.name = "tokenizer.json", .data = tok_json, .len = strlen(tok_json)};
        files[nf++] = (scp_ckpt_file){.name = "tokenizer_config.json", .json = tok_cfg};
    }
    files[nf++] = (scp_ckpt_file){.name = SCP_HF_MODELING_FILE, .data = scp_hf_modeling_py, .len = scp_hf_modeling_py_len};
    int rc = scp_checkpoint_write(out_dir, o->replace, &c, w, files, nf);
    for (int i = 0; i < ncopy; i++) free(paths[i]);
    free(tok_json);
    json_decref(tok_cfg);
    scp_st_writer_free(w);
    scp_config_free(&c);
    return rc;
}
