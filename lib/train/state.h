/* train/state.h: what a run needs to continue exactly: trainer_state.json and optimizer.safetensors, and
 * the run directory around the checkpoints (man 5 scp-run).
 *
 * RUNDIR/
 *   metrics.jsonl          one JSON object per optimizer step (and per evaluation)
 *   step-NNNNNNN/          a checkpoint: config.json, model.safetensors (F32), tokenizer files,
 *                          optimizer.safetensors, trainer_state.json
 *   latest -> step-NNNNNNN a symbolic link to the newest complete checkpoint
 *   best -> step-NNNNNNN   --keep-best: a symbolic link to the checkpoint of the lowest val loss
 * Checkpoints are written under a temporary name and renamed, and `latest` is replaced by rename, so a
 * process killed at any moment leaves only complete checkpoints under their final names. */
#ifndef SCP_TRAIN_STATE_H
#define SCP_TRAIN_STATE_H

#include <stdint.h>
#include <jansson.h>

#include "core/json.h"

#include "model/model.h"
#include "core/rng.h"
#include "train/noise.h"
#include "train/opts.h"

typedef struct scp_train_state {
    int64_t step;          /* optimizer steps done (applied or skipped) */
    int64_t adam_step;     /* updates applied: AdamW's bias-correction count */
    int64_t skipped;       /* steps skipped for a NaN/Inf loss or gradient */
    int64_t tokens;        /* tokens consumed */
    int64_t cursor;        /* sequences consumed from the data order (epoch = cursor / num_seqs) */
    int64_t total_steps;   /* the run's length, fixes the schedule */
    scp_rng rng;           /* the trainer's own stream (annealed-attention draws) */
    uint64_t data_hash;    /* tokenizer hash of the data, checked again on resume */
    int64_t world;         /* data-parallel ranks that saved the state ("world_size"; 0: not recorded, one) */
    scp_noise noise;       /* the noise scale's averages ("noise_scale_ema"; absent: none yet, train/noise.h) */
    int64_t batch;         /* a batch schedule: the sequences of the last step ("batch_seqs"; 0: none yet) */
} scp_train_state;

/* trainer_state.json: the state plus the options (every double with 17 significant digits). */
int scp_train_state_save(const char *path, const scp_train_state *s, const scp_train_opts *o);
/* Load the state; when o is not NULL, also the saved options into o (over its current values). */
int scp_train_state_load(const char *path, scp_train_state *s, scp_train_opts *o);

/* optimizer.safetensors: AdamW's first and second moments, F32, one tensor per parameter named
 * "exp_avg.NAME" and "exp_avg_sq.NAME" with the parameter's shape. opt_m, opt_v are (m->n_weights); written
 * through scp_optimizer_save_stream, one tensor at a time. */
int scp_optimizer_save(const char *path, const scp_model *m, const float *opt_m, const float *opt_v);
/* The same file from moments that come one tensor at a time: gather(ctx, k, i, out) brings moment k (0 the first,
 * 1 the second) of parameter i whole into out (numel floats) on the writing rank, the one whose path is not NULL.
 * Every rank calls this, and so the gathers, in the same order (they may be collectives); they go on after the file
 * failed, and stop at a gather that fails. The tensors are written in name order, as scp_st_write orders them,
 * so the file does not depend on where the moments came from. 0, or -1 with a message. */
int scp_optimizer_save_stream(const char *path, const scp_model *m, int (*gather)(void *ctx, int k, int i, float *out),
                              void *ctx);
int scp_optimizer_load(const char *path, const scp_model *m, float *opt_m, float *opt_v);
/* Moments held whole (opt[0] the first, opt[1] the second, m->n_weights floats each), and the gather of
 * scp_optimizer_save_stream that hands them over one tensor at a time (ctx: an scp_whole_moments). */
typedef struct scp_whole_moments {
    const scp_model *m;
    float *opt[2];
} scp_whole_moments;
int scp_whole_moments_gather(void *ctx, int k, int i, float *out);


/* "step-NNNNNNN" (at least 7 digits). */
char *scp_run_ckpt_name(int64_t step);
/* Point RUNDIR/latest at the checkpoint `name` (atomic replace). */
int scp_run_set_latest(const char *rundir, const char *name);
/* Point RUNDIR/best at the checkpoint `name` (atomic replace). */
int scp_run_set_best(const char *rundir, const char *name);
/* The step of the checkpoint RUNDIR/best names; -1 when there is no such link. */
int64_t scp_run_best_step(const char *rundir);
/* The newest complete checkpoint directory of a run (via `latest`, else the highest step-N with a
 * trainer_state.json), freshly allocated; NULL with a message when there is none. */
char *scp_run_latest(const char *rundir);
/* Remove step-N checkpoints beyond the newest `keep` (keep <= 0: none removed), except the one `best` names. */
int scp_run_prune(const char *rundir, int keep);
/* Remove leftovers of killed writers (step-N.tmp-PID, step-N.old-PID, latest.tmp-PID, best.tmp-PID,
 * metrics.jsonl.tmp-PID). */
void scp_run_clean_stale(const char *rundir);
/* Copy the tokenizer files found in src_dir (tokenizer.json, tokenizer_config.json, tokenizer.bin, ...) to
 * dst_dir. Returns the number copied, -1 on error. */
int scp_copy_tokenizer_files(const char *src_dir, const char *dst_dir);

#endif
