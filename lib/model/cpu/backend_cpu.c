/* backend_cpu.c: the CPU backends' operation tables, and the lookup by name. "cpu" is the fast one; "cpu-ref"
 * swaps in the plain reference loops for the operations where the fast version is clever (matmul, attention,
 * cross-entropy), so a whole training step can be checked against the definitions; "cpu-mirror" is "cpu"
 * posing as device memory, so the driver's mirroring for devices is tested on any machine. Their storage is
 * fp32, so the table's scp_act arrays are the float arrays the kernels (cpu.h) take; the entries below only
 * give them their types. "cpu-bf16" (backend_bf16.c) wraps the same kernels behind bf16 storage. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "model/cpu/cpu.h"
#include "core/error.h"
#ifdef HAVE_CUDA
#include "model/cuda_plugin.h"
#endif

void *scp_cpu_alloc(size_t bytes)
{
    /* 64-byte alignment: whole cache lines and aligned vector loads. */
    size_t n = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n ? n : 64);
    if (!p) scp_die("out of memory (%zu bytes of model workspace)", bytes);
    memset(p, 0, n ? n : 64);
    return p;
}

static void cpu_free(void *p) { free(p); }

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

static void cpu_bytes(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }

/* ---- fp32 storage: the scp_act arrays are float arrays, handed to the kernels (cpu.h) as they are ---- */
#define F(p) ((float *)(void *)(p))
#define CF(p) ((const float *)(const void *)(p))

static void act_to(scp_act *dst, const float *src, size_t n) { scp_cpu_copy_bytes(dst, src, n * sizeof(float)); }
static void act_from(float *dst, const scp_act *src, size_t n) { scp_cpu_copy_bytes(dst, src, n * sizeof(float)); }

