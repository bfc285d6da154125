/* train/step.c: one optimizer step: batch, forward/backward over micro-batches, clipping, AdamW. */
#include "train/step.h"
#include "model/backend.h"
#include "dist/expert.h"
#include "dist/fsdp.h"
#include "dist/zero.h"
#include "core/error.h"
#include "data/mask.h"
#include "model/moe.h"
#include "train/schedule.h"

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
    t->aseeds = scp_xmalloc(sizeof *t->aseeds * (size_t)B);   /* room for micro-batches of one sequence */
    t->capacity = B;
    int E = scp_model_moe_stats(m, NULL, NULL, NULL);
    t->moe_load = E ? scp_xcalloc((size_t)E, sizeof *t->moe_load) : NULL;
    scp_model_moe_set_losses(m, o->aux_loss, o->z_loss);
    scp_grad_stats_init(&t->gstats, m, o->grad_stats, &st->noise);
}

/* The gradient hook: queue the all-reduce of a range of device gradients that the backward has finished. */
static void nccl_hook(void *ctx, float *grads, int64_t off, int64_t n)
{
    scp_trainer *t = ctx;
    if (!t->nccl_failed && n > 0 && scp_dist_nccl_allreduce_f32(t->dist, grads + off, n, NULL)) t->nccl_failed = 1;
}

void scp_trainer_set_dist(scp_trainer *t, scp_dist *d, scp_zero1 *zero1)
{
    t->dist = d && (d->world > 1 || d->nccl) ? d : NULL;
    t->zero1 = t->dist && d->world > 1 ? zero1 : NULL;
    t->nccl = t->dist && t->dist->nccl && !t->m->backend->host_memory;
    scp_model_set_grad_hook(t->m, t->nccl ? nccl_hook : NULL, t);
}

void scp_trainer_set_fsdp(scp_trainer *t, scp_fsdp *f)
{
    t->fsdp = f;
    t->dist = f->d->world > 1 ? f->d : NULL;
    t->zero1 = NULL;
    t->nccl = 0;
    t->gstats.sharded = 1;   /* the gradients exist only as shards (train/grad_stats.h) */
    scp_model_set_grad_hook(t->m, NULL, NULL);
}

void scp_trainer_set_experts(scp_trainer *t, scp_expert_par *ep)
{
    t->ep = ep;
    t->dist = ep->d->world > 1 ? ep->d : NULL;
    t->zero1 = NULL;
    t->nccl = 0;
    scp_model_set_grad_hook(t->m, NULL, NULL);
}

void scp_trainer_set_batch(scp_trainer *t, int B)
{
    if (B > t->capacity) {
        t->ts = scp_xrealloc(t->ts, sizeof *t->ts * (size_t)B);
        t->aseeds = scp_xrealloc(t->aseeds, sizeof *t->aseeds * (size_t)B);
        t->capacity = B;
    }
    t->B = B;
    t->micro = t->o->micro_batch > 0 && t->o->micro_batch < B ? t->o->micro_batch : B;
}

void scp_trainer_free(scp_trainer *t)
{
    scp_batch_free(&t->b);
    scp_data_order_free(&t->order);
    free(t->ts);
    free(t->plr);
    free(t->aseeds);
    free(t->moe_load);
    scp_grad_stats_free(&t->gstats, t->m);
    t->moe_load = NULL;
    t->aseeds = NULL;
    t->ts = NULL;
    t->plr = NULL;
}

/* The per-expert counts summed over ranks (exact in doubles below 2^53). */
static int moe_load_allreduce(scp_dist *d, int64_t *load, int E)
{
    double *x = scp_xmalloc((size_t)E * sizeof *x);
    for (int e = 0; e < E; e++) x[e] = (double)load[e];
    int rc = scp_dist_allreduce_sum_f64(d, x, E, "expert load all-reduce");
    for (int e = 0; e < E; e++) load[e] = (int64_t)x[e];
    free(x);
    return rc;
}

/* The share of the step's loss weight that the first n rows of this rank's batch carry: mdm weighs every sequence
 * 1/B, ar every target 1/ntg (the targets of the global batch). */
