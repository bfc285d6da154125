// backend_cuda.cu: the CUDA backend's two tables, "cuda-fp32" (fp32 activations) and "cuda" (bf16 activations):
// device memory, host <-> device copies, the three matmuls through cuBLAS (row-major shapes of lib/model/backend.h
// mapped onto column-major GEMMs without copies), and the kernels of norm.cu, pointwise.cu, attention.cu,
// moe.cu and moe_gemm.cu instantiated for each storage type, filled in from the entry list of lib/model/backend_ops.def.
#include "model/cuda/backend_cuda.h"
#include "model/cuda/cuda_internal.h"
#include "model/cuda/moe_gemm_cublas.h"

#include <cstdlib>
#include <unordered_map>

static cublasHandle_t blas;
static void *scratch;
static size_t scratch_bytes;

// Device memory held by the backend, for its peak (the table's peak_bytes): each buffer's size by its address, the
// scratch and cuBLAS's workspace.
static std::unordered_map<void *, size_t> held;
static int64_t held_now, held_peak;

static void count(int64_t delta)
{
    held_now += delta;
    if (held_now > held_peak) held_peak = held_now;
}

static int64_t cuda_peak_bytes(void) { return held_peak; }

cublasHandle_t scp_cuda_blas(void)
{
    if (!blas) {
        SCP_CUBLAS(cublasCreate(&blas));
        // A fixed workspace of our own: cuBLAS then never allocates during a GEMM, and picks the same kernels
        // run after run (bitwise-repeatable results, which exact resume relies on).
        void *ws;
        SCP_CUDA(cudaMalloc(&ws, (size_t)32 << 20));
        count((int64_t)32 << 20);
        SCP_CUBLAS(cublasSetWorkspace(blas, ws, (size_t)32 << 20));
        SCP_CUBLAS(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
    }
    return blas;
}

// A failed cudaMalloc of `bytes` for `what`. Out of memory is a question of size: say how much was asked and is
// free. Anything else (no driver, no GPU, a GPU in a bad state: the first allocation is where a build with CUDA
// on a machine without a GPU finds out) is not, and says so.
[[noreturn]] static void alloc_failed(const char *what, size_t bytes, cudaError_t e)
{
    cudaGetLastError();  // clear the error before asking anything else
    if (e != cudaErrorMemoryAllocation)
        scp_die("CUDA: no usable GPU (%s, allocating %zu bytes of %s); --backend cpu runs without one",
                cudaGetErrorString(e), bytes, what);
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    scp_die("CUDA: out of device memory (%zu bytes of %s; %zu of %zu free)", bytes, what, fr, tot);
}

void *scp_cuda_scratch(size_t bytes)
{
    if (bytes > scratch_bytes) {
        if (scratch) SCP_CUDA(cudaFree(scratch));
        count(-(int64_t)scratch_bytes);
        scratch_bytes = 0;
        size_t n = bytes + bytes / 4;
        cudaError_t e = cudaMalloc(&scratch, n);
        if (e != cudaSuccess) alloc_failed("scratch", n, e);
        scratch_bytes = n;
        count((int64_t)n);
    }
    SCP_CUDA_IN_USE(scratch, bytes, scratch_bytes);
    return scratch;
}

static void *cuda_alloc(size_t bytes)
{
    void *p = NULL;
    size_t n = bytes ? bytes : 256;
    cudaError_t e = cudaMalloc(&p, n);
    if (e != cudaSuccess) alloc_failed("model workspace", n, e);
    SCP_CUDA(cudaMemset(p, 0, n));
    held[p] = n;
    count((int64_t)n);
    return p;
}

static void cuda_free(void *p)
{
    if (!p) return;
    auto it = held.find(p);
    if (it != held.end()) {
        count(-(int64_t)it->second);
        held.erase(it);
    }
    SCP_CUDA(cudaFree(p));
}

static void cuda_zero(void *x, size_t bytes)
{
    if (bytes) SCP_CUDA(cudaMemset(x, 0, bytes));
}

static void cuda_copy(void *dst, const void *src, size_t bytes)
{
    if (dst != src && bytes) SCP_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

static void cuda_upload(void *dst, const void *host, size_t n) { SCP_CUDA(cudaMemcpy(dst, host, n, cudaMemcpyHostToDevice)); }

static void cuda_download(void *host, const void *src, size_t n)
{
    SCP_CUDA(cudaMemcpy(host, src, n, cudaMemcpyDeviceToHost));
}

// ---- matmuls ------------------------------------------------------------------------------------------------
// fp32 storage ("cuda-fp32"): tensor cores in bf16 (cuBLAS rounds the fp32 inputs inside the GEMM), fp32 accumulation
// and fp32 in/out. bf16 storage ("cuda"): bf16 A, B and C (bf16 C for the activation outputs, fp32 C for the
// weight gradient), fp32 accumulation (CUBLAS_COMPUTE_32F; cublasGemmEx supports A, B = CUDA_R_16BF with C =
// CUDA_R_16BF or CUDA_R_32F under it). The row-major to column-major mapping is the same for both.
template <typename T> struct gemm_types;
template <> struct gemm_types<float> {
    static constexpr cudaDataType AB = CUDA_R_32F, C = CUDA_R_32F;
    static constexpr cublasComputeType_t COMPUTE = CUBLAS_COMPUTE_32F_FAST_16BF;
};
template <> struct gemm_types<bf16> {
    static constexpr cudaDataType AB = CUDA_R_16BF, C = CUDA_R_16BF;
    static constexpr cublasComputeType_t COMPUTE = CUBLAS_COMPUTE_32F;
};

// out (M, N; ldo) = beta * out + bias, so that the GEMM can add onto it with beta 1. beta 0 never reads out
// (it may hold NaN from an earlier use). out and bias are T; in bf16 only with beta 0, where the bias (a bf16
// weight) is stored exactly and the GEMM's one rounding is the only one (beta != 0: bias_residual_bf16_kernel).
template <typename T> __global__ void bias_init_kernel(T *out, int ldo, const T *bias, int M, int N, float beta)
{
    size_t total = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t m = i / N, n = i % N;
        T *o = out + m * ldo + n;
        act_st(o, beta == 0.0f ? act_ld(bias + n) : beta * act_ld(o) + act_ld(bias + n));
    }
}

// bf16 storage, a bias and a residual (beta != 0): out (M, N; ldo) = round(beta out + prod + bias), prod (M, N)
// the GEMM's fp32 result, so that the stored value is rounded once, as model/backend.h has it.
__global__ void bias_residual_bf16_kernel(bf16 *out, int ldo, const float *prod, const bf16 *bias, int M, int N,
                                          float beta)
{
    size_t total = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t m = i / N, n = i % N;
        bf16 *o = out + m * ldo + n;
        act_st(o, beta * act_ld(o) + prod[i] + act_ld(bias + n));
    }
}

