// moe_gemm.cu: a layer's experts on the device without the host (SCP_BACKEND_CAP_MOE_GROUPED,
// lib/model/backend_ops.def): the permutation of the M k assignments by expert, and the experts' three GEMMs as
// one launch each over all the blocks of rows. The blocks' row offsets off (nb + 1) and the weights' element
// offsets woff (nw) are read from device memory inside the kernels: the launch geometry is sized by bounds the
// host knows (R rows in all, nb blocks), never by the counts the routing made, so no copy to the host and no
// synchronisation sits between the router and the experts (lib/model/moe.c says where counts do go up).
//
// GEMMs, two kernels each:
//   bf16 storage with 16-byte aligned operands (row strides, K and N multiples of 8; moe_mma_fits, decided at
//     launch): moe_gemm_mma.cu, mma.sync with a cp.async pipeline and 128 x 128 tiles, the fast path;
//   everything else (fp32 storage, odd strides or widths): this file's kernels below. WMMA 16x16x16 bf16 tiles,
//     fp32 accumulation, as attention_tc.cu: a block of 4 warps makes a 64 x 64 output tile, each warp a 32 x 32
//     quarter (2 x 2 fragments); operands are staged 64 x 32 / 32 x 64 at a time in shared memory as bf16 by
//     plain loads (rows past a block's end and columns past the matrix as zeros), so any row stride and alignment
//     is taken. In fp32 storage that rounds the operands to bf16, as cuda-fp32's cuBLAS GEMMs do
//     (CUBLAS_COMPUTE_32F_FAST_16BF); in bf16 storage they are taken as they are. The fp32 tile goes through
//     shared memory to the output, rounded once (act_st).
// Both walk the grid the same way, with tiles of TILE = 64 rows here, 128 there (moe_find_row_tile, moe_gemm.h):
//   fwd, bwd_inp: blockIdx.x walks the row tiles of the blocks in order (block b has ceil(n_b / TILE) of them;
//                 a launch has ceil(R / TILE) + nb, the most any split of R rows into nb blocks needs, and the
//                 spare ones return at once), blockIdx.y the column tiles.
//   bwd_w:        blockIdx = (weight g, row tile of dw, column tile of dw); the block sums the rows of every
//                 block b = g, g + nw, ... in order, then adds its tile to dw once.
// Every output element is written by one thread from fragments summed in a fixed order: deterministic, no
// atomics.
//
// Permutation: a stable counting sort over the N = M k assignments in three launches, its result independent of
// the launch geometry and of the order blocks run in (integer counts, no atomics), equal to the host's counting
// sort (lib/model/cpu/moe_gemm.c): the same off, pos and tok. The assignments are cut into S = ceil(N / 256)
// segments of 256, one per warp, four warps a block (ceil(S / 4) blocks: 32 at N = 4096 x 8), each walked in 8
// rounds of 32 in which __match_any_sync groups the lanes of one expert.
//   count: warp s writes its segment's counts per expert, cnt[e S + s] (cnt (E, S) int32, the backend's scratch;
//          E S = 16384 at N = 32768, E = 128): per round, the lowest lane of each expert's group adds the group.
//   scan:  one block of 1024 threads turns cnt into its exclusive prefix sum in (expert, segment) order, the
//          sorted order: segment s's first place for expert e; off[e] = cnt[e S], off[E] = N. Each thread scans
//          a contiguous chunk of E S / 1024 counts after a shared-memory scan of the chunks' sums.
//   place: warp s walks its segment again in the same rounds: an assignment's place is its segment's next free
//          place of its expert plus its expert's lanes below it in the round; the group's lowest lane then moves
//          that place on. Within a run the places follow the segments, then the rounds, then the lanes: the
//          assignment order.
#include "model/cuda/cuda_internal.h"
#include "model/cuda/moe_gemm.h"

#include <mma.h>

using namespace nvcuda;

