/* eval/choice_prompt.c: templates and few-shot examples into an item's context; see eval/choice_prompt.h. */
#include "eval/choice_prompt.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int scp_choice_prompt_init(scp_choice_prompt *p, const char *spec)
{
    memset(p, 0, sizeof *p);
    p->shots = scp_xstrdup("");
    if (scp_choice_template_parse(SCP_CHOICE_DEFAULT_QUESTION, "default template", &p->question) ||
        scp_choice_template_parse(SCP_CHOICE_DEFAULT_CONTEXT, "default template", &p->context))
        return -1;
    if (spec) {
        if (scp_choice_template_parse(spec, "--template", &p->given)) return -1;
        p->has_template = 1;
    }
    return 0;
}

/* The template d is rendered with. */
static const scp_choice_template *template_for(const scp_choice_prompt *p, const scp_choice_doc *d)
{
    if (p->has_template) return &p->given;
    return d->layout == SCP_CHOICE_LAYOUT_MMLU || d->layout == SCP_CHOICE_LAYOUT_ARC ? &p->question : &p->context;
}

/* Append one shot, d rendered and answered, to p->shots. */
static int add_shot(scp_choice_prompt *p, const scp_choice_doc *d, const char *what)
{
    char *text = scp_choice_template_render(template_for(p, d), d, what);
    if (!text) return -1;
    char *s = scp_xasprintf("%s%s%s%s" SCP_CHOICE_SHOT_SEPARATOR, p->shots, text, d->delimiter, d->choices[d->gold]);
    free(text);
    free(p->shots);
    p->shots = s;
    p->n_shots++;
    return 0;
}

int scp_choice_prompt_load_shots(scp_choice_prompt *p, const char *path, int64_t n)
{
    FILE *f = scp_fopen_in(path);
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0;
    ssize_t r;
    while ((n < 0 || p->n_shots < n) && (r = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)r) continue;
        char what[256];
        snprintf(what, sizeof what, "%s: line %ld", path, lineno);
        json_t *j = scp_json_parse(line, (size_t)r, what);
        scp_choice_doc d;
        rc = !j || scp_choice_doc_read(j, what, &d) ? -1 : 0;
        if (rc == 0) {
            rc = add_shot(p, &d, what);
            scp_choice_doc_free(&d);
        }
        json_decref(j);
        if (rc) break;
    }
    if (rc == 0 && ferror(f)) rc = scp_error("%s: read error", path);
    if (rc == 0 && n >= 0 && p->n_shots < n)
        rc = scp_error("%s: %d items, fewer than --num-shots %lld", path, p->n_shots, (long long)n);
    free(line);
    scp_fclose_in(f);
    return rc;
}

char *scp_choice_prompt_context(const scp_choice_prompt *p, const scp_choice_doc *d, const char *what)
{
    char *text = scp_choice_template_render(template_for(p, d), d, what);
    if (!text || !*p->shots) return text;
    char *s = scp_xasprintf("%s%s", p->shots, text);
    free(text);
    return s;
}

void scp_choice_prompt_free(scp_choice_prompt *p)
{
    scp_choice_template_free(&p->given);
    scp_choice_template_free(&p->question);
    scp_choice_template_free(&p->context);
    free(p->shots);
    memset(p, 0, sizeof *p);
}
