// attention_gemm.cu: softmax attention as cuBLAS batched GEMMs on the tensor cores (bf16 operands, fp32
// accumulation and output), with the (T, T) scores of one batch element materialised in scratch and our own
// memory-bound row kernels for the softmax and its backward. Same contract as attention.cu (lib/model/backend.h):
// q (B, T, H, hd) and k, v (B, T, KV, hd) are rows ld_qkv apart, of the storage type T (fp32 or bf16); out, dout (B, T, H, hd) packed; dq, dk, dv
// overwritten in q, k, v's layout; GQA: query head h reads kv head h / g, g = H / KV; visibility
// model/attn_visibility.h's rule (causal or not, annealed, within documents), which the row kernels evaluate per
// element; `att` holds lse (B, H, T), the natural log-sum-exp of each query's scaled scores, +inf for a query
// that sees no key (its output and gradients are 0).
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
// GEMM and row reduction runs in a fixed order, no atomics: deterministic. The GEMMs write (C type T) directly
// into out / dq / dk / dv with their row strides (H hd, ld_qkv), so nothing is copied back; except dK and dV in
// bf16 storage with g > 1, which sum over the group in an fp32 scratch F (one b) and are rounded once at the end
// (a bf16 C would be rounded after every member).
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
//   F   (T, KV, hd) fp32: dK or dV of one b (bf16 storage, g > 1, backward only)           8 MiB
// The bf16 copies make every GEMM operand bf16 (cuBLAS's COMPUTE_32F with CUDA_R_16BF A and B, CUDA_R_32F C);
// in bf16 storage q, k, v and dout are bf16 already, and the GEMMs read them in place (no copies: qb .. ob are
// not allocated) and write bf16 C (CUDA_R_16BF A, B and C under COMPUTE_32F);
// S stays fp32 because the softmax exponentiates it (a bf16 score of 20 would be off by 0.06 in the exponent).
// scp_cuda_attn_gemm_fits caps the total at 2 GiB (and T at 6096, so that a row kernel's fp32 row copies, 2 T
// floats, and its 32 reduction floats stay within the 48 KiB of shared memory a launch gets without opting in).
//
// Row kernels (softmax forward, P recompute, dS): one block per (query, head) row of one b, grid (T, H), 64 to
// 256 threads, 4 consecutive elements per thread access where T % 4 == 0 (16-byte loads). Dynamic shared memory:
// the forward T floats (the row's scores, then exponentials), dS 2 T floats (P and dP): 8 and 16 KiB at T = 2048;
// the P recompute none. Block reductions: warp butterflies, then the warps' partials read in warp order.
#include "model/attn_visibility.h"
#include "model/cuda/attention_gemm.h"

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
    float *S, *F;
};

