/* model/backend.h: the table of operations the model driver (lib/model/model.c) is written over. A backend
 * (lib/model/cpu/, lib/model/cuda/) fills one scp_backend; the driver never touches numbers itself, only calls
 * these entries on buffers the backend allocated, so a new backend plugs in without changing the driver.
 *
 * The entries and the contract of each are listed once, in model/backend_ops.def, which generates the struct
 * below, every backend's table and the registry's check of a table. Entries that not every backend has belong
 * to a capability (SCP_BACKEND_CAP_*): a caller asks scp_backend_has() before it uses them, and a table that
 * claims a capability fills all its entries (scp_backend_find refuses, aborting, a table that does not).
 *
 * Conventions: every pointer is backend memory (host memory for the CPU backends); M is the number of token
 * rows (B * T); a Linear weight is (N, K) as in HF, so y = x W^T + b; "ld" arguments are row strides in
 * elements, so one buffer can hold q, k and v side by side.
 *
 * Storage: activations, their gradients and the compute copy of the weights are `scp_act` arrays, whose element
 * is fp32 or bf16 as the backend's act_size says (4 or 2 bytes); the driver only ever offsets them by whole
 * elements (model/model_internal.h AT). Statistics (rstd, log-sum-exp, nll, routing weights), the fp32 master
 * weights, weight gradients and optimizer moments are float arrays on every backend. Kernels compute in fp32
 * whatever the storage: they widen what they read and round (to nearest even) what they write, once per stored
 * value. Backward entries ADD into weight gradients (micro-batches accumulate); whether they add into input
 * gradients is said per entry. All entries are deterministic for a fixed thread count (no atomics, reductions
 * in a fixed order), which exact resume relies on.
 *
 * Checks: tests/model/backend-ops runs every entry of every registered backend usable on the machine against the
 * reference of its storage type ("cpu-ref" for fp32, "cpu-bf16" for bf16, itself checked against "cpu-ref"). */
#ifndef SCP_BACKEND_H
#define SCP_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An element of activation storage: opaque, so that a pointer to it cannot be indexed or offset by mistake as if
 * it were a float array (see "Storage" above). */
typedef struct scp_act scp_act;
/* A float array handed to a backend whose storage is fp32 (act_size 4): tests and benchmarks. */
#define SCP_ACT(p) ((scp_act *)(void *)(p))

/* Attention over one batch: q, k, v live in one (M, ld_qkv) buffer at column offsets given by the pointers;
 * q has H heads, k and v have KV heads (GQA: query head h reads kv head h / (H / KV)), each hd wide. */
typedef struct scp_attn_args {
    int B, T, H, KV, hd;
    int ld_qkv;               /* row stride of q, k, v (and of dq, dk, dv) */
    int causal;               /* key j visible to query i only if j <= i (or, annealed, if its draw says so) */
    float scale;              /* softmax scale, 1/sqrt(hd) */
    /* The rest of the visibility rule, in a form kernels evaluate for any (b, i, j) without a (B, T, T) array
     * (model/attn_visibility.h scp_attn_visible_at): */
    const int32_t *doc;       /* (B, T) document id of each position (backend memory), or NULL: a query sees
                                 keys of its own document only; a negative id sees itself alone */
    uint64_t anneal_seed;     /* with causal: a future key j > i is also visible when the draw of */
    uint64_t anneal_thresh;   /* (seed, b, i, j) falls below anneal_thresh (0: never, plain causal) */
} scp_attn_args;

/* Capabilities: the groups of entries of backend_ops.def (its first column). CORE is every backend's (0: it
 * needs no claim); a backend claims the others in its caps. */
