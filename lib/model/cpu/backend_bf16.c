/* backend_bf16.c: "cpu-bf16", the CPU kernels behind bf16 storage. Every scp_act array holds bf16 (uint16_t
 * bits, act_size 2); each entry widens the bf16 it reads into fp32 scratch, runs the fp32 kernel of cpu.h and
 * rounds what it wrote back to bf16 (to nearest even, scp_f32_to_bf16). That is the contract a bf16 device
 * backend ("cuda") keeps, one rounding per stored output, so this backend is its reference on the CPU:
 * tests/model/backend-ops.c compares the two entry by entry, and the driver's 2-byte element arithmetic, its fp32
 * master weights and bf16 compute copy (model/model.c) are exercised on any machine. It declares device memory
 * (host_memory 0), like "cpu-mirror". Slow by design (a copy per argument per call): a test backend. */
#include <stdlib.h>
#include <string.h>

#include "model/cpu/cpu.h"
#include "core/dtype.h"
#include "core/error.h"

/* Elements a strided (rows, cols; row stride ld) block spans: the kernels read and write only inside it, and
 * widening then rounding an element they did not write gives back its bits, so whole spans are converted. */
static size_t span(size_t rows, size_t cols, size_t ld) { return rows ? (rows - 1) * ld + cols : 0; }

/* An fp32 copy of n bf16 elements (NULL for NULL). */
static float *widen(const scp_act *p, size_t n)
{
    if (!p) return NULL;
    float *f = scp_xmalloc((n ? n : 1) * sizeof *f);
    scp_convert_to_f32(f, p, SCP_BF16, n);
    return f;
}

/* p = f rounded to bf16, n elements; frees f. */
static void narrow(scp_act *p, float *f, size_t n)
{
    scp_convert_from_f32(p, SCP_BF16, f, n);
    free(f);
}

static void bf16_to_act(scp_act *dst, const float *src, size_t n) { scp_convert_from_f32(dst, SCP_BF16, src, n); }
static void bf16_from_act(float *dst, const scp_act *src, size_t n) { scp_convert_to_f32(dst, src, SCP_BF16, n); }

static void bf16_matmul_fwd(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w, const scp_act *bias,
                            int M, int K, int N, float beta)
{
    size_t no = span((size_t)M, (size_t)N, (size_t)ldo);
    float *o = widen(out, no), *x = widen(inp, span((size_t)M, (size_t)K, (size_t)ldi));
    float *wf = widen(w, (size_t)N * K), *b = widen(bias, (size_t)N);
    scp_cpu_matmul_fwd(o, ldo, x, ldi, wf, b, M, K, N, beta);
    narrow(out, o, no);
    free(x), free(wf), free(b);
}

static void bf16_matmul_bwd_inp(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w, int M, int K,
                                int N, float beta)
{
    size_t ni = span((size_t)M, (size_t)K, (size_t)ldi);
    float *di = widen(dinp, ni), *d = widen(dout, span((size_t)M, (size_t)N, (size_t)ldo)), *wf = widen(w, (size_t)N * K);
    scp_cpu_matmul_bwd_inp(di, ldi, d, ldo, wf, M, K, N, beta);
    narrow(dinp, di, ni);
    free(d), free(wf);
}

static void bf16_matmul_bwd_w(float *dw, float *dbias, const scp_act *dout, int ldo, const scp_act *inp, int ldi, int M,
                              int K, int N)
{
    float *d = widen(dout, span((size_t)M, (size_t)N, (size_t)ldo)), *x = widen(inp, span((size_t)M, (size_t)K, (size_t)ldi));
    scp_cpu_matmul_bwd_w(dw, dbias, d, ldo, x, ldi, M, K, N);
    free(d), free(x);
}

static void bf16_rmsnorm_fwd(scp_act *out, float *rstd, const scp_act *x, const scp_act *w, int N, int G, int C, int ld,
                             float eps)
{
    size_t n = span((size_t)N, (size_t)G * C, (size_t)ld);
    float *o = widen(out, n), *xf = widen(x, n), *wf = widen(w, (size_t)C);
    scp_cpu_rmsnorm_fwd(o, rstd, xf, wf, N, G, C, ld, eps);
    narrow(out, o, n);
    free(xf), free(wf);
}