// Bytes of scratch for fp32 storage (packed bf16 copies) or bf16 storage (none; F where g > 1); the fp32 figure
// is never below the bf16 one (F, T KV hd floats, is at most the copies of k and v), so that
// scp_cuda_attn_gemm_fits, which asks for fp32, answers for both.
size_t scratch_bytes(const scp_attn_args *a, bool backward, bool bf16_storage, gemm_bufs *t)
{
    const size_t rows = (size_t)a->B * a->T, nq = rows * a->H * a->hd * 2, nk = rows * a->KV * a->hd * 2;
    const size_t tt = (size_t)a->H * a->T * a->T, c = bf16_storage ? 0 : 1;
    const size_t nf = bf16_storage && backward && a->H != a->KV ? (size_t)a->T * a->KV * a->hd * 4 : 0;
    size_t off[7], n = 0;
    const size_t sizes[7] = {c * nq, c * nk, c * nk, backward ? c * nq : 0, tt * 4, tt * 2, nf};
    for (int i = 0; i < 7; i++) off[i] = n, n += round256(sizes[i]);
    if (t) {
        char *p = (char *)scp_cuda_scratch(n);
        t->q = (bf16 *)(p + off[0]), t->k = (bf16 *)(p + off[1]), t->v = (bf16 *)(p + off[2]);
        t->o = backward ? (bf16 *)(p + off[3]) : nullptr;
        t->S = (float *)(p + off[4]), t->P = (bf16 *)(p + off[5]);
        t->F = nf ? (float *)(p + off[6]) : nullptr;
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

// V consecutive row elements per thread access: V = 4 (16-byte fp32 loads, 8-byte bf16 stores) where T % 4 == 0
// keeps every row start aligned, else V = 1.
struct alignas(8) bf16x4 {
    __nv_bfloat162 a, b;
};
template <int V> struct row_io;
template <> struct row_io<1> {
    static __device__ __forceinline__ void ld(const float *p, float *x) { x[0] = *p; }
    static __device__ __forceinline__ void ld(const bf16 *p, float *x) { x[0] = __bfloat162float(*p); }
    static __device__ __forceinline__ void st(float *p, const float *x) { *p = x[0]; }
    static __device__ __forceinline__ void st(bf16 *p, const float *x) { *p = __float2bfloat16(x[0]); }
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
};

// The keys a row kernel visits for query i: those before row_end(a, i) (i + 1 under plain causal attention),
// each of them visible unless the rule, evaluated pair by pair where scp_attn_per_pair, says otherwise.
__device__ __forceinline__ int row_end(const scp_attn_args &a, int i) { return scp_attn_past_only(&a) ? i + 1 : a.T; }
// vis[u] for the V keys j .. j + V - 1 of query i in batch element b (those past T: not visible).
template <int V>
__device__ __forceinline__ void row_vis(const scp_attn_args &a, bool ruled, int b, int i, int j, bool *vis)
{
#pragma unroll
    for (int u = 0; u < V; u++) vis[u] = j + u < a.T && (!ruled || scp_attn_visible_at(&a, b, i, j + u));
}

// One block per row (i = blockIdx.x, h = blockIdx.y) of batch element b. S, P (H, T, T); lse (H, T) (this b's
// slice of att); a: the call's arguments (the rule). Row-contiguous, coalesced accesses: thread t takes the
// row elements j = V (t + k blockDim.x) .. + V - 1 and caches them in shared memory (no sharing between threads).

// Forward: lse_i = log sum_j exp(S_ij) over the visible j, P_ij = exp(S_ij - max) / sum (0 where not visible).
template <int V>
__global__ void softmax_fwd_kernel(bf16 *P, float *lse, const float *S, scp_attn_args a, int b)
{
    extern __shared__ float smem[];  // (T) the row's visible scores, then their exponentials
    __shared__ float red[32];
    typedef row_io<V> io;
    const int T = a.T, i = blockIdx.x, h = blockIdx.y;
    const size_t row = (size_t)h * T + i;
    const float *s = S + row * T;
    const bool ruled = scp_attn_per_pair(&a);
    const int jend = row_end(a, i), step = blockDim.x * V;
    float mx = -INFINITY, x[V] = {};
    bool vis[V] = {};
    for (int j = threadIdx.x * V; j < jend; j += step) {
        io::ld(s + j, x);
        row_vis<V>(a, ruled, b, i, j, vis);
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
__global__ void probs_kernel(bf16 *P, const float *S, const float *lse, scp_attn_args a, int b)
{
    typedef row_io<V> io;
    const int T = a.T, i = blockIdx.x, h = blockIdx.y;
    const size_t row = (size_t)h * T + i;
    const float *s = S + row * T, L = lse[row];
    const bool ruled = scp_attn_per_pair(&a);
    const int jend = row_end(a, i);
    bf16 *p = P + row * T;
    float x[V] = {};
    bool vis[V] = {};
    for (int j = threadIdx.x * V; j < T; j += blockDim.x * V) {
        if (j < jend) {
            io::ld(s + j, x);
            row_vis<V>(a, ruled, b, i, j, vis);
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

// C_x = alpha op(A_x) op(B_x) + beta C_x, x = 0 .. count - 1, column-major; A, B bf16, C fp32 or bf16 (ct), fp32
// accumulation.
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const bf16 *A, int lda,
          long long sA, const bf16 *B, int ldb, long long sB, float beta, void *C, cudaDataType ct, int ldc,
          long long sC, int count)
{
    SCP_CUBLAS(cublasGemmStridedBatchedEx(scp_cuda_blas(), ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda, sA, B,
                                          CUDA_R_16BF, ldb, sB, &beta, C, ct, ldc, sC, count, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
}
template <typename T> cudaDataType c_type();
template <> cudaDataType c_type<float>() { return CUDA_R_32F; }
template <> cudaDataType c_type<bf16>() { return CUDA_R_16BF; }

// Per batch element b: the pieces of the plan at the top of the file.
struct shape {
    int T, H, KV, hd, g;
    long long tt;  // T T: one head's scores
};

// The GEMM operands: q, k, v (and dout in the backward) as bf16 with their row strides: the packed copies of t
// (fp32 storage) or the buffers themselves (bf16 storage).
struct operands {
    const bf16 *q, *k, *v, *o;
    int ldq, ldk, ldo;
};
template <typename T>
operands operands_of(const gemm_bufs &t, const T *q, const T *k, const T *v, const T *dout, const scp_attn_args *a)
{
    const size_t rows = (size_t)a->B * a->T, ld = (size_t)a->ld_qkv;
    const int qd = a->H * a->hd, kd = a->KV * a->hd;
    if (sizeof(T) == 2)
        return operands{(const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (const bf16 *)dout, a->ld_qkv, a->ld_qkv, qd};
    scp_cuda_pack_bf16<T>(t.q, q, rows, qd, ld);
    scp_cuda_pack_bf16<T>(t.k, k, rows, kd, ld);
    scp_cuda_pack_bf16<T>(t.v, v, rows, kd, ld);
    if (dout) scp_cuda_pack_bf16<T>(t.o, dout, rows, qd, (size_t)qd);
    return operands{t.q, t.k, t.v, t.o, qd, kd, qd};
}

// Sc (H, T, T) = alpha X Y^T per head, X = q or dout (head h; row stride ldx), Y = k or v (kv head h / g; ldy).
void scores(float *Sc, const bf16 *X, int ldx, const bf16 *Y, int ldy, float alpha, const shape &s)
{
    for (int j = 0; j < s.g; j++)
        gemm(CUBLAS_OP_T, CUBLAS_OP_N, s.T, s.T, s.hd, alpha, Y, ldy, s.hd, X + (size_t)j * s.hd, ldx,
             (long long)s.g * s.hd, 0.0f, Sc + (size_t)j * s.tt, CUDA_R_32F, s.T, s.g * s.tt, s.KV);
}

// out (T, H hd; ld ldo) per head h = Pm_h (T, T) Y (T, hd; ldy) of kv head h / g: O = P V, dQ = dS K.
template <typename T> void rows_times(T *out, int ldo, const bf16 *Pm, const bf16 *Y, int ldy, const shape &s)
{
    for (int j = 0; j < s.g; j++)
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, s.hd, s.T, s.T, 1.0f, Y, ldy, s.hd, Pm + (size_t)j * s.tt, s.T, s.g * s.tt,
             0.0f, out + (size_t)j * s.hd, c_type<T>(), ldo, (long long)s.g * s.hd, s.KV);
}

// dst (rows, cols; row stride ld) = src (rows, cols) packed fp32, rounded to T.
template <typename T> __global__ void store_rows_kernel(T *dst, size_t ld, const float *src, size_t rows, int cols)
{
    const size_t n = rows * (size_t)cols;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        act_st(dst + (e / (size_t)cols) * ld + e % (size_t)cols, src[e]);
}

// out (T, KV hd; ld ldo) per kv head = sum over its group members j in order of Pm_h^T (T, T) X_h (T, hd; ldx):
// dV = sum P^T dO, dK = sum dS^T Q. F: the fp32 scratch of a bf16 sum over g > 1 members (see the top).
template <typename T>
void cols_times(T *out, int ldo, const bf16 *Pm, const bf16 *X, int ldx, const shape &s, float *F)
{
    const bool direct = sizeof(T) == 4 || s.g == 1;
    const int ldc = direct ? ldo : s.KV * s.hd;
    for (int j = 0; j < s.g; j++) {
        void *C = direct ? (void *)out : (void *)F;
        gemm(CUBLAS_OP_N, CUBLAS_OP_T, s.hd, s.T, s.T, 1.0f, X + (size_t)j * s.hd, ldx, (long long)s.g * s.hd,
             Pm + (size_t)j * s.tt, s.T, s.g * s.tt, j ? 1.0f : 0.0f, C, direct ? c_type<T>() : CUDA_R_32F, ldc, s.hd,
             s.KV);
    }
    if (!direct) {
        const size_t n = (size_t)s.T * s.KV * s.hd;
        auto kern = store_rows_kernel<T>;
        kern<<<scp_cuda_blocks(n, 256), 256>>>(out, (size_t)ldo, F, (size_t)s.T, s.KV * s.hd);
        SCP_LAUNCHED();
    }
}

// The row kernels' vector width: 4 where every row of S and P starts 16 / 8-byte aligned.
bool rows_vec4(const scp_attn_args *a) { return a->T % 4 == 0; }

shape shape_of(const scp_attn_args *a)
{
    return shape{a->T, a->H, a->KV, a->hd, a->H / a->KV, (long long)a->T * a->T};
}

}  // namespace

bool scp_cuda_attn_gemm_fits(const scp_attn_args *a)
{
    return a->T <= TMAX && a->hd >= 1 && a->KV >= 1 && a->H % a->KV == 0 &&
           scratch_bytes(a, true, false, nullptr) <= BUDGET;
}

template <typename T>
void scp_cuda_attn_gemm_fwd(T *out, float *lse, const T *q, const T *k, const T *v, const scp_attn_args *a)
{
    if (a->B == 0 || a->T == 0) return;
    gemm_bufs t;
    scratch_bytes(a, false, sizeof(T) == 2, &t);
    const shape s = shape_of(a);
    const operands in = operands_of<T>(t, q, k, v, nullptr, a);
    const dim3 grid((unsigned)s.T, (unsigned)s.H);
    const int nt = row_threads(s.T);
    auto smax = rows_vec4(a) ? softmax_fwd_kernel<4> : softmax_fwd_kernel<1>;
    for (int b = 0; b < a->B; b++) {
        const size_t bt = (size_t)b * s.T;
        scores(t.S, in.q + bt * in.ldq, in.ldq, in.k + bt * in.ldk, in.ldk, a->scale, s);
        smax<<<grid, nt, (size_t)s.T * sizeof(float)>>>(t.P, lse + (size_t)b * s.H * s.T, t.S, *a, b);
        SCP_LAUNCHED();
        rows_times<T>(out + bt * s.H * s.hd, s.H * s.hd, t.P, in.v + bt * in.ldk, in.ldk, s);
    }
}

template <typename T>
void scp_cuda_attn_gemm_bwd(T *dq, T *dk, T *dv, const T *dout, const float *lse, const T *q, const T *k, const T *v,
                            const scp_attn_args *a)
{
    if (a->B == 0 || a->T == 0) return;
    gemm_bufs t;
    scratch_bytes(a, true, sizeof(T) == 2, &t);
    const shape s = shape_of(a);
    const size_t ld = (size_t)a->ld_qkv;
    const operands in = operands_of<T>(t, q, k, v, dout, a);
    const dim3 grid((unsigned)s.T, (unsigned)s.H);
    const int nt = row_threads(s.T);
    const bool v4 = rows_vec4(a);
    auto probs = v4 ? probs_kernel<4> : probs_kernel<1>;
    auto dsm = v4 ? dsoftmax_kernel<4> : dsoftmax_kernel<1>;
    for (int b = 0; b < a->B; b++) {
        const size_t bt = (size_t)b * s.T, go = bt * ld;
        const bf16 *qb = in.q + bt * in.ldq, *kb = in.k + bt * in.ldk, *vb = in.v + bt * in.ldk, *ob = in.o + bt * in.ldo;
        scores(t.S, qb, in.ldq, kb, in.ldk, a->scale, s);
        probs<<<grid, nt>>>(t.P, t.S, lse + (size_t)b * s.H * s.T, *a, b);
        SCP_LAUNCHED();
        cols_times<T>(dv + go, (int)ld, t.P, ob, in.ldo, s, t.F);  // dV = sum_j P^T dO
        scores(t.S, ob, in.ldo, vb, in.ldk, 1.0f, s);              // dP = dO V^T, over S
        dsm<<<grid, nt, (size_t)2 * s.T * sizeof(float)>>>(t.P, t.S, s.T, a->scale);  // dS over P
        SCP_LAUNCHED();
        rows_times<T>(dq + go, (int)ld, t.P, kb, in.ldk, s);       // dQ = dS K
        cols_times<T>(dk + go, (int)ld, t.P, qb, in.ldq, s, t.F);  // dK = sum_j dS^T Q
    }
}

template void scp_cuda_attn_gemm_fwd<float>(float *, float *, const float *, const float *, const float *,
                                            const scp_attn_args *);
template void scp_cuda_attn_gemm_fwd<bf16>(bf16 *, float *, const bf16 *, const bf16 *, const bf16 *,
                                           const scp_attn_args *);
template void scp_cuda_attn_gemm_bwd<float>(float *, float *, float *, const float *, const float *, const float *,
                                            const float *, const float *, const scp_attn_args *);
template void scp_cuda_attn_gemm_bwd<bf16>(bf16 *, bf16 *, bf16 *, const bf16 *, const float *, const bf16 *,
                                           const bf16 *, const bf16 *, const scp_attn_args *);
