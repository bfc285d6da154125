/* model/model.h: the Llama-family decoder (llama, qwen2, qwen3, qwen3_moe) as one driver over a backend's
 * table of operations (lib/model/backend.h): weights, forward, backward, optimizer step.
 *
 * Parameters live in one contiguous fp32 array in the order of the parameter table (formats/model_config.h), so that
 * the optimizer, gradient all-reduce and checkpointing treat them as one vector. Shapes follow HF: a Linear
 * weight is (out, in). Activations are (B, T, C) row-major. */
#ifndef SCP_MODEL_H
#define SCP_MODEL_H

#include <stdint.h>

#include "core/dtype.h"
#include "formats/model_config.h"

typedef enum scp_attn_mode {
    SCP_ATTN_CAUSAL,          /* key j visible to query i iff j <= i */
    SCP_ATTN_BIDIRECTIONAL,   /* every key visible */
    SCP_ATTN_ANNEAL           /* causal, plus each future key visible with probability anneal_p (DiffuLLaMA) */
} scp_attn_mode;
/* Names on the command line and in JSON: "causal", "bidirectional", "anneal". The parser also takes the
 * annealing length, "anneal:STEPS" (STEPS >= 1 into *anneal_steps); -1 when unknown. */
const char *scp_attn_name(scp_attn_mode x);
int scp_attn_parse(const char *s, int64_t *anneal_steps);

typedef struct scp_model {
    scp_model_config cfg;
    int n_params;
    scp_param_desc *desc;       /* n_params entries, the parameter table */
    int64_t *offset;            /* offset of parameter i in weights/grads */
    int64_t n_weights;          /* total floats */
    float *weights;             /* (n_weights) fp32 master weights */
    float *grads;               /* (n_weights) gradients, NULL until scp_model_alloc_grads */
    const struct scp_backend *backend;
    void *ctx;                  /* backend/driver workspace (activations, sized for the largest batch seen) */
} scp_model;

/* A model with zero weights for cfg on backend "cpu" (or "cuda" when built). */
scp_model *scp_model_new(const scp_model_config *cfg, const char *backend);
/* Load config.json + model.safetensors (F32/F16/BF16 converted to fp32) from a checkpoint directory; every
 * tensor of the parameter table must be present with its shape, messages name the file and tensor. */
scp_model *scp_model_load(const char *ckpt_dir, const char *backend);
/* Random initialisation (normal(0, std) for matrices, 1 for norm weights, 0 for biases), deterministic in seed. */
void scp_model_init_random(scp_model *m, uint64_t seed, float std);
/* The same values for one parameter alone (d its entry, i its index: d->index), into p (numel floats). */
void scp_param_init_random(const scp_param_desc *d, int i, uint64_t seed, float std, float *p);
/* Write config.json and model.safetensors (dtype F32 or BF16) into dir, which must exist. Atomic per file;
 * the caller makes the directory itself atomic (scp_dir_begin/commit) and copies tokenizer files. */
int scp_model_save(const scp_model *m, const char *dir, scp_dtype dtype);
/* scp_model_load of one rank's part under expert parallelism: its config's expert_ranks and expert_rank set
 * (formats/model_config.h), the experts it holds read, the others' tensors passed over. */
scp_model *scp_model_load_experts(const char *dir, const char *backend, int expert_ranks, int expert_rank);
void scp_model_free(scp_model *m);
float *scp_model_param(scp_model *m, int i);           /* weights + offset[i] */
int scp_model_find(const scp_model *m, const char *name);  /* parameter index, -1 if absent */

/* One batch of B sequences of T positions. The loss is sum over positions of weight * CE(logits, target):
 * the caller chooses targets and weights, so one driver serves the AR loss (target = next token, weight 1/N),
 * the masked-diffusion loss (target = original token at masked positions, weight 1/(t L)), and logit shift on
 * or off (with shift, the logits at position i are scored against the token at i + 1). */
typedef struct scp_batch {
    int B, T;
    const int32_t *input;     /* (B, T) ids fed to the model (masked positions already hold mask_token_id) */
    const int32_t *target;    /* (B, T) id the logits at (b, i) must predict, or -1 (no loss there) */
    const float *weight;      /* (B, T) loss weight per position; NULL means 1 */
    const int32_t *doc;       /* (B, T) document index within the sequence, or NULL: with doc, attention
                                 stays inside a document (doc = -1 marks padding, which attends to itself) */
    scp_attn_mode attn;
    float anneal_p;           /* SCP_ATTN_ANNEAL: visibility probability of each future key */
    uint64_t anneal_seed;     /* SCP_ATTN_ANNEAL: which future keys (deterministic in seed, b, i, j) */
} scp_batch;

