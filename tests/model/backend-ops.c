/* backend-ops.c: every entry of every registered backend (model/backend.h), operation by operation, against
 * the reference of its storage type, on random inputs (odd sizes, row strides wider than the rows, GQA, causal /
 * bidirectional / annealed attention, within documents or not, ignored targets):
 *   fp32 storage ("cpu", "cpu-mirror", "cuda-fp32") against the plain CPU reference ("cpu-ref");
 *   "cpu-bf16" (bf16 storage, the CPU kernels) against "cpu-ref" on the same bf16 inputs, which fixes its one
 *   rounding per stored value;
 *   "cuda" (bf16 storage) against "cpu-bf16" on the same bf16 inputs, where both round at the same points.
 * A backend that cannot run here (a CUDA table without CUDA or without a GPU) is reported as skipped.
 * Every output buffer is poisoned with NaN bytes before the run, so an element the kernel forgot to write fails;
 * a NaN or Inf where the reference is finite fails, and so does a NaN in the reference (the figure is then
 * NaN); otherwise the figure is the relative error of the norm, ||got - ref|| / ||ref||, against a tolerance that
 * fits the arithmetic (see TOL_*). Also checks that two runs give the same bits (exact resume relies on it), and
 * that the cases called every entry the table has (model/backend_ops.def), so a new entry needs a case here.
 *
 * usage: backend-ops [--backend NAME]... [--small] [--attention | --moe-gemm] [--attn-paths P,...]
 *            NAME: the backends to check (default: every registered one); --small: fewer and smaller cases (for
 *            the emulator, tests/gpu/emulated.sh; always under AddressSanitizer); --attention: the attention
 *            cases alone (for work on the attention kernels; the check that every entry was called is then
 *            off); --moe-gemm: the grouped expert GEMMs' cases alone, likewise (run once per SCP_CUDA_MOE_GEMM
 *            path by the scripts); --attn-paths: the SCP_CUDA_ATTN paths the CUDA tables' attention cases run
 *            under (default flash,wmma,gemm; cudnn where the plugin has it, tests/gpu/device-check.sh). Exits 77
 *            (skip) when none of them can run here.
 *        backend-ops --devices   prints the number of usable CUDA devices (0 without CUDA), for scripts. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "model/attn_visibility.h"
#include "model/backend.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "../tap.h"
#include "model/cuda_plugin.h"   /* the CUDA tables, or the emulated ones linked in (tests/gpu/emulated.sh) */

static const scp_backend *X;                     /* under test */
static int small;                                /* --small: fewer and smaller cases, for the emulator */
#ifdef SCP_CUDA_EMU
static const int emulated = 1;                   /* linked with the emulated CUDA tables (tests/gpu/emulated.sh) */
#else
static const int emulated = 0;
#endif
/* The two cases of 200 queries at head size 128 run in the emulator but not in its memory check (a sanitizer
 * build), where they would take over a minute: their tiles are those of the shorter cases, more of them. */
#if defined(__SANITIZE_ADDRESS__)
static const int long_emulated = 0;
#else
static const int long_emulated = emulated;
#endif
static int attention_only;                       /* --attention: only the attention cases */
static int moe_gemm_only;                        /* --moe-gemm: only the grouped expert GEMMs' cases */
static const char *attn_path;                    /* the CUDA attention path under test (SCP_CUDA_ATTN), or NULL */
static const char *attn_paths = "flash,wmma,gemm";  /* --attn-paths: the CUDA paths checked (cudnn: where built) */
static const scp_backend *R = &scp_backend_cpu_ref;  /* the reference: cpu-ref, or cpu-bf16 for "cuda" */
static int bf;                                   /* X keeps activations in bf16 (act_size 2) */
static int rbf;                                  /* and R */

/* The entries of X the cases called: X's entries are called through XOP(entry)(...), which marks them. */
enum {
#define SCP_BACKEND_OP(cap, ret, op, params) OP_##op,
#include "model/backend_ops.def"
    N_OPS
};
static const char *const op_name[N_OPS] = {
#define SCP_BACKEND_OP(cap, ret, op, params) #op,
#include "model/backend_ops.def"
};
static const unsigned op_cap[N_OPS] = {
#define SCP_BACKEND_OP(cap, ret, op, params) SCP_BACKEND_CAP_##cap,
#include "model/backend_ops.def"
};
static int op_called[N_OPS];
#define XOP(op) (op_called[OP_##op] = 1, X->op)

/* fp32 storage, against cpu-ref: */
#define TOL_BF16 1.5e-2  /* a GEMM with bf16 inputs (cuda-fp32's tensor cores): ~2^-9 per input, summed over K */
#define TOL_F32 2e-5
#define TOL_ATT 1e-4     /* fp32 online softmax against the reference's double */
/* The CUDA backend's tensor-core attention (head sizes that are multiples of 16 up to 128): q, k, v, dout, P
 * and dS rounded to bf16 (~2^-9 each), fp32 accumulation and softmax statistics. The same for the GEMM path
 * (attention_gemm.cu) at every head size: bf16 q, k, v, dout, P and dS on cuBLAS, fp32 scores and dP. Also in
 * bf16 storage, where the reference (cpu-bf16) computes exact fp32 probabilities from the same bf16 inputs. */
#define TOL_ATT_TC 2e-2
/* bf16 storage, against cpu-bf16 on the same bf16 inputs: both sides compute in fp32 and round the result
 * once to bf16, so an output element differs by at most one bf16 step (2^-8 relative) where the two fp32
 * results straddle a rounding boundary, which few do: the norm's relative error stays far below 2^-8. */
#define TOL_OUT16 8e-3
/* The fp32 results of bf16 storage (weight gradients of a GEMM: bf16 operands, fp32 accumulation; statistics)
 * differ only in summation order. */
#define TOL_W16 1e-4
/* bf16 storage against cpu-ref's fp32 on the same bf16 inputs: every stored output is rounded once, a relative
 * error of at most 2^-9 per element, so at most 2^-9 = 1.95e-3 for the norm (1.1e-3 on average); the rest of
 * the margin is for the fp32 kernels' other summation orders. */
#define TOL_ROUND16 3e-3

/* tolerances of the table under test: GEMM outputs, GEMM weight gradients, elementwise outputs, the fp32
 * attention kernels (head sizes the tensor cores do not take) */
static double tol_mm, tol_mmw, tol_ew, tol_att;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void)  /* uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 23)) - 1.0);
}
static void bfround(float *x, size_t n);
static float *randv(size_t n, float s)  /* bf16 values where either side stores bf16 */
{
    float *p = malloc(n * sizeof *p + 1);
    for (size_t i = 0; i < n; i++) p[i] = s * frand();
    if (bf || rbf) bfround(p, n);
    return p;
}

static int cmp(const char *what, const float *got, const float *ref, size_t n, double tol)
{
    double num = 0, den = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) && isfinite(ref[i])) bad++;
        double d = (double)got[i] - ref[i];
        num += d * d, den += (double)ref[i] * ref[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    return tap_ok(bad == 0 && rel <= tol, "%s: rel err %.3g (tol %.3g), %zu non-finite of %zu", what, rel, tol, bad, n);
}

/* Compare a strided (rows, cols; ld) region only. */
static int cmp_rows(const char *what, const float *got, const float *ref, int rows, int cols, int ld, double tol)
{
    float *a = malloc((size_t)rows * cols * sizeof *a + 1), *b = malloc((size_t)rows * cols * sizeof *b + 1);
    for (int r = 0; r < rows; r++)
        memcpy(a + (size_t)r * cols, got + (size_t)r * ld, cols * sizeof *a),
            memcpy(b + (size_t)r * cols, ref + (size_t)r * ld, cols * sizeof *b);
    int ok = cmp(what, a, b, (size_t)rows * cols, tol);
    free(a), free(b);
    return ok;
}

/* Device copies: dev() uploads, poison() fills with 0xFF bytes (NaN in fp32 and in bf16), fetch() downloads n
 * floats into a new buffer. For float arrays (statistics, weight gradients, AdamW state). */
static void xfree(void *d) { XOP(free)(d); }
static void *dev(const void *h, size_t bytes)
{
    void *d = XOP(alloc)(bytes);
    if (h) XOP(upload)(d, h, bytes);
    return d;
}
static void *poison(size_t bytes)
{
    void *d = XOP(alloc)(bytes), *h = malloc(bytes + 1);
    memset(h, 0xFF, bytes);
    XOP(upload)(d, h, bytes);
    free(h);
    return d;
}
static float *fetch(const void *d, size_t n)
{
    float *h = malloc(n * sizeof *h + 1);
    XOP(download)(h, d, n * sizeof *h);
    return h;
}

/* Activation storage (scp_act, lib/model/backend.h): fp32, or bf16 (2-byte elements) where bf (X) or rbf (R).
 * The host keeps every array as floats; where either side stores bf16, randv() rounds them to bf16 values, so
 * that both sides start from the same numbers. ract() makes a reference-side copy in R's storage (R's buffers
 * are host memory: cpu-ref, or cpu-bf16 holding bf16 bits), xact() a device copy in X's; rget()/xget() widen
 * back to floats; AT() offsets X's arrays by whole elements, RAT() R's; xpoison() is poison() for n elements. */
static void bfround(float *x, size_t n)   /* to the nearest bf16 values (lib/core/dtype.c) */
{
    for (size_t i = 0; i < n; i++) x[i] = scp_bf16_to_f32(scp_f32_to_bf16(x[i]));
}
static size_t AS(void) { return X->act_size; }
static scp_act *AT(const scp_act *p, size_t n) { return (scp_act *)((char *)p + n * AS()); }
static scp_act *RAT(const scp_act *p, size_t n) { return (scp_act *)((char *)p + n * R->act_size); }
static void *to_store(const float *h, size_t n, int b16)  /* h NULL: zeros */
{
    void *p = calloc(n + 1, b16 ? 2 : 4);
    if (h) scp_convert_from_f32(p, b16 ? SCP_BF16 : SCP_F32, h, n);
    return p;
}
static float *from_store(const void *p, size_t n, int b16)
{
    float *f = malloc(n * 4 + 1);
    scp_convert_to_f32(f, p, b16 ? SCP_BF16 : SCP_F32, n);
    return f;
}
static scp_act *ract(const float *h, size_t n) { return to_store(h, n, rbf); }
static float *rget(const scp_act *r, size_t n) { return from_store(r, n, rbf); }
static void xput(scp_act *d, const float *h, size_t n)
{
    void *s = to_store(h, n, bf);
    XOP(upload)(d, s, n * AS());
    free(s);
}
static scp_act *xact(const float *h, size_t n)
{
    scp_act *d = XOP(alloc)(n * AS());
    if (h) xput(d, h, n);
    return d;
}
static scp_act *xpoison(size_t n) { return poison(n * AS()); }
static float *xget(const scp_act *d, size_t n)
{
    void *s = malloc(n * AS() + 1);
    XOP(download)(s, d, n * AS());
    float *f = from_store(s, n, bf);
    free(s);
    return f;
}

