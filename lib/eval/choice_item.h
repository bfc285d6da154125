/* eval/choice_item.h: one multiple-choice item of scp-eval choice (a JSONL task line, lm-eval-harness style):
 * {"context": TEXT, "choices": [TEXT, ...], "gold": INDEX} ("query"/"ctx", "endings", "label"/"answer" too).
 *
 * Each choice is scored by the log-likelihood of its continuation given BOS and the context (eval/choice.h): the
 * continuation's ids are those of context + choice after the context's own ids, or the choice encoded alone where
 * the context's ids are not a prefix (the usual harness rule). The highest score wins (the first on a tie). */
#ifndef SCP_EVAL_CHOICE_ITEM_H
#define SCP_EVAL_CHOICE_ITEM_H

#include <stdint.h>
#include <jansson.h>

#include "eval/setup.h"

/* What a log-likelihood is divided by: nothing, the continuation's tokens or its bytes (lm-eval's acc_norm). */
typedef enum scp_choice_norm { SCP_CHOICE_NORM_NONE, SCP_CHOICE_NORM_TOKENS, SCP_CHOICE_NORM_BYTES } scp_choice_norm;
/* "none", "tokens", "bytes"; -1 from the parser when unknown. */
const char *scp_choice_norm_name(scp_choice_norm n);
int scp_choice_norm_parse(const char *s);

typedef struct scp_choice_opts {
    int samples;               /* diffusion: Monte-Carlo samples per continuation */
    uint64_t seed;             /* diffusion: masking seed; an item's draws come from (seed, its index) */
    scp_choice_norm norm;
} scp_choice_opts;

typedef struct scp_choice_item {
    int gold, pred;
    int n_choices;
    double *scores;            /* (n_choices) normalised log-likelihoods */
} scp_choice_item;

/* Score item (one parsed task line; `what` names it in messages, e.g. "tasks.jsonl: line 7") with em's model and
 * tokenizer; index numbers the item (the stream of its diffusion draws). 0, or -1 with a message naming `what`:
 * a missing or ill-typed key, a choice that encodes to no tokens, a sequence beyond max_position_embeddings. */
int scp_choice_score_item(const scp_eval_model *em, const scp_choice_opts *o, const json_t *item, uint64_t index,
                          const char *what, scp_choice_item *out);
void scp_choice_item_free(scp_choice_item *it);

#endif
