// moe_gemm_mma.cu: the grouped expert GEMMs of bf16 storage (moe_gemm.cu's entry points send here the calls whose
// operands are 16-byte aligned, with row strides and widths multiples of 8 elements) on mma.sync.m16n8k16 with
// operands staged by cp.async (lib/model/cuda/warp_mma.h). The blocks' row offsets and the weights' offsets are
// read from device memory, the grid sized by bounds the host knows, as in moe_gemm.cu (its top comment).
//
// A block of 8 warps makes a 128 x 128 output tile, fp32 accumulators in registers; warp w the 32 x 64 piece at
// rows 32 (w / 2), columns 64 (w % 2): 2 m16 x 8 n8 fragments (64 accumulators a thread), per k16 step 2 ldmatrix.x4
// of A, 4 of B and 16 mma. 32 x 64 rather than 64 x 32 (the same loads and mma per step): a block of rows is ragged
// (an expert's rows end anywhere), and a warp whose 32 rows all lie past its block's end skips its math; with
// 64-row warps half the block would compute zeros whenever the block's last tile holds at most 64 rows.
//
// The reduction runs in slices of 32 through a ring of 3 shared buffers (cp.async, zero fill past the rows and
// columns of the operands): slice s + 2 is in flight while slice s is multiplied, one barrier per slice. Each
// operand's slice is staged in the orientation it has in global memory, rows padded by 16 bytes so that the 8 row
// addresses of an ldmatrix fall in 8 different 16-byte bank groups:
//   a (128, 32) tile, 128 rows of 32 along the reduction, row stride LDR = 40 (80 bytes): ldmatrix;
//   a (32, 128) tile, 32 rows of the reduction, row stride LDC = 136 (272 bytes): ldmatrix.trans.
//   fwd:      out (r, c) = sum_k inp (r, k) w_b (c, k):   A inp rows (128, 32),  B w_b rows (128, 32)
//   bwd_inp:  dinp (r, k) = sum_n dout (r, n) w_b (n, k): A dout rows (128, 32), B w_b (32, 128), .trans
//   bwd_w:    dw (n, k) += sum_r dout (r, n) inp (r, k):  A dout (32, 128), .trans; B inp (32, 128), .trans
// Shared memory: 3 stages x 2 operands x 128 x 40 bf16 = 60 KiB and 16 bytes, all dynamic (opted in above 48 KiB;
// no static shared variable sits before the ring, which starts 16-byte aligned with the dynamic memory); with at
// most 128 registers a thread (__launch_bounds__(256, 2)) two blocks share an SM.
//
// The epilogue writes each accumulator pair from registers, rounded once to bf16 (beta * out + the sum, as
// act_st does it) as one bf16x2, or adds it to fp32 dw (one float2 where dw's weight starts 8-byte aligned). A
// weight at an offset that is not 16-byte aligned (woff is in device memory, unknown at launch) is staged by that
// block with plain loads into the same buffers.
// Determinism: every output element is one thread's, summed slice after slice in a fixed order; bwd_w's slices
// run over the rows of blocks wg, wg + nw, ... in order.
#include "model/cuda/cuda_internal.h"
#include "model/cuda/moe_gemm.h"
#include "model/cuda/warp_mma.h"

