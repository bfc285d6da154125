/* train/schedule.c: learning-rate schedules and per-group rates. */
#include "train/schedule.h"
#include "train/batch_schedule.h"

#include <math.h>

double scp_lr_progress(const scp_train_opts *o, int64_t done, int64_t total)
{
    double lr = o->lr, lo = o->min_lr;
    if (o->warmup > 0 && done <= o->warmup) return lr * (double)done / (double)o->warmup;
    switch (o->schedule) {
    case SCP_LR_CONSTANT:
        return lr;
    case SCP_LR_COSINE: {
        int64_t span = total - o->warmup;
        if (span <= 0) return lr;
        double p = (double)(done - o->warmup) / (double)span;
        if (p > 1) p = 1;
        return lo + (lr - lo) * 0.5 * (1.0 + cos(M_PI * p));
    }
    case SCP_LR_WSD: {
        /* Warmup, stable, decay: the decay phase is the last decay_frac of the run (at least one unit). */
        int64_t decay = (int64_t)llround(o->decay_frac * (double)total);
        if (decay < 1) decay = 1;
        int64_t start = total - decay;
        if (start < o->warmup) start = o->warmup;
        if (done <= start) return lr;
        double p = (double)(done - start) / (double)(total - start);
        if (p > 1) p = 1;
        return lr + (lo - lr) * p;
    }
    }
    return lr;
}

double scp_lr_at(const scp_train_opts *o, int64_t step, int64_t total) { return scp_lr_progress(o, step + 1, total); }

double scp_lr_batch_factor(scp_lr_scaling rule, int64_t batch_tokens, int64_t base_tokens)
{
    double ratio = (double)batch_tokens / (double)base_tokens;
    return rule == SCP_LR_SCALE_SQRT ? sqrt(ratio) : rule == SCP_LR_SCALE_LINEAR ? ratio : 1.0;
}

void scp_step_group_lr(const scp_train_opts *o, const scp_train_state *st, int B, int T, double *group_lr)
{
    if (!o->batch_schedule) {
        scp_group_lr(o, st->step, st->total_steps, group_lr);
        return;
    }
    int64_t batch = (int64_t)B * T;
    double base = scp_lr_progress(o, st->tokens + batch, o->tokens) *
                  scp_lr_batch_factor(o->lr_scaling, batch, scp_batch_base_tokens(o->batch_tokens, T));
    for (int g = 0; g < SCP_GROUP_COUNT; g++) group_lr[g] = base * o->lr_mult[g];
}

void scp_group_lr(const scp_train_opts *o, int64_t step, int64_t total, double *group_lr)
{
    double base = scp_lr_at(o, step, total);
    for (int g = 0; g < SCP_GROUP_COUNT; g++) group_lr[g] = base * o->lr_mult[g];
}

void scp_param_lr(const scp_param_desc *desc, int n, const double *group_lr, float *lr)
{
    for (int i = 0; i < n; i++) lr[i] = (float)group_lr[desc[i].group];
}
