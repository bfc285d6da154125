/* cuda_runtime.h (emulator): the part of the CUDA runtime that lib/model/cuda/ and lib/dist/nccl.c use, run on the
 * CPU. Device memory is host memory; a kernel launch runs every block in turn, each CUDA thread a fiber, so that
 * __syncthreads and the warp shuffles have real barriers behind them (see emu.h). For tests/gpu/emulated.sh. The
 * runtime's functions and types are C (nccl.c is); the kernels' language (dim3, launches, the vector types) is C++. */
#ifndef SCP_EMU_CUDA_RUNTIME_H
#define SCP_EMU_CUDA_RUNTIME_H
#ifdef __cplusplus
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <algorithm>

#define __CUDACC__ 1
#define SCP_CUDA_EMULATOR 1  /* lib/model/cuda/warp_mma.h: the emulator's PTX primitives (emu_mma.h) */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  /* blocks run one at a time: one copy serves the running block */

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3e { unsigned x, y, z; };
struct alignas(8) float2 { float x, y; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
struct alignas(16) float4 { float x, y, z, w; };
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
extern thread_local uint3e threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;
using std::min;
using std::max;

extern "C" {
#else
#include <stddef.h>  /* C (lib/dist/nccl.c): the runtime's functions and types alone */
#endif

typedef enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInvalidDevice = 101,
               cudaErrorInvalidResourceHandle = 400, cudaErrorNotReady = 600 } cudaError_t;
typedef enum { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice } cudaMemcpyKind;
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize } cudaFuncAttribute;
typedef struct cudaDeviceProp { char name[256]; int major, minor; size_t totalGlobalMem; } cudaDeviceProp;
/* Streams and events: the emulator runs every launch and copy when it is made, so that a stream is always idle
 * and an event always complete; what is checked is that each handle was created and not yet destroyed. */
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamNonBlocking 0x01
#define cudaEventDisableTiming 0x02

cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k);
cudaError_t cudaGetLastError(void);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int i);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int i);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
/* Bytes [used, held) of device buffer p made unreadable under AddressSanitizer, [0, used) readable (lib/model/cuda/
 * cuda_internal.h's SCP_CUDA_IN_USE); nothing without it. */
void emu_device_in_use(const void *p, size_t used, size_t held);
/* Whether the n bytes from p lie in one block of emulated device memory (cudaMalloc's): what the emulated NCCL
 * (emu_nccl.cc) asks of every buffer it is handed, as the real one reads them on the device. */
int emu_device_range(const void *p, size_t n);
/* Whether s is the legacy stream or one created and not destroyed (what the emulated NCCL asks of the streams it
 * is given). */
int emu_stream_live(cudaStream_t s);
/* The opt-in a kernel needs before a launch with more than 48 KiB of dynamic shared memory: recorded here,
 * checked at the launch (emu.h). */
void emu_smem_optin(const void *kernel, int bytes);
#ifdef __cplusplus
}
template <typename K> cudaError_t cudaFuncSetAttribute(K k, cudaFuncAttribute, int v)
{
    emu_smem_optin((const void *)k, v);
    return cudaSuccess;
}

#include "emu.h"
#endif
#endif
