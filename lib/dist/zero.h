/* dist/zero.h: ZeRO stage 1 for scp-train (--zero 1): AdamW's moments are sharded across ranks.
 *
 * Every rank holds the full fp32 weights and the full gradient vector in the backend's memory. The gradients are
 * summed over the ranks where they lie (dist/coll.h: NCCL on GPU ranks, MPI on CPU ranks; GPU ranks with NCCL sum
 * them layer by layer during the backward, train/step.c). The parameter vector is cut as ZeRO-2/3 cut it
 * (dist/shard_layout.h: unit by unit, each unit in world equal pieces); rank r holds the moments of its pieces,
 * in the backend's memory (2 S floats instead of 2 n), applies AdamW to its pieces of the weights with the
 * backend's adamw entry, and the ranks then all-gather the weights unit by unit through a buffer of the largest
 * gathered unit. Nothing of a step passes through host memory.
 *
 * The update is elementwise, so it is the same arithmetic as scp_model_adamw over the whole vector: the result
 * does not depend on the rank count or on the cut. Checkpoints hold the full moments (scp_zero1_gather_moment),
 * so a run resumes under any number of ranks. */
#ifndef SCP_DIST_ZERO_H
#define SCP_DIST_ZERO_H

#include <stdint.h>

#include "dist/dist.h"
#include "dist/shard_layout.h"
#include "model/model.h"

typedef struct scp_zero1 {
    scp_shard_layout lay;      /* the units of m over d's ranks (the cut of dist/fsdp.h) */
    scp_model *m;
    scp_dist *d;
    const struct scp_coll *coll;
    float *mom_m, *mom_v;      /* (S) AdamW's moments of this rank's pieces, backend memory, zero at start */
    float *gather;             /* (max_unit) the buffer a unit's weights are all-gathered in, backend memory */
} scp_zero1;

/* Shard the moments of m (with its gradients allocated) over d's ranks. */
void scp_zero1_init(scp_zero1 *z, scp_model *m, scp_dist *d);
void scp_zero1_free(scp_zero1 *z);
/* The gradient vector summed over the ranks, in place in the backend's memory. 0, or -1 with a message. */
int scp_zero1_reduce_grads(scp_zero1 *z);
/* AdamW on this rank's pieces of the weights with the per-parameter rates lr (n_params, as scp_model_adamw),
 * the other weights untouched. Local: no collective. */
void scp_zero1_update(scp_zero1 *z, const float *lr, float beta1, float beta2, float eps, float weight_decay,
                      int64_t step);
/* scp_zero1_update, then the weights all-gathered. Collective. 0, or -1 with a message. */
int scp_zero1_adamw(scp_zero1 *z, const float *lr, float beta1, float beta2, float eps, float weight_decay,
                    int64_t step);
/* The elements [*lo, *hi) of parameter i (flat, row-major) whose moments this rank keeps; 0 when none. */
int scp_zero1_param_piece(const scp_zero1 *z, int i, int64_t *lo, int64_t *hi);
/* Those elements of moment `which` (0 the first, 1 the second; hi - lo floats, host memory) into the shard:
 * loading a checkpoint reads only what a rank keeps. */
void scp_zero1_set_moment_piece(scp_zero1 *z, int which, int i, const float *piece);
/* Moment `which` (0 the first, 1 the second) of parameter i gathered whole on rank root into out (numel floats;
 * read on root only): a checkpoint streamed one tensor at a time, so that no rank holds the full moments.
 * Collective. */
int scp_zero1_gather_moment(scp_zero1 *z, int which, int i, int root, float *out);

#endif
