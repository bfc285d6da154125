/* eval/choice.c: continuation log-likelihoods for multiple-choice scoring; see eval/choice.h. */
#include "eval/choice.h"
#include "core/error.h"
#include "core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* log softmax(row)[tok] for one row of V logits. */
static double log_prob(const float *row, int V, int32_t tok)
{
    float mx = row[0];
    for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)row[v] - mx);
    return (double)row[tok] - mx - log(s);
}

int scp_loglik_ar(scp_model *m, const int32_t *seq, int n_ctx, int n_cont, double *ll)
{
    const int V = m->cfg.vocab_size, T = n_ctx + n_cont;
    if (n_ctx < 1 || n_cont < 1) return scp_error("choice: empty context or continuation");
    /* the logits of the rows that predict the continuation, n_ctx - 1 .. T - 2 */
    float *logits = malloc((size_t)n_cont * V * sizeof *logits);
    int32_t *rows = malloc((size_t)n_cont * sizeof *rows);
    if (!logits || !rows) {
        free(logits);
        free(rows);
        return scp_error("choice: out of memory for %d x %d logits", n_cont, V);
    }
    for (int k = 0; k < n_cont; k++) rows[k] = n_ctx - 1 + k;
    scp_batch b = {.B = 1, .T = T, .input = seq, .attn = SCP_ATTN_CAUSAL};
    int rc = scp_model_logits_rows(m, &b, rows, n_cont, logits);
    double s = 0;
    for (int k = 0; rc == 0 && k < n_cont; k++) s += log_prob(logits + (size_t)k * V, V, seq[n_ctx + k]);
    free(logits);
    free(rows);
    if (rc < 0) return -1;
    *ll = s;
    return 0;
}

/* Rows per forward pass: bounded so that the logits stay near 256 MB. */
static int rows_per_pass(int T, int V, int samples)
{
    int64_t per = (int64_t)T * V * (int64_t)sizeof(float);
    int64_t r = ((int64_t)256 << 20) / (per > 0 ? per : 1);
    if (r < 1) r = 1;
    return r < samples ? (int)r : samples;
}

int scp_loglik_diffusion(scp_model *m, const int32_t *seq, int n_ctx, int n_cont, int samples, uint64_t seed, uint64_t stream,
                         int32_t mask_id, int shift, double *ll)
{
    const int V = m->cfg.vocab_size, T = n_ctx + n_cont, L = n_cont, N = samples;
    if (n_cont < 1) return scp_error("choice: empty continuation");
    if (mask_id < 0 || mask_id >= V) return scp_error("choice: no usable mask token id (%d)", mask_id);
    if (shift && n_ctx < 1) return scp_error("choice: a shifted model needs a context token before the continuation");
    int R = rows_per_pass(T, V, N);
    int32_t *in = malloc((size_t)R * T * sizeof *in);
    int *nmask = malloc((size_t)R * sizeof *nmask), *perm = malloc((size_t)L * sizeof *perm);
    /* the logits of the masked positions only: at most L rows of each of R sequences */
    float *logits = malloc((size_t)R * L * V * sizeof *logits);
    int32_t *rows = malloc((size_t)R * L * sizeof *rows);
    if (!in || !nmask || !perm || !logits || !rows) {
        free(in);
        free(nmask);
        free(perm);
        free(logits);
        free(rows);
        return scp_error("choice: out of memory for %d x %d x %d logits", R, L, V);
    }
    scp_rng r0;
    scp_rng_init(&r0, seed, scp_mix64(stream));
    int64_t k = 1 + (int64_t)scp_rng_below(&r0, (uint64_t)L);
    double total = 0;
    int rc = 0;
    for (int i0 = 0; i0 < N && !rc; i0 += R) {
        int nr = N - i0 < R ? N - i0 : R;
        for (int r = 0; r < nr; r++) {
            int i = i0 + r;
            int64_t x = llround((double)k + (double)i * ((double)L / N));
            int l = (int)(((x - 1) % L) + 1);
            nmask[r] = l;
            int32_t *row = in + (size_t)r * T;
            memcpy(row, seq, (size_t)T * sizeof *row);
            scp_rng rr;
            scp_rng_init(&rr, seed, scp_mix3(stream, (uint64_t)i, 1));
            for (int j = 0; j < L; j++) perm[j] = j;
            for (int j = 0; j < l; j++) {   /* partial Fisher-Yates: the first l of a random permutation */
                int q = j + (int)scp_rng_below(&rr, (uint64_t)(L - j));
                int t = perm[j];
                perm[j] = perm[q];
                perm[q] = t;
                row[n_ctx + perm[j]] = mask_id;
            }
        }
        int n = 0;
        for (int r = 0; r < nr; r++)
            for (int p = n_ctx; p < T; p++)
                if (in[(size_t)r * T + p] == mask_id) rows[n++] = r * T + (shift ? p - 1 : p);
        scp_batch b = {.B = nr, .T = T, .input = in, .attn = SCP_ATTN_BIDIRECTIONAL};
        if (scp_model_logits_rows(m, &b, rows, n, logits) < 0) {
            rc = -1;
            break;
        }
        for (int r = 0, j = 0; r < nr; r++) {   /* the rows in the order they were listed */
            const int32_t *row = in + (size_t)r * T;
            double s = 0;
            for (int p = n_ctx; p < T; p++)
                if (row[p] == mask_id) s += log_prob(logits + (size_t)j++ * V, V, seq[p]);
            total += s * (double)L / nmask[r];
        }
    }
    free(in);
    free(nmask);
    free(perm);
    free(logits);
    free(rows);
    if (rc) return -1;
    *ll = total / N;
    return 0;
}
