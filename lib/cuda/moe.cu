// moe.cu: the mixture-of-experts entries of the CUDA backend (lib/backend.h): routing (softmax, top-k,
// renormalisation, one warp per token row), its backward, the weighted combine of the expert outputs and its
// backward. The experts' matmuls are the backend's cuBLAS GEMMs on each expert's contiguous rows (model_moe.c).
// Every reduction has a fixed order (warp butterflies, serial loops), so results repeat bit for bit.
#include "cuda_internal.h"

#define GRID_STRIDE(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)
#define WARPS 4   // warps per block of the row kernels

// (p, e) before (q, f) in the top-k order: larger probability first, the lower index on ties.
__device__ __forceinline__ bool moe_before(float p, int e, float q, int f) { return p > q || (p == q && e < f); }

// probs (M, E), idx/weight (M, k), lse (M) from logits (M, E): one warp per row. The j-th choice is the best
// element after the (j-1)-th in the (probability desc, index asc) order, so no list of taken experts is kept.
__global__ void moe_route_kernel(float *probs, int32_t *idx, float *weight, float *lse, const float *logits, int M,
                                 int E, int k, int norm)
{
    int lane = threadIdx.x & 31;
    for (int r = blockIdx.x * WARPS + (threadIdx.x >> 5); r < M; r += gridDim.x * WARPS) {
        const float *z = logits + (size_t)r * E;
        float *p = probs + (size_t)r * E;
        float mx = -INFINITY;
        for (int e = lane; e < E; e += 32) mx = fmaxf(mx, z[e]);
        mx = scp_warp_max(mx);
        float s = 0.0f;
        for (int e = lane; e < E; e += 32) s += expf(z[e] - mx);
        s = scp_warp_sum(s);
        for (int e = lane; e < E; e += 32) p[e] = expf(z[e] - mx) / s;
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

void scp_cuda_moe_route(float *probs, int32_t *idx, float *weight, float *lse, float *psum,
                                   const float *logits, int M, int E, int k, int norm)
{
    if (M < 1) return;
    unsigned blocks = (unsigned)((M + WARPS - 1) / WARPS);
    moe_route_kernel<<<blocks < 65535u ? blocks : 65535u, 32 * WARPS>>>(probs, idx, weight, lse, logits, M, E, k, norm);
    SCP_LAUNCHED();
    moe_colsum_kernel<<<scp_cuda_blocks((size_t)E, 128), 128>>>(psum, probs, M, E);
    SCP_LAUNCHED();
}

// dlogits (M, E): one warp per row; g = dprob + d/dp of the routing weights, then the softmax backward and
// the z-loss term.
__global__ void moe_route_bwd_kernel(float *dlogits, const float *dweight, const float *probs, const float *lse,
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
        for (int e = lane; e < E; e += 32) {
            float g = dprob ? dprob[e] : 0.0f;
            for (int j = 0; j < k; j++)
                if (ix[j] == e) g += norm ? (dw[j] - dot) / s : dw[j];
            dlogits[(size_t)r * E + e] = g;   // d/dp for now
            pg += p[e] * g;
        }
        pg = scp_warp_sum(pg);
        float zl = zscale * lse[r];
        for (int e = lane; e < E; e += 32) {
            float g = dlogits[(size_t)r * E + e];
            dlogits[(size_t)r * E + e] = p[e] * (g - pg) + zl * p[e];
        }
    }
}

void scp_cuda_moe_route_bwd(float *dlogits, const float *dweight, const float *probs, const float *lse,
                                       const int32_t *idx, const float *weight, const float *dprob, float zscale, int M,
                                       int E, int k, int norm)
{
    if (M < 1) return;
    unsigned blocks = (unsigned)((M + WARPS - 1) / WARPS);
    moe_route_bwd_kernel<<<blocks < 65535u ? blocks : 65535u, 32 * WARPS>>>(dlogits, dweight, probs, lse, idx, weight,
                                                                            dprob, zscale, M, E, k, norm);
    SCP_LAUNCHED();
}

// out (M, D) = beta out + sum_j weight (or 1) * y[pos]: one thread per element, j in order.
__global__ void moe_combine_kernel(float *out, const float *y, const float *weight, const int32_t *pos, int M, int k,
                                   int D, float beta)
{
    GRID_STRIDE(i, (size_t)M * D)
    {
        size_t r = i / D, c = i % D;
        float acc = 0.0f;
        for (int j = 0; j < k; j++) {
            size_t a = r * k + j;
            acc += (weight ? weight[a] : 1.0f) * y[(size_t)pos[a] * D + c];
        }
        out[i] = beta == 0.0f ? acc : beta * out[i] + acc;
    }
}

void scp_cuda_moe_combine(float *out, const float *y, const float *weight, const int32_t *pos, int M, int k,
                                     int D, float beta)
{
    if ((size_t)M * D == 0) return;
    moe_combine_kernel<<<scp_cuda_blocks((size_t)M * D, 256), 256>>>(out, y, weight, pos, M, k, D, beta);
    SCP_LAUNCHED();
}

// dy row pos[a] = weight[a] dout row r (a = r k + j): one thread per element.
__global__ void moe_combine_dy_kernel(float *dy, const float *dout, const float *weight, const int32_t *pos, int M,
                                      int k, int D)
{
    GRID_STRIDE(i, (size_t)M * k * D)
    {
        size_t a = i / D, c = i % D, r = a / k;
        dy[(size_t)pos[a] * D + c] = weight[a] * dout[r * D + c];
    }
}

// dweight[a] = dout row r . y row pos[a]: one warp per assignment.
__global__ void moe_combine_dw_kernel(float *dweight, const float *dout, const float *y, const int32_t *pos, int M,
                                      int k, int D)
{
    int lane = threadIdx.x & 31;
    size_t n = (size_t)M * k;
    for (size_t a = blockIdx.x * (size_t)WARPS + (threadIdx.x >> 5); a < n; a += (size_t)gridDim.x * WARPS) {
        const float *d = dout + (a / k) * D, *yr = y + (size_t)pos[a] * D;
        float s = 0.0f;
        for (int c = lane; c < D; c += 32) s += d[c] * yr[c];
        s = scp_warp_sum(s);
        if (lane == 0) dweight[a] = s;
    }
}

void scp_cuda_moe_combine_bwd(float *dy, float *dweight, const float *dout, const float *y,
                                         const float *weight, const int32_t *pos, int M, int k, int D)
{
    size_t n = (size_t)M * k;
    if (n == 0 || D < 1) return;
    moe_combine_dy_kernel<<<scp_cuda_blocks(n * D, 256), 256>>>(dy, dout, weight, pos, M, k, D);
    SCP_LAUNCHED();
    unsigned blocks = (unsigned)((n + WARPS - 1) / WARPS);
    moe_combine_dw_kernel<<<blocks < 65535u ? blocks : 65535u, 32 * WARPS>>>(dweight, dout, y, pos, M, k, D);
    SCP_LAUNCHED();
}
