/* backend_cuda.h: the CUDA backend's operation table (lib/backend.h), built when configure found nvcc and
 * cuBLAS (HAVE_CUDA). Buffers are fp32 device memory; matmuls run in bf16 on the tensor cores with fp32
 * accumulation (see lib/cuda/cuda_internal.h). The attention entries keep backend-private state in `att`: the
 * log-sum-exp of each query row, (B, H, T), at its start, not the (B, H, T, T) probabilities the CPU keeps,
 * so a caller must treat att as opaque between attention_fwd and attention_bwd. */
#ifndef SCP_BACKEND_CUDA_H
#define SCP_BACKEND_CUDA_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const scp_backend scp_backend_cuda;

#ifdef __cplusplus
}
#endif
#endif
