// qk_norm_rope.cu: Qwen3's q/k path, the per-head RMSNorm followed by the rotary embedding, as one kernel forward
// and one (plus the two short finishes of its column sums) backward (model/backend_ops.def qk_norm_rope_fwd,
// _bwd). Composed of norm.cu's entries the same work is a copy of q|k|v, two norms and two rotations forward, and
// two rotations and two norm backwards (each a column-sum pass, its finish and the dx pass) backward: 13 launches
// a layer and four more passes over the (M, (H + KV) hd) heads. The composition stays the reference
// (lib/model/cpu/norm.c).
//
// Layout: row n (n < N) at n ld holds G = H + KV heads of hd elements, the query heads then the key heads. One
// warp owns one head at a time. A rotation pairs element i with i + hd/2 (HF's rotate_half), so lane l holds the
// pairs i = l V .. l V + V - 1 (and every 32 V after): both halves of its pairs, which the rotation needs, and
// whole vectors of V elements. rstd is (N, H) for the query heads, then (N, KV) for the key heads.
#include "model/cuda/cuda_internal.h"

#define QKR_WARPS 8          // warps per block
#define QKR_ROWS_TARGET 1024 // blocks of the backward, about: its (blocks, 2 hd) partial sums are that many rows

// Where head g of row n is: its position's cos and sin (hd/2 each), its offset, and (backward) its rstd.
struct qkr_head {
    const float *cos, *sin;
    size_t off;   // element offset of the head in the rows
    float r;      // its rstd (0 where rstd is not given: the forward, which computes it)
};

__device__ __forceinline__ qkr_head qkr_head_at(long n, int g, const float *cos, const float *sin, const float *rstd,
                                                int N, int T_, int H, int KV, int hd, int ld)
{
    const int half = hd / 2;
    qkr_head h;
    h.cos = cos + (size_t)(n % T_) * half;
    h.sin = sin + (size_t)(n % T_) * half;
    h.off = (size_t)n * ld + (size_t)g * hd;
    h.r = rstd ? (g < H ? rstd[(size_t)n * H + g] : rstd[(size_t)N * H + (size_t)n * KV + (g - H)]) : 0.0f;
    return h;
}

// The V pairs from p: a = p[0 .. V - 1] and b = p[half .. half + V - 1], widened.
template <typename T, int V>
__device__ __forceinline__ void qkr_load_pairs(const T *p, int half, float (&a)[V], float (&b)[V])
{
    act_ldv<V>(p, a);
    act_ldv<V>(p + half, b);
}

// Forward: x (a head as read; raw receives it) -> y = x rstd w -> rotated y, written over x.
template <typename T, int V>
__global__ void qk_norm_rope_fwd_kernel(T *qk, T *raw, float *rstd, const T *wq, const T *wk, const float *cos,
                                        const float *sin, int N, int T_, int H, int KV, int hd, int ld, float eps)
{
    const int lane = threadIdx.x & 31, half = hd / 2, G = H + KV;
    const long heads = (long)N * G, stride = (long)gridDim.x * QKR_WARPS;
    for (long j = (long)blockIdx.x * QKR_WARPS + (threadIdx.x >> 5); j < heads; j += stride) {
        const long n = j / G;
        const int g = (int)(j % G);
        const qkr_head h = qkr_head_at(n, g, cos, sin, NULL, N, T_, H, KV, hd, ld);
        const T *w = g < H ? wq : wk;
        T *p = qk + h.off;
        float ss = 0.0f;
        for (int i = lane * V; i < half; i += 32 * V) {
            float a[V], b[V];
            qkr_load_pairs<T, V>(p + i, half, a, b);
#pragma unroll
            for (int e = 0; e < V; e++) ss += a[e] * a[e] + b[e] * b[e];
        }
        ss = scp_warp_sum(ss);
        const float r = 1.0f / sqrtf(ss / (float)hd + eps);
        if (lane == 0) {
            if (g < H)
                rstd[(size_t)n * H + g] = r;
            else
                rstd[(size_t)N * H + (size_t)n * KV + (g - H)] = r;
        }
        // every lane reads its own elements again before it writes them (the warp's sum is taken by then)
        for (int i = lane * V; i < half; i += 32 * V) {
            float a[V], b[V], wa[V], wb[V];
            qkr_load_pairs<T, V>(p + i, half, a, b);
            qkr_load_pairs<T, V>(w + i, half, wa, wb);
            if (raw) {
                act_stv<V>(raw + h.off + i, a);
                act_stv<V>(raw + h.off + half + i, b);
            }
#pragma unroll
            for (int e = 0; e < V; e++) {
                const float c = h.cos[i + e], s = h.sin[i + e], ya = a[e] * r * wa[e], yb = b[e] * r * wb[e];
                a[e] = ya * c - yb * s;
                b[e] = yb * c + ya * s;
            }
            act_stv<V>(p + i, a);
            act_stv<V>(p + half + i, b);
        }
    }
}

