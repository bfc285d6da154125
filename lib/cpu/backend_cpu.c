/* backend_cpu.c: the CPU backends' operation tables, and the lookup by name. "cpu" is the fast one; "cpu-ref"
 * swaps in the plain reference loops for the operations where the fast version is clever (matmul, attention,
 * cross-entropy), so a whole training step can be checked against the definitions; "cpu-mirror" is "cpu"
 * posing as device memory, so the driver's mirroring for devices is tested on any machine. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cpu.h"
#include "error.h"
#ifdef HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif

static void *cpu_alloc(size_t bytes)
{
    /* 64-byte alignment: whole cache lines and aligned vector loads. */
    size_t n = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n ? n : 64);
    if (!p) scp_die("out of memory (%zu bytes of model workspace)", bytes);
    memset(p, 0, n ? n : 64);
    return p;
}

static void cpu_free(void *p) { free(p); }

static void cpu_zero(float *x, size_t n)
{
#pragma omp parallel for schedule(static) if (n > (1 << 20))
    for (size_t i = 0; i < n; i += 4096) memset(x + i, 0, (n - i < 4096 ? n - i : 4096) * sizeof(float));
}

static void cpu_copy(float *dst, const float *src, size_t n)
{
#pragma omp parallel for schedule(static) if (n > (1 << 20))
    for (size_t i = 0; i < n; i += 4096) memcpy(dst + i, src + i, (n - i < 4096 ? n - i : 4096) * sizeof(float));
}

static void cpu_bytes(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }

#define COMMON                                                                                                  \
    .alloc = cpu_alloc, .free = cpu_free, .zero = cpu_zero, .copy = cpu_copy, .upload = cpu_bytes,              \
    .download = cpu_bytes, .rmsnorm_fwd = scp_cpu_rmsnorm_fwd, .rmsnorm_bwd = scp_cpu_rmsnorm_bwd,             \
    .rope = scp_cpu_rope, .swiglu_fwd = scp_cpu_swiglu_fwd, .swiglu_bwd = scp_cpu_swiglu_bwd,                   \
    .embedding_fwd = scp_cpu_embedding_fwd, .embedding_bwd = scp_cpu_embedding_bwd,                             \
    .gather_rows = scp_cpu_gather_rows, .scatter_rows = scp_cpu_scatter_rows, .adamw = scp_cpu_adamw,          \
    .sumsq = scp_cpu_sumsq, .scale = scp_cpu_scale, .moe_route = scp_cpu_moe_route,                            \
    .moe_route_bwd = scp_cpu_moe_route_bwd, .moe_combine = scp_cpu_moe_combine, .moe_combine_bwd = scp_cpu_moe_combine_bwd

#define FAST                                                                                                    \
    .matmul_fwd = scp_cpu_matmul_fwd, .matmul_bwd_inp = scp_cpu_matmul_bwd_inp, .matmul_bwd_w = scp_cpu_matmul_bwd_w, \
    .attention_fwd = scp_cpu_attention_fwd, .attention_bwd = scp_cpu_attention_bwd, .crossentropy = scp_cpu_crossentropy

const scp_backend scp_backend_cpu = {.name = "cpu", COMMON, FAST, .host_memory = 1};

const scp_backend scp_backend_cpu_mirror = {.name = "cpu-mirror", COMMON, FAST, .host_memory = 0};

const scp_backend scp_backend_cpu_ref = {
    .name = "cpu-ref",
    COMMON,
    .matmul_fwd = scp_cpu_matmul_fwd_ref,
    .matmul_bwd_inp = scp_cpu_matmul_bwd_inp_ref,
    .matmul_bwd_w = scp_cpu_matmul_bwd_w_ref,
    .attention_fwd = scp_cpu_attention_fwd_ref,
    .attention_bwd = scp_cpu_attention_bwd_ref,
    .crossentropy = scp_cpu_crossentropy_ref,
    .host_memory = 1,
};

const scp_backend *scp_backend_find(const char *name)
{
    if (!name || strcmp(name, "cpu") == 0) return &scp_backend_cpu;
    if (strcmp(name, "cpu-ref") == 0) return &scp_backend_cpu_ref;
    if (strcmp(name, "cpu-mirror") == 0) return &scp_backend_cpu_mirror;
#ifdef HAVE_CUDA
    if (strcmp(name, "cuda") == 0) return &scp_backend_cuda;
#define BACKENDS "cpu, cpu-ref, cpu-mirror, cuda"
#else
    if (strcmp(name, "cuda") == 0) {
        scp_error("backend 'cuda': this build has no CUDA backend (configure found no nvcc and cuBLAS)");
        return NULL;
    }
#define BACKENDS "cpu, cpu-ref, cpu-mirror"
#endif
    scp_error("unknown backend '%s' (available: " BACKENDS ")", name);
    return NULL;
}
