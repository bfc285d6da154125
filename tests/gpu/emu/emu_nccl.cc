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
#include <map>
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

// ---- the calls: posted at the end of their group, completed in order on their stream ----------------------

enum op_kind { OP_ALLREDUCE, OP_REDUCE_SCATTER, OP_ALLGATHER, OP_SEND, OP_RECV };
static const char *const op_name[] = {"ncclAllReduce", "ncclReduceScatter", "ncclAllGather", "ncclSend", "ncclRecv"};
struct op {
    op_kind kind;
    const void *send;
    void *recv;
    size_t count;   // elements: the piece of a reduce-scatter or all-gather, the whole of an all-reduce or send/recv
    ncclDataType_t type;
    int peer;
    ncclComm_t comm;
    cudaStream_t stream;
};
static int group_depth;
static std::vector<op> queued;

// A posted call. It reads the send buffer as it was when posted (on a GPU: after the kernels queued before it,
// which the emulator has run) and writes the receive buffer when it completes; in between, what the device does
// to either buffer races with NCCL on a GPU. So both are kept as they were (send_was, recv_was) and compared at
// completion: a difference is a kernel that wrote them while NCCL owned them, and stops the process.
struct posted {
    op o;
    long ticket;                      // its place on its stream
    size_t send_bytes, recv_bytes;    // the extents of the buffers it owns
    std::vector<char> send_was, recv_was, staged;
    MPI_Request req;                  // its one MPI operation
};
static std::vector<posted *> in_flight;   // in the order posted
static std::map<cudaStream_t, long> tickets;

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

// The sum over the ranks of `count` elements from each rank, all of them here in rank order ((size, count) in
// `all`), into dst.
static void sum_in_rank_order(void *dst, const char *all, size_t count, ncclDataType_t type, int size)
{
    if (type == ncclFloat32) {
        const float *a = (const float *)all;
        float *d = (float *)dst;
        for (size_t i = 0; i < count; i++) {
            float s = a[i];
            for (int r = 1; r < size; r++) s += a[(size_t)r * count + i];
            d[i] = s;
        }
    } else {
        const uint16_t *a = (const uint16_t *)all;
        uint16_t *d = (uint16_t *)dst;
        for (size_t i = 0; i < count; i++) {
            uint16_t s = a[i];
            for (int r = 1; r < size; r++)
                s = float_to_bf16(bf16_to_float(s) + bf16_to_float(a[(size_t)r * count + i]));
            d[i] = s;
        }
    }
}

// Message sizes go to MPI as int.
static ncclResult_t check_int(size_t bytes, const char *call)
{
    if (bytes > (size_t)INT_MAX)
        return fail(ncclInvalidArgument, "%s: %zu bytes, over the emulator's 2 GiB", call, bytes);
    return ncclSuccess;
}

static void post(const op &o)
{
    const emu_nccl_comm *c = o.comm;
    const size_t es = type_bytes(o.type), n = o.count * es, W = (size_t)c->size;
    posted *p = new posted{o, ++tickets[o.stream], 0, 0, {}, {}, {}, MPI_REQUEST_NULL};
    switch (o.kind) {
    case OP_ALLREDUCE: p->send_bytes = p->recv_bytes = n; break;
    case OP_REDUCE_SCATTER: p->send_bytes = n * W, p->recv_bytes = n; break;
    case OP_ALLGATHER: p->send_bytes = n, p->recv_bytes = n * W; break;
    case OP_SEND: p->send_bytes = n; break;
    case OP_RECV: p->recv_bytes = n; break;
    }
    p->send_was.assign((const char *)o.send, (const char *)o.send + p->send_bytes);
    p->recv_was.assign((const char *)o.recv, (const char *)o.recv + p->recv_bytes);
    const int in = (int)n;
    switch (o.kind) {
    case OP_ALLREDUCE:      // every rank's vector here, summed at completion
    case OP_ALLGATHER:
        p->staged.resize(n * W);
        MPI_Iallgather(p->send_was.data(), in, MPI_BYTE, p->staged.data(), in, MPI_BYTE, c->mpi, &p->req);
        break;
    case OP_REDUCE_SCATTER: // every rank's contribution to this rank's piece, summed at completion
        p->staged.resize(n * W);
        MPI_Ialltoall(p->send_was.data(), in, MPI_BYTE, p->staged.data(), in, MPI_BYTE, c->mpi, &p->req);
        break;
    case OP_SEND:
        MPI_Isend(p->send_was.data(), in, MPI_BYTE, o.peer, 0, c->mpi, &p->req);
        break;
    case OP_RECV:
        p->staged.resize(n);
        MPI_Irecv(p->staged.data(), in, MPI_BYTE, o.peer, 0, c->mpi, &p->req);
        break;
    }
    in_flight.push_back(p);
}

