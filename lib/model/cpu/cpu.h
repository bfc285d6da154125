/* cpu.h: internals shared by the CPU backend's files (lib/model/cpu/): a vectorisable exp, thread helpers, and the
 * entry points each file provides to the tables in backend_cpu.c. Fast entries sit beside plain reference
 * loops (the "_ref" ones, in the order of the maths), as in llm.c; tests check one against the other. */
#ifndef SCP_CPU_H
#define SCP_CPU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "model/backend.h"

static inline int scp_cpu_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static inline int scp_cpu_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Helpers are always inlined, so that they are compiled for the instruction set of the kernel that calls them. */
#if defined(__GNUC__)
#define SCP_INLINE static inline __attribute__((always_inline))
#else
#define SCP_INLINE static inline
#endif

/* Kernels that are worth wider vectors are compiled twice, for the x86-64 baseline and for AVX2+FMA (a file
 * includes its kernels' body twice, under `#pragma GCC target`, naming them through SCP_KNAME), and the caller
 * picks by scp_cpu_has_avx2() at run time. Not with other compilers or CPUs, nor under the sanitizers. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define SCP_KERNEL_AVX2 1
static inline int scp_cpu_has_avx2(void)
{
    static int has = -1;
    if (has < 0) has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return has;
}
#else
static inline int scp_cpu_has_avx2(void) { return 0; }
#endif

/* x clamped to [lo, hi] with bit selects: GCC if-converts float ?: only under -ffinite-math-only, and a loop with
 * a branch in it does not vectorise. A NaN stays NaN. */
SCP_INLINE float scp_clampf(float x, float lo, float hi)
{
    uint32_t xb, lb, hb;
    memcpy(&xb, &x, 4), memcpy(&lb, &lo, 4), memcpy(&hb, &hi, 4);
    uint32_t ml = 0u - (uint32_t)(x < lo), mh = 0u - (uint32_t)(x > hi);
    xb = (xb & ~ml) | (lb & ml);
    xb = (xb & ~mh) | (hb & mh);
    memcpy(&x, &xb, 4);
    return x;
}

/* exp(x) in float with ~2 ulp error (Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial in r, 2^n by bits), written
 * without calls or branches so that `omp simd` loops over it vectorise (glibc's expf does not, and softmax over
 * T keys per query is a large share of a small model's step). Inputs below -87.3 give 2^-126, not 0: callers
 * that need exact zeros (masked keys) set them themselves. */
SCP_INLINE float scp_expf(float x)
{
    x = scp_clampf(x, -87.3f, 88.3f);
    /* n = round(x / ln 2) with the 1.5 * 2^23 trick: adding it leaves n in the low mantissa bits (no float to int
     * conversion, which GCC guards with a NaN test that stops vectorisation) */
    float k = x * 1.44269504088896341f + 12582912.0f;
    float fn = k - 12582912.0f;
    uint32_t kb;
    memcpy(&kb, &k, 4);
    uint32_t n = kb - 0x4B400000u;            /* n in two's complement; unsigned so that a NaN's bits are no UB */
    float r = x - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    uint32_t bits = (n + 127u) << 23;         /* 2^n */
    float f;
    memcpy(&f, &bits, 4);
    return y * f;
}

/* Reductions with 16 explicit lanes, summed in a fixed order at the end: the compiler vectorises the lane loop
 * (it may not reorder a plain float sum itself; `omp simd` on the lane loop, which carries no dependence, makes
 * it if-convert the selects), and the result does not depend on the vector width. */
#define SCP_LANES 16
SCP_INLINE float scp_lanes_sum(const float *acc)
{
    float s = 0.0f;
    for (int l = 0; l < SCP_LANES; l++) s += acc[l];
    return s;
}

SCP_INLINE float scp_dot(const float *a, const float *b, int n)
{
    float acc[SCP_LANES] = {0};
    int j = 0;
    for (; j + SCP_LANES <= n; j += SCP_LANES)
#pragma omp simd
        for (int l = 0; l < SCP_LANES; l++) acc[l] += a[j + l] * b[j + l];
    for (int l = 0; j < n; j++, l++) acc[l] += a[j] * b[j];
    return scp_lanes_sum(acc);
}

/* max(a, b) by bit select (see scp_clampf). */
SCP_INLINE float scp_fmaxsel(float a, float b)
{
    uint32_t ab, bb;
    memcpy(&ab, &a, 4), memcpy(&bb, &b, 4);
    uint32_t m = 0u - (uint32_t)(a > b);
    ab = (ab & m) | (bb & ~m);
    memcpy(&a, &ab, 4);
    return a;
}

