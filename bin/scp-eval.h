/* scp-eval.h: the subcommands of scp-eval, one source file each (bin/scp-eval.c holds ppl and elbo and the
 * dispatch table; generate and choice are added as bin/scp-eval-generate.c, bin/scp-eval-choice.c).
 * Each gets argv with argv[0] = "scp-eval SUBCOMMAND" and returns the exit status. */
#ifndef SCP_EVAL_CMD_H
#define SCP_EVAL_CMD_H

int scp_eval_ppl_main(int argc, char **argv);
int scp_eval_elbo_main(int argc, char **argv);
/* bin/scp-eval-generate.c, bin/scp-eval-choice.c */
int scp_eval_generate_main(int argc, char **argv);
int scp_eval_choice_main(int argc, char **argv);

#include "model/model.h"
#include "tok/tokenizer.h"

/* bin/scp-eval-model.c: the options generate and choice share (which checkpoint, and how to read it). */
enum { SCP_EVAL_O_MODE = 1000, SCP_EVAL_O_NO_BOS, SCP_EVAL_O_SHIFT, SCP_EVAL_O_NO_SHIFT, SCP_EVAL_O_MASK_ID,
       SCP_EVAL_O_BACKEND };
#define SCP_EVAL_MODEL_LONGOPTS                                                                                  \
    {"model", required_argument, 0, 'm'}, {"mode", required_argument, 0, SCP_EVAL_O_MODE},                      \
    {"no-bos", no_argument, 0, SCP_EVAL_O_NO_BOS}, {"shift", no_argument, 0, SCP_EVAL_O_SHIFT},                 \
    {"no-shift", no_argument, 0, SCP_EVAL_O_NO_SHIFT}, {"mask-id", required_argument, 0, SCP_EVAL_O_MASK_ID},   \
    {"threads", required_argument, 0, 't'}, {"backend", required_argument, 0, SCP_EVAL_O_BACKEND}

typedef enum { SCP_EVAL_AUTO, SCP_EVAL_AR, SCP_EVAL_DIFFUSION } scp_eval_mode;

typedef struct scp_eval_model {
    /* options */
    const char *path, *backend;
    scp_eval_mode mode;
    int no_bos, shift, mask_id, threads;   /* shift, mask_id: -1 = from config.json */
    /* after scp_eval_model_open */
    scp_model *m;
    scp_tokenizer *tok;
    int ar;                                /* causal scoring/decoding (else diffusion) */
    int bos;                               /* -1: none */
} scp_eval_model;

void scp_eval_model_defaults(scp_eval_model *e);
/* 1 when c is one of SCP_EVAL_MODEL_LONGOPTS (parsed into e), 0 otherwise. Bad values exit 2. */
int scp_eval_model_option(scp_eval_model *e, int c, const char *arg);
/* Load the model and its tokenizer and resolve mode, shift, mask id and BOS from config.json; dies with a
 * message naming the checkpoint when diffusion needs a mask token it lacks. */
void scp_eval_model_open(scp_eval_model *e);
void scp_eval_model_close(scp_eval_model *e);

#endif