static void test_matmul(int M, int K, int N)
{
    int ldi = K + 5, ldo = N + 3;
    char what[128];
    size_t ni = (size_t)M * ldi, no = (size_t)M * ldo, nw = (size_t)N * K;
    float *inp = randv(ni, 1), *w = randv(nw, 0.2f), *bias = randv(N, 1), *out0 = randv(no, 1);
    scp_act *rin = ract(inp, ni), *rwt = ract(w, nw), *rb = ract(bias, N);
    scp_act *di = xact(inp, ni), *dw = xact(w, nw), *db = xact(bias, N);
    /* v 0: a bias; 1: a residual (beta 1); 2: both (an o-projection bias onto the residual stream) */
    for (int v = 0; v <= 2; v++) {
        const int beta = v > 0, with_bias = v != 1;
        static const char *vname[3] = {"bias", "beta=1 (residual)", "beta=1 (residual) and bias"};
        scp_act *rout = ract(out0, no);
        R->matmul_fwd(rout, ldo, rin, ldi, rwt, with_bias ? rb : NULL, M, K, N, (float)beta);
        float *ref = rget(rout, no);
        scp_act *dout = beta ? xact(out0, no) : xpoison(no);
        XOP(matmul_fwd)(dout, ldo, di, ldi, dw, with_bias ? db : NULL, M, K, N, (float)beta);
        float *got = xget(dout, no);
        snprintf(what, sizeof what, "matmul_fwd M=%d K=%d N=%d %s", M, K, N, vname[v]);
        cmp_rows(what, got, ref, M, N, ldo, tol_mm);
        free(got), free(ref), free(rout), xfree(dout);
    }
    /* dinp (M, K; ldi) (+)= dout (M, N; ldo) @ w */
    float *g = randv(no, 1), *dinp0 = randv(ni, 1);
    scp_act *rg = ract(g, no), *dg = xact(g, no);
    for (int beta = 0; beta <= 1; beta++) {
        scp_act *rinp = ract(dinp0, ni);
        R->matmul_bwd_inp(rinp, ldi, rg, ldo, rwt, M, K, N, (float)beta);
        float *ref = rget(rinp, ni);
        scp_act *d = beta ? xact(dinp0, ni) : xpoison(ni);
        XOP(matmul_bwd_inp)(d, ldi, dg, ldo, dw, M, K, N, (float)beta);
        float *got = xget(d, ni);
        snprintf(what, sizeof what, "matmul_bwd_inp M=%d K=%d N=%d beta=%d", M, K, N, beta);
        cmp_rows(what, got, ref, M, K, ldi, tol_mm);
        free(got), free(ref), free(rinp), xfree(d);
    }
    /* dw (N, K) += dout^T inp; dbias += column sums (both fp32, both start non-zero: they accumulate) */
    float *gw0 = randv(nw, 1), *gb0 = randv(N, 1);
    float *rgw = malloc(nw * 4), *rgb = malloc((size_t)N * 4);
    memcpy(rgw, gw0, nw * 4), memcpy(rgb, gb0, (size_t)N * 4);
    R->matmul_bwd_w(rgw, rgb, rg, ldo, rin, ldi, M, K, N);
    float *xgw = dev(gw0, nw * 4), *xgb = dev(gb0, (size_t)N * 4);
    XOP(matmul_bwd_w)(xgw, xgb, dg, ldo, di, ldi, M, K, N);
    float *got = fetch(xgw, nw), *gotb = fetch(xgb, N);
    snprintf(what, sizeof what, "matmul_bwd_w M=%d K=%d N=%d", M, K, N);
    cmp(what, got, rgw, nw, tol_mmw);
    snprintf(what, sizeof what, "matmul_bwd_w dbias M=%d N=%d", M, N);
    cmp(what, gotb, rgb, N, TOL_F32);
    /* the same again from the same start: the same bits */
    XOP(upload)(xgw, gw0, nw * 4);
    XOP(matmul_bwd_w)(xgw, xgb, dg, ldo, di, ldi, M, K, N);
    float *again = fetch(xgw, nw);
    tap_ok(memcmp(again, got, nw * 4) == 0, "matmul_bwd_w M=%d K=%d N=%d: bitwise repeatable", M, K, N);
    free(again), free(got), free(gotb), free(rgw), free(rgb), free(gw0), free(gb0);
    xfree(xgw), xfree(xgb), xfree(dg), xfree(di), xfree(dw), xfree(db);
    free(inp), free(w), free(bias), free(out0), free(g), free(dinp0), free(rin), free(rwt), free(rb), free(rg);
}

static void test_rmsnorm(int N, int G, int C, int ld)
{
    char what[128];
    size_t n = (size_t)N * ld;
    float *x = randv(n, 2), *w = randv(C, 1), *d = randv(n, 1), *dx0 = randv(n, 1), *dw0 = randv(C, 1);
    scp_act *rx = ract(x, n), *rw = ract(w, C), *ro = ract(x, n);  /* columns outside the groups are left alone */
    float *rr = malloc((size_t)N * G * 4);
    R->rmsnorm_fwd(ro, rr, rx, rw, N, G, C, ld, 1e-6f);
    float *refo = rget(ro, n);
    scp_act *xx = xact(x, n), *xw = xact(w, C), *xo = xact(x, n);
    float *xr = poison((size_t)N * G * 4);
    XOP(rmsnorm_fwd)(xo, xr, xx, xw, N, G, C, ld, 1e-6f);
    float *go = xget(xo, n), *gr = fetch(xr, (size_t)N * G);
    snprintf(what, sizeof what, "rmsnorm_fwd N=%d G=%d C=%d ld=%d", N, G, C, ld);
    cmp(what, go, refo, n, tol_ew);
    snprintf(what, sizeof what, "rmsnorm_fwd rstd N=%d G=%d", N, G);
    cmp(what, gr, rr, (size_t)N * G, TOL_F32);
    scp_act *rd = ract(d, n);
    for (int acc = 0; acc <= 1; acc++) {
        scp_act *rdx = ract(dx0, n);
        float *rdw = malloc(C * 4);
        memcpy(rdw, dw0, C * 4);
        R->rmsnorm_bwd(rdx, rdw, rd, rx, rw, rr, N, G, C, ld, acc);
        float *refdx = rget(rdx, n);
        scp_act *xd = xact(d, n), *xdx = xact(dx0, n);
        float *xdw = dev(dw0, C * 4);
        XOP(rmsnorm_bwd)(xdx, xdw, xd, xx, xw, xr, N, G, C, ld, acc);
        float *gdx = xget(xdx, n), *gdw = fetch(xdw, C);
        snprintf(what, sizeof what, "rmsnorm_bwd dx N=%d G=%d C=%d accumulate=%d", N, G, C, acc);
        cmp(what, gdx, refdx, n, tol_ew);
        snprintf(what, sizeof what, "rmsnorm_bwd dw N=%d G=%d C=%d accumulate=%d", N, G, C, acc);
        cmp(what, gdw, rdw, C, bf ? TOL_W16 : TOL_F32);
        /* in place (dx == dout), as the driver does for the q/k norms */
        scp_act *rip = ract(d, n);
        float *rdw2 = malloc(C * 4);
        memcpy(rdw2, dw0, C * 4);
        R->rmsnorm_bwd(rip, rdw2, rip, rx, rw, rr, N, G, C, ld, 0);
        float *refip = rget(rip, n);
        xput(xd, d, n), XOP(upload)(xdw, dw0, C * 4);
        XOP(rmsnorm_bwd)(xd, xdw, xd, xx, xw, xr, N, G, C, ld, 0);
        float *gip = xget(xd, n);
        if (acc == 0) {
            snprintf(what, sizeof what, "rmsnorm_bwd in place N=%d G=%d C=%d", N, G, C);
            cmp(what, gip, refip, n, tol_ew);
        }
        free(gip), free(rip), free(refip), free(rdw2), free(gdx), free(gdw), free(rdx), free(refdx), free(rdw);
        xfree(xd), xfree(xdx), xfree(xdw);
    }
    free(go), free(gr), free(refo), free(rr), free(x), free(w), free(d), free(dx0), free(dw0);
    free(rx), free(rw), free(ro), free(rd);
    xfree(xx), xfree(xw), xfree(xo), xfree(xr);
}

/* RoPE's (T, hd/2) cos and sin tables at base 10000, new host arrays. */
static void rope_tables(int T, int hd, float **c, float **s)
{
    int half = hd / 2;
    *c = malloc((size_t)T * half * 4 + 1), *s = malloc((size_t)T * half * 4 + 1);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double f = t * pow(10000.0, -2.0 * i / hd);
            (*c)[t * half + i] = (float)cos(f), (*s)[t * half + i] = (float)sin(f);
        }
}

static void test_rope(int B, int T, int G, int hd, int ld)
{
    char what[128];
    int N = B * T, half = hd / 2;
    size_t n = (size_t)N * ld;
    float *x = randv(n, 1), *c, *s;
    rope_tables(T, hd, &c, &s);
    float *xc = dev(c, (size_t)T * half * 4), *xs = dev(s, (size_t)T * half * 4);
    for (int inv = 0; inv <= 1; inv++) {
        scp_act *r = ract(x, n);
        R->rope(r, c, s, N, T, G, hd, ld, inv);
        float *ref = rget(r, n);
        scp_act *xx = xact(x, n);
        XOP(rope)(xx, xc, xs, N, T, G, hd, ld, inv);
        float *got = xget(xx, n);
        snprintf(what, sizeof what, "rope N=%d T=%d G=%d hd=%d ld=%d inverse=%d", N, T, G, hd, ld, inv);
        cmp(what, got, ref, n, tol_ew);
        free(got), free(ref), free(r), xfree(xx);
    }
    free(x), free(c), free(s), xfree(xc), xfree(xs);
}

/* Qwen3's q/k norm and rotation in one entry: rows of ld elements hold H query heads, KV key heads, then other
 * columns (v) that neither the entry nor its backward may touch. X against R's entry; and R's entry against
 * the composition of R's own rmsnorm_fwd and rope entries, which it stands for (the model ran that sequence). */
