/* grad-helper.c: the C side of tests/model/grad-check.py. Loads a checkpoint directory and a batch (safetensors:
 * input, target, weight (B, T); optional doc (B, T); metadata attn = causal | bidirectional | anneal, anneal_p,
 * anneal_seed), runs one forward + backward on the CPU backend (or $SCP_TEST_BACKEND), and writes OUT (safetensors):
 *   loss (1) F64, token_nll (B, T), logits (B, T, V) from scp_model_logits, mask (B, T, T) U8 (the visibility
 *   the model used), grad.NAME for every parameter;
 * with --adamw, also two AdamW steps (lr = 1e-3 times a per-group factor, weight decay 0.1 where the table says
 * so, betas 0.9/0.95, eps 1e-8): grad2.NAME (the gradients at the weights after step 1) and adam.NAME (the
 * weights after step 2), so the script can replay the optimizer in PyTorch on the same gradients. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "formats/safetensors.h"

static const scp_tensor_info *need(const scp_st_file *f, const char *name, scp_dtype dt)
{
    const scp_tensor_info *t = scp_st_find(f, name);
    if (!t || t->dtype != dt || t->ndim != 2) scp_die("batch: tensor '%s' missing or not a 2-d %s", name, scp_dtype_name(dt));
    return t;
}

/* Per-group learning-rate factors the script mirrors (embed, attn, mlp, expert, router, norm). */
static const float group_lr[SCP_GROUP_COUNT] = {1.0f, 2.0f, 0.5f, 0.5f, 1.0f, 1.5f};

/* Every parameter's slice of v (n_weights floats: gradients or weights) as tensor "PREFIX.NAME" of w. */
static void add_params(scp_st_writer *w, const scp_model *m, const float *v, const char *prefix)
{
    for (int i = 0; i < m->n_params; i++) {
        float *x = scp_xmalloc((size_t)m->desc[i].numel * sizeof *x);
        memcpy(x, v + m->offset[i], (size_t)m->desc[i].numel * sizeof *x);
        char name[160];
        snprintf(name, sizeof name, "%s.%s", prefix, m->desc[i].name);
        scp_st_add_owned(w, name, SCP_F32, m->desc[i].ndim, m->desc[i].shape, x);
    }
}

int main(int argc, char **argv)
{
    scp_set_progname(argv[0]);
    if (argc < 4) {
        fprintf(stderr, "usage: grad-helper CKPT BATCH.safetensors OUT.safetensors [--adamw]\n");
        return 2;
    }
    int adamw = argc > 4 && strcmp(argv[4], "--adamw") == 0;
    scp_set_threads(0);
    const char *backend = getenv("SCP_TEST_BACKEND");   /* grad-check-bf16.sh: "cpu-bf16" */
    scp_model *m = scp_model_load(argv[1], backend && *backend ? backend : "cpu");
    if (!m) scp_die_last();
    scp_st_file bf;
    if (scp_st_open(&bf, argv[2]) < 0) scp_die_last();
    const scp_tensor_info *in = need(&bf, "input", SCP_I32), *tg = need(&bf, "target", SCP_I32), *wt = need(&bf, "weight", SCP_F32);
    const scp_tensor_info *doc = scp_st_find(&bf, "doc");
    int B = (int)in->shape[0], T = (int)in->shape[1], V = m->cfg.vocab_size;
    /* The mapping may be unaligned for int32/float: copy. */
    int32_t *input = scp_xmalloc(in->nbytes), *target = scp_xmalloc(tg->nbytes), *docs = NULL;
    float *weight = scp_xmalloc(wt->nbytes);
    memcpy(input, in->data, in->nbytes), memcpy(target, tg->data, tg->nbytes), memcpy(weight, wt->data, wt->nbytes);
    if (doc) docs = scp_xmalloc(doc->nbytes), memcpy(docs, doc->data, doc->nbytes);
    scp_batch b = {.B = B, .T = T, .input = input, .target = target, .weight = weight, .doc = docs};
    json_t *md = bf.metadata;
    const char *attn = md ? json_string_value(json_object_get(md, "attn")) : NULL;
    b.attn = !attn || strcmp(attn, "causal") == 0 ? SCP_ATTN_CAUSAL
             : strcmp(attn, "bidirectional") == 0 ? SCP_ATTN_BIDIRECTIONAL : SCP_ATTN_ANNEAL;
    if (b.attn == SCP_ATTN_ANNEAL) {
        b.anneal_p = (float)atof(json_string_value(json_object_get(md, "anneal_p")));
        b.anneal_seed = strtoull(json_string_value(json_object_get(md, "anneal_seed")), NULL, 10);
    }

    scp_st_writer *w = scp_st_writer_new();
    scp_model_zero_grad(m);
    float *nll = scp_xmalloc((size_t)B * T * sizeof *nll);
    double *loss = scp_xmalloc(sizeof *loss);
    *loss = scp_model_step(m, &b, 1, nll);
    if (isnan(*loss)) scp_die_last();
    float *logits = scp_xmalloc((size_t)B * T * V * sizeof *logits);
    if (scp_model_logits(m, &b, logits) < 0) scp_die_last();
    uint8_t *mask = scp_xmalloc((size_t)B * T * T);
    for (int bi = 0; bi < B; bi++)
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) mask[((size_t)bi * T + i) * T + j] = (uint8_t)scp_attn_visible(&b, bi, i, j);
    int64_t s1[1] = {1}, s2[2] = {B, T}, s3[3] = {B, T, V}, sm[3] = {B, T, T};
    scp_st_add_owned(w, "loss", SCP_F64, 1, s1, loss);
    scp_st_add_owned(w, "token_nll", SCP_F32, 2, s2, nll);
    scp_st_add_owned(w, "logits", SCP_F32, 3, s3, logits);
    scp_st_add_owned(w, "mask", SCP_U8, 3, sm, mask);
    scp_model_sync_host(m);
    add_params(w, m, m->grads, "grad");
    if (adamw) {
        float *om = scp_xcalloc((size_t)m->n_weights, sizeof(float)), *ov = scp_xcalloc((size_t)m->n_weights, sizeof(float));
        float *lr = scp_xmalloc((size_t)m->n_params * sizeof *lr);
        for (int i = 0; i < m->n_params; i++) lr[i] = 1e-3f * group_lr[m->desc[i].group];
        scp_model_adamw(m, om, ov, lr, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
        scp_model_zero_grad(m);
        if (isnan(scp_model_step(m, &b, 1, NULL))) scp_die_last();
        scp_model_sync_host(m);
        add_params(w, m, m->grads, "grad2");
        scp_model_adamw(m, om, ov, lr, 0.9f, 0.95f, 1e-8f, 0.1f, 2);
        scp_model_sync_host(m);
        add_params(w, m, m->weights, "adam");
        free(om), free(ov), free(lr);
    }
    if (scp_st_write(w, argv[3]) < 0) scp_die_last();
    scp_st_writer_free(w);
    scp_st_close(&bf);
    scp_model_free(m);
    free(input), free(target), free(weight), free(docs);
    return 0;
}