/* Forward; with backward != 0 also backward, ADDING into m->grads (call scp_model_zero_grad first; several
 * calls accumulate micro-batches). Returns the weighted loss sum. token_nll (B, T), when not NULL, receives
 * the unweighted -log p(target) per position (0 where target is -1). A batch the model cannot take (an id
 * outside the vocabulary, an anneal_p outside [0, 1]) returns NaN after scp_error(), touching no gradient.
 * Deterministic: the same inputs and thread count give bitwise the same loss and gradients (exact resume). */
double scp_model_step(scp_model *m, const scp_batch *b, int backward, float *token_nll);
/* Forward only, logits (B, T, V) for generation and scoring. */
int scp_model_logits(scp_model *m, const scp_batch *b, float *logits);
/* Forward only, the logits of n <= B T chosen rows (rows[k] = bi * T + t, any order) into logits (n, V):
 * the vocabulary projection runs on those rows only (rows NULL: all B T rows, as scp_model_logits). */
int scp_model_logits_rows(scp_model *m, const scp_batch *b, const int32_t *rows, int n, float *logits);
/* Incremental causal decoding of one sequence, keys and values cached per layer (generation): decode_start runs
 * the prompt ids (1 <= n <= capacity tokens) and writes the logits (V) of its last position; decode_next
 * appends one token and writes the logits (V) of its position; decode_end frees the cache (scp_model_free does
 * too). The logits are those of scp_model_logits on the whole causal sequence, summed in another order. Only
 * where scp_model_can_decode (the backend has attention_decode); elsewhere use scp_model_logits_rows. */
int scp_model_can_decode(const scp_model *m);
int scp_model_decode_start(scp_model *m, const int32_t *ids, int n, int capacity, float *logits);
int scp_model_decode_next(scp_model *m, int32_t id, float *logits);
void scp_model_decode_end(scp_model *m);

void scp_model_alloc_grads(scp_model *m);
/* On a device backend the weights, gradients and the AdamW moments stay on the device between steps, and the
 * host arrays (m->weights, m->grads, the moments last given to scp_model_adamw) fall behind. Call
 * scp_model_sync_host before reading them (scp_model_save does), scp_model_host_grads to bring only the
 * gradients down (an MPI all-reduce), and after writing any of them directly, scp_model_weights_changed (all
 * of them: weights, gradients, moments) or scp_model_grads_changed (the gradients), so that the device copies
 * are refreshed before they are next used. All are free on the CPU, where the host arrays are used in place. */
void scp_model_sync_host(const scp_model *m);
float *scp_model_host_grads(scp_model *m);
void scp_model_weights_changed(scp_model *m);
void scp_model_grads_changed(scp_model *m);
/* The backend's fp32 master weights (device memory on a device backend; m->weights on the CPU), brought up to
 * date; after writing them in place, scp_model_master_changed remakes the compute copy the kernels read and marks
 * the host copy stale (dist/fsdp.c updates its pieces of them). */
float *scp_model_master(scp_model *m);
void scp_model_master_changed(scp_model *m);
/* The backend's fp32 gradient vector (device memory on a device backend; m->grads on the CPU), brought up to date;
 * writing it in place (a collective summing it over ranks, dist/zero.c) keeps it the current copy. NULL before
 * scp_model_alloc_grads. */
float *scp_model_backend_grads(scp_model *m);
void scp_model_zero_grad(scp_model *m);
/* Global L2 norm of the gradients; NaN/Inf propagate (the trainer skips such steps). */
double scp_model_grad_norm(const scp_model *m);
void scp_model_scale_grads(scp_model *m, float s);
/* The sums of squares of the gradient vector per optimizer group: out has SCP_GROUP_COUNT entries (0 for a group
 * the model lacks); NaN/Inf propagate. */
void scp_model_grad_sumsq_groups(const scp_model *m, double *out);
/* The same of a (n_weights) vector x in the backend's memory (scp_model_master, or a copy of it). */
void scp_model_sumsq_groups(const scp_model *m, const float *x, double *out);

/* AdamW over all parameters: opt_m, opt_v are (n_weights) fp32 moments; lr[i] is the learning rate of
 * parameter i (its group's rate from the schedule; 0 freezes); weight decay only where desc[i].decay.
 * step is 1-based (bias correction). */
void scp_model_adamw(scp_model *m, float *opt_m, float *opt_v, const float *lr, float beta1, float beta2, float eps,
                     float weight_decay, int64_t step);

/* Activation recomputation (--recompute): on, a training step keeps only each layer's input and reruns the
 * layer's forward just before its backward, so activation memory is one layer's instead of L layers' for
 * about a third more compute. The results are bitwise the same. Off by default. */
void scp_model_set_recompute(scp_model *m, int on);

