// pointwise.cu: SwiGLU, embedding lookup and its deterministic scatter-add, row gather/scatter, cross-entropy
// over the vocabulary (one block per row, online max/sum in fp32, gradient written in place), AdamW on the fp32
// master weights, the gradient-norm helpers (sum of squares in double over a fixed partition), the conversions
// between fp32 and activation storage (to_act, from_act) and the bf16 packing of attention operands. Activations
// are T (float or bf16, cuda_internal.h); weight gradients, statistics and the optimizer's arrays are fp32.
#include "model/cuda/cuda_internal.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#define GRID_STRIDE(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

// gateup (M, 2I) = [gate | up]; h (M, I) = silu(gate) * up. T: the storage type (cuda_internal.h). Blocks
// (x over a row's I / V vectors, y over rows, grid-stride), V consecutive elements per access (act_ldv).
template <typename T, int V>
__global__ void swiglu_fwd_kernel(T *h, const T *gu, int M, int I)
{
    for (long m = blockIdx.y; m < M; m += gridDim.y)
        for (int i = (blockIdx.x * blockDim.x + threadIdx.x) * V; i < I; i += gridDim.x * blockDim.x * V) {
            const T *row = gu + (size_t)m * 2 * I;
            float g[V], u[V];
            act_ldv<V>(row + i, g);
            act_ldv<V>(row + I + i, u);
#pragma unroll
            for (int j = 0; j < V; j++) g[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
            act_stv<V>(h + (size_t)m * I + i, g);
        }
}

// d silu(g)/dg = s (1 + g (1 - s)), s = sigmoid(g).
template <typename T, int V>
__global__ void swiglu_bwd_kernel(T *dgu, const T *dh, const T *gu, int M, int I)
{
    for (long m = blockIdx.y; m < M; m += gridDim.y)
        for (int i = (blockIdx.x * blockDim.x + threadIdx.x) * V; i < I; i += gridDim.x * blockDim.x * V) {
            const T *row = gu + (size_t)m * 2 * I;
            float g[V], u[V], d[V];
            act_ldv<V>(row + i, g);
            act_ldv<V>(row + I + i, u);
            act_ldv<V>(dh + (size_t)m * I + i, d);
#pragma unroll
            for (int j = 0; j < V; j++) {
                const float sg = 1.0f / (1.0f + expf(-g[j])), gj = g[j];
                g[j] = d[j] * u[j] * sg * (1.0f + gj * (1.0f - sg));
                u[j] = d[j] * gj * sg;
            }
            act_stv<V>(dgu + (size_t)m * 2 * I + i, g);
            act_stv<V>(dgu + (size_t)m * 2 * I + I + i, u);
        }
}

// Both launch 256 threads a block with the widest V their pointers and I allow.
static dim3 swiglu_grid(int M, int I, int V)
{
    return dim3((unsigned)((I / V + 255) / 256), (unsigned)(M < 65535 ? M : 65535));
}

template <typename T> void scp_cuda_swiglu_fwd(T *h, const T *gateup, int M, int I)
{
    if ((size_t)M * I == 0) return;
    scp_cuda_vec_dispatch<T>(scp_cuda_vec_width<T>({h, gateup}, {I}), [&](auto vc) {
        constexpr int V = decltype(vc)::value;
        auto kern = swiglu_fwd_kernel<T, V>;
        kern<<<swiglu_grid(M, I, V), 256>>>(h, gateup, M, I);
    });
    SCP_LAUNCHED();
}

template <typename T> void scp_cuda_swiglu_bwd(T *dgateup, const T *dh, const T *gateup, int M, int I)
{
    if ((size_t)M * I == 0) return;
    scp_cuda_vec_dispatch<T>(scp_cuda_vec_width<T>({dgateup, dh, gateup}, {I}), [&](auto vc) {
        constexpr int V = decltype(vc)::value;
        auto kern = swiglu_bwd_kernel<T, V>;
        kern<<<swiglu_grid(M, I, V), 256>>>(dgateup, dh, gateup, M, I);
    });
    SCP_LAUNCHED();
}

// dst row r (C) = src row rows[r] (gather) or dst row rows[r] = src row r (scatter); ids/rows are device memory.
// Storage to storage: a plain copy of the elements, no rounding.
template <typename T>
__global__ void gather_kernel(T *dst, const T *src, const int32_t *rows, int n, int C, int scatter)
{
    GRID_STRIDE(idx, (size_t)n * C)
    {
        size_t r = idx / C, c = idx % C, other = (size_t)rows[r] * C + c;
        if (scatter)
            dst[other] = src[idx];
        else
            dst[idx] = src[other];
    }
}

template <typename T> static void gather(T *dst, const T *src, const int32_t *rows, int n, int C, int scatter)
{
    if ((size_t)n * C == 0) return;
    auto kern = gather_kernel<T>;
    kern<<<scp_cuda_blocks((size_t)n * C, 256), 256>>>(dst, src, rows, n, C, scatter);
    SCP_LAUNCHED();
}

template <typename T> void scp_cuda_embedding_fwd(T *out, const int32_t *ids, const T *table, int M, int C)
{
    gather<T>(out, table, ids, M, C, 0);
}

template <typename T> void scp_cuda_gather_rows(T *dst, const T *src, const int32_t *rows, int n, int C)
{
    gather<T>(dst, src, rows, n, C, 0);
}

template <typename T> void scp_cuda_scatter_rows(T *dst, const T *src, const int32_t *rows, int n, int C)
{
    gather<T>(dst, src, rows, n, C, 1);
}

// Embedding backward without atomics: the rows are grouped by id on the host (a stable counting sort of the M
// ids, so rows of one id keep their order), and one thread per (distinct id, column) adds that id's rows in
// order. seg (S + 1) are offsets into order (M); seg_id (S) the ids. dout (M, C) is T, dtable (V, C) fp32.
template <typename T>
__global__ void embedding_bwd_kernel(float *dtable, const T *dout, const int32_t *order, const int32_t *seg,
                                     const int32_t *seg_id, int C)
{
    int s = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (int k = seg[s]; k < seg[s + 1]; k++) acc += act_ld(dout + (size_t)order[k] * C + c);
    dtable[(size_t)seg_id[s] * C + c] += acc;
}

template <typename T> void scp_cuda_embedding_bwd(float *dtable, const T *dout, const int32_t *ids, int M, int C, int V)
{
    if (M == 0 || C == 0) return;
    int32_t *host = (int32_t *)malloc(((size_t)M + V + 1) * sizeof(int32_t));
    if (!host) scp_die("out of memory (embedding backward, %d rows)", M);
    int32_t *id = host, *cnt = host + M;
    SCP_CUDA(cudaMemcpy(id, ids, (size_t)M * sizeof(int32_t), cudaMemcpyDeviceToHost));
    memset(cnt, 0, ((size_t)V + 1) * sizeof(int32_t));
    for (int m = 0; m < M; m++) {
        if (id[m] < 0 || id[m] >= V) scp_die("CUDA embedding backward: token id %d outside the vocabulary (%d)", id[m], V);
        cnt[id[m] + 1]++;
    }
    for (int v = 0; v < V; v++) cnt[v + 1] += cnt[v];  // cnt[v] = first slot of id v
    int S = 0;
    for (int v = 0; v < V; v++)
        if (cnt[v + 1] > cnt[v]) S++;
    // order (M), then seg (S + 1), then seg_id (S): packed for one upload.
    int32_t *pack = (int32_t *)malloc(((size_t)M + 2 * S + 1) * sizeof(int32_t));
    if (!pack) scp_die("out of memory (embedding backward, %d rows)", M);
    int32_t *po = pack, *ps = po + M, *pid = ps + S + 1;
    for (int m = 0; m < M; m++) po[cnt[id[m]]++] = m;  // afterwards cnt[v] = end of id v's slots
    for (int v = 0, s = 0, start = 0; v < V; start = cnt[v], v++)
        if (cnt[v] > start) ps[s] = start, pid[s] = v, s++;
    ps[S] = M;
    int32_t *dev = (int32_t *)scp_cuda_scratch(((size_t)M + 2 * S + 1) * sizeof(int32_t));
    SCP_CUDA(cudaMemcpy(dev, pack, ((size_t)M + 2 * S + 1) * sizeof(int32_t), cudaMemcpyHostToDevice));
    dim3 grid((unsigned)S, (unsigned)((C + 127) / 128));
    auto kern = embedding_bwd_kernel<T>;
    kern<<<grid, 128>>>(dtable, dout, dev, dev + M, dev + M + S + 1, C);
    SCP_LAUNCHED();
    free(pack);  // a copy from pageable memory has read it by the time cudaMemcpy returns
    free(host);
}

// ---- cross-entropy: one block per row of V logits --------------------------------------------------------
#define CE_THREADS 512

// (m, s) pairs: s = sum exp(x - m). Combining keeps the larger maximum; an empty side (m = -inf) adds nothing.
__device__ __forceinline__ void ms_combine(float &m, float &s, float m2, float s2)
{
    float mx = fmaxf(m, m2);
    if (mx == -INFINITY) return;
    s = (m == -INFINITY ? 0.0f : s * expf(m - mx)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mx));
    m = mx;
}

