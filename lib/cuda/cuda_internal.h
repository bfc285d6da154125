/* cuda_internal.h: what the CUDA backend's files (lib/cuda/*.cu) share: return-code checks that report
 * file:line and the library's error string through scp_die, the cuBLAS handle, a growing scratch buffer, and
 * the kernel launchers each file provides to the table in backend_cuda.cu.
 *
 * Storage: the table (lib/backend.h) passes fp32 buffers, so activations, weights (the fp32 master copy),
 * gradients and AdamW moments live in fp32 device memory; matmuls run on the tensor cores in bf16 with fp32
 * accumulation (cuBLAS compute type CUBLAS_COMPUTE_32F_FAST_16BF, which rounds the inputs to bf16 inside the
 * GEMM); norms, softmax, attention and the loss accumulate in fp32. Everything runs on the legacy default
 * stream, so a cudaMemcpy orders itself after the kernels before it. No managed memory. */
#ifndef SCP_CUDA_INTERNAL_H
#define SCP_CUDA_INTERNAL_H

#include <cstddef>
#include <cstdint>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

extern "C" {
#include "backend.h"
/* error.h declares these with C11's _Noreturn, which C++ does not have: the same functions, C++ spelling. */
[[noreturn]] void scp_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int scp_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
}

#define SCP_CUDA(call)                                                                                          \
    do {                                                                                                        \
        cudaError_t e_ = (call);                                                                                \
        if (e_ != cudaSuccess)                                                                                  \
            scp_die("CUDA: %s failed at %s:%d: %s", #call, __FILE__, __LINE__, cudaGetErrorString(e_));         \
    } while (0)

#define SCP_CUBLAS(call)                                                                                        \
    do {                                                                                                        \
        cublasStatus_t s_ = (call);                                                                             \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                        \
            scp_die("cuBLAS: %s failed at %s:%d: %s", #call, __FILE__, __LINE__, cublasGetStatusString(s_));    \
    } while (0)

/* After every kernel launch: a bad configuration is reported here, an asynchronous fault at the next copy. */
#define SCP_LAUNCHED() SCP_CUDA(cudaGetLastError())

static inline unsigned scp_cuda_blocks(size_t n, int threads)
{
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    return (unsigned)(b < 65535u * 16u ? (b ? b : 1) : 65535u * 16u);  /* kernels loop grid-stride beyond this */
}

cublasHandle_t scp_cuda_blas(void);
/* dst (rows, cols) bf16, packed = src (rows, cols; row stride ld) fp32, rounded to nearest even: the operands the
 * attention kernels hand to the tensor cores (pointwise.cu). */
void scp_cuda_pack_bf16(__nv_bfloat16 *dst, const float *src, size_t rows, int cols, size_t ld);

/* Device scratch of at least `bytes`, owned by the backend, valid until the next call (grows, never shrinks). */
void *scp_cuda_scratch(size_t bytes);

/* norm.cu */
void scp_cuda_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int N, int G, int C, int ld, float eps);
void scp_cuda_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                          int N, int G, int C, int ld, int accumulate);
void scp_cuda_rope(float *x, const float *cos, const float *sin, int N, int T, int G, int hd, int ld, int inverse);
/* column sums of src (rows, C; row stride ld) added into dst (C), rows summed in a fixed order */
void scp_cuda_colsum_add(float *dst, const float *src, int ld, int rows, int C);

/* pointwise.cu */
void scp_cuda_swiglu_fwd(float *h, const float *gateup, int M, int I);
void scp_cuda_swiglu_bwd(float *dgateup, const float *dh, const float *gateup, int M, int I);
void scp_cuda_embedding_fwd(float *out, const int32_t *ids, const float *table, int M, int C);
void scp_cuda_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int M, int C, int V);
void scp_cuda_gather_rows(float *dst, const float *src, const int32_t *rows, int n, int C);
void scp_cuda_scatter_rows(float *dst, const float *src, const int32_t *rows, int n, int C);
double scp_cuda_crossentropy(float *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                             int backward);
void scp_cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                    float eps, float wd, float bc1, float bc2);
double scp_cuda_sumsq(const float *x, size_t n);
void scp_cuda_scale(float *x, size_t n, float s);

/* attention.cu */
void scp_cuda_attention_fwd(float *out, float *att, const float *q, const float *k, const float *v, const scp_attn_args *a);
void scp_cuda_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                            const float *k, const float *v, const scp_attn_args *a);

/* Warp reductions over a fixed xor-butterfly: every lane ends with the same, order-fixed result. */
#ifdef __CUDACC__
__device__ __forceinline__ float scp_warp_sum(float x)
{
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ float scp_warp_max(float x)
{
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
#endif

#endif
