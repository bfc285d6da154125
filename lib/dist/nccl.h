/* dist/nccl.h: the NCCL communicator of GPU ranks as the CUDA plugin (model/cuda_plugin.h) holds it
 * (dist/nccl.c): dist.c finds its entry point through the plugin loader and calls dist/dist.h's scp_dist_nccl_*
 * through the functions it returns. */
#ifndef SCP_NCCL_H
#define SCP_NCCL_H

#include <stddef.h>
#include <stdint.h>

#include "dist/dist.h"

typedef struct scp_nccl_functions {
    int (*init)(scp_dist *d);
    /* Each call below queues its work on the communicator's stream and returns: query says when it is done (0),
     * still at work (1) or failed (-1 with a message), and dist.c polls it with the dist timeout. */
    int (*allreduce_f32)(scp_dist *d, float *dev, int64_t n, void *stream);
    int (*query)(scp_dist *d);
    void (*free)(scp_dist *d);
    /* The collectives of dist/coll.h on device memory. */
    int (*reduce_scatter_f32)(scp_dist *d, const float *dev, float *out, int64_t piece);
    int (*reduce_scatter_bf16)(scp_dist *d, const uint16_t *dev, uint16_t *out, int64_t piece);
    int (*alltoallv)(scp_dist *d, const void *send, const int64_t *send_bytes, void *recv, const int64_t *recv_bytes);
    /* g's communicator, the ranks of parent's with the same color (ncclCommSplit). */
    int (*split)(const scp_dist *parent, int color, int key, scp_dist *g);
    /* The all-gather of dist/coll.h's allgather_pieces, after the kernels queued so far; join makes the compute
     * stream wait for what the communicator's stream has queued. */
    int (*allgather_start)(scp_dist *d, void *dev, int64_t piece_bytes);
    int (*join)(scp_dist *d);
} scp_nccl_functions;

/* The functions, or NULL when `version` (PACKAGE_VERSION) or `dist_size` (sizeof(scp_dist)) are not those the
 * plugin was built with. */
#define SCP_NCCL_ENTRY "scp_nccl_plugin_entry"
const scp_nccl_functions *scp_nccl_plugin_entry(const char *version, size_t dist_size);

#endif
