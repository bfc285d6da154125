/* eval/setup.h: what scp-eval opens before it scores or samples, checked before any work starts: the model of a
 * checkpoint (with its tokenizer, for generate and choice), and the sequences to score (the split of a shard set,
 * or windows of a token stream) checked against the model. */
#ifndef SCP_EVAL_SETUP_H
#define SCP_EVAL_SETUP_H

#include <stdint.h>

#include "data/shard.h"
#include "data/source.h"
#include "eval/loss.h"
#include "formats/model_config.h"
#include "model/model.h"
#include "tok/tokenizer.h"

/* Sequences of T tokens fit the model's positions (max_position_embeddings of model_name's config.json): all T
 * for bidirectional use, the first T - 1 for causal use (the last token is only a target, its logits are never
 * read). 0, or -1 with a message naming `what` and the model. */
int scp_eval_check_length(const scp_model_config *c, const char *model_name, int64_t T, int causal, const char *what);

/* Where the sequences to score come from: the split of a shard set (shards), or windows of seq_len tokens
 * starting every stride tokens of a token stream (stream; '-' is standard input). */
typedef struct scp_eval_source_spec {
    const char *shards, *split;
    const char *stream;
    int seq_len, stride;
} scp_eval_source_spec;

typedef struct scp_eval_data {
    scp_seq_source src;
    const char *name;           /* the shard set or the token stream, for messages and results */
    scp_shardset *shards;       /* one of these two */
    scp_windows windows;
} scp_eval_data;

/* Open the sequences and check them against model m of checkpoint model_dir: there is at least one, the data's
 * vocabulary fits the embedding rows, its tokenizer is the checkpoint's (when both record one), and its length
 * fits the positions (causal: as scp_eval_check_length). 0, or -1 with a message (nothing left open). */
int scp_eval_data_open(scp_eval_data *d, const scp_eval_source_spec *spec, const scp_model *m, const char *model_dir,
                       int causal);
void scp_eval_data_close(scp_eval_data *d);

/* ppl and elbo: the mask token (mask_id, -1: config.json's mask_token_id) and the logit shift (shift, -1:
 * config.json's shift_logits) of eo from model m of checkpoint model_dir; elbo needs a mask token within the
 * embedding rows. 0, or -1 with a message. */
int scp_eval_loss_resolve(scp_eval_opts *eo, const scp_model *m, const char *model_dir, int mask_id, int shift,
                          int elbo);

/* generate and choice: a checkpoint with its tokenizer, read causally (ar) or as a diffusion model. */
typedef enum { SCP_EVAL_AUTO, SCP_EVAL_AR, SCP_EVAL_DIFFUSION } scp_eval_mode;

typedef struct scp_eval_model {
    /* options */
    const char *path, *backend;
    scp_eval_mode mode;                    /* auto: config.json's is_causal decides */
    int no_bos, shift, mask_id, threads;   /* shift, mask_id: -1 = from config.json */
    /* after scp_eval_model_open */
    scp_model *m;
    scp_tokenizer *tok;
    int ar;                                /* causal scoring/decoding (else diffusion) */
    int bos;                               /* -1: none */
} scp_eval_model;

void scp_eval_model_defaults(scp_eval_model *e);
/* Set the threads, load the model and its tokenizer and resolve mode, shift, mask id and BOS from config.json.
 * 0, or -1 with a message (naming the checkpoint when diffusion needs a mask token it lacks). */
int scp_eval_model_open(scp_eval_model *e);
void scp_eval_model_close(scp_eval_model *e);

#endif
