/* attention_flash.h: the FlashAttention-2 kernels on mma.m16n8k16 (attention_flash.cu), for head sizes
 * 16, 32, ..., 128; attention.cu dispatches to them under SCP_CUDA_ATTN=flash. Same contract as attention.cu's
 * scp_cuda_attention_fwd (layouts, lse (B, H, T) in `att`), visibility from causal, doc and anneal only. */
#ifndef SCP_CUDA_ATTENTION_FLASH_H
#define SCP_CUDA_ATTENTION_FLASH_H

#include "model/cuda/cuda_internal.h"

static inline bool scp_cuda_attn_flash_takes(int hd) { return hd >= 16 && hd <= 128 && hd % 16 == 0; }
/* T: the storage type of q, k, v, out (float or bf16, cuda_internal.h). */
template <typename T>
void scp_cuda_attn_flash_fwd(T *out, float *lse, const T *q, const T *k, const T *v, const scp_attn_args *a);

#endif
