/* model/backend_profile.c: the timing wrapper of model/backend_profile.h. */
#include "model/backend_profile.h"
#include "core/progress.h"

const char *const scp_prof_op_name[SCP_PROF_N] = {"matmul_fwd", "matmul_bwd", "rmsnorm", "rope", "qk_norm_rope",
                                                  "attention_fwd", "attention_bwd", "swiglu", "embedding",
                                                  "crossentropy", "adamw", "copy_zero", "moe", "other"};

static const scp_backend *base;
static void (*sync_fn)(void);
static double *op_t;
static scp_backend prof;

#define TIMED(op, call)                     \
    do {                                    \
        if (sync_fn) sync_fn();             \
        double t0_ = scp_now();             \
        call;                               \
        if (sync_fn) sync_fn();             \
        op_t[op] += scp_now() - t0_;        \
    } while (0)

static void p_zero(void *x, size_t n) { TIMED(SCP_PROF_COPY, base->zero_bytes(x, n)); }
static void p_copy(void *d, const void *s, size_t n) { TIMED(SCP_PROF_COPY, base->copy_bytes(d, s, n)); }
static void p_to_act(scp_act *d, const float *s, size_t n) { TIMED(SCP_PROF_COPY, base->to_act(d, s, n)); }
static void p_from_act(float *d, const scp_act *s, size_t n) { TIMED(SCP_PROF_COPY, base->from_act(d, s, n)); }
static void p_mm_fwd(scp_act *o, int ldo, const scp_act *i, int ldi, const scp_act *w, const scp_act *b, int M, int K, int N, float beta)
{ TIMED(SCP_PROF_MM_FWD, base->matmul_fwd(o, ldo, i, ldi, w, b, M, K, N, beta)); }
static void p_mm_bi(scp_act *d, int ldi, const scp_act *o, int ldo, const scp_act *w, int M, int K, int N, float beta)
{ TIMED(SCP_PROF_MM_BWD, base->matmul_bwd_inp(d, ldi, o, ldo, w, M, K, N, beta)); }
static void p_mm_bw(float *dw, float *db, const scp_act *o, int ldo, const scp_act *i, int ldi, int M, int K, int N)
{ TIMED(SCP_PROF_MM_BWD, base->matmul_bwd_w(dw, db, o, ldo, i, ldi, M, K, N)); }
static void p_rms_f(scp_act *o, float *r, const scp_act *x, const scp_act *w, int N, int G, int C, int ld, float eps)
{ TIMED(SCP_PROF_RMSNORM, base->rmsnorm_fwd(o, r, x, w, N, G, C, ld, eps)); }
static void p_rms_b(scp_act *dx, float *dw, const scp_act *d, const scp_act *x, const scp_act *w, const float *r, int N, int G,
                    int C, int ld, int acc)
{ TIMED(SCP_PROF_RMSNORM, base->rmsnorm_bwd(dx, dw, d, x, w, r, N, G, C, ld, acc)); }
static void p_rope(scp_act *x, const float *c, const float *s, int N, int T, int G, int hd, int ld, int inv)
{ TIMED(SCP_PROF_ROPE, base->rope(x, c, s, N, T, G, hd, ld, inv)); }
static void p_qkr_f(scp_act *qk, scp_act *raw, float *r, const scp_act *wq, const scp_act *wk, const float *c,
                    const float *s, int N, int T, int H, int KV, int hd, int ld, float eps)
{ TIMED(SCP_PROF_QK_NORM_ROPE, base->qk_norm_rope_fwd(qk, raw, r, wq, wk, c, s, N, T, H, KV, hd, ld, eps)); }
static void p_qkr_b(scp_act *d, float *dwq, float *dwk, const scp_act *raw, const scp_act *wq, const scp_act *wk,
                    const float *r, const float *c, const float *s, int N, int T, int H, int KV, int hd, int ld)
{ TIMED(SCP_PROF_QK_NORM_ROPE, base->qk_norm_rope_bwd(d, dwq, dwk, raw, wq, wk, r, c, s, N, T, H, KV, hd, ld)); }
static void p_att_f(scp_act *o, float *a, const scp_act *q, const scp_act *k, const scp_act *v, const scp_attn_args *aa)
{ TIMED(SCP_PROF_ATTN_FWD, base->attention_fwd(o, a, q, k, v, aa)); }
static void p_att_b(scp_act *dq, scp_act *dk, scp_act *dv, const scp_act *d, const scp_act *o, const float *a,
                    const scp_act *q, const scp_act *k, const scp_act *v, const scp_attn_args *aa)
{ TIMED(SCP_PROF_ATTN_BWD, base->attention_bwd(dq, dk, dv, d, o, a, q, k, v, aa)); }
static void p_att_d(scp_act *o, const scp_act *q, const scp_act *k, const scp_act *v, int n, int H, int KV, int hd,
                    int ld, float sc)
{ TIMED(SCP_PROF_ATTN_FWD, base->attention_decode(o, q, k, v, n, H, KV, hd, ld, sc)); }
static void p_sw_f(scp_act *h, const scp_act *g, int M, int n) { TIMED(SCP_PROF_SWIGLU, base->swiglu_fwd(h, g, M, n)); }
static void p_sw_b(scp_act *d, const scp_act *dh, const scp_act *g, int M, int n) { TIMED(SCP_PROF_SWIGLU, base->swiglu_bwd(d, dh, g, M, n)); }
static void p_emb_f(scp_act *o, const int32_t *ids, const scp_act *t, int M, int C)
{ TIMED(SCP_PROF_EMBED, base->embedding_fwd(o, ids, t, M, C)); }
static void p_emb_b(float *d, const scp_act *o, const int32_t *ids, int M, int C, int V)
{ TIMED(SCP_PROF_EMBED, base->embedding_bwd(d, o, ids, M, C, V)); }
static void p_gather(scp_act *d, const scp_act *s, const int32_t *r, int n, int C) { TIMED(SCP_PROF_OTHER, base->gather_rows(d, s, r, n, C)); }
static void p_scatter(scp_act *d, const scp_act *s, const int32_t *r, int n, int C) { TIMED(SCP_PROF_OTHER, base->scatter_rows(d, s, r, n, C)); }
static double p_ce(scp_act *l, float *nll, const int32_t *t, const float *w, int N, int V, int bw)
{
    double r;
    TIMED(SCP_PROF_CE, r = base->crossentropy(l, nll, t, w, N, V, bw));
    return r;
}
static void p_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
                    float wd, float c1, float c2)
{ TIMED(SCP_PROF_ADAMW, base->adamw(p, g, m, v, n, lr, b1, b2, eps, wd, c1, c2)); }

