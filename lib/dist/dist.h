/* dist/dist.h: data-parallel ranks for scp-train (issue 7): rank and world from MPI, collectives over the one
 * contiguous fp32 gradient vector (model/model.h), and bounded failure detection.
 *
 * Launch: `mpirun -np N scp-train ...` (OpenMPI, MPICH) or `srun` with PMI/PMIx. MPI is initialised only when a
 * launcher is seen in the environment (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, PMI_RANK, or SLURM_NTASKS
 * with SLURM_PROCID under srun) or SCP_DIST=mpi, so a plain `scp-train` never pays for MPI start-up; SCP_DIST=none
 * forces a single process. Without MPI compiled in (the --version features line says mpi=no) every call below
 * is the one-rank identity.
 *
 * Collectives are non-blocking MPI calls (MPI_Iallreduce, ...) completed by polling MPI_Test with a deadline of
 * `timeout` seconds, under MPI's default error handler (MPI_ERRORS_ARE_FATAL: an MPI error aborts the job):
 *   - scp_dist_step_sync: every rank reports "I reached step S" to rank 0 with a point-to-point message, and
 *     rank 0 answers; when a rank has died or hangs, rank 0 names it ("rank 1 did not reach step 7 within
 *     60 s") and aborts the job (MPI_Abort).
 *   - a collective past its deadline on rank 0: rank 0 pings every rank (ranks answer pings while they poll),
 *     names those that do not answer within 5 s, and aborts the job. Other ranks wait GRACE_S longer, so that
 *     rank 0 speaks first, then abort naming rank 0 as the suspect.
 *   - a watchdog thread, the backstop for an MPI call that never returns: past timeout + 70 s in a collective
 *     it prints the collective and the step and ends the process with _exit(1) (the launcher then stops the
 *     others: mpirun aborts a job when a rank exits without MPI_Finalize; srun with --kill-on-bad-exit).
 * The watchdog makes no MPI calls, so MPI_THREAD_FUNNELED suffices. */
#ifndef SCP_DIST_H
#define SCP_DIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct scp_dist {
    int rank, world;          /* this rank and the number of ranks (0 and 1 without MPI) */
    int local_rank;           /* rank within the node (GPU choice), from the launcher or MPI's shared-memory split */
    int local_size;           /* ranks on this node (threads per rank = cores / local_size by default) */
    int mpi;                  /* MPI initialised by scp_dist_init (finalised by scp_dist_finish) */
    double timeout;           /* seconds before a rank gives up on the others (default 600) */
    int64_t step;             /* step the trainer is at, for messages */
    double comm_seconds;      /* wall time spent in collectives since the last scp_dist_take_comm_time */
    double wait_seconds;      /* of which in scp_dist_step_sync: waiting for the slowest rank, not moving data */
    int64_t comm_bytes;       /* payload bytes all-reduced or gathered, same period */
    void *nccl;               /* NCCL communicator state (dist/nccl.c), NULL when not in use */
    /* A group of ranks (scp_dist_group): rank and world above are within the group, the collectives run over the
     * group's MPI communicator (comm, owned), and failures are still detected and named over all ranks. */
    void *comm;               /* NULL: all ranks */
    int world_rank, world_size;   /* this process among all ranks */
} scp_dist;

/* The one-rank identity, for programs and tests that never start MPI. */
void scp_dist_single(scp_dist *d);
/* Start MPI when launched by mpirun/srun (see above), else single. -1 with a message on failure. */
int scp_dist_init(scp_dist *d, int *argc, char ***argv);
/* The world and this process's rank that a launcher gave it, read from the environment it sees in
 * scp_dist_init without starting MPI (OMPI_COMM_WORLD_SIZE and _RANK, PMI_SIZE and PMI_RANK, SLURM_NTASKS and
 * SLURM_PROCID within an srun step); 1 and 0 without a launcher, with SCP_DIST=none, or in a build without MPI
 * (which always runs one process). For scp-train --plan, which sizes a run without joining one. */
void scp_dist_launcher(int *world, int *rank);
/* Start the watchdog thread (no-op for one rank). */
void scp_dist_watchdog_start(scp_dist *d);
/* MPI_Finalize (after a barrier), stop the watchdog. */
void scp_dist_finish(scp_dist *d);
/* Stop every rank now with exit status `code` (MPI_Abort; exit for one rank). */
_Noreturn void scp_dist_abort(scp_dist *d, int code);
/* "MPI" implementation and version, for the start-up message. */
const char *scp_dist_library(void);

/* In-place sum over ranks of x (n floats; bucketed so that any n works past INT_MAX). */
int scp_dist_allreduce_sum_f32(scp_dist *d, float *x, int64_t n, const char *what);
/* Host memory the MPI library takes besides x while scp_dist_allreduce_sum_f32 sums n floats over `world` ranks:
 * OpenMPI's non-blocking all-reduce (libnbc) works on a temporary as large as the piece in flight, and the pieces
 * are at most 2^28 floats. 0 for one rank. (Measured against the resident set by tests/train/train-plan.py.) */
int64_t scp_dist_allreduce_temp_bytes(int64_t n, int world);
/* In-place sum of n doubles (losses, token counts: exact integers below 2^53). */
int scp_dist_allreduce_sum_f64(scp_dist *d, double *x, int n, const char *what);
/* 1 if flag is non-zero on any rank (e.g. a stop signal seen by one rank). */
int scp_dist_any(scp_dist *d, int flag, const char *what);
/* Broadcast `bytes` bytes from root. */
int scp_dist_bcast(scp_dist *d, void *buf, size_t bytes, int root, const char *what);
/* Rank root receives every rank's share into full (n = lo[world] floats, only written on root; share r is
 * full[lo[r] .. lo[r + 1]) ), rank r sends lo[r + 1] - lo[r] floats from part (lo has world + 1 entries). */
