// emu_cublas_grouped.cc: cublasGemmGroupedBatchedEx in the CUDA emulator (cublas_v2.h), each problem through the
// emulated cublasGemmEx of emu.cc (which makes cuBLAS's size and leading-dimension checks and computes in double),
// after the checks of the grouped call itself: group_count and every group_size non-negative, and its narrower type
// table (CUBLAS_COMPUTE_32F with A, B and C of one type: bf16 A and B with an fp32 C, which cublasGemmEx takes, is
// not supported here). Problems whose outputs share an element are undefined in cuBLAS (they may run at once): the
// emulator aborts on them, as on overlapping items of cublasGemmStridedBatchedEx.
#include "cublas_v2.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

// The address ranges of the problems' output columns [first byte, last byte + 1), sorted: two that overlap abort.
static void check_outputs_apart(std::vector<std::pair<uintptr_t, uintptr_t>> &cols)
{
    std::sort(cols.begin(), cols.end());
    for (size_t i = 1; i < cols.size(); i++)
        if (cols[i].first < cols[i - 1].second) {
            fprintf(stderr, "emu: cublasGemmGroupedBatchedEx: the outputs of two problems overlap\n");
            abort();
        }
}

cublasStatus_t cublasGemmGroupedBatchedEx(cublasHandle_t h, const cublasOperation_t transa_array[],
                                          const cublasOperation_t transb_array[], const int m_array[], const int n_array[],
                                          const int k_array[], const void *alpha_array, const void *const Aarray[],
                                          cudaDataType at, const int lda_array[], const void *const Barray[],
                                          cudaDataType bt, const int ldb_array[], const void *beta_array,
                                          void *const Carray[], cudaDataType ct, const int ldc_array[], int group_count,
                                          const int group_size[], cublasComputeType_t comp)
{
    if (group_count < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (comp != CUBLAS_COMPUTE_32F || at != bt || bt != ct) return CUBLAS_STATUS_NOT_SUPPORTED;
    for (int g = 0; g < group_count; g++) {
        if (group_size[g] < 0) return CUBLAS_STATUS_INVALID_VALUE;
        // the sizes and leading dimensions as cublasGemmEx checks them, before anything is computed
        const int m = m_array[g], n = n_array[g], k = k_array[g];
        const int arows = transa_array[g] == CUBLAS_OP_N ? m : k, brows = transb_array[g] == CUBLAS_OP_N ? k : n;
        if (m < 0 || n < 0 || k < 0 || lda_array[g] < std::max(1, arows) || ldb_array[g] < std::max(1, brows) ||
            ldc_array[g] < std::max(1, m))
            return CUBLAS_STATUS_INVALID_VALUE;
    }
    const size_t esz = ct == CUDA_R_16BF ? 2 : 4;
    std::vector<std::pair<uintptr_t, uintptr_t>> cols;
    for (int g = 0, p = 0; g < group_count; g++)
        for (int i = 0; i < group_size[g]; i++, p++)
            for (int j = 0; j < n_array[g] && m_array[g] > 0; j++) {
                const uintptr_t c = (uintptr_t)Carray[p] + (size_t)j * ldc_array[g] * esz;
                cols.push_back({c, c + (size_t)m_array[g] * esz});
            }
    check_outputs_apart(cols);
    const float *alpha = (const float *)alpha_array, *beta = (const float *)beta_array;
    for (int g = 0, p = 0; g < group_count; g++)
        for (int i = 0; i < group_size[g]; i++, p++) {
            cublasStatus_t st = cublasGemmEx(h, transa_array[g], transb_array[g], m_array[g], n_array[g], k_array[g],
                                             alpha + g, Aarray[p], at, lda_array[g], Barray[p], bt, ldb_array[g],
                                             beta + g, Carray[p], ct, ldc_array[g], comp, CUBLAS_GEMM_DEFAULT);
            if (st != CUBLAS_STATUS_SUCCESS) return st;
        }
    return CUBLAS_STATUS_SUCCESS;
}