static void p_route(float *p, int32_t *idx, float *w, float *lse, float *ps, const scp_act *l, int M, int E, int k, int norm)
{ TIMED(SCP_PROF_MOE, base->moe_route(p, idx, w, lse, ps, l, M, E, k, norm)); }
static void p_route_b(scp_act *dl, const float *dw, const float *p, const float *lse, const int32_t *idx, const float *w,
                      const float *dp, float zs, int M, int E, int k, int norm)
{ TIMED(SCP_PROF_MOE, base->moe_route_bwd(dl, dw, p, lse, idx, w, dp, zs, M, E, k, norm)); }
static void p_comb(scp_act *o, const scp_act *y, const float *w, const int32_t *pos, int M, int k, int D, float beta)
{ TIMED(SCP_PROF_MOE, base->moe_combine(o, y, w, pos, M, k, D, beta)); }
static void p_comb_b(scp_act *dy, float *dw, const scp_act *d, const scp_act *y, const float *w, const int32_t *pos, int M,
                     int k, int D)
{ TIMED(SCP_PROF_MOE, base->moe_combine_bwd(dy, dw, d, y, w, pos, M, k, D)); }

/* The grouped expert GEMMs count as matmuls, the permutation with the other MoE entries. */
static void p_perm(int32_t *off, int32_t *pos, int32_t *tok, const int32_t *idx, int M, int k, int E)
{ TIMED(SCP_PROF_MOE, base->moe_permute(off, pos, tok, idx, M, k, E)); }
static void p_gmm_f(scp_act *o, int ldo, const scp_act *i, int ldi, const scp_act *w, const int64_t *wo, int nw,
                    const int32_t *off, int nb, int R, int K, int N, float beta)
{ TIMED(SCP_PROF_MM_FWD, base->moe_gemm_fwd(o, ldo, i, ldi, w, wo, nw, off, nb, R, K, N, beta)); }
static void p_gmm_bi(scp_act *d, int ldi, const scp_act *o, int ldo, const scp_act *w, const int64_t *wo, int nw,
                     const int32_t *off, int nb, int R, int K, int N, float beta)
{ TIMED(SCP_PROF_MM_BWD, base->moe_gemm_bwd_inp(d, ldi, o, ldo, w, wo, nw, off, nb, R, K, N, beta)); }
static void p_gmm_bw(float *dw, const scp_act *o, int ldo, const scp_act *i, int ldi, const int64_t *wo, int nw,
                     const int32_t *off, int nb, int R, int K, int N)
{ TIMED(SCP_PROF_MM_BWD, base->moe_gemm_bwd_w(dw, o, ldo, i, ldi, wo, nw, off, nb, R, K, N)); }