static void hazard(const posted *p, const char *which)
{
    fprintf(stderr, "emulated NCCL: rank %d: %s (call %ld on its stream): the device wrote its %s between the call and "
            "its completion, which the compute stream had not waited for (a race with NCCL on a GPU)\n", trace.rank,
            op_name[p->o.kind], p->ticket, which);
    abort();
}

// The results of p, whose messages have all arrived, into its receive buffer.
static void finish(posted *p)
{
    const op &o = p->o;
    if (p->send_bytes && memcmp(o.send, p->send_was.data(), p->send_bytes) != 0) hazard(p, "send buffer");
    if (p->recv_bytes && memcmp(o.recv, p->recv_was.data(), p->recv_bytes) != 0) hazard(p, "receive buffer");
    switch (o.kind) {
    case OP_ALLREDUCE:
    case OP_REDUCE_SCATTER: sum_in_rank_order(o.recv, p->staged.data(), o.count, o.type, o.comm->size); break;
    case OP_ALLGATHER:
    case OP_RECV: memcpy(o.recv, p->staged.data(), p->staged.size()); break;
    case OP_SEND: break;
    }
}

// The calls in flight on s (every stream's for s NULL) up to ticket upto (-1: all), completed in order: waited
// for, or (wait = 0) as far as they are done. Whether all of them are.
extern "C" int emu_nccl_progress(cudaStream_t s, long upto, int wait)
{
    for (size_t i = 0; i < in_flight.size();) {
        posted *p = in_flight[i];
        if ((s && p->o.stream != s) || (upto >= 0 && p->ticket > upto)) {
            i++;
            continue;
        }
        if (wait) {
            MPI_Wait(&p->req, MPI_STATUS_IGNORE);
        } else {
            int done = 0;
            MPI_Test(&p->req, &done, MPI_STATUS_IGNORE);
            if (!done) return 0;   // later calls on the stream complete after this one
        }
        finish(p);
        delete p;
        in_flight.erase(in_flight.begin() + (long)i);
    }
    return 1;
}

extern "C" long emu_nccl_ticket(cudaStream_t s)
{
    auto it = tickets.find(s);
    return it == tickets.end() ? 0 : it->second;
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
    emu_nccl_progress(nullptr, -1, 1);
    MPI_Comm_free(&comm->mpi);
    delete comm;
    return ncclSuccess;
}

// The peers may be gone: the calls in flight are dropped, the MPI communicator is left to the end of the job.
ncclResult_t ncclCommAbort(ncclComm_t comm)
{
    for (size_t i = 0; i < in_flight.size();)
        if (in_flight[i]->o.comm == comm) delete in_flight[i], in_flight.erase(in_flight.begin() + (long)i);
        else i++;
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
    for (const op &o : ops) {
        post(o);
        // on the legacy stream the call is part of the compute, in its order
        if (o.stream == nullptr || o.stream == cudaStreamLegacy) emu_nccl_progress(o.stream, -1, 1);
    }
    return ncclSuccess;
}

// What the reductions check first: a communicator, and a sum the emulator does.
static ncclResult_t check_sum(const char *call, ncclComm_t comm, ncclRedOp_t op_, ncclDataType_t type)
{
    if (ncclResult_t e = check_comm(comm, call)) return e;
    if (op_ != ncclSum || (type != ncclFloat32 && type != ncclBfloat16))
        return fail(ncclInvalidArgument, "%s: the emulator sums fp32 and bf16 only", call);
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op_,
                           ncclComm_t comm, cudaStream_t stream)
{
    const char *call = "ncclAllReduce";
    if (ncclResult_t e = check_sum(call, comm, op_, type)) return e;
    const size_t bytes = count * type_bytes(type);
    if (ncclResult_t e = check_int(bytes * (size_t)comm->size, call)) return e;
    if (ncclResult_t e = check_device(send, bytes, call, "sendbuff")) return e;
    if (ncclResult_t e = check_device(recv, bytes, call, "recvbuff")) return e;
    if (send != recv && overlap(send, bytes, recv, bytes))
        return fail(ncclInvalidArgument, "%s: sendbuff and recvbuff overlap without being equal", call);
    if (!emu_stream_live(stream)) return fail(ncclInvalidArgument, "%s: not a live stream", call);
    return submit(op{OP_ALLREDUCE, send, recv, count, type, -1, comm, stream});
}

