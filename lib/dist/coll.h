/* dist/coll.h: the collectives that sharded training (dist/fsdp.c) and expert parallelism are written over, one
 * small table with two transports: MPI on host memory (CPU ranks, and CPU backends that pose as devices) and
 * NCCL on device memory (GPU ranks, through the CUDA plugin). Every entry but allgather_start is complete when it
 * returns, bounded by the dist timeout, and a no-op (or a copy) for one rank.
 *
 * Pieces are equal-sized, as NCCL's all-gather and reduce-scatter need: a buffer of world pieces holds rank r's
 * at r * piece (dist/shard_layout.h pads the units to that). */
#ifndef SCP_DIST_COLL_H
#define SCP_DIST_COLL_H

#include <stdint.h>

#include "dist/dist.h"

typedef struct scp_coll {
    const char *name;   /* "mpi" or "nccl" */
    /* In-place sum over ranks of n floats. */
    int (*allreduce_f32)(scp_dist *d, float *x, int64_t n, const char *what);
    /* buf holds world pieces of piece_bytes; each rank has written its own; afterwards all ranks hold all. */
    int (*allgather_pieces)(scp_dist *d, void *buf, int64_t piece_bytes, const char *what);
    /* The same, started so that it overlaps the compute that follows (ZeRO-3's prefetch of the next unit):
     * allgather_join then orders the compute after it, before the buffer is read. NCCL runs it on the
     * communicator's stream after the kernels queued so far, beside the kernels queued after the start; the
     * join waits for it on the host (bounded by the dist timeout, so that a dead peer is named rather than
     * holding the compute stream) and makes the compute stream wait for it. MPI completes it at the start, and
     * the join does nothing. One started all-gather at a time per communicator. */
    int (*allgather_start)(scp_dist *d, void *buf, int64_t piece_bytes, const char *what);
    int (*allgather_join)(scp_dist *d, const char *what);
    /* x (world * piece floats): this rank's contribution to every piece, and scratch (used up); out (piece
     * floats): the sum over ranks of piece `rank`. */
    int (*reduce_scatter_f32)(scp_dist *d, float *x, float *out, int64_t piece, const char *what);
    /* The same in bf16 (uint16_t bit patterns), the partial sums rounded to bf16 as they travel. */
    int (*reduce_scatter_bf16)(scp_dist *d, uint16_t *x, uint16_t *out, int64_t piece, const char *what);
    /* send: world blocks back to back, block r (send_bytes[r]) for rank r; recv: block r from rank r
     * (recv_bytes[r]) at the sum of the sizes before it. */
    int (*alltoallv)(scp_dist *d, const void *send, const int64_t *send_bytes, void *recv, const int64_t *recv_bytes,
                     const char *what);
} scp_coll;

/* The transport for buffers of a backend: NCCL when d has a communicator (GPU ranks), else MPI. */
const scp_coll *scp_coll_for(const scp_dist *d);

#endif
