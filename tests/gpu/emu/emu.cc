// emu.cc: the CUDA emulator's runtime (see cuda_runtime.h): memory, launches, barriers, shuffles, a reference
// GEMM in place of cuBLAS, and the device-discovery calls of lib/model/cuda/cuda_device.h.
#include "cuda_runtime.h"
#include "cublas_v2.h"
#include "cuda_bf16.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <ucontext.h>
#include <vector>

thread_local uint3e threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

// A block runs as nt fibers (ucontext) on one OS thread, switched only at barriers: __syncthreads waits for every
// live thread of the block, a shuffle for every live lane of its warp (twice: once after writing its value, once
// after reading the other's, so that no lane overwrites a slot another has still to read). A barrier that can
// never open (threads of a block or warp waiting at different ones) aborts with a message: on a GPU it hangs.
enum { RUN, WAIT_BLOCK, WAIT_WARP, DONE };
struct fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    int state;
};
static std::vector<fiber> fib;
static ucontext_t sched;
static int cur;
static std::vector<double> slots;
static std::vector<float> dyn;
static const std::function<void()> *cur_body;

// Dynamic shared memory starts 128-byte aligned, as on the GPU (wmma needs 256-bit aligned tiles).
float *emu_dyn_smem(void) { return dyn.data() + (32 - (uintptr_t)dyn.data() / 4 % 32) % 32; }

static void wait_as(int st)
{
    fib[cur].state = st;
    swapcontext(&fib[cur].ctx, &sched);
}
void __syncthreads(void) { wait_as(WAIT_BLOCK); }
// __syncthreads_or: every thread posts its predicate, all meet, all read the OR, and meet again before a
// later call may overwrite a predicate another thread has still to read.
static std::vector<int> preds;
int __syncthreads_or(int p)
{
    preds[cur] = p != 0;
    wait_as(WAIT_BLOCK);
    int r = 0;
    for (int x : preds) r |= x;
    wait_as(WAIT_BLOCK);
    return r;
}
// __syncwarp: a barrier of the live lanes of the warp, the same one the shuffles use.
void emu_syncwarp(void) { wait_as(WAIT_WARP); }

double emu_shfl_d(double v, int src, int xor_mode)
{
    unsigned lane = cur & 31, w = cur >> 5;
    slots[w * 32 + lane] = v;
    wait_as(WAIT_WARP);
    unsigned from = xor_mode ? (lane ^ (unsigned)src) & 31 : (unsigned)src & 31;
    double r = slots[w * 32 + from];
    wait_as(WAIT_WARP);
    return r;
}
float emu_shfl(float v, int src, int xor_mode) { return (float)emu_shfl_d(v, src, xor_mode); }

enum { GATHER_BYTES = 64 };
static std::vector<unsigned char> posts;
void emu_warp_gather(const void *mine, size_t bytes, void *all)
{
    if (bytes > GATHER_BYTES) {
        fprintf(stderr, "emu: a warp exchange of %zu bytes per lane, more than %d\n", bytes, (int)GATHER_BYTES);
        abort();
    }
    unsigned lane = cur & 31, w = cur >> 5;
    memcpy(&posts[(w * 32 + lane) * GATHER_BYTES], mine, bytes);
    wait_as(WAIT_WARP);
    for (unsigned l = 0; l < 32; l++) memcpy((char *)all + l * bytes, &posts[(w * 32 + l) * GATHER_BYTES], bytes);
    wait_as(WAIT_WARP);
}

static void fiber_main(void)
{
    (*cur_body)();
    fib[cur].state = DONE;
    swapcontext(&fib[cur].ctx, &sched);
}

