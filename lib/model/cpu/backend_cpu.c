/* backend_cpu.c: the fp32 CPU backends' operation tables. "cpu" is the fast one; "cpu-ref" swaps in the plain
 * reference loops for the operations where the fast version is clever (matmul, attention, cross-entropy), so a
 * whole training step can be checked against the definitions; "cpu-mirror" is "cpu" posing as device memory,
 * so the driver's mirroring for devices is tested on any machine. Their storage is fp32, so the table's scp_act
 * arrays are the float arrays the kernels (cpu.h) take; the f32_ entries below only give them their types.
 * "cpu-bf16" (backend_bf16.c) wraps the same kernels behind bf16 storage. The registry that finds them by name
 * is model/backend_registry.c. */
#include <stdlib.h>
#include <string.h>

#include "model/cpu/cpu.h"
#include "core/error.h"

void *scp_cpu_alloc(size_t bytes)
{
    /* 64-byte alignment: whole cache lines and aligned vector loads. */
    size_t n = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n ? n : 64);
    if (!p) scp_die("out of memory (%zu bytes of model workspace)", bytes);
    memset(p, 0, n ? n : 64);
    return p;
}

void scp_cpu_free(void *p) { free(p); }

/* The counted buffers carry their size in a 64-byte header before the aligned memory they hand out. */
static int64_t counted_now, counted_peak;

void *scp_cpu_counted_alloc(size_t bytes)
{
    size_t n = (bytes + 63) & ~(size_t)63;
    char *p = scp_cpu_alloc(n + 64);
    *(size_t *)(void *)p = n;
    counted_now += (int64_t)n;
    if (counted_now > counted_peak) counted_peak = counted_now;
    return p + 64;
}

void scp_cpu_counted_free(void *p)
{
    if (!p) return;
    char *h = (char *)p - 64;
    counted_now -= (int64_t)*(size_t *)(void *)h;
    free(h);
}

int64_t scp_cpu_counted_peak(void) { return counted_peak; }
int64_t scp_cpu_uncounted_peak(void) { return -1; }

void scp_cpu_zero_bytes(void *x, size_t bytes)
{
    char *c = x;
#pragma omp parallel for schedule(static) if (bytes > (4u << 20))
    for (size_t i = 0; i < bytes; i += 16384) memset(c + i, 0, bytes - i < 16384 ? bytes - i : 16384);
}

void scp_cpu_copy_bytes(void *dst, const void *src, size_t bytes)
{
    char *d = dst;
    const char *s = src;
    if (d == s) return;
#pragma omp parallel for schedule(static) if (bytes > (4u << 20))
    for (size_t i = 0; i < bytes; i += 16384) memcpy(d + i, s + i, bytes - i < 16384 ? bytes - i : 16384);
}

size_t scp_cpu_attn_state_floats(int B, int H, int T) { return (size_t)B * H * T * T; }

/* ---- entries on bytes and float arrays, the same for every storage type ---- */
static void f32_upload(void *dst, const void *host, size_t n) { memcpy(dst, host, n); }
static void f32_download(void *host, const void *src, size_t n) { memcpy(host, src, n); }
#define f32_alloc scp_cpu_alloc
#define f32_free scp_cpu_free
#define f32_zero_bytes scp_cpu_zero_bytes
#define f32_copy_bytes scp_cpu_copy_bytes
#define f32_attn_state_floats scp_cpu_attn_state_floats
#define f32_adamw scp_cpu_adamw
#define f32_sumsq scp_cpu_sumsq
#define f32_scale scp_cpu_scale
#define f32_add scp_cpu_add
#define f32_peak_bytes scp_cpu_uncounted_peak

/* ---- fp32 storage: the scp_act arrays are float arrays, handed to the kernels (cpu.h) as they are ---- */
#define F(p) ((float *)(void *)(p))
#define CF(p) ((const float *)(const void *)(p))

static void f32_to_act(scp_act *dst, const float *src, size_t n) { scp_cpu_copy_bytes(dst, src, n * sizeof(float)); }
static void f32_from_act(float *dst, const scp_act *src, size_t n) { scp_cpu_copy_bytes(dst, src, n * sizeof(float)); }