// The buffers of a collective between each rank's piece (piece bytes) and the whole (comm->size pieces): both in
// device memory, apart, or in place only at this rank's piece of the whole, as NCCL takes them.
static ncclResult_t check_pieces(const char *call, const void *whole, const char *whole_name, const void *part,
                                 const char *part_name, size_t piece, ncclComm_t comm)
{
    const size_t all = piece * (size_t)comm->size;
    if (ncclResult_t e = check_int(all, call)) return e;
    if (ncclResult_t e = check_device(whole, all, call, whole_name)) return e;
    if (ncclResult_t e = check_device(part, piece, call, part_name)) return e;
    if ((const char *)part != (const char *)whole + (size_t)comm->rank * piece && overlap(whole, all, part, piece))
        return fail(ncclInvalidArgument, "%s: %s overlaps %s other than at rank %d's piece", call, part_name, whole_name,
                    comm->rank);
    return ncclSuccess;
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t type, ncclRedOp_t op_,
                               ncclComm_t comm, cudaStream_t stream)
{
    const char *call = "ncclReduceScatter";
    if (ncclResult_t e = check_sum(call, comm, op_, type)) return e;
    if (ncclResult_t e = check_pieces(call, send, "sendbuff", recv, "recvbuff", recvcount * type_bytes(type), comm))
        return e;
    if (!emu_stream_live(stream)) return fail(ncclInvalidArgument, "%s: not a live stream", call);
    return submit(op{OP_REDUCE_SCATTER, send, recv, recvcount, type, -1, comm, stream});
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream)
{
    const char *call = "ncclAllGather";
    if (ncclResult_t e = check_comm(comm, call)) return e;
    if (!type_bytes(type)) return fail(ncclInvalidArgument, "%s: unknown data type %d", call, (int)type);
    if (ncclResult_t e = check_pieces(call, recv, "recvbuff", send, "sendbuff", sendcount * type_bytes(type), comm))
        return e;
    if (!emu_stream_live(stream)) return fail(ncclInvalidArgument, "%s: not a live stream", call);
    return submit(op{OP_ALLGATHER, send, recv, sendcount, type, -1, comm, stream});
}

// What a send and a receive check of their arguments: buf holds count elements of type for peer.
static ncclResult_t check_p2p(const char *call, const void *buf, const char *which, size_t count, ncclDataType_t type,
                              int peer, ncclComm_t comm, cudaStream_t stream)
{
    if (ncclResult_t e = check_comm(comm, call)) return e;
    const size_t bytes = count * type_bytes(type);
    if (!type_bytes(type)) return fail(ncclInvalidArgument, "%s: unknown data type %d", call, (int)type);
    if (peer < 0 || peer >= comm->size)
        return fail(ncclInvalidArgument, "%s: peer %d of %d ranks", call, peer, comm->size);
    if (ncclResult_t e = check_int(bytes, call)) return e;
    if (ncclResult_t e = check_device(buf, bytes, call, which)) return e;
    if (!emu_stream_live(stream)) return fail(ncclInvalidArgument, "%s: not a live stream", call);
    return ncclSuccess;
}

ncclResult_t ncclSend(const void *send, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream)
{
    if (ncclResult_t e = check_p2p("ncclSend", send, "sendbuff", count, type, peer, comm, stream)) return e;
    return submit(op{OP_SEND, send, nullptr, count, type, peer, comm, stream});
}

ncclResult_t ncclRecv(void *recv, size_t count, ncclDataType_t type, int peer, ncclComm_t comm, cudaStream_t stream)
{
    if (ncclResult_t e = check_p2p("ncclRecv", recv, "recvbuff", count, type, peer, comm, stream)) return e;
    return submit(op{OP_RECV, nullptr, recv, count, type, peer, comm, stream});
}

}  // extern "C"