// logits (N, V) are T: read widened; with backward, overwritten (rounded) by the gradient. nll (N) fp32.
template <typename T>
__global__ void ce_kernel(T *logits, float *nll, const int32_t *target, const float *weight, int V, int backward)
{
    __shared__ float sm[CE_THREADS / 32], ss[CE_THREADS / 32];
    __shared__ float lse_sh;
    int n = blockIdx.x, tid = threadIdx.x, t = target[n];
    T *l = logits + (size_t)n * V;
    if (t < 0) {
        if (tid == 0) nll[n] = 0.0f;
        if (backward)
            for (int v = tid; v < V; v += CE_THREADS) act_st(l + v, 0.0f);
        return;
    }
    float m = -INFINITY, s = 0.0f;
    for (int v = tid; v < V; v += CE_THREADS) {
        float x = act_ld(l + v);
        if (x > m) {
            s = (m == -INFINITY ? 0.0f : s * expf(m - x)) + 1.0f;
            m = x;
        } else {
            s += expf(x - m);  // a NaN logit makes s NaN here (x > m is false for NaN), so NaN reaches the loss
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_combine(m, s, m2, s2);
    }
    if ((tid & 31) == 0) sm[tid >> 5] = m, ss[tid >> 5] = s;
    __syncthreads();
    if (tid == 0) {
        float M = sm[0], S = ss[0];
        for (int w = 1; w < CE_THREADS / 32; w++) ms_combine(M, S, sm[w], ss[w]);
        float lse = M + logf(S);
        lse_sh = lse;
        nll[n] = lse - act_ld(l + t);
    }
    __syncthreads();
    if (backward) {
        float lse = lse_sh, w = weight ? weight[n] : 1.0f;
        for (int v = tid; v < V; v += CE_THREADS) act_st(l + v, w * expf(act_ld(l + v) - lse) - (v == t ? w : 0.0f));
    }
}

// The loss: sum of weight[n] nll[n] over the rows with a target, in double and in row order, as the CPU backend
// sums it; one thread, so that the order is the CPU's (N, the rows of a chunk of the vocabulary projection, is a
// few hundred). The host waits for that one double, not for the rows' nll, targets and weights.
__global__ void ce_loss_kernel(double *loss, const float *nll, const int32_t *target, const float *weight, int N)
{
    double s = 0.0;
    for (int n = 0; n < N; n++)
        if (target[n] >= 0) s += (double)(weight ? weight[n] : 1.0f) * nll[n];
    *loss = s;
}

template <typename T>
double scp_cuda_crossentropy(T *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                             int backward)
{
    if (N == 0) return 0.0;
    auto kern = ce_kernel<T>;
    kern<<<(unsigned)N, CE_THREADS>>>(logits, nll, target, weight, V, backward);
    SCP_LAUNCHED();
    double *dl = (double *)scp_cuda_scratch(sizeof(double)), loss;
    ce_loss_kernel<<<1, 1>>>(dl, nll, target, weight, N);
    SCP_LAUNCHED();
    SCP_CUDA(cudaMemcpy(&loss, dl, sizeof loss, cudaMemcpyDeviceToHost));
    return loss;
}

// ---- optimizer and gradient norm ----------------------------------------------------------------------
__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                             float eps, float wd, float bc1, float sq2)
{
    GRID_STRIDE(i, n)
    {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi / bc1) / (sqrtf(vi) / sq2 + eps) + wd * p[i]);
    }
}

