/* dist/zero.h: ZeRO stage 1 for scp-train (--zero 1): the AdamW moments are sharded across ranks.
 *
 * The flat weight vector (n_weights floats, model/model.h) is cut into world contiguous shards lo[r] .. lo[r + 1]
 * (scp_dist_shards, 16-float aligned). Every rank still holds the full weights and the full all-reduced
 * gradient; rank r keeps the moments of its shard only (2 x n_weights / world floats instead of 2 x n_weights),
 * applies AdamW to its shard, and the weights are then all-gathered. The update is elementwise, so it is the
 * same arithmetic as scp_model_adamw over the whole vector: the result does not depend on the rank count. */
#ifndef SCP_DIST_ZERO_H
#define SCP_DIST_ZERO_H

#include <stdint.h>

#include "dist/dist.h"
#include "model/model.h"

/* AdamW on [lo[rank], lo[rank + 1]) of m->weights; opt_m, opt_v hold only that shard; lr (n_params) as for
 * scp_model_adamw; then all ranks all-gather the weights. */
int scp_zero_adamw(scp_model *m, scp_dist *d, const int64_t *lo, float *opt_m, float *opt_v, const float *lr,
                   float beta1, float beta2, float eps, float weight_decay, int64_t step);

#endif