static void matmul_fwd(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w, const scp_act *bias,
                       int M, int K, int N, float beta)
{
    scp_cpu_matmul_fwd(F(out), ldo, CF(inp), ldi, CF(w), CF(bias), M, K, N, beta);
}
static void matmul_fwd_ref(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w,
                           const scp_act *bias, int M, int K, int N, float beta)
{
    scp_cpu_matmul_fwd_ref(F(out), ldo, CF(inp), ldi, CF(w), CF(bias), M, K, N, beta);
}
static void matmul_bwd_inp(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w, int M, int K, int N,
                           float beta)
{
    scp_cpu_matmul_bwd_inp(F(dinp), ldi, CF(dout), ldo, CF(w), M, K, N, beta);
}
static void matmul_bwd_inp_ref(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w, int M, int K,
                               int N, float beta)
{
    scp_cpu_matmul_bwd_inp_ref(F(dinp), ldi, CF(dout), ldo, CF(w), M, K, N, beta);
}
static void matmul_bwd_w(float *dw, float *dbias, const scp_act *dout, int ldo, const scp_act *inp, int ldi, int M,
                         int K, int N)
{
    scp_cpu_matmul_bwd_w(dw, dbias, CF(dout), ldo, CF(inp), ldi, M, K, N);
}
static void matmul_bwd_w_ref(float *dw, float *dbias, const scp_act *dout, int ldo, const scp_act *inp, int ldi, int M,
                             int K, int N)
{
    scp_cpu_matmul_bwd_w_ref(dw, dbias, CF(dout), ldo, CF(inp), ldi, M, K, N);
}
static void rmsnorm_fwd(scp_act *out, float *rstd, const scp_act *x, const scp_act *w, int N, int G, int C, int ld,
                        float eps)
{
    scp_cpu_rmsnorm_fwd(F(out), rstd, CF(x), CF(w), N, G, C, ld, eps);
}
static void rmsnorm_bwd(scp_act *dx, float *dw, const scp_act *dout, const scp_act *x, const scp_act *w,
                        const float *rstd, int N, int G, int C, int ld, int accumulate)
{
    scp_cpu_rmsnorm_bwd(F(dx), dw, CF(dout), CF(x), CF(w), rstd, N, G, C, ld, accumulate);
}
static void rope(scp_act *x, const float *cos, const float *sin, int N, int T, int G, int hd, int ld, int inverse)
{
    scp_cpu_rope(F(x), cos, sin, N, T, G, hd, ld, inverse);
}
static void attention_fwd(scp_act *out, float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                          const scp_attn_args *a)
{
    scp_cpu_attention_fwd(F(out), att, CF(q), CF(k), CF(v), a);
}
static void attention_fwd_ref(scp_act *out, float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                              const scp_attn_args *a)
{
    scp_cpu_attention_fwd_ref(F(out), att, CF(q), CF(k), CF(v), a);
}
static void attention_bwd(scp_act *dq, scp_act *dk, scp_act *dv, const scp_act *dout, const float *att,
                          const scp_act *q, const scp_act *k, const scp_act *v, const scp_attn_args *a)
{
    scp_cpu_attention_bwd(F(dq), F(dk), F(dv), CF(dout), att, CF(q), CF(k), CF(v), a);
}
static void attention_bwd_ref(scp_act *dq, scp_act *dk, scp_act *dv, const scp_act *dout, const float *att,
                              const scp_act *q, const scp_act *k, const scp_act *v, const scp_attn_args *a)
{
    scp_cpu_attention_bwd_ref(F(dq), F(dk), F(dv), CF(dout), att, CF(q), CF(k), CF(v), a);
}
static void attention_decode(scp_act *out, const scp_act *q, const scp_act *k, const scp_act *v, int n, int H, int KV,
                             int hd, int ld, float scale)
{
    scp_cpu_attention_decode(F(out), CF(q), CF(k), CF(v), n, H, KV, hd, ld, scale);
}
static void swiglu_fwd(scp_act *h, const scp_act *gateup, int M, int I) { scp_cpu_swiglu_fwd(F(h), CF(gateup), M, I); }
static void swiglu_bwd(scp_act *dgateup, const scp_act *dh, const scp_act *gateup, int M, int I)
{
    scp_cpu_swiglu_bwd(F(dgateup), CF(dh), CF(gateup), M, I);
}
static void embedding_fwd(scp_act *out, const int32_t *ids, const scp_act *table, int M, int C)
{
    scp_cpu_embedding_fwd(F(out), ids, CF(table), M, C);
}
static void embedding_bwd(float *dtable, const scp_act *dout, const int32_t *ids, int M, int C, int V)
{
    scp_cpu_embedding_bwd(dtable, CF(dout), ids, M, C, V);
}
static void gather_rows(scp_act *dst, const scp_act *src, const int32_t *rows, int n, int C)
{
    scp_cpu_gather_rows(F(dst), CF(src), rows, n, C);
}
static void scatter_rows(scp_act *dst, const scp_act *src, const int32_t *rows, int n, int C)
{
    scp_cpu_scatter_rows(F(dst), CF(src), rows, n, C);
}
static double crossentropy(scp_act *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                           int backward)
{
    return scp_cpu_crossentropy(F(logits), nll, target, weight, N, V, backward);
}
static double crossentropy_ref(scp_act *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                               int backward)
{
    return scp_cpu_crossentropy_ref(F(logits), nll, target, weight, N, V, backward);
}
static void moe_route(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const scp_act *logits, int M,
                      int E, int k, int norm)
{
    scp_cpu_moe_route(probs, idx, weight, lse, psum, CF(logits), M, E, k, norm);
}
static void moe_route_bwd(scp_act *dlogits, const float *dweight, const float *probs, const float *lse,
                          const int32_t *idx, const float *weight, const float *dprob, float zscale, int M, int E, int k,
                          int norm)
{
    scp_cpu_moe_route_bwd(F(dlogits), dweight, probs, lse, idx, weight, dprob, zscale, M, E, k, norm);
}
static void moe_combine(scp_act *out, const scp_act *y, const float *weight, const int32_t *pos, int M, int k, int D,
                        float beta)
{
    scp_cpu_moe_combine(F(out), CF(y), weight, pos, M, k, D, beta);
}
static void moe_combine_bwd(scp_act *dy, float *dweight, const scp_act *dout, const scp_act *y, const float *weight,
                            const int32_t *pos, int M, int k, int D)
{
    scp_cpu_moe_combine_bwd(F(dy), dweight, CF(dout), CF(y), weight, pos, M, k, D);
}

