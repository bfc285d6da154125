/* moe_gemm_cublas.h: the experts' grouped GEMMs through cuBLAS (moe_gemm_cublas.cu), the alternatives to
 * moe_gemm.cu's kernels that SCP_CUDA_MOE_GEMM picks for the bf16 table. Arguments as the entries of
 * lib/model/backend_ops.def (off, woff in device memory). */
#ifndef SCP_CUDA_MOE_GEMM_CUBLAS_H
#define SCP_CUDA_MOE_GEMM_CUBLAS_H

#include "model/cuda/cuda_internal.h"

/* SCP_CUDA_MOE_GEMM, read at each call: unset, empty or "own" (moe_gemm.cu's kernels), "cublas"
 * (cublasGemmGroupedBatchedEx) or "cublas-loop" (cublasGemmEx once per block); anything else dies naming it. */
enum scp_cuda_moe_gemm_path { SCP_CUDA_MOE_OWN, SCP_CUDA_MOE_CUBLAS_GROUPED, SCP_CUDA_MOE_CUBLAS_LOOP };
scp_cuda_moe_gemm_path scp_cuda_moe_gemm_path_now(void);

/* path: SCP_CUDA_MOE_CUBLAS_GROUPED or SCP_CUDA_MOE_CUBLAS_LOOP. Each call copies off and woff to the host (a
 * synchronisation: see moe_gemm_cublas.cu). */
void scp_cuda_moe_gemm_fwd_cublas(scp_cuda_moe_gemm_path path, bf16 *out, int ldo, const bf16 *inp, int ldi,
                                  const bf16 *w, const int64_t *woff, int nw, const int32_t *off, int nb, int R, int K,
                                  int N, float beta);
void scp_cuda_moe_gemm_bwd_inp_cublas(scp_cuda_moe_gemm_path path, bf16 *dinp, int ldi, const bf16 *dout, int ldo,
                                      const bf16 *w, const int64_t *woff, int nw, const int32_t *off, int nb, int R,
                                      int K, int N, float beta);
/* Both paths run one cublasGemmEx per block (see moe_gemm_cublas.cu for why the grouped call cannot). */
void scp_cuda_moe_gemm_bwd_w_cublas(float *dw, const bf16 *dout, int ldo, const bf16 *inp, int ldi,
                                    const int64_t *woff, int nw, const int32_t *off, int nb, int R, int K, int N);

#endif