static void test_qk_norm_rope(int B, int T, int H, int KV, int hd, int ld)
{
    char what[160];
    const int N = B * T, half = hd / 2;
    const size_t n = (size_t)N * ld, nr = (size_t)N * (H + KV), kcol = (size_t)H * hd;
    const float eps = 1e-6f;
    float *x = randv(n, 2), *raw0 = randv(n, 1), *wq = randv(hd, 1), *wk = randv(hd, 1), *d = randv(n, 1);
    float *dwq0 = randv(hd, 1), *dwk0 = randv(hd, 1), *c, *s;
    rope_tables(T, hd, &c, &s);
    scp_act *rq = ract(x, n), *rraw = ract(raw0, n), *rwq = ract(wq, hd), *rwk = ract(wk, hd);
    float *rr = malloc(nr * 4);
    R->qk_norm_rope_fwd(rq, rraw, rr, rwq, rwk, c, s, N, T, H, KV, hd, ld, eps);
    float *refq = rget(rq, n), *refraw = rget(rraw, n);

    /* R's entry against R's rmsnorm_fwd (q heads, k heads) and one rope over the H + KV heads */
    scp_act *cq = ract(x, n);
    float *cr = malloc(nr * 4);
    R->rmsnorm_fwd(cq, cr, cq, rwq, N, H, hd, ld, eps);
    R->rmsnorm_fwd(RAT(cq, kcol), cr + (size_t)N * H, RAT(cq, kcol), rwk, N, KV, hd, ld, eps);
    R->rope(cq, c, s, N, T, H + KV, hd, ld, 0);
    float *compq = rget(cq, n);
    snprintf(what, sizeof what, "qk_norm_rope_fwd of %s = its rmsnorm_fwd and rope N=%d H=%d KV=%d hd=%d", R->name, N, H,
             KV, hd);
    /* cpu-bf16 rounds between the composed entries, once in the fused one */
    cmp(what, refq, compq, n, rbf ? TOL_OUT16 : 1e-7);
    tap_ok(memcmp(cr, rr, nr * 4) == 0, "qk_norm_rope_fwd of %s: the rstd of its rmsnorm_fwd, bit for bit", R->name);

    scp_act *xq = xact(x, n), *xraw = xact(raw0, n), *xwq = xact(wq, hd), *xwk = xact(wk, hd);
    float *xr = poison(nr * 4), *xc = dev(c, (size_t)T * half * 4), *xs = dev(s, (size_t)T * half * 4);
    XOP(qk_norm_rope_fwd)(xq, xraw, xr, xwq, xwk, xc, xs, N, T, H, KV, hd, ld, eps);
    float *gq = xget(xq, n), *graw = xget(xraw, n), *gr = fetch(xr, nr);
    snprintf(what, sizeof what, "qk_norm_rope_fwd N=%d T=%d H=%d KV=%d hd=%d ld=%d", N, T, H, KV, hd, ld);
    cmp(what, gq, refq, n, tol_ew);
    snprintf(what, sizeof what, "qk_norm_rope_fwd raw (the heads as they were, other columns untouched) N=%d", N);
    cmp(what, graw, refraw, n, 0.0);
    snprintf(what, sizeof what, "qk_norm_rope_fwd rstd N=%d H + KV=%d", N, H + KV);
    cmp(what, gr, rr, nr, TOL_F32);
    /* without raw (inference): the same heads */
    scp_act *xq2 = xact(x, n);
    XOP(qk_norm_rope_fwd)(xq2, NULL, xr, xwq, xwk, xc, xs, N, T, H, KV, hd, ld, eps);
    float *gq2 = xget(xq2, n);
    snprintf(what, sizeof what, "qk_norm_rope_fwd without raw N=%d: the same bits", N);
    tap_ok(memcmp(gq2, gq, n * 4) == 0, "%s", what);

    /* backward: X from its own forward's raw and rstd */
    scp_act *rd = ract(d, n);
    float *rdwq = malloc(hd * 4), *rdwk = malloc(hd * 4);
    memcpy(rdwq, dwq0, hd * 4), memcpy(rdwk, dwk0, hd * 4);
    R->qk_norm_rope_bwd(rd, rdwq, rdwk, rraw, rwq, rwk, rr, c, s, N, T, H, KV, hd, ld);
    float *refd = rget(rd, n);
    scp_act *xd = xact(d, n);
    float *xdwq = dev(dwq0, hd * 4), *xdwk = dev(dwk0, hd * 4);
    XOP(qk_norm_rope_bwd)(xd, xdwq, xdwk, xraw, xwq, xwk, xr, xc, xs, N, T, H, KV, hd, ld);
    float *gd = xget(xd, n), *gdwq = fetch(xdwq, hd), *gdwk = fetch(xdwk, hd);
    snprintf(what, sizeof what, "qk_norm_rope_bwd dx N=%d T=%d H=%d KV=%d hd=%d ld=%d", N, T, H, KV, hd, ld);
    cmp(what, gd, refd, n, tol_ew);
    snprintf(what, sizeof what, "qk_norm_rope_bwd dwq N=%d H=%d hd=%d", N, H, hd);
    cmp(what, gdwq, rdwq, hd, bf ? TOL_W16 : TOL_F32);
    snprintf(what, sizeof what, "qk_norm_rope_bwd dwk N=%d KV=%d hd=%d", N, KV, hd);
    cmp(what, gdwk, rdwk, hd, bf ? TOL_W16 : TOL_F32);
    /* bitwise repeatable: the same call again gives the same bits (no atomics, a fixed order of sums) */
    xput(xd, d, n), XOP(upload)(xdwq, dwq0, hd * 4), XOP(upload)(xdwk, dwk0, hd * 4);
    XOP(qk_norm_rope_bwd)(xd, xdwq, xdwk, xraw, xwq, xwk, xr, xc, xs, N, T, H, KV, hd, ld);
    float *gd2 = xget(xd, n), *gdwq2 = fetch(xdwq, hd), *gdwk2 = fetch(xdwk, hd);
    tap_ok(memcmp(gd2, gd, n * 4) == 0 && memcmp(gdwq2, gdwq, hd * 4) == 0 && memcmp(gdwk2, gdwk, hd * 4) == 0,
           "qk_norm_rope_bwd N=%d H=%d KV=%d hd=%d: the same bits on a second run", N, H, KV, hd);

    free(x), free(raw0), free(wq), free(wk), free(d), free(dwq0), free(dwk0), free(c), free(s);
    free(rq), free(rraw), free(rwq), free(rwk), free(rr), free(refq), free(refraw), free(cq), free(cr), free(compq);
    free(gq), free(graw), free(gr), free(gq2), free(rd), free(rdwq), free(rdwk), free(refd), free(gd), free(gdwq);
    free(gdwk), free(gd2), free(gdwq2), free(gdwk2);
    xfree(xq), xfree(xraw), xfree(xwq), xfree(xwk), xfree(xr), xfree(xc), xfree(xs), xfree(xq2), xfree(xd);
    xfree(xdwq), xfree(xdwk);
}

/* The attention modes: the visibility rule's fields (model/attn_visibility.h). Documents (docs 1): random
 * boundaries (a new document starts at a position with probability 1/9), and in the last sequence the last fifth
 * of the positions are padding (-1: each sees itself alone). docs 2: padding scattered inside the documents
 * (each position with probability 1/6), a document going on after it. docs 3: the ids cycle through 0, 1, 2, so
 * that they decrease and one id holds several separate runs (which see each other): no document spans, the
 * kernels that narrow a block's keys to them fall back to every key. A query always sees itself (its own
 * document, j <= i), so no row of any mode is empty: the case of a query that sees no key cannot arise from
 * the rule. */
enum { CAUSAL, BIDIRECTIONAL, CAUSAL_DOCS, BIDIRECTIONAL_DOCS, ANNEAL, ANNEAL_ALL, ANNEAL_DOCS, DOCS_HOLES,
       CAUSAL_DOCS_HOLES, DOCS_UNSORTED };
static const struct {
    const char *name;
    int causal, docs;
    double p;   /* annealed: the probability of each future key (0: not annealed) */
} attn_mode[] = {
    [CAUSAL] = {"causal", 1, 0, 0},
    [BIDIRECTIONAL] = {"bidirectional", 0, 0, 0},
    [CAUSAL_DOCS] = {"causal+documents", 1, 1, 0},
    [BIDIRECTIONAL_DOCS] = {"bidirectional+documents", 0, 1, 0},
    [ANNEAL] = {"annealed p=0.3", 1, 0, 0.3},
    [ANNEAL_ALL] = {"annealed p=1", 1, 0, 1.0},
    [ANNEAL_DOCS] = {"annealed p=0.3+documents", 1, 1, 0.3},
    [DOCS_HOLES] = {"bidirectional+documents with padding inside", 0, 2, 0},
    [CAUSAL_DOCS_HOLES] = {"causal+documents with padding inside", 1, 2, 0},
    [DOCS_UNSORTED] = {"bidirectional+documents, ids not sorted", 0, 3, 0},
};
#define ANNEAL_SEED 0x5eed2024u

/* Whether key j is visible to query i of sequence b, from the rule's statement rather than its code: documents
 * (doc (B, T) or NULL), then causal order, a future key under annealing visible when the top 53 bits of
 * scp_mix3(seed, b, i << 32 | j), as a fraction of 2^53, fall below p. */
static int visible_ref(int mode, const int32_t *doc, int T, int b, int i, int j)
{
    if (doc) {
        int32_t di = doc[b * T + i], dj = doc[b * T + j];
        if (di < 0 ? j != i : di != dj) return 0;
    }
    if (!attn_mode[mode].causal || j <= i) return 1;
    uint64_t x = scp_mix3(ANNEAL_SEED, (uint64_t)b, ((uint64_t)i << 32) | (uint64_t)j) >> 11;
    return (double)x * 0x1p-53 < attn_mode[mode].p;
}

