/* train/memplan.h: the memory planner of scp-train --plan: the bytes one rank of a training run holds, and the
 * bytes it sends per optimizer step, for a config, a backend, a rank count, a ZeRO stage and a batch shape,
 * without allocating the model. It shares its account with the allocators rather than keeping formulas of its
 * own: the activations are the workspace buffers of model/workspace_size.h (what ws_reserve allocates), the
 * parameter count and the units come from the parameter table (formats/model_config.h), and the ZeRO-1, 2 and 3
 * shards from the unit layout of dist/shard_layout.h (what dist/zero.c and dist/fsdp.c allocate).
 *
 * What a rank holds, with n the parameter floats, S its ZeRO-1/2/3 shard (the layout's shard_off[units]), G = U0 + UL + Lmax the floats of the units held gathered at once (the
 * embeddings, the final norm with the LM head, and the largest layer), a the backend's act_size:
 *            master (fp32)   weights (compute copy)   grads (fp32)   optimizer (fp32 moments)
 *   zero 0   4 n             c n                      4 n            8 n
 *   zero 1   4 n             c n                      4 n            8 S
 *   zero 2   4 n             c n                      4 S + 4 G      8 S
 *   zero 3   4 S             a G                      4 S + 4 G      8 S
 * where c = a on a backend with bf16 storage (its kernels read a rounded copy of the master) and 0 with fp32
 * storage (they read the master itself). ZeRO-1 on several ranks adds 4 Umax of buffers (the largest gathered
 * unit: the buffer its weight all-gather goes through). ZeRO-3's prefetch (over several ranks, without --keep-gathered
 * and expert groups) adds a Ue of weights, Ue the largest even unit after the embeddings (the units alternate
 * between two buffers so that the next one is gathered while one runs). With the gradient statistics at stages 0 and 1, 4 n more of buffers (the
 * master from before the update, train/grad_stats.h). A device backend (host_memory 0) counts its device memory;
 * its host copies of the weights, gradients and moments are not counted.
 *
 * Expert parallelism over groups of E ranks: n is the rank's own parameters (its place's experts and the rest),
 * the units are scp_param_units_split's with the experts' cut over world / E ranks (dist/fsdp.h), and the
 * activations add the rows the rank's experts receive, counted as balanced routing sends
 * them (R = M k per layer: the tokens of a pass times the experts chosen per token), kept per layer slot with
 * their gate|up and h, (D + 3 Ie) a R, and as scratch of the same size (model/moe.c). */
#ifndef SCP_TRAIN_MEMPLAN_H
#define SCP_TRAIN_MEMPLAN_H

#include <stdint.h>
#include <jansson.h>

#include "formats/model_config.h"
#include "model/backend_traits.h"
#include "model/workspace_size.h"

typedef struct scp_memplan_opts {
    const char *backend;   /* a --backend name (NULL: cpu) */
    int world, zero;       /* ranks (>= 1) and ZeRO stage (0 .. 3) */
    int T;                 /* tokens per sequence */
    int batch, micro;      /* sequences per optimizer step and per forward/backward (scp_train_batches_plan) */
    int recompute;         /* activation recomputation: one layer slot */
    int keep_gathered;     /* zero 3: every layer's gathered weights held from its forward to its backward */
    int no_prefetch;       /* zero 3: no buffer for the next unit's gather (dist/fsdp.h prefetch) */
    int reduce_bf16;       /* zero 2, 3: gradients reduced in bf16 (half the bytes, a bf16 copy of the units) */
    int expert_parallel;   /* ranks per expert group (dist/expert.h), 0 or 1: none; not with zero 1 */
    int grad_stats;        /* zero 0, 1: the update ratios' copy of the master (train/grad_stats.h), 4 n */
} scp_memplan_opts;

typedef struct scp_memplan {
    scp_backend_traits be;
    int64_t params;           /* n */
    int64_t shard;            /* floats of this rank's optimizer state: n or S */
    int64_t gathered;         /* zero 2, 3: G; else 0 */
    int rows;                 /* rank 0's sequences per step (the most: the first batch % world ranks take one more) */
    int rows_per_pass;        /* sequences per forward/backward: min(micro, rows) */
    int passes;               /* forward/backward passes per step: ceil(rows / micro) */
    scp_ws_sizes ws;          /* the workspace of one pass */
    /* bytes per rank */
    int64_t weights, master, grads, optimizer, activations, buffers, total;
    int64_t comm_bytes;       /* sent by one rank per optimizer step (as much is received) */
    int64_t all_to_all_bytes; /* of which by the experts' all-to-alls (expert parallelism) */
    int64_t expert_params;    /* expert parallelism: the experts' floats this rank holds */
} scp_memplan;

/* The plan; -1 with a message for an unknown backend or a stage outside 0 .. 3. */
int scp_memplan_make(const scp_model_config *c, const scp_memplan_opts *o, scp_memplan *p);
/* The plan as scp-train --plan prints it (man 1 scp-train, PLANNING); gpu_memory > 0 adds it and "fits". New
 * reference. */
json_t *scp_memplan_json(const scp_memplan *p, const scp_memplan_opts *o, const char *config, int64_t gpu_memory);

#endif
