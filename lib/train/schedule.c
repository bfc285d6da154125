/* train/schedule.c: learning-rate schedules and per-group rates. */
#include "train/schedule.h"

#include <math.h>

double scp_lr_at(const scp_train_opts *o, int64_t step, int64_t total)
{
    double lr = o->lr, lo = o->min_lr;
    if (o->warmup > 0 && step < o->warmup) return lr * (double)(step + 1) / (double)o->warmup;
    switch (o->schedule) {
    case SCP_LR_CONSTANT:
        return lr;
    case SCP_LR_COSINE: {
        int64_t span = total - o->warmup;
        if (span <= 0) return lr;
        double p = (double)(step - o->warmup + 1) / (double)span;
        if (p > 1) p = 1;
        return lo + (lr - lo) * 0.5 * (1.0 + cos(M_PI * p));
    }
    case SCP_LR_WSD: {
        /* Warmup, stable, decay: the decay phase is the last decay_frac of all steps (at least one step). */
        int64_t decay = (int64_t)llround(o->decay_frac * (double)total);
        if (decay < 1) decay = 1;
        int64_t start = total - decay;
        if (start < o->warmup) start = o->warmup;
        if (step < start) return lr;
        double p = (double)(step - start + 1) / (double)(total - start);
        if (p > 1) p = 1;
        return lr + (lo - lr) * p;
    }
    }
    return lr;
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
