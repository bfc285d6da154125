// moe.cu: the mixture-of-experts entries of the CUDA backend (lib/model/backend.h): routing (softmax, top-k,
// renormalisation, one warp per token row), its backward, the weighted combine of the expert outputs and its
// backward. The experts' matmuls and the permutation by expert are moe_gemm.cu's (model/moe.c).
// Every reduction has a fixed order (warp butterflies, serial loops), so results repeat bit for bit. Router
// logits, their gradient and the combine's activations are T (float or bf16, cuda_internal.h), read widened and
// written rounded; probabilities, routing weights, lse and psum are fp32.
#include "model/cuda/cuda_internal.h"

#define GRID_STRIDE(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)
#define WARPS 4   // warps per block of the row kernels

// (p, e) before (q, f) in the top-k order: larger probability first, the lower index on ties.
__device__ __forceinline__ bool moe_before(float p, int e, float q, int f) { return p > q || (p == q && e < f); }

// probs (M, E), idx/weight (M, k), lse (M) from logits (M, E): one warp per row. The j-th choice is the best
// element after the (j-1)-th in the (probability desc, index asc) order, so no list of taken experts is kept.
template <typename T>
__global__ void moe_route_kernel(float *probs, int32_t *idx, float *weight, float *lse, const T *logits, int M, int E,
                                 int k, int norm)
{
    int lane = threadIdx.x & 31;
    for (int r = blockIdx.x * WARPS + (threadIdx.x >> 5); r < M; r += gridDim.x * WARPS) {
        const T *z = logits + (size_t)r * E;
        float *p = probs + (size_t)r * E;
        float mx = -INFINITY;
        for (int e = lane; e < E; e += 32) mx = fmaxf(mx, act_ld(z + e));
        mx = scp_warp_max(mx);
        float s = 0.0f;
        for (int e = lane; e < E; e += 32) s += expf(act_ld(z + e) - mx);
        s = scp_warp_sum(s);
        for (int e = lane; e < E; e += 32) p[e] = expf(act_ld(z + e) - mx) / s;
        if (lane == 0) lse[r] = mx + logf(s);
        __syncwarp();
        float prev_p = INFINITY, wsum = 0.0f;
        int prev_e = -1;
        for (int j = 0; j < k; j++) {
            float bp = -INFINITY;
            int be = E;   // none
            for (int e = lane; e < E; e += 32) {
                float q = p[e];
                if (moe_before(prev_p, prev_e, q, e) && (be == E || moe_before(q, e, bp, be))) bp = q, be = e;
            }
            for (int o = 16; o > 0; o >>= 1) {   // warp argmax in the same order (indices exact as floats)
                float op = __shfl_xor_sync(0xffffffffu, bp, o);
                int oe = (int)__shfl_xor_sync(0xffffffffu, (float)be, o);
                if (oe != E && (be == E || moe_before(op, oe, bp, be))) bp = op, be = oe;
            }
            if (be == E) be = j, bp = p[j];   // NaN probabilities: none eligible; any valid index keeps us in bounds
            if (lane == 0) idx[(size_t)r * k + j] = be, weight[(size_t)r * k + j] = bp;
            wsum += bp;
            prev_p = bp, prev_e = be;
        }
        __syncwarp();
        if (norm && lane == 0)
            for (int j = 0; j < k; j++) weight[(size_t)r * k + j] /= wsum;
        __syncwarp();
    }
}

// psum (E) = column sums of probs, rows in order, in double.
__global__ void moe_colsum_kernel(float *psum, const float *probs, int M, int E)
{
    GRID_STRIDE(e, (size_t)E)
    {
        double s = 0.0;
        for (int r = 0; r < M; r++) s += probs[(size_t)r * E + e];
        psum[e] = (float)s;
    }
}

template <typename T>
void scp_cuda_moe_route(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const T *logits, int M,
                        int E, int k, int norm)
{
    if (M < 1) return;
    unsigned blocks = (unsigned)((M + WARPS - 1) / WARPS);
    auto kern = moe_route_kernel<T>;
    kern<<<blocks < 65535u ? blocks : 65535u, 32 * WARPS>>>(probs, idx, weight, lse, logits, M, E, k, norm);
    SCP_LAUNCHED();
    moe_colsum_kernel<<<scp_cuda_blocks((size_t)E, 128), 128>>>(psum, probs, M, E);
    SCP_LAUNCHED();
}

// g_e = dprob_e + d/dp_e of the routing weights, row r: the k chosen experts in order.
__device__ __forceinline__ float moe_dp(int e, const float *dprob, const int32_t *ix, const float *dw, float dot,
                                        float s, int k, int norm)
{
    float g = dprob ? dprob[e] : 0.0f;
    for (int j = 0; j < k; j++)
        if (ix[j] == e) g += norm ? (dw[j] - dot) / s : dw[j];
    return g;
}