// The widest access that keeps 32 lanes busy: pairs per lane V with half / V >= 32 where the head allows it.
template <typename T> static int qkr_width(const void *a, const void *b, const void *wq, const void *wk, int hd, int ld)
{
    const int half = hd / 2;
    int v = scp_cuda_vec_width<T>({a, b, wq, wk}, {half, hd, ld});
    while (v > 1 && half / v < 32) v /= 2;
    return v;
}

template <typename T>
void scp_cuda_qk_norm_rope_fwd(T *qk, T *raw, float *rstd, const T *wq, const T *wk, const float *cos, const float *sin,
                               int N, int T_, int H, int KV, int hd, int ld, float eps)
{
    const long heads = (long)N * (H + KV);
    if (heads == 0) return;
    scp_cuda_vec_dispatch<T>(qkr_width<T>(qk, raw, wq, wk, hd, ld), [&](auto vc) {
        auto kern = qk_norm_rope_fwd_kernel<T, decltype(vc)::value>;
        kern<<<scp_cuda_blocks((size_t)heads, QKR_WARPS), QKR_WARPS * 32>>>(qk, raw, rstd, wq, wk, cos, sin, N, T_, H,
                                                                            KV, hd, ld, eps);
    });
    SCP_LAUNCHED();
}

// A lane's V pairs at i of a head in the backward: dy (the gradient d with the rotation undone, fp32), the
// head's input x (raw) and the norm weight w, each as the first-half elements (a) and their partners (b).
template <int V> struct qkr_bwd_pairs {
    float ya[V], yb[V], xa[V], xb[V], wa[V], wb[V];
};

template <typename T, int V>
__device__ __forceinline__ void qkr_bwd_load(qkr_bwd_pairs<V> &q, const T *d, const T *raw, const T *w,
                                             const qkr_head &h, int i, int half)
{
    float da[V], db[V];
    qkr_load_pairs<T, V>(d + h.off + i, half, da, db);
    qkr_load_pairs<T, V>(raw + h.off + i, half, q.xa, q.xb);
    qkr_load_pairs<T, V>(w + i, half, q.wa, q.wb);
#pragma unroll
    for (int e = 0; e < V; e++) {   // the rotation's transpose: the angle negated
        const float c = h.cos[i + e], s = h.sin[i + e];
        q.ya[e] = da[e] * c + db[e] * s;
        q.yb[e] = db[e] * c - da[e] * s;
    }
}

