/* attention_tc.h: the tensor-core flash attention (attention_tc.cu), which attention.cu calls for the head sizes
 * it takes (multiples of 16 up to 128); the fp32 kernels of attention.cu serve the others. Same arguments and
 * the same `att` content (lse (B, H, T)) as scp_cuda_attention_fwd / _bwd. */
#ifndef SCP_CUDA_ATTENTION_TC_H
#define SCP_CUDA_ATTENTION_TC_H

#include "cuda_internal.h"

static inline bool scp_cuda_attn_tc_takes(int hd) { return hd >= 16 && hd <= 128 && hd % 16 == 0; }
void scp_cuda_attn_tc_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const scp_attn_args *a);
void scp_cuda_attn_tc_bwd(float *dq, float *dk, float *dv, const float *dout, const float *lse, const float *q,
                          const float *k, const float *v, const scp_attn_args *a);

#endif
