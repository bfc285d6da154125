/* gemm-dtypes.c: what bf16 storage would buy the CUDA backend's matmuls. Times the forward GEMMs of the
 * Qwen3-0.6B benchmark step (M = 8192 token rows; q|k|v 1024 -> 4096, o 2048 -> 1024, gate|up 1024 -> 6144,
 * down 3072 -> 1024, the LM head 1024 -> 151936 on 4096 rows) through cuBLAS three ways:
 *   fp32      fp32 A, B, C with CUBLAS_COMPUTE_32F_FAST_16BF: what lib/model/cuda/backend_cuda.cu does now
 *   bf16      bf16 A, B, fp32 C, CUBLAS_COMPUTE_32F: the same GEMM on bf16 storage
 *   bf16-out  bf16 A, B, C: PyTorch's bf16 path
 * Inputs are random (never zeros); each GEMM runs 3 times untimed, then 20 times between CUDA events; the median
 * of 5 such batches. Prints one line per shape and the per-layer sum (x 28 layers) for each way.
 * usage: gemm-dtypes (needs a GPU; exit 77 without one) */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x)                                                                                                  \
    do {                                                                                                       \
        cudaError_t e_ = (x);                                                                                  \
        if (e_ != cudaSuccess) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(1); } \
    } while (0)
#define CB(x)                                                                                                  \
    do {                                                                                                       \
        cublasStatus_t s_ = (x);                                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "%s:%d: cuBLAS status %d\n", __FILE__, __LINE__, (int)s_); exit(1); } \
    } while (0)

/* fp32 -> bf16 bits, round to nearest even (the inputs are finite) */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static void *random_device(size_t n, int bf16)
{
    float *h = malloc(n * sizeof *h);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        h[i] = (float)((double)(s >> 11) * 0x1p-53 - 0.5) * 0.1f;
    }
    void *d;
    if (bf16) {
        uint16_t *b = malloc(n * sizeof *b);
        for (size_t i = 0; i < n; i++) b[i] = to_bf16(h[i]);
        CK(cudaMalloc(&d, n * sizeof *b));
        CK(cudaMemcpy(d, b, n * sizeof *b, cudaMemcpyHostToDevice));
        free(b);
    } else {
        CK(cudaMalloc(&d, n * sizeof *h));
        CK(cudaMemcpy(d, h, n * sizeof *h, cudaMemcpyHostToDevice));
    }
    free(h);
    return d;
}

static int cmp(const void *a, const void *b) { float x = *(const float *)a, y = *(const float *)b; return (x > y) - (x < y); }

/* out (M, N) = x (M, K) @ w (N, K)^T, row-major, as backend_cuda.cu maps it: column-major out^T = w'^T x'. */
static float time_gemm(cublasHandle_t h, int way, int M, int K, int N)
{
    int bf = way > 0;
    void *x = random_device((size_t)M * K, bf), *w = random_device((size_t)N * K, bf);
    void *out;
    CK(cudaMalloc(&out, (size_t)M * N * (way == 2 ? 2 : 4)));
    cudaDataType_t ab = bf ? CUDA_R_16BF : CUDA_R_32F, c = way == 2 ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t ct = way == 0 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
    float one = 1.0f, zero = 0.0f, med[5];
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int r = 0; r < 3; r++)
        CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, ab, K, x, ab, K, &zero, out, c, N, ct,
                        CUBLAS_GEMM_DEFAULT));
    for (int b = 0; b < 5; b++) {
        CK(cudaEventRecord(e0, 0));
        for (int r = 0; r < 20; r++)
            CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, ab, K, x, ab, K, &zero, out, c, N, ct,
                            CUBLAS_GEMM_DEFAULT));
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&med[b], e0, e1));
        med[b] /= 20;
    }
    qsort(med, 5, sizeof *med, cmp);
    cudaFree(x), cudaFree(w), cudaFree(out);
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    return med[2];   /* ms */
}

int main(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        printf("1..0 # SKIP no CUDA device\n");
        return 77;
    }
    cublasHandle_t h;
    CB(cublasCreate(&h));
    static const struct { const char *name; int M, K, N, per_layer; } sh[] = {
        {"q|k|v", 8192, 1024, 4096, 1}, {"o", 8192, 2048, 1024, 1}, {"gate|up", 8192, 1024, 6144, 1},
        {"down", 8192, 3072, 1024, 1}, {"lm head", 4096, 1024, 151936, 0}};
    static const char *ways[3] = {"fp32 (FAST_16BF)", "bf16 in, fp32 out", "bf16 in, bf16 out"};
    double step[3] = {0, 0, 0};
    printf("# forward GEMMs of the Qwen3-0.6B step, ms (TFLOP/s)\n# %-8s %6s %6s %7s", "shape", "M", "K", "N");
    for (int w = 0; w < 3; w++) printf("  %-22s", ways[w]);
    printf("\n");
    for (size_t i = 0; i < sizeof sh / sizeof *sh; i++) {
        printf("  %-8s %6d %6d %7d", sh[i].name, sh[i].M, sh[i].K, sh[i].N);
        for (int w = 0; w < 3; w++) {
            float ms = time_gemm(h, w, sh[i].M, sh[i].K, sh[i].N);
            double tf = 2.0 * sh[i].M * sh[i].K * sh[i].N / (ms * 1e-3) / 1e12;
            printf("  %8.3f (%6.1f)        ", ms, tf);
            step[w] += ms * (sh[i].per_layer ? 28 : 1);
        }
        printf("\n");
    }
    printf("# forward GEMMs of one step (28 layers + LM head), ms:");
    for (int w = 0; w < 3; w++) printf("  %s %.1f", ways[w], step[w]);
    printf("\n# bf16 storage over fp32: x%.2f faster (bf16 in, fp32 out), x%.2f (bf16 out)\n", step[0] / step[1],
           step[0] / step[2]);
    cublasDestroy(h);
    return 0;
}
