// attention.cu: fused (flash-style) softmax attention, forward and backward, in fp32 with online softmax: the
// (T, T) score matrix is never stored. GQA (query head h reads kv head h / (H / KV)); visibility is
// model/attn_visibility.h's rule (causal or not, annealed, within documents), evaluated per (query, key) pair in
// the kernels, whose key loops stop at the diagonal where it is plain causal. Head sizes that are multiples of
// 16 up to 128 go to the tensor-core kernels of attention_tc.cu (bf16 operands, fp32 accumulation and
// statistics, the same contract); the fp32 kernels here serve every other head size.
//
// Layouts (lib/model/backend.h): q (B, T, H, hd) and k, v (B, T, KV, hd) are rows ld_qkv apart; out and dout are
// (B, T, H, hd) packed; dq, dk, dv have q, k, v's layout. Their elements are T (float or bf16 storage,
// cuda_internal.h): the kernels here widen them into fp32 shared memory and round what they write. `att` is backend-private here: the forward stores the
// log-sum-exp of each query row, lse (B, H, T), at its start (+inf for a query that sees no key: its output
// and gradients are 0, as on the CPU), and the backward recomputes the probabilities from q, k and lse.
//
// Work split: the forward and the dq kernel give a block QT = 16 queries of one (b, h), 4 per warp, and stream
// the keys in tiles of 32 through shared memory, one key per lane; the dk/dv kernel gives a block 16 keys of
// one (b, kv head), 4 per warp, and streams queries of every head of the group in tiles of 32, one per lane.
// Each lane owns DPL = hd / 32 (rounded up) output columns. Every output element is written by one thread, sums
// run in a fixed order, no atomics: deterministic.
//
// Path: for head sizes the tensor-core kernels take (multiples of 16 up to 128) and where the scratch fits
// (scp_cuda_attn_gemm_fits), attention runs as cuBLAS batched GEMMs with the scores materialised one batch
// element at a time (attention_gemm.cu), 1.8x faster per step at the benchmark's shape on an H200; the WMMA flash
// kernels (attention_tc.cu, and the fp32 ones here for other head sizes) serve the rest. SCP_CUDA_ATTN forces a
// path (benchmarks, tests), read at every call, so a test can switch between calls: gemm; wmma (attention_tc.cu);
// flash, FlashAttention-2 kernels on mma.m16n8k16: attention_flash.cu's forward and attention_flash_bwd.cu's
// backward. Other head sizes take the fp32 kernels here on every path but gemm. cudnn (built where configure found
// cuDNN: SCP_CUDA_CUDNN), cuDNN's fused flash attention through its graph API (attention_cudnn.c) for what it
// serves: bf16 storage, plain causal or bidirectional attention, head sizes that are multiples of 16 up to 128,
// 16-byte aligned rows; documents, the annealed mask and the fp32 table go to the flash path. A call pair stays on
// one path: the backward decides as the forward did, from the same arguments, and each path reads only the `att`
// its own forward wrote (the log-sum-exp (B, H, T), which is also what cuDNN's Stats output holds).
#include "model/attn_visibility.h"
#include "model/cuda/attention_flash.h"
#include "model/cuda/attention_flash_bwd.h"
#include "model/cuda/attention_gemm.h"
#include "model/cuda/attention_tc.h"
#include "model/cuda/cuda_internal.h"
#ifdef SCP_CUDA_CUDNN
#include "model/cuda/attention_cudnn.h"
#endif

#include <cmath>
#include <cstdlib>
#include <cstring>

#define NW 4            // warps per block
#define PW 4            // query (or key) rows per warp
#define QT (NW * PW)    // rows per block
#define TILE 32         // streamed rows per tile: one per lane
#define FULL 0xffffffffu

// The kernels' arguments: the call's scp_attn_args and, for the kernels' loops, ld = ld_qkv and past_only
// (scp_attn_past_only: no query sees a later key).
struct attn_p {
    int B, T, H, KV, hd, ld, past_only;
    float scale;
    scp_attn_args rule;
};

__device__ __forceinline__ bool visible(const attn_p &a, int b, int i, int j)
{
    if (i >= a.T || j >= a.T) return false;
    return scp_attn_visible_at(&a.rule, b, i, j);
}