SCP_INLINE float scp_max(const float *a, int n)
{
    float acc[SCP_LANES];
    for (int l = 0; l < SCP_LANES; l++) acc[l] = -INFINITY;
    int j = 0;
    for (; j + SCP_LANES <= n; j += SCP_LANES)
#pragma omp simd
        for (int l = 0; l < SCP_LANES; l++) acc[l] = scp_fmaxsel(a[j + l], acc[l]);
    for (int l = 0; j < n; j++, l++) acc[l] = scp_fmaxsel(a[j], acc[l]);
    float m = acc[0];
    for (int l = 1; l < SCP_LANES; l++) m = scp_fmaxsel(acc[l], m);
    return m;
}

/* p[j] = exp(p[j] - mx) for j < n; returns their sum. */
SCP_INLINE float scp_exp_sum(float *p, float mx, int n)
{
    float acc[SCP_LANES] = {0};
    int j = 0;
    for (; j + SCP_LANES <= n; j += SCP_LANES)
#pragma omp simd
        for (int l = 0; l < SCP_LANES; l++) {
            float e = scp_expf(p[j + l] - mx);
            p[j + l] = e;
            acc[l] += e;
        }
    for (int l = 0; j < n; j++, l++) {
        float e = scp_expf(p[j] - mx);
        p[j] = e;
        acc[l] += e;
    }
    return scp_lanes_sum(acc);
}

/* backend_cpu.c: workspace memory (64-byte aligned, zeroed; dies on exhaustion), byte copies and the size of
 * the attention state (the (B, H, T, T) probabilities), shared by the fp32 tables and "cpu-bf16"
 * (backend_bf16.c). */
void *scp_cpu_alloc(size_t bytes);
void scp_cpu_free(void *p);
/* The same for the CPU tables that pose as device memory (cpu-mirror, cpu-bf16), counted: the bytes of their
 * buffers held at once at most (scp_cpu_counted_peak), as a device backend counts its memory. */
void *scp_cpu_counted_alloc(size_t bytes);
void scp_cpu_counted_free(void *p);
int64_t scp_cpu_counted_peak(void);
int64_t scp_cpu_uncounted_peak(void);
void scp_cpu_zero_bytes(void *x, size_t bytes);
void scp_cpu_copy_bytes(void *dst, const void *src, size_t bytes);
size_t scp_cpu_attn_state_floats(int B, int H, int T);

/* matmul.c */
void scp_cpu_matmul_fwd(float *out, int ldo, const float *inp, int ldi, const float *w, const float *bias, int M, int K,
                        int N, float beta);
void scp_cpu_matmul_bwd_inp(float *dinp, int ldi, const float *dout, int ldo, const float *w, int M, int K, int N, float beta);
void scp_cpu_matmul_bwd_w(float *dw, float *dbias, const float *dout, int ldo, const float *inp, int ldi, int M, int K, int N);
/* The blocked fallback used when there is no CBLAS (exported so tests compare it with CBLAS where both exist). */
void scp_cpu_matmul_fwd_blocked(float *out, int ldo, const float *inp, int ldi, const float *w, const float *bias, int M,
                                int K, int N, float beta);
void scp_cpu_matmul_bwd_inp_blocked(float *dinp, int ldi, const float *dout, int ldo, const float *w, int M, int K, int N,
                                    float beta);
void scp_cpu_matmul_bwd_w_blocked(float *dw, float *dbias, const float *dout, int ldo, const float *inp, int ldi, int M,
                                  int K, int N);
void scp_cpu_matmul_fwd_ref(float *out, int ldo, const float *inp, int ldi, const float *w, const float *bias, int M, int K,
                            int N, float beta);
void scp_cpu_matmul_bwd_inp_ref(float *dinp, int ldi, const float *dout, int ldo, const float *w, int M, int K, int N,
                                float beta);
void scp_cpu_matmul_bwd_w_ref(float *dw, float *dbias, const float *dout, int ldo, const float *inp, int ldi, int M, int K,
                              int N);

/* norm.c */
void scp_cpu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int N, int G, int C, int ld, float eps);
void scp_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd, int N,
                         int G, int C, int ld, int accumulate);