/* pad: ld_qkv - (H + 2 KV) hd (0 lets the kernels use vector loads, as in the benchmark's shapes). */
static void test_attention_ld(int B, int T, int H, int KV, int hd, int mode, int pad)
{
    /* --small (the emulator): a head size the tensor-core kernels do not take runs the same fp32 kernels on every
     * CUDA path, so it is checked on the flash path alone */
    if (small && attn_path && strcmp(attn_path, "flash") != 0 && !(hd % 16 == 0 && hd >= 16 && hd <= 128)) return;
    char what[160];
    const char *mname = attn_mode[mode].name;
    int ld = (H + 2 * KV) * hd + pad, M = B * T, qd = H * hd;
    /* bf16 operands on the GEMM path at every head size, on the flash path where the tensor-core kernels take it */
    int cuda = strncmp(X->name, "cuda", 4) == 0, gemm = attn_path && strcmp(attn_path, "gemm") == 0;
    double tol = cuda && (gemm || (hd % 16 == 0 && hd <= 128)) ? TOL_ATT_TC : tol_att;
    size_t nq = (size_t)M * ld, no = (size_t)M * qd, na = (size_t)B * H * T * T;
    float *qkv = randv(nq, 1.5f), *dout = randv(no, 1);
    int32_t *doc = NULL;
    if (attn_mode[mode].docs) {
        doc = malloc((size_t)M * sizeof *doc);
        for (int b = 0; b < B; b++) {
            int32_t id = 0;
            for (int i = 0; i < T; i++) {
                if (i > 0 && frand() > 1.0f - 2.0f / 9) id++;
                int docs = attn_mode[mode].docs;
                int pad = docs == 1 ? b == B - 1 && i >= T - T / 5 : docs == 2 && frand() > 1.0f - 2.0f / 6;
                doc[b * T + i] = pad ? -1 : docs == 3 ? id % 3 : id;
            }
        }
    }
    scp_attn_args a = {.B = B, .T = T, .H = H, .KV = KV, .hd = hd, .ld_qkv = ld, .causal = attn_mode[mode].causal,
                       .scale = 1.0f / sqrtf((float)hd), .doc = doc};
    if (attn_mode[mode].p > 0) a.anneal_seed = ANNEAL_SEED, a.anneal_thresh = scp_attn_anneal_threshold(attn_mode[mode].p);
    char sfx[40] = "", lds[20] = "";
    if (pad == 0) snprintf(lds, sizeof lds, " ld=%d", ld);
    snprintf(sfx, sizeof sfx, "%s%s%s%s", lds, attn_path ? " [" : "", attn_path ? attn_path : "", attn_path ? "]" : "");
    float *ratt = malloc(na * 4);
    scp_act *rq = ract(qkv, nq), *rdo = ract(dout, no), *ro = ract(NULL, no), *rg = ract(NULL, nq);
    R->attention_fwd(ro, ratt, rq, RAT(rq, qd), RAT(rq, qd + KV * hd), &a);
    R->attention_bwd(rg, RAT(rg, qd), RAT(rg, qd + KV * hd), rdo, ro, ratt, rq, RAT(rq, qd), RAT(rq, qd + KV * hd), &a);
    float *rout = rget(ro, no), *rd = rget(rg, nq);
    free(rq), free(rdo), free(ro), free(rg);
    /* cpu-ref (its att: every probability, (B, H, T, T)) against the rule stated above: 0 exactly where a key is
     * hidden, positive where it is seen. (cpu-bf16's fast kernel leaves the pairs past a causal bound unwritten.) */
    size_t wrong = 0, seen = 0;
    for (int b = 0; b < B && R == &scp_backend_cpu_ref; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    int v = visible_ref(mode, doc, T, b, i, j);
                    float pr = ratt[(((size_t)b * H + h) * T + i) * T + j];
                    wrong += v ? !(pr > 0.0f) : pr != 0.0f;
                    seen += (size_t)v;
                }
    if (R == &scp_backend_cpu_ref)
        tap_ok(wrong == 0, "attention B=%d T=%d H=%d %s: cpu-ref's probabilities are 0 exactly at the hidden keys (%zu "
               "of %zu pairs seen, %zu wrong)", B, T, H, mname, seen, na, wrong);
    scp_act *xq = xact(qkv, nq), *xd = xact(dout, no), *xo = xpoison(no), *xg = xpoison(nq);
    float *xa = poison(XOP(attn_state_floats)(B, H, T) * 4);  /* what X says one batch needs, no more */
    int32_t *xdoc = doc ? dev(doc, (size_t)M * sizeof *doc) : NULL;
    a.doc = xdoc;
    XOP(attention_fwd)(xo, xa, xq, AT(xq, qd), AT(xq, qd + KV * hd), &a);
    XOP(attention_bwd)(xg, AT(xg, qd), AT(xg, qd + KV * hd), xd, xo, xa, xq, AT(xq, qd), AT(xq, qd + KV * hd), &a);
    float *go = xget(xo, no), *gg = xget(xg, nq);
    snprintf(what, sizeof what, "attention_fwd B=%d T=%d H=%d KV=%d hd=%d %s%s", B, T, H, KV, hd, mname, sfx);
    cmp(what, go, rout, no, tol);
    const char *gname[3] = {"dq", "dk", "dv"};
    int off[3] = {0, qd, qd + KV * hd}, wid[3] = {qd, KV * hd, KV * hd};
    for (int t = 0; t < 3; t++) {
        snprintf(what, sizeof what, "attention_bwd %s B=%d T=%d H=%d KV=%d hd=%d %s%s", gname[t], B, T, H, KV, hd,
                 mname, sfx);
        cmp_rows(what, gg + off[t], rd + off[t], M, wid[t], ld, tol);
    }
    /* run the backward again into fresh poison: the same bits (not under --small: the emulator runs its fibers in
     * one fixed order, so its repeat would say little at a large share of its time; the GPU's run checks it) */
    scp_act *xg2 = small ? NULL : xpoison(nq);
    if (xg2) {
        XOP(attention_bwd)(xg2, AT(xg2, qd), AT(xg2, qd + KV * hd), xd, xo, xa, xq, AT(xq, qd), AT(xq, qd + KV * hd), &a);
        float *gg2 = xget(xg2, nq);
        int same = 1;
        for (int r = 0; r < M; r++)
            if (memcmp(gg + (size_t)r * ld, gg2 + (size_t)r * ld, (size_t)(qd + 2 * KV * hd) * 4)) same = 0;
        tap_ok(same, "attention_bwd B=%d T=%d hd=%d %s%s: bitwise repeatable", B, T, hd, mname, sfx);
        free(gg2), xfree(xg2);
    }
    /* the forward again into fresh poison: the same bits (not under --small, as above) */
    if (!small) {
        scp_act *xo2 = xpoison(no);
        XOP(attention_fwd)(xo2, xa, xq, AT(xq, qd), AT(xq, qd + KV * hd), &a);
        float *go2 = xget(xo2, no);
        tap_ok(memcmp(go, go2, no * 4) == 0, "attention_fwd B=%d T=%d hd=%d %s%s: bitwise repeatable", B, T, hd, mname,
               sfx);
        free(go2), xfree(xo2);
    }
    free(go), free(gg), free(rout), free(ratt), free(rd), free(qkv), free(dout), free(doc);
    xfree(xq), xfree(xd), xfree(xo), xfree(xa), xfree(xg);
    if (xdoc) xfree(xdoc);
}
static void test_attention(int B, int T, int H, int KV, int hd, int mode) { test_attention_ld(B, T, H, KV, hd, mode, 3); }

/* The attention cases; on the CUDA backend main() runs them once per attention path (attn_path). */
static void attention_cases(void)
{
    /* head sizes the tensor-core flash kernels do not take (fp32 kernels on the flash path) */
    test_attention(2, 37, 4, 2, 8, CAUSAL);
    test_attention(1, 33, 2, 1, 256, CAUSAL);
    test_attention(1, 50, 2, 2, 40, BIDIRECTIONAL);
    /* tensor-core kernels: T not a multiple of the 64-row tiles, GQA, every kind of visibility */
    test_attention(1, 100, 4, 2, 64, CAUSAL);
    test_attention(1, 100, 4, 2, 64, ANNEAL);
    test_attention_ld(1, 100, 4, 2, 64, ANNEAL_ALL, 0);
    /* (--small leaves the longer cases to the emulator and the GPU: under AddressSanitizer the CPU reference
     * would take minutes over them) */
    if (!small || long_emulated) {
        test_attention(1, 200, 4, 2, 128, BIDIRECTIONAL);
        test_attention(1, 200, 4, 2, 128, CAUSAL);
    }
    test_attention(2, 45, 4, 4, 128, CAUSAL_DOCS);
    test_attention(1, 200, 4, 2, 64, CAUSAL_DOCS);  /* documents hide whole 64 x 64 tiles below the diagonal: skipped */
    test_attention(1, 50, 2, 2, 96, BIDIRECTIONAL);
    test_attention(1, 40, 2, 2, 16, CAUSAL);
    test_attention(2, 1, 2, 1, 64, BIDIRECTIONAL);  /* a single query: one partial tile */
    test_attention(2, 7, 4, 2, 32, ANNEAL_DOCS);
    if (!small) {
        test_attention(1, 129, 16, 8, 128, BIDIRECTIONAL);
        test_attention_ld(2, 300, 8, 2, 128, ANNEAL, 0);
        test_attention_ld(1, 512, 16, 8, 128, BIDIRECTIONAL, 0);  /* the benchmark's heads and layout, shorter */
    }
    if (!small || emulated) test_attention(1, 257, 4, 1, 64, CAUSAL_DOCS);  /* 5 x 5 tiles, most without a pair */
    /* GQA groups of 3 (dk, dv summed over three heads), a head size that is no multiple of 16 */
    if (!small || emulated) test_attention(1, 61, 6, 2, 20, ANNEAL);
    /* documents with padding, with and without annealing, bidirectional, on each kind of kernel */
    test_attention(1, 61, 6, 2, 20, ANNEAL_DOCS);
    test_attention(2, 23, 2, 1, 8, BIDIRECTIONAL_DOCS);
    test_attention(1, 40, 2, 2, 32, ANNEAL_ALL);
    test_attention(1, 100, 4, 2, 64, BIDIRECTIONAL_DOCS);
    test_attention(1, 70, 2, 1, 128, ANNEAL_DOCS);
    test_attention(2, 70, 2, 1, 32, DOCS_HOLES);
    test_attention(1, 70, 4, 2, 32, CAUSAL_DOCS_HOLES);
    test_attention(2, 70, 2, 1, 32, DOCS_UNSORTED);
    /* the tensor-core head sizes between the powers of two */
    test_attention(1, 70, 2, 1, 48, CAUSAL_DOCS);
    test_attention(1, 65, 2, 2, 80, BIDIRECTIONAL);
    test_attention(2, 40, 4, 2, 112, ANNEAL);
    /* cuDNN's path serves rows of whole 16-byte vectors (no pad) with plain causal or bidirectional masks: those
     * on its own, multi-head and grouped, T no multiple of 64 (lib/model/cuda/attention_cudnn.c) */
    if (attn_path && strcmp(attn_path, "cudnn") == 0) {
        test_attention_ld(2, 100, 4, 2, 64, CAUSAL, 0);
        test_attention_ld(1, 128, 4, 4, 128, CAUSAL, 0);
        test_attention_ld(2, 77, 6, 2, 32, BIDIRECTIONAL, 0);
        test_attention_ld(1, 64, 2, 2, 16, BIDIRECTIONAL, 0);
    }
}

/* attention_decode: one query (H heads) against the first n rows of a cache of q|k|v rows (row stride ld, as
 * lib/model/model.c keeps it), GQA. */
static void test_attention_decode(int n, int H, int KV, int hd, int pad)
{
    char what[128];
    int qd = H * hd, ld = (H + 2 * KV) * hd + pad;
    size_t nc = (size_t)n * ld;
    float *cache = randv(nc, 1.5f), scale = 1.0f / sqrtf((float)hd);
    scp_act *rc = ract(cache, nc), *ro = ract(NULL, (size_t)qd);   /* q: the newest row's, as in decoding */
    R->attention_decode(ro, RAT(rc, (size_t)(n - 1) * ld), RAT(rc, qd), RAT(rc, qd + KV * hd), n, H, KV, hd, ld, scale);
    float *ref = rget(ro, (size_t)qd);
    scp_act *xc = xact(cache, nc), *xo = xpoison((size_t)qd);
    XOP(attention_decode)(xo, AT(xc, (size_t)(n - 1) * ld), AT(xc, qd), AT(xc, qd + KV * hd), n, H, KV, hd, ld, scale);
    float *got = xget(xo, (size_t)qd);
    snprintf(what, sizeof what, "attention_decode n=%d H=%d KV=%d hd=%d ld=%d", n, H, KV, hd, ld);
    cmp(what, got, ref, (size_t)qd, tol_att);
    free(cache), free(rc), free(ro), free(ref), free(got);
    xfree(xc), xfree(xo);
}

