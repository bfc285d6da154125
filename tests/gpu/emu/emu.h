/* emu.h: kernel launches and warp/block primitives of the CUDA emulator (see cuda_runtime.h). A launch
 * `k<<<grid, block, smem>>>(args)` is rewritten by tests/gpu/emulated.sh into `emu_launch(k, grid, block,
 * smem)(args)`. */
#ifndef SCP_EMU_H
#define SCP_EMU_H
#include <functional>

void emu_run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);
float *emu_dyn_smem(void);
void __syncthreads(void);
int __syncthreads_or(int predicate);
void emu_syncwarp(void);
static inline void __syncwarp(unsigned = 0xffffffffu) { emu_syncwarp(); }
float emu_shfl(float v, int src, int xor_mode);
double emu_shfl_d(double v, int src, int xor_mode);
static inline float __shfl_sync(unsigned, float v, int src) { return emu_shfl(v, src, 0); }
static inline float __shfl_xor_sync(unsigned, float v, int m) { return emu_shfl(v, m, 1); }

struct emu_cfg {
    dim3 grid, block;
    size_t smem;
};
template <typename K> struct emu_launcher {
    K k; emu_cfg c;
    template <typename... B> void operator()(B... b) const
    {
        K kk = k;
        emu_run_grid(c.grid, c.block, c.smem, [=]() { kk(b...); });
    }
};
/* A launch with more than 48 KiB of dynamic shared memory fails on the GPU unless the kernel opted in to that
 * much (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, n)): the emulator aborts. */
void emu_smem_check(const void *kernel, size_t smem);
template <typename K> emu_launcher<K> emu_launch(K k, dim3 g, dim3 b, size_t smem = 0)
{
    emu_smem_check((const void *)k, smem);
    return {k, {g, b, smem}};
}
#endif
