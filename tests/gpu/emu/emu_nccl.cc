// emu_nccl.cc: NCCL over MPI for ranks whose device memory is the CUDA emulator's (see nccl.h). With it,
// tests/gpu/emulated.sh runs scp-train's GPU ranks (lib/dist/nccl.c behind dist/coll.h) on several CPU processes:
// the sharded state of --zero 2 and 3 and the expert exchange as NCCL calls on device buffers, with more ranks
// than one GPU can give a test.
#include "nccl.h"

#define OMPI_SKIP_MPICXX 1   // the C API alone: MPI's C++ bindings need a library of their own
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <climits>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <unistd.h>
#include <vector>

struct emu_nccl_comm {
    MPI_Comm mpi;
    int rank, size;
};

static ncclResult_t fail(ncclResult_t r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emulated NCCL: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return r;
}

static size_t type_bytes(ncclDataType_t t)
{
    switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    }
    return 0;
}

static float bf16_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t float_to_bf16(float f)   // round to nearest even, as __float2bfloat16
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   // NaN stays a quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

// ---- checks ----------------------------------------------------------------------------------------------------

static ncclResult_t check_comm(ncclComm_t c, const char *call)
{
    if (!c) return fail(ncclInvalidArgument, "%s: no communicator", call);
    return ncclSuccess;
}

static ncclResult_t check_device(const void *p, size_t bytes, const char *call, const char *which)
{
    if (bytes && !emu_device_range(p, bytes))
        return fail(ncclInvalidArgument, "%s: %s (%p, %zu bytes) is not in one block of device memory", call, which, p,
                    bytes);
    return ncclSuccess;
}

static bool overlap(const void *a, size_t an, const void *b, size_t bn)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return an && bn && x < y + bn && y < x + an;
}

// ---- the calls of a group, run at its end ---------------------------------------------------------------------

enum op_kind { OP_ALLREDUCE, OP_REDUCE_SCATTER, OP_ALLGATHER, OP_SEND, OP_RECV };
struct op {
    op_kind kind;
    const void *send;
    void *recv;
    size_t count;   // elements: the piece of a reduce-scatter or all-gather, the whole of an all-reduce or send/recv
    ncclDataType_t type;
    int peer;
    ncclComm_t comm;
};
static int group_depth;
static std::vector<op> queued;

// EMU_NCCL_TRACE=FILE: at its exit each process appends a line of what it asked of NCCL, so that a test can tell
// that the calls it means to check were made ("rank R allreduce N reduce_scatter N allgather N send N recv N
// split N").
static struct {
    long calls[OP_RECV + 1], splits;
    int rank;
} trace = {{0}, 0, -1};
static void write_trace(void)
{
    const char *path = getenv("EMU_NCCL_TRACE");
    FILE *f = path && *path ? fopen(path, "a") : nullptr;
    if (!f) return;
    fprintf(f, "rank %d allreduce %ld reduce_scatter %ld allgather %ld send %ld recv %ld split %ld\n", trace.rank,
            trace.calls[OP_ALLREDUCE], trace.calls[OP_REDUCE_SCATTER], trace.calls[OP_ALLGATHER], trace.calls[OP_SEND],
            trace.calls[OP_RECV], trace.splits);
    fclose(f);
}

// The sum over the ranks of c's count elements from each rank's src (all of them at every rank, in rank order:
// (size, count) in all), into dst.
static void sum_in_rank_order(void *dst, const std::vector<char> &all, size_t count, ncclDataType_t type, int size)
{
    if (type == ncclFloat32) {
        const float *a = (const float *)all.data();
        float *d = (float *)dst;
        for (size_t i = 0; i < count; i++) {
            float s = a[i];
            for (int r = 1; r < size; r++) s += a[(size_t)r * count + i];
            d[i] = s;
        }
    } else {
        const uint16_t *a = (const uint16_t *)all.data();
        uint16_t *d = (uint16_t *)dst;
        for (size_t i = 0; i < count; i++) {
            uint16_t s = a[i];
            for (int r = 1; r < size; r++) s = float_to_bf16(bf16_to_float(s) + bf16_to_float(a[(size_t)r * count + i]));
            d[i] = s;
        }
    }
}

// Message sizes go to MPI as int.
static ncclResult_t check_int(size_t bytes, const char *call)
{
    if (bytes > (size_t)INT_MAX) return fail(ncclInvalidArgument, "%s: %zu bytes, over the emulator's 2 GiB", call, bytes);
    return ncclSuccess;
}

