// norm.cu: RMSNorm forward/backward (hidden state, G = 1, and Qwen3's per-head q/k norm, G = heads), RoPE, and
// the deterministic column sum that the weight gradients of norms and biases share. Rows: row n (n < N) starts
// at x + n * ld and holds G groups of C elements; one warp owns one group. Activations and the norm weight are
// T (float or bf16, cuda_internal.h), read widened; rstd and dw are fp32; everything is computed in fp32, as HF
// computes norms.
#include "cuda_internal.h"

#define WARPS 8  // warps per block for the one-warp-per-group kernels

// out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps); rstd is (N * G).
template <typename T>
__global__ void rmsnorm_fwd_kernel(T *out, float *rstd, const T *x, const T *w, int N, int G, int C, int ld, float eps)
{
    int lane = threadIdx.x & 31;
    long grp = (long)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (grp >= (long)N * G) return;
    size_t off = (size_t)(grp / G) * ld + (size_t)(grp % G) * C;
    const T *xr = x + off;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float v = act_ld(xr + c);
        ss += v * v;
    }
    ss = scp_warp_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (lane == 0) rstd[grp] = r;
    for (int c = lane; c < C; c += 32) act_st(out + off + c, act_ld(xr + c) * r * act_ld(w + c));
}

template <typename T>
void scp_cuda_rmsnorm_fwd(T *out, float *rstd, const T *x, const T *w, int N, int G, int C, int ld, float eps)
{
    long groups = (long)N * G;
    if (groups == 0) return;
    auto kern = rmsnorm_fwd_kernel<T>;
    kern<<<(unsigned)((groups + WARPS - 1) / WARPS), WARPS * 32>>>(out, rstd, x, w, N, G, C, ld, eps);
    SCP_LAUNCHED();
}

// Deterministic column sums in two passes: partial (chunks, C) over fixed chunks of ROWS_PER rows, each summed
// in row order; then each column adds its chunks in order. No atomics: the same bits on every run.
#define ROWS_PER 128  // at least; more when the rows would need over 65535 chunks (the grid's y limit)

// mode 0: partial of src; mode 1: partial of dout * x * rstd (RMSNorm's dw), groups of C in rows of ld.
// src and x are T; partial (chunks, C) fp32.
template <typename T>
__global__ void colsum_partial_kernel(float *partial, const T *src, const T *x, const float *rstd, int ld, int G,
                                      long rows, int C, int mode, long per)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    long chunk = blockIdx.y;
    if (c >= C) return;
    long r0 = chunk * per, r1 = r0 + per < rows ? r0 + per : rows;
    float s = 0.0f;
    for (long r = r0; r < r1; r++) {
        size_t off = (size_t)(r / G) * ld + (size_t)(r % G) * C + c;
        s += mode ? act_ld(src + off) * act_ld(x + off) * rstd[r] : act_ld(src + off);
    }
    partial[(size_t)chunk * C + c] = s;
}

__global__ void colsum_finish_kernel(float *dst, const float *partial, long chunks, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (long k = 0; k < chunks; k++) s += partial[(size_t)k * C + c];
    dst[c] += s;
}

template <typename T>
static void colsum(float *dst, const T *src, const T *x, const float *rstd, int ld, int G, long rows, int C, int mode)
{
    if (rows == 0 || C == 0) return;
    long per = ROWS_PER;
    while ((rows + per - 1) / per > 65535) per *= 2;
    long chunks = (rows + per - 1) / per;
    float *partial = (float *)scp_cuda_scratch((size_t)chunks * C * sizeof(float));
    dim3 grid((unsigned)((C + 127) / 128), (unsigned)chunks);
    auto kern = colsum_partial_kernel<T>;
    kern<<<grid, 128>>>(partial, src, x, rstd, ld, G, rows, C, mode, per);
    SCP_LAUNCHED();
    colsum_finish_kernel<<<(unsigned)((C + 127) / 128), 128>>>(dst, partial, chunks, C);
    SCP_LAUNCHED();
}

