/* dist/fsdp.h: sharded training state, ZeRO-2 and ZeRO-3 (scp-train --zero 2|3), as DeepSpeed and FSDP do it.
 *
 * The parameter vector is cut into units and every unit into world equal pieces (dist/shard_layout.h); rank r
 * owns piece r of every unit. Both stages keep only this rank's pieces of the gradients and of AdamW's moments:
 * the backward hands each unit's gradient over as soon as it is made (model/model.h, scp_param_provider), the
 * unit is reduce-scattered (summed over ranks, each rank receiving its piece) and added to the rank's gradient
 * shard, so gradients of one unit at a time exist whole. AdamW updates this rank's pieces only.
 *   - Stage 2: every rank still holds all fp32 weights (m->weights); after AdamW the updated pieces are
 *     all-gathered unit by unit.
 *   - Stage 3: the fp32 master weights are sharded too (master). The driver asks for a unit's weights just before
 *     its forward and again before its backward: the ranks convert their pieces to the backend's storage type
 *     and all-gather them into a buffer that lives while the unit is in use (with `keep`, a layer's buffer lives
 *     from its forward to its backward: fewer gathers, more memory). With prefetch (scp_fsdp_set_prefetch) the
 *     gather of the unit the driver asks for next is started when it asks for one (forward: the next layer's
 *     while this one runs; backward: the layer below's), into a buffer of its own, so that on GPU ranks the
 *     all-gather (on NCCL's stream) overlaps the compute; the gathered bits are the same.
 * AdamW is elementwise, so the update of a piece is the arithmetic of the whole-vector update; what differs from
 * one process is only the order of the gradient sums (over ranks, then over micro-batches), which is fixed for a
 * given world size: runs are bit-reproducible at a fixed world size. The gradient norm is the square root of the
 * sum over ranks of each shard's sum of squares.
 *
 * Memory: the shard arrays (dist/shard_layout.h: the same sizes the planner uses) and the gathered buffers live in
 * the backend's memory and are only touched through the backend's entries and the collectives of dist/coll.h
 * (NCCL on GPU ranks, MPI otherwise), so one code serves CPU and GPU ranks; loading moves each rank's piece of one
 * tensor at a time through the host, checkpoints one whole tensor at a time. */
#ifndef SCP_DIST_FSDP_H
#define SCP_DIST_FSDP_H

#include <stdint.h>

#include "dist/dist.h"
#include "dist/shard_layout.h"
#include "model/model.h"

typedef struct scp_fsdp {
    scp_shard_layout lay;
    scp_model *m;
    scp_dist *d;
    int stage;             /* 2 or 3 */
    int keep;              /* stage 3: a layer's gathered weights live from its forward to its backward */
    float *master;         /* (S) stage 3: this rank's pieces of the fp32 weights; NULL at stage 2 */
    float *grad;           /* (S) reduced gradients of this rank's pieces, summed over micro-batches */
    float *mom_m, *mom_v;  /* (S) AdamW's moments of this rank's pieces */
    void **gathered;       /* (units) stage 3: a unit's gathered weights while valid (held, or kept) */
    float **gbuf;          /* (units) a unit's gradient buffer during its backward */
    void **wpool;          /* (pool_slots) the buffers units are gathered into (fsdp.c, "buffers") */
    void **gpool;          /* (pool_slots) the buffers unit gradients are made in (float) */
    void **hpool;          /* (pool_slots) bf16 copies of the unit gradients, with reduce_bf16 */
    int pool_slots;
    int reduce_bf16;       /* the unit gradients are summed over the ranks in bf16 */
    uint16_t *hpiece;      /* (largest per) the bf16 reduce-scatter's result */
    int64_t pool_bytes;    /* what the pools hold */
    float *piece;          /* (largest per) the reduce-scatter's result, added into grad */
    const struct scp_coll *coll;   /* the transport (dist/coll.h): NCCL on GPU ranks, else MPI */
    /* Expert parallelism (dist/expert.h): the expert units (formats/model_config.h scp_param_units_split) are
     * cut over the ranks holding the same experts, `replicas`, the other units over d. NULL: every unit over d. */
    scp_dist *replicas;
    const struct scp_coll *rcoll;
    char *unit_expert;     /* (units) unit u is an expert unit */
    int xslot;             /* the pool slot of an expert unit's buffers (held beside its layer's) */
    int prefetch;          /* stage 3: the next unit's gather started before the driver asks for it */
    int pslot;             /* with prefetch and without keep: the pool slot of the even units' weights, 0: none */
    int ahead;             /* the unit whose gather was started and not yet joined, -1: none */
    int last;              /* the unit last asked for (the driver's direction: rising in a forward) */
    int backward_follows;  /* the last layer given back will be asked for again (a backward follows) */
    int failed;            /* a collective inside the driver's callbacks failed (its message: scp_last_error) */
} scp_fsdp;

