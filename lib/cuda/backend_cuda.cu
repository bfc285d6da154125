// backend_cuda.cu: the CUDA backend's table: device memory, host <-> device copies, the three matmuls through
// cuBLAS (row-major shapes of lib/backend.h mapped onto column-major GEMMs without copies), and the kernels of
// norm.cu, pointwise.cu and attention.cu.
#include "backend_cuda.h"
#include "cuda_internal.h"

#include <cstdlib>

static cublasHandle_t blas;
static void *scratch;
static size_t scratch_bytes;

cublasHandle_t scp_cuda_blas(void)
{
    if (!blas) {
        SCP_CUBLAS(cublasCreate(&blas));
        // A fixed workspace of our own: cuBLAS then never allocates during a GEMM, and picks the same kernels
        // run after run (bitwise-repeatable results, which exact resume relies on).
        void *ws;
        SCP_CUDA(cudaMalloc(&ws, (size_t)32 << 20));
        SCP_CUBLAS(cublasSetWorkspace(blas, ws, (size_t)32 << 20));
        SCP_CUBLAS(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
    }
    return blas;
}

void *scp_cuda_scratch(size_t bytes)
{
    if (bytes > scratch_bytes) {
        if (scratch) SCP_CUDA(cudaFree(scratch));
        size_t n = bytes + bytes / 4;
        if (cudaMalloc(&scratch, n) != cudaSuccess)
            scp_die("CUDA: out of device memory (%zu bytes of scratch)", n);
        scratch_bytes = n;
    }
    return scratch;
}

static void *cuda_alloc(size_t bytes)
{
    void *p = NULL;
    size_t n = bytes ? bytes : 256;
    cudaError_t e = cudaMalloc(&p, n);
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaGetLastError();
        cudaMemGetInfo(&fr, &tot);
        scp_die("CUDA: out of device memory (%zu bytes of model workspace; %zu of %zu free): %s", bytes, fr, tot,
                cudaGetErrorString(e));
    }
    SCP_CUDA(cudaMemset(p, 0, n));
    return p;
}

static void cuda_free(void *p)
{
    if (p) SCP_CUDA(cudaFree(p));
}

static void cuda_zero(float *x, size_t n) { SCP_CUDA(cudaMemset(x, 0, n * sizeof(float))); }

static void cuda_copy(float *dst, const float *src, size_t n)
{
    if (dst != src) SCP_CUDA(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice));
}

static void cuda_upload(void *dst, const void *host, size_t n) { SCP_CUDA(cudaMemcpy(dst, host, n, cudaMemcpyHostToDevice)); }

static void cuda_download(void *host, const void *src, size_t n)
{
    SCP_CUDA(cudaMemcpy(host, src, n, cudaMemcpyDeviceToHost));
}

// ---- matmuls ------------------------------------------------------------------------------------------------
// Tensor cores in bf16, fp32 accumulation and fp32 in/out (the table's buffers are fp32).
#define GEMM_COMPUTE CUBLAS_COMPUTE_32F_FAST_16BF

// out (M, N; ldo) = beta * out + bias, so that the GEMM can add onto it with beta 1. beta 0 never reads out
// (it may hold NaN from an earlier use).
__global__ void bias_init_kernel(float *out, int ldo, const float *bias, int M, int N, float beta)
{
    size_t total = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t m = i / N, n = i % N;
        float *o = out + m * ldo + n;
        *o = beta == 0.0f ? bias[n] : beta * *o + bias[n];
    }
}

// Row-major out (M, N) = inp (M, K) @ w^T is column-major out^T (N, M) = w^T' (N, K) @ inp^T (K, M), where the
// column-major view of row-major w (N, K) is (K, N) with ld K, hence op T.
static void cuda_matmul_fwd(float *out, int ldo, const float *inp, int ldi, const float *w, const float *bias, int M,
                            int K, int N, float beta)
{
    if (M == 0 || N == 0) return;
    if (bias) {
        bias_init_kernel<<<scp_cuda_blocks((size_t)M * N, 256), 256>>>(out, ldo, bias, M, N, beta);
        SCP_LAUNCHED();
        beta = 1.0f;
    }
    float one = 1.0f;
    SCP_CUBLAS(cublasGemmEx(scp_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, CUDA_R_32F, K, inp, CUDA_R_32F,
                            ldi, &beta, out, CUDA_R_32F, ldo, GEMM_COMPUTE, CUBLAS_GEMM_DEFAULT));
}

