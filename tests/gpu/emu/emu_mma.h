/* emu_mma.h (emulator): the PTX warp-level primitives behind lib/model/cuda/warp_mma.h, with the semantics of the
 * PTX ISA: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (fragment layouts of section "Matrix Fragments for
 * mma.m16n8k16 with floating point type", the products summed in fp32 in k order onto C),
 * ldmatrix.sync.aligned.m8n8.{x2,x4}{,.trans}.shared.b16, and cp.async with its commit and wait groups.
 *
 * mma and ldmatrix are warp-collective: every lane deposits its operands (registers, row address) in a per-warp
 * exchange, the warp meets at one barrier, each lane reads what it needs, and the warp meets again before the
 * slots can be reused. Unless all 32 lanes of the warp arrive at the same primitive (a lane that exited, a lane at
 * a shuffle or another primitive, a warp of fewer than 32 threads) the emulator aborts, as it does on an ldmatrix
 * row address that is not 16-byte aligned: on the GPU those are undefined behaviour.
 *
 * cp.async: the 16 source bytes are read when the copy is issued, but written to shared memory only when the
 * thread's cp_async_wait completes the group holding it, so that a kernel that reads before it waits (or before
 * the __syncthreads after the wait) sees the NaN-filled shared memory. Both addresses must be 16-byte aligned. */
#ifndef SCP_EMU_WARP_MMA_H
#define SCP_EMU_WARP_MMA_H
#include <cstdint>

void emu_mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]);
/* r[0 .. nmat-1]: nmat (2 or 4) 8x8 b16 matrices, transposed where trans, row addresses from lanes 0 .. 8 nmat - 1 */
void emu_ldmatrix(uint32_t *r, int nmat, int trans, const void *row);
void emu_cp_async_16(void *smem, const void *gmem, bool valid);
void emu_cp_async_commit(void);
void emu_cp_async_wait(int n);
#endif
