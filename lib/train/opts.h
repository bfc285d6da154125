/* train/opts.h: scp-train's options as one struct, with defaults and a JSON form.
 *
 * The options are saved in every checkpoint's trainer_state.json, so that `scp-train --resume` continues the
 * run with exactly the options it started with (doubles are written with 17 significant digits, so they come
 * back bit for bit); options given again on the resuming command line override the saved ones. */
#ifndef SCP_TRAIN_OPTS_H
#define SCP_TRAIN_OPTS_H

#include <stdint.h>
#include <jansson.h>

#include "data/batch.h"
#include "data/mask.h"
#include "model/model.h"
#include "formats/model_config.h"

/* The checkpoint interval of a run given no --save-every: 30 minutes of wall time. */
#define SCP_TRAIN_SAVE_SECONDS 1800.0

typedef enum scp_lr_kind { SCP_LR_CONSTANT, SCP_LR_COSINE, SCP_LR_WSD } scp_lr_kind;
/* How a batch schedule's batch B scales the rates chosen for the base batch B0 (--batch-tokens): by sqrt(B / B0),
 * by B / B0, or not at all (train/schedule.h). */
typedef enum scp_lr_scaling { SCP_LR_SCALE_SQRT, SCP_LR_SCALE_LINEAR, SCP_LR_SCALE_NONE } scp_lr_scaling;

typedef struct scp_train_opts {
    char *init;                 /* checkpoint directory, or "random:CONFIG.json" */
    int init_random;            /* random weights of the init's shape (--init-random) */
    double init_std;            /* standard deviation of the random initialisation */
    char *data;                 /* shard set directory */
    char *out;                  /* run directory */

    scp_objective objective;
    scp_loss_norm loss_norm;
    scp_attn_mode attn;         /* default: bidirectional for mdm, causal for ar */
    int attn_set;               /* attn given explicitly */
    int64_t anneal_steps;       /* SCP_ATTN_ANNEAL: future keys visible with probability min(1, step / anneal_steps) */
    int doc_mask;
    int shift;                  /* -1: from config.json shift_logits */
    scp_t_sampler t_sampler;    /* noise levels across the global batch */
    scp_mask_schedule mask_schedule;
    double t_eps;               /* t in [t_eps, 1] */

    double lr;                  /* base learning rate */
    double lr_mult[SCP_GROUP_COUNT];   /* per optimizer group (expert follows mlp unless set) */
    double beta1, beta2, adam_eps, weight_decay, clip;
    double aux_loss, z_loss;    /* MoE: coefficients of the load-balancing and router z losses (model/moe.h) */
    int64_t warmup;
    scp_lr_kind schedule;
    double min_lr;
    double decay_frac;          /* wsd: fraction of the steps spent decaying */

    int64_t batch_tokens;       /* global batch per optimizer step, in tokens (rounded to whole sequences) */
    int micro_batch;            /* sequences per forward/backward; 0 = whole global batch */
    char *batch_schedule;       /* --batch-schedule SPEC (train/batch_schedule.h); NULL: the batch is fixed */
    scp_lr_scaling lr_scaling;  /* the rates under a batch schedule */
    int64_t steps, tokens;      /* bound (tokens converted to steps when steps is 0) */
    int shuffle;                /* data order shuffled per epoch from the seed */
    int grad_stats;             /* per-group gradient norms, update ratios, noise scale (train/grad_stats.h) */

    int64_t save_every;         /* checkpoint every N steps (0: none by steps) */
    double save_seconds;        /* and every N seconds of the run's wall time (0: none by time); a run given no
                                   --save-every saves every 1800 s, so that a killed job keeps most of its work */
    int keep;                   /* keep the newest N checkpoints (0: all) */
    int keep_best;              /* RUNDIR/best: the checkpoint of the lowest val loss, never pruned */
    int64_t eval_every;         /* 0: never */
    int eval_seqs;              /* sequences of the val split per evaluation */
    int eval_samples;           /* noise levels per sequence for the diffusion bound */
    uint64_t seed;
    int threads;                /* 0: all cores */
    char *backend;
} scp_train_opts;

void scp_train_opts_default(scp_train_opts *o);
void scp_train_opts_free(scp_train_opts *o);
/* New reference: every option (paths as given). */
json_t *scp_train_opts_to_json(const scp_train_opts *o);
/* Fill o from the object written by scp_train_opts_to_json; `what` names the file in messages. */
int scp_train_opts_from_json(scp_train_opts *o, const json_t *j, const char *what);

/* The schedule's names on the command line and in JSON ("constant", "cosine", "wsd"); -1 from the parser when
 * unknown. The other enums of the options have theirs beside them: the objective and the loss norm in
 * data/batch.h, the attention mode in model/model.h, the t sampler and the masking schedule in data/mask.h. */
const char *scp_lr_kind_name(scp_lr_kind x);
int scp_lr_kind_parse(const char *s);
/* "sqrt", "linear", "none"; -1 from the parser when unknown. */
const char *scp_lr_scaling_name(scp_lr_scaling x);
int scp_lr_scaling_parse(const char *s);

#endif
