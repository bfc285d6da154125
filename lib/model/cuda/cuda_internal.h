/* cuda_internal.h: what the CUDA backend's .cu files (lib/model/cuda) share: return-code checks that report
 * file:line and the library's error string through scp_die, the cuBLAS handle, a growing scratch buffer, and
 * the kernel launchers each file provides to the table in backend_cuda.cu.
 *
 * Storage: two tables share these files. "cuda-fp32" keeps activations (lib/model/backend.h's scp_act) in fp32; its
 * matmuls run on the tensor cores in bf16 with fp32 accumulation (cuBLAS compute type
 * CUBLAS_COMPUTE_32F_FAST_16BF, which rounds the inputs to bf16 inside the GEMM). "cuda" keeps them in bf16
 * (half the bytes to move and to keep), its GEMMs take bf16 operands directly (CUBLAS_COMPUTE_32F). Either way
 * statistics, weight gradients, the fp32 master weights and AdamW moments are fp32, and norms, softmax, attention
 * and the loss accumulate in fp32. Everything runs on the legacy default
 * stream, so a cudaMemcpy orders itself after the kernels before it. No managed memory. */
#ifndef SCP_CUDA_INTERNAL_H
#define SCP_CUDA_INTERNAL_H

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

extern "C" {
#include "model/backend.h"
/* core/error.h declares these with C11's _Noreturn, which C++ does not have: the same functions, C++ spelling. */
[[noreturn]] void scp_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int scp_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
}

/* The part of a buffer held with room to spare that a caller asked for: under the emulator's memory check
 * (tests/gpu/emulated.sh in a sanitizer build) the rest is made unreadable, so that a kernel running past what it
 * was given is caught, as compute-sanitizer would catch it past an allocation's end; nothing on a GPU. */
#ifdef SCP_CUDA_EMULATOR
#define SCP_CUDA_IN_USE(p, used, held) emu_device_in_use(p, used, held)
#else
#define SCP_CUDA_IN_USE(p, used, held) ((void)0)
#endif

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

/* A kernel launched with more than the default 48 KiB of dynamic shared memory must opt in to that much first. */
template <typename K> static inline void smem_optin(K kern, size_t smem)
{
    if (smem > 48 * 1024) SCP_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
}

static inline unsigned scp_cuda_blocks(size_t n, int threads)
{
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    return (unsigned)(b < 65535u * 16u ? (b ? b : 1) : 65535u * 16u);  /* kernels loop grid-stride beyond this */
}

cublasHandle_t scp_cuda_blas(void);

typedef __nv_bfloat16 bf16;

/* Activation storage (lib/model/backend.h's scp_act): every kernel that touches it is a template on the element type T,
 * float (the "cuda-fp32" table) or bf16 (the "cuda" table), instantiated for both in its file; it widens what it
 * reads with act_ld and rounds what it writes with act_st (to nearest even), and computes in fp32 in between.
 * (Not named ld/st: "ld" is the row stride everywhere in these files.) */