static void test_swiglu(int M, int I)
{
    char what[96];
    size_t nh = (size_t)M * I, ng = 2 * nh;
    float *gu = randv(ng, 3), *dh = randv(nh, 1);
    scp_act *rgu = ract(gu, ng), *rdh = ract(dh, nh), *rh = ract(NULL, nh), *rg = ract(NULL, ng);
    R->swiglu_fwd(rh, rgu, M, I);
    R->swiglu_bwd(rg, rdh, rgu, M, I);
    float *refh = rget(rh, nh), *refg = rget(rg, ng);
    scp_act *xgu = xact(gu, ng), *xdh = xact(dh, nh), *xh = xpoison(nh), *xg = xpoison(ng);
    XOP(swiglu_fwd)(xh, xgu, M, I);
    XOP(swiglu_bwd)(xg, xdh, xgu, M, I);
    float *gh = xget(xh, nh), *gg = xget(xg, ng);
    snprintf(what, sizeof what, "swiglu_fwd M=%d I=%d", M, I);
    cmp(what, gh, refh, nh, tol_ew);
    snprintf(what, sizeof what, "swiglu_bwd M=%d I=%d", M, I);
    cmp(what, gg, refg, ng, tol_ew);
    free(gu), free(dh), free(rgu), free(rdh), free(rh), free(rg), free(refh), free(refg), free(gh), free(gg);
    xfree(xgu), xfree(xdh), xfree(xh), xfree(xg);
}

static void test_embedding(int M, int C, int V)
{
    char what[96];
    int32_t *ids = malloc(M * sizeof *ids);
    for (int m = 0; m < M; m++) ids[m] = (int32_t)((frand() + 1) * 0.5f * V) % V;
    ids[0] = ids[M - 1] = V - 1;  /* repeats, and the last row of the table */
    size_t nt = (size_t)V * C, no = (size_t)M * C;
    float *table = randv(nt, 1), *d = randv(no, 1), *dt0 = randv(nt, 1);
    float *rdt = malloc(nt * 4);
    memcpy(rdt, dt0, nt * 4);
    scp_act *rt = ract(table, nt), *ro = ract(NULL, no), *rd = ract(d, no);
    R->embedding_fwd(ro, ids, rt, M, C);
    R->embedding_bwd(rdt, rd, ids, M, C, V);
    float *refo = rget(ro, no);
    int32_t *xi = dev(ids, M * sizeof *ids);
    scp_act *xt = xact(table, nt), *xo = xpoison(no), *xd = xact(d, no);
    float *xdt = dev(dt0, nt * 4);
    XOP(embedding_fwd)(xo, xi, xt, M, C);
    XOP(embedding_bwd)(xdt, xd, xi, M, C, V);
    float *go = xget(xo, no), *gdt = fetch(xdt, nt);
    snprintf(what, sizeof what, "embedding_fwd M=%d C=%d V=%d", M, C, V);
    cmp(what, go, refo, no, 0);
    snprintf(what, sizeof what, "embedding_bwd M=%d C=%d V=%d (repeated ids)", M, C, V);
    cmp(what, gdt, rdt, nt, 1e-6);
    /* gather rows, scatter them back into a buffer of zeros */
    int n = M / 3;
    size_t ns = (size_t)n * C;
    scp_act *rsel = ract(NULL, ns), *rsc = ract(NULL, no);
    int32_t *rows = malloc(n * sizeof *rows);
    for (int r = 0; r < n; r++) rows[r] = 3 * r + 1;
    R->gather_rows(rsel, rd, rows, n, C);
    R->scatter_rows(rsc, rsel, rows, n, C);
    float *refsel = rget(rsel, ns), *refsc = rget(rsc, no);
    int32_t *xr = dev(rows, n * sizeof *rows);
    scp_act *xs = xpoison(ns), *xsc = xact(NULL, no);  /* alloc zeroes */
    XOP(gather_rows)(xs, xd, xr, n, C);
    XOP(scatter_rows)(xsc, xs, xr, n, C);
    float *gs = xget(xs, ns), *gsc = xget(xsc, no);
    cmp("gather_rows", gs, refsel, ns, 0);
    cmp("scatter_rows", gsc, refsc, no, 0);
    free(rsel), free(rsc), free(refsel), free(refsc), free(rows), free(gs), free(gsc);
    xfree(xr), xfree(xs), xfree(xsc);
    free(ids), free(table), free(d), free(dt0), free(rdt), free(rt), free(ro), free(rd), free(refo), free(go), free(gdt);
    xfree(xi), xfree(xt), xfree(xo), xfree(xd), xfree(xdt);
}

static void test_crossentropy(int N, int V, float spread)
{
    char what[128];
    size_t nl = (size_t)N * V;
    float *l = randv(nl, spread), *w = randv(N, 1);
    int32_t *t = malloc(N * sizeof *t);
    for (int n = 0; n < N; n++) t[n] = (int32_t)((frand() + 1) * 0.5f * V) % V, w[n] = fabsf(w[n]);
    t[N / 2] = -1;  /* no loss at this row */
    t[0] = V - 1;
    for (int bw = 0; bw <= 1; bw++) {
        scp_act *rl = ract(l, nl);
        float *rn = malloc(N * 4);
        double rloss = R->crossentropy(rl, rn, t, w, N, V, bw);
        float *refl = rget(rl, nl);
        scp_act *xl = xact(l, nl);
        float *xn = poison(N * 4), *xw = dev(w, N * 4);
        int32_t *xt = dev(t, N * sizeof *t);
        double xloss = XOP(crossentropy)(xl, xn, xt, xw, N, V, bw);
        float *gn = fetch(xn, N), *gl = xget(xl, nl);
        double rel = fabs(xloss - rloss) / fabs(rloss);
        tap_ok(rel <= TOL_F32, "crossentropy N=%d V=%d spread=%g backward=%d: loss %.9g vs %.9g, rel %.3g", N, V,
               spread, bw, xloss, rloss, rel);
        snprintf(what, sizeof what, "crossentropy nll N=%d V=%d backward=%d", N, V, bw);
        cmp(what, gn, rn, N, TOL_F32);
        if (bw) {
            snprintf(what, sizeof what, "crossentropy gradient N=%d V=%d", N, V);
            cmp(what, gl, refl, nl, tol_ew);
        }
        free(rl), free(refl), free(rn), free(gn), free(gl), xfree(xl), xfree(xn), xfree(xw), xfree(xt);
    }
    free(l), free(w), free(t);
}

static void test_to_from_act(size_t n)
{
    /* to_act rounds fp32 to the storage type (nearest even), from_act widens it back exactly */
    float *f = malloc(n * 4);
    for (size_t i = 0; i < n; i++) f[i] = 3 * frand();  /* not pre-rounded */
    f[0] = 1.0f + 1.0f / 256, f[1] = 1.0f + 3.0f / 256;  /* bf16 ties: to 1, and to 1 + 4/256 */
    float *want = malloc(n * 4);
    memcpy(want, f, n * 4);
    if (bf) bfround(want, n);
    float *xf = dev(f, n * 4), *xb = poison(n * 4);
    scp_act *xs = xpoison(n);
    XOP(to_act)(xs, xf, n);
    XOP(from_act)(xb, xs, n);
    float *gs = xget(xs, n), *gb = fetch(xb, n);
    tap_ok(memcmp(gs, want, n * 4) == 0, "to_act n=%zu: the storage type's nearest-even value of every element", n);
    tap_ok(memcmp(gb, want, n * 4) == 0, "from_act n=%zu: every element widened exactly", n);
    free(f), free(want), free(gs), free(gb), xfree(xf), xfree(xb), xfree(xs);
}

/* zero_bytes, copy_bytes (and alloc, upload, download, which every case uses): n floats and a tail of bytes that
 * is no multiple of 4 or of a vector */
static void test_memory(size_t n)
{
    size_t bytes = n * 4 + 3;
    unsigned char *h = malloc(bytes), *got = malloc(bytes), *zero = calloc(bytes, 1);
    for (size_t i = 0; i < bytes; i++) h[i] = (unsigned char)(i * 131 + 7);
    unsigned char *a = dev(h, bytes), *b = poison(bytes);
    XOP(copy_bytes)(b, a, bytes);
    XOP(download)(got, b, bytes);
    tap_ok(memcmp(got, h, bytes) == 0, "copy_bytes %zu bytes: every byte", bytes);
    XOP(copy_bytes)(b, b, bytes);   /* onto itself: nothing changes */
    XOP(download)(got, b, bytes);
    tap_ok(memcmp(got, h, bytes) == 0, "copy_bytes onto itself: unchanged");
    XOP(zero_bytes)(b + 1, bytes - 2);
    XOP(download)(got, b, bytes);
    tap_ok(got[0] == h[0] && got[bytes - 1] == h[bytes - 1] && memcmp(got + 1, zero, bytes - 2) == 0,
           "zero_bytes %zu bytes at an odd address: those bytes 0, the neighbours kept", bytes - 2);
    unsigned char *c = XOP(alloc)(bytes);
    XOP(download)(got, c, bytes);
    tap_ok(memcmp(got, zero, bytes) == 0, "alloc %zu bytes: zeroed", bytes);
    xfree(a), xfree(b), xfree(c);
    free(h), free(got), free(zero);
}

static void test_adamw_norm(size_t n)
{
    char what[96];
    float *p = randv(n, 1), *g = randv(n, 0.1f), *m = randv(n, 0.01f), *v = randv(n, 0.01f);
    for (size_t i = 0; i < n; i++) v[i] = v[i] * v[i];
    float *rp = malloc(n * 4), *rm = malloc(n * 4), *rv = malloc(n * 4);
    memcpy(rp, p, n * 4), memcpy(rm, m, n * 4), memcpy(rv, v, n * 4);
    R->adamw(rp, g, rm, rv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1 - 0.9f * 0.9f, 1 - 0.95f * 0.95f);
    float *xp = dev(p, n * 4), *xg = dev(g, n * 4), *xm = dev(m, n * 4), *xv = dev(v, n * 4);
    XOP(adamw)(xp, xg, xm, xv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1 - 0.9f * 0.9f, 1 - 0.95f * 0.95f);
    float *gp = fetch(xp, n), *gm = fetch(xm, n), *gv = fetch(xv, n);
    snprintf(what, sizeof what, "adamw n=%zu params", n);
    cmp(what, gp, rp, n, 1e-6);
    snprintf(what, sizeof what, "adamw n=%zu first moment", n);
    cmp(what, gm, rm, n, 1e-6);
    snprintf(what, sizeof what, "adamw n=%zu second moment", n);
    cmp(what, gv, rv, n, 1e-6);
    double rs = R->sumsq(g, n), xs = XOP(sumsq)(xg, n), xs2 = XOP(sumsq)(xg, n);
    tap_ok(fabs(xs - rs) <= 1e-6 * rs, "sumsq n=%zu: %.12g vs %.12g", n, xs, rs);
    tap_ok(xs == xs2, "sumsq n=%zu: the same bits twice", n);
    R->scale(g, n, 0.37f);
    XOP(scale)(xg, n, 0.37f);
    float *gg = fetch(xg, n);
    cmp("scale", gg, g, n, 0);
    float *a = randv(n, 1), *xa = dev(a, n * 4);
    R->add(g, a, n);   /* y += x is exact elementwise: the same bits on every backend */
    XOP(add)(xg, xa, n);
    float *ga = fetch(xg, n);
    cmp("add", ga, g, n, 0);
    free(p), free(g), free(m), free(v), free(rp), free(rm), free(rv), free(gp), free(gm), free(gv), free(gg), free(ga);
    free(a);
    xfree(xa);
    xfree(xp), xfree(xg), xfree(xm), xfree(xv);
}

