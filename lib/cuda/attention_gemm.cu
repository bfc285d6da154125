// attention_gemm.cu: softmax attention as cuBLAS batched GEMMs on the tensor cores (bf16 operands, fp32
// accumulation and output), with the (T, T) scores of one batch element materialised in scratch and our own
// memory-bound row kernels for the softmax and its backward. Same contract as attention.cu (lib/backend.h):
// q (B, T, H, hd) and k, v (B, T, KV, hd) are fp32 rows ld_qkv apart; out, dout (B, T, H, hd) packed; dq, dk, dv
// overwritten in q, k, v's layout; GQA: query head h reads kv head h / g, g = H / KV; visibility causal (j <= i)
// and/or the uint8 (B, T, T) mask (1 = visible); `att` holds lse (B, H, T), the natural log-sum-exp of each
// query's scaled scores, +inf for a query that sees no key (its output and gradients are 0).
//
// Why: at the benchmark's shape (T = 2048, hd = 128) cuBLAS runs these GEMMs near the tensor cores' peak, far
// above the hand-written flash kernels (attention_tc.cu); the price is memory traffic over the (H, T, T) score
// and probability buffers, which an H100/H200 streams at 3-4 TB/s. Where the scratch would not fit (long T),
// attention.cu keeps the flash kernels.
//
// Plan, per batch element b (scores of head h at S + h T T; for each group member j in 0 .. g - 1 the KV heads
// h = kvh g + j, kvh = 0 .. KV - 1, are one strided batch of KV GEMMs: q of head kvh g + j starts at column
// (kvh g + j) hd, so batch items are g hd apart; k, v of kvh at column kvh hd, hd apart):
//   forward   S = scale Q K^T (fp32) | row softmax: lse, P (bf16) | O = P V (fp32 straight into out)
//   backward  S = scale Q K^T | P = exp(S - lse) (bf16) | dV = sum_j P^T dO | dP = dO V^T (fp32, over S) |
//             D_i = sum_k P_ik dP_ik, dS = scale P (dP - D) (bf16, over P) | dQ = dS K | dK = sum_j dS^T Q
// dK and dV of a kv head sum over its group members in the fixed order j = 0 .. g - 1 (beta 0, then 1); every
// GEMM and row reduction runs in a fixed order, no atomics: deterministic. The GEMMs write fp32 directly into
// out / dq / dk / dv with their row strides (H hd, ld_qkv), so nothing is copied back.
//
// Row-major to column-major: a row-major (r, c) matrix with row stride ld is, to cuBLAS, the column-major
// (c, r) matrix with the same ld. So row-major S (Tq, Tk) = Q K^T is column-major S^T = K Q^T: m = n = T,
// k = hd, A = K (op T), B = Q (op N); O (Tq, hd) = P V is O^T = V^T P^T: A = V (op N), B = P (op N); dV (Tk,
// hd) = P^T dO is dV^T = dO^T P: A = dO (op N), B = P (op T); likewise dP with (dO, V) for (Q, K), dQ with (K,
// dS) for (V, P), dK with (Q, dS) for (dO, P).
//
// Scratch (scp_cuda_scratch, 256-byte aligned pieces; bytes at B = 4, T = 2048, H = 16, KV = 8, hd = 128):
//   qb  (B, T, H, hd)  bf16 packed copy of q                    32 MiB
//   kb, vb (B, T, KV, hd) bf16 packed copies of k, v           2 x 16 MiB
//   ob  (B, T, H, hd)  bf16 copy of dout (backward only)        32 MiB
//   S   (H, T, T) fp32: the scaled scores of one b, in the backward then dP          256 MiB
//   P   (H, T, T) bf16: the probabilities of one b, in the backward then dS          128 MiB
// The bf16 copies make every GEMM operand bf16 (cuBLAS's COMPUTE_32F with CUDA_R_16BF A and B, CUDA_R_32F C);
// S stays fp32 because the softmax exponentiates it (a bf16 score of 20 would be off by 0.06 in the exponent).
// scp_cuda_attn_gemm_fits caps the total at 2 GiB (and T at 6096, so that a row kernel's fp32 row copies, 2 T
// floats, and its 32 reduction floats stay within the 48 KiB of shared memory a launch gets without opting in).
//
// Row kernels (softmax forward, P recompute, dS): one block per (query, head) row of one b, grid (T, H), 64 to
// 256 threads, 4 consecutive elements per thread access where T % 4 == 0 (16-byte loads). Dynamic shared memory:
// the forward T floats (the row's scores, then exponentials), dS 2 T floats (P and dP): 8 and 16 KiB at T = 2048;
// the P recompute none. Block reductions: warp butterflies, then the warps' partials read in warp order.
#include "attention_gemm.h"