namespace {

constexpr int TM = 128, TN = 128, TK = 32;   // a block's output tile (TM, TN); the reduction slice
constexpr int STAGES = 3;                    // the ring of shared buffers: STAGES - 1 slices in flight ahead
constexpr int THREADS = 256;                 // 8 warps, 4 (rows) x 2 (columns)
constexpr int WM = 32, WN = 64, MI = WM / 16, NJ = WN / 8;   // a warp's piece; its m16 and n8 fragments
constexpr int LDR = TK + 8;                  // row stride of a (128, 32) tile
constexpr int LDC = TN + 8;                  // row stride of a (32, 128) tile
constexpr int OPERAND = TM * LDR;            // elements of one operand's buffer, the larger of the two tiles
constexpr size_t RING = (size_t)STAGES * 2 * OPERAND * sizeof(bf16);   // bytes of the ring
constexpr size_t SMEM = RING + 16;   // and the row tile's block and first row (rows_mma_kernel)
static_assert(TK * LDC <= OPERAND && TM == TN, "both tile shapes fit one buffer");
static_assert(RING == 61440, "shared memory size changed: update the comment at the top");

enum mma_mode { FWD, BWD_INP };

// 16 bytes (8 bf16) from src to shared dst, zeros where !in. vec: src 16-byte aligned, a cp.async in the thread's
// current group; otherwise plain loads and one 16-byte store (src then needs no alignment).
__device__ __forceinline__ void copy16(bf16 *dst, const bf16 *src, bool in, bool vec)
{
    if (vec) {
        cp_async_zfill_16(dst, src, in);
        return;
    }
    bf16 v[8];
    for (int j = 0; j < 8; j++) v[j] = in ? src[j] : __float2bfloat16_rn(0.0f);
    uint4 u;
    memcpy(&u, v, sizeof u);
    *(uint4 *)dst = u;
}

// dst (R, LD) = src (row stride ld) rows r0 .. r0 + R - 1, columns c0 .. c0 + C - 1; zeros at rows >= rend and
// columns >= cend (a multiple of 8). R C / 8 chunks of 16 bytes, two per thread, C / 8 threads to a row.
template <int R, int C, int LD>
__device__ __forceinline__ void stage_tile(bf16 *dst, const bf16 *src, size_t ld, int r0, int rend, int c0, int cend,
                                           bool vec)
{
    for (int e = (int)threadIdx.x; e < R * C / 8; e += THREADS) {
        const int i = e / (C / 8), c = e % (C / 8) * 8;
        const bool in = r0 + i < rend && c0 + c < cend;
        copy16(dst + i * LD + c, in ? src + (size_t)(r0 + i) * ld + c0 + c : src, in, vec);
    }
}

// The two tile shapes: (128, LDR) of 128 rows by the slice's 32 columns (stage_rows: rows r0 .., columns k0 ..),
// and (32, LDC) of the slice's 32 rows by 128 columns (stage_cols: rows k0 .., columns c0 ..).
__device__ __forceinline__ void stage_rows(bf16 *dst, const bf16 *src, size_t ld, int r0, int rend, int k0, int kend,
                                           bool vec)
{
    stage_tile<TM, TK, LDR>(dst, src, ld, r0, rend, k0, kend, vec);
}
__device__ __forceinline__ void stage_cols(bf16 *dst, const bf16 *src, size_t ld, int k0, int kend, int c0, int cend,
                                           bool vec)
{
    stage_tile<TK, TN, LDC>(dst, src, ld, k0, kend, c0, cend, vec);
}

// The A operand of one mma (rows m .. m + 15, reduction ks .. ks + 15 of the slice; warp_mma.h's a[0..3]): from a
// (128, LDR) tile s[m][k] (matrices: rows 0-7 / 8-15 by lanes 8-15 / 24-31, columns 8-15 by lanes 16-31), or
// TRANS from a (32, LDC) tile s[k][m] (each 8 x 8 matrix transposed: the same four in the same order).
template <bool TRANS> __device__ __forceinline__ void frag_a(uint32_t a[4], const bf16 *s, int m, int ks, int lane)
{
    if (!TRANS) ldmatrix_x4(a, s + (m + lane % 8 + lane / 8 % 2 * 8) * LDR + ks + lane / 16 * 8);
    else ldmatrix_x4_trans(a, s + (ks + lane % 8 + lane / 16 * 8) * LDC + m + lane / 8 % 2 * 8);
}

// The B operands of two mma (columns n .. n + 7 in b[0..1], n + 8 .. n + 15 in b[2..3]; reduction ks .. ks + 15):
// from a (128, LDR) tile s[n][k] (w_b's rows), or TRANS from a (32, LDC) tile s[k][n].
template <bool TRANS> __device__ __forceinline__ void frag_b(uint32_t b[4], const bf16 *s, int n, int ks, int lane)
{
    if (!TRANS) ldmatrix_x4(b, s + (n + lane % 8 + lane / 16 * 8) * LDR + ks + lane / 8 % 2 * 8);
    else ldmatrix_x4_trans(b, s + (ks + lane % 8 + lane / 8 % 2 * 8) * LDC + n + lane / 16 * 8);
}

// acc (the warp's 32 x 64 at rows wm WM, columns wn WN of the tile) += A (128 x 32 slice) B (32 x 128 slice).
template <bool TA, bool TB>
__device__ __forceinline__ void slice_mma(float (&acc)[MI][NJ][4], const bf16 *As, const bf16 *Bs, int wm, int wn,
                                          int lane)
{
#pragma unroll
    for (int ks = 0; ks < TK; ks += 16) {
        uint32_t a[MI][4], b[NJ / 2][4];
#pragma unroll
        for (int i = 0; i < MI; i++) frag_a<TA>(a[i], As, wm * WM + i * 16, ks, lane);
#pragma unroll
        for (int j = 0; j < NJ / 2; j++) frag_b<TB>(b[j], Bs, wn * WN + j * 16, ks, lane);
#pragma unroll
        for (int i = 0; i < MI; i++)
#pragma unroll
            for (int j = 0; j < NJ; j++) mma_m16n8k16_bf16(acc[i][j], a[i], &b[j / 2][j % 2 * 2]);
    }
}

// f(row, col, v0, v1) for each pair of a warp's accumulators: the sums of (row, col) and (row, col + 1) of the
// block's 128 x 128 tile, the warp's piece at (wm WM, wn WN); fragment (i, j) holds rows g and g + 8, columns 2t
// and 2t + 1 (g = lane / 4, t = lane % 4; warp_mma.h).
template <typename F>
__device__ __forceinline__ void for_each_pair(const float (&acc)[MI][NJ][4], int wm, int wn, int lane, F f)
{
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                f(wm * WM + i * 16 + g + 8 * h, wn * WN + j * 8 + 2 * t, acc[i][j][2 * h], acc[i][j][2 * h + 1]);
}

// The slices 0 .. S - 1 through the ring: load(s, buf) issues slice s's copies into buffer buf = s % STAGES (called
// in slice order), math(buf) multiplies a landed slice. The barrier after each wait makes every thread's copies of
// slice s visible and tells that every warp is done with slice s - 1, whose buffer the next load refills. A group
// is committed every round, empty or not, so that "all but STAGES - 2 groups done" always means slice s landed.
template <typename Load, typename Math> __device__ __forceinline__ void run_slices(int S, Load load, Math math)
{
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < S) load(s, s);
        cp_async_commit();
    }
    for (int s = 0; s < S; s++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int next = s + STAGES - 1;
        if (next < S) load(next, next % STAGES);
        cp_async_commit();
        math(s % STAGES);
    }
    cp_async_wait<0>();
}