static ncclResult_t run(const op &o, std::vector<MPI_Request> &pending)
{
    const emu_nccl_comm *c = o.comm;
    const size_t es = type_bytes(o.type), bytes = o.count * es;
    switch (o.kind) {
    case OP_ALLREDUCE: {
        std::vector<char> all(bytes * (size_t)c->size);
        MPI_Allgather(o.send, (int)bytes, MPI_BYTE, all.data(), (int)bytes, MPI_BYTE, c->mpi);
        sum_in_rank_order(o.recv, all, o.count, o.type, c->size);
        return ncclSuccess;
    }
    case OP_REDUCE_SCATTER: {
        // every rank's contribution to this rank's piece, in rank order
        std::vector<char> all(bytes * (size_t)c->size);
        MPI_Alltoall(o.send, (int)bytes, MPI_BYTE, all.data(), (int)bytes, MPI_BYTE, c->mpi);
        sum_in_rank_order(o.recv, all, o.count, o.type, c->size);
        return ncclSuccess;
    }
    case OP_ALLGATHER:
        if ((const char *)o.send == (const char *)o.recv + (size_t)c->rank * bytes)
            MPI_Allgather(MPI_IN_PLACE, 0, MPI_BYTE, o.recv, (int)bytes, MPI_BYTE, c->mpi);
        else
            MPI_Allgather(o.send, (int)bytes, MPI_BYTE, o.recv, (int)bytes, MPI_BYTE, c->mpi);
        return ncclSuccess;
    case OP_SEND:
        pending.emplace_back();
        MPI_Isend(o.send, (int)bytes, MPI_BYTE, o.peer, 0, c->mpi, &pending.back());
        return ncclSuccess;
    case OP_RECV:
        pending.emplace_back();
        MPI_Irecv(o.recv, (int)bytes, MPI_BYTE, o.peer, 0, c->mpi, &pending.back());
        return ncclSuccess;
    }
    return ncclInternalError;
}

// A call outside a group is a group of one.
static ncclResult_t submit(const op &o)
{
    trace.calls[o.kind]++;
    queued.push_back(o);
    return group_depth ? ncclSuccess : ncclGroupEnd();
}

// ---- the API -------------------------------------------------------------------------------------------------

extern "C" {

const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclInvalidArgument: return "invalid argument (emulated NCCL)";
    case ncclInvalidUsage: return "invalid usage (emulated NCCL)";
    default: return "error (emulated NCCL)";
    }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    static unsigned serial;
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "emulated %ld %ld %u", (long)getpid(), (long)time(nullptr), serial++);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank)
{
    // Every process of the MPI job takes part, as every rank of scp's world does.
    MPI_Comm mpi;
    MPI_Comm_dup(MPI_COMM_WORLD, &mpi);
    int r, n;
    MPI_Comm_rank(mpi, &r);
    MPI_Comm_size(mpi, &n);
    ncclUniqueId root = id;
    MPI_Bcast(&root, (int)sizeof root, MPI_BYTE, 0, mpi);
    if (n != nranks || r != rank) {
        MPI_Comm_free(&mpi);
        return fail(ncclInvalidArgument, "ncclCommInitRank: rank %d of %d, where MPI has rank %d of %d", rank, nranks,
                    r, n);
    }
    if (memcmp(&root, &id, sizeof id) != 0) {
        MPI_Comm_free(&mpi);
        return fail(ncclInvalidArgument, "ncclCommInitRank: rank %d's unique id is not rank 0's", rank);
    }
    *comm = new emu_nccl_comm{mpi, r, n};
    if (trace.rank < 0) trace.rank = r, atexit(write_trace);
    return ncclSuccess;
}

ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t *newcomm, ncclConfig_t *)
{
    if (ncclResult_t e = check_comm(comm, "ncclCommSplit")) return e;
    trace.splits++;
    MPI_Comm mpi;
    MPI_Comm_split(comm->mpi, color == NCCL_SPLIT_NOCOLOR ? MPI_UNDEFINED : color, key, &mpi);
    if (mpi == MPI_COMM_NULL) {
        *newcomm = nullptr;
        return ncclSuccess;
    }
    int r, n;
    MPI_Comm_rank(mpi, &r);
    MPI_Comm_size(mpi, &n);
    *newcomm = new emu_nccl_comm{mpi, r, n};
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    if (ncclResult_t e = check_comm(comm, "ncclCommDestroy")) return e;
    MPI_Comm_free(&comm->mpi);
    delete comm;
    return ncclSuccess;
}

// The peers may be gone: the MPI communicator is left to the end of the job.
ncclResult_t ncclCommAbort(ncclComm_t comm)
{
    delete comm;
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async)
{
    if (ncclResult_t e = check_comm(comm, "ncclCommGetAsyncError")) return e;
    *async = ncclSuccess;
    return ncclSuccess;
}

