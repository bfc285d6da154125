/* train/schedule.h: learning-rate schedules and optimizer parameter groups.
 *
 * The rate of update `step` (0-based: the first optimizer step is 0) is
 *   warmup:   lr * (step + 1) / warmup             for step < warmup
 *   constant: lr
 *   cosine:   min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2, p = (step - warmup + 1) / (total - warmup)
 *   wsd:      lr until the last decay_frac * total steps, then linear down to min_lr at the last step
 * and each parameter group multiplies it by its multiplier (0 freezes the group). */
#ifndef SCP_TRAIN_SCHED_H
#define SCP_TRAIN_SCHED_H

#include <stdint.h>

#include "formats/model_config.h"
#include "train/opts.h"

/* Base rate of update `step` of a run of `total` updates. */
double scp_lr_at(const scp_train_opts *o, int64_t step, int64_t total);
/* Per-group rates (SCP_GROUP_COUNT of them) at `step`. */
void scp_group_lr(const scp_train_opts *o, int64_t step, int64_t total, double *group_lr);
/* Per-parameter rates for scp_model_adamw: lr[i] = group_lr[desc[i].group]. */
void scp_param_lr(const scp_param_desc *desc, int n, const double *group_lr, float *lr);

#endif
