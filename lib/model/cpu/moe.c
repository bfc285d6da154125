/* moe.c: the mixture-of-experts entries of the CPU backends (model/backend.h): routing (softmax, top-k,
 * renormalisation) and its backward, the weighted combine of expert outputs and its backward. They are small
 * next to the experts' matmuls, so "cpu" and "cpu-ref" share these plain loops (in the order of the maths). */
#include <stdlib.h>

#include "model/cpu/cpu.h"

/* probs, idx, weight, lse: (M, E), (M, k), (M, k), (M); psum (E). */
void scp_cpu_moe_route(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const float *logits, int M,
                       int E, int k, int norm)
{
#pragma omp parallel for schedule(static) if (M > 64)
    for (int r = 0; r < M; r++) {
        const float *z = logits + (size_t)r * E;
        float *p = probs + (size_t)r * E;
        float mx = -INFINITY;
        for (int e = 0; e < E; e++) mx = z[e] > mx ? z[e] : mx;
        float s = 0.0f;
        for (int e = 0; e < E; e++) p[e] = expf(z[e] - mx), s += p[e];
        for (int e = 0; e < E; e++) p[e] /= s;
        lse[r] = mx + logf(s);
        /* Top-k by insertion into a sorted list of k, experts in index order: an equal probability never moves
         * ahead, so ties keep the lower index first. O(E k) at worst. */
        int32_t *ix = idx + (size_t)r * k;
        float *w = weight + (size_t)r * k, ws = 0.0f;
        int n = 0;
        for (int e = 0; e < E; e++) {
            float q = p[e];
            if (n == k && !(q > w[k - 1])) continue;
            int i = n < k ? n++ : k - 1;
            for (; i > 0 && q > w[i - 1]; i--) w[i] = w[i - 1], ix[i] = ix[i - 1];
            w[i] = q, ix[i] = e;
        }
        for (int j = 0; j < k; j++) ws += w[j];
        if (norm)
            for (int j = 0; j < k; j++) w[j] /= ws;
    }
    /* Column sums in row order, in double (deterministic whatever the thread count). */
    for (int e = 0; e < E; e++) {
        double s = 0.0;
        for (int r = 0; r < M; r++) s += probs[(size_t)r * E + e];
        psum[e] = (float)s;
    }
}

void scp_cpu_moe_route_bwd(float *dlogits, const float *dweight, const float *probs, const float *lse,
                           const int32_t *idx, const float *weight, const float *dprob, float zscale, int M, int E, int k,
                           int norm)
{
#pragma omp parallel for schedule(static) if (M > 64)
    for (int r = 0; r < M; r++) {
        const float *p = probs + (size_t)r * E, *dw = dweight + (size_t)r * k, *w = weight + (size_t)r * k;
        const int32_t *ix = idx + (size_t)r * k;
        float *g = dlogits + (size_t)r * E;   /* first d loss / d probs, then d loss / d logits */
        for (int e = 0; e < E; e++) g[e] = dprob ? dprob[e] : 0.0f;
        if (norm) {
            /* w_j = p_j / s, s = sum of the chosen p: d/dp_i = (dw_i - sum_j dw_j w_j) / s */
            float s = 0.0f, dot = 0.0f;
            for (int j = 0; j < k; j++) s += p[ix[j]], dot += dw[j] * w[j];
            for (int j = 0; j < k; j++) g[ix[j]] += (dw[j] - dot) / s;
        } else {
            for (int j = 0; j < k; j++) g[ix[j]] += dw[j];
        }
        /* softmax backward: dz_e = p_e (g_e - sum p g); the z-loss adds zscale * lse * p_e */
        float pg = 0.0f;
        for (int e = 0; e < E; e++) pg += p[e] * g[e];
        float zl = zscale * lse[r];
        for (int e = 0; e < E; e++) g[e] = p[e] * (g[e] - pg) + zl * p[e];
    }
}

void scp_cpu_moe_combine(float *out, const float *y, const float *weight, const int32_t *pos, int M, int k, int D,
                         float beta)
{
#pragma omp parallel
    {
        float *acc = malloc((size_t)D * sizeof *acc);
#pragma omp for schedule(static)
        for (int r = 0; r < M; r++) {
            for (int c = 0; c < D; c++) acc[c] = 0.0f;
            for (int j = 0; j < k; j++) {
                const float *yr = y + (size_t)pos[(size_t)r * k + j] * D;
                float wj = weight ? weight[(size_t)r * k + j] : 1.0f;
                for (int c = 0; c < D; c++) acc[c] += wj * yr[c];
            }
            float *o = out + (size_t)r * D;
            if (beta == 0.0f)
                for (int c = 0; c < D; c++) o[c] = acc[c];
            else
                for (int c = 0; c < D; c++) o[c] = beta * o[c] + acc[c];
        }
        free(acc);
    }
}

void scp_cpu_moe_combine_bwd(float *dy, float *dweight, const float *dout, const float *y, const float *weight,
                             const int32_t *pos, int M, int k, int D)
{
#pragma omp parallel for schedule(static)
    for (int r = 0; r < M; r++) {
        const float *d = dout + (size_t)r * D;
        for (int j = 0; j < k; j++) {
            size_t a = (size_t)r * k + j, row = (size_t)pos[a] * D;
            float wj = weight[a];
            for (int c = 0; c < D; c++) dy[row + c] = wj * d[c];
            dweight[a] = scp_dot(d, y + row, D);
        }
    }
}