static void bf16_rmsnorm_bwd(scp_act *dx, float *dw, const scp_act *dout, const scp_act *x, const scp_act *w,
                             const float *rstd, int N, int G, int C, int ld, int accumulate)
{
    size_t n = span((size_t)N, (size_t)G * C, (size_t)ld);
    float *d = widen(dx, n), *dof = widen(dout, n), *xf = widen(x, n), *wf = widen(w, (size_t)C);
    scp_cpu_rmsnorm_bwd(d, dw, dof, xf, wf, rstd, N, G, C, ld, accumulate);   /* dx == dout: separate copies, fine */
    narrow(dx, d, n);
    free(dof), free(xf), free(wf);
}

static void bf16_rope(scp_act *x, const float *cos, const float *sin, int N, int T, int G, int hd, int ld, int inverse)
{
    size_t n = span((size_t)N, (size_t)G * hd, (size_t)ld);
    float *xf = widen(x, n);
    scp_cpu_rope(xf, cos, sin, N, T, G, hd, ld, inverse);
    narrow(x, xf, n);
}

/* The fp32 composition on widened copies, each output rounded once (raw is an exact copy of bf16 values). */
static void bf16_qk_norm_rope_fwd(scp_act *qk, scp_act *raw, float *rstd, const scp_act *wq, const scp_act *wk,
                                  const float *cos, const float *sin, int N, int T, int H, int KV, int hd, int ld,
                                  float eps)
{
    size_t n = span((size_t)N, (size_t)(H + KV) * hd, (size_t)ld);
    float *x = widen(qk, n), *r = widen(raw, n), *wqf = widen(wq, (size_t)hd), *wkf = widen(wk, (size_t)hd);
    scp_cpu_qk_norm_rope_fwd(x, r, rstd, wqf, wkf, cos, sin, N, T, H, KV, hd, ld, eps);
    narrow(qk, x, n);
    if (raw) narrow(raw, r, n);
    free(wqf), free(wkf);
}

static void bf16_qk_norm_rope_bwd(scp_act *dqk, float *dwq, float *dwk, const scp_act *raw, const scp_act *wq,
                                  const scp_act *wk, const float *rstd, const float *cos, const float *sin, int N, int T,
                                  int H, int KV, int hd, int ld)
{
    size_t n = span((size_t)N, (size_t)(H + KV) * hd, (size_t)ld);
    float *d = widen(dqk, n), *r = widen(raw, n), *wqf = widen(wq, (size_t)hd), *wkf = widen(wk, (size_t)hd);
    scp_cpu_qk_norm_rope_bwd(d, dwq, dwk, r, wqf, wkf, rstd, cos, sin, N, T, H, KV, hd, ld);
    narrow(dqk, d, n);
    free(r), free(wqf), free(wkf);
}

/* q, k, v (and dq, dk, dv; the cached k and v of attention_decode) are column ranges of one buffer
 * (model/backend.h): their spans overlap, so they are widened as one block, from the lowest of them to the end of the
 * highest span, and rounded back once (separate write-backs would each restore the others' columns as they were
 * before the kernel). */
typedef struct act_block {
    const char *lo;     /* the lowest of the pointers */
    size_t n;           /* elements from lo to the end of the last span */
    float *f;           /* their fp32 copy */
} act_block;

/* The block of the k ranges p[i], each len[i] elements. */
static act_block block_widen(const scp_act *const *p, const size_t *len, int k)
{
    act_block b = {.lo = (const char *)p[0]};
    const char *hi = b.lo + 2 * len[0];
    for (int i = 1; i < k; i++) {
        const char *c = (const char *)p[i];
        if (c < b.lo) b.lo = c;
        if (c + 2 * len[i] > hi) hi = c + 2 * len[i];
    }
    b.n = (size_t)(hi - b.lo) / 2;
    b.f = widen((const scp_act *)(const void *)b.lo, b.n);
    return b;
}

/* q, k and v of attention_fwd/bwd (B T rows of ld_qkv). */
static act_block qkv_widen(const scp_act *q, const scp_act *k, const scp_act *v, const scp_attn_args *a)
{
    const scp_act *p[3] = {q, k, v};
    size_t rows = (size_t)a->B * a->T, ld = (size_t)a->ld_qkv, hd = (size_t)a->hd;
    size_t len[3] = {span(rows, (size_t)a->H * hd, ld), span(rows, (size_t)a->KV * hd, ld), span(rows, (size_t)a->KV * hd, ld)};
    return block_widen(p, len, 3);
}

/* The fp32 copy of the range that starts at p, inside the block. */
static float *block_part(const act_block *b, const scp_act *p) { return b->f + ((const char *)p - b->lo) / 2; }

