// norm.cu: RMSNorm forward/backward (hidden state, G = 1, and Qwen3's per-head q/k norm, G = heads), RoPE, and
// the deterministic column sum that the weight gradients of norms and biases share. Rows: row n (n < N) starts
// at x + n * ld and holds G groups of C elements; one warp owns one group. Activations and the norm weight are
// T (float or bf16, cuda_internal.h), read widened; rstd and dw are fp32; everything is computed in fp32, as HF
// computes norms.
#include "model/cuda/cuda_internal.h"

#define WARPS 8  // warps per block for the one-warp-per-group kernels

// Every kernel here is also a template on V, the elements one access moves (cuda_internal.h act_ldv: 16 bytes
// where the launcher found rows, groups and pointers aligned for it, else 1): these kernels only stream their
// rows, so the width of the accesses, not arithmetic, sets their speed.

// out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps); rstd is (N * G). Lane l owns elements l V .. l V + V - 1
// of every 32 V.
template <typename T, int V>
__global__ void rmsnorm_fwd_kernel(T *out, float *rstd, const T *x, const T *w, int N, int G, int C, int ld, float eps)
{
    int lane = threadIdx.x & 31;
    long grp = (long)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (grp >= (long)N * G) return;
    size_t off = (size_t)(grp / G) * ld + (size_t)(grp % G) * C;
    const T *xr = x + off;
    float ss = 0.0f;
    for (int c = lane * V; c < C; c += 32 * V) {
        float v[V];
        act_ldv<V>(xr + c, v);
#pragma unroll
        for (int j = 0; j < V; j++) ss += v[j] * v[j];
    }
    ss = scp_warp_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (lane == 0) rstd[grp] = r;
    for (int c = lane * V; c < C; c += 32 * V) {
        float v[V], g[V];
        act_ldv<V>(xr + c, v);
        act_ldv<V>(w + c, g);
#pragma unroll
        for (int j = 0; j < V; j++) v[j] = v[j] * r * g[j];
        act_stv<V>(out + off + c, v);
    }
}

template <typename T>
void scp_cuda_rmsnorm_fwd(T *out, float *rstd, const T *x, const T *w, int N, int G, int C, int ld, float eps)
{
    long groups = (long)N * G;
    if (groups == 0) return;
    scp_cuda_vec_dispatch<T>(scp_cuda_vec_width<T>({out, x, w}, {C, ld}), [&](auto vc) {
        auto kern = rmsnorm_fwd_kernel<T, decltype(vc)::value>;
        kern<<<(unsigned)((groups + WARPS - 1) / WARPS), WARPS * 32>>>(out, rstd, x, w, N, G, C, ld, eps);
    });
    SCP_LAUNCHED();
}

// Deterministic column sums in two passes, no atomics: the same bits on every run.
//   partial (chunks, C): block (bx, chunk) has TX x TY threads; thread (tx, ty) owns the V columns from
//     (by TX + tx) V and sums rows r0 + ty, r0 + ty + TY, ... of the chunk's `per` rows in that order; the block
//     then adds its TY sums of a column in ty order (shared memory).
//   finish (scp_cuda_colsum_finish): one warp per column adds the chunks, lane l taking chunks l, l + 32, ...,
//     then a fixed butterfly.
// Rows: row r is group r % G of source row r / G, at (r / G) ld + (r % G) C (G = 1: plain rows ld apart).
// mode 0: partial of src; mode 1: partial of dout * x * rstd (RMSNorm's dw). src and x are T, partial fp32.
#define COLSUM_THREADS 256
#define COLSUM_ROWS_PER_THREAD 32  // each thread's share of a chunk; more when there would be over MAX_CHUNKS
#define COLSUM_MAX_CHUNKS 8192
#define COLSUM_UNROLL 4            // rows whose loads are in flight together

