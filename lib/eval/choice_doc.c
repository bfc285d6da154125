/* eval/choice_doc.c: a multiple-choice line's layout, context, choices, labels and answer; see eval/choice_doc.h. */
#include "eval/choice_doc.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

static const char *const layout_names[] = {"native", "mmlu", "arc", "hellaswag"};

const char *scp_choice_layout_name(scp_choice_layout l) { return layout_names[l]; }

char *scp_choice_doc_keys(const json_t *item)
{
    size_t len = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)item, key, v) len += strlen(key) + 2;
    if (len == 0) return scp_xstrdup("no keys");
    char *s = scp_xmalloc(len + 1), *p = s;
    json_object_foreach((json_t *)item, key, v) p += sprintf(p, "%s%s", p == s ? "" : ", ", key);
    return s;
}

/* -1 with "WHAT: has keys K; EXPECTED". */
/* A JSON string holding a NUL character (\u0000), which the C strings it is read into would cut short: an empty
 * choice would pass as a non-empty one. */
static int has_nul(const json_t *s) { return strlen(json_string_value(s)) != json_string_length(s); }

static int missing(const json_t *item, const char *what, const char *expected)
{
    char *keys = scp_choice_doc_keys(item);
    scp_error("%s: has keys %s; expected %s", what, keys, expected);
    free(keys);
    return -1;
}

/* The first of keys that the object holds, and its name. */
static json_t *first_of(const json_t *j, const char *const *keys, const char **name)
{
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(j, keys[i]);
        if (v) {
            *name = keys[i];
            return v;
        }
    }
    return NULL;
}

/* The label choice k has when the line gives none: A..Z, then 27, 28, ... */
static char *implied_label(int k)
{
    return k < 26 ? scp_xasprintf("%c", 'A' + k) : scp_xasprintf("%d", k + 1);
}

/* The choices from v (the value of key `name`): a list of strings, a list of {"text", "label"} objects, or
 * {"text": [...], "label": [...]}. Labels are kept only when every choice has one. */
static int read_choices(const json_t *v, const char *name, const char *what, scp_choice_doc *d)
{
    const json_t *texts = v, *labels = NULL;
    if (json_is_object(v)) {
        texts = json_object_get(v, "text");
        labels = json_object_get(v, "label");
        if (!json_is_array(texts)) {
            char *keys = scp_choice_doc_keys(v);
            scp_error("%s: %s has keys %s; expected a \"text\" list", what, name, keys);
            free(keys);
            return -1;
        }
        if (labels && (!json_is_array(labels) || json_array_size(labels) != json_array_size(texts)))
            return scp_error("%s: %s.label is not a list as long as %s.text (%zu)", what, name, name,
                             json_array_size(texts));
    } else if (!json_is_array(v))
        return scp_error("%s: %s is not a list of choices", what, name);
    size_t n = json_array_size(texts);
    if (n < 2)
        return scp_error("%s: %s has %zu %s; at least two are needed", what, name, n, n == 1 ? "entry" : "entries");
    if (n > 1 << 20) return scp_error("%s: %s has %zu entries, more than a choice can have", what, name, n);
    d->n_choices = (int)n;
    d->choices = scp_xcalloc(n, sizeof *d->choices);
    d->labels = scp_xcalloc(n, sizeof *d->labels);
    int all_labelled = 1;
    for (size_t k = 0; k < n; k++) {
        const json_t *c = json_array_get(texts, k), *l = labels ? json_array_get(labels, k) : NULL;
        if (json_is_object(c) && !labels) {   /* ARC's own JSONL: {"text": ..., "label": ...} */
            l = json_object_get(c, "label");
            c = json_object_get(c, "text");
            if (!json_is_string(c))
                return scp_error("%s: %s[%zu] is an object without a \"text\" string", what, name, k);
        }
        if (!json_is_string(c))
            return scp_error("%s: %s[%zu] is not a string%s", what, name, k,
                             json_is_object(v) ? "" : " or an object with a \"text\" string");
        if (json_string_length(c) == 0) return scp_error("%s: %s[%zu] is empty", what, name, k);
        if (has_nul(c)) return scp_error("%s: %s[%zu] holds a NUL character", what, name, k);
        if (l && !json_is_string(l)) return scp_error("%s: the label of %s[%zu] is not a string", what, name, k);
        if (l && has_nul(l)) return scp_error("%s: the label of %s[%zu] holds a NUL character", what, name, k);
        d->choices[k] = json_string_value(c);
        d->labels[k] = l ? scp_xstrdup(json_string_value(l)) : NULL;
        all_labelled &= l != NULL;
    }
    for (size_t k = 0; k < n; k++)
        if (!all_labelled || !d->labels[k]) {
            free(d->labels[k]);
            d->labels[k] = implied_label((int)k);
        }
    return all_labelled;
}

/* "A, B, C" for messages; caller frees. */
static char *label_list(const scp_choice_doc *d)
{
    size_t len = 1;
    for (int k = 0; k < d->n_choices; k++) len += strlen(d->labels[k]) + 2;
    char *s = scp_xmalloc(len), *p = s;
    for (int k = 0; k < d->n_choices; k++) p += sprintf(p, "%s%s", k ? ", " : "", d->labels[k]);
    return s;
}

