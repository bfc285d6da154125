/* train/batch_schedule.h: scp-train --batch-schedule, a global batch that changes during the run (man 1 scp-train,
 * BATCH SCHEDULES):
 *   linear:START:END:TOKENS   START + (END - START) * min(1, seen / TOKENS) tokens, where seen counts the training
 *                             tokens before the step
 *   adaptive:K[:MIN:MAX]      K times the smoothed noise scale B_simple (train/noise.h, in loss-carrying tokens),
 *                             clamped to [MIN, MAX] (defaults: --batch-tokens and 64 times it); the batch starts at
 *                             MIN, holds it until SCP_BATCH_ADAPT_ESTIMATES estimates are in the averages, and only
 *                             grows: the averages remember about 100 steps, and a batch that followed their every
 *                             wobble down and up would change the learning rate back and forth with it.
 * Every batch is a whole number of "quanta" of world x micro-batch sequences (rounded down, at least one), so
 * that each rank takes batch / world sequences in whole micro-batches, every rank as many. The numbers take the
 * count suffixes k, M, G, T (powers of 1000). */
#ifndef SCP_TRAIN_BATCH_SCHEDULE_H
#define SCP_TRAIN_BATCH_SCHEDULE_H

#include <stdint.h>

#include "train/noise.h"

/* Estimates of the noise scale in its averages before the adaptive schedule follows it. */
#define SCP_BATCH_ADAPT_ESTIMATES 20
/* MAX of adaptive:K when not given: this many times MIN. */
#define SCP_BATCH_ADAPT_MAX_FACTOR 64

typedef enum scp_batch_sched_kind { SCP_BATCH_LINEAR = 1, SCP_BATCH_ADAPTIVE } scp_batch_sched_kind;

typedef struct scp_batch_schedule {
    scp_batch_sched_kind kind;
    int64_t start, end, span;   /* linear: tokens */
    double k;                   /* adaptive: the multiple of the noise scale */
    int64_t min, max;           /* adaptive: tokens (0 until resolved: not given) */
} scp_batch_schedule;

/* Parse SPEC; -1 with a message naming it when it is malformed or out of range. */
int scp_batch_schedule_parse(const char *spec, scp_batch_schedule *s);
/* The adaptive bounds not given: MIN the base batch (--batch-tokens, in tokens), MAX SCP_BATCH_ADAPT_MAX_FACTOR
 * times it. */
void scp_batch_schedule_resolve(scp_batch_schedule *s, int64_t base_tokens);

/* The base batch in tokens: --batch-tokens, or 8 sequences of T tokens when it is not given. */
int64_t scp_batch_base_tokens(int64_t batch_tokens, int T);
/* tokens as sequences of T: rounded down to a multiple of quantum, at least quantum (saturating at 2^30). */
int scp_batch_round(double tokens, int T, int quantum);
/* The first step's batch and the largest the schedule reaches, in sequences. */
int scp_batch_schedule_first(const scp_batch_schedule *s, int T, int quantum);
int scp_batch_schedule_largest(const scp_batch_schedule *s, int T, int quantum);
/* The batch in sequences of the step after `seen` training tokens (linear), or after a step of `current`
 * sequences whose noise-scale averages are `noise` (adaptive). */
int scp_batch_schedule_next(const scp_batch_schedule *s, int64_t seen, int current, const scp_noise *noise, int T,
                            int quantum);
/* The step at which the run reaches `tokens` training tokens. Linear: exactly. Adaptive: from `seen` tokens at
 * step `step` if the batch stayed at `current` sequences (an upper bound: the batch only grows). */
int64_t scp_batch_schedule_steps(const scp_batch_schedule *s, int64_t tokens, int64_t step, int64_t seen, int current,
                                 int T, int quantum);

#endif