static void f32_matmul_fwd(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w, const scp_act *bias,
                           int M, int K, int N, float beta)
{
    scp_cpu_matmul_fwd(F(out), ldo, CF(inp), ldi, CF(w), CF(bias), M, K, N, beta);
}
static void ref_matmul_fwd(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w,
                           const scp_act *bias, int M, int K, int N, float beta)
{
    scp_cpu_matmul_fwd_ref(F(out), ldo, CF(inp), ldi, CF(w), CF(bias), M, K, N, beta);
}
static void f32_matmul_bwd_inp(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w, int M, int K,
                               int N, float beta)
{
    scp_cpu_matmul_bwd_inp(F(dinp), ldi, CF(dout), ldo, CF(w), M, K, N, beta);
}
static void ref_matmul_bwd_inp(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w, int M, int K,
                               int N, float beta)
{
    scp_cpu_matmul_bwd_inp_ref(F(dinp), ldi, CF(dout), ldo, CF(w), M, K, N, beta);
}
static void f32_matmul_bwd_w(float *dw, float *dbias, const scp_act *dout, int ldo, const scp_act *inp, int ldi, int M,
                             int K, int N)
{
    scp_cpu_matmul_bwd_w(dw, dbias, CF(dout), ldo, CF(inp), ldi, M, K, N);
}
static void ref_matmul_bwd_w(float *dw, float *dbias, const scp_act *dout, int ldo, const scp_act *inp, int ldi, int M,
                             int K, int N)
{
    scp_cpu_matmul_bwd_w_ref(dw, dbias, CF(dout), ldo, CF(inp), ldi, M, K, N);
}
static void f32_rmsnorm_fwd(scp_act *out, float *rstd, const scp_act *x, const scp_act *w, int N, int G, int C, int ld,
                            float eps)
{
    scp_cpu_rmsnorm_fwd(F(out), rstd, CF(x), CF(w), N, G, C, ld, eps);
}
static void f32_rmsnorm_bwd(scp_act *dx, float *dw, const scp_act *dout, const scp_act *x, const scp_act *w,
                            const float *rstd, int N, int G, int C, int ld, int accumulate)
{
    scp_cpu_rmsnorm_bwd(F(dx), dw, CF(dout), CF(x), CF(w), rstd, N, G, C, ld, accumulate);
}
static void f32_rope(scp_act *x, const float *cos, const float *sin, int N, int T, int G, int hd, int ld, int inverse)
{
    scp_cpu_rope(F(x), cos, sin, N, T, G, hd, ld, inverse);
}
static void f32_qk_norm_rope_fwd(scp_act *qk, scp_act *raw, float *rstd, const scp_act *wq, const scp_act *wk,
                                 const float *cos, const float *sin, int N, int T, int H, int KV, int hd, int ld,
                                 float eps)
{
    scp_cpu_qk_norm_rope_fwd(F(qk), F(raw), rstd, CF(wq), CF(wk), cos, sin, N, T, H, KV, hd, ld, eps);
}
static void f32_qk_norm_rope_bwd(scp_act *dqk, float *dwq, float *dwk, const scp_act *raw, const scp_act *wq,
                                 const scp_act *wk, const float *rstd, const float *cos, const float *sin, int N, int T,
                                 int H, int KV, int hd, int ld)
{
    scp_cpu_qk_norm_rope_bwd(F(dqk), dwq, dwk, CF(raw), CF(wq), CF(wk), rstd, cos, sin, N, T, H, KV, hd, ld);
}
static void f32_attention_fwd(scp_act *out, float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                              const scp_attn_args *a)
{
    scp_cpu_attention_fwd(F(out), att, CF(q), CF(k), CF(v), a);
}
static void ref_attention_fwd(scp_act *out, float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                              const scp_attn_args *a)
{
    scp_cpu_attention_fwd_ref(F(out), att, CF(q), CF(k), CF(v), a);
}
static void f32_attention_bwd(scp_act *dq, scp_act *dk, scp_act *dv, const scp_act *dout, const scp_act *out,
                              const float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                              const scp_attn_args *a)
{
    (void)out;   /* the CPU kernels keep the probabilities (att) */
    scp_cpu_attention_bwd(F(dq), F(dk), F(dv), CF(dout), att, CF(q), CF(k), CF(v), a);
}
static void ref_attention_bwd(scp_act *dq, scp_act *dk, scp_act *dv, const scp_act *dout, const scp_act *out,
                              const float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                              const scp_attn_args *a)
{
    (void)out;   /* the CPU kernels keep the probabilities (att) */
    scp_cpu_attention_bwd_ref(F(dq), F(dk), F(dv), CF(dout), att, CF(q), CF(k), CF(v), a);
}
static void f32_attention_decode(scp_act *out, const scp_act *q, const scp_act *k, const scp_act *v, int n, int H,
                                 int KV, int hd, int ld, float scale)
{
    scp_cpu_attention_decode(F(out), CF(q), CF(k), CF(v), n, H, KV, hd, ld, scale);
}
static void f32_swiglu_fwd(scp_act *h, const scp_act *gateup, int M, int I)
{
    scp_cpu_swiglu_fwd(F(h), CF(gateup), M, I);
}
static void f32_swiglu_bwd(scp_act *dgateup, const scp_act *dh, const scp_act *gateup, int M, int I)
{
    scp_cpu_swiglu_bwd(F(dgateup), CF(dh), CF(gateup), M, I);
}
static void f32_embedding_fwd(scp_act *out, const int32_t *ids, const scp_act *table, int M, int C)
{
    scp_cpu_embedding_fwd(F(out), ids, CF(table), M, C);
}
static void f32_embedding_bwd(float *dtable, const scp_act *dout, const int32_t *ids, int M, int C, int V)
{
    scp_cpu_embedding_bwd(dtable, CF(dout), ids, M, C, V);
}
static void f32_gather_rows(scp_act *dst, const scp_act *src, const int32_t *rows, int n, int C)
{
    scp_cpu_gather_rows(F(dst), CF(src), rows, n, C);
}
static void f32_scatter_rows(scp_act *dst, const scp_act *src, const int32_t *rows, int n, int C)
{
    scp_cpu_scatter_rows(F(dst), CF(src), rows, n, C);
}
static double f32_crossentropy(scp_act *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                               int backward)
{
    return scp_cpu_crossentropy(F(logits), nll, target, weight, N, V, backward);
}
static double ref_crossentropy(scp_act *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                               int backward)
{
    return scp_cpu_crossentropy_ref(F(logits), nll, target, weight, N, V, backward);
}
static void f32_moe_route(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const scp_act *logits,
                          int M, int E, int k, int norm)
{
    scp_cpu_moe_route(probs, idx, weight, lse, psum, CF(logits), M, E, k, norm);
}
static void f32_moe_route_bwd(scp_act *dlogits, const float *dweight, const float *probs, const float *lse,
                              const int32_t *idx, const float *weight, const float *dprob, float zscale, int M, int E,
                              int k, int norm)
{
    scp_cpu_moe_route_bwd(F(dlogits), dweight, probs, lse, idx, weight, dprob, zscale, M, E, k, norm);
}
static void f32_moe_combine(scp_act *out, const scp_act *y, const float *weight, const int32_t *pos, int M, int k,
                            int D, float beta)
{
    scp_cpu_moe_combine(F(out), CF(y), weight, pos, M, k, D, beta);
}
static void f32_moe_combine_bwd(scp_act *dy, float *dweight, const scp_act *dout, const scp_act *y, const float *weight,
                                const int32_t *pos, int M, int k, int D)
{
    scp_cpu_moe_combine_bwd(F(dy), dweight, CF(dout), CF(y), weight, pos, M, k, D);
}