__device__ __forceinline__ float dot(const float *x, const float *y, int n)
{
    float d = 0.0f;
    for (int c = 0; c < n; c++) d += x[c] * y[c];
    return d;
}

// smem: Qs (QT, hd), Ks (TILE, hd + 1), Vs (TILE, hd). lse (B, H, T).
template <typename AT, int DPL>
__global__ void __launch_bounds__(NW * 32) attn_fwd_kernel(AT *out, float *lse, const AT *q, const AT *k, const AT *v,
                                                           attn_p a)
{
    extern __shared__ float smem[];
    const int hd = a.hd, T = a.T, ld = a.ld, b = blockIdx.z, h = blockIdx.y, g = h / (a.H / a.KV);
    const int q0 = blockIdx.x * QT, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *Qs = smem, *Ks = Qs + QT * hd, *Vs = Ks + TILE * (hd + 1);
    for (int e = threadIdx.x; e < QT * hd; e += blockDim.x) {
        int r = e / hd, c = e % hd, i = q0 + r;
        Qs[e] = i < T ? act_ld(q + (size_t)(b * T + i) * ld + (size_t)h * hd + c) : 0.0f;
    }
    float mrow[PW], lrow[PW], acc[PW][DPL];
#pragma unroll
    for (int r = 0; r < PW; r++) {
        mrow[r] = -INFINITY, lrow[r] = 0.0f;
#pragma unroll
        for (int d = 0; d < DPL; d++) acc[r][d] = 0.0f;
    }
    int qlast = min(q0 + QT, T) - 1, kend = a.past_only ? qlast + 1 : T;
    for (int j0 = 0; j0 < kend; j0 += TILE) {
        __syncthreads();  // the previous tile is consumed (and Qs is complete the first time)
        for (int e = threadIdx.x; e < TILE * hd; e += blockDim.x) {
            int r = e / hd, c = e % hd, j = j0 + r;
            size_t off = (size_t)(b * T + j) * ld + (size_t)g * hd + c;
            Ks[r * (hd + 1) + c] = j < T ? act_ld(k + off) : 0.0f;
            Vs[r * hd + c] = j < T ? act_ld(v + off) : 0.0f;
        }
        __syncthreads();
        const int j = j0 + lane;
#pragma unroll
        for (int r = 0; r < PW; r++) {
            const int qi = warp * PW + r, i = q0 + qi;
            if (i >= T) continue;  // warp-uniform
            bool vis = visible(a, b, i, j);
            float s = vis ? dot(Qs + qi * hd, Ks + lane * (hd + 1), hd) * a.scale : -INFINITY;
            float mn = fmaxf(mrow[r], scp_warp_max(s));
            if (mn == -INFINITY) continue;  // nothing visible yet (the same on every lane)
            float p = vis ? expf(s - mn) : 0.0f;
            float corr = mrow[r] == -INFINITY ? 0.0f : expf(mrow[r] - mn);
            lrow[r] = lrow[r] * corr + scp_warp_sum(p);
            mrow[r] = mn;
#pragma unroll
            for (int d = 0; d < DPL; d++) acc[r][d] *= corr;
            for (int jj = 0; jj < TILE; jj++) {
                float pj = __shfl_sync(FULL, p, jj);
                const float *vr = Vs + jj * hd;
#pragma unroll
                for (int d = 0; d < DPL; d++) {
                    int c = lane + 32 * d;
                    if (c < hd) acc[r][d] += pj * vr[c];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < PW; r++) {
        int i = q0 + warp * PW + r;
        if (i >= T) continue;
        float inv = lrow[r] > 0.0f ? 1.0f / lrow[r] : 0.0f;
        AT *o = out + (size_t)(b * T + i) * a.H * hd + (size_t)h * hd;
#pragma unroll
        for (int d = 0; d < DPL; d++) {
            int c = lane + 32 * d;
            if (c < hd) act_st(o + c, acc[r][d] * inv);
        }
        if (lane == 0) lse[((size_t)b * a.H + h) * T + i] = lrow[r] > 0.0f ? mrow[r] + logf(lrow[r]) : INFINITY;
    }
}

// dq_i = scale * sum_j p_ij (dp_ij - D_i) k_j with dp_ij = dout_i . v_j and D_i = sum_j p_ij dp_ij, in one pass
// over the keys as scale * (sum_j p dp k - D_i sum_j p k). Also stores D (B, H, T) for the dk/dv kernel.
// smem: Qs, dOs (QT, hd); Ks, Vs (TILE, hd + 1).
template <typename AT, int DPL>
__global__ void __launch_bounds__(NW * 32) attn_bwd_dq_kernel(AT *dq, float *Dbuf, const AT *dout, const float *lse,
                                                              const AT *q, const AT *k, const AT *v, attn_p a)
{
    extern __shared__ float smem[];
    const int hd = a.hd, T = a.T, ld = a.ld, b = blockIdx.z, h = blockIdx.y, g = h / (a.H / a.KV);
    const int q0 = blockIdx.x * QT, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *Qs = smem, *dOs = Qs + QT * hd, *Ks = dOs + QT * hd, *Vs = Ks + TILE * (hd + 1);
    for (int e = threadIdx.x; e < QT * hd; e += blockDim.x) {
        int r = e / hd, c = e % hd, i = q0 + r;
        Qs[e] = i < T ? act_ld(q + (size_t)(b * T + i) * ld + (size_t)h * hd + c) : 0.0f;
        dOs[e] = i < T ? act_ld(dout + (size_t)(b * T + i) * a.H * hd + (size_t)h * hd + c) : 0.0f;
    }
    float L[PW], D[PW], A[PW][DPL], P[PW][DPL];
#pragma unroll
    for (int r = 0; r < PW; r++) {
        int i = q0 + warp * PW + r;
        L[r] = i < T ? lse[((size_t)b * a.H + h) * T + i] : INFINITY;
        D[r] = 0.0f;
#pragma unroll
        for (int d = 0; d < DPL; d++) A[r][d] = P[r][d] = 0.0f;
    }
    int qlast = min(q0 + QT, T) - 1, kend = a.past_only ? qlast + 1 : T;
    for (int j0 = 0; j0 < kend; j0 += TILE) {
        __syncthreads();
        for (int e = threadIdx.x; e < TILE * hd; e += blockDim.x) {
            int r = e / hd, c = e % hd, j = j0 + r;
            size_t off = (size_t)(b * T + j) * ld + (size_t)g * hd + c;
            Ks[r * (hd + 1) + c] = j < T ? act_ld(k + off) : 0.0f;
            Vs[r * (hd + 1) + c] = j < T ? act_ld(v + off) : 0.0f;
        }
        __syncthreads();
        const int j = j0 + lane;
#pragma unroll
        for (int r = 0; r < PW; r++) {
            const int qi = warp * PW + r, i = q0 + qi;
            if (i >= T) continue;
            float p = 0.0f, pdp = 0.0f;
            if (visible(a, b, i, j)) {
                p = expf(dot(Qs + qi * hd, Ks + lane * (hd + 1), hd) * a.scale - L[r]);
                pdp = p * dot(dOs + qi * hd, Vs + lane * (hd + 1), hd);
            }
            D[r] += scp_warp_sum(pdp);
            for (int jj = 0; jj < TILE; jj++) {
                float pj = __shfl_sync(FULL, p, jj), pdj = __shfl_sync(FULL, pdp, jj);
                const float *kr = Ks + jj * (hd + 1);
#pragma unroll
                for (int d = 0; d < DPL; d++) {
                    int c = lane + 32 * d;
                    if (c < hd) A[r][d] += pdj * kr[c], P[r][d] += pj * kr[c];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < PW; r++) {
        int i = q0 + warp * PW + r;
        if (i >= T) continue;
        AT *o = dq + (size_t)(b * T + i) * ld + (size_t)h * hd;
#pragma unroll
        for (int d = 0; d < DPL; d++) {
            int c = lane + 32 * d;
            if (c < hd) act_st(o + c, a.scale * (A[r][d] - D[r] * P[r][d]));
        }
        if (lane == 0) Dbuf[((size_t)b * a.H + h) * T + i] = D[r];
    }
}

// dv_j = sum_h sum_i p_ij dout_i, dk_j = scale * sum_h sum_i p_ij (dp_ij - D_i) q_i over the query heads h of
// kv head g, heads and query tiles in order. smem: Kb, Vb (QT, hd); Qs, dOs (TILE, hd + 1); Ls, Ds (TILE).
template <typename AT, int DPL>
__global__ void __launch_bounds__(NW * 32) attn_bwd_dkdv_kernel(AT *dk, AT *dv, const AT *dout, const float *lse,
                                                                const float *Dbuf, const AT *q, const AT *k, const AT *v,
                                                                attn_p a)
{
    extern __shared__ float smem[];
    const int hd = a.hd, T = a.T, ld = a.ld, b = blockIdx.z, g = blockIdx.y, rep = a.H / a.KV;
    const int k0 = blockIdx.x * QT, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *Kb = smem, *Vb = Kb + QT * hd, *Qs = Vb + QT * hd, *dOs = Qs + TILE * (hd + 1), *Ls = dOs + TILE * (hd + 1);
    float *Ds = Ls + TILE;
    for (int e = threadIdx.x; e < QT * hd; e += blockDim.x) {
        int r = e / hd, c = e % hd, j = k0 + r;
        size_t off = (size_t)(b * T + j) * ld + (size_t)g * hd + c;
        Kb[e] = j < T ? act_ld(k + off) : 0.0f;
        Vb[e] = j < T ? act_ld(v + off) : 0.0f;
    }
    float gk[PW][DPL], gv[PW][DPL];
#pragma unroll
    for (int r = 0; r < PW; r++)
#pragma unroll
        for (int d = 0; d < DPL; d++) gk[r][d] = gv[r][d] = 0.0f;
    // Under plain causal attention no query before k0 sees these keys: start at the tile holding k0.
    const int istart = a.past_only ? k0 / TILE * TILE : 0;
    for (int hh = 0; hh < rep; hh++) {
        const int h = g * rep + hh;
        for (int i0 = istart; i0 < T; i0 += TILE) {
            __syncthreads();
            for (int e = threadIdx.x; e < TILE * hd; e += blockDim.x) {
                int r = e / hd, c = e % hd, i = i0 + r;
                Qs[r * (hd + 1) + c] = i < T ? act_ld(q + (size_t)(b * T + i) * ld + (size_t)h * hd + c) : 0.0f;
                dOs[r * (hd + 1) + c] = i < T ? act_ld(dout + (size_t)(b * T + i) * a.H * hd + (size_t)h * hd + c) : 0.0f;
            }
            if (threadIdx.x < TILE) {
                int i = i0 + threadIdx.x;
                size_t o = ((size_t)b * a.H + h) * T + i;
                Ls[threadIdx.x] = i < T ? lse[o] : INFINITY;
                Ds[threadIdx.x] = i < T ? Dbuf[o] : 0.0f;
            }
            __syncthreads();
            const int i = i0 + lane;
#pragma unroll
            for (int r = 0; r < PW; r++) {
                const int kj = warp * PW + r, j = k0 + kj;
                if (j >= T) continue;  // warp-uniform
                float p = 0.0f, ds = 0.0f;
                if (visible(a, b, i, j)) {
                    p = expf(dot(Qs + lane * (hd + 1), Kb + kj * hd, hd) * a.scale - Ls[lane]);
                    ds = p * (dot(dOs + lane * (hd + 1), Vb + kj * hd, hd) - Ds[lane]);
                }
                for (int ii = 0; ii < TILE; ii++) {
                    float pi = __shfl_sync(FULL, p, ii), dsi = __shfl_sync(FULL, ds, ii);
#pragma unroll
                    for (int d = 0; d < DPL; d++) {
                        int c = lane + 32 * d;
                        if (c < hd) gv[r][d] += pi * dOs[ii * (hd + 1) + c], gk[r][d] += dsi * Qs[ii * (hd + 1) + c];
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < PW; r++) {
        int j = k0 + warp * PW + r;
        if (j >= T) continue;
        size_t off = (size_t)(b * T + j) * ld + (size_t)g * hd;
#pragma unroll
        for (int d = 0; d < DPL; d++) {
            int c = lane + 32 * d;
            if (c < hd) act_st(dk + off + c, a.scale * gk[r][d]), act_st(dv + off + c, gv[r][d]);
        }
    }
}

static attn_p params(const scp_attn_args *a)
{
    if (a->hd < 1 || a->hd > 256) scp_die("CUDA attention: head size %d outside 1..256", a->hd);
    if (a->KV < 1 || a->H % a->KV) scp_die("CUDA attention: %d query heads not a multiple of %d kv heads", a->H, a->KV);
    return attn_p{a->B, a->T, a->H, a->KV, a->hd, a->ld_qkv, scp_attn_past_only(a), a->scale, *a};
}

// (The kernel is named through a variable, kern, so that tests/gpu/emulated.sh's rewrite of launches sees a plain
// name before <<<.)
#define DISPATCH(hd, KERNEL, grid, smem, ...)                                                                   \
    do {                                                                                                        \
        auto kern = (hd) <= 32 ? KERNEL<T, 1> : (hd) <= 64 ? KERNEL<T, 2> : (hd) <= 128 ? KERNEL<T, 4> : KERNEL<T, 8>; \
        smem_optin(kern, smem);                                                                                 \
        kern<<<grid, NW * 32, smem>>>(__VA_ARGS__);                                                             \
        SCP_LAUNCHED();                                                                                         \
    } while (0)

// The path this call takes (see the top of the file).
enum attn_path { PATH_GEMM, PATH_WMMA, PATH_FLASH, PATH_CUDNN };
static attn_path path_of(const scp_attn_args *a)
{
    const char *e = getenv("SCP_CUDA_ATTN");
    if (e && strcmp(e, "cudnn") == 0) {
#ifdef SCP_CUDA_CUDNN
        return PATH_CUDNN;
#else
        scp_die("SCP_CUDA_ATTN=cudnn: this build has no cuDNN attention (configure found no cudnn_graph.h)");
#endif
    }
    /* Default: the GEMM path where the flash path would run on the tensor cores too (the same bf16 operands,
     * so the same precision); other head sizes keep the fp32 kernels, whose gradients are exact to fp32 (for
     * tiny heads the bf16 rounding of dS costs several % of relative error in dk on near-uniform attention). */
    if (!e || !*e) return scp_cuda_attn_tc_takes(a->hd) && scp_cuda_attn_gemm_fits(a) ? PATH_GEMM : PATH_WMMA;
    if (strcmp(e, "flash") == 0) return PATH_FLASH;
    if (strcmp(e, "wmma") == 0) return PATH_WMMA;
    if (strcmp(e, "gemm") != 0) scp_die("SCP_CUDA_ATTN=%s: expected flash, wmma, gemm or cudnn", e);
    if (!scp_cuda_attn_gemm_fits(a))
        scp_die("SCP_CUDA_ATTN=gemm: the (H, T, T) score scratch of H=%d, T=%d does not fit the GEMM path's budget", a->H,
                a->T);
    return PATH_GEMM;
}

#ifdef SCP_CUDA_CUDNN
static void *cudnn_workspace(size_t bytes) { return scp_cuda_scratch(bytes); }
#endif

// PATH_CUDNN where cuDNN serves this call (bf16 storage and scp_cudnn_attn_serves), else the flash path's kernels.
template <typename T> static attn_path cudnn_or_flash(attn_path path, const T *q, const T *k, const T *v,
                                                      const scp_attn_args *a)
{
#ifdef SCP_CUDA_CUDNN
    if (path == PATH_CUDNN && sizeof(T) == 2 && scp_cudnn_attn_serves(a, q, k, v)) return PATH_CUDNN;
#else
    (void)q, (void)k, (void)v, (void)a;
#endif
    return path == PATH_CUDNN ? PATH_FLASH : path;
}

template <typename T>
void scp_cuda_attention_fwd(T *out, float *att, const T *q, const T *k, const T *v, const scp_attn_args *a)
{
    attn_p p = params(a);
    if (p.B == 0 || p.T == 0) return;
    const attn_path path = cudnn_or_flash(path_of(a), q, k, v, a);
#ifdef SCP_CUDA_CUDNN
    if (path == PATH_CUDNN) {
        if (scp_cudnn_attn_fwd(out, att, q, k, v, a, cudnn_workspace) != 0) scp_die("%s", scp_cudnn_error());
        return;
    }
#endif
    if (path == PATH_GEMM) return scp_cuda_attn_gemm_fwd(out, att, q, k, v, a);
    if (path == PATH_FLASH && scp_cuda_attn_flash_takes(p.hd)) return scp_cuda_attn_flash_fwd(out, att, q, k, v, a);
    if (scp_cuda_attn_tc_takes(p.hd)) return scp_cuda_attn_tc_fwd(out, att, q, k, v, a);
    dim3 grid((unsigned)((p.T + QT - 1) / QT), (unsigned)p.H, (unsigned)p.B);
    size_t smem = ((size_t)QT * p.hd + (size_t)TILE * (p.hd + 1) + (size_t)TILE * p.hd) * sizeof(float);
    DISPATCH(p.hd, attn_fwd_kernel, grid, smem, out, att, q, k, v, p);
}

template <typename T>
void scp_cuda_attention_bwd(T *dq, T *dk, T *dv, const T *dout, const T *out, const float *att, const T *q,
                            const T *k, const T *v, const scp_attn_args *a)
{
    attn_p p = params(a);
    if (p.B == 0 || p.T == 0) return;
    attn_path path = cudnn_or_flash(path_of(a), q, k, v, a);
    // (the gradients and dout, out too must be 16-byte aligned; where not, the flash path reads the same lse)
    if (path == PATH_CUDNN && ((uintptr_t)dq | (uintptr_t)dk | (uintptr_t)dv | (uintptr_t)dout | (uintptr_t)out) % 16)
        path = PATH_FLASH;
#ifdef SCP_CUDA_CUDNN
    if (path == PATH_CUDNN) {
        if (scp_cudnn_attn_bwd(dq, dk, dv, dout, out, att, q, k, v, a, cudnn_workspace) != 0)
            scp_die("%s", scp_cudnn_error());
        return;
    }
#endif
    if (path == PATH_GEMM) return scp_cuda_attn_gemm_bwd(dq, dk, dv, dout, att, q, k, v, a);
    if (path == PATH_FLASH && scp_cuda_attn_flash_takes(p.hd))
        return scp_cuda_attn_flash_bwd(dq, dk, dv, dout, out, att, q, k, v, a);
    if (scp_cuda_attn_tc_takes(p.hd)) return scp_cuda_attn_tc_bwd(dq, dk, dv, dout, att, q, k, v, a);
    float *Dbuf = (float *)scp_cuda_scratch((size_t)p.B * p.H * p.T * sizeof(float));
    dim3 gq((unsigned)((p.T + QT - 1) / QT), (unsigned)p.H, (unsigned)p.B);
    size_t sq = ((size_t)2 * QT * p.hd + (size_t)2 * TILE * (p.hd + 1)) * sizeof(float);
    DISPATCH(p.hd, attn_bwd_dq_kernel, gq, sq, dq, Dbuf, dout, att, q, k, v, p);
    dim3 gk((unsigned)((p.T + QT - 1) / QT), (unsigned)p.KV, (unsigned)p.B);
    size_t sk = ((size_t)2 * QT * p.hd + (size_t)2 * TILE * (p.hd + 1) + 2 * TILE) * sizeof(float);
    DISPATCH(p.hd, attn_bwd_dkdv_kernel, gk, sk, dk, dv, dout, att, Dbuf, q, k, v, p);
}

template void scp_cuda_attention_fwd<float>(float *, float *, const float *, const float *, const float *,
                                            const scp_attn_args *);
template void scp_cuda_attention_fwd<bf16>(bf16 *, float *, const bf16 *, const bf16 *, const bf16 *,
                                           const scp_attn_args *);
template void scp_cuda_attention_bwd<float>(float *, float *, float *, const float *, const float *, const float *,
                                            const float *, const float *, const float *, const scp_attn_args *);
template void scp_cuda_attention_bwd<bf16>(bf16 *, bf16 *, bf16 *, const bf16 *, const bf16 *, const float *,
                                           const bf16 *, const bf16 *, const bf16 *, const scp_attn_args *);
