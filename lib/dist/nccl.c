/* dist/nccl.c: the NCCL communicator of GPU ranks (dist/dist.h), bootstrapped through MPI: rank 0 creates the
 * ncclUniqueId and MPI_Bcast hands it to every rank, then ncclCommInitRank. Built only with HAVE_NCCL (which
 * configure sets only with CUDA and MPI), into the CUDA plugin (model/cuda_plugin.h), through which dist.c
 * calls it (dist/nccl.h). All-reduces take device pointers and run on a stream of their own,
 * so that the CUDA backend can hand over each layer's gradients as soon as the backward pass has produced them
 * and keep computing the next layer while NCCL reduces (overlap); scp_dist_nccl_wait joins before the
 * optimizer step. Every call here only queues its work: dist.c completes it by polling nccl_query with the dist
 * timeout and the naming of a dead or hung rank that its MPI collectives have (NCCL would wait forever). */
#include "config.h"

#include "dist/dist.h"
#include "dist/nccl.h"
#include "core/error.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

/* Bucket size of one ncclAllReduce: big enough to reach ring bandwidth (NCCL's own default buffers are
 * 4 MiB per channel), small enough that the first bucket of a layer starts early. */
#define NCCL_BUCKET ((int64_t)1 << 24)   /* floats (64 MiB) */

typedef struct nccl_state {
    ncclComm_t comm;
    cudaStream_t stream;   /* the communicator's own stream */
    cudaEvent_t ready;     /* recorded on the caller's stream: NCCL waits for the gradients to be written */
    cudaEvent_t done;      /* recorded on the communicator's stream: the compute stream waits for a prefetch */
    int device;
} nccl_state;

#define NCCL_TRY(call, what)                                                                                   \
    do {                                                                                                       \
        ncclResult_t r_ = (call);                                                                              \
        if (r_ != ncclSuccess) return scp_error("rank %d: %s: %s", d->rank, what, ncclGetErrorString(r_));     \
    } while (0)
#define CUDA_TRY(call, what)                                                                                   \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) return scp_error("rank %d: %s: %s", d->rank, what, cudaGetErrorString(e_));     \
    } while (0)