template <typename T, int V>
__global__ void colsum_partial_kernel(float *partial, const T *src, const T *x, const float *rstd, int ld, int G,
                                      long rows, int C, int mode, long per)
{
    extern __shared__ float smem[];  // (TY, TX, V): the threads' sums
    const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
    const int c = (blockIdx.y * TX + tx) * V;
    const long r0 = (long)blockIdx.x * per, r1 = r0 + per < rows ? r0 + per : rows;
    float s[V];
#pragma unroll
    for (int j = 0; j < V; j++) s[j] = 0.0f;
    if (c < C) {
        // (n, g) of row r, stepped by TY rows without a division per row
        long r = r0 + ty, n = r / G;
        int g = (int)(r % G);
        const long dn = TY / G;
        const int dg = TY % G;
        while (r < r1) {
            float a[COLSUM_UNROLL][V], b[COLSUM_UNROLL][V], rs[COLSUM_UNROLL];
            int got = 0;
#pragma unroll
            for (int u = 0; u < COLSUM_UNROLL; u++) {
                if (r < r1) {
                    const size_t off = (size_t)n * ld + (size_t)g * C + c;
                    act_ldv<V>(src + off, a[u]);
                    if (mode) {
                        act_ldv<V>(x + off, b[u]);
                        rs[u] = rstd[r];
                    }
                    got = u + 1;
                    r += TY, n += dn, g += dg;
                    if (g >= G) g -= G, n++;
                }
            }
#pragma unroll
            for (int u = 0; u < COLSUM_UNROLL; u++)
                if (u < got)
#pragma unroll
                    for (int j = 0; j < V; j++) s[j] += mode ? a[u][j] * b[u][j] * rs[u] : a[u][j];
        }
    }
#pragma unroll
    for (int j = 0; j < V; j++) smem[((size_t)ty * TX + tx) * V + j] = s[j];
    __syncthreads();
    if (ty == 0 && c < C) {
        for (int j = 0; j < V; j++) {
            float t = 0.0f;
            for (int k = 0; k < TY; k++) t += smem[((size_t)k * TX + tx) * V + j];
            partial[(size_t)blockIdx.x * C + c + j] = t;
        }
    }
}

__global__ void colsum_finish_kernel(float *dst, const float *partial, long chunks, int C, int ld)
{
    const int lane = threadIdx.x & 31;
    const long c = (long)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    if (c >= C) return;
    float s = 0.0f;
    for (long k = lane; k < chunks; k += 32) s += partial[(size_t)k * ld + c];
    s = scp_warp_sum(s);
    if (lane == 0) dst[c] += s;
}

void scp_cuda_colsum_finish(float *dst, const float *partial, long chunks, int C, int ld)
{
    if (chunks == 0 || C == 0) return;
    colsum_finish_kernel<<<(unsigned)((C + 7) / 8), 256>>>(dst, partial, chunks, C, ld);
    SCP_LAUNCHED();
}

template <typename T>
static void colsum(float *dst, const T *src, const T *x, const float *rstd, int ld, int G, long rows, int C, int mode)
{
    if (rows == 0 || C == 0) return;
    const int v = scp_cuda_vec_width<T>({src, x}, {C, ld});
    // TX: threads across the C / v column vectors (a power of two, up to 256); TY = 256 / TX across rows.
    const int tc = (C + v - 1) / v;
    int tx = 1;
    while (tx < tc && tx < COLSUM_THREADS) tx *= 2;
    const int ty = COLSUM_THREADS / tx;
    long per = (long)ty * COLSUM_ROWS_PER_THREAD;
    // over the cap: the fewest rows per chunk that keep to it, in whole rounds of ty
    if ((rows + per - 1) / per > COLSUM_MAX_CHUNKS)
        per = ((rows + COLSUM_MAX_CHUNKS - 1) / COLSUM_MAX_CHUNKS + ty - 1) / ty * ty;
    const long chunks = (rows + per - 1) / per;
    float *partial = (float *)scp_cuda_scratch((size_t)chunks * C * sizeof(float));
    const dim3 grid((unsigned)chunks, (unsigned)((tc + tx - 1) / tx)), block((unsigned)tx, (unsigned)ty);
    scp_cuda_vec_dispatch<T>(v, [&](auto vc) {
        constexpr int V = decltype(vc)::value;
        auto kern = colsum_partial_kernel<T, V>;
        const size_t smem_bytes = (size_t)COLSUM_THREADS * V * sizeof(float);
        kern<<<grid, block, smem_bytes>>>(partial, src, x, rstd, ld, G, rows, C, mode, per);
    });
    SCP_LAUNCHED();
    scp_cuda_colsum_finish(dst, partial, chunks, C, C);
}

template <typename T> void scp_cuda_colsum_add(float *dst, const T *src, int ld, int rows, int C)
{
    colsum<T>(dst, src, NULL, NULL, ld, 1, rows, C, 0);
}