// Row-major out (M, N) = inp (M, K) @ w^T is column-major out^T (N, M) = w^T' (N, K) @ inp^T (K, M), where the
// column-major view of row-major w (N, K) is (K, N) with ld K, hence op T.
template <typename T>
static void cuda_matmul_fwd(scp_act *out_, int ldo, const scp_act *inp, int ldi, const scp_act *w, const scp_act *bias,
                            int M, int K, int N, float beta)
{
    typedef gemm_types<T> G;
    T *out = (T *)out_;
    if (M == 0 || N == 0) return;
    if (bias && beta != 0.0f && sizeof(T) == 2) {   // the product in fp32 scratch, then one rounding of the sum
        float *prod = (float *)scp_cuda_scratch((size_t)M * N * sizeof(float)), one = 1.0f, zero = 0.0f;
        SCP_CUBLAS(cublasGemmEx(scp_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, G::AB, K, inp, G::AB, ldi,
                                &zero, prod, CUDA_R_32F, N, G::COMPUTE, CUBLAS_GEMM_DEFAULT));
        bias_residual_bf16_kernel<<<scp_cuda_blocks((size_t)M * N, 256), 256>>>(
            (bf16 *)(void *)out, ldo, prod, (const bf16 *)(const void *)bias, M, N, beta);
        SCP_LAUNCHED();
        return;
    }
    if (bias) {
        auto kern = bias_init_kernel<T>;
        kern<<<scp_cuda_blocks((size_t)M * N, 256), 256>>>(out, ldo, (const T *)bias, M, N, beta);
        SCP_LAUNCHED();
        beta = 1.0f;
    }
    float one = 1.0f;
    SCP_CUBLAS(cublasGemmEx(scp_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, G::AB, K, inp, G::AB, ldi, &beta,
                            out, G::C, ldo, G::COMPUTE, CUBLAS_GEMM_DEFAULT));
}

// dinp (M, K) = dout (M, N) @ w (N, K): column-major dinp^T (K, M) = w' (K, N) @ dout^T (N, M).
template <typename T>
static void cuda_matmul_bwd_inp(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w, int M, int K,
                                int N, float beta)
{
    typedef gemm_types<T> G;
    if (M == 0 || K == 0) return;
    float one = 1.0f;
    SCP_CUBLAS(cublasGemmEx(scp_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, &one, w, G::AB, K, dout, G::AB, ldo,
                            &beta, dinp, G::C, ldi, G::COMPUTE, CUBLAS_GEMM_DEFAULT));
}

