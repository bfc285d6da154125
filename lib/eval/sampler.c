/* eval/sampler.c: iterative-unmasking (diffusion) and next-token (AR) generation; see eval/sampler.h. */
#include "eval/sampler.h"
#include "core/error.h"
#include "core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *order_names[] = {"low-confidence", "margin", "entropy", "random"};

int scp_unmask_order_from_name(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, order_names[i]) == 0) return i;
    return -1;
}


void scp_gen_opts_default(scp_gen_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 64;
    o->order = SCP_ORDER_LOW_CONFIDENCE;
    o->top_p = 1.0f;
    o->seed = 1;
    o->mask_id = -1;
    o->eos_id = -1;
    o->eos = SCP_EOS_STOP;
    o->shift = 1;
    o->attn = SCP_ATTN_BIDIRECTIONAL;
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Turn logits (V) into the sampling distribution in place: ban, temperature, top-k, top-p, softmax. */
static void distribution(float *p, int V, float temperature, int top_k, float top_p, int32_t banned)
{
    if (banned >= 0 && banned < V) p[banned] = -INFINITY;
    float t = temperature > 0 ? temperature : 1.0f;
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = p[i] > mx ? p[i] : mx;
    if (temperature > 0 && top_k > 0 && top_k < V) {
        /* keep the top_k largest logits (ties at the threshold kept) */
        float *c = scp_xmalloc((size_t)V * sizeof *c);
        memcpy(c, p, (size_t)V * sizeof *c);
        qsort(c, (size_t)V, sizeof *c, cmp_desc);
        float th = c[top_k - 1];
        free(c);
        for (int i = 0; i < V; i++)
            if (p[i] < th) p[i] = -INFINITY;
    }
    double sum = 0;
    for (int i = 0; i < V; i++) {
        p[i] = isinf(p[i]) && p[i] < 0 ? 0.0f : expf((p[i] - mx) / t);
        sum += p[i];
    }
    for (int i = 0; i < V; i++) p[i] = (float)(p[i] / sum);
    if (temperature > 0 && top_p < 1.0f) {
        /* nucleus: the smallest set of most probable tokens whose mass reaches top_p */
        float *c = scp_xmalloc((size_t)V * sizeof *c);
        memcpy(c, p, (size_t)V * sizeof *c);
        qsort(c, (size_t)V, sizeof *c, cmp_desc);
        double acc = 0;
        float th = 0;
        for (int i = 0; i < V; i++) {
            acc += c[i];
            th = c[i];
            if (acc >= top_p) break;
        }
        free(c);
        sum = 0;
        for (int i = 0; i < V; i++) {
            if (p[i] < th) p[i] = 0;
            sum += p[i];
        }
        for (int i = 0; i < V; i++) p[i] = (float)(p[i] / sum);
    }
}

static int32_t pick(const float *p, int V, float temperature, double u)
{
    int32_t best = 0;
    if (temperature <= 0) {
        for (int i = 1; i < V; i++)
            if (p[i] > p[best]) best = i;
        return best;
    }
    double acc = 0;
    for (int i = 0; i < V; i++) {
        if (p[i] <= 0) continue;
        acc += p[i];
        best = i;
        if (u < acc) return i;
    }
    return best;   /* rounding: the last token with mass */
}

int32_t scp_sample_logits(float *logits, int V, float temperature, int top_k, float top_p, int32_t banned, double u)
{
    distribution(logits, V, temperature, top_k, top_p, banned);
    return pick(logits, V, temperature, u);
}

typedef struct cand {
    float conf;
    int pos;
    int32_t tok;
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->conf != y->conf) return x->conf < y->conf ? 1 : -1;
    return x->pos - y->pos;
}