/* A gradient hook, for overlapping the gradient all-reduce with the backward pass: once armed with
 * scp_model_arm_grad_hook, the next backward calls fn(ctx, grads, off, n) for each range [off, off + n) of the
 * gradient vector as soon as the range is final (layer by layer from the last, then the embeddings, final
 * norm and LM head), then disarms. `grads` is the backend's gradient array (device memory on a device
 * backend, see scp_model_sync_host). The trainer arms it for the last micro-batch of a step. */
typedef void (*scp_grad_hook)(void *ctx, float *grads, int64_t off, int64_t n);
void scp_model_set_grad_hook(scp_model *m, scp_grad_hook fn, void *ctx);
void scp_model_arm_grad_hook(scp_model *m);

/* Parameters held outside the model (sharded training, dist/fsdp.h). The parameter vector is cut into units
 * (formats/model_config.h scp_param_units: unit 0 the embeddings, 1 + l layer l, L + 1 the final norm with the
 * LM head; under expert parallelism scp_param_units_split: 1 + 2 l and 2 + 2 l layer l without and with its
 * experts, held together, and 2 L + 1 the final norm with the LM head). The driver asks for a unit's weights just before it reads them and gives them back when it is done
 * (each layer's twice a training step: for the forward and again for the backward; units 0 and L + 1 from the
 * start of the forward to the end of the backward), and takes a gradient buffer for each unit before its
 * backward, announcing when the unit's gradient of this backward is complete. With a gradient provider the
 * backward never touches m->grads (scp_model_grad_norm and the other whole-vector functions do not apply). */
typedef struct scp_param_provider {
    void *ctx;
    /* Unit u's weights in the backend's storage type and memory (its floats in table order), valid until
     * release(u); `again` says that the backward of the same batch will acquire them again (a provider may keep
     * them meanwhile). NULL acquire: the model reads its own weight vector. */
    const void *(*acquire)(void *ctx, int u);
    void (*release)(void *ctx, int u, int again);
    /* A zeroed fp32 buffer in backend memory for unit u's gradient, into which the backward adds; grads_done(u)
     * when the unit's gradient of this backward is complete (the provider reduces it and takes the buffer back).
     * NULL grads: the backward adds into the model's gradient vector. */
    float *(*grads)(void *ctx, int u);
    void (*grads_done)(void *ctx, int u);
} scp_param_provider;
/* Install p (copied), or remove it with NULL. Returns the unit count. */
int scp_model_set_param_provider(scp_model *m, const scp_param_provider *p);
/* A model of cfg without its weight vector (m->weights NULL), for a weight provider: the parameter table and the
 * workspace only, so that no rank ever holds every weight. */
scp_model *scp_model_new_shell(const scp_model_config *cfg, const char *backend);

/* Expert parallelism (scp-train --expert-parallel, dist/expert.h): the model of a config with expert_ranks = P > 1
 * holds the experts of its place expert_rank in a group of P ranks (formats/model_config.h), and every MoE layer
 * sends each token's rows to the ranks that hold its chosen experts and takes their outputs back (model/moe.c),
 * through alltoallv over the group: send holds P blocks, block p (send_bytes[p]) for the group's rank p; recv
 * receives block q (recv_bytes[q]) from rank q, blocks back to back; complete on return, 0 or -1 with a message.
 * Every rank of the group runs the same layers at the same time (the all-to-alls are collective). */
typedef struct scp_expert_exchange {
    void *ctx;
    /* buffers in the backend's memory (the rows), and in host memory (the counts) */
    int (*alltoallv)(void *ctx, const void *send, const int64_t *send_bytes, void *recv, const int64_t *recv_bytes,
                     const char *what);
    int (*alltoallv_host)(void *ctx, const void *send, const int64_t *send_bytes, void *recv,
                          const int64_t *recv_bytes, const char *what);
} scp_expert_exchange;
void scp_model_set_expert_exchange(scp_model *m, const scp_expert_exchange *x);
/* 1 (once) when an exchange of the steps since the last call failed: their results are void. */
int scp_model_expert_exchange_failed(scp_model *m);

/* Whether query i of sequence bi sees key j under b's attention mode and documents: the rule every backend's
 * attention applies (model/attn_visibility.h; anneal draws come from scp_mix3(anneal_seed, bi, i << 32 | j)).
 * Exported for tests and tools. */
int scp_attn_visible(const scp_batch *b, int bi, int i, int j);

/* Bytes of backend workspace (activations kept for backward, gradient buffers, logits) the model holds now:
 * it grows to the largest batch seen. For memory reports. */
int64_t scp_model_workspace_bytes(const scp_model *m);

/* Threads for the CPU backend (OpenMP; OpenBLAS is kept at one thread per call, the backend splits matmuls over
 * the OpenMP threads itself); 0 = all cores. */
void scp_set_threads(int n);

#endif
