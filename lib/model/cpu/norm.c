/* norm.c: RMSNorm (hidden state and Qwen3's per-head q/k norm) and rotary embeddings, forward and backward, and
 * Qwen3's q/k norm followed by the rotation as one entry.
 * Rows: row n (n < N) starts at x + n * ld and holds G groups of C (or hd) floats; each group is normalised
 * (or rotated) on its own. */
#include "model/cpu/cpu.h"

/* Below this many floats (4 MB) these memory-bound operations run on one thread: a parallel region costs a
 * barrier, microseconds on an idle machine but a scheduler time slice when the cores are shared. */
#define PAR_MIN (1 << 20)

void scp_cpu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int N, int G, int C, int ld, float eps)
{
#pragma omp parallel for schedule(static) if ((size_t)N * G * C > PAR_MIN)
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const float *xr = x + (size_t)n * ld + (size_t)g * C;
            float *o = out + (size_t)n * ld + (size_t)g * C;
            float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
            for (int c = 0; c < C; c++) ss += xr[c] * xr[c];
            float r = 1.0f / sqrtf(ss / (float)C + eps);
            rstd[(size_t)n * G + g] = r;
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = xr[c] * r * w[c];
        }
}

/* y = x r w with r = (mean(x^2) + eps)^-1/2:
 *   dw_c += sum over rows of dy_c x_c r
 *   dx_c  = r w_c dy_c - x_c r^3 / C * sum_j dy_j w_j x_j
 * dw first (columns split over threads, rows in order: deterministic for any thread count), because dx may
 * overwrite dout in place. */
void scp_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd, int N,
                         int G, int C, int ld, int accumulate)
{
    int nt = (size_t)N * G * C > PAR_MIN ? scp_cpu_threads() : 1;
#pragma omp parallel num_threads(nt)
    {
        int t = scp_cpu_thread_id(), per = (C + nt - 1) / nt, c0 = t * per, c1 = c0 + per < C ? c0 + per : C;
        for (int n = 0; n < N; n++)
            for (int g = 0; g < G; g++) {
                size_t o = (size_t)n * ld + (size_t)g * C;
                const float *d = dout + o, *xr = x + o;
                float r = rstd[(size_t)n * G + g];
#pragma omp simd
                for (int c = c0; c < c1; c++) dw[c] += d[c] * xr[c] * r;
            }
    }
#pragma omp parallel for schedule(static) if ((size_t)N * G * C > PAR_MIN)
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            size_t o = (size_t)n * ld + (size_t)g * C;
            const float *d = dout + o, *xr = x + o;
            float *dxr = dx + o;
            float r = rstd[(size_t)n * G + g], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int c = 0; c < C; c++) dot += d[c] * w[c] * xr[c];
            float k = dot * r * r * r / (float)C;
            if (accumulate) {
#pragma omp simd
                for (int c = 0; c < C; c++) dxr[c] += r * w[c] * d[c] - xr[c] * k;
            } else {
#pragma omp simd
                for (int c = 0; c < C; c++) dxr[c] = r * w[c] * d[c] - xr[c] * k;
            }
        }
}

/* HF's rotate_half convention: for i < hd/2, (a, b) = (x_i, x_{i+hd/2}) becomes (a cos - b sin, b cos + a sin);
 * the backward is the transposed rotation (angle negated). Position of row n is n % T (rows are (B, T)). */
void scp_cpu_rope(float *x, const float *cos, const float *sin, int N, int T, int G, int hd, int ld, int inverse)
{
    int half = hd / 2;
    float sgn = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static) if ((size_t)N * G * hd > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *c = cos + (size_t)(n % T) * half, *s = sin + (size_t)(n % T) * half;
        for (int g = 0; g < G; g++) {
            float *p = x + (size_t)n * ld + (size_t)g * hd;
#pragma omp simd
            for (int i = 0; i < half; i++) {
                float a = p[i], b = p[i + half], si = sgn * s[i];
                p[i] = a * c[i] - b * si;
                p[i + half] = b * c[i] + a * si;
            }
        }
    }
}

/* The q heads (G = H) and k heads (G = KV, from column H hd) normalised in place (each group reads its elements
 * before it writes them), then both rotated as one block of H + KV groups. */
void scp_cpu_qk_norm_rope_fwd(float *qk, float *raw, float *rstd, const float *wq, const float *wk, const float *cos,
                              const float *sin, int N, int T, int H, int KV, int hd, int ld, float eps)
{
    const size_t kcol = (size_t)H * hd;
    if (raw)
        for (int n = 0; n < N; n++) memcpy(raw + (size_t)n * ld, qk + (size_t)n * ld, (size_t)(H + KV) * hd * sizeof(float));
    scp_cpu_rmsnorm_fwd(qk, rstd, qk, wq, N, H, hd, ld, eps);
    scp_cpu_rmsnorm_fwd(qk + kcol, rstd + (size_t)N * H, qk + kcol, wk, N, KV, hd, ld, eps);
    scp_cpu_rope(qk, cos, sin, N, T, H + KV, hd, ld, 0);
}

void scp_cpu_qk_norm_rope_bwd(float *dqk, float *dwq, float *dwk, const float *raw, const float *wq, const float *wk,
                              const float *rstd, const float *cos, const float *sin, int N, int T, int H, int KV, int hd,
                              int ld)
{
    const size_t kcol = (size_t)H * hd;
    scp_cpu_rope(dqk, cos, sin, N, T, H + KV, hd, ld, 1);
    scp_cpu_rmsnorm_bwd(dqk, dwq, dqk, raw, wq, rstd, N, H, hd, ld, 0);
    scp_cpu_rmsnorm_bwd(dqk + kcol, dwk, dqk + kcol, raw + kcol, wk, rstd + (size_t)N * H, N, KV, hd, ld, 0);
}