#include <cmath>
#include <cuda_bf16.h>

typedef __nv_bfloat16 bf16;

namespace {

constexpr size_t BUDGET = (size_t)2 << 30;  // bytes of scratch this path may take
constexpr int TMAX = 6096;                  // longest T: the row kernels keep 2 T floats in shared memory
// ... which with the 32 floats of a block reduction must stay within the 48 KiB a launch gets without opting in
static_assert(2 * TMAX * 4 + 32 * 4 <= 48 * 1024, "the dS kernel's shared memory would need an opt-in");

size_t round256(size_t n) { return (n + 255) / 256 * 256; }

struct gemm_bufs {
    bf16 *q, *k, *v, *o, *P;
    float *S;
};

size_t scratch_bytes(const scp_attn_args *a, bool backward, gemm_bufs *t)
{
    const size_t rows = (size_t)a->B * a->T, nq = rows * a->H * a->hd * 2, nk = rows * a->KV * a->hd * 2;
    const size_t tt = (size_t)a->H * a->T * a->T;
    size_t off[6], n = 0;
    const size_t sizes[6] = {nq, nk, nk, backward ? nq : 0, tt * 4, tt * 2};
    for (int i = 0; i < 6; i++) off[i] = n, n += round256(sizes[i]);
    if (t) {
        char *p = (char *)scp_cuda_scratch(n);
        t->q = (bf16 *)(p + off[0]), t->k = (bf16 *)(p + off[1]), t->v = (bf16 *)(p + off[2]);
        t->o = backward ? (bf16 *)(p + off[3]) : nullptr;
        t->S = (float *)(p + off[4]), t->P = (bf16 *)(p + off[5]);
    }
    return n;
}

// Block-wide max / sum: warp butterflies, then every thread reads the warps' partials in warp order (fixed
// order, the same result on every thread). red: 32 floats of shared memory; the first barrier frees it from the
// previous call.
__device__ __forceinline__ float block_reduce(float x, bool is_max, float *red)
{
    x = is_max ? scp_warp_max(x) : scp_warp_sum(x);
    const int warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[warp] = x;
    __syncthreads();
    float r = red[0];
    for (int w = 1; w < nw; w++) r = is_max ? fmaxf(r, red[w]) : r + red[w];
    return r;
}

// V consecutive row elements per thread access: V = 4 (16-byte fp32 loads, 8-byte bf16 stores, 4-byte mask loads)
// where T % 4 == 0 keeps every row start aligned, else V = 1.
struct alignas(8) bf16x4 {
    __nv_bfloat162 a, b;
};
template <int V> struct row_io;
template <> struct row_io<1> {
    static __device__ __forceinline__ void ld(const float *p, float *x) { x[0] = *p; }
    static __device__ __forceinline__ void ld(const bf16 *p, float *x) { x[0] = __bfloat162float(*p); }
    static __device__ __forceinline__ void st(float *p, const float *x) { *p = x[0]; }
    static __device__ __forceinline__ void st(bf16 *p, const float *x) { *p = __float2bfloat16(x[0]); }
    static __device__ __forceinline__ void vis(const uint8_t *m, bool *v) { v[0] = !m || *m; }
};
template <> struct row_io<4> {
    static __device__ __forceinline__ void ld(const float *p, float *x)
    {
        const float4 f = *(const float4 *)p;
        x[0] = f.x, x[1] = f.y, x[2] = f.z, x[3] = f.w;
    }
    static __device__ __forceinline__ void ld(const bf16 *p, float *x)
    {
        const bf16x4 h = *(const bf16x4 *)p;
        x[0] = __bfloat162float(h.a.x), x[1] = __bfloat162float(h.a.y);
        x[2] = __bfloat162float(h.b.x), x[3] = __bfloat162float(h.b.y);
    }
    static __device__ __forceinline__ void st(float *p, const float *x) { *(float4 *)p = make_float4(x[0], x[1], x[2], x[3]); }
    static __device__ __forceinline__ void st(bf16 *p, const float *x)
    {
        *(bf16x4 *)p = bf16x4{__floats2bfloat162_rn(x[0], x[1]), __floats2bfloat162_rn(x[2], x[3])};
    }
    static __device__ __forceinline__ void vis(const uint8_t *m, bool *v)
    {
        const uint32_t w = m ? *(const uint32_t *)m : 0x01010101u;
        for (int u = 0; u < 4; u++) v[u] = (w >> (8 * u)) & 0xffu;
    }
};

// One block per row (i = blockIdx.x, h = blockIdx.y) of one batch element. S, P (H, T, T); lse (H, T) (this b's
// slice of att); mask (T, T) (this b's slice) or null. Row-contiguous, coalesced accesses: thread t takes the
// row elements j = V (t + k blockDim.x) .. + V - 1 and caches them in shared memory (no sharing between threads).

// Forward: lse_i = log sum_j exp(S_ij) over the visible j, P_ij = exp(S_ij - max) / sum (0 where not visible).
template <int V>
__global__ void softmax_fwd_kernel(bf16 *P, float *lse, const float *S, const uint8_t *mask, int T, int causal)
{
    extern __shared__ float smem[];  // (T) the row's visible scores, then their exponentials
    __shared__ float red[32];
    typedef row_io<V> io;
    const int i = blockIdx.x, h = blockIdx.y;
    const size_t row = (size_t)h * T + i;
    const float *s = S + row * T;
    const uint8_t *m = mask ? mask + (size_t)i * T : nullptr;
    const int jend = causal ? i + 1 : T, step = blockDim.x * V;
    float mx = -INFINITY, x[V] = {};
    bool vis[V] = {};
    for (int j = threadIdx.x * V; j < jend; j += step) {
        io::ld(s + j, x);
        io::vis(m ? m + j : nullptr, vis);
#pragma unroll
        for (int u = 0; u < V; u++) {
            x[u] = vis[u] && j + u < jend ? x[u] : -INFINITY;
            mx = fmaxf(mx, x[u]);
        }
        io::st(smem + j, x);
    }
    mx = block_reduce(mx, true, red);
    float sum = 0.0f;
    if (mx != -INFINITY)  // block-uniform
        for (int j = threadIdx.x * V; j < jend; j += step) {
            io::ld(smem + j, x);
#pragma unroll
            for (int u = 0; u < V; u++) {
                x[u] = expf(x[u] - mx);  // exp(-inf) = 0 where not visible
                sum += x[u];
            }
            io::st(smem + j, x);
        }
    sum = block_reduce(sum, false, red);
    // sum = 0: no visible key (smem holds -inf, not exponentials): a row of zeros, lse = +inf
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int jvis = sum > 0.0f ? jend : 0;
    bf16 *p = P + row * T;
    for (int j = threadIdx.x * V; j < T; j += step) {
        if (j < jvis) io::ld(smem + j, x);  // a group that starts before jend was written whole
#pragma unroll
        for (int u = 0; u < V; u++) x[u] = j < jvis ? x[u] * inv : 0.0f;
        io::st(p + j, x);
    }
    if (threadIdx.x == 0) lse[row] = sum > 0.0f ? mx + logf(sum) : INFINITY;
}

// Backward, step 1: P_ij = exp(S_ij - lse_i) where visible, else 0 (lse_i = +inf gives 0 too).
template <int V>
__global__ void probs_kernel(bf16 *P, const float *S, const float *lse, const uint8_t *mask, int T, int causal)
{
    typedef row_io<V> io;
    const int i = blockIdx.x, h = blockIdx.y;
    const size_t row = (size_t)h * T + i;
    const float *s = S + row * T, L = lse[row];
    const uint8_t *m = mask ? mask + (size_t)i * T : nullptr;
    const int jend = causal ? i + 1 : T;
    bf16 *p = P + row * T;
    float x[V] = {};
    bool vis[V] = {};
    for (int j = threadIdx.x * V; j < T; j += blockDim.x * V) {
        if (j < jend) {
            io::ld(s + j, x);
            io::vis(m ? m + j : nullptr, vis);
        }
#pragma unroll
        for (int u = 0; u < V; u++) x[u] = j + u < jend && vis[u] ? expf(x[u] - L) : 0.0f;
        io::st(p + j, x);
    }
}

// Backward, step 2: D_i = sum_j P_ij dP_ij, then dS_ij = scale P_ij (dP_ij - D_i), written over P (bf16).
// dP (H, T, T) fp32. Not-visible entries have P = 0, hence dS = 0.
template <int V>
__global__ void dsoftmax_kernel(bf16 *P, const float *dP, int T, float scale)
{
    extern __shared__ float smem[];  // (2, T): the row of P (as fp32), the row of dP
    __shared__ float red[32];
    typedef row_io<V> io;
    const size_t row = (size_t)blockIdx.y * T + blockIdx.x;
    bf16 *p = P + row * T;
    const float *dp = dP + row * T;
    float *ps = smem, *ds = smem + T, D = 0.0f, x[V], y[V];
    for (int j = threadIdx.x * V; j < T; j += blockDim.x * V) {
        io::ld(p + j, x);
        io::ld(dp + j, y);
#pragma unroll
        for (int u = 0; u < V; u++) D += x[u] * y[u];
        io::st(ps + j, x);
        io::st(ds + j, y);
    }
    D = block_reduce(D, false, red);
    for (int j = threadIdx.x * V; j < T; j += blockDim.x * V) {
        io::ld(ps + j, x);
        io::ld(ds + j, y);
#pragma unroll
        for (int u = 0; u < V; u++) x[u] = scale * x[u] * (y[u] - D);
        io::st(p + j, x);
    }
}

// Threads per row block: about 8 elements each at V = 4 (T = 2048: 64 .. 256 threads).
int row_threads(int T) { return T >= 2048 ? 256 : T >= 1024 ? 128 : 64; }

// C_x = alpha op(A_x) op(B_x) + beta C_x, x = 0 .. count - 1, column-major; A, B bf16, C fp32, fp32 accumulation.
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const bf16 *A, int lda,
          long long sA, const bf16 *B, int ldb, long long sB, float beta, float *C, int ldc, long long sC, int count)
{
    SCP_CUBLAS(cublasGemmStridedBatchedEx(scp_cuda_blas(), ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda, sA, B,
                                          CUDA_R_16BF, ldb, sB, &beta, C, CUDA_R_32F, ldc, sC, count,
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// Per batch element b, with the bf16 copies of t: the pieces of the plan at the top of the file.
struct shape {
    int T, H, KV, hd, g, ldq, ldk;  // ldq = H hd, ldk = KV hd: the packed bf16 row strides
    long long tt;                   // T T: one head's scores
};

// Sc (H, T, T) = scale X Y^T per head, X = q or dout (head h), Y = k or v (kv head h / g).
void scores(float *Sc, const bf16 *X, const bf16 *Y, float alpha, const shape &s)
{
    for (int j = 0; j < s.g; j++)
        gemm(CUBLAS_OP_T, CUBLAS_OP_N, s.T, s.T, s.hd, alpha, Y, s.ldk, s.hd, X + (size_t)j * s.hd, s.ldq,
             (long long)s.g * s.hd, 0.0f, Sc + (size_t)j * s.tt, s.T, s.g * s.tt, s.KV);
}

// out (T, H hd; ld ldo) per head h = Pm_h (T, T) Y (T, hd) of kv head h / g: O = P V, dQ = dS K.
void rows_times(float *out, int ldo, const bf16 *Pm, const bf16 *Y, const shape &s)
{
    for (int j = 0; j < s.g; j++)
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, s.hd, s.T, s.T, 1.0f, Y, s.ldk, s.hd, Pm + (size_t)j * s.tt, s.T,
             s.g * s.tt, 0.0f, out + (size_t)j * s.hd, ldo, (long long)s.g * s.hd, s.KV);
}

// out (T, KV hd; ld ldo) per kv head = sum over its group members j in order of Pm_h^T (T, T) X_h (T, hd):
// dV = sum P^T dO, dK = sum dS^T Q.
void cols_times(float *out, int ldo, const bf16 *Pm, const bf16 *X, const shape &s)
{
    for (int j = 0; j < s.g; j++)
        gemm(CUBLAS_OP_N, CUBLAS_OP_T, s.hd, s.T, s.T, 1.0f, X + (size_t)j * s.hd, s.ldq, (long long)s.g * s.hd,
             Pm + (size_t)j * s.tt, s.T, s.g * s.tt, j ? 1.0f : 0.0f, out, ldo, s.hd, s.KV);
}

// The row kernels' vector width: 4 where every row of S, P and the mask starts 16 / 8 / 4-byte aligned.
bool rows_vec4(const scp_attn_args *a) { return a->T % 4 == 0 && (uintptr_t)a->mask % 4 == 0; }

shape shape_of(const scp_attn_args *a)
{
    return shape{a->T, a->H, a->KV, a->hd, a->H / a->KV, a->H * a->hd, a->KV * a->hd, (long long)a->T * a->T};
}

}  // namespace

bool scp_cuda_attn_gemm_fits(const scp_attn_args *a)
{
    return a->T <= TMAX && a->hd >= 1 && a->KV >= 1 && a->H % a->KV == 0 && scratch_bytes(a, true, nullptr) <= BUDGET;
}

void scp_cuda_attn_gemm_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const scp_attn_args *a)
{
    if (a->B == 0 || a->T == 0) return;
    gemm_bufs t;
    scratch_bytes(a, false, &t);
    const shape s = shape_of(a);
    const size_t rows = (size_t)a->B * a->T, ld = (size_t)a->ld_qkv;
    scp_cuda_pack_bf16(t.q, q, rows, s.ldq, ld);
    scp_cuda_pack_bf16(t.k, k, rows, s.ldk, ld);
    scp_cuda_pack_bf16(t.v, v, rows, s.ldk, ld);
    const dim3 grid((unsigned)s.T, (unsigned)s.H);
    const int nt = row_threads(s.T);
    auto smax = rows_vec4(a) ? softmax_fwd_kernel<4> : softmax_fwd_kernel<1>;
    for (int b = 0; b < a->B; b++) {
        const size_t qo = (size_t)b * s.T * s.ldq, ko = (size_t)b * s.T * s.ldk;
        scores(t.S, t.q + qo, t.k + ko, a->scale, s);
        smax<<<grid, nt, (size_t)s.T * sizeof(float)>>>(t.P, lse + (size_t)b * s.H * s.T, t.S,
                                                        a->mask ? a->mask + (size_t)b * s.T * s.T : nullptr, s.T,
                                                        a->causal);
        SCP_LAUNCHED();
        rows_times(out + qo, s.ldq, t.P, t.v + ko, s);
    }
}

