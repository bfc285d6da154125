/* backend_cuda.h: the CUDA backend's operation tables (lib/model/backend.h), built when configure found nvcc and
 * cuBLAS (HAVE_CUDA). "cuda" (also spelled "cuda-bf16"; the table scp_backend_cuda_bf16) keeps activations and the
 * compute copy of the weights in bf16 (act_size 2), with fp32 accumulation, statistics, master weights, weight
 * gradients and AdamW moments; "cuda-fp32" (scp_backend_cuda_fp32) keeps activations in fp32 device memory and
 * runs its matmuls in bf16 on the tensor cores with fp32 accumulation (see lib/model/cuda/cuda_internal.h). The
 * attention entries keep backend-private state in `att`: the log-sum-exp of each query row, (B, H, T), at its
 * start, not the (B, H, T, T) probabilities the CPU keeps, so a caller must treat att as opaque between
 * attention_fwd and attention_bwd. */
#ifndef SCP_BACKEND_CUDA_H
#define SCP_BACKEND_CUDA_H

#include "model/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const scp_backend scp_backend_cuda_fp32;
extern const scp_backend scp_backend_cuda_bf16;
/* The table a --backend name means: "cuda" or "cuda-bf16" the bf16-storage table, "cuda-fp32" the fp32 one;
 * NULL for any other name. */
const scp_backend *scp_cuda_backend_named(const char *name);

#ifdef __cplusplus
}
#endif
#endif