namespace {

constexpr int BM = 64, BN = 64, BK = 32;                 // output tile rows, columns; reduction chunk
constexpr int LDA = BK + 8, LDB = BN + 8, LDC = BN + 4;  // shared row strides (WMMA's 256-bit alignment kept)
constexpr int THREADS = 128;                             // 4 warps, 2 x 2 over the tile
constexpr int PERMUTE_WARPS = 4, PERMUTE_THREADS = 32 * PERMUTE_WARPS;   // the permutation's place and count blocks
constexpr int SEG = 256;                     // assignments per warp segment (8 rounds of 32)
constexpr int PERMUTE_SCAN_THREADS = 1024;   // the one block of its scan

enum gemm_mode { FWD, BWD_INP };

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// acc (the warp's 32 x 32) += As (64, BK) rows of the warp @ Bs (BK, 64) columns of the warp.
__device__ __forceinline__ void tile_mma(FragC (&acc)[2][2], const bf16 *As, const bf16 *Bs, int wm, int wn)
{
    for (int ks = 0; ks < BK; ks += 16) {
        FragA a[2];
        FragB b[2];
        for (int i = 0; i < 2; i++) wmma::load_matrix_sync(a[i], As + (wm * 32 + i * 16) * LDA + ks, LDA);
        for (int j = 0; j < 2; j++) wmma::load_matrix_sync(b[j], Bs + ks * LDB + wn * 32 + j * 16, LDB);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
}

// Cs (64, 64; LDC) = the four warps' accumulators.
__device__ __forceinline__ void tile_store(float *Cs, const FragC (&acc)[2][2], int wm, int wn)
{
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(Cs + (wm * 32 + i * 16) * LDC + wn * 32 + j * 16, acc[i][j], LDC,
                                    wmma::mem_row_major);
}

// FWD:     out rows (ldo; N wide) = beta out + a rows (lda; K wide) @ w_b^T, w_b (N, K): the reduction over K.
// BWD_INP: out rows (ldo; K wide) = beta out + a rows (lda; N wide) @ w_b: the reduction over N.
template <typename T, int MODE>
__global__ void __launch_bounds__(THREADS)
    grouped_rows_kernel(T *out, int ldo, const T *a, int lda, const T *w, const int64_t *woff, int nw,
                        const int32_t *off, int nb, int K, int N, float beta)
{
    alignas(32) __shared__ bf16 As[BM * LDA];
    alignas(32) __shared__ bf16 Bs[BK * LDB];
    alignas(32) __shared__ float Cs[BM * LDC];
    __shared__ int tile_b, tile_r0;
    if (threadIdx.x == 0) tile_r0 = moe_find_row_tile<BM>(off, nb, &tile_b);
    __syncthreads();
    const int r0 = tile_r0, b = tile_b;
    if (r0 < 0) return;   // a spare tile (the whole block returns)
    const int rend = off[b + 1], c0 = (int)blockIdx.y * BN;
    const int NC = MODE == FWD ? N : K, KR = MODE == FWD ? K : N;   // output columns, reduction length
    const T *wb = w + woff[b % nw];
    const int warp = threadIdx.x / 32, wm = warp / 2, wn = warp % 2;
    FragC acc[2][2];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);
    for (int k0 = 0; k0 < KR; k0 += BK) {
        for (int e = threadIdx.x; e < BM * BK; e += THREADS) {   // As[i][j] = a (r0 + i, k0 + j)
            const int i = e / BK, j = e % BK, r = r0 + i, kr = k0 + j;
            As[i * LDA + j] = __float2bfloat16_rn(r < rend && kr < KR ? act_ld(a + (size_t)r * lda + kr) : 0.0f);
        }
        for (int e = threadIdx.x; e < BK * BN; e += THREADS) {   // Bs[j][c] = B (k0 + j, c0 + c), along w's rows
            int j, c;
            if (MODE == FWD) c = e / BK, j = e % BK;   // B (kr, c) = w_b (c, kr)
            else j = e / BN, c = e % BN;               // B (kr, c) = w_b (kr, c)
            const int kr = k0 + j, col = c0 + c;
            float v = 0.0f;
            if (kr < KR && col < NC) v = act_ld(wb + (MODE == FWD ? (size_t)col * K + kr : (size_t)kr * K + col));
            Bs[j * LDB + c] = __float2bfloat16_rn(v);
        }
        __syncthreads();
        tile_mma(acc, As, Bs, wm, wn);
        __syncthreads();
    }
    tile_store(Cs, acc, wm, wn);
    __syncthreads();
    for (int e = threadIdx.x; e < BM * BN; e += THREADS) {
        const int i = e / BN, c = e % BN, r = r0 + i, col = c0 + c;
        if (r >= rend || col >= NC) continue;
        T *o = out + (size_t)r * ldo + col;
        const float v = Cs[i * LDC + c];
        act_st(o, beta == 0.0f ? v : beta * act_ld(o) + v);
    }
}

// dw + woff[g] (N, K) += sum over the blocks b = g, g + nw, ... in order of dout rows^T (N, n_b) @ inp rows (n_b, K):
// the tile (n0 .. n0 + 63, k0 .. k0 + 63) of weight g = blockIdx.x.
template <typename T>
__global__ void __launch_bounds__(THREADS)
    grouped_dw_kernel(float *dw, const T *dout, int ldo, const T *inp, int ldi, const int64_t *woff, int nw,
                      const int32_t *off, int nb, int K, int N)
{
    alignas(32) __shared__ bf16 As[BM * LDA];
    alignas(32) __shared__ bf16 Bs[BK * LDB];
    alignas(32) __shared__ float Cs[BM * LDC];
    const int g = (int)blockIdx.x, n0 = (int)blockIdx.y * BM, k0 = (int)blockIdx.z * BN;
    int rows = 0;   // the same in every thread
    for (int b = g; b < nb; b += nw) rows += off[b + 1] > off[b] ? off[b + 1] - off[b] : 0;
    if (rows == 0) return;
    const int warp = threadIdx.x / 32, wm = warp / 2, wn = warp % 2;
    FragC acc[2][2];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);
    for (int b = g; b < nb; b += nw)
        for (int r0 = off[b], rend = off[b + 1]; r0 < rend; r0 += BK) {
            for (int e = threadIdx.x; e < BK * BM; e += THREADS) {   // As[i][j] = dout (r0 + j, n0 + i), along rows
                const int j = e / BM, i = e % BM, r = r0 + j, n = n0 + i;
                As[i * LDA + j] = __float2bfloat16_rn(r < rend && n < N ? act_ld(dout + (size_t)r * ldo + n) : 0.0f);
            }
            for (int e = threadIdx.x; e < BK * BN; e += THREADS) {   // Bs[j][c] = inp (r0 + j, k0 + c)
                const int j = e / BN, c = e % BN, r = r0 + j, kk = k0 + c;
                Bs[j * LDB + c] = __float2bfloat16_rn(r < rend && kk < K ? act_ld(inp + (size_t)r * ldi + kk) : 0.0f);
            }
            __syncthreads();
            tile_mma(acc, As, Bs, wm, wn);
            __syncthreads();
        }
    tile_store(Cs, acc, wm, wn);
    __syncthreads();
    float *dwg = dw + woff[g];
    for (int e = threadIdx.x; e < BM * BN; e += THREADS) {
        const int i = e / BN, c = e % BN, n = n0 + i, kk = k0 + c;
        if (n < N && kk < K) dwg[(size_t)n * K + kk] += Cs[i * LDC + c];
    }
}