void scp_cpu_rope(float *x, const float *cos, const float *sin, int N, int T, int G, int hd, int ld, int inverse);
/* model/backend_ops.def's qk_norm_rope_fwd and _bwd, composed of the three above */
void scp_cpu_qk_norm_rope_fwd(float *qk, float *raw, float *rstd, const float *wq, const float *wk, const float *cos,
                              const float *sin, int N, int T, int H, int KV, int hd, int ld, float eps);
void scp_cpu_qk_norm_rope_bwd(float *dqk, float *dwq, float *dwk, const float *raw, const float *wq, const float *wk,
                              const float *rstd, const float *cos, const float *sin, int N, int T, int H, int KV, int hd,
                              int ld);

/* attention.c */
void scp_cpu_attention_decode(float *out, const float *q, const float *k, const float *v, int n, int H, int KV, int hd,
                              int ld, float scale);
void scp_cpu_attention_fwd(float *out, float *att, const float *q, const float *k, const float *v, const scp_attn_args *a);
void scp_cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                           const float *k, const float *v, const scp_attn_args *a);
void scp_cpu_attention_fwd_ref(float *out, float *att, const float *q, const float *k, const float *v,
                               const scp_attn_args *a);
void scp_cpu_attention_bwd_ref(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                               const float *k, const float *v, const scp_attn_args *a);

/* pointwise.c */
void scp_cpu_swiglu_fwd(float *h, const float *gateup, int M, int I);
void scp_cpu_swiglu_bwd(float *dgateup, const float *dh, const float *gateup, int M, int I);
void scp_cpu_embedding_fwd(float *out, const int32_t *ids, const float *table, int M, int C);
void scp_cpu_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int M, int C, int V);
void scp_cpu_gather_rows(float *dst, const float *src, const int32_t *rows, int n, int C);
void scp_cpu_scatter_rows(float *dst, const float *src, const int32_t *rows, int n, int C);
double scp_cpu_crossentropy(float *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                            int backward);
double scp_cpu_crossentropy_ref(float *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                                int backward);
void scp_cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps,
                   float wd, float bc1, float bc2);
double scp_cpu_sumsq(const float *x, size_t n);
void scp_cpu_add(float *y, const float *x, size_t n);
void scp_cpu_scale(float *x, size_t n, float s);

/* moe.c (shared by "cpu" and "cpu-ref") */
void scp_cpu_moe_route(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const float *logits, int M,
                       int E, int k, int norm);
void scp_cpu_moe_route_bwd(float *dlogits, const float *dweight, const float *probs, const float *lse,
                           const int32_t *idx, const float *weight, const float *dprob, float zscale, int M, int E, int k,
                           int norm);
void scp_cpu_moe_combine(float *out, const float *y, const float *weight, const int32_t *pos, int M, int k, int D,
                         float beta);
void scp_cpu_moe_combine_bwd(float *dy, float *dweight, const float *dout, const float *y, const float *weight,
                             const int32_t *pos, int M, int k, int D);

/* moe_gemm.c: the permutation by expert (shared by every CPU table), and the grouped GEMMs as a table's own matmul
 * entry (mm, on act_size-byte elements) block after block. */
typedef void scp_cpu_matmul_fwd_fn(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w,
                                   const scp_act *bias, int M, int K, int N, float beta);
typedef void scp_cpu_matmul_bwd_inp_fn(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w, int M,
                                       int K, int N, float beta);
typedef void scp_cpu_matmul_bwd_w_fn(float *dw, float *dbias, const scp_act *dout, int ldo, const scp_act *inp, int ldi,
                                     int M, int K, int N);
void scp_cpu_moe_permute(int32_t *off, int32_t *pos, int32_t *tok, const int32_t *idx, int M, int k, int E);
void scp_cpu_moe_gemm_fwd(scp_cpu_matmul_fwd_fn *mm, size_t act_size, scp_act *out, int ldo, const scp_act *inp,
                          int ldi, const scp_act *w, const int64_t *woff, int nw, const int32_t *off, int nb, int K, int N,
                          float beta);
void scp_cpu_moe_gemm_bwd_inp(scp_cpu_matmul_bwd_inp_fn *mm, size_t act_size, scp_act *dinp, int ldi,
                              const scp_act *dout, int ldo, const scp_act *w, const int64_t *woff, int nw,
                              const int32_t *off, int nb, int K, int N, float beta);
void scp_cpu_moe_gemm_bwd_w(scp_cpu_matmul_bwd_w_fn *mm, size_t act_size, float *dw, const scp_act *dout, int ldo,
                            const scp_act *inp, int ldi, const int64_t *woff, int nw, const int32_t *off, int nb, int K,
                            int N);

#endif
