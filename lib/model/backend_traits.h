/* model/backend_traits.h: what the sizes of a model's buffers depend on in a backend (model/backend.h): the bytes
 * of an activation element, whether the buffers are host memory, and the attention state kept per layer. The
 * workspace account (model/workspace_size.h) takes these rather than a table, so that the memory planner
 * (scp-train --plan) can size a run for a backend that cannot be loaded here: a CUDA backend on a machine
 * without the plugin, its libraries or a GPU. */
#ifndef SCP_BACKEND_TRAITS_H
#define SCP_BACKEND_TRAITS_H

#include <stddef.h>

#include "model/backend.h"

typedef struct scp_backend_traits {
    const char *name;         /* the table's name ("cuda" for the alias "cuda-bf16") */
    size_t act_size;          /* scp_backend.act_size: 4 (fp32) or 2 (bf16) */
    int host_memory;          /* scp_backend.host_memory: 1 host buffers used in place, 0 device memory */
    size_t (*attn_state_floats)(int B, int H, int T);   /* scp_backend.attn_state_floats */
    int from_table;           /* 1: read from the loaded table; 0: the known traits of a CUDA backend */
} scp_backend_traits;

/* The traits of a loaded table. */
void scp_backend_traits_of(const scp_backend *be, scp_backend_traits *t);
/* The traits of a --backend name (NULL: cpu): from its table where scp_backend_find gives one here, else, for a
 * CUDA name whose plugin is not built or does not load on this machine, the traits the CUDA tables have (see
 * backend_traits.c; tests/model/unit-backend compares them with the tables where the plugin loads). -1 with a message
 * for a name that is not a registered backend. */
int scp_backend_traits_find(const char *name, scp_backend_traits *t);
/* The known traits of a CUDA backend's name ("cuda", "cuda-bf16", "cuda-fp32"), whether or not its plugin loads;
 * -1 for any other name. */
int scp_backend_traits_known(const char *name, scp_backend_traits *t);
/* Backend memory a CUDA backend takes besides the buffers the driver allocates, for a training pass of B
 * sequences of T tokens with H query heads, KV key/value heads of hd: cuBLAS's fixed 32 MiB workspace and the
 * scratch of the attention backward (lib/model/cuda/attention_gemm.cu: the (H, T, T) fp32 scores and bf16
 * probabilities of one sequence where that path fits its 2 GiB budget, else the flash kernels' (B, H, T) row
 * statistics and packed bf16 operands), with the quarter the scratch grows by (backend_cuda.cu scp_cuda_scratch).
 * An estimate written from those sources, which a C program cannot ask. 0 for the CPU backends. */
size_t scp_backend_scratch_bytes(const scp_backend_traits *t, int B, int T, int H, int KV, int hd);

#endif