// The permutation, its three launches (see the top of the file). A warp's segment is SEG assignments from
// s SEG, walked in rounds of 32 (lane l takes assignment s SEG + 32 r + l of round r); cnt (E, S) int32.
__device__ __forceinline__ int permute_expert(const int32_t *idx, int i, int E)
{
    return (unsigned)idx[i] < (unsigned)E ? idx[i] : 0;   // out of range counts as expert 0
}

// Launch 1: cnt[e S + s] = the number of assignments of expert e in segment s.
__global__ void __launch_bounds__(PERMUTE_THREADS)
    permute_count_kernel(int32_t *cnt, const int32_t *idx, int N, int E, int S)
{
    const int lane = (int)threadIdx.x % 32, s = (int)blockIdx.x * PERMUTE_WARPS + (int)threadIdx.x / 32;
    if (s >= S) return;   // the whole warp
    for (int e = lane; e < E; e += 32) cnt[(size_t)e * S + s] = 0;
    __syncwarp();
    for (int i0 = s * SEG; i0 < min(N, s * SEG + SEG); i0 += 32) {
        const int i = i0 + lane, e = i < N ? permute_expert(idx, i, E) : -1;   // -1: lanes past the end, apart
        const unsigned peers = __match_any_sync(0xffffffffu, e);   // the lanes of this round with expert e
        // the group's lowest lane adds for it: one writer per expert and round, no atomics
        if (e >= 0 && (peers & ((1u << lane) - 1)) == 0) cnt[(size_t)e * S + s] += __popc(peers);
        __syncwarp();
    }
}