static void f32_moe_permute(int32_t *off, int32_t *pos, int32_t *tok, const int32_t *idx, int M, int k, int E)
{
    scp_cpu_moe_permute(off, pos, tok, idx, M, k, E);
}
static void f32_moe_gemm_fwd(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w, const int64_t *woff,
                             int nw, const int32_t *off, int nb, int R, int K, int N, float beta)
{
    (void)R;
    scp_cpu_moe_gemm_fwd(f32_matmul_fwd, sizeof(float), out, ldo, inp, ldi, w, woff, nw, off, nb, K, N, beta);
}
static void f32_moe_gemm_bwd_inp(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w,
                                 const int64_t *woff, int nw, const int32_t *off, int nb, int R, int K, int N, float beta)
{
    (void)R;
    scp_cpu_moe_gemm_bwd_inp(f32_matmul_bwd_inp, sizeof(float), dinp, ldi, dout, ldo, w, woff, nw, off, nb, K, N, beta);
}
static void f32_moe_gemm_bwd_w(float *dw, const scp_act *dout, int ldo, const scp_act *inp, int ldi, const int64_t *woff,
                               int nw, const int32_t *off, int nb, int R, int K, int N)
{
    (void)R;
    scp_cpu_moe_gemm_bwd_w(f32_matmul_bwd_w, sizeof(float), dw, dout, ldo, inp, ldi, woff, nw, off, nb, K, N);
}

