/* pointwise.c: SwiGLU, embedding lookup, row gather/scatter, cross-entropy over the vocabulary, AdamW, and the
 * gradient-norm helpers. */
#include <stdlib.h>

#include "model/cpu/cpu.h"
#include "core/error.h"

#define SCP_KNAME(f) f##_base
#include "model/cpu/pointwise_kern.h"
#undef SCP_KNAME
#ifdef SCP_KERNEL_AVX2
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SCP_KNAME(f) f##_avx2
#include "model/cpu/pointwise_kern.h"
#undef SCP_KNAME
#pragma GCC pop_options
#else
#define swiglu_fwd_row_avx2 swiglu_fwd_row_base
#define swiglu_bwd_row_avx2 swiglu_bwd_row_base
#define ce_row_avx2 ce_row_base
#endif

/* gateup (M, 2I) = [gate | up]; h (M, I). */
void scp_cpu_swiglu_fwd(float *h, const float *gateup, int M, int I)
{
    int avx2 = scp_cpu_has_avx2();
#pragma omp parallel for schedule(static) if ((size_t)M * I > 65536)
    for (int m = 0; m < M; m++)
        (avx2 ? swiglu_fwd_row_avx2 : swiglu_fwd_row_base)(h + (size_t)m * I, gateup + (size_t)m * 2 * I, I);
}

void scp_cpu_swiglu_bwd(float *dgateup, const float *dh, const float *gateup, int M, int I)
{
    int avx2 = scp_cpu_has_avx2();
#pragma omp parallel for schedule(static) if ((size_t)M * I > 65536)
    for (int m = 0; m < M; m++)
        (avx2 ? swiglu_bwd_row_avx2 : swiglu_bwd_row_base)(dgateup + (size_t)m * 2 * I, dh + (size_t)m * I,
                                                           gateup + (size_t)m * 2 * I, I);
}

void scp_cpu_embedding_fwd(float *out, const int32_t *ids, const float *table, int M, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)M * C > (1 << 20))
    for (int m = 0; m < M; m++) memcpy(out + (size_t)m * C, table + (size_t)ids[m] * C, (size_t)C * sizeof(float));
}

/* Columns split over threads, rows added in order: no races, same sums for any thread count. */
void scp_cpu_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int M, int C, int V)
{
    (void)V;
    int nt = (size_t)M * C > (1 << 20) ? scp_cpu_threads() : 1;
#pragma omp parallel num_threads(nt)
    {
        int t = scp_cpu_thread_id(), per = (C + nt - 1) / nt, c0 = t * per, c1 = c0 + per < C ? c0 + per : C;
        for (int m = 0; m < M; m++) {
            float *g = dtable + (size_t)ids[m] * C;
            const float *d = dout + (size_t)m * C;
#pragma omp simd
            for (int c = c0; c < c1; c++) g[c] += d[c];
        }
    }
}

void scp_cpu_gather_rows(float *dst, const float *src, const int32_t *rows, int n, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)n * C > (1 << 20))
    for (int r = 0; r < n; r++) memcpy(dst + (size_t)r * C, src + (size_t)rows[r] * C, (size_t)C * sizeof(float));
}

void scp_cpu_scatter_rows(float *dst, const float *src, const int32_t *rows, int n, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)n * C > (1 << 20))
    for (int r = 0; r < n; r++) memcpy(dst + (size_t)rows[r] * C, src + (size_t)r * C, (size_t)C * sizeof(float));
}

double scp_cpu_crossentropy(float *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                            int backward)
{
    int avx2 = scp_cpu_has_avx2();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *l = logits + (size_t)n * V;
        if (target[n] < 0) {
            nll[n] = 0.0f;
            if (backward) memset(l, 0, (size_t)V * sizeof(float));
            continue;
        }
        nll[n] = (avx2 ? ce_row_avx2 : ce_row_base)(l, target[n], weight ? weight[n] : 1.0f, V, backward);
    }
    double loss = 0.0;
    for (int n = 0; n < N; n++)
        if (target[n] >= 0) loss += (double)(weight ? weight[n] : 1.0f) * nll[n];
    return loss;
}

double scp_cpu_crossentropy_ref(float *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                                int backward)
{
    double loss = 0.0;
    for (int n = 0; n < N; n++) {
        float *l = logits + (size_t)n * V;
        int t = target[n];
        if (t < 0) {
            nll[n] = 0.0f;
            if (backward) memset(l, 0, (size_t)V * sizeof(float));
            continue;
        }
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        for (int v = 0; v < V; v++) sum += exp(l[v] - mx);
        double lse = mx + log(sum), w = weight ? weight[n] : 1.0;
        nll[n] = (float)(lse - l[t]);
        loss += w * (lse - l[t]);
        if (backward) {
            for (int v = 0; v < V; v++) l[v] = (float)(w * exp(l[v] - lse));
            l[t] -= (float)w;
        }
    }
    return loss;
}

void scp_cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps,
                   float wd, float bc1, float bc2)
{
    float sq2 = sqrtf(bc2);
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float mi = beta1 * m[i] + (1.0f - beta1) * g[i];
        float vi = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi / bc1) / (sqrtf(vi) / sq2 + eps) + wd * p[i]);
    }
}

/* Per-thread partial sums over fixed contiguous chunks, added in thread order: the same bits for a fixed thread
 * count (an OpenMP reduction clause leaves the combining order open). The squares are summed in double: x is
 * read from memory once, so the wider adds cost nothing, where float partials of 1024 squares would be off by up to
 * about 1e-6 relative, the size of the differences the gradient norm's callers compare. */
double scp_cpu_sumsq(const float *x, size_t n)
{
    int nt = scp_cpu_threads();
    double part[256] = {0};
    if (nt > 256) nt = 256;
#pragma omp parallel num_threads(nt)
    {
        int t = scp_cpu_thread_id();
        size_t per = (n + (size_t)nt - 1) / (size_t)nt, i0 = (size_t)t * per, i1 = i0 + per < n ? i0 + per : n;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[t] = s;
    }
    double s = 0.0;
    for (int t = 0; t < nt; t++) s += part[t];
    return s;
}

void scp_cpu_scale(float *x, size_t n, float s)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void scp_cpu_add(float *y, const float *x, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
