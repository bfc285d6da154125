/* attention_gemm.h: attention as cuBLAS batched GEMMs on the tensor cores with the (T, T) scores materialised
 * in scratch, one batch element at a time (attention_gemm.cu). attention.cu dispatches here where the scratch
 * fits (scp_cuda_attn_gemm_fits) unless SCP_CUDA_ATTN=flash; same arguments and the same `att` content (lse
 * (B, H, T)) as scp_cuda_attention_fwd / _bwd, so a forward on one path and a backward on the other agree. */
#ifndef SCP_CUDA_ATTENTION_GEMM_H
#define SCP_CUDA_ATTENTION_GEMM_H

#include "model/cuda/cuda_internal.h"

/* Whether the scratch of the backward (the larger) fits the budget: at most 2 GiB and T <= 6096. */
bool scp_cuda_attn_gemm_fits(const scp_attn_args *a);
/* T: the storage type of q, k, v, out, dout, dq, dk, dv (float or bf16, cuda_internal.h). */
template <typename T>
void scp_cuda_attn_gemm_fwd(T *out, float *lse, const T *q, const T *k, const T *v, const scp_attn_args *a);
template <typename T>
void scp_cuda_attn_gemm_bwd(T *dq, T *dk, T *dv, const T *dout, const float *lse, const T *q, const T *k, const T *v,
                            const scp_attn_args *a);

#endif