static double first_share(const scp_trainer *t, int n, double ntg)
{
    if (t->o->objective != SCP_OBJ_AR) return (double)n / t->B;
    double targets = 0;
    for (int r = 0; r < n; r++) targets += t->b.n_scored[r];
    return ntg ? targets / ntg : 0.0;
}

int scp_trainer_step(scp_trainer *t, scp_step_info *info)
{
    const scp_train_opts *o = t->o;
    scp_train_state *st = t->st;
    scp_train_batch *b = &t->b;
    scp_dist *d = t->dist;
    int B = t->B;
    /* This rank's rows [lo, lo + nb) of the global batch: everything drawn per row is keyed by the global row
     * (cursor + row), so the union over ranks is exactly the one-process batch. */
    int64_t lo = 0, hi = B;
    if (d) scp_dist_split(B, d->world, d->rank, &lo, &hi);
    int nb = (int)(hi - lo);
    double ntg = 0;   /* ar: targets in the global batch */
    if (scp_batch_fetch(b, t->src, &t->order, st->cursor + lo, nb)) return -1;
    if (o->objective == SCP_OBJ_MDM) {
        scp_mask_sample_t(o->t_sampler, o->seed, (uint64_t)st->step, B, o->t_eps, t->ts);
        for (int r = 0; r < nb; r++) scp_batch_mdm_row(b, r, t->ts[lo + r], (uint64_t)(st->cursor + lo + r), &t->spec);
        scp_batch_weights(b, o->objective, o->loss_norm, o->mask_schedule, 1.0 / B);
    } else {
        for (int r = 0; r < nb; r++) {
            scp_batch_ar_row(b, r, o->doc_mask);
            ntg += b->n_scored[r];
        }
        if (d && scp_dist_allreduce_sum_f64(d, &ntg, 1, "target count all-reduce")) return -1;
        scp_batch_weights(b, o->objective, o->loss_norm, o->mask_schedule, ntg ? 1.0 / ntg : 0.0);
    }
    scp_attn_mode attn = o->attn;
    float anneal_p = 0;
    if (attn == SCP_ATTN_ANNEAL) {
        double p = (double)st->step / (double)o->anneal_steps;
        if (p >= 1) attn = SCP_ATTN_BIDIRECTIONAL;
        else anneal_p = (float)p;
    }
    /* One annealing seed per micro-batch of the global batch, drawn by every rank (the RNG stays the same on
     * all ranks); a rank's micro-batch uses the seed of the global micro-batch it starts in. */
    int n_micro = (B + t->micro - 1) / t->micro;
    for (int k = 0; k < n_micro; k++) t->aseeds[k] = attn == SCP_ATTN_ANNEAL ? scp_rng_u64(&st->rng) : 0;

    scp_model *m = t->m;
    if (t->fsdp) scp_fsdp_zero_grad(t->fsdp);
    else scp_model_zero_grad(m);
    scp_model_moe_reset_stats(m);
    scp_grad_stats_begin(&t->gstats);
    double loss = 0;
    for (int r0 = 0; r0 < nb; r0 += t->micro) {
        int n = nb - r0 < t->micro ? nb - r0 : t->micro;
        scp_batch v = scp_batch_view(b, r0, n, o->doc_mask, attn, anneal_p, t->aseeds[(lo + r0) / t->micro]);
        if (t->nccl && r0 + t->micro >= nb) scp_model_arm_grad_hook(m);   /* the last micro-batch */
        scp_model_moe_set_share(m, (double)n / B);   /* MoE losses: each micro-batch weighs its share */
        loss += scp_model_step(m, &v, 1, NULL);
        /* The first micro-batch's gradient alone, unless an NCCL all-reduce already started on it; sharded, all
         * ranks' first micro-batches together (every rank makes as many micro-batches: n < nb on all or none). */
        if (r0 == 0 && t->gstats.on && !t->fsdp && (n < nb || (d && !t->nccl)))
            scp_grad_stats_small(&t->gstats, m, first_share(t, n, ntg));
        if (r0 == 0 && t->gstats.on && t->fsdp && n < nb) {
            double g;
            if (scp_fsdp_grad_norm(t->fsdp, &g) ||
                scp_grad_stats_small_shards(&t->gstats, d, g * g, first_share(t, n, ntg)))
                return -1;
        }
    }
    if (t->ep && scp_model_expert_exchange_failed(m)) return -1;
    double sums[5] = {loss, 0, 0, 0, 0};   /* loss, masked and maskable positions, MoE aux and z losses */
    int E = scp_model_moe_stats(m, t->moe_load, &sums[3], &sums[4]);
    for (int r = 0; r < nb; r++) sums[1] += b->n_scored[r], sums[2] += b->n_len[r];
    if (d) {
        /* The weights already carry 1/B (or 1/targets) of the global batch: the sum over ranks is the mean. */
        scp_dist_step_sync(d, st->step);
        if (scp_dist_allreduce_sum_f64(d, sums, 5, "loss all-reduce")) return -1;
        if (E && moe_load_allreduce(d, t->moe_load, E)) return -1;
        if (t->fsdp) {
            /* reduce-scattered unit by unit during each backward */
        } else if (t->ep) {
            if (scp_expert_par_reduce_grads(t->ep)) return -1;
        } else if (t->nccl) {   /* queued layer by layer during the backward: wait for the last */
            if (t->nccl_failed || scp_dist_nccl_wait(d)) return -1;
        } else if (t->zero1) {   /* in the backend's memory */
            if (scp_zero1_reduce_grads(t->zero1)) return -1;
        } else {
            if (scp_dist_allreduce_sum_f32(d, scp_model_host_grads(m), m->n_weights, "gradient all-reduce")) return -1;
            scp_model_grads_changed(m);
        }
    }
    loss = sums[0] + o->aux_loss * sums[3] + o->z_loss * sums[4];
    info->n_experts = E;
    info->expert_load = t->moe_load;
    info->aux_loss = sums[3];
    info->z_loss = sums[4];
    double gnorm;
    if (t->fsdp) {
        if (scp_fsdp_grad_norm(t->fsdp, &gnorm)) return -1;
    } else if (t->ep) {
        if (scp_expert_par_grad_norm(t->ep, &gnorm)) return -1;
    } else {
        gnorm = scp_model_grad_norm(m);
    }
    if (t->fsdp) scp_grad_stats_big_shards(&t->gstats, gnorm * gnorm, sums[1]);
    else if (scp_grad_stats_big(&t->gstats, m, d, sums[1])) return -1;
    int skip = !isfinite(loss) || !isfinite(gnorm);
    scp_step_group_lr(o, st, B, t->T, t->glr);
    if (skip) {
        st->skipped++;
    } else {
        if (o->clip > 0 && gnorm > o->clip) {
            if (t->fsdp) scp_fsdp_scale_grads(t->fsdp, (float)(o->clip / gnorm));
            else scp_model_scale_grads(m, (float)(o->clip / gnorm));
        }
        scp_param_lr(m->desc, m->n_params, t->glr, t->plr);
        st->adam_step++;
        scp_grad_stats_before_update(&t->gstats, m);
        if (t->fsdp) {
            if (scp_fsdp_adamw(t->fsdp, t->plr, (float)o->beta1, (float)o->beta2, (float)o->adam_eps,
                               (float)o->weight_decay, st->adam_step))
                return -1;
        } else if (t->zero1) {
            if (scp_zero1_adamw(t->zero1, t->plr, (float)o->beta1, (float)o->beta2, (float)o->adam_eps,
                                (float)o->weight_decay, st->adam_step))
                return -1;
        } else {
            scp_model_adamw(m, t->opt_m, t->opt_v, t->plr, (float)o->beta1, (float)o->beta2, (float)o->adam_eps,
                            (float)o->weight_decay, st->adam_step);
        }
        scp_grad_stats_after_update(&t->gstats, m);
    }
    st->cursor += B;
    st->tokens += (int64_t)B * t->T;
    st->step++;
    info->loss = loss;
    info->grad_norm = gnorm;
    info->masked_fraction = sums[2] ? sums[1] / sums[2] : 0.0;
    info->skipped = skip;
    return 0;
}
