/* train/run.h: one scp-train run, from its options to its last checkpoint (man 1 scp-train, man 5 scp-run).
 *
 * The program fills scp_train_opts from its command line (train/opts_set.h) and calls, in order:
 *   scp_train_resume_options   --resume: the options and the state saved in RUNDIR's latest checkpoint
 *   scp_train_check_rundir     a new run, on rank 0: RUNDIR holds no run unless --force
 *   scp_train_open_model       the model (the same weights on every rank), set up for the objective
 *   scp_train_open_data        the train split (and the val split for evaluations), checked against the model
 *   scp_train_plan             sequences per step and per micro-batch, and the steps (a failure is a usage error)
 *   scp_train_open_optimizer   gradients, AdamW's moments; the trainer state of a new run
 *   scp_train_start            the run directory, metrics.jsonl and the trainer
 *   scp_train_loop             the steps, their metrics lines, evaluations and checkpoints
 *   scp_train_run_free
 * Each returns 0 (scp_train_loop: the stop signal) or -1 with a message (core/error.h). Under several ranks every
 * rank makes the same calls; rank 0 alone writes the run directory. */
#ifndef SCP_TRAIN_RUN_H
#define SCP_TRAIN_RUN_H

#include <signal.h>
#include <stdint.h>

#include "data/batch.h"
#include "data/shard.h"
#include "dist/dist.h"
#include "eval/loss.h"
#include "model/model.h"
#include "dist/expert.h"
#include "dist/fsdp.h"
#include "dist/zero.h"
#include "train/metrics.h"
#include "train/moments.h"
#include "train/batch_schedule.h"
#include "train/opts.h"
#include "train/profile.h"
#include "train/state.h"
#include "train/step.h"

/* Sequences per step: o->batch_tokens (0: 8 sequences) rounded down to whole T-token sequences, at least one;
 * per micro-batch: o->micro_batch when it is smaller, else the whole step; the last step: o->steps, or o->tokens
 * rounded up to whole steps. Under a batch schedule (o->batch_schedule): the first step's batch and the largest,
 * in multiples of world x micro-batch sequences (train/batch_schedule.h), and the run's length is o->tokens. */
typedef struct scp_train_batches {
    int B, micro;
    int B_max, micro_max;      /* the largest batch of the run (B when it is fixed), and its micro-batch */
    int64_t total;             /* under an adaptive schedule: as if the batch stayed at B (an upper bound) */
    int rounded;               /* batch_tokens was not a whole number of sequences */
    int scheduled;             /* a batch schedule: */
    scp_batch_schedule bs;     /* its rule, */
    int quantum;               /* the sequences every batch is a multiple of */
} scp_train_batches;

typedef struct scp_train_run {
    /* set by the caller (scp_train_run_init, then the flags) */
    scp_train_opts *o;
    scp_dist *dist;
    const char *rundir;
    int force;                 /* a new run replaces RUNDIR */
    int quiet;                 /* no summary lines on stderr */
    int zero;                  /* ZeRO stage: 1 shards AdamW's moments across the ranks, 2 also the gradients,
                                  3 also the weights (dist/zero.h, dist/fsdp.h) */
    int keep_gathered;         /* ZeRO-3: a layer's gathered weights live from its forward to its backward */
    int prefetch;              /* ZeRO-3: the next layer's gather started while one runs (default 1) */
    int reduce_bf16;           /* ZeRO-2/3: the gradients are summed over the ranks in bf16 */
    int recompute;             /* activation recomputation */
    int expert_parallel;       /* ranks per expert group (dist/expert.h); 1: none */
    int64_t log_every;         /* the plain log line (train/watch.h) every N steps, */
    double log_every_s;        /* or every N seconds; both 0: none */
    int profile;               /* --profile: the backend's time per operation (train/profile.h) */
    /* the run */
    scp_train_state st;
    char *resume_dir;          /* the checkpoint resumed from; NULL for a new run */
    char *tok_dir;             /* the directory the checkpoints' tokenizer files come from; NULL: none */
    scp_model *m;
    int shift;                 /* the logit shift in use */
    scp_shardset *train, *val; /* val: with evaluations, on rank 0 (on every rank under ZeRO-3, whose forward
                                  needs them all), NULL otherwise */
    scp_seq_source src, vsrc;
    uint64_t data_hash;        /* tokenizer hash of the train split */
    int B, micro;              /* sequences per step and per micro-batch (those of the last step under a schedule) */
    int64_t total;             /* the step the run ends at (under a batch schedule: the step that reaches
                                  o->tokens, an upper bound while an adaptive batch may still grow) */
    scp_train_batches plan;    /* the batches: fixed, or their schedule */
    scp_train_moments mo;      /* ZeRO-0, and ZeRO-1 with one rank */
    scp_zero1 zero1;           /* ZeRO-1 over several ranks: the sharded moments, in the backend's memory */
    scp_fsdp fsdp;             /* ZeRO-2/3: the sharded gradients, moments and (3) weights */
    scp_expert_par ep;         /* expert parallelism: the groups, the gradient sums */
    char *weights_dir;         /* ZeRO-3: the checkpoint the weights are read from, NULL: random */
    scp_metrics mt;            /* rank 0 */
    int mt_open, tr_open;
    scp_trainer tr;
    scp_eval_opts eo;          /* the evaluation lines */
    double best_loss;          /* --keep-best: the val loss of RUNDIR/best (rank 0; infinite: none yet) */
    scp_train_profile prof;    /* --profile */
} scp_train_run;

void scp_train_run_init(scp_train_run *r, scp_train_opts *o, scp_dist *d, const char *rundir);
void scp_train_run_free(scp_train_run *r);

/* --resume: r->o becomes the options saved in the newest complete checkpoint of r->rundir, r->st its state and
 * r->resume_dir its directory; rank 0 first removes what killed writers left behind. The program then applies its
 * command line again over the saved options. */
int scp_train_resume_options(scp_train_run *r);
/* A new run: RUNDIR may exist, but not with a run in it (a `latest` link) unless force. */
int scp_train_check_rundir(const char *rundir, int force);

int scp_train_open_model(scp_train_run *r);
int scp_train_open_data(scp_train_run *r);

/* -1 with a message (a usage error) when a step would hold more than 2^24 sequences or fewer than `world`, or a
 * batch schedule that the options contradict. */
int scp_train_batches_plan(const scp_train_opts *o, int T, int world, scp_train_batches *b);
int scp_train_plan(scp_train_run *r);

int scp_train_open_optimizer(scp_train_run *r);
int scp_train_start(scp_train_run *r);
/* The steps from r->st.step to r->total. *stop_signal is set by the program's SIGINT/SIGTERM handler: every rank
 * stops after the step in which any rank saw it. A checkpoint is saved at the end. Returns the signal that
 * stopped the run, 0 when it ran to the end, -1 on an error. */
int scp_train_loop(scp_train_run *r, volatile sig_atomic_t *stop_signal);

#endif