int scp_dist_gather_to(scp_dist *d, int root, float *full, const float *part, const int64_t *lo, const char *what);
/* n floats held by rank src (part, read there) whole on rank root (out, written there; given on every rank): a
 * copy when src is root, else a message the other ranks take part in with nothing. */
int scp_dist_copy_to(scp_dist *d, int src, int root, float *out, const float *part, int64_t n, const char *what);
/* Equal pieces (sharded units, dist/shard_layout.h): buf holds world pieces of piece_bytes, rank r's at
 * r * piece_bytes; each rank has written its own, and afterwards every rank holds all of them. */
int scp_dist_allgather_pieces(scp_dist *d, void *buf, int64_t piece_bytes, const char *what);
/* x (world * piece floats) is this rank's contribution to every piece, and scratch (its contents are used up);
 * out (piece floats) receives the sum over ranks of piece `rank`. One rank: a copy. */
int scp_dist_reduce_scatter_f32(scp_dist *d, float *x, float *out, int64_t piece, const char *what);
/* The same in bf16 (uint16_t bit patterns): the partial sums are rounded to bf16 as they travel. */
int scp_dist_reduce_scatter_bf16(scp_dist *d, uint16_t *x, uint16_t *out, int64_t piece, const char *what);
/* All-to-all with sizes: send holds world blocks one after another, block r (send_bytes[r] bytes) for rank r;
 * recv receives block r from rank r (recv_bytes[r] bytes) at the sum of the sizes before it. */
int scp_dist_alltoallv(scp_dist *d, const void *send, const int64_t *send_bytes, void *recv, const int64_t *recv_bytes,
                       const char *what);
/* 1 if buf (bytes) is bit-identical on every rank (a 64-bit hash compared by all-reduce min and max). */
int scp_dist_same(scp_dist *d, const void *buf, size_t bytes, const char *what);

/* The ranks of d with the same color, as a dist of their own (MPI_Comm_split: ranked by key, then by rank in d).
 * Collective over d. The group's collectives keep d's timeout and failure detection, and its messages name ranks
 * by their place among all ranks. Free with scp_dist_group_free. */
int scp_dist_group(const scp_dist *d, int color, int key, scp_dist *group);
void scp_dist_group_free(scp_dist *group);

/* Bounded step barrier naming missing ranks (see above). Returns 0, or does not return (aborts the job). */
void scp_dist_step_sync(scp_dist *d, int64_t step);

/* Rows [lo, hi) of n rows that rank r of w takes: contiguous blocks, the first n % w ranks one row more. */
void scp_dist_split(int64_t n, int w, int r, int64_t *lo, int64_t *hi);

/* Seconds of communication (collectives moving data) since the last call, and reset; *wait (may be NULL)
 * receives the seconds spent waiting at the step barrier. */
double scp_dist_take_comm_time(scp_dist *d, double *wait);

/* ---- NCCL (dist/nccl.c, built with HAVE_NCCL into the CUDA plugin, model/cuda_plugin.h): GPU ranks ------ */
/* One communicator over all ranks, bootstrapped through MPI (rank 0's ncclUniqueId broadcast with MPI_Bcast);
 * selects CUDA device local_rank % devices first. -1 with a message when the plugin cannot be loaded, or NCCL or
 * CUDA fails. */
int scp_dist_nccl_init(scp_dist *d);
/* In-place sum of n floats in device memory on the communicator's stream, bucketed; asynchronous: the caller
 * synchronises with scp_dist_nccl_wait before it reads the result. `stream` is the cudaStream_t the values
 * were written on (NULL: the legacy default stream, which the CUDA backend uses): the reduction waits for the
 * work queued there so far, and nothing after. Called per layer from the backward pass (the gradient hook,
 * model/model.h, armed by lib/train/step.c) so that the reduction of layer l overlaps the backward of layer l - 1. */
int scp_dist_nccl_allreduce_f32(scp_dist *d, float *dev, int64_t n, void *stream);
/* What the communicator has queued, completed. Every wait on NCCL (here, and inside the calls below that
 * complete on return) polls it with the timeout, and names a dead or hung rank, as the MPI collectives do. */
int scp_dist_nccl_wait(scp_dist *d);
/* The collectives of dist/coll.h on device memory, complete on return (see there). */
int scp_dist_nccl_allgather_pieces(scp_dist *d, void *dev, int64_t piece_bytes);
/* The same all-gather queued on the communicator's stream without waiting, and the join: the host waits for it
 * (bounded), then the compute stream (the legacy default stream) is ordered after it (dist/coll.h). */
int scp_dist_nccl_allgather_start(scp_dist *d, void *dev, int64_t piece_bytes);
int scp_dist_nccl_join(scp_dist *d);
int scp_dist_nccl_reduce_scatter_f32(scp_dist *d, const float *dev, float *out, int64_t piece);
int scp_dist_nccl_reduce_scatter_bf16(scp_dist *d, const uint16_t *dev, uint16_t *out, int64_t piece);
int scp_dist_nccl_alltoallv(scp_dist *d, const void *send, const int64_t *send_bytes, void *recv,
                            const int64_t *recv_bytes);
void scp_dist_nccl_free(scp_dist *d);
/* The NCCL communicator of a group made by scp_dist_group from parent (which has one): ncclCommSplit. */
int scp_dist_nccl_split(const scp_dist *parent, int color, int key, scp_dist *group);

#endif
