/* eval/choice_template.h: a prompt template of scp-eval choice, "Question: {question}\nAnswer:".
 *
 * Text is copied as written except for the escapes \n (newline), \t (tab), \\, \{ and \} (a literal brace), and
 * {NAME} (NAME of letters, digits and '_'), which is replaced by a field of the item:
 *   {question}, {context}  the item's question or context (whatever key its layout reads it from);
 *   {choices}              the choices, one a line, each as "LABEL. TEXT" (labels A, B, ... unless the item has its
 *                          own);
 *   {KEY}                  the value of any other key of the item that holds a string or an integer.
 * A name the item does not have is an error naming it and the keys the item has. */
#ifndef SCP_EVAL_CHOICE_TEMPLATE_H
#define SCP_EVAL_CHOICE_TEMPLATE_H

#include "eval/choice_doc.h"

typedef struct scp_choice_template {
    int n_parts;
    struct scp_choice_template_part {
        int is_field;          /* text is a field's name rather than literal text */
        char *text;
    } *parts;
} scp_choice_template;

/* Parse spec; `what` names it in messages ("--template"). 0, or -1 with a message: an unknown escape, a '{'
 * without its name and '}'. */
int scp_choice_template_parse(const char *spec, const char *what, scp_choice_template *t);
/* The template filled from d's item: a new string, or NULL with "WHAT: --template names {x}, which this line
 * does not have (it has keys ...)". */
char *scp_choice_template_render(const scp_choice_template *t, const scp_choice_doc *d, const char *what);
void scp_choice_template_free(scp_choice_template *t);

#endif