// k = r^3 / C * sum_j dy_j w_j x_j of one row (a warp's: lane takes its V columns of every 32 V), the factor of x in
// RMSNorm's dx.
template <typename T, int V>
__device__ static inline float rmsnorm_bwd_k(const T *d, const T *w, const T *xr, float r, int C, int lane)
{
    float dot = 0.0f;
    for (int c = lane * V; c < C; c += 32 * V) {
        float dv[V], wv[V], xv[V];
        act_ldv<V>(d + c, dv);
        act_ldv<V>(w + c, wv);
        act_ldv<V>(xr + c, xv);
#pragma unroll
        for (int j = 0; j < V; j++) dot += dv[j] * wv[j] * xv[j];
    }
    return scp_warp_sum(dot) * r * r * r / (float)C;
}

// One row's dx_c = r w_c dy_c - x_c k, written over dxr or added into it (dxr may be d: each lane reads its own
// columns before writing them, after the warp's dot product). Where sums is given (a warp's (Cpad) sums of the
// one-pass kernel below, in its layout), the row's dw terms dy_c x_c r are added into it.
template <typename T, int V>
__device__ static inline void rmsnorm_bwd_row(T *dxr, const T *d, const T *w, const T *xr, float r, float k, int C,
                                              int lane, int accumulate, float *sums)
{
    for (int c = lane * V; c < C; c += 32 * V) {
        float dv[V], wv[V], xv[V], g[V];
        act_ldv<V>(d + c, dv);
        act_ldv<V>(w + c, wv);
        act_ldv<V>(xr + c, xv);
        if (accumulate) act_ldv<V>(dxr + c, g);
        float *acc = sums ? sums + (c - lane * V) + lane : NULL;   // the word of (c, j = 0); element j is 32 j on
#pragma unroll
        for (int j = 0; j < V; j++) {
            if (acc) acc[32 * j] += dv[j] * xv[j] * r;
            const float t = r * wv[j] * dv[j] - xv[j] * k;
            g[j] = accumulate ? g[j] + t : t;
        }
        act_stv<V>(dxr + c, g);
    }
}

// The two-pass path's dx: one warp a group.
template <typename T, int V>
__global__ void rmsnorm_bwd_dx_kernel(T *dx, const T *dout, const T *x, const T *w, const float *rstd, int N, int G,
                                      int C, int ld, int accumulate)
{
    int lane = threadIdx.x & 31;
    long grp = (long)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (grp >= (long)N * G) return;
    size_t off = (size_t)(grp / G) * ld + (size_t)(grp % G) * C;
    const T *d = dout + off, *xr = x + off;
    const float r = rstd[grp];
    rmsnorm_bwd_row<T, V>(dx + off, d, w, xr, r, rmsnorm_bwd_k<T, V>(d, w, xr, r, C, lane), C, lane, accumulate, NULL);
}

// The hidden state's backward (G = 1) in one pass over dout and x: each warp takes rows and makes their dx as
// rmsnorm_bwd_dx_kernel does, adding their dw terms (dout_c x_c r) into its own C sums in shared memory; the block
// then adds its warps' sums in warp order into partial row b, and colsum_finish adds the rows in order (dw's bits
// depend on N and C alone). Against the two-pass path this reads dout and x once instead of twice.
// Block b takes rows b per .. b per + per - 1, warp w the rows w, w + warps, ... of them. A warp's sums are laid
// out so that the 32 lanes adding their element j of a vector touch 32 consecutive words (no bank conflicts):
// column c = 32 V q + V l + j (lane l, vector q) is word 32 V q + 32 j + l of the (Cpad = C rounded up to 32 V)
// row.
#define RMSB_SMEM_FLOATS (16 * 1024)   // shared floats a block's sums may take (64 KiB): 8 warps to C = 2048, 4 to 4096
#define RMSB_CHUNKS 512                // blocks, about: the (chunks, C) partial sums stay a small share of the bytes

__device__ static inline int rmsb_word(int c, int V)
{
    return c / (32 * V) * (32 * V) + c % V * 32 + c % (32 * V) / V;
}

template <typename T, int V>
__global__ void rmsnorm_bwd_fused_kernel(T *dx, float *partial, const T *dout, const T *x, const T *w,
                                         const float *rstd, int N, int C, int Cpad, int ld, int accumulate, long per)
{
    extern __shared__ float smem[];  // (warps, Cpad): each warp's dw sums
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    float *mine = smem + (size_t)warp * Cpad;
    for (int i = threadIdx.x; i < warps * Cpad; i += blockDim.x) smem[i] = 0.0f;
    __syncthreads();
    const long n0 = (long)blockIdx.x * per, n1 = n0 + per < N ? n0 + per : N;
    for (long n = n0 + warp; n < n1; n += warps) {
        const size_t off = (size_t)n * ld;
        const T *d = dout + off, *xr = x + off;
        const float r = rstd[n];
        rmsnorm_bwd_row<T, V>(dx + off, d, w, xr, r, rmsnorm_bwd_k<T, V>(d, w, xr, r, C, lane), C, lane, accumulate,
                              mine);
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const int q = rmsb_word(c, V);
        float t = 0.0f;
        for (int u = 0; u < warps; u++) t += smem[(size_t)u * Cpad + q];
        partial[(size_t)blockIdx.x * C + c] = t;
    }
}

