/* eval/choice_doc.h: one line of a multiple-choice task file read into its parts, whatever its layout.
 *
 * The layout is told per line by the keys it holds, in this order:
 *   question   "question" (a string, or an object whose "stem" is the string) with "choices" (MMLU) or the
 *              question object's own "choices" (ARC). Choices are a list of strings, a list of
 *              {"text", "label"} objects, or {"text": [...], "label": [...]}; the answer is "answerKey" (one of
 *              the labels), "answer" (an index, or a letter A..Z), "label" or "gold". MMLU when the choices carry
 *              no labels, ARC when they do.
 *   hellaswag  "endings" with the context under "ctx", "context" or "query"; the answer "label" (an index or
 *              its decimal string, as the dataset writes it), "gold" or "answer".
 *   native     "choices" with the context under "context", "query" or "ctx"; the answer "gold", "label" or
 *              "answer".
 * Choices without labels have the implied labels A, B, C, ... (then 27, 28, ... past Z); a string answer is
 * looked up among the labels first, then read as a letter ("answer", "answerKey") or a decimal index ("label",
 * "gold").
 *
 * The continuation of a choice is the layout's delimiter followed by the choice: " " for question and
 * hellaswag (lm-eval-harness's target delimiter: the choices of these datasets carry no leading space), "" for
 * native (its choices are scored as written). */
#ifndef SCP_EVAL_CHOICE_DOC_H
#define SCP_EVAL_CHOICE_DOC_H

#include <jansson.h>

typedef enum scp_choice_layout {
    SCP_CHOICE_LAYOUT_NATIVE,
    SCP_CHOICE_LAYOUT_MMLU,
    SCP_CHOICE_LAYOUT_ARC,
    SCP_CHOICE_LAYOUT_HELLASWAG
} scp_choice_layout;

/* "native", "mmlu", "arc", "hellaswag". */
const char *scp_choice_layout_name(scp_choice_layout l);

typedef struct scp_choice_doc {
    scp_choice_layout layout;
    const json_t *item;        /* the line's object (borrowed): the fields a template may name */
    const char *text;          /* the question or context (borrowed from item) */
    const char *delimiter;     /* what goes between the context and each choice */
    int n_choices;
    const char **choices;      /* (n_choices) borrowed from item */
    char **labels;             /* (n_choices) the explicit or implied labels */
    int gold;
} scp_choice_doc;

/* Read one parsed line; `what` names it ("tasks.jsonl: line 7"). 0, or -1 with a message naming `what`, the keys
 * the line has and what was expected; never a key the line does not hold as if it held it. */
int scp_choice_doc_read(const json_t *item, const char *what, scp_choice_doc *d);
void scp_choice_doc_free(scp_choice_doc *d);

/* The keys of an object in the order the line writes them, "a, b, c" ("no keys" when empty); caller frees. */
char *scp_choice_doc_keys(const json_t *item);

#endif