void scp_cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                    float eps, float wd, float bc1, float bc2)
{
    if (n == 0) return;
    adamw_kernel<<<scp_cuda_blocks(n, 256), 256>>>(p, g, m, v, n, lr, beta1, beta2, eps, wd, bc1, sqrtf(bc2));
    SCP_LAUNCHED();
}

// A fixed grid (SUMSQ_BLOCKS x 256 threads, grid-stride) whatever the device: every element always lands in the
// same thread and every tree in the same order, so the sum is the same bits on every run and every GPU.
#define SUMSQ_BLOCKS 256
__global__ void sumsq_kernel(double *partial, const float *x, size_t n)
{
    __shared__ double sh[256];
    double s = 0.0;
    GRID_STRIDE(i, n) s += (double)x[i] * x[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int o = 128; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

double scp_cuda_sumsq(const float *x, size_t n)
{
    if (n == 0) return 0.0;
    double *dp = (double *)scp_cuda_scratch(SUMSQ_BLOCKS * sizeof(double)), hp[SUMSQ_BLOCKS];
    sumsq_kernel<<<SUMSQ_BLOCKS, 256>>>(dp, x, n);
    SCP_LAUNCHED();
    SCP_CUDA(cudaMemcpy(hp, dp, sizeof hp, cudaMemcpyDeviceToHost));
    double s = 0.0;
    for (int b = 0; b < SUMSQ_BLOCKS; b++) s += hp[b];
    return s;
}

__global__ void scale_kernel(float *x, size_t n, float s)
{
    GRID_STRIDE(i, n) x[i] *= s;
}

void scp_cuda_scale(float *x, size_t n, float s)
{
    if (n == 0) return;
    scale_kernel<<<scp_cuda_blocks(n, 256), 256>>>(x, n, s);
    SCP_LAUNCHED();
}

__global__ void add_kernel(float *y, const float *x, size_t n)
{
    GRID_STRIDE(i, n) y[i] += x[i];
}

void scp_cuda_add(float *y, const float *x, size_t n)
{
    if (n == 0) return;
    add_kernel<<<scp_cuda_blocks(n, 256), 256>>>(y, x, n);
    SCP_LAUNCHED();
}

// ---- packing to bf16, and conversions of activation storage ----------------------------------------------
// Rows whose width is a multiple of 4: a block per row (grid-stride), 4 columns per thread, float4 loads where
// src and ld allow them (vec), bf16x2 stores. Other widths: one element per thread, grid-stride.
__global__ void pack_bf16_rows4_kernel(bf16 *dst, const float *src, size_t rows, int cols, size_t ld, int vec)
{
    for (size_t r = blockIdx.x; r < rows; r += gridDim.x)
        for (int c = threadIdx.x * 4; c < cols; c += blockDim.x * 4) {
            const float *s = src + r * ld + c;
            const float4 x = vec ? *(const float4 *)s : make_float4(s[0], s[1], s[2], s[3]);
            __nv_bfloat162 *d = (__nv_bfloat162 *)(dst + r * cols + c);
            d[0] = __floats2bfloat162_rn(x.x, x.y);
            d[1] = __floats2bfloat162_rn(x.z, x.w);
        }
}

// bf16 source: the same rows copied, 4 elements (8 bytes) at a time where src and ld allow it (vec), else one by
// one (the destination rows, cols % 4 == 0 elements packed from an aligned base, always take 8-byte stores).
struct alignas(8) bf16x4_t {
    __nv_bfloat162 a, b;
};
__global__ void copy_bf16_rows4_kernel(bf16 *dst, const bf16 *src, size_t rows, int cols, size_t ld, int vec)
{
    for (size_t r = blockIdx.x; r < rows; r += gridDim.x)
        for (int c = threadIdx.x * 4; c < cols; c += blockDim.x * 4) {
            const bf16 *s = src + r * ld + c;
            bf16x4_t x;
            if (vec)
                x = *(const bf16x4_t *)s;
            else
                x.a.x = s[0], x.a.y = s[1], x.b.x = s[2], x.b.y = s[3];
            *(bf16x4_t *)(dst + r * cols + c) = x;
        }
}

template <typename T> __global__ void pack_bf16_kernel(bf16 *dst, const T *src, size_t rows, int cols, size_t ld)
{
    const size_t n = rows * (size_t)cols;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        dst[e] = __float2bfloat16(act_ld(src + (e / (size_t)cols) * ld + e % (size_t)cols));  // exact for bf16
}

template <typename T> void scp_cuda_pack_bf16(bf16 *dst, const T *src, size_t rows, int cols, size_t ld)
{
    if (rows == 0 || cols == 0) return;
    if (cols % 4 == 0 && (uintptr_t)dst % 8 == 0) {
        const unsigned blocks = (unsigned)(rows < ((size_t)1 << 20) ? rows : ((size_t)1 << 20));
        if (sizeof(T) == 4) {
            const int vec = ld % 4 == 0 && (uintptr_t)src % 16 == 0;
            pack_bf16_rows4_kernel<<<blocks, 128>>>(dst, (const float *)(const void *)src, rows, cols, ld, vec);
        } else {
            const int vec = ld % 4 == 0 && (uintptr_t)src % 8 == 0;
            copy_bf16_rows4_kernel<<<blocks, 128>>>(dst, (const bf16 *)(const void *)src, rows, cols, ld, vec);
        }
    } else {
        auto kern = pack_bf16_kernel<T>;
        kern<<<scp_cuda_blocks(rows * (size_t)cols, 256), 256>>>(dst, src, rows, cols, ld);
    }
    SCP_LAUNCHED();
}

// dst (n) = src (n), converting between fp32 and the storage type (rounded to nearest even into bf16).
template <typename D, typename S> __global__ void convert_kernel(D *dst, const S *src, size_t n)
{
    GRID_STRIDE(i, n) act_st(dst + i, act_ld(src + i));
}

// dst (n) = src (n) between fp32 and the storage type: a plain copy where they are the same (fp32 storage).
template <typename D, typename S> static void convert(D *dst, const S *src, size_t n)
{
    if (n == 0) return;
    if (sizeof(D) == sizeof(S)) {
        if ((const void *)dst != (const void *)src)
            SCP_CUDA(cudaMemcpy(dst, src, n * sizeof(D), cudaMemcpyDeviceToDevice));
        return;
    }
    auto kern = convert_kernel<D, S>;
    kern<<<scp_cuda_blocks(n, 256), 256>>>(dst, src, n);
    SCP_LAUNCHED();
}
template <typename T> void scp_cuda_to_act(T *dst, const float *src, size_t n) { convert<T, float>(dst, src, n); }
template <typename T> void scp_cuda_from_act(float *dst, const T *src, size_t n) { convert<float, T>(dst, src, n); }

#define INSTANTIATE(T)                                                                                          \
    template void scp_cuda_swiglu_fwd<T>(T *, const T *, int, int);                                             \
    template void scp_cuda_swiglu_bwd<T>(T *, const T *, const T *, int, int);                                  \
    template void scp_cuda_embedding_fwd<T>(T *, const int32_t *, const T *, int, int);                         \
    template void scp_cuda_embedding_bwd<T>(float *, const T *, const int32_t *, int, int, int);                \
    template void scp_cuda_gather_rows<T>(T *, const T *, const int32_t *, int, int);                           \
    template void scp_cuda_scatter_rows<T>(T *, const T *, const int32_t *, int, int);                          \
    template double scp_cuda_crossentropy<T>(T *, float *, const int32_t *, const float *, int, int, int);      \
    template void scp_cuda_pack_bf16<T>(bf16 *, const T *, size_t, int, size_t);                                \
    template void scp_cuda_to_act<T>(T *, const float *, size_t);                                               \
    template void scp_cuda_from_act<T>(float *, const T *, size_t);
INSTANTIATE(float)
INSTANTIATE(bf16)
