/* eval/choice_item.c: one multiple-choice item: its keys, its sequences, the scores of its choices. */
#include "eval/choice_item.h"
#include "core/error.h"
#include "eval/choice.h"

#include <stdlib.h>
#include <string.h>

static const char *const norm_names[] = {"none", "tokens", "bytes", "chars"};

const char *scp_choice_norm_name(scp_choice_norm n) { return norm_names[n]; }

int scp_choice_norm_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, norm_names[i]) == 0) return i;
    return -1;
}

int scp_choice_argmax(const double *x, int n)
{
    int best = 0;
    for (int k = 1; k < n; k++)
        if (x[k] > x[best]) best = k;
    return best;
}

int64_t scp_choice_chars(const char *s)
{
    int64_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
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

int scp_choice_score_item(const scp_eval_model *em, const scp_choice_opts *o, const char *context,
                          const scp_choice_doc *d, uint64_t index, const char *what, scp_choice_item *out)
{
    memset(out, 0, sizeof *out);
    int32_t *cids;
    size_t nc;
    if (encode(em->tok, context, &cids, &nc)) return -1;
    const int n = d->n_choices;
    out->gold = d->gold;
    out->n_choices = n;
    out->context_tokens = (int64_t)nc;
    out->logliks = scp_xmalloc((size_t)n * sizeof *out->logliks);
    out->scores = scp_xmalloc((size_t)n * sizeof *out->scores);
    out->chars = scp_xmalloc((size_t)n * sizeof *out->chars);
    for (int k = 0; k < n; k++) {
        char *cont = scp_xasprintf("%s%s", d->delimiter, d->choices[k]);
        double ll;
        size_t ncont;
        int rc = score_choice(em, o, context, cids, nc, cont, (size_t)k, index, what, &ll, &ncont);
        size_t bytes = strlen(cont);
        free(cont);
        if (rc) goto fail;
        out->logliks[k] = ll;
        out->chars[k] = scp_choice_chars(d->choices[k]);
        out->scores[k] = o->norm == SCP_CHOICE_NORM_TOKENS  ? ll / (double)ncont
                         : o->norm == SCP_CHOICE_NORM_BYTES ? ll / (double)bytes
                         : o->norm == SCP_CHOICE_NORM_CHARS ? ll / (double)out->chars[k]
                                                            : ll;
    }
    free(cids);
    double *per_char = scp_xmalloc((size_t)n * sizeof *per_char);
    for (int k = 0; k < n; k++) per_char[k] = out->logliks[k] / (double)out->chars[k];
    out->pred = scp_choice_argmax(out->scores, n);
    out->pred_norm = scp_choice_argmax(per_char, n);
    free(per_char);
    return 0;
fail:
    free(cids);
    scp_choice_item_free(out);
    return -1;
}

void scp_choice_item_free(scp_choice_item *it)
{
    free(it->logliks);
    free(it->scores);
    free(it->chars);
    memset(it, 0, sizeof *it);
}