void emu_run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body)
{
    unsigned nt = block.x * block.y * block.z, nw = (nt + 31) / 32;
    if (nt == 0 || nt > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "emu: bad launch geometry grid (%u, %u, %u) block %u\n", grid.x, grid.y, grid.z, nt);
        abort();
    }
    if (smem > 227 * 1024) {
        fprintf(stderr, "emu: %zu bytes of dynamic shared memory: more than a Hopper SM has\n", smem);
        abort();
    }
    slots.assign((size_t)nw * 32, 0.0);
    posts.assign((size_t)nw * 32 * GATHER_BYTES, 0);
    preds.assign(nt, 0);
    dyn.assign(smem / sizeof(float) + 33, std::nanf(""));  // shared memory read before written shows as NaN
    fib.resize(nt);
    cur_body = &body;
    blockDim = block, gridDim = grid;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                for (unsigned t = 0; t < nt; t++) {
                    fiber &f = fib[t];
                    f.stack.resize(256 * 1024);
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack.data();
                    f.ctx.uc_stack.ss_size = f.stack.size();
                    f.ctx.uc_link = nullptr;
                    makecontext(&f.ctx, fiber_main, 0);
                    f.state = RUN;
                }
                for (;;) {
                    int ran = 0;
                    for (unsigned t = 0; t < nt; t++)
                        if (fib[t].state == RUN) {
                            cur = (int)t;
                            threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                            swapcontext(&sched, &fib[t].ctx);
                            ran = 1;
                        }
                    if (ran) continue;
                    // Nothing runnable: open the barriers whose every live participant has arrived.
                    unsigned live = 0, atblock = 0;
                    for (unsigned t = 0; t < nt; t++) live += fib[t].state != DONE, atblock += fib[t].state == WAIT_BLOCK;
                    if (live == 0) break;
                    int opened = 0;
                    if (atblock == live) {
                        for (unsigned t = 0; t < nt; t++) fib[t].state = fib[t].state == WAIT_BLOCK ? RUN : fib[t].state;
                        opened = 1;
                    }
                    for (unsigned w = 0; w < nw && !opened; w++) {
                        unsigned wl = 0, ww = 0;
                        for (unsigned t = 32 * w; t < nt && t < 32 * w + 32; t++)
                            wl += fib[t].state != DONE, ww += fib[t].state == WAIT_WARP;
                        if (ww && ww == wl) {
                            for (unsigned t = 32 * w; t < nt && t < 32 * w + 32; t++)
                                if (fib[t].state == WAIT_WARP) fib[t].state = RUN;
                            opened = 1;
                        }
                    }
                    if (!opened) {
                        fprintf(stderr, "emu: deadlock in block (%u, %u, %u): %u live threads, %u at __syncthreads, "
                                "the rest at warp shuffles of partly exited or divergent warps\n", x, y, z, live, atblock);
                        abort();
                    }
                }
            }
}

static std::map<const void *, int> optin;  // kernel -> the dynamic shared memory it opted in to
void emu_smem_optin(const void *kernel, int bytes) { optin[kernel] = bytes; }
void emu_smem_check(const void *kernel, size_t smem)
{
    if (smem <= 48 * 1024) return;
    auto it = optin.find(kernel);
    if (it == optin.end() || (size_t)it->second < smem) {
        fprintf(stderr, "emu: a launch with %zu bytes of dynamic shared memory, more than 48 KiB, without the kernel's "
                "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize) opt-in to that much: fails on a GPU\n",
                smem);
        abort();
    }
}

cudaError_t cudaMalloc(void **p, size_t n)
{
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemset(void *p, int v, size_t n) { memset(p, v, n); return cudaSuccess; }
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) { if (n) memmove(d, s, n); return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot) { *fr = *tot = 0; return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int i)
{
    if (i) return cudaErrorInvalidValue;
    snprintf(p->name, sizeof p->name, "CUDA emulator on the CPU");
    p->major = 9, p->minor = 0, p->totalGlobalMem = (size_t)1 << 30;
    return cudaSuccess;
}
const char *cudaGetErrorString(cudaError_t e) { return e ? "emulated error" : "no error"; }

struct emu_blas { int x; };
cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = new emu_blas; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void *, size_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t s) { return s ? "emulated cuBLAS error" : "success"; }

// Element i of an operand of type t, as float (bf16 exactly widened, as the tensor cores read it).
static float emu_elem(const void *p, cudaDataType t, size_t i)
{
    return t == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}