void scp_cuda_attn_gemm_bwd(float *dq, float *dk, float *dv, const float *dout, const float *lse, const float *q,
                            const float *k, const float *v, const scp_attn_args *a)
{
    if (a->B == 0 || a->T == 0) return;
    gemm_bufs t;
    scratch_bytes(a, true, &t);
    const shape s = shape_of(a);
    const size_t rows = (size_t)a->B * a->T, ld = (size_t)a->ld_qkv;
    scp_cuda_pack_bf16(t.q, q, rows, s.ldq, ld);
    scp_cuda_pack_bf16(t.k, k, rows, s.ldk, ld);
    scp_cuda_pack_bf16(t.v, v, rows, s.ldk, ld);
    scp_cuda_pack_bf16(t.o, dout, rows, s.ldq, (size_t)s.ldq);
    const dim3 grid((unsigned)s.T, (unsigned)s.H);
    const int nt = row_threads(s.T);
    const bool v4 = rows_vec4(a);
    auto probs = v4 ? probs_kernel<4> : probs_kernel<1>;
    auto dsm = v4 ? dsoftmax_kernel<4> : dsoftmax_kernel<1>;
    for (int b = 0; b < a->B; b++) {
        const size_t qo = (size_t)b * s.T * s.ldq, ko = (size_t)b * s.T * s.ldk, go = (size_t)b * s.T * ld;
        scores(t.S, t.q + qo, t.k + ko, a->scale, s);
        probs<<<grid, nt>>>(t.P, t.S, lse + (size_t)b * s.H * s.T, a->mask ? a->mask + (size_t)b * s.T * s.T : nullptr,
                            s.T, a->causal);
        SCP_LAUNCHED();
        cols_times(dv + go, (int)ld, t.P, t.o + qo, s);  // dV = sum_j P^T dO
        scores(t.S, t.o + qo, t.v + ko, 1.0f, s);        // dP = dO V^T, over S
        dsm<<<grid, nt, (size_t)2 * s.T * sizeof(float)>>>(t.P, t.S, s.T, a->scale);  // dS over P
        SCP_LAUNCHED();
        rows_times(dq + go, (int)ld, t.P, t.k + ko, s);  // dQ = dS K
        cols_times(dk + go, (int)ld, t.P, t.q + qo, s);  // dK = sum_j dS^T Q
    }
}
