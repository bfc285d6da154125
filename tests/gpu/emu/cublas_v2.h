/* cublas_v2.h (emulator): cublasGemmEx and cublasGemmStridedBatchedEx for column-major operands, computed on the
 * CPU in double, and the handle calls around it. Operand types: fp32 (CUDA_R_32F) or bf16 (CUDA_R_16BF, read
 * exactly as the stored 16 bits), with the type combinations cuBLAS supports for the compute type (else
 * CUBLAS_STATUS_NOT_SUPPORTED). The bf16 rounding of CUBLAS_COMPUTE_32F_FAST_16BF is not emulated: what the
 * emulator checks is the mapping of the row-major shapes onto the column-major GEMM. */
#ifndef SCP_EMU_CUBLAS_H
#define SCP_EMU_CUBLAS_H
#include "cuda_runtime.h"
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
#endif
