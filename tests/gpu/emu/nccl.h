/* nccl.h (emulator): the part of NCCL that lib/dist/nccl.c uses, over MPI, for ranks whose device memory is the
 * CUDA emulator's (emu_nccl.cc). Every rank is its own process under mpirun, as GPU ranks are; a communicator is
 * an MPI communicator of the same ranks. Calls run when they are made (outside a group) or at the group's end, in
 * the order they were made: the emulator's streams are always idle.
 *
 * What it checks, as a GPU would fail or corrupt: every buffer lies in one block of emulated device memory
 * (a host pointer handed to NCCL), an out-of-place collective's buffers do not overlap, an in-place one is at
 * NCCL's offset (recvbuff + rank * count for the all-gather, sendbuff + rank * count for the reduce-scatter), a
 * communicator is live, the ncclUniqueId each rank passes is rank 0's, and a group is ended. A failed check returns
 * ncclInvalidArgument or ncclInvalidUsage with a line on stderr naming the call. */
#ifndef SCP_EMU_NCCL_H
#define SCP_EMU_NCCL_H
#include <stddef.h>

#include "cuda_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NCCL_SPLIT_NOCOLOR (-1)

typedef struct emu_nccl_comm *ncclComm_t;
typedef struct {
    char internal[128];
} ncclUniqueId;
typedef enum {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6
} ncclResult_t;
typedef enum {
    ncclInt8 = 0,
    ncclUint8 = 1,
    ncclInt32 = 2,
    ncclUint32 = 3,
    ncclInt64 = 4,
    ncclUint64 = 5,
    ncclFloat16 = 6,
    ncclFloat32 = 7,
    ncclFloat64 = 8,
    ncclBfloat16 = 9
} ncclDataType_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;
typedef struct ncclConfig_t ncclConfig_t;

const char *ncclGetErrorString(ncclResult_t r);
ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t *newcomm, ncclConfig_t *config);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async);
ncclResult_t ncclGroupStart(void);
ncclResult_t ncclGroupEnd(void);
/* Sums: ncclFloat32 (MPI's sum) and ncclBfloat16 (widened, added in rank order, rounded to bf16 after each
 * addition, as NCCL rounds at each hop of its ring). */
ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount, ncclDataType_t type,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t type,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclSend(const void *sendbuff, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream);
ncclResult_t ncclRecv(void *recvbuff, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
