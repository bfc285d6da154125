/* cublas_v2.h (emulator): cublasGemmEx, cublasGemmStridedBatchedEx and cublasGemmGroupedBatchedEx
 * (emu_cublas_grouped.cc) for column-major operands, computed on the CPU in double, and the handle calls around it. Operand types: fp32 (CUDA_R_32F) or bf16 (CUDA_R_16BF, read
 * exactly as the stored 16 bits), with the type combinations cuBLAS supports for the compute type (else
 * CUBLAS_STATUS_NOT_SUPPORTED). The bf16 rounding of CUBLAS_COMPUTE_32F_FAST_16BF is not emulated: what the
 * emulator checks is the mapping of the row-major shapes onto the column-major GEMM. */
#ifndef SCP_EMU_CUBLAS_H
#define SCP_EMU_CUBLAS_H
#include "cuda_runtime.h"
#define CUBLAS_VERSION 120500   /* the first with cublasGemmGroupedBatchedEx */
typedef struct emu_blas *cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 } cublasStatus_t;
typedef enum { CUBLAS_OP_N, CUBLAS_OP_T } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH } cublasMath_t;
typedef enum { CUDA_R_32F, CUDA_R_16BF } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_16BF } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT } cublasGemmAlgo_t;
cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t n);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          long long sA, const void *B, cudaDataType bt, int ldb, long long sB,
                                          const void *beta, void *C, cudaDataType ct, int ldc, long long sC,
                                          int count, cublasComputeType_t comp, cublasGemmAlgo_t algo);
/* group_count groups of group_size[g] problems each; a group's problems share its trans, m, n, k, lda, ldb, ldc,
 * alpha and beta (host arrays, one entry per group), the problems' A, B and C pointers follow each other group after
 * group in Aarray, Barray, Carray (device arrays on the GPU). */
cublasStatus_t cublasGemmGroupedBatchedEx(cublasHandle_t h, const cublasOperation_t transa_array[],
                                          const cublasOperation_t transb_array[], const int m_array[], const int n_array[],
                                          const int k_array[], const void *alpha_array, const void *const Aarray[],
                                          cudaDataType at, const int lda_array[], const void *const Barray[],
                                          cudaDataType bt, const int ldb_array[], const void *beta_array,
                                          void *const Carray[], cudaDataType ct, const int ldc_array[], int group_count,
                                          const int group_size[], cublasComputeType_t comp);
#endif