/* peak_bytes: -1 for a table in host memory (the process's resident set tells), else the most of its buffers held at
 * once, which a fresh buffer of 1 MiB held beside what is held now must raise to at least their sum. */
static void test_peak_bytes(void)
{
    int64_t before = XOP(peak_bytes)();
    if (X->host_memory) {
        tap_ok(before == -1, "peak_bytes: -1 in host memory (%lld)", (long long)before);
        return;
    }
    void *a = XOP(alloc)((size_t)1 << 20), *b = XOP(alloc)((size_t)1 << 20);
    int64_t mid = XOP(peak_bytes)();
    xfree(a);
    xfree(b);
    int64_t after = XOP(peak_bytes)();
    tap_ok(before >= 0 && mid >= before && mid >= (int64_t)2 << 20 && after == mid,
           "peak_bytes: %lld, then %lld with two 1 MiB buffers more, %lld after they are freed (a peak stays)",
           (long long)before, (long long)mid, (long long)after);
}


/* The attention cases, on the CUDA tables once per attention path (lib/model/cuda/attention.cu reads
 * SCP_CUDA_ATTN at each call). */
static void attention_cases_all_paths(void)
{
    if (strncmp(X->name, "cuda", 4) != 0) {
        attention_cases();
        return;
    }
    char list[128], *save = NULL;
    snprintf(list, sizeof list, "%s", attn_paths);
    for (char *path = strtok_r(list, ",", &save); path; path = strtok_r(NULL, ",", &save)) {
        attn_path = path;
        setenv("SCP_CUDA_ATTN", attn_path, 1);
        attention_cases();
    }
    unsetenv("SCP_CUDA_ATTN");
    attn_path = NULL;
}

/* Every case, X against R (set by main). */
static void run_cases(void)
{
    tap_diag("backend under test: %s (act_size %zu), reference: %s (act_size %zu)", X->name, X->act_size, R->name,
             R->act_size);
    test_peak_bytes();
    const int cuda = strncmp(X->name, "cuda", 4) == 0;
    if (bf && rbf)        /* the same roundings on both sides */
        tol_mm = TOL_OUT16, tol_mmw = TOL_W16, tol_ew = TOL_OUT16, tol_att = TOL_OUT16;
    else if (bf)          /* X's roundings against fp32 */
        tol_mm = TOL_ROUND16, tol_mmw = TOL_W16, tol_ew = TOL_ROUND16, tol_att = TOL_ROUND16;
    else                  /* fp32: bf16 only inside cuda-fp32's GEMMs */
        tol_mm = tol_mmw = cuda ? TOL_BF16 : TOL_F32, tol_ew = TOL_F32, tol_att = TOL_ATT;
    if (moe_gemm_only) {
        void test_moe_gemm_cases(void);
        test_moe_gemm_cases();
        return;
    }
    if (attention_only) {
        attention_cases_all_paths();
        return;
    }
    test_to_from_act(small ? 1001 : 100003);
    test_memory(small ? 1001 : 100003);
    test_matmul(67, 96, 80);
    if (small)
        test_matmul(64, 256, 384);
    else
        test_matmul(128, 1024, 3072);
    /* The memory-bound kernels take 16-byte (and 8-, 4-byte) vector accesses where rows, groups and pointers
     * allow, scalar ones elsewhere (lib/model/cuda/cuda_internal.h act_ldv): cases for each. */
    test_rmsnorm(37, 1, 96, 96);
    test_rmsnorm(37, 4, 16, 80);
    test_rmsnorm(29, 3, 10, 34);   /* scalar: C and ld not multiples of 4 */
    test_rmsnorm(23, 2, 12, 28);   /* 4-element vectors (8 bytes of bf16) */
    /* Qwen3's q-norm layout (G heads of 128 in rows of q|k|v), many chunks in the dw column sums; and a
     * hidden-state norm whose rows span several column blocks */
    test_rmsnorm(small ? 70 : 700, 16, 128, 4096);
    test_rmsnorm(small ? 40 : 300, 1, 1024, 1024);
    /* hidden-state norms in one pass on CUDA: 4 warps a block at Qwen3-4B's 2560, more rows than blocks; an
     * unaligned width (scalar accesses); and past the pass's shared memory (8192), the two-pass path */
    test_rmsnorm(small ? 600 : 1500, 1, 2560, 2560);
    test_rmsnorm(45, 1, 100, 102);
    test_rmsnorm(9, 1, 8192, 8192);
    test_rope(2, 13, 3, 16, 60);
    test_rope(1, 9, 2, 128, 256);
    test_rope(2, 5, 3, 6, 20);     /* odd half (3): scalar */
    /* the q|k|v layout (ld = (H + 2 KV) hd); Qwen3's heads of 128 (pairs of 2 per lane); an odd half (scalar);
     * over 1024 rows (the backward's blocks take several rows each) */
    test_qk_norm_rope(2, 7, 4, 2, 16, 128);
    test_qk_norm_rope(small ? 1 : 2, small ? 40 : 175, 16, 8, 128, 4096);
    test_qk_norm_rope(2, 5, 3, 1, 6, 30);
    test_qk_norm_rope(1, small ? 1100 : 2100, 2, 1, 16, 64);
    attention_cases_all_paths();
    if (scp_backend_has(X, SCP_BACKEND_CAP_DECODE)) {
        test_attention_decode(1, 4, 2, 16, 0);
        test_attention_decode(37, 4, 2, 16, 3);
        test_attention_decode(small ? 70 : 600, 8, 8, small ? 64 : 128, 0);
    }
    test_swiglu(33, 70);    /* scalar: I = 70 */
    test_swiglu(17, 264);   /* vectors of 8 (bf16) and 4 (fp32) */
    test_embedding(200, 24, 50);
    test_crossentropy(9, 1000, 4);
    test_crossentropy(3, 151936, 20);
    test_adamw_norm(small ? 100003 : 1000003);
    void test_moe_ops(void);   /* at the end of this file */
    test_moe_ops();
    void test_moe_grouped_ops(void);
    test_moe_grouped_ops();
}

/* The reference of a table: cpu-bf16 for the bf16 tables but itself (the same roundings at the same points),
 * cpu-ref for the others. */
static const scp_backend *reference_of(const scp_backend *x)
{
    return x->act_size == 2 && x != &scp_backend_cpu_bf16 ? &scp_backend_cpu_bf16 : &scp_backend_cpu_ref;
}

/* 1 when every entry of a is b's (the same functions). */
static int same_entries(const scp_backend *a, const scp_backend *b)
{
#define SCP_BACKEND_OP(cap, ret, op, params) if (a->op != b->op) return 0;
#include "model/backend_ops.def"
    return a->act_size == b->act_size;
}

/* Run x against its reference, then check that the cases called each entry x has. A table whose entries are
 * all those of a table run before it ("cpu-mirror": "cpu"'s, host_memory aside, which no entry reads) gets the
 * small cases: its kernels have been checked, and every entry still runs through its table. */
static void run_table(const scp_backend *x, const scp_backend *const *before, int n_before)
{
    X = x, R = reference_of(x), bf = x->act_size == 2, rbf = R->act_size == 2;
    memset(op_called, 0, sizeof op_called);
    const int was_small = small;
    for (int i = 0; i < n_before; i++)
        if (before[i] && same_entries(x, before[i])) {
            tap_diag("%s has the entries of %s: the small cases", x->name, before[i]->name);
            small = 1;
        }
    run_cases();
    small = was_small;
    char missed[512] = "";
    size_t n = 0;
    for (int i = 0; i < N_OPS; i++)
        if (!attention_only && !moe_gemm_only && scp_backend_has(X, op_cap[i]) && !op_called[i] && n < sizeof missed)
            n += (size_t)snprintf(missed + n, sizeof missed - n, " %s", op_name[i]);
    tap_ok(n == 0, "%s: the cases called every entry of the table (not called:%s)", X->name, n ? missed : " none");
}

/* The table of a name, and whether it can run here (why not, into why). The emulated CUDA tables
 * (tests/gpu/emulated.sh) are linked into this program, not into libscp: they are taken as they are. */
static const scp_backend *table_here(const char *name, char *why, size_t why_len)
{
#ifdef SCP_CUDA_EMU
    if (strncmp(name, "cuda", 4) == 0) {
        snprintf(why, why_len, "not a CUDA table");
        const scp_backend *t = scp_cuda_plugin_backend(name);
        return t && scp_backend_missing(t) == NULL ? t : NULL;
    }
#endif
    if (!scp_backend_usable(name, why, why_len)) return NULL;
    return scp_backend_find(name);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--devices") == 0) {
        printf("%d\n", scp_cuda_plugin_devices());   /* scripts ask this to decide whether a GPU is there */
        return 0;
    }
    const char *names[16];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--small") == 0)
            small = 1;
        else if (strcmp(argv[i], "--attention") == 0)
            attention_only = 1;
        else if (strcmp(argv[i], "--moe-gemm") == 0)
            moe_gemm_only = 1;
        else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc && n < 16)
            names[n++] = argv[++i];
        else if (strcmp(argv[i], "--attn-paths") == 0 && i + 1 < argc)
            attn_paths = argv[++i];
        else {
            fprintf(stderr, "usage: backend-ops [--backend NAME]... [--small] [--attention | --moe-gemm] "
                            "[--attn-paths P,...] | --devices\n");
            return 2;
        }
    }
#if defined(__SANITIZE_ADDRESS__)
    /* Under AddressSanitizer the full cases take minutes; the small ones still reach every entry and code path
     * (the emulator's run relies on the same), at sizes that keep the suite's sanitizer pass short. */
    small = 1;
#endif
    if (n == 0)   /* every registered backend */
        for (const char *r; n < 16 && (r = scp_backend_registered(n)); n++) names[n] = r;
    /* what runs here, and why the others do not */
    const scp_backend *table[16];
    char why[16][160];
    int runnable = 0;
    for (int i = 0; i < n; i++) {
        table[i] = table_here(names[i], why[i], sizeof why[i]);
        if (table[i] == &scp_backend_cpu_ref)
            table[i] = NULL, snprintf(why[i], sizeof why[i], "the reference of the others");
        runnable += table[i] != NULL;
    }
    if (!runnable) {
        printf("1..0 # SKIP %s: %s\n", names[0], why[0]);
        return 77;
    }
    for (int i = 0; i < n; i++) {
        if (!table[i]) {
            tap_skip("%s: %s", names[i], why[i]);
            continue;
        }
        if (strncmp(table[i]->name, "cuda", 4) == 0) {
            char desc[256];
            if (scp_cuda_plugin_describe(0, desc, sizeof desc) == 0) tap_diag("device: %s", desc);
        }
        run_table(table[i], table, i);
    }
    return tap_done();
}