#ifdef __CUDACC__
__device__ __forceinline__ float act_ld(const float *p) { return *p; }
__device__ __forceinline__ float act_ld(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void act_st(float *p, float x) { *p = x; }
__device__ __forceinline__ void act_st(bf16 *p, float x) { *p = __float2bfloat16_rn(x); }
#endif

/* Vector access for the memory-bound kernels: V consecutive elements of T in one load or store of V sizeof(T)
 * bytes (2 to 16: one instruction, where scalar bf16 accesses would take eight), widened to or rounded from fp32
 * exactly as act_ld / act_st do one by one. p must be aligned to V sizeof(T) bytes: launchers pick V with
 * scp_cuda_vec_width, and V = 1 is the scalar access. SCP_VEC<T> is the widest, 16 bytes. */
template <typename T> constexpr int SCP_VEC = (int)(16 / sizeof(T));
template <int BYTES> struct scp_vec_word;
template <> struct scp_vec_word<2> { typedef unsigned short type; };
template <> struct scp_vec_word<4> { typedef unsigned type; };
template <> struct scp_vec_word<8> { typedef uint2 type; };
template <> struct scp_vec_word<16> { typedef uint4 type; };
#ifdef __CUDACC__
template <int V, typename T> __device__ __forceinline__ void act_ldv(const T *p, float *v)
{
    typedef typename scp_vec_word<V * (int)sizeof(T)>::type W;
    const W w = *(const W *)p;
    T e[V];
    memcpy(e, &w, sizeof w);
#pragma unroll
    for (int j = 0; j < V; j++) v[j] = act_ld(e + j);
}
template <int V, typename T> __device__ __forceinline__ void act_stv(T *p, const float *v)
{
    typedef typename scp_vec_word<V * (int)sizeof(T)>::type W;
    T e[V];
#pragma unroll
    for (int j = 0; j < V; j++) act_st(e + j, v[j]);
    W w;
    memcpy(&w, e, sizeof w);
    *(W *)p = w;
}

/* Calls f(std::integral_constant<int, V>()) with V = v (1, 2, 4 or 8, at most SCP_VEC<T>): the launchers' way
 * from scp_cuda_vec_width's answer to a kernel instantiated for that width. */
template <typename T, typename F> static inline void scp_cuda_vec_dispatch(int v, F &&f)
{
    if constexpr (SCP_VEC<T> >= 8)
        if (v == 8) return f(std::integral_constant<int, 8>());
    if (v == 4) return f(std::integral_constant<int, 4>());
    if (v == 2) return f(std::integral_constant<int, 2>());
    f(std::integral_constant<int, 1>());
}
#endif
/* The widest V (a power of two, at most SCP_VEC<T>) for which every pointer in ptrs (NULL ones ignored) is
 * aligned to V sizeof(T) bytes and every element stride or count in strides (row strides, column offsets,
 * lengths) is a multiple of V: a kernel then touches only whole, aligned vectors. */
template <typename T>
static inline int scp_cuda_vec_width(std::initializer_list<const void *> ptrs, std::initializer_list<long> strides)
{
    int v = SCP_VEC<T>;
    for (; v > 1; v /= 2) {
        bool ok = true;
        for (const void *p : ptrs) ok = ok && (p == NULL || (uintptr_t)p % (v * sizeof(T)) == 0);
        for (long s : strides) ok = ok && s % v == 0;
        if (ok) break;
    }
    return v;
}

/* dst (rows, cols) bf16, packed = src (rows, cols; row stride ld elements) fp32 (rounded to nearest even) or bf16
 * (copied): the operands the attention kernels hand to the tensor cores (pointwise.cu). */
template <typename T> void scp_cuda_pack_bf16(bf16 *dst, const T *src, size_t rows, int cols, size_t ld);
/* dst (n) = src (n) converted: fp32 -> T (to_act) and T -> fp32 (from_act), n elements (pointwise.cu). */
template <typename T> void scp_cuda_to_act(T *dst, const float *src, size_t n);
template <typename T> void scp_cuda_from_act(float *dst, const T *src, size_t n);

/* Device scratch of at least `bytes`, owned by the backend, valid until the next call (grows, never shrinks). */
void *scp_cuda_scratch(size_t bytes);

/* norm.cu */
template <typename T>
void scp_cuda_rmsnorm_fwd(T *out, float *rstd, const T *x, const T *w, int N, int G, int C, int ld, float eps);
template <typename T>
void scp_cuda_rmsnorm_bwd(T *dx, float *dw, const T *dout, const T *x, const T *w, const float *rstd, int N, int G,
                          int C, int ld, int accumulate);
template <typename T>
void scp_cuda_rope(T *x, const float *cos, const float *sin, int N, int T_, int G, int hd, int ld, int inverse);
/* qk_norm_rope.cu: model/backend_ops.def's qk_norm_rope_fwd and _bwd */
template <typename T>
void scp_cuda_qk_norm_rope_fwd(T *qk, T *raw, float *rstd, const T *wq, const T *wk, const float *cos, const float *sin,
                               int N, int T_, int H, int KV, int hd, int ld, float eps);
template <typename T>
void scp_cuda_qk_norm_rope_bwd(T *d, float *dwq, float *dwk, const T *raw, const T *wq, const T *wk, const float *rstd,
                               const float *cos, const float *sin, int N, int T_, int H, int KV, int hd, int ld);
/* dst (C, fp32) += the column sums of partial (chunks, C; row stride ld), the rows added in a fixed order: the
 * second pass of a deterministic column sum whose first pass left one row of partial sums per chunk of rows */
void scp_cuda_colsum_finish(float *dst, const float *partial, long chunks, int C, int ld);
/* column sums of src (rows, C; row stride ld) added into dst (C, fp32), rows summed in a fixed order */
template <typename T> void scp_cuda_colsum_add(float *dst, const T *src, int ld, int rows, int C);

/* pointwise.cu */
template <typename T> void scp_cuda_swiglu_fwd(T *h, const T *gateup, int M, int I);
template <typename T> void scp_cuda_swiglu_bwd(T *dgateup, const T *dh, const T *gateup, int M, int I);
template <typename T> void scp_cuda_embedding_fwd(T *out, const int32_t *ids, const T *table, int M, int C);
template <typename T> void scp_cuda_embedding_bwd(float *dtable, const T *dout, const int32_t *ids, int M, int C, int V);
template <typename T> void scp_cuda_gather_rows(T *dst, const T *src, const int32_t *rows, int n, int C);
template <typename T> void scp_cuda_scatter_rows(T *dst, const T *src, const int32_t *rows, int n, int C);
template <typename T>
double scp_cuda_crossentropy(T *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                             int backward);
void scp_cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                    float eps, float wd, float bc1, float bc2);
double scp_cuda_sumsq(const float *x, size_t n);
void scp_cuda_scale(float *x, size_t n, float s);
void scp_cuda_add(float *y, const float *x, size_t n);