// dlogits (M, E): one warp per row; g = dprob + d/dp of the routing weights, then the softmax backward and
// the z-loss term. g is computed twice (for the row's dot product, then for the output) rather than kept in
// dlogits in between, which in bf16 storage would round it.
template <typename T>
__global__ void moe_route_bwd_kernel(T *dlogits, const float *dweight, const float *probs, const float *lse,
                                     const int32_t *idx, const float *weight, const float *dprob, float zscale, int M,
                                     int E, int k, int norm)
{
    int lane = threadIdx.x & 31;
    for (int r = blockIdx.x * WARPS + (threadIdx.x >> 5); r < M; r += gridDim.x * WARPS) {
        const float *p = probs + (size_t)r * E, *dw = dweight + (size_t)r * k, *w = weight + (size_t)r * k;
        const int32_t *ix = idx + (size_t)r * k;
        float s = 0.0f, dot = 0.0f;   // every lane the same, in the order of j
        for (int j = 0; j < k; j++) s += p[ix[j]], dot += dw[j] * w[j];
        float pg = 0.0f;
        for (int e = lane; e < E; e += 32) pg += p[e] * moe_dp(e, dprob, ix, dw, dot, s, k, norm);
        pg = scp_warp_sum(pg);
        float zl = zscale * lse[r];
        for (int e = lane; e < E; e += 32) {
            float g = moe_dp(e, dprob, ix, dw, dot, s, k, norm);
            act_st(dlogits + (size_t)r * E + e, p[e] * (g - pg) + zl * p[e]);
        }
    }
}

template <typename T>
void scp_cuda_moe_route_bwd(T *dlogits, const float *dweight, const float *probs, const float *lse, const int32_t *idx,
                            const float *weight, const float *dprob, float zscale, int M, int E, int k, int norm)
{
    if (M < 1) return;
    unsigned blocks = (unsigned)((M + WARPS - 1) / WARPS);
    auto kern = moe_route_bwd_kernel<T>;
    kern<<<blocks < 65535u ? blocks : 65535u, 32 * WARPS>>>(dlogits, dweight, probs, lse, idx, weight, dprob, zscale, M,
                                                            E, k, norm);
    SCP_LAUNCHED();
}

// out (M, D) = beta out + sum_j weight (or 1) * y[pos]: one thread per element, j in order.
template <typename T>
__global__ void moe_combine_kernel(T *out, const T *y, const float *weight, const int32_t *pos, int M, int k, int D,
                                   float beta)
{
    GRID_STRIDE(i, (size_t)M * D)
    {
        size_t r = i / D, c = i % D;
        float acc = 0.0f;
        for (int j = 0; j < k; j++) {
            size_t a = r * k + j;
            acc += (weight ? weight[a] : 1.0f) * act_ld(y + (size_t)pos[a] * D + c);
        }
        act_st(out + i, beta == 0.0f ? acc : beta * act_ld(out + i) + acc);
    }
}

template <typename T>
void scp_cuda_moe_combine(T *out, const T *y, const float *weight, const int32_t *pos, int M, int k, int D, float beta)
{
    if ((size_t)M * D == 0) return;
    auto kern = moe_combine_kernel<T>;
    kern<<<scp_cuda_blocks((size_t)M * D, 256), 256>>>(out, y, weight, pos, M, k, D, beta);
    SCP_LAUNCHED();
}

// dy row pos[a] = weight[a] dout row r (a = r k + j): one thread per element.
template <typename T>
__global__ void moe_combine_dy_kernel(T *dy, const T *dout, const float *weight, const int32_t *pos, int M, int k, int D)
{
    GRID_STRIDE(i, (size_t)M * k * D)
    {
        size_t a = i / D, c = i % D, r = a / k;
        act_st(dy + (size_t)pos[a] * D + c, weight[a] * act_ld(dout + r * D + c));
    }
}

// dweight[a] = dout row r . y row pos[a]: one warp per assignment.
template <typename T>
__global__ void moe_combine_dw_kernel(float *dweight, const T *dout, const T *y, const int32_t *pos, int M, int k, int D)
{
    int lane = threadIdx.x & 31;
    size_t n = (size_t)M * k;
    for (size_t a = blockIdx.x * (size_t)WARPS + (threadIdx.x >> 5); a < n; a += (size_t)gridDim.x * WARPS) {
        const T *d = dout + (a / k) * D, *yr = y + (size_t)pos[a] * D;
        float s = 0.0f;
        for (int c = lane; c < D; c += 32) s += act_ld(d + c) * act_ld(yr + c);
        s = scp_warp_sum(s);
        if (lane == 0) dweight[a] = s;
    }
}

template <typename T>
void scp_cuda_moe_combine_bwd(T *dy, float *dweight, const T *dout, const T *y, const float *weight,
                              const int32_t *pos, int M, int k, int D)
{
    size_t n = (size_t)M * k;
    if (n == 0 || D < 1) return;
    auto kdy = moe_combine_dy_kernel<T>;
    kdy<<<scp_cuda_blocks(n * D, 256), 256>>>(dy, dout, weight, pos, M, k, D);
    SCP_LAUNCHED();
    unsigned blocks = (unsigned)((n + WARPS - 1) / WARPS);
    auto kdw = moe_combine_dw_kernel<T>;
    kdw<<<blocks < 65535u ? blocks : 65535u, 32 * WARPS>>>(dweight, dout, y, pos, M, k, D);
    SCP_LAUNCHED();
}

#define INSTANTIATE(T)                                                                                          \
    template void scp_cuda_moe_route<T>(float *, int32_t *, float *, float *, float *, const T *, int, int, int, int); \
    template void scp_cuda_moe_route_bwd<T>(T *, const float *, const float *, const float *, const int32_t *,  \
                                            const float *, const float *, float, int, int, int, int);           \
    template void scp_cuda_moe_combine<T>(T *, const T *, const float *, const int32_t *, int, int, int, float); \
    template void scp_cuda_moe_combine_bwd<T>(T *, float *, const T *, const T *, const float *, const int32_t *, \
                                              int, int, int);
INSTANTIATE(float)
INSTANTIATE(bf16)