/* ---- mixture of experts (lib/model/cuda/moe.cu): routing, its backward, the weighted combine and its backward ---- */
static void test_moe_case(int M, int E, int k, int norm, int D, int ties)
{
    char what[128];
    size_t ME = (size_t)M * E, Mk = (size_t)M * k, MD = (size_t)M * D, MkD = Mk * D;
    float *logits = randv(ME, 3);
    if (ties) /* three values only: ties everywhere, which must go to the lower index as on the CPU */
        for (size_t i = 0; i < ME; i++) logits[i] = floorf(logits[i]);
    float *rp = malloc(ME * 4), *rw = malloc(Mk * 4), *rl = malloc((size_t)M * 4), *rs = malloc((size_t)E * 4);
    int32_t *ri = malloc(Mk * 4);
    scp_act *rz = ract(logits, ME);
    R->moe_route(rp, ri, rw, rl, rs, rz, M, E, k, norm);
    scp_act *xz = xact(logits, ME);
    float *xp = poison(ME * 4), *xw = poison(Mk * 4), *xl = poison((size_t)M * 4), *xs = poison((size_t)E * 4);
    int32_t *xi = poison(Mk * 4);
    XOP(moe_route)(xp, xi, xw, xl, xs, xz, M, E, k, norm);
    float *gp = fetch(xp, ME), *gw = fetch(xw, Mk), *gl = fetch(xl, M), *gs = fetch(xs, E);
    int32_t *gi = malloc(Mk * 4);
    XOP(download)(gi, xi, Mk * 4);
    snprintf(what, sizeof what, "moe_route M=%d E=%d k=%d norm=%d: probs", M, E, k, norm);
    cmp(what, gp, rp, ME, TOL_F32);
    tap_ok(memcmp(gi, ri, Mk * 4) == 0, "moe_route M=%d E=%d k=%d: the same experts in the same order", M, E, k);
    snprintf(what, sizeof what, "moe_route M=%d E=%d k=%d: weights, lse, column sums", M, E, k);
    float *both = malloc((Mk + M + E) * 4), *rboth = malloc((Mk + M + E) * 4);
    memcpy(both, gw, Mk * 4), memcpy(both + Mk, gl, M * 4), memcpy(both + Mk + M, gs, E * 4);
    memcpy(rboth, rw, Mk * 4), memcpy(rboth + Mk, rl, M * 4), memcpy(rboth + Mk + M, rs, E * 4);
    cmp(what, both, rboth, Mk + M + E, TOL_F32);

    /* backward, from the reference's routing (the same on both sides) */
    float *dw = randv(Mk, 1), *dprob = randv(E, 0.1f);
    scp_act *rd = ract(NULL, ME);
    R->moe_route_bwd(rd, dw, rp, rl, ri, rw, dprob, 0.03f, M, E, k, norm);
    float *refd = rget(rd, ME);
    float *xdw = dev(dw, Mk * 4), *xdp = dev(dprob, (size_t)E * 4), *xrp = dev(rp, ME * 4), *xrl = dev(rl, (size_t)M * 4);
    float *xrw = dev(rw, Mk * 4);
    scp_act *xd = xpoison(ME);
    int32_t *xri = dev(ri, Mk * 4);
    XOP(moe_route_bwd)(xd, xdw, xrp, xrl, xri, xrw, xdp, 0.03f, M, E, k, norm);
    float *gd = xget(xd, ME);
    snprintf(what, sizeof what, "moe_route_bwd M=%d E=%d k=%d norm=%d (with load-balancing and z terms)", M, E, k, norm);
    cmp(what, gd, refd, ME, tol_ew);

    /* combine: pos a permutation of the M k assignments (as the driver's sort by expert makes) */
    int32_t *pos = malloc(Mk * 4);
    for (size_t a = 0; a < Mk; a++) pos[a] = (int32_t)a;
    for (size_t a = Mk - 1; a > 0; a--) {
        size_t b = (size_t)((frand() + 1) * 0.5f * (float)(a + 1)) % (a + 1);
        int32_t t = pos[a];
        pos[a] = pos[b], pos[b] = t;
    }
    float *y = randv(MkD, 1), *out0 = randv(MD, 1), *dout = randv(MD, 1), *rdwt = malloc(Mk * 4);
    scp_act *ry = ract(y, MkD), *ro = ract(NULL, MD), *ro1 = ract(out0, MD), *rdo = ract(dout, MD), *rdy = ract(NULL, MkD);
    R->moe_combine(ro, ry, NULL, pos, M, k, D, 0.0f);
    R->moe_combine(ro1, ry, rw, pos, M, k, D, 1.0f);
    R->moe_combine_bwd(rdy, rdwt, rdo, ry, rw, pos, M, k, D);
    float *refo = rget(ro, MD), *refo1 = rget(ro1, MD), *refdy = rget(rdy, MkD);
    int32_t *xpos = dev(pos, Mk * 4);
    scp_act *xy = xact(y, MkD), *xo = xpoison(MD), *xo1 = xact(out0, MD), *xdout = xact(dout, MD), *xdy = xpoison(MkD);
    float *xdwt = poison(Mk * 4);
    XOP(moe_combine)(xo, xy, NULL, xpos, M, k, D, 0.0f);
    XOP(moe_combine)(xo1, xy, xrw, xpos, M, k, D, 1.0f);
    XOP(moe_combine_bwd)(xdy, xdwt, xdout, xy, xrw, xpos, M, k, D);
    float *go = xget(xo, MD), *go1 = xget(xo1, MD), *gdy = xget(xdy, MkD), *gdwt = fetch(xdwt, Mk);
    snprintf(what, sizeof what, "moe_combine M=%d k=%d D=%d: unweighted, overwriting", M, k, D);
    cmp(what, go, refo, MD, tol_ew);
    snprintf(what, sizeof what, "moe_combine M=%d k=%d D=%d: weighted, added to the residual", M, k, D);
    cmp(what, go1, refo1, MD, tol_ew);
    snprintf(what, sizeof what, "moe_combine_bwd M=%d k=%d D=%d: dy", M, k, D);
    cmp(what, gdy, refdy, MkD, tol_ew);
    snprintf(what, sizeof what, "moe_combine_bwd M=%d k=%d D=%d: d weight", M, k, D);
    cmp(what, gdwt, rdwt, Mk, bf ? TOL_W16 : TOL_F32);
    /* twice: the same bits */
    XOP(moe_route)(xp, xi, xw, xl, xs, xz, M, E, k, norm);
    XOP(moe_route_bwd)(xd, xdw, xrp, xrl, xri, xrw, xdp, 0.03f, M, E, k, norm);
    XOP(moe_combine_bwd)(xdy, xdwt, xdout, xy, xrw, xpos, M, k, D);
    float *gp2 = fetch(xp, ME), *gd2 = xget(xd, ME), *gdwt2 = fetch(xdwt, Mk);
    tap_ok(memcmp(gp2, gp, ME * 4) == 0 && memcmp(gd2, gd, ME * 4) == 0 && memcmp(gdwt2, gdwt, Mk * 4) == 0,
           "moe ops M=%d E=%d k=%d: a second run gives the same bits", M, E, k);
    free(logits), free(rp), free(rw), free(rl), free(rs), free(ri), free(rz), free(gp), free(gw), free(gl), free(gs);
    free(gi), free(both), free(rboth), free(dw), free(dprob), free(rd), free(refd), free(gd), free(pos), free(y);
    free(out0), free(dout), free(rdwt), free(ry), free(ro), free(ro1), free(rdo), free(rdy), free(refo), free(refo1);
    free(refdy), free(go), free(go1), free(gdy), free(gdwt), free(gp2), free(gd2), free(gdwt2);
    xfree(xz), xfree(xp), xfree(xw), xfree(xl), xfree(xs), xfree(xi), xfree(xdw), xfree(xdp);
    xfree(xrp), xfree(xrl), xfree(xrw), xfree(xd), xfree(xri), xfree(xpos), xfree(xy), xfree(xo);
    xfree(xo1), xfree(xdout), xfree(xdy), xfree(xdwt);
}

void test_moe_ops(void)
{
    if (!scp_backend_has(X, SCP_BACKEND_CAP_MOE)) {
        tap_diag("backend %s has no MoE entries (SCP_BACKEND_CAP_MOE): their cases are skipped", X->name);
        return;
    }
    test_moe_case(45, 8, 2, 1, 24, 0);
    test_moe_case(37, 37, 3, 0, 40, 0);
    test_moe_case(9, 5, 5, 1, 33, 0);
    test_moe_case(20, 6, 3, 1, 8, 1);
    if (!small) test_moe_case(1000, 128, 8, 1, 512, 0);
}

/* ---- a layer's experts with the shapes in backend memory (lib/model/cuda/moe_gemm.cu) ---- */
/* The permutation of M k random assignments (two out of range, counted as expert 0), against a placement written
 * here another way: expert after expert, each scanning the assignments in order. skew: a third of the experts
 * drawn (the rest empty), half of the assignments on the last one, and a stretch of 3000 in a row on expert 7,
 * so that runs cross the device's pieces of the assignments. */
static void test_moe_permute(int M, int k, int E, int skew)
{
    const int N = M * k;
    int32_t *idx = malloc((size_t)N * 4 + 4), *off = calloc((size_t)E + 1, 4), *pos = malloc((size_t)N * 4 + 4);
    int32_t *tok = malloc((size_t)N * 4 + 4);
    for (int i = 0; i < N; i++) {
        idx[i] = (int32_t)((frand() + 1) * 0.5f * (float)E) % E;
        if (skew) idx[i] = frand() < 0.0f ? E - 1 : idx[i] / 3 * 3;
    }
    if (skew)
        for (int i = N / 4; i < N / 4 + 3000 && i < N; i++) idx[i] = 7;
    if (N > 3) idx[3] = E + 2;
    if (N > 4) idx[N - 2] = -5;
    for (int e = 0, p = 0; e < E; e++) {
        for (int i = 0; i < N; i++)
            if (idx[i] == e || (e == 0 && (idx[i] < 0 || idx[i] >= E))) pos[i] = p, tok[p] = i / k, p++;
        off[e + 1] = p;
    }
    int32_t *xidx = dev(idx, (size_t)N * 4), *xoff = poison(((size_t)E + 1) * 4), *xpos = poison((size_t)N * 4);
    int32_t *xtok = poison((size_t)N * 4);
    int32_t *goff = malloc(((size_t)E + 1) * 4), *gpos = malloc((size_t)N * 4 + 4), *gtok = malloc((size_t)N * 4 + 4);
    XOP(moe_permute)(xoff, xpos, xtok, xidx, M, k, E);
    XOP(download)(goff, xoff, ((size_t)E + 1) * 4);
    XOP(download)(gpos, xpos, (size_t)N * 4);
    XOP(download)(gtok, xtok, (size_t)N * 4);
    tap_ok(memcmp(goff, off, ((size_t)E + 1) * 4) == 0 && memcmp(gpos, pos, (size_t)N * 4) == 0 &&
               memcmp(gtok, tok, (size_t)N * 4) == 0,
           "moe_permute M=%d k=%d E=%d%s: the runs, places and token rows of a stable sort by expert", M, k, E,
           skew ? " (skewed, empty experts)" : "");
    free(idx), free(off), free(pos), free(tok), free(goff), free(gpos), free(gtok);
    xfree(xidx), xfree(xoff), xfree(xpos), xfree(xtok);
}