// dw (N, K) += dout^T (N, M) @ inp (M, K): column-major dw^T (K, N) += inp^T (K, M) @ dout (M, N), dout's
// column-major view being (N, M) with ld ldo, hence op T. dw is fp32 on both tables (C = CUDA_R_32F).
template <typename T>
static void cuda_matmul_bwd_w(float *dw, float *dbias, const scp_act *dout, int ldo, const scp_act *inp, int ldi, int M,
                              int K, int N)
{
    typedef gemm_types<T> G;
    if (M == 0 || N == 0) return;
    float one = 1.0f;
    SCP_CUBLAS(cublasGemmEx(scp_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, &one, inp, G::AB, ldi, dout, G::AB, ldo,
                            &one, dw, CUDA_R_32F, K, G::COMPUTE, CUBLAS_GEMM_DEFAULT));
    if (dbias) scp_cuda_colsum_add<T>(dbias, (const T *)dout, ldo, M, N);
}

// ---- the table ---------------------------------------------------------------------------------------------
// Every entry of lib/model/backend_ops.def over the storage type T (scp_act is T): the memory entries and
// matmuls above, the launchers of norm.cu, pointwise.cu, attention.cu and moe.cu.
#define A_(p) ((T *)(p))
#define C_(p) ((const T *)(p))
#define B_(p) ((bf16 *)(p))   /* the cuBLAS expert GEMMs' bf16 operands (reached on the bf16 table alone) */
#define CB_(p) ((const bf16 *)(p))
template <typename T> struct cuda_entries {
    // The expert GEMMs' path (SCP_CUDA_MOE_GEMM, moe_gemm_cublas.cu) on the bf16 table; cuda-fp32 has no such entries.
    static scp_cuda_moe_gemm_path moe_gemm_path(void)
    {
        return sizeof(T) == 2 ? scp_cuda_moe_gemm_path_now() : SCP_CUDA_MOE_OWN;
    }
    static void *alloc(size_t bytes) { return cuda_alloc(bytes); }
    static void free(void *p) { cuda_free(p); }
    static int64_t peak_bytes(void) { return cuda_peak_bytes(); }
    static void zero_bytes(void *x, size_t bytes) { cuda_zero(x, bytes); }
    static void copy_bytes(void *dst, const void *src, size_t bytes) { cuda_copy(dst, src, bytes); }
    static void upload(void *dst, const void *host, size_t n) { cuda_upload(dst, host, n); }
    static void download(void *host, const void *src, size_t n) { cuda_download(host, src, n); }
    static void to_act(scp_act *d, const float *s, size_t n) { scp_cuda_to_act<T>(A_(d), s, n); }
    static void from_act(float *d, const scp_act *s, size_t n) { scp_cuda_from_act<T>(d, C_(s), n); }
    static void matmul_fwd(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w, const scp_act *bias,
                           int M, int K, int N, float beta)
    {
        cuda_matmul_fwd<T>(out, ldo, inp, ldi, w, bias, M, K, N, beta);
    }
    static void matmul_bwd_inp(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w, int M, int K,
                               int N, float beta)
    {
        cuda_matmul_bwd_inp<T>(dinp, ldi, dout, ldo, w, M, K, N, beta);
    }
    static void matmul_bwd_w(float *dw, float *dbias, const scp_act *dout, int ldo, const scp_act *inp, int ldi, int M,
                             int K, int N)
    {
        cuda_matmul_bwd_w<T>(dw, dbias, dout, ldo, inp, ldi, M, K, N);
    }
    static void rmsnorm_fwd(scp_act *out, float *rstd, const scp_act *x, const scp_act *w, int N, int G, int C, int ld,
                            float eps)
    {
        scp_cuda_rmsnorm_fwd<T>(A_(out), rstd, C_(x), C_(w), N, G, C, ld, eps);
    }
    static void rmsnorm_bwd(scp_act *dx, float *dw, const scp_act *dout, const scp_act *x, const scp_act *w,
                            const float *rstd, int N, int G, int C, int ld, int accumulate)
    {
        scp_cuda_rmsnorm_bwd<T>(A_(dx), dw, C_(dout), C_(x), C_(w), rstd, N, G, C, ld, accumulate);
    }
    static void rope(scp_act *x, const float *cos, const float *sin, int N, int T_, int G, int hd, int ld, int inverse)
    {
        scp_cuda_rope<T>(A_(x), cos, sin, N, T_, G, hd, ld, inverse);
    }
    static void qk_norm_rope_fwd(scp_act *qk, scp_act *raw, float *rstd, const scp_act *wq, const scp_act *wk,
                                 const float *cos, const float *sin, int N, int T_, int H, int KV, int hd, int ld,
                                 float eps)
    {
        scp_cuda_qk_norm_rope_fwd<T>(A_(qk), A_(raw), rstd, C_(wq), C_(wk), cos, sin, N, T_, H, KV, hd, ld, eps);
    }
    static void qk_norm_rope_bwd(scp_act *dqk, float *dwq, float *dwk, const scp_act *raw, const scp_act *wq,
                                 const scp_act *wk, const float *rstd, const float *cos, const float *sin, int N, int T_,
                                 int H, int KV, int hd, int ld)
    {
        scp_cuda_qk_norm_rope_bwd<T>(A_(dqk), dwq, dwk, C_(raw), C_(wq), C_(wk), rstd, cos, sin, N, T_, H, KV, hd, ld);
    }
    static void attention_fwd(scp_act *out, float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                              const scp_attn_args *a)
    {
        scp_cuda_attention_fwd<T>(A_(out), att, C_(q), C_(k), C_(v), a);
    }
    static void attention_bwd(scp_act *dq, scp_act *dk, scp_act *dv, const scp_act *dout, const scp_act *out,
                              const float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                              const scp_attn_args *a)
    {
        scp_cuda_attention_bwd<T>(A_(dq), A_(dk), A_(dv), C_(dout), C_(out), att, C_(q), C_(k), C_(v), a);
    }
    // The flash-style attention keeps the log-sum-exp of each query row (attention.cu), not the probabilities.
    static size_t attn_state_floats(int B, int H, int T_) { return (size_t)B * H * T_; }
    static void swiglu_fwd(scp_act *h, const scp_act *gu, int M, int I) { scp_cuda_swiglu_fwd<T>(A_(h), C_(gu), M, I); }
    static void swiglu_bwd(scp_act *dgu, const scp_act *dh, const scp_act *gu, int M, int I)
    {
        scp_cuda_swiglu_bwd<T>(A_(dgu), C_(dh), C_(gu), M, I);
    }
    static void embedding_fwd(scp_act *out, const int32_t *ids, const scp_act *table, int M, int C)
    {
        scp_cuda_embedding_fwd<T>(A_(out), ids, C_(table), M, C);
    }
    static void embedding_bwd(float *dtable, const scp_act *dout, const int32_t *ids, int M, int C, int V)
    {
        scp_cuda_embedding_bwd<T>(dtable, C_(dout), ids, M, C, V);
    }
    static void gather_rows(scp_act *dst, const scp_act *src, const int32_t *rows, int n, int C)
    {
        scp_cuda_gather_rows<T>(A_(dst), C_(src), rows, n, C);
    }
    static void scatter_rows(scp_act *dst, const scp_act *src, const int32_t *rows, int n, int C)
    {
        scp_cuda_scatter_rows<T>(A_(dst), C_(src), rows, n, C);
    }
    static double crossentropy(scp_act *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                               int backward)
    {
        return scp_cuda_crossentropy<T>(A_(logits), nll, target, weight, N, V, backward);
    }
    static void adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                      float eps, float wd, float bc1, float bc2)
    {
        scp_cuda_adamw(p, g, m, v, n, lr, beta1, beta2, eps, wd, bc1, bc2);
    }
    static double sumsq(const float *x, size_t n) { return scp_cuda_sumsq(x, n); }
    static void scale(float *x, size_t n, float s) { scp_cuda_scale(x, n, s); }
    static void add(float *y, const float *x, size_t n) { scp_cuda_add(y, x, n); }
    static void moe_route(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const scp_act *logits,
                          int M, int E, int k, int norm)
    {
        scp_cuda_moe_route<T>(probs, idx, weight, lse, psum, C_(logits), M, E, k, norm);
    }
    static void moe_route_bwd(scp_act *dlogits, const float *dweight, const float *probs, const float *lse,
                              const int32_t *idx, const float *weight, const float *dprob, float zscale, int M, int E,
                              int k, int norm)
    {
        scp_cuda_moe_route_bwd<T>(A_(dlogits), dweight, probs, lse, idx, weight, dprob, zscale, M, E, k, norm);
    }
    static void moe_combine(scp_act *out, const scp_act *y, const float *weight, const int32_t *pos, int M, int k,
                            int D, float beta)
    {
        scp_cuda_moe_combine<T>(A_(out), C_(y), weight, pos, M, k, D, beta);
    }
    static void moe_combine_bwd(scp_act *dy, float *dweight, const scp_act *dout, const scp_act *y,
                                const float *weight, const int32_t *pos, int M, int k, int D)
    {
        scp_cuda_moe_combine_bwd<T>(A_(dy), dweight, C_(dout), C_(y), weight, pos, M, k, D);
    }
    static void moe_permute(int32_t *off, int32_t *pos, int32_t *tok, const int32_t *idx, int M, int k, int E)
    {
        scp_cuda_moe_permute(off, pos, tok, idx, M, k, E);
    }
    static void moe_gemm_fwd(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w, const int64_t *woff,
                             int nw, const int32_t *off, int nb, int R, int K, int N, float beta)
    {
        if (const scp_cuda_moe_gemm_path p = moe_gemm_path(); p != SCP_CUDA_MOE_OWN)
            return scp_cuda_moe_gemm_fwd_cublas(p, B_(out), ldo, CB_(inp), ldi, CB_(w), woff, nw, off, nb,
                                                R, K, N, beta);
        scp_cuda_moe_gemm_fwd<T>(A_(out), ldo, C_(inp), ldi, C_(w), woff, nw, off, nb, R, K, N, beta);
    }
    static void moe_gemm_bwd_inp(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w,
                                 const int64_t *woff, int nw, const int32_t *off, int nb, int R, int K, int N, float beta)
    {
        if (const scp_cuda_moe_gemm_path p = moe_gemm_path(); p != SCP_CUDA_MOE_OWN)
            return scp_cuda_moe_gemm_bwd_inp_cublas(p, B_(dinp), ldi, CB_(dout), ldo, CB_(w), woff, nw,
                                                    off, nb, R, K, N, beta);
        scp_cuda_moe_gemm_bwd_inp<T>(A_(dinp), ldi, C_(dout), ldo, C_(w), woff, nw, off, nb, R, K, N, beta);
    }
    static void moe_gemm_bwd_w(float *dw, const scp_act *dout, int ldo, const scp_act *inp, int ldi,
                               const int64_t *woff, int nw, const int32_t *off, int nb, int R, int K, int N)
    {
        if (moe_gemm_path() != SCP_CUDA_MOE_OWN)
            return scp_cuda_moe_gemm_bwd_w_cublas(dw, CB_(dout), ldo, CB_(inp), ldi, woff, nw, off, nb, R, K, N);
        scp_cuda_moe_gemm_bwd_w<T>(dw, C_(dout), ldo, C_(inp), ldi, woff, nw, off, nb, R, K, N);
    }
    static void attention_decode(scp_act *out, const scp_act *q, const scp_act *k, const scp_act *v, int n, int H,
                                 int KV, int hd, int ld, float scale)
    {
        scp_cuda_attention_decode<T>(A_(out), C_(q), C_(k), C_(v), n, H, KV, hd, ld, scale);
    }
};
#undef A_
#undef C_
#undef B_
#undef CB_