/* Shard model m over d's ranks at `stage` (2 or 3) and install the provider on m. At stage 3, m is a shell
 * (scp_model_new_shell) and the caller fills the master pieces with scp_fsdp_set_param; at stage 2 the weights
 * are m's own. Moments start at zero. reduce_bf16: the unit gradients are rounded to bf16 and summed over the
 * ranks in bf16 (half the bytes; the shards stay fp32). -1 with a message when the backend cannot convert. */
int scp_fsdp_init(scp_fsdp *f, scp_model *m, scp_dist *d, int stage, int keep, int reduce_bf16);
/* The same for a model of an expert-parallel rank (its config's expert_ranks > 1): the expert units are cut over
 * replicas, the ranks holding the same experts (one per expert group: the ranks of d with the same rank modulo
 * the group size, in rank order). */
int scp_fsdp_init_experts(scp_fsdp *f, scp_model *m, scp_dist *d, scp_dist *replicas, int stage, int keep,
                          int reduce_bf16);
/* Stage 3: prefetch the next unit's weights (on: the default of scp-train; off: gather each when asked for).
 * Only over several ranks and without expert parallelism; elsewhere it stays off. Before the first step. */
void scp_fsdp_set_prefetch(scp_fsdp *f, int on);
void scp_fsdp_free(scp_fsdp *f);
/* Free the buffers units are gathered into and their gradients made in (they come back at the next step): before
 * a checkpoint, whose own buffers then take their place. */
void scp_fsdp_trim(scp_fsdp *f);

/* The vectors a shard holds, for loading and checkpoints. */
typedef enum { SCP_FSDP_WEIGHTS, SCP_FSDP_EXP_AVG, SCP_FSDP_EXP_AVG_SQ } scp_fsdp_vec;
/* Copy this rank's part of parameter i from data (its numel floats, host memory) into vector `which`. */
void scp_fsdp_set_param(scp_fsdp *f, scp_fsdp_vec which, int i, const float *data);
/* The elements [*lo, *hi) of parameter i (flat, row-major) that this rank holds in vector `which`: all of them
 * for the weights at stage 2, else its piece, which may be empty (returns 0). */
int scp_fsdp_param_piece(const scp_fsdp *f, scp_fsdp_vec which, int i, int64_t *lo, int64_t *hi);
/* Copy those elements (hi - lo floats, host memory) into vector `which`: loading reads only what a rank keeps. */
void scp_fsdp_set_param_piece(scp_fsdp *f, scp_fsdp_vec which, int i, const float *piece);
/* Parameter i of vector `which` gathered whole on rank root into out (numel floats; read on root only).
 * Collective: every rank calls it. */
int scp_fsdp_gather_param(scp_fsdp *f, scp_fsdp_vec which, int i, int root, float *out);
/* Under expert parallelism with groups of `places` ranks: the parameter of place `place` whose entry on this rank
 * is i (the ranks' tables list their own experts in the same positions): for an expert, the ranks of that place
 * hold its pieces and the others send nothing; otherwise as scp_fsdp_gather_param. */
int scp_fsdp_gather_param_of(scp_fsdp *f, scp_fsdp_vec which, int i, int place, int places, int root, float *out);

/* One training step's share: zero the gradient shard (before the first micro-batch); the global gradient norm
 * (collective); scale the gradients; AdamW on this rank's pieces with the per-parameter rates lr (n_params), then,
 * at stage 2, the weights all-gathered. -1 with a message when a collective failed. */
void scp_fsdp_zero_grad(scp_fsdp *f);
int scp_fsdp_grad_norm(scp_fsdp *f, double *norm);
void scp_fsdp_scale_grads(scp_fsdp *f, float s);
int scp_fsdp_adamw(scp_fsdp *f, const float *lr, float beta1, float beta2, float eps, float weight_decay,
                   int64_t step);

#endif