/* The layouts of test_moe_gemm's operands: the row strides and the weights' offsets in the table. */
enum moe_layout {
    MOE_ODD,       /* odd strides and offsets: no 16-byte aligned rows (on cuda: the WMMA kernels) */
    MOE_ALIGNED,   /* strides and offsets multiples of 8 elements (cuda's mma.sync kernels, K and N multiples of 8) */
    MOE_ODD_W      /* aligned rows, weights at odd offsets (cuda's mma.sync kernels, the weights loaded plainly) */
};

/* The grouped GEMMs over nb blocks of rows (counts n[b]; R rows in all, three of them past the blocks) and nw
 * weights laid out apart and out of order in one table, against the reference's matmul entries block by block.
 * Rows strided, beta 0 (into NaN) and 1. */
static void test_moe_gemm(int nb, int nw, const int *n, int K, int N, enum moe_layout layout)
{
    char what[200], shape[120];
    int32_t *off = malloc(((size_t)nb + 1) * 4);
    off[0] = 0;
    for (int b = 0; b < nb; b++) off[b + 1] = off[b] + n[b];
    const int pad = layout == MOE_ODD ? 3 : 8, wpad = layout == MOE_ALIGNED ? 8 : 7;
    const int rows = off[nb], Rt = rows + 3, ldi = K + pad, ldo = N + pad + 2 * (layout == MOE_ODD);
    const size_t wsz = (size_t)N * K + (size_t)wpad, nt = wsz * (size_t)nw + (size_t)wpad;
    static const char *const layout_name[] = {"odd strides", "aligned", "aligned rows, odd weight offsets"};
    snprintf(shape, sizeof shape, "nb=%d nw=%d rows=%d K=%d N=%d (%s)", nb, nw, rows, K, N, layout_name[layout]);
    int64_t *woff = malloc((size_t)nw * 8);
    for (int g = 0; g < nw; g++) woff[g] = wpad + (int64_t)((g * 3 + 1) % nw) * (int64_t)wsz;   /* apart, out of order */
    size_t ni = (size_t)Rt * ldi, no = (size_t)Rt * ldo;
    float *tab = randv(nt, 0.2f), *inp = randv(ni, 1), *out0 = randv(no, 1), *dout = randv(no, 1);
    float *din0 = randv(ni, 1), *dw0 = randv(nt, 1);
    /* the reference, block by block */
    scp_act *rtab = ract(tab, nt), *rin = ract(inp, ni), *rdout = ract(dout, no);
    scp_act *ro = ract(NULL, no), *ro1 = ract(out0, no), *rdi = ract(NULL, ni), *rdi1 = ract(din0, ni);
    float *rdw = malloc(nt * 4);
    memcpy(rdw, dw0, nt * 4);
    for (int b = 0; b < nb; b++) {
        if (!n[b]) continue;
        const scp_act *wb = RAT(rtab, (size_t)woff[b % nw]);
        R->matmul_fwd(RAT(ro, (size_t)off[b] * ldo), ldo, RAT(rin, (size_t)off[b] * ldi), ldi, wb, NULL, n[b], K, N, 0.0f);
        R->matmul_fwd(RAT(ro1, (size_t)off[b] * ldo), ldo, RAT(rin, (size_t)off[b] * ldi), ldi, wb, NULL, n[b], K, N, 1.0f);
        R->matmul_bwd_inp(RAT(rdi, (size_t)off[b] * ldi), ldi, RAT(rdout, (size_t)off[b] * ldo), ldo, wb, n[b], K, N, 0.0f);
        R->matmul_bwd_inp(RAT(rdi1, (size_t)off[b] * ldi), ldi, RAT(rdout, (size_t)off[b] * ldo), ldo, wb, n[b], K, N, 1.0f);
        R->matmul_bwd_w(rdw + woff[b % nw], NULL, RAT(rdout, (size_t)off[b] * ldo), ldo, RAT(rin, (size_t)off[b] * ldi),
                        ldi, n[b], K, N);
    }
    float *refo = rget(ro, no), *refo1 = rget(ro1, no), *refdi = rget(rdi, ni), *refdi1 = rget(rdi1, ni);
    /* the table under test */
    int32_t *xoff = dev(off, ((size_t)nb + 1) * 4);
    int64_t *xwoff = dev(woff, (size_t)nw * 8);
    scp_act *xtab = xact(tab, nt), *xin = xact(inp, ni), *xdout = xact(dout, no);
    scp_act *xo = xpoison(no), *xo1 = xact(out0, no), *xdi = xpoison(ni), *xdi1 = xact(din0, ni);
    float *xdw = dev(dw0, nt * 4);
    XOP(moe_gemm_fwd)(xo, ldo, xin, ldi, xtab, xwoff, nw, xoff, nb, Rt, K, N, 0.0f);
    XOP(moe_gemm_fwd)(xo1, ldo, xin, ldi, xtab, xwoff, nw, xoff, nb, Rt, K, N, 1.0f);
    XOP(moe_gemm_bwd_inp)(xdi, ldi, xdout, ldo, xtab, xwoff, nw, xoff, nb, Rt, K, N, 0.0f);
    XOP(moe_gemm_bwd_inp)(xdi1, ldi, xdout, ldo, xtab, xwoff, nw, xoff, nb, Rt, K, N, 1.0f);
    XOP(moe_gemm_bwd_w)(xdw, xdout, ldo, xin, ldi, xwoff, nw, xoff, nb, Rt, K, N);
    float *go = xget(xo, no), *go1 = xget(xo1, no), *gdi = xget(xdi, ni), *gdi1 = xget(xdi1, ni), *gdw = fetch(xdw, nt);
    snprintf(what, sizeof what, "moe_gemm_fwd %s: overwriting", shape);
    cmp_rows(what, go, refo, rows, N, ldo, tol_mm);
    snprintf(what, sizeof what, "moe_gemm_fwd %s: added (beta 1), rows past the blocks kept", shape);
    cmp_rows(what, go1, refo1, Rt, N, ldo, tol_mm);
    snprintf(what, sizeof what, "moe_gemm_bwd_inp %s: overwriting", shape);
    cmp_rows(what, gdi, refdi, rows, K, ldi, tol_mm);
    snprintf(what, sizeof what, "moe_gemm_bwd_inp %s: added (beta 1)", shape);
    cmp_rows(what, gdi1, refdi1, Rt, K, ldi, tol_mm);
    snprintf(what, sizeof what, "moe_gemm_bwd_w %s: added to dw, the gaps kept", shape);
    cmp(what, gdw, rdw, nt, tol_mmw);
    size_t left = 0;   /* the rows past the blocks, and the columns past N, still hold the poison */
    for (int r = rows; r < Rt; r++)
        for (int c = 0; c < N; c++) left += isnan(go[(size_t)r * ldo + c]);
    tap_ok(left == (size_t)3 * N, "moe_gemm_fwd %s: the rows past the blocks untouched (%zu of %d NaN)", shape, left,
           3 * N);
    /* twice: the same bits */
    XOP(moe_gemm_fwd)(xo, ldo, xin, ldi, xtab, xwoff, nw, xoff, nb, Rt, K, N, 0.0f);
    XOP(upload)(xdw, dw0, nt * 4);
    XOP(moe_gemm_bwd_w)(xdw, xdout, ldo, xin, ldi, xwoff, nw, xoff, nb, Rt, K, N);
    float *go2 = xget(xo, no), *gdw2 = fetch(xdw, nt);
    tap_ok(memcmp(go2, go, no * 4) == 0 && memcmp(gdw2, gdw, nt * 4) == 0,
           "moe_gemm %s: a second run gives the same bits", shape);
    free(off), free(woff), free(tab), free(inp), free(out0), free(dout), free(din0), free(dw0), free(rtab), free(rin);
    free(rdout), free(ro), free(ro1), free(rdi), free(rdi1), free(rdw), free(refo), free(refo1), free(refdi);
    free(refdi1), free(go), free(go1), free(gdi), free(gdi1), free(gdw), free(go2), free(gdw2);
    xfree(xoff), xfree(xwoff), xfree(xtab), xfree(xin), xfree(xdout), xfree(xo), xfree(xo1), xfree(xdi), xfree(xdi1);
    xfree(xdw);
}

/* The grouped GEMMs' cases (--moe-gemm alone) */
void test_moe_gemm_cases(void)
{
    if (!scp_backend_has(X, SCP_BACKEND_CAP_MOE_GROUPED)) {
        tap_diag("backend %s has no grouped expert entries (SCP_BACKEND_CAP_MOE_GROUPED): their cases are skipped",
                 X->name);
        return;
    }
    static const int n1[] = {0, 70, 3, 129, 1};
    test_moe_gemm(5, 5, n1, 40, 72, MOE_ODD);   /* a tile past K and N; empty and multi-tile blocks */
    static const int n2[] = {17, 0, 64, 2, 33, 0};
    test_moe_gemm(6, 3, n2, 33, 20, MOE_ODD);   /* (peer, expert) blocks: two blocks per weight */
    /* cuda's mma.sync kernels (128-row tiles, reduction slices of 32): blocks of 1, 127, 128, 129 and 255 rows and
     * an empty one, two blocks per weight, N past one column tile and K past one slice, neither a multiple of 128;
     * then weights the kernels cannot copy 16 bytes at a time, and more blocks (most of them empty) than the
     * offsets the kernels read at once */
    static const int n4[] = {1, 127, 0, 128, 129, 255};
    test_moe_gemm(6, 3, n4, 40, 136, MOE_ALIGNED);
    static const int n5[] = {33, 0, 70, 0, 0, 0, 0, 0, 5, 9};
    test_moe_gemm(10, 5, n5, 24, 48, MOE_ODD_W);
    if (!small) {
        static const int n3[] = {200, 5, 0, 64, 65, 130, 1, 90};
        test_moe_gemm(8, 8, n3, 256, 192, MOE_ALIGNED);
    }
}

void test_moe_grouped_ops(void)
{
    if (!scp_backend_has(X, SCP_BACKEND_CAP_MOE_GROUPED)) {
        tap_diag("backend %s has no grouped expert entries (SCP_BACKEND_CAP_MOE_GROUPED): their cases are skipped",
                 X->name);
        return;
    }
    test_moe_permute(45, 2, 8, 0);
    test_moe_permute(300, 3, 7, 0);
    test_moe_permute(5, 4, 37, 0);   /* fewer assignments than experts: empty runs */
    test_moe_permute(0, 8, 16, 0);   /* no tokens: every run empty */
    /* Qwen3-30B-A3B's layer (4096 tokens x 8 slots, 128 experts): the device's many pieces; then a count that
     * fills no piece evenly */
    test_moe_permute(4096, 8, 128, 0);
    test_moe_permute(4096, 8, 128, 1);
    test_moe_permute(2999, 7, 128, 1);
    test_moe_gemm_cases();
}