/* attention.cu */
template <typename T>
void scp_cuda_attention_fwd(T *out, float *att, const T *q, const T *k, const T *v, const scp_attn_args *a);
template <typename T>
void scp_cuda_attention_bwd(T *dq, T *dk, T *dv, const T *dout, const T *out, const float *att, const T *q,
                            const T *k, const T *v, const scp_attn_args *a);

/* attention_decode.cu */
template <typename T>
void scp_cuda_attention_decode(T *out, const T *q, const T *k, const T *v, int n, int H, int KV, int hd, int ld,
                               float scale);

/* moe_gemm.cu: the permutation by expert and the grouped expert GEMMs (SCP_BACKEND_CAP_MOE_GROUPED) */
void scp_cuda_moe_permute(int32_t *off, int32_t *pos, int32_t *tok, const int32_t *idx, int M, int k, int E);
template <typename T>
void scp_cuda_moe_gemm_fwd(T *out, int ldo, const T *inp, int ldi, const T *w, const int64_t *woff, int nw,
                           const int32_t *off, int nb, int R, int K, int N, float beta);
template <typename T>
void scp_cuda_moe_gemm_bwd_inp(T *dinp, int ldi, const T *dout, int ldo, const T *w, const int64_t *woff, int nw,
                               const int32_t *off, int nb, int R, int K, int N, float beta);
template <typename T>
void scp_cuda_moe_gemm_bwd_w(float *dw, const T *dout, int ldo, const T *inp, int ldi, const int64_t *woff, int nw,
                             const int32_t *off, int nb, int R, int K, int N);
/* moe.cu */
template <typename T>
void scp_cuda_moe_route(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const T *logits, int M,
                        int E, int k, int norm);
template <typename T>
void scp_cuda_moe_route_bwd(T *dlogits, const float *dweight, const float *probs, const float *lse, const int32_t *idx,
                            const float *weight, const float *dprob, float zscale, int M, int E, int k, int norm);
template <typename T>
void scp_cuda_moe_combine(T *out, const T *y, const float *weight, const int32_t *pos, int M, int k, int D, float beta);
template <typename T>
void scp_cuda_moe_combine_bwd(T *dy, float *dweight, const T *dout, const T *y, const float *weight,
                              const int32_t *pos, int M, int k, int D);

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