static void bf16_attention_fwd(scp_act *out, float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                               const scp_attn_args *a)
{
    size_t no = (size_t)a->B * a->T * a->H * a->hd;
    float *o = widen(out, no);
    act_block in = qkv_widen(q, k, v, a);
    scp_cpu_attention_fwd(o, att, block_part(&in, q), block_part(&in, k), block_part(&in, v), a);
    narrow(out, o, no);
    free(in.f);
}

static void bf16_attention_bwd(scp_act *dq, scp_act *dk, scp_act *dv, const scp_act *dout, const scp_act *out,
                               const float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                               const scp_attn_args *a)
{
    (void)out;   /* the CPU kernels keep the probabilities (att) */
    size_t no = (size_t)a->B * a->T * a->H * a->hd;
    float *d = widen(dout, no);
    act_block in = qkv_widen(q, k, v, a), g = qkv_widen(dq, dk, dv, a);
    scp_cpu_attention_bwd(block_part(&g, dq), block_part(&g, dk), block_part(&g, dv), d, att, block_part(&in, q),
                          block_part(&in, k), block_part(&in, v), a);
    narrow((scp_act *)(void *)(uintptr_t)g.lo, g.f, g.n);
    free(d), free(in.f);
}

static void bf16_attention_decode(scp_act *out, const scp_act *q, const scp_act *k, const scp_act *v, int n, int H,
                                  int KV, int hd, int ld, float scale)
{
    size_t no = (size_t)H * hd, nkv = span((size_t)n, (size_t)KV * hd, (size_t)ld);
    const scp_act *p[2] = {k, v};
    const size_t len[2] = {nkv, nkv};
    float *o = widen(out, no), *qf = widen(q, no);
    act_block kv = block_widen(p, len, 2);
    scp_cpu_attention_decode(o, qf, block_part(&kv, k), block_part(&kv, v), n, H, KV, hd, ld, scale);
    narrow(out, o, no);
    free(qf), free(kv.f);
}

static void bf16_swiglu_fwd(scp_act *h, const scp_act *gateup, int M, int I)
{
    size_t n = (size_t)M * I;
    float *hf = widen(h, n), *g = widen(gateup, 2 * n);
    scp_cpu_swiglu_fwd(hf, g, M, I);
    narrow(h, hf, n);
    free(g);
}

static void bf16_swiglu_bwd(scp_act *dgateup, const scp_act *dh, const scp_act *gateup, int M, int I)
{
    size_t n = (size_t)M * I;
    float *dg = widen(dgateup, 2 * n), *d = widen(dh, n), *g = widen(gateup, 2 * n);
    scp_cpu_swiglu_bwd(dg, d, g, M, I);
    narrow(dgateup, dg, 2 * n);
    free(d), free(g);
}

/* The table lookup needs no arithmetic: rows are copied as bf16 bits (what widening and rounding would give). */
static void bf16_embedding_fwd(scp_act *out, const int32_t *ids, const scp_act *table, int M, int C)
{
    uint16_t *o = (uint16_t *)(void *)out;
    const uint16_t *t = (const uint16_t *)(const void *)table;
    for (int r = 0; r < M; r++) memcpy(o + (size_t)r * C, t + (size_t)ids[r] * C, (size_t)C * sizeof *o);
}

static void bf16_embedding_bwd(float *dtable, const scp_act *dout, const int32_t *ids, int M, int C, int V)
{
    float *d = widen(dout, (size_t)M * C);
    scp_cpu_embedding_bwd(dtable, d, ids, M, C, V);
    free(d);
}

static void bf16_gather_rows(scp_act *dst, const scp_act *src, const int32_t *rows, int n, int C)
{
    uint16_t *d = (uint16_t *)(void *)dst;
    const uint16_t *s = (const uint16_t *)(const void *)src;
    for (int r = 0; r < n; r++) memcpy(d + (size_t)r * C, s + (size_t)rows[r] * C, (size_t)C * sizeof *d);
}

static void bf16_scatter_rows(scp_act *dst, const scp_act *src, const int32_t *rows, int n, int C)
{
    uint16_t *d = (uint16_t *)(void *)dst;
    const uint16_t *s = (const uint16_t *)(const void *)src;
    for (int r = 0; r < n; r++) memcpy(d + (size_t)rows[r] * C, s + (size_t)r * C, (size_t)C * sizeof *d);
}

