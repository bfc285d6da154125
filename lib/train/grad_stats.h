/* train/grad_stats.h: what a training step measures of its gradients and its update, per optimizer group
 * (man 5 scp-run): the gradient norm, the update-to-weight ratio |dW| / |W|, and the gradient noise scale
 * (train/noise.h) from gradients the step computes anyway:
 *   small: right after the first micro-batch's backward the gradient vector holds that micro-batch's gradient
 *          alone, weighted as a share of the step's loss; divided by the share it is the mean-loss gradient of
 *          B_small = share * B_big tokens. Every rank measures its own, so with several ranks a step gives one
 *          sample per rank, and with one micro-batch per rank the sample is the rank's gradient before the
 *          all-reduce (with MPI; an NCCL all-reduce starts inside that backward, so such a rank gives none).
 *   big:   the step's gradient after the all-reduce, the mean-loss gradient of the B_big loss-carrying tokens of
 *          the global batch.
 * Each rank turns its small sample and the common big one into the two estimates, and the step's estimates are
 * their mean over the ranks that have one. One rank with one micro-batch has no small sample: no estimate.
 * The update ratio keeps a copy of the master weights from before the update (n_weights floats of backend
 * memory). Under ZeRO-2/3 the gradients and weights exist only as shards, summed over the ranks after every
 * micro-batch: the shards' norms give |G_big|^2, and after the first micro-batch the norm of all ranks' first
 * micro-batches together, one small sample per step; the whole model's noise scale comes from those, and there
 * are no per-group figures. */
#ifndef SCP_TRAIN_GRAD_STATS_H
#define SCP_TRAIN_GRAD_STATS_H

#include <jansson.h>

#include "dist/dist.h"
#include "model/model.h"
#include "train/noise.h"

typedef struct scp_grad_stats {
    int on;                              /* measuring at all (off: --no-grad-stats) */
    int sharded;                         /* the gradients exist only as shards: the whole model's noise scale only */
    int present[SCP_GROUP_COUNT];        /* the groups the model has */
    scp_noise *noise;                    /* the averages, kept in the trainer state (saved with checkpoints) */
    float *prev;                         /* (n_weights) backend memory: the master weights before the update */
    /* this step */
    int have_small;                      /* this rank measured a small sample */
    double small_raw[SCP_GROUP_COUNT];   /* squared norms of the first micro-batch's gradient, as accumulated */
    double share;                        /* that micro-batch's share of the step's loss */
    int measured;                        /* the big gradient was measured (grad_norm_groups) */
    double big_sq[SCP_GROUP_COUNT];      /* squared norms of the step's gradient, before clipping */
    double b_big, b_small;               /* tokens: the global batch's, the mean of the small samples' */
    double small_sq;                     /* mean over the small samples of |G_small|^2 */
    double big_sq_all;                   /* |G_big|^2 */
    int have_estimate;                   /* some rank had a small sample */
    double est_g2[SCP_GROUP_COUNT], est_s[SCP_GROUP_COUNT];
    int updated;                         /* the update ratios were measured */
    double w_sq[SCP_GROUP_COUNT], dw_sq[SCP_GROUP_COUNT];
} scp_grad_stats;

/* noise: the averages to continue (the trainer state's). */
void scp_grad_stats_init(scp_grad_stats *s, const scp_model *m, int on, scp_noise *noise);
void scp_grad_stats_free(scp_grad_stats *s, scp_model *m);
/* The start of a step: nothing measured yet. */
void scp_grad_stats_begin(scp_grad_stats *s);
/* After the first micro-batch's backward, whose loss weights sum to `share` of the step's. */
void scp_grad_stats_small(scp_grad_stats *s, const scp_model *m, double share);
/* After the all-reduce, before clipping: b_big loss-carrying tokens in the global batch. Folds the step's
 * estimates into the noise scale. Collective over d (NULL: one rank); -1 on a failed all-reduce. */
int scp_grad_stats_big(scp_grad_stats *s, const scp_model *m, scp_dist *d, double b_big);
/* ZeRO-2/3 in place of the two above: sq is the shards' squared norm summed over the ranks, after the first
 * micro-batch (this rank's share: collective, the shares are summed) and after the backward. */
int scp_grad_stats_small_shards(scp_grad_stats *s, scp_dist *d, double sq, double share);
void scp_grad_stats_big_shards(scp_grad_stats *s, double sq, double b_big);
/* Around the optimizer update (both or neither; nothing when sharded). */
void scp_grad_stats_before_update(scp_grad_stats *s, scp_model *m);
void scp_grad_stats_after_update(scp_grad_stats *s, scp_model *m);
/* The step's keys of a metrics line: noise_scale, noise_scale_groups, grad_sq_small, grad_sq_big, batch_small,
 * batch_big (null where there is no estimate), grad_norm_groups and update_ratio_groups (not when sharded).
 * Nothing with --no-grad-stats. */
void scp_grad_stats_json(const scp_grad_stats *s, json_t *line);

#endif