// Launch 2 (one block): cnt becomes its exclusive prefix sum in (expert, segment) order, which is the sorted
// order: cnt[e S + s] is the place of segment s's first assignment of expert e, cnt[e S] the start of e's run.
// Thread t sums a contiguous chunk of the E S counts; the block scans the PERMUTE_SCAN_THREADS sums in shared
// memory (Hillis-Steele), then each thread writes its chunk's prefixes. off[e] = cnt[e S], off[E] = the total.
__global__ void __launch_bounds__(PERMUTE_SCAN_THREADS) permute_scan_kernel(int32_t *off, int32_t *cnt, int E, int S)
{
    __shared__ int32_t sums[PERMUTE_SCAN_THREADS];
    const int t = (int)threadIdx.x;
    const size_t L = (size_t)E * S, chunk = (L + PERMUTE_SCAN_THREADS - 1) / PERMUTE_SCAN_THREADS;
    const size_t j0 = min(L, (size_t)t * chunk), j1 = min(L, j0 + chunk);
    int32_t mine = 0;
    for (size_t j = j0; j < j1; j++) mine += cnt[j];
    sums[t] = mine;
    __syncthreads();
    for (int d = 1; d < PERMUTE_SCAN_THREADS; d *= 2) {   // sums[t] becomes the inclusive prefix of the sums
        const int32_t left = t >= d ? sums[t - d] : 0;
        __syncthreads();
        sums[t] += left;
        __syncthreads();
    }
    int32_t run = sums[t] - mine;
    for (size_t j = j0; j < j1; j++) {
        const int32_t c = cnt[j];
        cnt[j] = run;
        run += c;
    }
    __syncthreads();   // the block's global writes seen by the whole block
    for (int e = t; e < E; e += PERMUTE_SCAN_THREADS) off[e] = cnt[(size_t)e * S];
    if (t == 0) off[E] = sums[PERMUTE_SCAN_THREADS - 1];
}

// Launch 3: each warp walks its segment again, in order; an assignment's place is its segment's next free place
// of its expert (cnt[e S + s]) plus the number of its expert's lanes below it in the round: assignment order.
__global__ void __launch_bounds__(PERMUTE_THREADS)
    permute_place_kernel(int32_t *pos, int32_t *tok, int32_t *cnt, const int32_t *idx, int N, int k, int E, int S)
{
    const int lane = (int)threadIdx.x % 32, s = (int)blockIdx.x * PERMUTE_WARPS + (int)threadIdx.x / 32;
    if (s >= S) return;
    for (int i0 = s * SEG; i0 < min(N, s * SEG + SEG); i0 += 32) {
        const int i = i0 + lane, e = i < N ? permute_expert(idx, i, E) : -1;
        const unsigned peers = __match_any_sync(0xffffffffu, e), below = __popc(peers & ((1u << lane) - 1));
        int32_t *next = e >= 0 ? cnt + (size_t)e * S + s : nullptr;
        if (e >= 0) {
            const int p = *next + (int)below;
            pos[i] = p;
            tok[p] = i / k;
        }
        __syncwarp();   // every lane has read its expert's next place before the group's lowest lane moves it
        if (e >= 0 && below == 0) *next += __popc(peers);
        __syncwarp();
    }
}

}  // namespace