template <typename T> void scp_cuda_colsum_add(float *dst, const T *src, int ld, int rows, int C)
{
    colsum<T>(dst, src, NULL, NULL, ld, 1, rows, C, 0);
}

// dx_c = r w_c dy_c - x_c r^3 / C * sum_j dy_j w_j x_j (dx may be dout: each lane reads its own columns before
// writing them, after the warp's dot product).
template <typename T>
__global__ void rmsnorm_bwd_dx_kernel(T *dx, const T *dout, const T *x, const T *w, const float *rstd, int N, int G,
                                      int C, int ld, int accumulate)
{
    int lane = threadIdx.x & 31;
    long grp = (long)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (grp >= (long)N * G) return;
    size_t off = (size_t)(grp / G) * ld + (size_t)(grp % G) * C;
    const T *d = dout + off, *xr = x + off;
    float r = rstd[grp], dot = 0.0f;
    for (int c = lane; c < C; c += 32) dot += act_ld(d + c) * act_ld(w + c) * act_ld(xr + c);
    dot = scp_warp_sum(dot);
    float k = dot * r * r * r / (float)C;
    for (int c = lane; c < C; c += 32) {
        float g = r * act_ld(w + c) * act_ld(d + c) - act_ld(xr + c) * k;
        act_st(dx + off + c, accumulate ? act_ld(dx + off + c) + g : g);
    }
}

template <typename T>
void scp_cuda_rmsnorm_bwd(T *dx, float *dw, const T *dout, const T *x, const T *w, const float *rstd, int N, int G,
                          int C, int ld, int accumulate)
{
    long groups = (long)N * G;
    if (groups == 0) return;
    colsum<T>(dw, dout, x, rstd, ld, G, groups, C, 1);  // first: dx may overwrite dout
    auto kern = rmsnorm_bwd_dx_kernel<T>;
    kern<<<(unsigned)((groups + WARPS - 1) / WARPS), WARPS * 32>>>(dx, dout, x, w, rstd, N, G, C, ld, accumulate);
    SCP_LAUNCHED();
}

// HF rotate_half: (a, b) = (x_i, x_{i + hd/2}) -> (a cos - b sin, b cos + a sin); inverse negates the angle.
// One thread per pair; cos, sin are (T, hd/2) fp32, position of row n is n % T.
template <typename T>
__global__ void rope_kernel(T *x, const float *cos, const float *sin, int N, int T_, int G, int hd, int ld, float sgn)
{
    int half = hd / 2;
    size_t total = (size_t)N * G * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t ng = idx / half;
        int g = (int)(ng % G), n = (int)(ng / G);
        T *p = x + (size_t)n * ld + (size_t)g * hd;
        float c = cos[(size_t)(n % T_) * half + i], s = sgn * sin[(size_t)(n % T_) * half + i];
        float a = act_ld(p + i), b = act_ld(p + i + half);
        act_st(p + i, a * c - b * s);
        act_st(p + i + half, b * c + a * s);
    }
}

template <typename T>
void scp_cuda_rope(T *x, const float *cos, const float *sin, int N, int T_, int G, int hd, int ld, int inverse)
{
    size_t total = (size_t)N * G * (hd / 2);
    if (total == 0) return;
    auto kern = rope_kernel<T>;
    kern<<<scp_cuda_blocks(total, 256), 256>>>(x, cos, sin, N, T_, G, hd, ld, inverse ? -1.0f : 1.0f);
    SCP_LAUNCHED();
}

#define INSTANTIATE(T)                                                                                          \
    template void scp_cuda_rmsnorm_fwd<T>(T *, float *, const T *, const T *, int, int, int, int, float);      \
    template void scp_cuda_rmsnorm_bwd<T>(T *, float *, const T *, const T *, const T *, const float *, int, int, \
                                          int, int, int);                                                       \
    template void scp_cuda_rope<T>(T *, const float *, const float *, int, int, int, int, int, int);            \
    template void scp_cuda_colsum_add<T>(float *, const T *, int, int, int);
INSTANTIATE(float)
INSTANTIATE(bf16)
