/* eval/loss.c: causal perplexity and the diffusion NLL bound over a sequence source. */
#include "eval/loss.h"
#include "core/error.h"
#include "core/progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void scp_eval_opts_default(scp_eval_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch = 8;
    o->samples = 16;
    o->seed = 1;
    o->eps = 1e-3;
    o->sched = SCP_SCHED_LINEAR;
    o->mask_id = -1;
    o->shift = 1;
    o->attn = SCP_ATTN_BIDIRECTIONAL;
}

/* Ratio estimate sum(y) / sum(l) and its standard error over n independent units. */
static void ratio_stats(const double *y, const double *l, int64_t n, double *ratio, double *se)
{
    double sy = 0, sl = 0;
    for (int64_t i = 0; i < n; i++) sy += y[i], sl += l[i];
    *ratio = sl > 0 ? sy / sl : NAN;
    if (n < 2 || !(sl > 0)) {
        *se = NAN;
        return;
    }
    double ss = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = y[i] - *ratio * l[i];
        ss += d * d;
    }
    *se = sqrt(ss / ((double)n * (double)(n - 1))) / (sl / (double)n);
}

static int64_t n_seqs(const scp_seq_source *src, const scp_eval_opts *o)
{
    return o->max_seqs > 0 && o->max_seqs < src->n ? o->max_seqs : src->n;
}

int scp_eval_ppl(scp_model *m, const scp_seq_source *src, const scp_eval_opts *o, scp_eval_result *r)
{
    memset(r, 0, sizeof *r);
    int64_t n = n_seqs(src, o);
    if (n <= 0) return scp_error("no sequences to evaluate");
    int T = src->T, Bmax = o->batch > 0 ? o->batch : 1;
    scp_train_batch b = {0};
    scp_batch_reserve(&b, Bmax, T);
    float *nll = scp_xmalloc(sizeof *nll * (size_t)Bmax * (size_t)T);
    double *y = scp_xcalloc((size_t)n, sizeof *y), *l = scp_xcalloc((size_t)n, sizeof *l);
    scp_progress p;
    scp_progress_init(&p, n);
    if (!o->progress) p.enabled = 0;
    double t0 = scp_now();
    int rc = 0;
    for (int64_t s0 = 0; s0 < n && rc == 0; s0 += Bmax) {
        int B = (int)(n - s0 < Bmax ? n - s0 : Bmax);
        b.B = B;
        for (int k = 0; k < B && rc == 0; k++) {
            size_t off = (size_t)k * (size_t)T;
            rc = src->get(src->ctx, s0 + k, b.tokens + off, b.doc + off);
            if (rc == 0) scp_batch_ar_row(&b, k, o->doc_mask);
        }
        if (rc) break;
        scp_batch v = scp_batch_view(&b, 0, B, o->doc_mask, SCP_ATTN_CAUSAL, 0, 0);
        v.weight = NULL;
        scp_model_step(m, &v, 0, nll);
        for (int k = 0; k < B; k++) {
            double s = 0;
            for (int i = 0; i < T; i++)
                if (b.target[(size_t)k * T + i] >= 0) s += nll[(size_t)k * T + i];
            y[s0 + k] = s;
            l[s0 + k] = b.n_scored[k];
            r->tokens += b.n_scored[k];
        }
        scp_progress_update(&p, s0 + B, "ppl");
    }
    scp_progress_end(&p);
    if (rc == 0) {
        r->seqs = n;
        ratio_stats(y, l, n, &r->nll, &r->se);
        r->seconds = scp_now() - t0;
        if (r->tokens == 0) rc = scp_error("no token to predict in %lld sequences", (long long)n);
    }
    free(nll), free(y), free(l);
    scp_batch_free(&b);
    return rc;
}

int scp_eval_elbo(scp_model *m, const scp_seq_source *src, const scp_eval_opts *o, scp_eval_result *r)
{
    memset(r, 0, sizeof *r);
    int64_t n = n_seqs(src, o);
    if (n <= 0) return scp_error("no sequences to evaluate");
    if (o->mask_id < 0) return scp_error("no mask token id for the diffusion bound");
    int T = src->T, N = o->samples > 0 ? o->samples : 1, Bmax = o->batch > 0 ? o->batch : 1;
    scp_train_batch b = {0};
    scp_batch_reserve(&b, Bmax, T);
    float *nll = scp_xmalloc(sizeof *nll * (size_t)Bmax * (size_t)T);
    double *y = scp_xcalloc((size_t)n, sizeof *y), *l = scp_xcalloc((size_t)n, sizeof *l);
    double *ts = scp_xmalloc(sizeof *ts * (size_t)N);
    int32_t *tok = scp_xmalloc(sizeof *tok * (size_t)T), *doc = scp_xmalloc(sizeof *doc * (size_t)T);
    int64_t *row_seq = scp_xmalloc(sizeof *row_seq * (size_t)Bmax);
    scp_mdm_spec spec = {.seed = o->seed, .mask_id = o->mask_id, .shift = o->shift, .doc_mask = o->doc_mask,
                         .sched = o->sched};
    scp_progress p;
    scp_progress_init(&p, n * N);
    if (!o->progress) p.enabled = 0;
    double t0 = scp_now(), masked = 0, maskable = 0;
    int rc = 0, k = 0;
    int64_t rows_done = 0, cur = -1;
    /* Rows (s, j) in order s = 0.., j = 0..N-1, packed Bmax to a forward pass. */
    for (int64_t s = 0; s < n && rc == 0; s++) {
        if ((rc = src->get(src->ctx, s, tok, doc))) break;
        scp_mask_sample_t(SCP_T_STRATIFIED, o->seed, (uint64_t)s, N, o->eps, ts);
        for (int j = 0; j < N; j++) {
            size_t off = (size_t)k * (size_t)T;
            memcpy(b.tokens + off, tok, sizeof *tok * (size_t)T);
            memcpy(b.doc + off, doc, sizeof *doc * (size_t)T);
            scp_batch_mdm_row(&b, k, ts[j], (uint64_t)s * (uint64_t)N + (uint64_t)j, &spec);
            row_seq[k++] = s;
            int last = s == n - 1 && j == N - 1;
            if (k < Bmax && !last) continue;
            b.B = k;
            scp_batch v = scp_batch_view(&b, 0, k, o->doc_mask, o->attn, 0, 0);
            v.weight = NULL;
            scp_model_step(m, &v, 0, nll);
            for (int q = 0; q < k; q++) {
                double sum = 0;
                for (int i = 0; i < T; i++)
                    if (b.target[(size_t)q * T + i] >= 0) sum += nll[(size_t)q * T + i];
                y[row_seq[q]] += scp_mask_weight(o->sched, b.t[q]) * sum / N;
                if (row_seq[q] != cur) {
                    cur = row_seq[q];
                    l[cur] = b.n_len[q];
                }
                masked += b.n_scored[q];
                maskable += b.n_len[q];
            }
            rows_done += k;
            k = 0;
            scp_progress_update(&p, rows_done, "elbo");
        }
    }
    scp_progress_end(&p);
    if (rc == 0) {
        r->seqs = n;
        for (int64_t s = 0; s < n; s++) r->tokens += (int64_t)l[s];
        ratio_stats(y, l, n, &r->nll, &r->se);
        r->masked_fraction = maskable > 0 ? masked / maskable : 0;
        r->seconds = scp_now() - t0;
        if (r->tokens == 0) rc = scp_error("no maskable position in %lld sequences", (long long)n);
    }
    free(nll), free(y), free(l), free(ts), free(tok), free(doc), free(row_seq);
    scp_batch_free(&b);
    return rc;
}
