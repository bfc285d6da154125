/* eval/choice_prompt.h: the context scp-eval choice gives the model for an item, as lm-eval-harness builds it:
 * the few-shot examples, each its template followed by its delimiter and gold choice, joined and followed by
 * SCP_CHOICE_SHOT_SEPARATOR, then the item's own template.
 *
 * The template is the one given (--template), or the item's layout's default (SCP_CHOICE_DEFAULT_QUESTION for
 * MMLU and ARC, SCP_CHOICE_DEFAULT_CONTEXT for hellaswag and native): a shot is rendered as its own line would be. */
#ifndef SCP_EVAL_CHOICE_PROMPT_H
#define SCP_EVAL_CHOICE_PROMPT_H

#include <stdint.h>

#include "eval/choice_doc.h"
#include "eval/choice_template.h"

#define SCP_CHOICE_SHOT_SEPARATOR "\n\n"
#define SCP_CHOICE_DEFAULT_QUESTION "Question: {question}\\nAnswer:"
#define SCP_CHOICE_DEFAULT_CONTEXT "{context}"

typedef struct scp_choice_prompt {
    int has_template;
    scp_choice_template given;         /* --template, when has_template */
    scp_choice_template question, context;   /* the defaults */
    char *shots;                       /* the rendered shots with their trailing separator; "" without shots */
    int n_shots;
} scp_choice_prompt;

/* spec: the --template text, or NULL for the layouts' defaults. 0, or -1 with a message naming --template. */
int scp_choice_prompt_init(scp_choice_prompt *p, const char *spec);
/* The first n items of the JSONL file at path (all of them for n < 0) become the shots. 0, or -1 with a message
 * naming the file and line, or the file when it holds fewer than n items. */
int scp_choice_prompt_load_shots(scp_choice_prompt *p, const char *path, int64_t n);
/* The context for d (a new string), or NULL with a message naming `what`. */
char *scp_choice_prompt_context(const scp_choice_prompt *p, const scp_choice_doc *d, const char *what);
void scp_choice_prompt_free(scp_choice_prompt *p);

#endif