/* ---- the tables: an entry per line of model/backend_ops.def ---- */
#define SCP_BACKEND_OP(cap, ret, op, params) .op = f32_##op,
const scp_backend scp_backend_cpu = {
    .name = "cpu",
    .caps = SCP_BACKEND_CAP_ALL,
    .act_size = sizeof(float),
    .host_memory = 1,
#include "model/backend_ops.def"
};

/* cpu-mirror: "cpu" with its buffers counted as a device's (MIRROR_OWN_<entry>, as REF_OWN_ below). */
#define MIRROR_OWN_alloc x, scp_cpu_counted_alloc
#define MIRROR_OWN_free x, scp_cpu_counted_free
#define MIRROR_OWN_peak_bytes x, scp_cpu_counted_peak
#define SECOND_(a, b, ...) b
#define SECOND(...) SECOND_(__VA_ARGS__)
#define SCP_BACKEND_OP(cap, ret, op, params) .op = SECOND(MIRROR_OWN_##op, f32_##op, ~),
const scp_backend scp_backend_cpu_mirror = {
    .name = "cpu-mirror",
    .caps = SCP_BACKEND_CAP_ALL,
    .act_size = sizeof(float),
    .host_memory = 0,
#include "model/backend_ops.def"
};

/* cpu-ref: ref_<entry> for the six entries that have reference loops of their own, f32_<entry> for the others.
 * REF_OWN_<entry> is defined for those six as "x, ref_<entry>", so that SECOND picks ref_<entry>; for any other
 * entry REF_OWN_<entry> is no macro, stays one argument, and SECOND picks f32_<entry>. (A misspelt REF_OWN_
 * name leaves its ref_ function unused, which the compiler reports.) */
#define REF_OWN_matmul_fwd x, ref_matmul_fwd
#define REF_OWN_matmul_bwd_inp x, ref_matmul_bwd_inp
#define REF_OWN_matmul_bwd_w x, ref_matmul_bwd_w
#define REF_OWN_attention_fwd x, ref_attention_fwd
#define REF_OWN_attention_bwd x, ref_attention_bwd
#define REF_OWN_crossentropy x, ref_crossentropy
#define SCP_BACKEND_OP(cap, ret, op, params) .op = SECOND(REF_OWN_##op, f32_##op, ~),
/* cpu-ref does not claim SCP_BACKEND_CAP_MOE_GROUPED: the driver runs its experts one matmul each and sorts on
 * the host (lib/model/moe.c), which keeps that path the reference of the grouped one. */
const scp_backend scp_backend_cpu_ref = {
    .name = "cpu-ref",
    .caps = SCP_BACKEND_CAP_ALL & ~(unsigned)SCP_BACKEND_CAP_MOE_GROUPED,
    .act_size = sizeof(float),
    .host_memory = 1,
#include "model/backend_ops.def"
};