int scp_generate_diffusion(scp_model *m, const scp_gen_opts *o, int32_t *canvas, int n)
{
    const int V = m->cfg.vocab_size;
    if (o->mask_id < 0 || o->mask_id >= V) return scp_error("generate: no usable mask token id (%d)", o->mask_id);
    if (o->steps < 1) return scp_error("generate: --steps must be at least 1");
    int start = 0;
    while (start < n && canvas[start] != o->mask_id) start++;
    if (start == n) return 0;
    int span = n - start;
    int block = o->block > 0 && o->block < span ? o->block : span;
    int nblocks = (span + block - 1) / block;
    /* Logits only of the rows that predict a still-masked position of the block (at most `block` of them). */
    float *logits = malloc((size_t)block * V * sizeof *logits);
    float *p = malloc((size_t)V * sizeof *p);
    cand *c = malloc((size_t)n * sizeof *c);
    char *gen = malloc((size_t)n);   /* positions that were masks: the generated span */
    int32_t *rows = malloc((size_t)block * sizeof *rows);
    if (!logits || !p || !c || !gen || !rows) {
        free(logits);
        free(p);
        free(c);
        free(gen);
        free(rows);
        return scp_error("generate: out of memory for %d x %d logits", block, V);
    }
    for (int i = 0; i < n; i++) gen[i] = canvas[i] == o->mask_id;
    scp_batch b = {.B = 1, .T = n, .input = canvas, .attn = o->attn};
    int calls = 0, rc = 0;
    for (int bi = 0; bi < nblocks && !rc; bi++) {
        int lo = start + bi * block, hi = lo + block < n ? lo + block : n;
        int S = o->steps / nblocks + (bi < o->steps % nblocks);
        if (S < 1) S = 1;
        int M0 = 0;
        for (int i = lo; i < hi; i++) M0 += canvas[i] == o->mask_id;
        for (int s = 0; s < S; s++) {
            int M = 0;
            for (int i = lo; i < hi; i++) M += canvas[i] == o->mask_id;
            if (M == 0) break;
            /* linear schedule: M0 / S per step, the remainder over the first steps; the last takes the rest */
            int k = M0 / S + (s < M0 % S);
            if (s == S - 1 || k > M) k = M;
            if (k == 0) continue;
            int nr = 0;
            for (int i = lo; i < hi; i++)
                if (canvas[i] == o->mask_id) rows[nr++] = o->shift ? (i > 0 ? i - 1 : 0) : i;
            if (scp_model_logits_rows(m, &b, rows, nr, logits) < 0) {
                rc = -1;
                break;
            }
            int nc = 0;
            for (int i = lo, j = 0; i < hi; i++) {
                if (canvas[i] != o->mask_id) continue;
                memcpy(p, logits + (size_t)j++ * V, (size_t)V * sizeof *p);
                scp_rng r;
                scp_rng_init(&r, o->seed, (uint64_t)calls << 32 | (uint64_t)i);
                double u = scp_rng_uniform(&r), u2 = scp_rng_uniform(&r);
                distribution(p, V, o->temperature, o->top_k, o->top_p, o->mask_id);
                int32_t tok = pick(p, V, o->temperature, u);
                float conf = 0;
                switch (o->order) {
                case SCP_ORDER_LOW_CONFIDENCE: conf = p[tok]; break;
                case SCP_ORDER_MARGIN: {
                    float t1 = 0, t2 = 0;
                    for (int v = 0; v < V; v++) {
                        if (p[v] > t1) t2 = t1, t1 = p[v];
                        else if (p[v] > t2) t2 = p[v];
                    }
                    conf = t1 - t2;
                    break;
                }
                case SCP_ORDER_ENTROPY: {
                    double h = 0;
                    for (int v = 0; v < V; v++)
                        if (p[v] > 0) h += p[v] * log(p[v]);
                    conf = (float)h;   /* negative entropy: larger is more certain */
                    break;
                }
                case SCP_ORDER_RANDOM: conf = (float)u2; break;
                }
                c[nc++] = (cand){conf, i, tok};
            }
            qsort(c, (size_t)nc, sizeof *c, cmp_cand);
            for (int j = 0; j < k && j < nc; j++) canvas[c[j].pos] = c[j].tok;
            if (o->eos == SCP_EOS_FILL && o->eos_id >= 0) {
                /* LLaDA's SFT pads answers with EOS: every generated position after the first committed EOS is
                 * EOS (tokens committed there earlier included; prompt and suffix untouched) */
                int first = -1;
                for (int i = start; i < n && first < 0; i++)
                    if (gen[i] && canvas[i] == o->eos_id) first = i;
                if (first >= 0)
                    for (int i = first + 1; i < n; i++)
                        if (gen[i]) canvas[i] = o->eos_id;
            }
            calls++;
            if (o->on_step) o->on_step(o->ud, canvas, n, calls);
        }
    }
    free(logits);
    free(p);
    free(c);
    free(gen);
    free(rows);
    return rc ? -1 : calls;
}

int scp_generate_ar(scp_model *m, const scp_gen_opts *o, int32_t *ids, int n, int length)
{
    const int V = m->cfg.vocab_size;
    if (n < 1) return scp_error("generate: an autoregressive prompt needs at least one token (give BOS or text)");
    float *logits = malloc((size_t)V * sizeof *logits);   /* the last position's: the only one sampled from */
    if (!logits) return scp_error("generate: out of memory for %d logits", V);
    /* With a key/value cache each token costs one position's forward; without (a backend lacking
     * attention_decode), the whole sequence's, of which only the last row reaches the vocabulary. */
    const int cached = scp_model_can_decode(m);
    int rc = 0;
    for (int t = 0; t < length; t++) {
        scp_batch b = {.B = 1, .T = n, .input = ids, .attn = SCP_ATTN_CAUSAL};
        int32_t last = n - 1;
        int got = !cached  ? scp_model_logits_rows(m, &b, &last, 1, logits)
                  : t == 0 ? scp_model_decode_start(m, ids, n, n + length, logits)
                           : scp_model_decode_next(m, ids[n - 1], logits);
        if (got < 0) {
            rc = -1;
            break;
        }
        scp_rng r;
        scp_rng_init(&r, o->seed, (uint64_t)t << 32 | (uint64_t)n);
        int32_t tok = scp_sample_logits(logits, V, o->temperature, o->top_k, o->top_p, o->mask_id, scp_rng_uniform(&r));
        ids[n++] = tok;
        if (o->on_step) o->on_step(o->ud, ids, n, t + 1);
        if (tok == o->eos_id && o->eos != SCP_EOS_IGNORE) break;
    }
    if (cached) scp_model_decode_end(m);
    free(logits);
    return rc ? -1 : n;
}