#define COMMON                                                                                                  \
    .alloc = scp_cpu_alloc, .free = cpu_free, .zero_bytes = scp_cpu_zero_bytes,                                 \
    .copy_bytes = scp_cpu_copy_bytes, .upload = cpu_bytes, .download = cpu_bytes, .to_act = act_to,            \
    .from_act = act_from, .rmsnorm_fwd = rmsnorm_fwd,                  \
    .rmsnorm_bwd = rmsnorm_bwd, .rope = rope, .swiglu_fwd = swiglu_fwd, .swiglu_bwd = swiglu_bwd,               \
    .embedding_fwd = embedding_fwd, .embedding_bwd = embedding_bwd, .gather_rows = gather_rows,                 \
    .scatter_rows = scatter_rows, .adamw = scp_cpu_adamw, .sumsq = scp_cpu_sumsq, .scale = scp_cpu_scale,        \
    .moe_route = moe_route, .moe_route_bwd = moe_route_bwd, .moe_combine = moe_combine,                         \
    .moe_combine_bwd = moe_combine_bwd, .act_size = sizeof(float), .attention_decode = attention_decode

#define FAST                                                                                                    \
    .matmul_fwd = matmul_fwd, .matmul_bwd_inp = matmul_bwd_inp, .matmul_bwd_w = matmul_bwd_w,                   \
    .attention_fwd = attention_fwd, .attention_bwd = attention_bwd, .crossentropy = crossentropy

const scp_backend scp_backend_cpu = {.name = "cpu", COMMON, FAST, .host_memory = 1};

const scp_backend scp_backend_cpu_mirror = {.name = "cpu-mirror", COMMON, FAST, .host_memory = 0};

const scp_backend scp_backend_cpu_ref = {
    .name = "cpu-ref",
    COMMON,
    .matmul_fwd = matmul_fwd_ref,
    .matmul_bwd_inp = matmul_bwd_inp_ref,
    .matmul_bwd_w = matmul_bwd_w_ref,
    .attention_fwd = attention_fwd_ref,
    .attention_bwd = attention_bwd_ref,
    .crossentropy = crossentropy_ref,
    .host_memory = 1,
};

const scp_backend *scp_backend_find(const char *name)
{
    if (!name || strcmp(name, "cpu") == 0) return &scp_backend_cpu;
    if (strcmp(name, "cpu-ref") == 0) return &scp_backend_cpu_ref;
    if (strcmp(name, "cpu-mirror") == 0) return &scp_backend_cpu_mirror;
    if (strcmp(name, "cpu-bf16") == 0) return &scp_backend_cpu_bf16;
#ifdef HAVE_CUDA
    if (strncmp(name, "cuda", 4) == 0) return scp_cuda_plugin_backend(name);   /* loads the plugin */
#define BACKENDS "cpu, cpu-ref, cpu-mirror, cpu-bf16, cuda (also cuda-bf16), cuda-fp32"
#else
    if (strncmp(name, "cuda", 4) == 0) {  /* cuda, cuda-bf16, cuda-fp32 */
        scp_error("backend '%s': this build has no CUDA backend (configure found no nvcc and cuBLAS)", name);
        return NULL;
    }
#define BACKENDS "cpu, cpu-ref, cpu-mirror, cpu-bf16"
#endif
    scp_error("unknown backend '%s' (available: " BACKENDS ")", name);
    return NULL;
}
