/* attention.c: softmax attention with GQA under model/attn_visibility.h's rule (causal or not, annealed, within
 * documents), evaluated per (query, key) pair where it matters.
 * q is (B, T, H, hd), k and v are (B, T, KV, hd), all rows ld_qkv apart (one qkv buffer); out is (B, T, H, hd)
 * packed; att (B, H, T, T) keeps the softmax probabilities (0 where a key is hidden) for the backward, in each
 * block of queries' key range: with documents whose ids never decrease (model/attn_visibility.h
 * scp_attn_doc_spans) a block of queries works on the keys of its documents alone, and the rest of its rows of att
 * is neither written nor read.
 *
 * The fast version (attention_tiles.h, compiled for x86-64 and AVX2+FMA) works on one (b, kv head) tile per task
 * (OpenMP over tiles): it copies that head's K and V, transposed where the inner loop runs over keys, into
 * thread-local buffers, so that inner loops are contiguous and vectorised whatever the head size (hd = 8 in
 * stories260K), and takes queries four at a time so that each key load feeds four rows; the query heads that
 * share the kv head run in the same task, so dK and dV are summed without races or atomics (deterministic). */
#include <stdlib.h>

#include "model/attn_visibility.h"
#include "model/cpu/cpu.h"
#include "core/error.h"

#define SCP_KNAME(f) f##_base
#include "model/cpu/attention_tiles.h"
#undef SCP_KNAME
#ifdef SCP_KERNEL_AVX2
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SCP_KNAME(f) f##_avx2
#include "model/cpu/attention_tiles.h"
#undef SCP_KNAME
#pragma GCC pop_options
#else
#define fwd_tile_avx2 fwd_tile_base
#define bwd_tile_avx2 bwd_tile_base
#endif

void scp_cpu_attention_fwd(float *out, float *att, const float *q, const float *k, const float *v, const scp_attn_args *a)
{
    const int T = a->T, hd = a->hd, avx2 = scp_cpu_has_avx2();
#pragma omp parallel
    {
        float *buf = scp_xmalloc(((size_t)3 * hd * T + 2 * QB * hd + (1 + QB) * (size_t)T) * sizeof(float));
        float *kt = buf, *vr = kt + (size_t)hd * T, *vt = vr + (size_t)hd * T, *qs = vt + (size_t)hd * T, *o = qs + QB * hd;
        float *dummy = o + QB * hd, *vis = dummy + T;
        int32_t *span = scp_xmalloc((size_t)2 * T * sizeof *span);   /* lo, hi: the document spans */
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < a->B * a->KV; task++)
            (avx2 ? fwd_tile_avx2 : fwd_tile_base)(out, att, q, k, v, a, task / a->KV, task % a->KV, kt, vr, vt, qs, o,
                                                   dummy, vis, span, span + T);
        free(span);
        free(buf);
    }
}

void scp_cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                           const float *k, const float *v, const scp_attn_args *a)
{
    const int T = a->T, hd = a->hd, avx2 = scp_cpu_has_avx2();
#pragma omp parallel
    {
        float *buf = scp_xmalloc(((size_t)4 * hd * T + (size_t)2 * QB * T + (size_t)3 * QB * hd) * sizeof(float));
        float *kt = buf, *vt = kt + (size_t)hd * T, *dkt = vt + (size_t)hd * T, *dvt = dkt + (size_t)hd * T;
        float *ps = dvt + (size_t)hd * T, *ds = ps + (size_t)QB * T, *qb = ds + (size_t)QB * T, *gb = qb + QB * hd, *dqb = gb + QB * hd;
        int32_t *span = scp_xmalloc((size_t)2 * T * sizeof *span);   /* lo, hi: the document spans */
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < a->B * a->KV; task++)
            (avx2 ? bwd_tile_avx2 : bwd_tile_base)(dq, dk, dv, dout, att, q, k, v, a, task / a->KV, task % a->KV, kt, vt,
                                                   dkt, dvt, ps, ds, qb, gb, dqb, span, span + T);
        free(span);
        free(buf);
    }
}

/* One query row against n cached keys per head (model/backend.h attention_decode): scores, a max-shifted softmax and
 * the weighted sum of values, in fp32; heads split over threads. */
