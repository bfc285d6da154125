/* moe_gemm.h: what the grouped expert GEMMs' two files share (lib/model/cuda/moe_gemm.cu, the entry points with
 * the WMMA kernels; lib/model/cuda/moe_gemm_mma.cu, the mma.sync kernels of bf16 storage): the walk from a
 * block's blockIdx.x to its row tile, and the mma.sync launchers with the test of whether a call can take them. */
#ifndef SCP_CUDA_MOE_GEMM_H
#define SCP_CUDA_MOE_GEMM_H

#include "model/cuda/cuda_internal.h"

/* Row tile blockIdx.x of the blocks of rows in order, block b having ceil(n_b / TILE) tiles of TILE rows (none
 * where off[b + 1] <= off[b]): its block *b_out and first row, or -1 past the last tile (a launch has
 * ceil(R / TILE) + nb of them, the most any split of R rows into nb blocks needs, so some are spare). One thread
 * walks the offsets, CHUNK read together: one memory latency per CHUNK blocks, not per block. */
template <int TILE> __device__ __forceinline__ int moe_find_row_tile(const int32_t *off, int nb, int *b_out)
{
    constexpr int CHUNK = 8;
    int left = (int)blockIdx.x, start = off[0];   // start: off[b], the first row of the block at hand
    for (int b0 = 0; b0 < nb; b0 += CHUNK) {
        int end[CHUNK];   // off[b0 + 1 .. b0 + CHUNK]
#pragma unroll
        for (int j = 0; j < CHUNK; j++) end[j] = b0 + j < nb ? off[b0 + j + 1] : 0;
#pragma unroll
        for (int j = 0; j < CHUNK; j++) {
            if (b0 + j >= nb) break;
            const int n = end[j] - start, tiles = n > 0 ? (n + TILE - 1) / TILE : 0;
            if (left < tiles) {
                *b_out = b0 + j;
                return start + left * TILE;
            }
            left -= tiles;
            start = end[j];
        }
    }
    return -1;
}

/* Whether bf16 operands at ptrs (row strides, widths in lds) can be staged by 16-byte copies: every pointer
 * 16-byte aligned, every stride and width a multiple of 8 elements. The weights' offsets woff are in device
 * memory, unknown here: a block whose weight is not 16-byte aligned stages it with plain loads (moe_gemm_mma.cu). */
static inline bool moe_mma_fits(std::initializer_list<const void *> ptrs, std::initializer_list<long> lds)
{
    for (const void *p : ptrs)
        if ((uintptr_t)p % 16) return false;
    for (long s : lds)
        if (s % 8) return false;
    return true;
}

/* The mma.sync kernels' launchers (moe_gemm_mma.cu), the same arguments as scp_cuda_moe_gemm_* of bf16 storage;
 * for calls moe_mma_fits admits. */
void scp_cuda_moe_mma_fwd(bf16 *out, int ldo, const bf16 *inp, int ldi, const bf16 *w, const int64_t *woff, int nw,
                          const int32_t *off, int nb, int R, int K, int N, float beta);
void scp_cuda_moe_mma_bwd_inp(bf16 *dinp, int ldi, const bf16 *dout, int ldo, const bf16 *w, const int64_t *woff,
                              int nw, const int32_t *off, int nb, int R, int K, int N, float beta);
void scp_cuda_moe_mma_bwd_w(float *dw, const bf16 *dout, int ldo, const bf16 *inp, int ldi, const int64_t *woff,
                            int nw, const int32_t *off, int nb, int R, int K, int N);

#endif
