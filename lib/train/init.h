/* train/init.h: the model a scp-train run starts from, set up for its objective. */
#ifndef SCP_TRAIN_INIT_H
#define SCP_TRAIN_INIT_H

#include "model/model.h"
#include "train/opts.h"

/* The model of a run on backend o->backend:
 *   resume_dir != NULL        that checkpoint of the run (its exact weights);
 *   o->init "random:CONFIG"   random weights (seed o->seed, standard deviation o->init_std) of the shape that the
 *                             config.json file CONFIG describes;
 *   o->init_random            random weights of the checkpoint o->init's shape;
 *   otherwise                 the checkpoint o->init.
 * *tok_dir: the directory whose tokenizer files the run's checkpoints carry (the checkpoint, or CONFIG's
 * directory), or NULL when it holds none. NULL with a message on error. */
scp_model *scp_train_load_model(const scp_train_opts *o, const char *resume_dir, char **tok_dir);
/* The part of that model one rank holds under expert parallelism: the experts of place ep_rank in a group of
 * ep_ranks (formats/model_config.h expert_ranks), random ones drawn as in the whole model; with shell != 0 as
 * scp_train_load_shell (*weights_dir set). */
scp_model *scp_train_load_part(const scp_train_opts *o, const char *resume_dir, int ep_ranks, int ep_rank, int shell,
                               char **tok_dir, char **weights_dir);
/* The same model as a shell without weights (model/model.h scp_model_new_shell), for ZeRO-3: *weights_dir is the
 * checkpoint whose weights the run starts from (freshly allocated), or NULL for random weights. */
scp_model *scp_train_load_shell(const scp_train_opts *o, const char *resume_dir, char **tok_dir, char **weights_dir);

/* Set the model's attention and logit shift for the objective: masked diffusion needs config.json's
 * mask_token_id (`name` names the checkpoint in the message) and takes o->attn (causal or not) and o->shift (-1:
 * config.json's shift_logits); the next-token objective is causal. Returns the shift in use (0 or 1), or -1 with
 * a message. */
int scp_train_configure_model(scp_model *m, const scp_train_opts *o, const char *name);

/* The checkpoint's tokenizer (in tok_dir, NULL for none) must be the one the data (data_name) was tokenized with,
 * when both are known: 0, or -1 with a message. Unless quiet, says on stderr when it cannot be checked. */
int scp_train_check_tokenizer(const char *tok_dir, uint64_t data_hash, const char *data_name, int quiet);

#endif
