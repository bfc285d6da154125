/* attention_tc.h: the tensor-core flash attention (attention_tc.cu), which attention.cu calls for the head sizes
 * it takes (multiples of 16 up to 128); the fp32 kernels of attention.cu serve the others. Same arguments and
 * the same `att` content (lse (B, H, T)) as scp_cuda_attention_fwd / _bwd. */
#ifndef SCP_CUDA_ATTENTION_TC_H
#define SCP_CUDA_ATTENTION_TC_H

#include "model/cuda/cuda_internal.h"

static inline bool scp_cuda_attn_tc_takes(int hd) { return hd >= 16 && hd <= 128 && hd % 16 == 0; }
/* T: the storage type of q, k, v, out, dout, dq, dk, dv (float or bf16, cuda_internal.h). */
template <typename T>
void scp_cuda_attn_tc_fwd(T *out, float *lse, const T *q, const T *k, const T *v, const scp_attn_args *a);
template <typename T>
void scp_cuda_attn_tc_bwd(T *dq, T *dk, T *dv, const T *dout, const float *lse, const T *q, const T *k, const T *v,
                          const scp_attn_args *a);

#endif