// dinp (M, K) = dout (M, N) @ w (N, K): column-major dinp^T (K, M) = w' (K, N) @ dout^T (N, M).
static void cuda_matmul_bwd_inp(float *dinp, int ldi, const float *dout, int ldo, const float *w, int M, int K, int N,
                                float beta)
{
    if (M == 0 || K == 0) return;
    float one = 1.0f;
    SCP_CUBLAS(cublasGemmEx(scp_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, &one, w, CUDA_R_32F, K, dout, CUDA_R_32F,
                            ldo, &beta, dinp, CUDA_R_32F, ldi, GEMM_COMPUTE, CUBLAS_GEMM_DEFAULT));
}

// dw (N, K) += dout^T (N, M) @ inp (M, K): column-major dw^T (K, N) += inp^T (K, M) @ dout (M, N), dout's
// column-major view being (N, M) with ld ldo, hence op T.
static void cuda_matmul_bwd_w(float *dw, float *dbias, const float *dout, int ldo, const float *inp, int ldi, int M,
                              int K, int N)
{
    if (M == 0 || N == 0) return;
    float one = 1.0f;
    SCP_CUBLAS(cublasGemmEx(scp_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, &one, inp, CUDA_R_32F, ldi, dout,
                            CUDA_R_32F, ldo, &one, dw, CUDA_R_32F, K, GEMM_COMPUTE, CUBLAS_GEMM_DEFAULT));
    if (dbias) scp_cuda_colsum_add(dbias, dout, ldo, M, N);
}

// The flash-style attention keeps the log-sum-exp of each query row (attention.cu), not the probabilities.
static size_t cuda_attn_state_floats(int B, int H, int T) { return (size_t)B * H * T; }

// moe.cu: the mixture-of-experts entries.
void scp_cuda_moe_route(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const float *logits, int M,
                        int E, int k, int norm);
void scp_cuda_moe_route_bwd(float *dlogits, const float *dweight, const float *probs, const float *lse,
                            const int32_t *idx, const float *weight, const float *dprob, float zscale, int M, int E,
                            int k, int norm);
void scp_cuda_moe_combine(float *out, const float *y, const float *weight, const int32_t *pos, int M, int k, int D,
                          float beta);
void scp_cuda_moe_combine_bwd(float *dy, float *dweight, const float *dout, const float *y, const float *weight,
                              const int32_t *pos, int M, int k, int D);

extern "C" const scp_backend scp_backend_cuda = {
    /* .name = */ "cuda",
    /* .alloc = */ cuda_alloc,
    /* .free = */ cuda_free,
    /* .zero = */ cuda_zero,
    /* .copy = */ cuda_copy,
    /* .upload = */ cuda_upload,
    /* .download = */ cuda_download,
    /* .matmul_fwd = */ cuda_matmul_fwd,
    /* .matmul_bwd_inp = */ cuda_matmul_bwd_inp,
    /* .matmul_bwd_w = */ cuda_matmul_bwd_w,
    /* .rmsnorm_fwd = */ scp_cuda_rmsnorm_fwd,
    /* .rmsnorm_bwd = */ scp_cuda_rmsnorm_bwd,
    /* .rope = */ scp_cuda_rope,
    /* .attention_fwd = */ scp_cuda_attention_fwd,
    /* .attention_bwd = */ scp_cuda_attention_bwd,
    /* .swiglu_fwd = */ scp_cuda_swiglu_fwd,
    /* .swiglu_bwd = */ scp_cuda_swiglu_bwd,
    /* .embedding_fwd = */ scp_cuda_embedding_fwd,
    /* .embedding_bwd = */ scp_cuda_embedding_bwd,
    /* .gather_rows = */ scp_cuda_gather_rows,
    /* .scatter_rows = */ scp_cuda_scatter_rows,
    /* .crossentropy = */ scp_cuda_crossentropy,
    /* .adamw = */ scp_cuda_adamw,
    /* .sumsq = */ scp_cuda_sumsq,
    /* .scale = */ scp_cuda_scale,
    /* .host_memory = */ 0,
    /* .attn_state_floats = */ cuda_attn_state_floats,
    /* .moe_route = */ scp_cuda_moe_route,
    /* .moe_route_bwd = */ scp_cuda_moe_route_bwd,
    /* .moe_combine = */ scp_cuda_moe_combine,
    /* .moe_combine_bwd = */ scp_cuda_moe_combine_bwd,
};