static double bf16_crossentropy(scp_act *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                                int backward)
{
    size_t n = (size_t)N * V;
    float *l = widen(logits, n);
    double s = scp_cpu_crossentropy(l, nll, target, weight, N, V, backward);
    if (backward) narrow(logits, l, n);
    else free(l);
    return s;
}

static void bf16_moe_route(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const scp_act *logits,
                           int M, int E, int k, int norm)
{
    float *l = widen(logits, (size_t)M * E);
    scp_cpu_moe_route(probs, idx, weight, lse, psum, l, M, E, k, norm);
    free(l);
}

static void bf16_moe_route_bwd(scp_act *dlogits, const float *dweight, const float *probs, const float *lse,
                               const int32_t *idx, const float *weight, const float *dprob, float zscale, int M, int E,
                               int k, int norm)
{
    size_t n = (size_t)M * E;
    float *d = widen(dlogits, n);
    scp_cpu_moe_route_bwd(d, dweight, probs, lse, idx, weight, dprob, zscale, M, E, k, norm);
    narrow(dlogits, d, n);
}

static void bf16_moe_combine(scp_act *out, const scp_act *y, const float *weight, const int32_t *pos, int M, int k,
                             int D, float beta)
{
    size_t n = (size_t)M * D;
    float *o = widen(out, n), *yf = widen(y, n * k);
    scp_cpu_moe_combine(o, yf, weight, pos, M, k, D, beta);
    narrow(out, o, n);
    free(yf);
}

static void bf16_moe_combine_bwd(scp_act *dy, float *dweight, const scp_act *dout, const scp_act *y,
                                 const float *weight, const int32_t *pos, int M, int k, int D)
{
    size_t n = (size_t)M * D;
    float *dyf = widen(dy, n * k), *d = widen(dout, n), *yf = widen(y, n * k);
    scp_cpu_moe_combine_bwd(dyf, dweight, d, yf, weight, pos, M, k, D);
    narrow(dy, dyf, n * k);
    free(d), free(yf);
}

/* The grouped GEMMs: the bf16 matmul entries above block by block (each block's output rounded once). */
static void bf16_moe_gemm_fwd(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w, const int64_t *woff,
                              int nw, const int32_t *off, int nb, int R, int K, int N, float beta)
{
    (void)R;
    scp_cpu_moe_gemm_fwd(bf16_matmul_fwd, 2, out, ldo, inp, ldi, w, woff, nw, off, nb, K, N, beta);
}
static void bf16_moe_gemm_bwd_inp(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w,
                                  const int64_t *woff, int nw, const int32_t *off, int nb, int R, int K, int N, float beta)
{
    (void)R;
    scp_cpu_moe_gemm_bwd_inp(bf16_matmul_bwd_inp, 2, dinp, ldi, dout, ldo, w, woff, nw, off, nb, K, N, beta);
}
static void bf16_moe_gemm_bwd_w(float *dw, const scp_act *dout, int ldo, const scp_act *inp, int ldi, const int64_t *woff,
                                int nw, const int32_t *off, int nb, int R, int K, int N)
{
    (void)R;
    scp_cpu_moe_gemm_bwd_w(bf16_matmul_bwd_w, 2, dw, dout, ldo, inp, ldi, woff, nw, off, nb, K, N);
}

/* ---- the table: an entry per line of model/backend_ops.def ---- */
/* Entries on bytes and float arrays, which bf16 storage does not change: the fp32 backends' functions. */
#define bf16_alloc scp_cpu_counted_alloc
#define bf16_free scp_cpu_counted_free
#define bf16_peak_bytes scp_cpu_counted_peak
#define bf16_zero_bytes scp_cpu_zero_bytes
#define bf16_copy_bytes scp_cpu_copy_bytes
#define bf16_upload scp_cpu_copy_bytes
#define bf16_download scp_cpu_copy_bytes
#define bf16_attn_state_floats scp_cpu_attn_state_floats
#define bf16_adamw scp_cpu_adamw
#define bf16_sumsq scp_cpu_sumsq
#define bf16_scale scp_cpu_scale
#define bf16_add scp_cpu_add
#define bf16_moe_permute scp_cpu_moe_permute

#define SCP_BACKEND_OP(cap, ret, op, params) .op = bf16_##op,
const scp_backend scp_backend_cpu_bf16 = {
    .name = "cpu-bf16",
    .caps = SCP_BACKEND_CAP_ALL,
    .act_size = 2,
    .host_memory = 0,
#include "model/backend_ops.def"
};
