/* warp_mma.h: the warp-level tensor-core primitives of the flash attention kernels, thin inline wrappers over
 * PTX whose register layouts the PTX ISA documents (unlike WMMA's fragments), so that a kernel can keep
 * accumulators in registers and know which row and column each element is:
 *
 *   mma_m16n8k16_bf16(d, a, b)   d (16x8 fp32) += a (16x16 bf16, row) b (16x8 bf16, col), one warp. With
 *                                g = lane / 4, t = lane % 4 ("groupID", "threadID_in_group"), a lane holds
 *                                  a[0] = A(g, 2t..2t+1)   a[1] = A(g+8, 2t..2t+1)
 *                                  a[2] = A(g, 2t+8..2t+9) a[3] = A(g+8, 2t+8..2t+9)   (low half: lower column)
 *                                  b[0] = B(2t..2t+1, g)   b[1] = B(2t+8..2t+9, g)      (low half: lower row)
 *                                  d[0..1] = D(g, 2t..2t+1) d[2..3] = D(g+8, 2t..2t+1)
 *                                so the accumulators of two adjacent n8 tiles of S are, packed to bf16, the A
 *                                operand of one k16 step of P V.
 *   ldmatrix_x4 / _x2 (_trans)   four (two) 8x8 bf16 matrices from shared memory, one register each. Lanes 8m to
 *                                8m + 7 pass the addresses of rows 0..7 of matrix m (16-byte aligned; the other
 *                                lanes' addresses are ignored by _x2 but every lane executes it). Register m of a
 *                                lane holds matrix m's (lane / 4, 2 (lane % 4) .. +1); with _trans its
 *                                (2 (lane % 4) .. +1, lane / 4), i.e. the transpose.
 *   cp_async_16(smem, gmem)      a 16-byte global -> shared copy that completes asynchronously; cp_async_zfill_16
 *                                writes 16 zero bytes instead where !valid (rows past the sequence's end).
 *   cp_async_commit()            closes the group of the copies this thread issued since the last commit;
 *   cp_async_wait<N>()           waits until at most N of this thread's committed groups are still in flight
 *                                (a __syncthreads after it makes every thread's copies visible to the block).
 *   pack_bf16x2(lo, hi)          two floats rounded to bf16 (nearest even) in one register, lo in the low half.
 *
 * Every primitive but cp.async is warp-collective: all 32 lanes execute it together (.sync.aligned).
 * Under tests/gpu/emulated.sh (SCP_CUDA_EMULATOR) the same names map to the emulator's implementation of the
 * PTX semantics (tests/gpu/emu/emu_mma.h), which also checks that all 32 lanes take part and that addresses are
 * aligned. */
#ifndef SCP_CUDA_WARP_MMA_H
#define SCP_CUDA_WARP_MMA_H

#include <cstdint>
#include <cstring>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &v, 4);
    return r;
}

#ifdef SCP_CUDA_EMULATOR
#include "emu_mma.h"

static inline void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2])
{
    emu_mma_m16n8k16_bf16(d, a, b);
}
static inline void ldmatrix_x4(uint32_t r[4], const void *row) { emu_ldmatrix(r, 4, 0, row); }
static inline void ldmatrix_x4_trans(uint32_t r[4], const void *row) { emu_ldmatrix(r, 4, 1, row); }
static inline void ldmatrix_x2(uint32_t r[2], const void *row) { emu_ldmatrix(r, 2, 0, row); }
static inline void ldmatrix_x2_trans(uint32_t r[2], const void *row) { emu_ldmatrix(r, 2, 1, row); }
static inline void cp_async_16(void *smem, const void *gmem) { emu_cp_async_16(smem, gmem, 1); }
static inline void cp_async_zfill_16(void *smem, const void *gmem, bool valid) { emu_cp_async_16(smem, gmem, valid); }
static inline void cp_async_commit(void) { emu_cp_async_commit(); }
template <int N> static inline void cp_async_wait(void) { emu_cp_async_wait(N); }

#else

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2])
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// The "memory" clobbers keep the compiler from moving ordinary shared-memory accesses across these.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(row)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(row)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void *row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(smem_u32(row)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void *row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(smem_u32(row)) : "memory");
}
// .cg: the 16 bytes bypass L1 (each K/V row is read once per block; L2 serves the other blocks).
__device__ __forceinline__ void cp_async_16(void *smem, const void *gmem)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(smem)), "l"(gmem) : "memory");
}
// src-size 0 reads nothing and fills the 16 bytes with zeros.
__device__ __forceinline__ void cp_async_zfill_16(void *smem, const void *gmem, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait(void)
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif

#endif
