/* train_step.c: one optimizer step: batch, forward/backward over micro-batches, clipping, AdamW. */
#include "train_step.h"
#include "error.h"
#include "mask.h"
#include "train_sched.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void scp_trainer_init(scp_trainer *t, scp_model *m, const scp_train_opts *o, scp_train_state *st,
                      const scp_seq_source *src, int B, int micro, float *opt_m, float *opt_v, int32_t mask_id,
                      int shift)
{
    memset(t, 0, sizeof *t);
    t->m = m;
    t->o = o;
    t->st = st;
    t->src = src;
    t->B = B;
    t->micro = micro > 0 && micro < B ? micro : B;
    t->T = src->T;
    t->opt_m = opt_m;
    t->opt_v = opt_v;
    t->spec = (scp_mdm_spec){.seed = o->seed, .mask_id = mask_id, .shift = shift, .doc_mask = o->doc_mask,
                             .sched = o->mask_schedule};
    scp_data_order_init(&t->order, src->n, o->seed, o->shuffle);
    t->ts = scp_xmalloc(sizeof *t->ts * (size_t)B);
    t->plr = scp_xmalloc(sizeof *t->plr * (size_t)m->n_params);
}

void scp_trainer_free(scp_trainer *t)
{
    scp_batch_free(&t->b);
    scp_data_order_free(&t->order);
    free(t->ts);
    free(t->plr);
    t->ts = NULL;
    t->plr = NULL;
}

int scp_trainer_step(scp_trainer *t, scp_step_info *info)
{
    const scp_train_opts *o = t->o;
    scp_train_state *st = t->st;
    scp_train_batch *b = &t->b;
    int B = t->B;
    if (scp_batch_fetch(b, t->src, &t->order, st->cursor, B)) return -1;
    if (o->objective == SCP_OBJ_MDM) {
        scp_mask_sample_t(o->t_sampler, o->seed, (uint64_t)st->step, B, o->t_eps, t->ts);
        for (int r = 0; r < B; r++) scp_batch_mdm_row(b, r, t->ts[r], (uint64_t)(st->cursor + r), &t->spec);
        scp_batch_weights(b, o->objective, o->loss_norm, o->mask_schedule, 1.0 / B);
    } else {
        int64_t ntg = 0;
        for (int r = 0; r < B; r++) {
            scp_batch_ar_row(b, r, o->doc_mask);
            ntg += b->n_scored[r];
        }
        scp_batch_weights(b, o->objective, o->loss_norm, o->mask_schedule, ntg ? 1.0 / (double)ntg : 0.0);
    }
    scp_attn_mode attn = o->attn;
    float anneal_p = 0;
    if (attn == SCP_ATTN_ANNEAL) {
        double p = (double)st->step / (double)o->anneal_steps;
        if (p >= 1) attn = SCP_ATTN_BIDIRECTIONAL;
        else anneal_p = (float)p;
    }

    scp_model *m = t->m;
    scp_model_zero_grad(m);
    double loss = 0;
    for (int r0 = 0; r0 < B; r0 += t->micro) {
        int nb = B - r0 < t->micro ? B - r0 : t->micro;
        uint64_t aseed = attn == SCP_ATTN_ANNEAL ? scp_rng_u64(&st->rng) : 0;
        scp_batch v = scp_batch_view(b, r0, nb, o->doc_mask, attn, anneal_p, aseed);
        loss += scp_model_step(m, &v, 1, NULL);
    }
    double gnorm = scp_model_grad_norm(m);
    int skip = !isfinite(loss) || !isfinite(gnorm);
    scp_group_lr(o, st->step, st->total_steps, t->glr);
    if (skip) {
        st->skipped++;
    } else {
        if (o->clip > 0 && gnorm > o->clip) scp_model_scale_grads(m, (float)(o->clip / gnorm));
        scp_param_lr(m->desc, m->n_params, t->glr, t->plr);
        st->adam_step++;
        scp_model_adamw(m, t->opt_m, t->opt_v, t->plr, (float)o->beta1, (float)o->beta2, (float)o->adam_eps,
                        (float)o->weight_decay, st->adam_step);
    }
    int64_t masked = 0, maskable = 0;
    for (int r = 0; r < B; r++) masked += b->n_scored[r], maskable += b->n_len[r];
    st->cursor += B;
    st->tokens += (int64_t)B * t->T;
    st->step++;
    info->loss = loss;
    info->grad_norm = gnorm;
    info->masked_fraction = maskable ? (double)masked / (double)maskable : 0.0;
    info->skipped = skip;
    return 0;
}
