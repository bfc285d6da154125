/* train/step.h: one optimizer step of scp-train (docs/design.md, "A training step"), separate from the program
 * so that it is one piece with one job:
 *   the global batch of B sequences at the data cursor; for mdm noise levels t from (seed, step) with the
 *   configured sampler, masks from (seed, cursor + row), weights w(t) / (L or n_masked) / B; for ar the next
 *   tokens, weight 1 / (targets in the batch); micro-batches accumulate the gradients; the global norm is
 *   clipped; a non-finite loss or norm skips the update (counted); else AdamW with the per-group rates of the
 *   schedule at this step. Annealed attention draws its seed from the state's RNG, one per micro-batch. */
#ifndef SCP_TRAIN_STEP_H
#define SCP_TRAIN_STEP_H

#include <stdint.h>

#include "dist/dist.h"
#include "model/model.h"
#include "data/batch.h"
#include "train/grad_stats.h"
#include "train/opts.h"
#include "train/state.h"

typedef struct scp_trainer {
    scp_model *m;
    const scp_train_opts *o;
    scp_train_state *st;
    const scp_seq_source *src;
    int B, micro, T;              /* sequences per step and per micro-batch, positions */
    int capacity;                 /* sequences ts and aseeds have room for */
    float *opt_m, *opt_v;         /* (n_weights) AdamW moments */
    scp_mdm_spec spec;
    scp_data_order order;
    scp_train_batch b;
    double *ts;                   /* (B) noise levels */
    float *plr;                   /* (n_params) per-parameter rates */
    double glr[SCP_GROUP_COUNT];  /* per-group rates of the last step */
    /* Data parallel (dist/dist.h): this rank takes rows [lo, hi) of every global batch (scp_dist_split), noise levels
     * and masks stay those of the global row, the gradients and the loss are summed over ranks. NULL: one rank. */
    scp_dist *dist;
    struct scp_zero1 *zero1;      /* ZeRO-1 (dist/zero.h): this rank's moments and the update; opt_m/opt_v unused */
    uint64_t *aseeds;             /* (micro-batches per global batch) annealed-attention seeds of this step */
    int nccl;                     /* the gradients are all-reduced by NCCL on the device, layer by layer */
    int nccl_failed;              /* an all-reduce could not be queued (its message is scp_last_error) */
    int64_t *moe_load;            /* (experts) MoE: assignments per expert of the last step, summed over layers */
    /* ZeRO-2/3 (dist/fsdp.h): the gradients are reduce-scattered unit by unit during each backward and the
     * update, norm and clipping run on this rank's shards; opt_m/opt_v are then unused. NULL otherwise. */
    struct scp_fsdp *fsdp;
    /* Expert parallelism (dist/expert.h): the gradients are summed over the ranks that hold them after the
     * backward, and the norm counts every expert once. NULL otherwise. */
    struct scp_expert_par *ep;
    scp_grad_stats gstats;        /* per-group norms, update ratios and the noise scale of the last step */
} scp_trainer;

typedef struct scp_step_info {
    double loss;                  /* the batch loss (NaN/Inf when skipped for it) */
    double grad_norm;             /* before clipping */
    double masked_fraction;       /* mdm: masked / maskable positions */
    int skipped;                  /* this step was skipped */
    /* MoE (model/moe.h): experts (0 for a dense model), their load in this step over all layers and ranks, and
     * the auxiliary losses without their coefficients (loss includes them with the coefficients). */
    int n_experts;
    const int64_t *expert_load;
    double aux_loss, z_loss;
} scp_step_info;

/* opt_m/opt_v are owned by the caller (loaded on resume); mask_id and shift as resolved from the config. */
void scp_trainer_init(scp_trainer *t, scp_model *m, const scp_train_opts *o, scp_train_state *st,
                      const scp_seq_source *src, int B, int micro, float *opt_m, float *opt_v, int32_t mask_id,
                      int shift);
void scp_trainer_free(scp_trainer *t);
/* The global batch of the next steps (a batch schedule): B sequences, micro-batches of --micro-batch of them. */
void scp_trainer_set_batch(scp_trainer *t, int B);
/* Make the trainer one data-parallel rank of d; zero1 non-NULL for ZeRO-1 (dist/zero.h). When d has an
 * NCCL communicator (scp_dist_nccl_init) and the model's backend keeps gradients on the device, the gradients
 * are all-reduced on the device, each layer's as soon as the backward of the last micro-batch has made it
 * (model/model.h, the gradient hook), overlapping the backward of the layers below; otherwise with MPI after the
 * backward. */
void scp_trainer_set_dist(scp_trainer *t, scp_dist *d, struct scp_zero1 *zero1);
/* Make the trainer step the sharded state f (ZeRO-2/3; f's provider is installed on the model), over f's ranks. */
void scp_trainer_set_fsdp(scp_trainer *t, struct scp_fsdp *f);
/* Make the trainer a rank of the expert groups ep (the model attached to ep), over all of ep's ranks. */
void scp_trainer_set_experts(scp_trainer *t, struct scp_expert_par *ep);
/* One step at st->step (advances step, cursor, tokens, and adam_step or skipped). -1 on a data error. */
int scp_trainer_step(scp_trainer *t, scp_step_info *info);

#endif