// Backward of head (n, g), with dy the gradient of the normalised head before its rotation (the rotation's
// transpose applied to d, in fp32):
//   dx_c = r w_c dy_c - x_c r^3 / hd * sum_j dy_j w_j x_j,  dw_c += dy_c x_c r.
// Block b takes rows b per .. b per + per - 1 and their G heads; warp w the heads w, w + WARPS, ... of them, in
// that order, adding its dw terms into its own (2, hd) shared sums (query weight, key weight); the block adds its
// warps' sums in warp order into partial row b. The column sums' finish (norm.cu) adds the rows in order, once
// for the query weight's columns and once for the key weight's: dw's bits depend on N and the shapes alone.
template <typename T, int V>
__global__ void qk_norm_rope_bwd_kernel(T *d, float *partial, const T *raw, const T *wq, const T *wk,
                                        const float *rstd, const float *cos, const float *sin, int N, int T_, int H,
                                        int KV, int hd, int ld, long per)
{
    extern __shared__ float smem[];  // (QKR_WARPS, 2, hd): each warp's dw sums
    float *acc = smem;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, half = hd / 2, G = H + KV;
    for (int i = threadIdx.x; i < QKR_WARPS * 2 * hd; i += blockDim.x) acc[i] = 0.0f;
    __syncthreads();
    const long n0 = (long)blockIdx.x * per, n1 = n0 + per < N ? n0 + per : N;
    for (long j = warp; j < (n1 - n0) * G; j += QKR_WARPS) {
        const long n = n0 + j / G;
        const int g = (int)(j % G);
        const qkr_head h = qkr_head_at(n, g, cos, sin, rstd, N, T_, H, KV, hd, ld);
        const T *w = g < H ? wq : wk;
        float *mine = acc + ((size_t)warp * 2 + (g < H ? 0 : 1)) * hd;
        const float r = h.r;
        float dot = 0.0f;
        for (int i = lane * V; i < half; i += 32 * V) {
            qkr_bwd_pairs<V> q;
            qkr_bwd_load<T, V>(q, d, raw, w, h, i, half);
#pragma unroll
            for (int e = 0; e < V; e++) dot += q.ya[e] * q.wa[e] * q.xa[e] + q.yb[e] * q.wb[e] * q.xb[e];
        }
        dot = scp_warp_sum(dot);
        const float k = dot * r * r * r / (float)hd;
        for (int i = lane * V; i < half; i += 32 * V) {
            qkr_bwd_pairs<V> q;
            qkr_bwd_load<T, V>(q, d, raw, w, h, i, half);
            float da[V], db[V];
#pragma unroll
            for (int e = 0; e < V; e++) {
                mine[i + e] += q.ya[e] * q.xa[e] * r;
                mine[half + i + e] += q.yb[e] * q.xb[e] * r;
                da[e] = r * q.wa[e] * q.ya[e] - q.xa[e] * k;
                db[e] = r * q.wb[e] * q.yb[e] - q.xb[e] * k;
            }
            act_stv<V>(d + h.off + i, da);
            act_stv<V>(d + h.off + half + i, db);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < 2 * hd; c += blockDim.x) {
        float s = 0.0f;
        for (int w = 0; w < QKR_WARPS; w++) s += acc[(size_t)w * 2 * hd + c];
        partial[(size_t)blockIdx.x * 2 * hd + c] = s;
    }
}

template <typename T>
void scp_cuda_qk_norm_rope_bwd(T *d, float *dwq, float *dwk, const T *raw, const T *wq, const T *wk, const float *rstd,
                               const float *cos, const float *sin, int N, int T_, int H, int KV, int hd, int ld)
{
    if ((long)N * (H + KV) == 0 || hd == 0) return;
    const long per = (N + QKR_ROWS_TARGET - 1) / QKR_ROWS_TARGET, chunks = (N + per - 1) / per;
    float *partial = (float *)scp_cuda_scratch((size_t)chunks * 2 * hd * sizeof(float));
    const size_t smem = (size_t)QKR_WARPS * 2 * hd * sizeof(float);
    scp_cuda_vec_dispatch<T>(qkr_width<T>(d, raw, wq, wk, hd, ld), [&](auto vc) {
        auto kern = qk_norm_rope_bwd_kernel<T, decltype(vc)::value>;
        smem_optin(kern, smem);
        kern<<<(unsigned)chunks, QKR_WARPS * 32, smem>>>(d, partial, raw, wq, wk, rstd, cos, sin, N, T_, H, KV, hd, ld,
                                                         per);
    });
    SCP_LAUNCHED();
    scp_cuda_colsum_finish(dwq, partial, chunks, hd, 2 * hd);
    scp_cuda_colsum_finish(dwk, partial + hd, chunks, hd, 2 * hd);
}

#define INSTANTIATE(T)                                                                                            \
    template void scp_cuda_qk_norm_rope_fwd<T>(T *, T *, float *, const T *, const T *, const float *, const float *, \
                                               int, int, int, int, int, int, float);                                \
    template void scp_cuda_qk_norm_rope_bwd<T>(T *, float *, float *, const T *, const T *, const T *, const float *, \
                                               const float *, const float *, int, int, int, int, int, int);
INSTANTIATE(float)
INSTANTIATE(bf16)
