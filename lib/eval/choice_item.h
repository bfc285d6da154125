/* eval/choice_item.h: the scores of one multiple-choice item of scp-eval choice (its line read by
 * eval/choice_doc.h, its context built by eval/choice_prompt.h).
 *
 * Each choice is scored by the log-likelihood of its continuation (the layout's delimiter + the choice) given BOS
 * and the context (eval/choice.h): the continuation's ids are those of context + continuation after the context's
 * own ids, or the continuation encoded alone where the context's ids are not a prefix (the usual harness rule).
 * The highest score wins (the first on a tie). */
#ifndef SCP_EVAL_CHOICE_ITEM_H
#define SCP_EVAL_CHOICE_ITEM_H

#include <stdint.h>
#include <jansson.h>

#include "eval/choice_doc.h"
#include "eval/setup.h"

/* What a log-likelihood is divided by: nothing, the continuation's tokens or its bytes, or the choice's characters
 * (Unicode code points of the choice as written, without the delimiter: lm-eval's acc_norm, len(choice)). */
typedef enum scp_choice_norm {
    SCP_CHOICE_NORM_NONE,
    SCP_CHOICE_NORM_TOKENS,
    SCP_CHOICE_NORM_BYTES,
    SCP_CHOICE_NORM_CHARS
} scp_choice_norm;
/* "none", "tokens", "bytes", "chars"; -1 from the parser when unknown. */
const char *scp_choice_norm_name(scp_choice_norm n);
int scp_choice_norm_parse(const char *s);

typedef struct scp_choice_opts {
    int samples;               /* diffusion: Monte-Carlo samples per continuation */
    uint64_t seed;             /* diffusion: masking seed; an item's draws come from (seed, its index) */
    scp_choice_norm norm;
} scp_choice_opts;

typedef struct scp_choice_item {
    int gold;
    int pred;                  /* the argmax of scores */
    int pred_norm;             /* the argmax of logliks / chars (lm-eval's acc_norm) */
    int n_choices;
    int64_t context_tokens;    /* the context's ids, BOS not counted */
    double *logliks;           /* (n_choices) log-likelihoods of the continuations */
    double *scores;            /* (n_choices) the same normalised by --norm */
    int64_t *chars;            /* (n_choices) the choices' lengths in characters */
} scp_choice_item;

/* Score d's choices after `context` with em's model and tokenizer; `what` names the item in messages (e.g.
 * "tasks.jsonl: line 7"); index numbers it (the stream of its diffusion draws). 0, or -1 with a message naming
 * `what`: a continuation that encodes to no tokens, a sequence beyond max_position_embeddings. */
int scp_choice_score_item(const scp_eval_model *em, const scp_choice_opts *o, const char *context,
                          const scp_choice_doc *d, uint64_t index, const char *what, scp_choice_item *out);
/* The index of the largest of x[0..n) (the first on a tie, as numpy's argmax). */
int scp_choice_argmax(const double *x, int n);
/* Unicode characters (code points) of UTF-8 text: the bytes that do not continue a sequence. */
int64_t scp_choice_chars(const char *s);
void scp_choice_item_free(scp_choice_item *it);

#endif
