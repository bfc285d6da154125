/* moe-helper.c: the C side of tests/model/moe-grad-check.py. Loads a (qwen3_moe) checkpoint directory and a batch
 * (safetensors: input, target, weight (B, T) as grad-helper.c; metadata attn = causal | bidirectional), runs one
 * training step's forward + backward and writes OUT (safetensors):
 *   loss (1) F64 = the weighted cross-entropy + AUX * aux + Z * z, ce, aux, z (1) F64 (model/moe.h),
 *   load (E) I64, logits (B, T, V), grad.NAME for every parameter,
 *   recompute_same (1) I32: 1 when the step with --recompute gave bitwise the same loss and gradients.
 * Options: --backend NAME (cpu), --aux COEF, --z COEF, --micro N (micro-batches of N sequences, each with
 * share N / B, as the trainer does). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "model/moe.h"
#include "formats/safetensors.h"

static const scp_tensor_info *need(const scp_st_file *f, const char *name, scp_dtype dt)
{
    const scp_tensor_info *t = scp_st_find(f, name);
    if (!t || t->dtype != dt || t->ndim != 2) scp_die("batch: tensor '%s' missing or not a 2-d %s", name, scp_dtype_name(dt));
    return t;
}

/* One step over micro-batches of `micro` sequences; returns the total loss (with the auxiliary terms). */
static double step(scp_model *m, const scp_batch *b, int micro, double aux_c, double z_c, double *ce_out)
{
    scp_model_zero_grad(m);
    scp_model_moe_reset_stats(m);
    double ce = 0.0;
    for (int r0 = 0; r0 < b->B; r0 += micro) {
        int n = b->B - r0 < micro ? b->B - r0 : micro;
        size_t o = (size_t)r0 * b->T;
        scp_batch v = *b;
        v.B = n, v.input = b->input + o, v.target = b->target + o, v.weight = b->weight + o;
        scp_model_moe_set_share(m, (double)n / b->B);
        double l = scp_model_step(m, &v, 1, NULL);
        if (isnan(l)) scp_die_last();
        ce += l;
    }
    double aux, z;
    scp_model_moe_stats(m, NULL, &aux, &z);
    *ce_out = ce;
    return ce + aux_c * aux + z_c * z;
}

int main(int argc, char **argv)
{
    scp_set_progname(argv[0]);
    if (argc < 4) {
        fprintf(stderr, "usage: moe-helper CKPT BATCH.safetensors OUT.safetensors [--backend B] [--aux C] [--z C] [--micro N]\n");
        return 2;
    }
    const char *backend = "cpu";
    double aux_c = 0, z_c = 0;
    int micro = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--backend") == 0) backend = argv[i + 1];
        else if (strcmp(argv[i], "--aux") == 0) aux_c = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--z") == 0) z_c = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--micro") == 0) micro = atoi(argv[i + 1]);
        else scp_die("unknown option %s", argv[i]);
    }
    scp_set_threads(0);
    scp_model *m = scp_model_load(argv[1], backend);
    if (!m) scp_die_last();
    scp_model_moe_set_losses(m, aux_c, z_c);
    scp_st_file bf;
    if (scp_st_open(&bf, argv[2]) < 0) scp_die_last();
    const scp_tensor_info *in = need(&bf, "input", SCP_I32), *tg = need(&bf, "target", SCP_I32), *wt = need(&bf, "weight", SCP_F32);
    int B = (int)in->shape[0], T = (int)in->shape[1], V = m->cfg.vocab_size;
    int32_t *input = scp_xmalloc(in->nbytes), *target = scp_xmalloc(tg->nbytes);
    float *weight = scp_xmalloc(wt->nbytes);
    memcpy(input, in->data, in->nbytes), memcpy(target, tg->data, tg->nbytes), memcpy(weight, wt->data, wt->nbytes);
    scp_batch b = {.B = B, .T = T, .input = input, .target = target, .weight = weight};
    json_t *md = bf.metadata;
    const char *attn = md ? json_string_value(json_object_get(md, "attn")) : NULL;
    b.attn = !attn || strcmp(attn, "causal") == 0 ? SCP_ATTN_CAUSAL : SCP_ATTN_BIDIRECTIONAL;
    if (micro < 1 || micro > B) micro = B;

    scp_st_writer *w = scp_st_writer_new();
    double *loss = scp_xmalloc(sizeof *loss), *ce = scp_xmalloc(sizeof *ce), *aux = scp_xmalloc(sizeof *aux),
           *z = scp_xmalloc(sizeof *z);
    *loss = step(m, &b, micro, aux_c, z_c, ce);
    int E = scp_model_moe_stats(m, NULL, aux, z);
    int64_t *load = scp_xcalloc((size_t)(E ? E : 1), sizeof *load);
    scp_model_moe_stats(m, load, NULL, NULL);
    float *g1 = scp_xmalloc((size_t)m->n_weights * sizeof *g1);
    memcpy(g1, scp_model_host_grads(m), (size_t)m->n_weights * sizeof *g1);

    /* The same step with recomputation: bitwise the same. */
    scp_model_set_recompute(m, 1);
    double ce2, loss2 = step(m, &b, micro, aux_c, z_c, &ce2);
    int32_t *same = scp_xmalloc(sizeof *same);
    *same = loss2 == *loss && memcmp(g1, scp_model_host_grads(m), (size_t)m->n_weights * sizeof *g1) == 0;
    scp_model_set_recompute(m, 0);

    float *logits = scp_xmalloc((size_t)B * T * V * sizeof *logits);
    if (scp_model_logits(m, &b, logits) < 0) scp_die_last();
    int64_t s1[1] = {1}, sE[1] = {E ? E : 1}, s3[3] = {B, T, V};
    scp_st_add_owned(w, "loss", SCP_F64, 1, s1, loss);
    scp_st_add_owned(w, "ce", SCP_F64, 1, s1, ce);
    scp_st_add_owned(w, "aux", SCP_F64, 1, s1, aux);
    scp_st_add_owned(w, "z", SCP_F64, 1, s1, z);
    scp_st_add_owned(w, "load", SCP_I64, 1, sE, load);
    scp_st_add_owned(w, "recompute_same", SCP_I32, 1, s1, same);
    scp_st_add_owned(w, "logits", SCP_F32, 3, s3, logits);
    for (int i = 0; i < m->n_params; i++) {
        float *g = scp_xmalloc((size_t)m->desc[i].numel * sizeof *g);
        memcpy(g, g1 + m->offset[i], (size_t)m->desc[i].numel * sizeof *g);
        char name[160];
        snprintf(name, sizeof name, "grad.%s", m->desc[i].name);
        scp_st_add_owned(w, name, SCP_F32, m->desc[i].ndim, m->desc[i].shape, g);
    }
    if (scp_st_write(w, argv[3]) < 0) scp_die_last();
    scp_st_writer_free(w);
    scp_st_close(&bf);
    scp_model_free(m);
    free(g1), free(input), free(target), free(weight);
    return 0;
}