ncclResult_t ncclGroupStart(void)
{
    group_depth++;
    return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void)
{
    if (group_depth > 0) group_depth--;
    else if (queued.empty()) return fail(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
    if (group_depth > 0) return ncclSuccess;
    std::vector<op> ops;
    ops.swap(queued);
    std::vector<MPI_Request> pending;
    ncclResult_t rc = ncclSuccess;
    for (const op &o : ops)
        if (rc == ncclSuccess) rc = run(o, pending);
    if (!pending.empty()) MPI_Waitall((int)pending.size(), pending.data(), MPI_STATUSES_IGNORE);
    return rc;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op_,
                           ncclComm_t comm, cudaStream_t stream)
{
    const char *call = "ncclAllReduce";
    if (ncclResult_t e = check_comm(comm, call)) return e;
    if (op_ != ncclSum || (type != ncclFloat32 && type != ncclBfloat16))
        return fail(ncclInvalidArgument, "%s: the emulator sums fp32 and bf16 only", call);
    const size_t bytes = count * type_bytes(type);
    if (ncclResult_t e = check_int(bytes * (size_t)comm->size, call)) return e;
    if (ncclResult_t e = check_device(send, bytes, call, "sendbuff")) return e;
    if (ncclResult_t e = check_device(recv, bytes, call, "recvbuff")) return e;
    if (send != recv && overlap(send, bytes, recv, bytes))
        return fail(ncclInvalidArgument, "%s: sendbuff and recvbuff overlap without being equal", call);
    if (cudaStreamQuery(stream) != cudaSuccess) return fail(ncclInvalidArgument, "%s: not a live stream", call);
    return submit(op{OP_ALLREDUCE, send, recv, count, type, -1, comm});
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t type, ncclRedOp_t op_,
                               ncclComm_t comm, cudaStream_t stream)
{
    const char *call = "ncclReduceScatter";
    if (ncclResult_t e = check_comm(comm, call)) return e;
    if (op_ != ncclSum || (type != ncclFloat32 && type != ncclBfloat16))
        return fail(ncclInvalidArgument, "%s: the emulator sums fp32 and bf16 only", call);
    const size_t piece = recvcount * type_bytes(type), whole = piece * (size_t)comm->size;
    if (ncclResult_t e = check_int(whole, call)) return e;
    if (ncclResult_t e = check_device(send, whole, call, "sendbuff")) return e;
    if (ncclResult_t e = check_device(recv, piece, call, "recvbuff")) return e;
    if ((const char *)recv != (const char *)send + (size_t)comm->rank * piece && overlap(send, whole, recv, piece))
        return fail(ncclInvalidArgument, "%s: recvbuff overlaps sendbuff other than at rank %d's piece", call, comm->rank);
    if (cudaStreamQuery(stream) != cudaSuccess) return fail(ncclInvalidArgument, "%s: not a live stream", call);
    return submit(op{OP_REDUCE_SCATTER, send, recv, recvcount, type, -1, comm});
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream)
{
    const char *call = "ncclAllGather";
    if (ncclResult_t e = check_comm(comm, call)) return e;
    const size_t piece = sendcount * type_bytes(type), whole = piece * (size_t)comm->size;
    if (!type_bytes(type)) return fail(ncclInvalidArgument, "%s: unknown data type %d", call, (int)type);
    if (ncclResult_t e = check_int(whole, call)) return e;
    if (ncclResult_t e = check_device(send, piece, call, "sendbuff")) return e;
    if (ncclResult_t e = check_device(recv, whole, call, "recvbuff")) return e;
    if ((const char *)send != (const char *)recv + (size_t)comm->rank * piece && overlap(send, piece, recv, whole))
        return fail(ncclInvalidArgument, "%s: sendbuff overlaps recvbuff other than at rank %d's piece", call, comm->rank);
    if (cudaStreamQuery(stream) != cudaSuccess) return fail(ncclInvalidArgument, "%s: not a live stream", call);
    return submit(op{OP_ALLGATHER, send, recv, sendcount, type, -1, comm});
}

ncclResult_t ncclSend(const void *send, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream)
{
    const char *call = "ncclSend";
    if (ncclResult_t e = check_comm(comm, call)) return e;
    const size_t bytes = count * type_bytes(type);
    if (!type_bytes(type)) return fail(ncclInvalidArgument, "%s: unknown data type %d", call, (int)type);
    if (peer < 0 || peer >= comm->size) return fail(ncclInvalidArgument, "%s: peer %d of %d ranks", call, peer, comm->size);
    if (ncclResult_t e = check_int(bytes, call)) return e;
    if (ncclResult_t e = check_device(send, bytes, call, "sendbuff")) return e;
    if (cudaStreamQuery(stream) != cudaSuccess) return fail(ncclInvalidArgument, "%s: not a live stream", call);
    return submit(op{OP_SEND, send, nullptr, count, type, peer, comm});
}

ncclResult_t ncclRecv(void *recv, size_t count, ncclDataType_t type, int peer, ncclComm_t comm, cudaStream_t stream)
{
    const char *call = "ncclRecv";
    if (ncclResult_t e = check_comm(comm, call)) return e;
    const size_t bytes = count * type_bytes(type);
    if (!type_bytes(type)) return fail(ncclInvalidArgument, "%s: unknown data type %d", call, (int)type);
    if (peer < 0 || peer >= comm->size) return fail(ncclInvalidArgument, "%s: peer %d of %d ranks", call, peer, comm->size);
    if (ncclResult_t e = check_int(bytes, call)) return e;
    if (ncclResult_t e = check_device(recv, bytes, call, "recvbuff")) return e;
    if (cudaStreamQuery(stream) != cudaSuccess) return fail(ncclInvalidArgument, "%s: not a live stream", call);
    return submit(op{OP_RECV, nullptr, recv, count, type, peer, comm});
}

}  // extern "C"