// FWD:     out rows (ldo; N wide) = beta out + a rows (lda; K wide) @ w_b^T, w_b (N, K).
// BWD_INP: out rows (ldo; K wide) = beta out + a rows (lda; N wide) @ w_b.
// blockIdx.x: the row tile of the blocks in order (moe_find_row_tile), blockIdx.y: the column tile.
template <int MODE>
__global__ void __launch_bounds__(THREADS, 2)
    rows_mma_kernel(bf16 *out, int ldo, const bf16 *a, int lda, const bf16 *w, const int64_t *woff, int nw,
                    const int32_t *off, int nb, int K, int N, float beta)
{
    extern __shared__ float smem[];
    bf16 *ring = (bf16 *)smem;   // (STAGES, 2, OPERAND): A then B of each slice
    int *tile = (int *)((char *)smem + RING);   // the row tile's first row and block, from thread 0
    if (threadIdx.x == 0) tile[0] = moe_find_row_tile<TM>(off, nb, &tile[1]);
    __syncthreads();
    const int r0 = tile[0], b = tile[1];
    if (r0 < 0) return;   // a spare tile (the whole block returns)
    const int rend = off[b + 1], c0 = (int)blockIdx.y * TN;
    const int NC = MODE == FWD ? N : K, KR = MODE == FWD ? K : N;   // output columns, reduction length
    const bf16 *wb = w + woff[b % nw];
    const bool wvec = (uintptr_t)wb % 16 == 0;
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32, wm = warp / 2, wn = warp % 2;
    const bool active = r0 + wm * WM < rend && c0 + wn * WN < NC;   // warp-uniform: its piece holds output
    float acc[MI][NJ][4] = {};
    run_slices(
        (KR + TK - 1) / TK,
        [&](int s, int buf) {
            bf16 *As = ring + (size_t)buf * 2 * OPERAND, *Bs = As + OPERAND;
            const int k0 = s * TK;
            stage_rows(As, a, (size_t)lda, r0, rend, k0, KR, true);
            if (MODE == FWD) stage_rows(Bs, wb, (size_t)K, c0, N, k0, K, wvec);   // B (k, c) = w_b (c, k)
            else stage_cols(Bs, wb, (size_t)K, k0, N, c0, K, wvec);              // B (k, c) = w_b (k, c)
        },
        [&](int buf) {
            const bf16 *As = ring + (size_t)buf * 2 * OPERAND;
            if (active) slice_mma<false, MODE == BWD_INP>(acc, As, As + OPERAND, wm, wn, lane);
        });
    if (!active) return;
    for_each_pair(acc, wm, wn, lane, [&](int pr, int pc, float v0, float v1) {
        const int r = r0 + pr, c = c0 + pc;
        if (r >= rend || c >= NC) return;
        bf16 *o = out + (size_t)r * ldo + c;
        if (beta != 0.0f) v0 = beta * act_ld(o) + v0, v1 = beta * act_ld(o + 1) + v1;
        *(__nv_bfloat162 *)o = __floats2bfloat162_rn(v0, v1);
    });
}