void scp_cuda_moe_permute(int32_t *off, int32_t *pos, int32_t *tok, const int32_t *idx, int M, int k, int E)
{
    if (E < 1) return;
    const int N = M * k, S = N > 0 ? (N + SEG - 1) / SEG : 1;   // one segment at N = 0, which writes off's zeros
    int32_t *cnt = (int32_t *)scp_cuda_scratch((size_t)E * S * sizeof(int32_t));
    const unsigned blocks = (unsigned)((S + PERMUTE_WARPS - 1) / PERMUTE_WARPS);
    permute_count_kernel<<<blocks, PERMUTE_THREADS>>>(cnt, idx, N, E, S);
    SCP_LAUNCHED();
    permute_scan_kernel<<<1, PERMUTE_SCAN_THREADS>>>(off, cnt, E, S);
    SCP_LAUNCHED();
    permute_place_kernel<<<blocks, PERMUTE_THREADS>>>(pos, tok, cnt, idx, N, k, E, S);
    SCP_LAUNCHED();
}

template <typename T>
void scp_cuda_moe_gemm_fwd(T *out, int ldo, const T *inp, int ldi, const T *w, const int64_t *woff, int nw,
                           const int32_t *off, int nb, int R, int K, int N, float beta)
{
    if (R < 1 || nb < 1 || N < 1) return;
    if constexpr (std::is_same<T, bf16>::value)
        if (moe_mma_fits({out, inp, w}, {ldo, ldi, K, N}))
            return scp_cuda_moe_mma_fwd(out, ldo, inp, ldi, w, woff, nw, off, nb, R, K, N, beta);
    dim3 grid((unsigned)((R + BM - 1) / BM + nb), (unsigned)((N + BN - 1) / BN));
    auto kern = grouped_rows_kernel<T, FWD>;
    kern<<<grid, THREADS>>>(out, ldo, inp, ldi, w, woff, nw, off, nb, K, N, beta);
    SCP_LAUNCHED();
}

template <typename T>
void scp_cuda_moe_gemm_bwd_inp(T *dinp, int ldi, const T *dout, int ldo, const T *w, const int64_t *woff, int nw,
                               const int32_t *off, int nb, int R, int K, int N, float beta)
{
    if (R < 1 || nb < 1 || K < 1) return;
    if constexpr (std::is_same<T, bf16>::value)
        if (moe_mma_fits({dinp, dout, w}, {ldi, ldo, K, N}))
            return scp_cuda_moe_mma_bwd_inp(dinp, ldi, dout, ldo, w, woff, nw, off, nb, R, K, N, beta);
    dim3 grid((unsigned)((R + BM - 1) / BM + nb), (unsigned)((K + BN - 1) / BN));
    auto kern = grouped_rows_kernel<T, BWD_INP>;
    kern<<<grid, THREADS>>>(dinp, ldi, dout, ldo, w, woff, nw, off, nb, K, N, beta);
    SCP_LAUNCHED();
}

template <typename T>
void scp_cuda_moe_gemm_bwd_w(float *dw, const T *dout, int ldo, const T *inp, int ldi, const int64_t *woff, int nw,
                             const int32_t *off, int nb, int R, int K, int N)
{
    if (R < 1 || nb < 1 || nw < 1 || N < 1 || K < 1) return;
    if constexpr (std::is_same<T, bf16>::value)
        if (moe_mma_fits({dout, inp}, {ldo, ldi, K, N}))
            return scp_cuda_moe_mma_bwd_w(dw, dout, ldo, inp, ldi, woff, nw, off, nb, R, K, N);
    dim3 grid((unsigned)nw, (unsigned)((N + BM - 1) / BM), (unsigned)((K + BN - 1) / BN));
    auto kern = grouped_dw_kernel<T>;
    kern<<<grid, THREADS>>>(dw, dout, ldo, inp, ldi, woff, nw, off, nb, K, N);
    SCP_LAUNCHED();
}

#define INSTANTIATE(T)                                                                                           \
    template void scp_cuda_moe_gemm_fwd<T>(T *, int, const T *, int, const T *, const int64_t *, int, const int32_t *, \
                                           int, int, int, int, float);                                           \
    template void scp_cuda_moe_gemm_bwd_inp<T>(T *, int, const T *, int, const T *, const int64_t *, int,         \
                                               const int32_t *, int, int, int, int, float);                      \
    template void scp_cuda_moe_gemm_bwd_w<T>(float *, const T *, int, const T *, int, const int64_t *, int,       \
                                             const int32_t *, int, int, int, int);
INSTANTIATE(float)
INSTANTIATE(bf16)