template <typename T>
void scp_cuda_rmsnorm_bwd(T *dx, float *dw, const T *dout, const T *x, const T *w, const float *rstd, int N, int G,
                          int C, int ld, int accumulate)
{
    long groups = (long)N * G;
    if (groups == 0) return;
    const int v = scp_cuda_vec_width<T>({dx, dout, x, w}, {C, ld});
    const int Cpad = (C + 32 * v - 1) / (32 * v) * (32 * v);
    if (G == 1 && 4 * Cpad <= RMSB_SMEM_FLOATS) {
        const int warps = 8 * Cpad <= RMSB_SMEM_FLOATS ? 8 : 4;
        const long per = (N + RMSB_CHUNKS - 1) / RMSB_CHUNKS, chunks = (N + per - 1) / per;
        float *partial = (float *)scp_cuda_scratch((size_t)chunks * C * sizeof(float));
        const size_t smem = (size_t)warps * Cpad * sizeof(float);
        scp_cuda_vec_dispatch<T>(v, [&](auto vc) {
            auto kern = rmsnorm_bwd_fused_kernel<T, decltype(vc)::value>;
            smem_optin(kern, smem);
            kern<<<(unsigned)chunks, warps * 32, smem>>>(dx, partial, dout, x, w, rstd, N, C, Cpad, ld, accumulate,
                                                         per);
        });
        SCP_LAUNCHED();
        scp_cuda_colsum_finish(dw, partial, chunks, C, C);
        return;
    }
    colsum<T>(dw, dout, x, rstd, ld, G, groups, C, 1);  // first: dx may overwrite dout
    scp_cuda_vec_dispatch<T>(scp_cuda_vec_width<T>({dx, dout, x, w}, {C, ld}), [&](auto vc) {
        auto kern = rmsnorm_bwd_dx_kernel<T, decltype(vc)::value>;
        kern<<<(unsigned)((groups + WARPS - 1) / WARPS), WARPS * 32>>>(dx, dout, x, w, rstd, N, G, C, ld, accumulate);
    });
    SCP_LAUNCHED();
}

// HF rotate_half: (a, b) = (x_i, x_{i + hd/2}) -> (a cos - b sin, b cos + a sin); inverse negates the angle.
// cos, sin are (T, hd/2) fp32, position of row n is n % T. One block per row (grid-stride over rows), its
// threads over the row's G hd/2 pairs, V consecutive pairs (i .. i + V - 1) per thread.
template <typename T, int V>
__global__ void rope_kernel(T *x, const float *cos, const float *sin, int N, int T_, int G, int hd, int ld, float sgn)
{
    const int half = hd / 2, per_row = G * half / V;
    for (long n = blockIdx.x; n < N; n += gridDim.x) {
        const float *cr = cos + (size_t)(n % T_) * half, *sr = sin + (size_t)(n % T_) * half;
        for (int t = threadIdx.x; t < per_row; t += blockDim.x) {
            const int g = t * V / half, i = t * V - g * half;
            T *p = x + (size_t)n * ld + (size_t)g * hd + i;
            float a[V], b[V];
            act_ldv<V>(p, a);
            act_ldv<V>(p + half, b);
#pragma unroll
            for (int j = 0; j < V; j++) {
                const float c = cr[i + j], s = sgn * sr[i + j], aj = a[j];
                a[j] = aj * c - b[j] * s;
                b[j] = b[j] * c + aj * s;
            }
            act_stv<V>(p, a);
            act_stv<V>(p + half, b);
        }
    }
}

template <typename T>
void scp_cuda_rope(T *x, const float *cos, const float *sin, int N, int T_, int G, int hd, int ld, int inverse)
{
    const int half = hd / 2;
    if ((size_t)N * G * half == 0) return;
    scp_cuda_vec_dispatch<T>(scp_cuda_vec_width<T>({x}, {half, ld}), [&](auto vc) {
        auto kern = rope_kernel<T, decltype(vc)::value>;
        kern<<<scp_cuda_blocks((size_t)N, 1), 128>>>(x, cos, sin, N, T_, G, hd, ld, inverse ? -1.0f : 1.0f);
    });
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
