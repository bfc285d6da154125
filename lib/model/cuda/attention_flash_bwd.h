/* attention_flash_bwd.h: the FlashAttention-2 backward on mma.sync tensor-core instructions
 * (attention_flash_bwd.cu), for the head sizes scp_cuda_attn_flash_takes (multiples of 16 up to 128). Same arguments
 * and `att` content (lse (B, H, T), from either forward) as scp_cuda_attention_bwd, plus the forward's output
 * `out`, from which D = rowsum(dout * out) comes. Visibility: model/attn_visibility.h's rule (causal, documents,
 * annealing). */
#ifndef SCP_CUDA_ATTENTION_FLASH_BWD_H
#define SCP_CUDA_ATTENTION_FLASH_BWD_H

#include "model/cuda/cuda_internal.h"

/* T: the storage type of q, k, v, out, dout, dq, dk, dv (float or bf16, cuda_internal.h). */
template <typename T>
void scp_cuda_attn_flash_bwd(T *dq, T *dk, T *dv, const T *dout, const T *out, const float *lse, const T *q,
                             const T *k, const T *v, const scp_attn_args *a);

#endif