static float *sync_buf;   /* 4 bytes of base's memory */
static void sync_by_download(void)
{
    float x;
    base->download(&x, sync_buf, sizeof x);
}

const scp_backend *scp_backend_profiled_synced(const scp_backend *b, double *times)
{
    if (b->host_memory) return scp_backend_profiled(b, NULL, times);
    if (!sync_buf) sync_buf = b->alloc(sizeof *sync_buf);
    return scp_backend_profiled(b, sync_by_download, times);
}

const scp_backend *scp_backend_profiled(const scp_backend *b, void (*sync)(void), double *times)
{
    base = b;
    sync_fn = sync;
    op_t = times;
    prof = *b;
    prof.zero_bytes = p_zero, prof.copy_bytes = p_copy, prof.to_act = p_to_act, prof.from_act = p_from_act;
    prof.matmul_fwd = p_mm_fwd, prof.matmul_bwd_inp = p_mm_bi;
    prof.matmul_bwd_w = p_mm_bw, prof.rmsnorm_fwd = p_rms_f, prof.rmsnorm_bwd = p_rms_b, prof.rope = p_rope;
    prof.qk_norm_rope_fwd = p_qkr_f, prof.qk_norm_rope_bwd = p_qkr_b;
    prof.attention_fwd = p_att_f, prof.attention_bwd = p_att_b, prof.swiglu_fwd = p_sw_f, prof.swiglu_bwd = p_sw_b;
    prof.embedding_fwd = p_emb_f, prof.embedding_bwd = p_emb_b, prof.gather_rows = p_gather;
    prof.scatter_rows = p_scatter, prof.crossentropy = p_ce, prof.adamw = p_adamw;
    /* the entries of the capabilities b has (the others stay NULL, and the caps say so) */
    if (scp_backend_has(b, SCP_BACKEND_CAP_DECODE)) prof.attention_decode = p_att_d;
    if (scp_backend_has(b, SCP_BACKEND_CAP_MOE)) {
        prof.moe_route = p_route, prof.moe_route_bwd = p_route_b;
        prof.moe_combine = p_comb, prof.moe_combine_bwd = p_comb_b;
    }
    if (scp_backend_has(b, SCP_BACKEND_CAP_MOE_GROUPED)) {
        prof.moe_permute = p_perm, prof.moe_gemm_fwd = p_gmm_f;
        prof.moe_gemm_bwd_inp = p_gmm_bi, prof.moe_gemm_bwd_w = p_gmm_bw;
    }
    return &prof;
}
