/* scp-eval.h: the subcommands of scp-eval, one source file each (bin/scp-eval.c holds ppl and elbo and the
 * dispatch table; generate and choice are bin/scp-eval-generate.c, bin/scp-eval-choice.c).
 * Each gets argv with argv[0] = "scp-eval SUBCOMMAND" and returns the exit status. */
#ifndef SCP_EVAL_CMD_H
#define SCP_EVAL_CMD_H

#include "core/options.h"
#include "eval/setup.h"

int scp_eval_ppl_main(int argc, char **argv);
int scp_eval_elbo_main(int argc, char **argv);
int scp_eval_generate_main(int argc, char **argv);
int scp_eval_choice_main(int argc, char **argv);

/* bin/scp-eval-model.c: the options generate and choice share (which checkpoint, and how to read it), and the
 * old spellings every subcommand accepts with a warning. */
#define SCP_EVAL_MODEL_OPTS                                                                                     \
    SCP_OPT_MODEL, SCP_OPT_MODE, SCP_OPT_NO_BOS, SCP_OPT_SHIFT, SCP_OPT_NO_SHIFT, SCP_OPT_MASK_ID, SCP_OPT_THREADS, \
        SCP_OPT_BACKEND
#define SCP_EVAL_OLD_THREADS {NULL, 't', SCP_OPT_THREADS}

/* 1 when id is one of SCP_EVAL_MODEL_OPTS (its value parsed into e), 0 otherwise. Bad values exit 2. */
int scp_eval_model_option(scp_eval_model *e, int id, const char *arg);
/* --backend's value: one of the backends, or a usage error (exit 2) listing them. */
const char *scp_eval_backend_option(const char *arg);

#endif
