/* train/schedule.h: learning-rate schedules and optimizer parameter groups.
 *
 * The rate of update `step` (0-based: the first optimizer step is 0) is
 *   warmup:   lr * (step + 1) / warmup             for step < warmup
 *   constant: lr
 *   cosine:   min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2, p = (step - warmup + 1) / (total - warmup)
 *   wsd:      lr until the last decay_frac * total steps, then linear down to min_lr at the last step
 * and each parameter group multiplies it by its multiplier (0 freezes the group).
 * Under a batch schedule (train/batch_schedule.h) the same formulas run on tokens instead of steps: step + 1
 * becomes the tokens seen at the end of the step, total and warmup are in tokens (--tokens, --warmup), and the
 * rate is multiplied by the --lr-scaling factor of the step's batch B against the base batch B0 (--batch-tokens,
 * default 8 sequences): sqrt(B / B0), B / B0 or 1. */
#ifndef SCP_TRAIN_SCHED_H
#define SCP_TRAIN_SCHED_H

#include <stdint.h>

#include "formats/model_config.h"
#include "train/opts.h"
#include "train/state.h"

/* Base rate of update `step` of a run of `total` updates. */
double scp_lr_at(const scp_train_opts *o, int64_t step, int64_t total);
/* The formulas with step + 1 = done (steps or tokens at the end of the update) of total. */
double scp_lr_progress(const scp_train_opts *o, int64_t done, int64_t total);
/* The --lr-scaling factor of a batch of batch_tokens against the base batch base_tokens. */
double scp_lr_batch_factor(scp_lr_scaling rule, int64_t batch_tokens, int64_t base_tokens);
/* Per-group rates of the step the state st is at, whose global batch is B sequences of T tokens: by steps for a
 * fixed batch, by tokens and scaled under a batch schedule. */
void scp_step_group_lr(const scp_train_opts *o, const scp_train_state *st, int B, int T, double *group_lr);
/* Per-group rates (SCP_GROUP_COUNT of them) at `step`. */
void scp_group_lr(const scp_train_opts *o, int64_t step, int64_t total, double *group_lr);
/* Per-parameter rates for scp_model_adamw: lr[i] = group_lr[desc[i].group]. */
void scp_param_lr(const scp_param_desc *desc, int n, const double *group_lr, float *lr);

#endif