// cuBLAS's argument checks (a negative size, a leading dimension shorter than the stored rows) and the type
// combinations it supports for these compute types (cublasGemmEx's table): COMPUTE_32F takes A and B of one type
// with C fp32 or of A's type; COMPUTE_32F_FAST_16BF takes fp32 only.
static cublasStatus_t emu_gemm_check(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, cudaDataType at,
                                     int lda, cudaDataType bt, int ldb, cudaDataType ct, int ldc, cublasComputeType_t comp)
{
    int arows = ta == CUBLAS_OP_N ? m : k, brows = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < std::max(1, arows) || ldb < std::max(1, brows) || ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (comp == CUBLAS_COMPUTE_32F_FAST_16BF && (at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (comp == CUBLAS_COMPUTE_32F && (at != bt || (ct != CUDA_R_32F && ct != at))) return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}

// C (m, n; ldc) = alpha op(A) (m, k) op(B) (k, n) + beta C, column-major, summed in double; beta 0 never reads C
// (it may hold NaN poison, as on the GPU).
static void emu_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al, const void *A,
                     cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb, float be, void *C,
                     cudaDataType ct, int ldc)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int l = 0; l < k; l++) {
                float x = emu_elem(A, at, ta == CUBLAS_OP_N ? i + (size_t)l * lda : l + (size_t)i * lda);
                float y = emu_elem(B, bt, tb == CUBLAS_OP_N ? l + (size_t)j * ldb : j + (size_t)l * ldb);
                s += (double)x * y;
            }
            size_t o = i + (size_t)j * ldc;
            float r = (float)(al * s + (be == 0.0f ? 0.0 : (double)be * emu_elem(C, ct, o)));
            if (ct == CUDA_R_16BF)
                ((__nv_bfloat16 *)C)[o] = __float2bfloat16(r);
            else
                ((float *)C)[o] = r;
        }
}

cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t)
{
    cublasStatus_t st = emu_gemm_check(ta, tb, m, n, k, at, lda, bt, ldb, ct, ldc, comp);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    emu_gemm(ta, tb, m, n, k, *(const float *)alpha, A, at, lda, B, bt, ldb, *(const float *)beta, C, ct, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

static size_t emu_type_bytes(cudaDataType t) { return t == CUDA_R_16BF ? 2 : 4; }

// count GEMMs, item x on A + x sA, B + x sB, C + x sC (strides in elements). Besides the checks above
// (batchCount < 0 is invalid): output items that share an element, or an output that overlaps an input's
// address range, are undefined in cuBLAS; the emulator aborts on them.
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          long long sA, const void *B, cudaDataType bt, int ldb, long long sB,
                                          const void *beta, void *C, cudaDataType ct, int ldc, long long sC,
                                          int count, cublasComputeType_t comp, cublasGemmAlgo_t)
{
    cublasStatus_t st = emu_gemm_check(ta, tb, m, n, k, at, lda, bt, ldb, ct, ldc, comp);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (count < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (count == 0 || m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const size_t ea = emu_type_bytes(at), eb = emu_type_bytes(bt), ec = emu_type_bytes(ct);
    std::vector<uintptr_t> cel;
    cel.reserve((size_t)m * n * count);
    for (int x = 0; x < count; x++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) cel.push_back((uintptr_t)C + ((size_t)x * sC + i + (size_t)j * ldc) * ec);
    std::sort(cel.begin(), cel.end());
    if (std::adjacent_find(cel.begin(), cel.end()) != cel.end()) {
        fprintf(stderr, "emu: cublasGemmStridedBatchedEx: output items overlap (m %d n %d ldc %d strideC %lld count %d)\n",
                m, n, ldc, sC, count);
        abort();
    }
    // the address range of each operand over all items
    auto range = [&](const void *p, size_t esz, long long stride, int rows, int cols, int ld, uintptr_t *lo, uintptr_t *hi) {
        size_t last = (size_t)(rows - 1) + (size_t)(cols - 1) * ld + (size_t)(count - 1) * stride;
        *lo = (uintptr_t)p, *hi = (uintptr_t)p + (last + 1) * esz;
    };
    uintptr_t clo, chi, lo, hi;
    range(C, ec, sC, m, n, ldc, &clo, &chi);
    if (k > 0) {
        range(A, ea, sA, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda, &lo, &hi);
        bool bad = lo < chi && clo < hi;
        range(B, eb, sB, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb, &lo, &hi);
        bad = bad || (lo < chi && clo < hi);
        if (bad) {
            fprintf(stderr, "emu: cublasGemmStridedBatchedEx: the output overlaps an input\n");
            abort();
        }
    }
    const float al = *(const float *)alpha, be = *(const float *)beta;
    for (int x = 0; x < count; x++)
        emu_gemm(ta, tb, m, n, k, al, (const char *)A + (size_t)x * sA * ea, at, lda, (const char *)B + (size_t)x * sB * eb,
                 bt, ldb, be, (char *)C + (size_t)x * sC * ec, ct, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