// dw + woff[wg] (N, K) += sum over the blocks b = wg, wg + nw, ... in order of dout rows^T (N, n_b) @ inp rows
// (n_b, K): blockIdx = (weight wg, row tile of dw, column tile of dw). The slices walk the blocks' rows 32 at a
// time, a block's last slice zero-filled past its end.
__global__ void __launch_bounds__(THREADS, 2)
    dw_mma_kernel(float *dw, const bf16 *dout, int ldo, const bf16 *inp, int ldi, const int64_t *woff, int nw,
                  const int32_t *off, int nb, int K, int N)
{
    extern __shared__ float smem[];
    bf16 *ring = (bf16 *)smem;
    const int wg = (int)blockIdx.x, n0 = (int)blockIdx.y * TM, k0 = (int)blockIdx.z * TN;
    int S = 0;   // the slices, the same in every thread
    for (int b = wg; b < nb; b += nw)
        if (off[b + 1] > off[b]) S += (off[b + 1] - off[b] + TK - 1) / TK;
    if (S == 0) return;
    auto nonempty = [&](int b) {   // the first block of weight wg from b on that holds rows (nb past the last)
        while (b < nb && off[b + 1] <= off[b]) b += nw;
        return b < nb ? b : nb;
    };
    int lb = nonempty(wg), lr = off[lb];   // the loader's place: block lb, its row lr
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32, wm = warp / 2, wn = warp % 2;
    const bool active = n0 + wm * WM < N && k0 + wn * WN < K;
    float acc[MI][NJ][4] = {};
    run_slices(
        S,
        [&](int, int buf) {
            bf16 *As = ring + (size_t)buf * 2 * OPERAND, *Bs = As + OPERAND;
            const int rend = off[lb + 1];
            stage_cols(As, dout, (size_t)ldo, lr, rend, n0, N, true);   // A (n, r) = dout (r, n)
            stage_cols(Bs, inp, (size_t)ldi, lr, rend, k0, K, true);    // B (r, k) = inp (r, k)
            lr += TK;
            if (lr >= rend) {
                lb = nonempty(lb + nw);
                if (lb < nb) lr = off[lb];
            }
        },
        [&](int buf) {
            const bf16 *As = ring + (size_t)buf * 2 * OPERAND;
            if (active) slice_mma<true, true>(acc, As, As + OPERAND, wm, wn, lane);
        });
    if (!active) return;
    float *dwg = dw + woff[wg];
    const bool pairs = (uintptr_t)dwg % 8 == 0;   // K is even: then every pair (k, k + 1) is a float2
    for_each_pair(acc, wm, wn, lane, [&](int pr, int pc, float v0, float v1) {   // K a multiple of 8
        const int n = n0 + pr, k = k0 + pc;
        if (n >= N || k >= K) return;
        float *d = dwg + (size_t)n * K + k;
        if (pairs) {
            float2 v = *(float2 *)d;
            v.x += v0, v.y += v1;
            *(float2 *)d = v;
        } else {
            d[0] += v0, d[1] += v1;
        }
    });
}

}  // namespace

void scp_cuda_moe_mma_fwd(bf16 *out, int ldo, const bf16 *inp, int ldi, const bf16 *w, const int64_t *woff, int nw,
                          const int32_t *off, int nb, int R, int K, int N, float beta)
{
    dim3 grid((unsigned)((R + TM - 1) / TM + nb), (unsigned)((N + TN - 1) / TN));
    auto kern = rows_mma_kernel<FWD>;
    smem_optin(kern, SMEM);
    kern<<<grid, THREADS, SMEM>>>(out, ldo, inp, ldi, w, woff, nw, off, nb, K, N, beta);
    SCP_LAUNCHED();
}

void scp_cuda_moe_mma_bwd_inp(bf16 *dinp, int ldi, const bf16 *dout, int ldo, const bf16 *w, const int64_t *woff,
                              int nw, const int32_t *off, int nb, int R, int K, int N, float beta)
{
    dim3 grid((unsigned)((R + TM - 1) / TM + nb), (unsigned)((K + TN - 1) / TN));
    auto kern = rows_mma_kernel<BWD_INP>;
    smem_optin(kern, SMEM);
    kern<<<grid, THREADS, SMEM>>>(dinp, ldi, dout, ldo, w, woff, nw, off, nb, K, N, beta);
    SCP_LAUNCHED();
}

void scp_cuda_moe_mma_bwd_w(float *dw, const bf16 *dout, int ldo, const bf16 *inp, int ldi, const int64_t *woff,
                            int nw, const int32_t *off, int nb, int R, int K, int N)
{
    (void)R;   // bwd_w's grid is the weights' tiles
    dim3 grid((unsigned)nw, (unsigned)((N + TM - 1) / TM), (unsigned)((K + TN - 1) / TN));
    auto kern = dw_mma_kernel;
    smem_optin(kern, SMEM);
    kern<<<grid, THREADS, SMEM>>>(dw, dout, ldo, inp, ldi, woff, nw, off, nb, K, N);
    SCP_LAUNCHED();
}
