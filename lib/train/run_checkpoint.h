/* train/run_checkpoint.h: write one checkpoint of a run (man 5 scp-run): RUNDIR/step-NNNNNNN/ with config.json and
 * model.safetensors (F32, so a resumed run continues from bit-identical weights), the tokenizer files,
 * optimizer.safetensors and trainer_state.json; written under a temporary name and renamed, then `latest`
 * is pointed at it and old checkpoints beyond `keep` are removed. */
#ifndef SCP_TRAIN_CKPT_H
#define SCP_TRAIN_CKPT_H

#include "model/model.h"
#include "train/opts.h"
#include "train/state.h"

/* tok_dir: where the tokenizer files come from (the init checkpoint, or NULL for none). */
int scp_train_save_checkpoint(const char *rundir, const scp_model *m, const float *opt_m, const float *opt_v,
                              const scp_train_state *s, const scp_train_opts *o, const char *tok_dir);
/* The same checkpoint with its moments brought one tensor at a time (scp_optimizer_save_stream's gather), so that
 * no rank holds them whole: every rank calls it, one of them with `writer` set, which writes. 0 on the writer when
 * the checkpoint was written, on the others when their gathers succeeded; else -1 with a message. */
int scp_train_save_checkpoint_gathered(const char *rundir, int writer, const scp_model *m,
                                       int (*gather)(void *ctx, int k, int i, float *out), void *ctx,
                                       const scp_train_state *s, const scp_train_opts *o, const char *tok_dir);

/* The end of any checkpoint whose weights and moments are in tmp (scp_dir_begin(final)): config.json (when cfg is
 * not NULL), the tokenizer files, trainer_state.json, then the rename to final, `latest` and the pruning of old
 * checkpoints. rc != 0 (the weights could not be written) or tmp NULL: tmp is removed and -1 returned. */
int scp_train_finish_checkpoint(const char *rundir, const char *name, const char *final, char *tmp, int rc,
                                const scp_model_config *cfg, const scp_train_state *s, const scp_train_opts *o,
                                const char *tok_dir);

/* --keep-best: RUNDIR/best names the checkpoint of `step` (already written), and the one it named before is
 * pruned like any other when it falls beyond `keep`. */
int scp_train_mark_best(const char *rundir, int64_t step, int keep);

#endif
