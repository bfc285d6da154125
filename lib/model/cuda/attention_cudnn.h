/* attention_cudnn.h: softmax attention through cuDNN's fused flash-attention engines (attention_cudnn.c), for
 * the bf16 table ("cuda") where the call's visibility rule is plain causal or bidirectional; attention.cu
 * dispatches to it under SCP_CUDA_ATTN=cudnn. C, callable from the .cu files; libcudnn is loaded at run time.
 *
 * Contract: attention.cu's (lib/model/backend.h's layouts), with bf16 elements passed as void pointers: q (B, T,
 * H, hd) and k, v (B, T, KV, hd) rows ld_qkv apart, out and dout (B, T, H, hd) packed, dq, dk, dv with q, k, v's
 * layout. `stats` (B, H, T) floats is the log-sum-exp of each query row's scaled scores (the same quantity as the
 * other paths' `att`), written by the forward and read by the backward. Functions return 0, or -1 with a message
 * naming the stage, the call's shape and cuDNN's words in scp_cudnn_error(). */
#ifndef SCP_CUDA_ATTENTION_CUDNN_H
#define SCP_CUDA_ATTENTION_CUDNN_H

#include <stddef.h>

#include "model/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device memory of at least `bytes` for the duration of one call (the backend's scratch, so that peak_bytes
 * counts it); NULL when it cannot be had. */
typedef void *(*scp_cudnn_workspace_fn)(size_t bytes);

/* 1 when this path computes the call: no documents, not annealed, head size a multiple of 16 up to 128, rows and
 * pointers aligned to 16 bytes (8 bf16 elements), H a multiple of KV. 0: the caller takes another path. */
int scp_cudnn_attn_serves(const scp_attn_args *a, const void *q, const void *k, const void *v);

int scp_cudnn_attn_fwd(void *out, float *stats, const void *q, const void *k, const void *v, const scp_attn_args *a,
                       scp_cudnn_workspace_fn workspace);
int scp_cudnn_attn_bwd(void *dq, void *dk, void *dv, const void *dout, const void *out, const float *stats,
                       const void *q, const void *k, const void *v, const scp_attn_args *a,
                       scp_cudnn_workspace_fn workspace);

/* The graph of the forward (backward 0) or backward of call a, its tensors and operations finalized and the
 * operation graph finalized without a handle: what can be checked without a GPU (no engine, no plan). 0, or -1
 * with the failing stage in scp_cudnn_error(). */
int scp_cudnn_graph_check(int backward, const scp_attn_args *a);

/* The last failure's message (empty when none). */
const char *scp_cudnn_error(void);
/* Loads libcudnn if not yet tried: 0 and "cuDNN 9.x.y (PATH)" in buf, or -1 and why not. */
int scp_cudnn_describe(char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