void scp_cpu_attention_decode(float *out, const float *q, const float *k, const float *v, int n, int H, int KV, int hd,
                              int ld, float scale)
{
    const int rep = H / KV;
#pragma omp parallel if ((size_t)n * H * hd > (1u << 16))
    {
        float *p = scp_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *p);
#pragma omp for schedule(static)
        for (int h = 0; h < H; h++) {
            const float *qh = q + (size_t)h * hd;
            const size_t kh = (size_t)(h / rep) * hd;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < n; j++) {
                p[j] = scp_dot(qh, k + (size_t)j * ld + kh, hd) * scale;
                mx = p[j] > mx ? p[j] : mx;
            }
            for (int j = 0; j < n; j++) sum += p[j] = scp_expf(p[j] - mx);
            float *o = out + (size_t)h * hd;
            for (int c = 0; c < hd; c++) o[c] = 0.0f;
            for (int j = 0; j < n; j++) {
                const float w = p[j] / sum, *vr = v + (size_t)j * ld + kh;
                for (int c = 0; c < hd; c++) o[c] += w * vr[c];
            }
        }
        free(p);
    }
}

/* ---- reference: one query at a time, in double, no tiles ------------------------------------------------ */
void scp_cpu_attention_fwd_ref(float *out, float *att, const float *q, const float *k, const float *v,
                               const scp_attn_args *a)
{
    const int B = a->B, T = a->T, H = a->H, hd = a->hd, ld = a->ld_qkv, rep = H / a->KV;
    double *s = scp_xmalloc((size_t)T * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const float *qr = q + (size_t)(b * T + i) * ld + (size_t)h * hd;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    s[j] = -INFINITY;
                    if (!scp_attn_visible_at(a, b, i, j)) continue;
                    const float *kr = k + (size_t)(b * T + j) * ld + (size_t)(h / rep) * hd;
                    double d = 0;
                    for (int c = 0; c < hd; c++) d += (double)qr[c] * kr[c];
                    s[j] = d * a->scale;
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < T; j++) sum += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
                float *p = att + (((size_t)b * H + h) * T + i) * T;
                for (int j = 0; j < T; j++) p[j] = s[j] == -INFINITY ? 0.0f : (float)(exp(s[j] - mx) / sum);
                for (int c = 0; c < hd; c++) {
                    double o = 0;
                    for (int j = 0; j < T; j++) o += (double)p[j] * v[(size_t)(b * T + j) * ld + (size_t)(h / rep) * hd + c];
                    out[(size_t)(b * T + i) * H * hd + (size_t)h * hd + c] = (float)o;
                }
            }
    free(s);
}

void scp_cpu_attention_bwd_ref(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                               const float *k, const float *v, const scp_attn_args *a)
{
    const int B = a->B, T = a->T, H = a->H, KV = a->KV, hd = a->hd, ld = a->ld_qkv, rep = H / KV;
    double *dp = scp_xmalloc((size_t)T * sizeof(double));
    for (int r = 0; r < B * T; r++)
        for (int c = 0; c < KV * hd; c++) dk[(size_t)r * ld + c] = 0.0f, dv[(size_t)r * ld + c] = 0.0f;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const float *p = att + (((size_t)b * H + h) * T + i) * T;
                const float *dor = dout + (size_t)(b * T + i) * H * hd + (size_t)h * hd;
                const float *qr = q + (size_t)(b * T + i) * ld + (size_t)h * hd;
                double dd = 0;
                for (int j = 0; j < T; j++) {
                    const float *vr = v + (size_t)(b * T + j) * ld + (size_t)(h / rep) * hd;
                    float *dvr = dv + (size_t)(b * T + j) * ld + (size_t)(h / rep) * hd;
                    double s = 0;
                    for (int c = 0; c < hd; c++) {
                        s += (double)dor[c] * vr[c];
                        dvr[c] += p[j] * dor[c];
                    }
                    dp[j] = s;
                    dd += p[j] * s;
                }
                for (int c = 0; c < hd; c++) dq[(size_t)(b * T + i) * ld + (size_t)h * hd + c] = 0.0f;
                for (int j = 0; j < T; j++) {
                    double g = p[j] * (dp[j] - dd) * a->scale;
                    const float *kr = k + (size_t)(b * T + j) * ld + (size_t)(h / rep) * hd;
                    float *dkr = dk + (size_t)(b * T + j) * ld + (size_t)(h / rep) * hd;
                    for (int c = 0; c < hd; c++) {
                        dq[(size_t)(b * T + i) * ld + (size_t)h * hd + c] += (float)(g * kr[c]);
                        dkr[c] += (float)(g * qr[c]);
                    }
                }
            }
    free(dp);
}
