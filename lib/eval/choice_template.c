/* eval/choice_template.c: parsing and filling a prompt template; see eval/choice_template.h. */
#include "eval/choice_template.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growing string. */
typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->s = scp_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_str(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void add_part(scp_choice_template *t, int is_field, strbuf *b)
{
    if (!is_field && b->len == 0) return;
    t->parts = scp_xrealloc(t->parts, (size_t)(t->n_parts + 1) * sizeof *t->parts);
    t->parts[t->n_parts].is_field = is_field;
    t->parts[t->n_parts].text = b->s ? b->s : scp_xstrdup("");
    t->n_parts++;
    memset(b, 0, sizeof *b);
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

int scp_choice_template_parse(const char *spec, const char *what, scp_choice_template *t)
{
    memset(t, 0, sizeof *t);
    strbuf lit = {0};
    for (const char *p = spec; *p;) {
        if (*p == '\\') {
            static const char from[] = "nt\\{}", to[] = "\n\t\\{}";
            const char *e = p[1] ? strchr(from, p[1]) : NULL;
            if (!e) {
                scp_error("%s: unknown escape '\\%.1s' (\\n, \\t, \\\\, \\{ and \\} are known)", what, p + 1);
                goto fail;
            }
            sb_add(&lit, &to[e - from], 1);
            p += 2;
        } else if (*p == '{') {
            size_t n = 0;
            while (is_name_char(p[1 + n])) n++;
            if (n == 0 || p[1 + n] != '}') {
                scp_error("%s: '{' at offset %td does not start a {name} (write \\{ for a brace)", what, p - spec);
                goto fail;
            }
            add_part(t, 0, &lit);
            strbuf name = {0};
            sb_add(&name, p + 1, n);
            add_part(t, 1, &name);
            p += n + 2;
        } else
            sb_add(&lit, p++, 1);
    }
    add_part(t, 0, &lit);
    return 0;
fail:
    free(lit.s);
    scp_choice_template_free(t);
    return -1;
}

/* Append field `name` of d; 0, or -1 when d has no such field. */
static int add_field(strbuf *b, const scp_choice_doc *d, const char *name, const char *what)
{
    if (strcmp(name, "question") == 0 || strcmp(name, "context") == 0) {
        sb_str(b, d->text);
        return 0;
    }
    if (strcmp(name, "choices") == 0) {
        for (int k = 0; k < d->n_choices; k++) {
            if (k) sb_str(b, "\n");
            sb_str(b, d->labels[k]);
            sb_str(b, ". ");
            sb_str(b, d->choices[k]);
        }
        return 0;
    }
    const json_t *v = json_object_get(d->item, name);
    if (json_is_string(v)) {
        sb_add(b, json_string_value(v), json_string_length(v));
        return 0;
    }
    if (json_is_integer(v)) {
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        sb_str(b, num);
        return 0;
    }
    char *keys = scp_choice_doc_keys(d->item);
    if (v)
        scp_error("%s: --template names {%s}, which this line holds as neither text nor an integer", what, name);
    else
        scp_error("%s: --template names {%s}, which this line does not have (it has keys %s)", what, name, keys);
    free(keys);
    return -1;
}

char *scp_choice_template_render(const scp_choice_template *t, const scp_choice_doc *d, const char *what)
{
    strbuf b = {0};
    sb_str(&b, "");
    for (int i = 0; i < t->n_parts; i++) {
        if (!t->parts[i].is_field)
            sb_str(&b, t->parts[i].text);
        else if (add_field(&b, d, t->parts[i].text, what)) {
            free(b.s);
            return NULL;
        }
    }
    return b.s;
}

void scp_choice_template_free(scp_choice_template *t)
{
    for (int i = 0; i < t->n_parts; i++) free(t->parts[i].text);
    free(t->parts);
    memset(t, 0, sizeof *t);
}
