/* warp_mma.h: the warp-level tensor-core and copy instructions the flash attention kernels use, as device
 * functions over inline PTX (sm_80 and later), with the register layouts the PTX ISA documents, so that a kernel
 * can compute on fragment elements knowing their rows and columns. For lane l, g = l / 4 and t = l % 4:
 *   mma m16n8k16 (row.col, bf16 in, fp32 accumulate): A (16 x 16) a[0] = (g, 2t .. 2t+1), a[1] = (g + 8, 2t ..),
 *     a[2] = (g, 2t + 8 ..), a[3] = (g + 8, 2t + 8 ..); B (16 x 8, k x n) b[0] = (k 2t .. 2t+1, n g),
 *     b[1] = (k 2t + 8 .., n g); C, D (16 x 8) d[0..1] = (g, 2t .. 2t+1), d[2..3] = (g + 8, 2t ..). Each
 *     uint32_t holds two bf16, the lower index in the low half (pack_bf16x2).
 *   ldmatrix m8n8 .x4 (.x2): lanes 8i .. 8i + 7 give the addresses of the 8 rows (16 bytes each, 16-byte aligned)
 *     of matrix i; r[i] of lane l holds row l / 4, elements 2 (l % 4) and 2 (l % 4) + 1 of matrix i; with .trans
 *     the transposed matrix: elements (2 (l % 4), l / 4) and (2 (l % 4) + 1, l / 4). .x2 reads lanes 0 .. 15's.
 *   cp.async 16 bytes global -> shared (both 16-byte aligned), in groups: cp_async_wait<N>() returns when at
 *     most N of the groups this thread committed are still in flight.
 * In tests/gpu/emulated.sh (the emulator's headers define SCP_EMU_H) the same functions run on the CPU: a warp's
 * lanes exchange their registers (or row addresses) and each computes its own part, with fp32 sums in k order;
 * cp.async is a plain copy there. */
#ifndef SCP_CUDA_WARP_MMA_H
#define SCP_CUDA_WARP_MMA_H

#include <cstdint>
#include <cstring>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi)
{
    const __nv_bfloat16 l = __float2bfloat16_rn(lo), h = __float2bfloat16_rn(hi);
    uint16_t lb, hb;
    memcpy(&lb, &l, 2);
    memcpy(&hb, &h, 2);
    return (uint32_t)lb | (uint32_t)hb << 16;
}

#if defined(__CUDA_ARCH__)

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2])
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem_row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(smem_row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem_row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(smem_row)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void *smem_row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_addr(smem_row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void *smem_row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_addr(smem_row)));
}
__device__ __forceinline__ void cp_async_16(void *smem, const void *gmem)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem)), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

#elif defined(SCP_EMU_H)

#include <cstdio>
#include <cstdlib>

static inline uint32_t emu_lane(void) { return threadIdx.x & 31; }
static inline float emu_bf16_lo(uint32_t w) { return __bfloat162float(__nv_bfloat16{(uint16_t)(w & 0xffffu)}); }
static inline float emu_bf16_hi(uint32_t w) { return __bfloat162float(__nv_bfloat16{(uint16_t)(w >> 16)}); }
static inline void emu_check16(const void *p, const char *what)
{
    if ((uintptr_t)p % 16 != 0) {
        fprintf(stderr, "emu: %s with an address %p not 16-byte aligned\n", what, p);
        abort();
    }
}

static inline void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2])
{
    uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]}, all[32][6];
    emu_warp_gather(mine, sizeof mine, all);
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, t = l % 4;
        for (int q = 0; q < 4; q++) {
            const int r = g + (q & 1) * 8, c = 2 * t + (q >> 1) * 8;
            A[r][c] = emu_bf16_lo(all[l][q]), A[r][c + 1] = emu_bf16_hi(all[l][q]);
        }
        for (int q = 0; q < 2; q++) {
            const int k = 2 * t + q * 8;
            B[k][g] = emu_bf16_lo(all[l][4 + q]), B[k + 1][g] = emu_bf16_hi(all[l][4 + q]);
        }
    }
    const int g = emu_lane() / 4, t = emu_lane() % 4;
    for (int e = 0; e < 4; e++) {
        const int r = g + (e >> 1) * 8, c = 2 * t + (e & 1);
        float s = d[e];
        for (int k = 0; k < 16; k++) s += A[r][k] * B[k][c];
        d[e] = s;
    }
}
/* ldmatrix of nm matrices (8 rows of 8 b16 each, row addresses from lanes 8i .. 8i + 7). */
static inline void emu_ldmatrix(uint32_t *r, int nm, bool trans, const void *smem_row)
{
    emu_check16(smem_row, "ldmatrix");
    const uint16_t *all[32];
    const uint16_t *mine = (const uint16_t *)smem_row;
    emu_warp_gather(&mine, sizeof mine, all);
    const int l = (int)emu_lane();
    for (int i = 0; i < nm; i++) {
        uint16_t lo, hi;
        if (trans)
            lo = all[8 * i + 2 * (l % 4)][l / 4], hi = all[8 * i + 2 * (l % 4) + 1][l / 4];
        else
            lo = all[8 * i + l / 4][2 * (l % 4)], hi = all[8 * i + l / 4][2 * (l % 4) + 1];
        r[i] = (uint32_t)lo | (uint32_t)hi << 16;
    }
}
static inline void ldmatrix_x4(uint32_t r[4], const void *p) { emu_ldmatrix(r, 4, false, p); }
static inline void ldmatrix_x4_trans(uint32_t r[4], const void *p) { emu_ldmatrix(r, 4, true, p); }
static inline void ldmatrix_x2(uint32_t r[2], const void *p) { emu_ldmatrix(r, 2, false, p); }
static inline void ldmatrix_x2_trans(uint32_t r[2], const void *p) { emu_ldmatrix(r, 2, true, p); }
static inline void cp_async_16(void *smem, const void *gmem)
{
    emu_check16(smem, "cp.async (shared)");
    emu_check16(gmem, "cp.async (global)");
    memcpy(smem, gmem, 16);
}
static inline void cp_async_commit() {}
template <int N> static inline void cp_async_wait() {}

#else
/* nvcc's host pass: declarations only (no kernel runs on the host). */
__device__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]);
__device__ void ldmatrix_x4(uint32_t r[4], const void *smem_row);
__device__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem_row);
__device__ void ldmatrix_x2(uint32_t r[2], const void *smem_row);
__device__ void ldmatrix_x2_trans(uint32_t r[2], const void *smem_row);
__device__ void cp_async_16(void *smem, const void *gmem);
__device__ void cp_async_commit();
template <int N> __device__ void cp_async_wait();
#endif

#endif
