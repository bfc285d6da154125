/* dist/coll.c: the two transports of dist/coll.h, over dist/dist.h's MPI and NCCL calls. */
#include "dist/coll.h"

static int nccl_allreduce(scp_dist *d, float *x, int64_t n, const char *what)
{
    (void)what;
    return scp_dist_nccl_allreduce_f32(d, x, n, NULL) || scp_dist_nccl_wait(d) ? -1 : 0;
}

static int nccl_allgather(scp_dist *d, void *buf, int64_t piece_bytes, const char *what)
{
    (void)what;
    return scp_dist_nccl_allgather_pieces(d, buf, piece_bytes);
}

static int nccl_allgather_start(scp_dist *d, void *buf, int64_t piece_bytes, const char *what)
{
    (void)what;
    return scp_dist_nccl_allgather_start(d, buf, piece_bytes);
}

static int nccl_allgather_join(scp_dist *d, const char *what)
{
    (void)what;
    return scp_dist_nccl_join(d);
}

static int mpi_allgather_join(scp_dist *d, const char *what)
{
    (void)d, (void)what;
    return 0;   /* completed when started */
}

static int nccl_reduce_scatter(scp_dist *d, float *x, float *out, int64_t piece, const char *what)
{
    (void)what;
    return scp_dist_nccl_reduce_scatter_f32(d, x, out, piece);
}

static int nccl_reduce_scatter_bf16(scp_dist *d, uint16_t *x, uint16_t *out, int64_t piece, const char *what)
{
    (void)what;
    return scp_dist_nccl_reduce_scatter_bf16(d, x, out, piece);
}

static int nccl_alltoallv(scp_dist *d, const void *send, const int64_t *send_bytes, void *recv,
                          const int64_t *recv_bytes, const char *what)
{
    (void)what;
    return scp_dist_nccl_alltoallv(d, send, send_bytes, recv, recv_bytes);
}

static const scp_coll coll_mpi = {"mpi", scp_dist_allreduce_sum_f32, scp_dist_allgather_pieces,
                                  scp_dist_allgather_pieces, mpi_allgather_join, scp_dist_reduce_scatter_f32,
                                  scp_dist_reduce_scatter_bf16, scp_dist_alltoallv};
static const scp_coll coll_nccl = {"nccl", nccl_allreduce, nccl_allgather, nccl_allgather_start, nccl_allgather_join,
                                   nccl_reduce_scatter, nccl_reduce_scatter_bf16, nccl_alltoallv};

const scp_coll *scp_coll_for(const scp_dist *d) { return d->nccl ? &coll_nccl : &coll_mpi; }
