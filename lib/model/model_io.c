/* model/model_io.c: a checkpoint directory <-> scp_model: config.json (formats/model_config.c) and model.safetensors (or the
 * shards named by model.safetensors.index.json, as large HF models ship), in HF tensor names and layouts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "model/model.h"
#include "formats/safetensors.h"
#include "formats/st_set.h"

/* Tensors a HF checkpoint may carry that are not parameters. */
static int ignorable(const scp_model *m, const char *name)
{
    size_t n = strlen(name);
    const char *suf = "rotary_emb.inv_freq";
    if (n >= strlen(suf) && strcmp(name + n - strlen(suf), suf) == 0) return 1;
    if (m->cfg.tie_word_embeddings && strcmp(name, "lm_head.weight") == 0) return 1;   /* a copy of the embedding */
    int l, e, len = 0;   /* another expert-parallel rank's expert */
    if (m->cfg.expert_ranks > 1 && sscanf(name, "model.layers.%d.mlp.experts.%d.%n", &l, &e, &len) == 2 && len > 0 &&
        l >= 0 && l < m->cfg.num_layers && e >= 0 && e < m->cfg.num_experts)
        return 1;
    return 0;
}

/* Copy every parameter found in one safetensors file; mark found[i]. */
static int load_file(scp_model *m, const char *path, const char *shown, char *found)
{
    scp_st_file f;
    if (scp_st_open(&f, path) < 0) return -1;
    int rc = 0;
    for (int t = 0; t < f.n && rc == 0; t++) {
        const scp_tensor_info *ti = &f.t[t];
        int i = scp_model_find(m, ti->name);
        if (i < 0) {
            if (ignorable(m, ti->name)) continue;
            rc = scp_error("%s: tensor '%s' is not a parameter of this %s configuration (config.json)", shown, ti->name,
                           scp_arch_name(m->cfg.arch));
            break;
        }
        const scp_param_desc *d = &m->desc[i];
        int same = ti->ndim == d->ndim;
        for (int k = 0; same && k < d->ndim; k++) same = ti->shape[k] == d->shape[k];
        if (!same) {
            char a[64], b[64];
            rc = scp_error("%s: tensor '%s' has shape %s, config.json says %s", shown, ti->name,
                           scp_shape_str(a, sizeof a, ti->ndim, ti->shape), scp_shape_str(b, sizeof b, d->ndim, d->shape));
            break;
        }
        if (!scp_dtype_is_float(ti->dtype) || scp_convert_to_f32(scp_model_param(m, i), ti->data, ti->dtype, (size_t)d->numel) < 0) {
            rc = scp_error("%s: tensor '%s' has dtype %s (expected F32, F16, BF16 or F64)", shown, ti->name,
                           scp_dtype_name(ti->dtype));
            break;
        }
        found[i] = 1;
    }
    scp_st_close(&f);
    return rc;
}

scp_model *scp_model_load(const char *dir, const char *backend) { return scp_model_load_experts(dir, backend, 1, 0); }

scp_model *scp_model_load_experts(const char *dir, const char *backend, int expert_ranks, int expert_rank)
{
    scp_model_config cfg;
    char *cpath = scp_path_join(dir, "config.json");
    int rc = scp_config_load(&cfg, cpath);
    free(cpath);
    if (rc < 0) return NULL;
    cfg.expert_ranks = expert_ranks, cfg.expert_rank = expert_rank;
    scp_model *m = scp_model_new(&cfg, backend);
    scp_config_free(&cfg);
    if (!m) {
        scp_error_prefix("%s", dir);
        return NULL;
    }
    char *found = scp_xcalloc((size_t)m->n_params, 1);
    char *single = scp_path_join(dir, "model.safetensors"), *index = scp_path_join(dir, "model.safetensors.index.json");
    const char *missing_in = single;
    rc = 0;
    if (!scp_file_exists(single) && scp_file_exists(index)) {
        char **files = NULL;
        int nf = 0;
        missing_in = index;
        rc = scp_st_index_files(index, &files, &nf);
        for (int k = 0; rc == 0 && k < nf; k++) {
            char *p = scp_path_join(dir, files[k]);
            rc = load_file(m, p, p, found);
            free(p);
        }
        for (int k = 0; k < nf; k++) free(files[k]);
        free(files);
    } else {
        rc = load_file(m, single, single, found);
    }
    for (int i = 0; rc == 0 && i < m->n_params; i++)
        if (!found[i]) rc = scp_error("%s: tensor '%s' is missing (config.json needs it)", missing_in, m->desc[i].name);
    free(single);
    free(index);
    free(found);
    if (rc < 0) {
        scp_model_free(m);
        return NULL;
    }
    scp_model_weights_changed(m);
    return m;
}

int scp_model_save(const scp_model *m, const char *dir, scp_dtype dtype)
{
    if (dtype != SCP_F32 && dtype != SCP_BF16) return scp_error("%s: checkpoints are written as F32 or BF16", dir);
    scp_model_sync_host(m);   /* a device backend's weights come down */
    char *cpath = scp_path_join(dir, "config.json");
    int rc = scp_config_save(&m->cfg, cpath);
    free(cpath);
    if (rc < 0) return -1;
    scp_st_writer *w = scp_st_writer_new();
    scp_st_set_metadata(w, "format", "pt");
    for (int i = 0; i < m->n_params; i++) {
        const scp_param_desc *d = &m->desc[i];
        const float *p = m->weights + m->offset[i];
        if (dtype == SCP_F32) {
            scp_st_add(w, d->name, SCP_F32, d->ndim, d->shape, p);
        } else {
            uint16_t *h = scp_xmalloc((size_t)d->numel * sizeof *h);
            scp_convert_from_f32(h, SCP_BF16, p, (size_t)d->numel);
            scp_st_add_owned(w, d->name, SCP_BF16, d->ndim, d->shape, h);
        }
    }
    char *spath = scp_path_join(dir, "model.safetensors");
    rc = scp_st_write(w, spath);
    free(spath);
    scp_st_writer_free(w);
    return rc;
}