/* The gold index from the answer value g under key `name`; see choice_doc.h for the rules. */
static int read_gold(const json_t *g, const char *name, const char *what, scp_choice_doc *d)
{
    if (json_is_integer(g)) {
        json_int_t i = json_integer_value(g);
        if (i < 0 || i >= d->n_choices)
            return scp_error("%s: %s %lld is not an index into the %d choices", what, name, (long long)i, d->n_choices);
        d->gold = (int)i;
        return 0;
    }
    if (!json_is_string(g)) return scp_error("%s: %s is not an index or a label", what, name);
    const char *s = json_string_value(g);
    for (int k = 0; k < d->n_choices; k++)
        if (strcmp(s, d->labels[k]) == 0) {
            d->gold = k;
            return 0;
        }
    int by_index = strcmp(name, "label") == 0 || strcmp(name, "gold") == 0;
    if (by_index && *s && strspn(s, "0123456789") == strlen(s) && strlen(s) < 9) {
        int i = atoi(s);
        if (i >= d->n_choices)
            return scp_error("%s: %s \"%s\" is not an index into the %d choices", what, name, s, d->n_choices);
        d->gold = i;
        return 0;
    }
    char *labels = label_list(d);
    scp_error("%s: %s \"%s\" is not one of the labels %s%s", what, name, s, labels, by_index ? " nor an index" : "");
    free(labels);
    return -1;
}

/* The question layouts (MMLU, ARC): the question's text and the choices' list. */
static int read_question(const json_t *item, const json_t *q, const char *what, scp_choice_doc *d,
                         const json_t **choices, const char **choices_name)
{
    const json_t *inner = NULL;
    if (json_is_string(q)) {
        if (has_nul(q)) return scp_error("%s: question holds a NUL character", what);
        d->text = json_string_value(q);
    }
    else if (json_is_object(q)) {
        const json_t *stem = json_object_get(q, "stem");
        if (!json_is_string(stem)) {
            char *keys = scp_choice_doc_keys(q);
            scp_error("%s: question has keys %s; expected a \"stem\" string", what, keys);
            free(keys);
            return -1;
        }
        if (has_nul(stem)) return scp_error("%s: question.stem holds a NUL character", what);
        d->text = json_string_value(stem);
        inner = json_object_get(q, "choices");
    } else
        return scp_error("%s: question is not a string or an object with a \"stem\"", what);
    if ((*choices = json_object_get(item, "choices")))
        *choices_name = "choices";
    else if ((*choices = inner))
        *choices_name = "question.choices";
    else if ((*choices = json_object_get(item, "endings")))
        *choices_name = "endings";
    return 0;
}

int scp_choice_doc_read(const json_t *item, const char *what, scp_choice_doc *d)
{
    static const char *const context_keys[] = {"context", "query", "ctx", NULL};
    static const char *const gold_question[] = {"answerKey", "answer", "label", "gold", NULL};
    static const char *const gold_hellaswag[] = {"label", "gold", "answer", NULL};
    static const char *const gold_native[] = {"gold", "label", "answer", NULL};
    memset(d, 0, sizeof *d);
    d->item = item;
    if (!json_is_object(item)) return scp_error("%s: not a JSON object", what);
    const json_t *q = json_object_get(item, "question"), *choices = NULL;
    const char *choices_name = NULL;
    const char *const *gold_keys;
    const char *gold_expected;
    if (q) {
        if (read_question(item, q, what, d, &choices, &choices_name)) return -1;
        gold_keys = gold_question;
        gold_expected = "the answer under answerKey, answer, label or gold";
        d->delimiter = " ";
    } else {
        const char *name = NULL;
        const json_t *ctx = first_of(item, context_keys, &name);
        int endings = json_object_get(item, "endings") != NULL;
        if ((choices = json_object_get(item, endings ? "endings" : "choices"))) choices_name = endings ? "endings" : "choices";
        if (choices && !ctx)
            return missing(item, what, endings ? "the context under ctx, context or query"
                                               : "the context under context, query, ctx or question");
        if (ctx && !json_is_string(ctx)) return scp_error("%s: %s is not a string", what, name);
        if (ctx && has_nul(ctx)) return scp_error("%s: %s holds a NUL character", what, name);
        d->text = json_string_value(ctx);
        d->layout = endings ? SCP_CHOICE_LAYOUT_HELLASWAG : SCP_CHOICE_LAYOUT_NATIVE;
        gold_keys = endings ? gold_hellaswag : gold_native;
        gold_expected = endings ? "the answer under label, gold or answer" : "the answer under gold, label or answer";
        d->delimiter = endings ? " " : "";
    }
    if (!choices) return missing(item, what, "choices or endings");
    int labelled = read_choices(choices, choices_name, what, d);
    if (labelled < 0) goto fail;
    if (q) d->layout = labelled ? SCP_CHOICE_LAYOUT_ARC : SCP_CHOICE_LAYOUT_MMLU;
    const char *gold_name = NULL;
    const json_t *g = first_of(item, gold_keys, &gold_name);
    if (!g) {
        missing(item, what, gold_expected);
        goto fail;
    }
    if (read_gold(g, gold_name, what, d)) goto fail;
    return 0;
fail:
    scp_choice_doc_free(d);
    return -1;
}

void scp_choice_doc_free(scp_choice_doc *d)
{
    for (int k = 0; d->labels && k < d->n_choices; k++) free(d->labels[k]);
    free(d->labels);
    free(d->choices);
    memset(d, 0, sizeof *d);
}
