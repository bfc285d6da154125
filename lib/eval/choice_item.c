/* eval/choice_item.c: one multiple-choice item: its keys, its sequences, the scores of its choices. */
#include "eval/choice_item.h"
#include "core/error.h"
#include "eval/choice.h"

#include <stdlib.h>
#include <string.h>

static const char *const norm_names[] = {"none", "tokens", "bytes"};

const char *scp_choice_norm_name(scp_choice_norm n) { return norm_names[n]; }

int scp_choice_norm_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, norm_names[i]) == 0) return i;
    return -1;
}

/* The value of the first of keys that the item holds as a string. */
static const char *get_str(const json_t *j, const char *const *keys)
{
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(j, keys[i]);
        if (json_is_string(v)) return json_string_value(v);
    }
    return NULL;
}

/* The value of the first of keys that the item holds. */
static json_t *get_any(const json_t *j, const char *const *keys)
{
    json_t *v = NULL;
    for (int i = 0; keys[i] && !v; i++) v = json_object_get(j, keys[i]);
    return v;
}

static int encode(const scp_tokenizer *t, const char *s, int32_t **ids, size_t *n)
{
    return scp_tokenizer_encode(t, s, strlen(s), 0, ids, n);
}

/* The log-likelihood of choice `cont` after the context (cids: its nc ids), not yet normalised. */
static int score_choice(const scp_eval_model *em, const scp_choice_opts *o, const char *ctx, const int32_t *cids,
                        size_t nc, const char *cont, size_t k, uint64_t index, const char *what, double *ll,
                        size_t *ncont_out)
{
    char *whole = scp_xasprintf("%s%s", ctx, cont);
    int32_t *wids = NULL, *kids = NULL, *seq = NULL;
    size_t nw = 0, nk = 0;
    int rc = -1;
    if (encode(em->tok, whole, &wids, &nw)) goto out;
    const int32_t *cont_ids;
    size_t ncont;
    if (nw > nc && memcmp(wids, cids, nc * sizeof *cids) == 0) {
        cont_ids = wids + nc;
        ncont = nw - nc;
    } else {
        if (encode(em->tok, cont, &kids, &nk)) goto out;
        cont_ids = kids;
        ncont = nk;
    }
    if (ncont == 0) {
        scp_error("%s: choice %zu encodes to no tokens", what, k);
        goto out;
    }
    size_t nctx = nc + (em->bos >= 0);
    if (nctx == 0) {
        scp_error("%s: empty context and no BOS: nothing to condition on", what);
        goto out;
    }
    if (scp_eval_check_length(&em->m->cfg, em->path, (int64_t)(nctx + ncont), em->ar, what)) goto out;
    seq = scp_xmalloc((nctx + ncont) * sizeof *seq);
    if (em->bos >= 0) seq[0] = em->bos;
    memcpy(seq + (em->bos >= 0), cids, nc * sizeof *cids);
    memcpy(seq + nctx, cont_ids, ncont * sizeof *seq);
    rc = em->ar ? scp_loglik_ar(em->m, seq, (int)nctx, (int)ncont, ll)
                : scp_loglik_diffusion(em->m, seq, (int)nctx, (int)ncont, o->samples, o->seed, index, em->mask_id,
                                       em->shift, ll);
    *ncont_out = ncont;
out:
    free(seq);
    free(whole);
    free(wids);
    free(kids);
    return rc;
}

int scp_choice_score_item(const scp_eval_model *em, const scp_choice_opts *o, const json_t *item, uint64_t index,
                          const char *what, scp_choice_item *out)
{
    static const char *const ctx_keys[] = {"context", "query", "ctx", NULL};
    static const char *const ch_keys[] = {"choices", "endings", NULL};
    static const char *const gold_keys[] = {"gold", "label", "answer", NULL};
    memset(out, 0, sizeof *out);
    const char *ctx = get_str(item, ctx_keys);
    json_t *ch = get_any(item, ch_keys), *g = get_any(item, gold_keys);
    size_t nch = json_array_size(ch);
    if (!ctx) return scp_error("%s: no \"context\" string", what);
    if (!json_is_array(ch) || nch < 2) return scp_error("%s: \"choices\" must be a list of at least two strings", what);
    if (!json_is_integer(g) || json_integer_value(g) < 0 || (size_t)json_integer_value(g) >= nch)
        return scp_error("%s: \"gold\" must be an index into the %zu choices", what, nch);
    out->gold = (int)json_integer_value(g);
    int32_t *cids;
    size_t nc;
    if (encode(em->tok, ctx, &cids, &nc)) return -1;
    out->n_choices = (int)nch;
    out->scores = scp_xmalloc(nch * sizeof *out->scores);
    for (size_t k = 0; k < nch; k++) {
        const char *cont = json_string_value(json_array_get(ch, k));
        double ll;
        size_t ncont;
        if (!cont || !*cont) {
            scp_error("%s: choice %zu is not a non-empty string", what, k);
            goto fail;
        }
        if (score_choice(em, o, ctx, cids, nc, cont, k, index, what, &ll, &ncont)) goto fail;
        out->scores[k] = o->norm == SCP_CHOICE_NORM_TOKENS  ? ll / (double)ncont
                         : o->norm == SCP_CHOICE_NORM_BYTES ? ll / (double)strlen(cont)
                                                            : ll;
    }
    free(cids);
    for (int k = 1; k < out->n_choices; k++)
        if (out->scores[k] > out->scores[out->pred]) out->pred = k;
    return 0;
fail:
    free(cids);
    scp_choice_item_free(out);
    return -1;
}

void scp_choice_item_free(scp_choice_item *it)
{
    free(it->scores);
    memset(it, 0, sizeof *it);
}
