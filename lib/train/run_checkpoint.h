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

#endif