static int nccl_init(scp_dist *d)
{
    if (d->nccl) return 0;
    int ndev = 0;
    CUDA_TRY(cudaGetDeviceCount(&ndev), "cudaGetDeviceCount");
    if (ndev < 1) return scp_error("rank %d: no CUDA device for NCCL", d->rank);
    nccl_state *s = scp_xcalloc(1, sizeof *s);
    s->device = d->local_rank % ndev;
    CUDA_TRY(cudaSetDevice(s->device), "cudaSetDevice");
    ncclUniqueId id;
    if (d->rank == 0) NCCL_TRY(ncclGetUniqueId(&id), "ncclGetUniqueId");
    if (d->world > 1) MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    NCCL_TRY(ncclCommInitRank(&s->comm, d->world, id, d->rank), "ncclCommInitRank");
    CUDA_TRY(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    CUDA_TRY(cudaEventCreateWithFlags(&s->ready, cudaEventDisableTiming), "cudaEventCreate");
    CUDA_TRY(cudaEventCreateWithFlags(&s->done, cudaEventDisableTiming), "cudaEventCreate");
    d->nccl = s;
    return 0;
}

static int nccl_allreduce_f32(scp_dist *d, float *dev, int64_t n, void *stream)
{
    nccl_state *s = d->nccl;
    if (!s) return scp_error("rank %d: NCCL all-reduce before scp_dist_nccl_init", d->rank);
    /* The gradients are written on the caller's stream: order NCCL after what is queued there now. The event
     * may be recorded again at once: cudaStreamWaitEvent waits for the recording it sees at the call. */
    CUDA_TRY(cudaEventRecord(s->ready, stream ? (cudaStream_t)stream : cudaStreamLegacy), "cudaEventRecord");
    CUDA_TRY(cudaStreamWaitEvent(s->stream, s->ready, 0), "cudaStreamWaitEvent");
    NCCL_TRY(ncclGroupStart(), "ncclGroupStart");
    for (int64_t off = 0; off < n; off += NCCL_BUCKET) {
        size_t c = (size_t)(n - off < NCCL_BUCKET ? n - off : NCCL_BUCKET);
        NCCL_TRY(ncclAllReduce(dev + off, dev + off, c, ncclFloat32, ncclSum, s->comm, s->stream), "ncclAllReduce");
    }
    NCCL_TRY(ncclGroupEnd(), "ncclGroupEnd");
    d->comm_bytes += n * (int64_t)sizeof *dev;
    return 0;
}

/* 0 when the communicator's stream has done what was queued on it, 1 while it is at work, -1 (with a message,
 * the communicator aborted) when CUDA or NCCL reports an error. */
static int nccl_query(scp_dist *d)
{
    nccl_state *s = d->nccl;
    if (!s) return 0;
    if (!s->comm) return scp_error("rank %d: NCCL: the communicator was aborted", d->rank);
    cudaError_t e = cudaStreamQuery(s->stream);
    if (e == cudaSuccess) return 0;
    if (e != cudaErrorNotReady) return scp_error("rank %d: NCCL stream: %s", d->rank, cudaGetErrorString(e));
    ncclResult_t async;
    if (ncclCommGetAsyncError(s->comm, &async) == ncclSuccess && async != ncclSuccess) {
        ncclCommAbort(s->comm);
        s->comm = NULL;
        return scp_error("rank %d: NCCL: %s (a peer died?)", d->rank, ncclGetErrorString(async));
    }
    return 1;
}

/* Order the communicator's stream after the work queued on the legacy default stream (where the CUDA backend
 * computes), so that NCCL reads what the kernels wrote. */
static int after_compute(scp_dist *d, nccl_state *s)
{
    CUDA_TRY(cudaEventRecord(s->ready, cudaStreamLegacy), "cudaEventRecord");
    CUDA_TRY(cudaStreamWaitEvent(s->stream, s->ready, 0), "cudaStreamWaitEvent");
    return 0;
}

/* The all-gather of equal pieces queued on the communicator's stream, after the kernels queued so far (which
 * wrote this rank's piece, and read what the buffer held before). */
static int nccl_allgather_start(scp_dist *d, void *dev, int64_t piece_bytes)
{
    nccl_state *s = d->nccl;
    if (!s) return scp_error("rank %d: NCCL all-gather before scp_dist_nccl_init", d->rank);
    if (after_compute(d, s)) return -1;
    char *buf = dev;
    NCCL_TRY(ncclAllGather(buf + (size_t)d->rank * (size_t)piece_bytes, buf, (size_t)piece_bytes, ncclUint8, s->comm,
                           s->stream), "ncclAllGather");
    d->comm_bytes += piece_bytes * (d->world - 1);
    return 0;
}

/* The compute stream (the legacy default stream) waits, on the device, for what the communicator's stream has
 * queued so far. */
static int nccl_join(scp_dist *d)
{
    nccl_state *s = d->nccl;
    if (!s) return 0;
    CUDA_TRY(cudaEventRecord(s->done, s->stream), "cudaEventRecord");
    CUDA_TRY(cudaStreamWaitEvent(cudaStreamLegacy, s->done, 0), "cudaStreamWaitEvent");
    return 0;
}

static int nccl_reduce_scatter_f32(scp_dist *d, const float *dev, float *out, int64_t piece)
{
    nccl_state *s = d->nccl;
    if (!s) return scp_error("rank %d: NCCL reduce-scatter before scp_dist_nccl_init", d->rank);
    if (after_compute(d, s)) return -1;
    NCCL_TRY(ncclReduceScatter(dev, out, (size_t)piece, ncclFloat32, ncclSum, s->comm, s->stream), "ncclReduceScatter");
    d->comm_bytes += piece * (int64_t)sizeof *out * (d->world - 1);
    return 0;
}

static int nccl_reduce_scatter_bf16(scp_dist *d, const uint16_t *dev, uint16_t *out, int64_t piece)
{
    nccl_state *s = d->nccl;
    if (!s) return scp_error("rank %d: NCCL reduce-scatter before scp_dist_nccl_init", d->rank);
    if (after_compute(d, s)) return -1;
    NCCL_TRY(ncclReduceScatter(dev, out, (size_t)piece, ncclBfloat16, ncclSum, s->comm, s->stream), "ncclReduceScatter");
    d->comm_bytes += piece * (int64_t)sizeof *out * (d->world - 1);
    return 0;
}

static int nccl_alltoallv(scp_dist *d, const void *send, const int64_t *send_bytes, void *recv,
                          const int64_t *recv_bytes)
{
    nccl_state *s = d->nccl;
    if (!s) return scp_error("rank %d: NCCL all-to-all before scp_dist_nccl_init", d->rank);
    if (after_compute(d, s)) return -1;
    const char *sp = send;
    char *rp = recv;
    NCCL_TRY(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < d->world; r++) {
        NCCL_TRY(ncclSend(sp, (size_t)send_bytes[r], ncclUint8, r, s->comm, s->stream), "ncclSend");
        NCCL_TRY(ncclRecv(rp, (size_t)recv_bytes[r], ncclUint8, r, s->comm, s->stream), "ncclRecv");
        sp += send_bytes[r], rp += recv_bytes[r];
    }
    NCCL_TRY(ncclGroupEnd(), "ncclGroupEnd");
    return 0;
}

/* The communicator of group g of parent's ranks (scp_dist_group, which made g's MPI side): ncclCommSplit,
 * collective over the parent, on the parent's device with a stream of its own. */
static int nccl_split(const scp_dist *parent, int color, int key, scp_dist *g)
{
    const scp_dist *d = parent;
    nccl_state *p = parent->nccl, *s = scp_xcalloc(1, sizeof *s);
    s->device = p->device;
    ncclResult_t r = ncclCommSplit(p->comm, color, key, &s->comm, NULL);
    if (r != ncclSuccess) {
        free(s);
        return scp_error("rank %d: ncclCommSplit: %s", d->rank, ncclGetErrorString(r));
    }
    g->nccl = s;
    CUDA_TRY(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    CUDA_TRY(cudaEventCreateWithFlags(&s->ready, cudaEventDisableTiming), "cudaEventCreate");
    CUDA_TRY(cudaEventCreateWithFlags(&s->done, cudaEventDisableTiming), "cudaEventCreate");
    return 0;
}

static void nccl_free(scp_dist *d)
{
    nccl_state *s = d->nccl;
    if (!s) return;
    if (s->comm) ncclCommDestroy(s->comm);
    cudaEventDestroy(s->ready);
    cudaEventDestroy(s->done);
    cudaStreamDestroy(s->stream);
    free(s);
    d->nccl = NULL;
}

const scp_nccl_functions *scp_nccl_plugin_entry(const char *version, size_t dist_size)
{
    static const scp_nccl_functions f = {nccl_init,      nccl_allreduce_f32, nccl_query,           nccl_free,
                                         nccl_reduce_scatter_f32, nccl_reduce_scatter_bf16, nccl_alltoallv,
                                         nccl_split,     nccl_allgather_start, nccl_join};
    return strcmp(version, PACKAGE_VERSION) == 0 && dist_size == sizeof(scp_dist) ? &f : NULL;
}