// The table of storage type T: each entry assigned by name from the list of lib/model/backend_ops.def, so that
// an entry cuda_entries lacks does not compile and the struct's order is the compiler's business.
template <typename T> static constexpr scp_backend cuda_table(const char *name)
{
    scp_backend b{};
    b.name = name;
    b.caps = SCP_BACKEND_CAP_ALL;
    b.act_size = sizeof(T);
    b.host_memory = 0;
#define SCP_BACKEND_OP(cap, ret, op, params) b.op = cuda_entries<T>::op;
#include "model/backend_ops.def"
    // The grouped expert GEMMs (moe_gemm.cu) take bf16 operands; cuda-fp32 is the full-precision table, checked
    // against fp32 references to 1e-5, so its experts stay on the fp32 cuBLAS matmuls of the per-expert path.
    if (sizeof(T) == 4) {
        b.caps = SCP_BACKEND_CAP_MOE | SCP_BACKEND_CAP_DECODE;
        b.moe_permute = nullptr, b.moe_gemm_fwd = nullptr, b.moe_gemm_bwd_inp = nullptr, b.moe_gemm_bwd_w = nullptr;
    }
    return b;
}

extern "C" const scp_backend scp_backend_cuda_fp32 = cuda_table<float>("cuda-fp32");
extern "C" const scp_backend scp_backend_cuda_bf16 = cuda_table<bf16>("cuda");

extern "C" const scp_backend *scp_cuda_backend_named(const char *name)
{
    if (strcmp(name, "cuda") == 0 || strcmp(name, "cuda-bf16") == 0) return &scp_backend_cuda_bf16;
    if (strcmp(name, "cuda-fp32") == 0) return &scp_backend_cuda_fp32;
    return NULL;
}
