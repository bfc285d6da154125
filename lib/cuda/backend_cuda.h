/* backend_cuda.h: the CUDA backend's operation tables (lib/backend.h), built when configure found nvcc and
 * cuBLAS (HAVE_CUDA). "cuda" keeps activations in fp32 device memory and runs its matmuls in bf16 on the tensor
 * cores with fp32 accumulation; "cuda-bf16" keeps activations and the compute copy of the weights in bf16 (act_size
 * 2), with the same fp32 accumulation, statistics and weight gradients (see lib/cuda/cuda_internal.h). The
 * attention entries keep backend-private state in `att`: the log-sum-exp of each query row, (B, H, T), at its
 * start, not the (B, H, T, T) probabilities the CPU keeps, so a caller must treat att as opaque between
 * attention_fwd and attention_bwd. */
#ifndef SCP_BACKEND_CUDA_H
#define SCP_BACKEND_CUDA_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const scp_backend scp_backend_cuda;
extern const scp_backend scp_backend_cuda_bf16;

#ifdef __cplusplus
}
#endif
#endif