enum {
    SCP_BACKEND_CAP_CORE = 0,
    SCP_BACKEND_CAP_MOE = 1 << 0,      /* moe_route, moe_route_bwd, moe_combine, moe_combine_bwd: qwen3_moe */
    SCP_BACKEND_CAP_DECODE = 1 << 1,   /* attention_decode: incremental decoding against a KV cache */
    /* moe_permute, moe_gemm_fwd, moe_gemm_bwd_inp, moe_gemm_bwd_w: the permutation by expert and a layer's
     * experts as one grouped GEMM each, with the shapes in backend memory (no host synchronisation). Without it
     * the driver sorts on the host and runs the experts one matmul each. */
    SCP_BACKEND_CAP_MOE_GROUPED = 1 << 2,
    SCP_BACKEND_CAP_ALL = SCP_BACKEND_CAP_MOE | SCP_BACKEND_CAP_DECODE | SCP_BACKEND_CAP_MOE_GROUPED
};

typedef struct scp_backend {
    const char *name;
    unsigned caps;            /* SCP_BACKEND_CAP_* bits: the optional entries this table fills */
    /* Bytes of one scp_act element: 4 (fp32) or 2 (bf16; then host_memory is 0). */
    size_t act_size;
    /* 1: the buffers are plain host memory (the fp32 CPU backends), so m->weights and m->grads are used in place.
     * 0 (a device, or a CPU backend posing as one): the weights, gradients and AdamW moments live in backend
     * buffers between steps, and the host arrays model/model.h promises its callers are copies brought up to
     * date on demand ("host and device" in model/model.c). */
    int host_memory;
    /* The entries, in backend_ops.def's order (a pointer per line there). */
#define SCP_BACKEND_OP(cap, ret, op, params) ret(*op) params;
#include "model/backend_ops.def"
} scp_backend;

/* 1 when the table fills every entry of the capabilities `caps` (SCP_BACKEND_CAP_* bits; CORE always). */
static inline int scp_backend_has(const scp_backend *be, unsigned caps) { return (be->caps & caps) == caps; }

/* ---- the registry (model/backend_registry.c) ---- */

/* The table a --backend name means (NULL: "cpu"), checked (scp_backend_missing); NULL with the error set for
 * a name that is not registered or not built. A CUDA name is found without asking for a GPU: a run without one
 * stops at the first allocation, saying so. */
const scp_backend *scp_backend_find(const char *name);

/* The registered backends, i = 0, 1, ...: the name of the i-th (NULL past the last), in the order --backend's
 * error message lists them (aliases not included). */
const char *scp_backend_registered(int i);
/* 0 when name is a registered backend (or an alias), built and usable here or not, else -1 with "unknown backend
 * 'NAME' (the backends: ...)": the programs refuse an unknown --backend as a usage error (exit 2), and a known one
 * this build or machine cannot run later, when the model is made (exit 1). */
int scp_backend_check_name(const char *name);
/* 1 when the backend `name` can run here: built (CUDA when configure found it), and, for a device backend, a
 * device present. 0 with the reason in why (why_len bytes, may be 0) otherwise, or for a name not registered. */
int scp_backend_usable(const char *name, char *why, size_t why_len);

/* The first entry that `be` lacks, as its name: one of the CORE entries or of the capabilities it claims is
 * NULL, or act_size, host_memory or caps is out of range ("act_size", "caps"). NULL for a complete table. */
const char *scp_backend_missing(const scp_backend *be);

/* The tables of the CPU backends. "cpu" is the fast one; "cpu-ref" the plain reference loops (naive matmul and
 * attention, in the order of the maths) it is checked against; "cpu-mirror" the fast one declared as device
 * memory (host_memory 0), which tests the driver's host/device mirroring without a device; "cpu-bf16" the fast
 * one behind bf16 storage (each entry widens its bf16 inputs, runs the fp32 kernel and rounds its outputs:
 * lib/model/cpu/backend_bf16.c), the reference for the numerics of bf16 storage and the test of the driver's
 * 2-byte arithmetic. The CUDA tables, "cuda" (bf16 storage, also named "cuda-bf16") and "cuda-fp32", are in
 * lib/model/cuda/backend_cuda.h where configure built them. */
extern const scp_backend scp_backend_cpu;
extern const scp_backend scp_backend_cpu_ref;
extern const scp_backend scp_backend_cpu_mirror;
extern const scp_backend scp_backend_cpu_bf16;

#ifdef __cplusplus
}
#endif
#endif
