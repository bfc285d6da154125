/* dist/dist.c: MPI ranks and collectives for data-parallel training, with bounded failure detection (dist/dist.h). */
#include "config.h"

#include "dist/dist.h"
#include "core/dtype.h"
#include "core/error.h"
#ifdef HAVE_NCCL
#include "dist/nccl.h"
#include "model/cuda_plugin.h"
#endif

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_MPI
#include <mpi.h>
#endif

/* Largest piece one MPI call moves: counts are int, and smaller pieces keep any one call well below 2^31. */
#define DIST_CHUNK ((int64_t)1 << 28)
#define TAG_STEP 7701
#define TAG_ACK 7702
#define TAG_PING 7703
#define TAG_PONG 7704
#define TAG_GATHER 7711
#define TAG_RING 7712
/* Non-root ranks give up this much later than rank 0, so that rank 0, which can name the missing ranks,
 * normally speaks first; the watchdog thread (a backstop for an MPI call that never returns) later still. */
#define GRACE_S 10.0
#define WATCHDOG_EXTRA_S 60.0

#ifdef HAVE_MPI
/* The communicator of d's collectives: a group's own, or all ranks. */
static MPI_Comm comm_of(const scp_dist *d) { return d->comm ? *(MPI_Comm *)d->comm : MPI_COMM_WORLD; }
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void scp_dist_split(int64_t n, int w, int r, int64_t *lo, int64_t *hi)
{
    int64_t q = n / w, rem = n % w;
    *lo = (int64_t)r * q + (r < rem ? r : rem);
    *hi = *lo + q + (r < rem ? 1 : 0);
}

double scp_dist_take_comm_time(scp_dist *d, double *wait)
{
    double t = d->comm_seconds;
    if (wait) *wait = d->wait_seconds;
    d->comm_seconds = d->wait_seconds = 0;
    d->comm_bytes = 0;
    return t;
}

void scp_dist_single(scp_dist *d)
{
    memset(d, 0, sizeof *d);
    d->world = d->local_size = d->world_size = 1;
    d->timeout = 600;
}

int scp_dist_group(const scp_dist *d, int color, int key, scp_dist *group)
{
    *group = *d;
    group->mpi = 0;
    group->nccl = NULL;
    group->comm = NULL;
    group->comm_seconds = group->wait_seconds = 0;
    group->comm_bytes = 0;
    if (d->world <= 1) return 0;
#ifdef HAVE_MPI
    MPI_Comm *c = scp_xmalloc(sizeof *c);
    if (MPI_Comm_split(comm_of(d), color, key, c) != MPI_SUCCESS) {
        free(c);
        return scp_error("MPI_Comm_split failed");
    }
    group->comm = c;
    MPI_Comm_rank(*c, &group->rank);
    MPI_Comm_size(*c, &group->world);
    if (d->nccl && scp_dist_nccl_split(d, color, key, group)) return -1;   /* GPU ranks: the group's NCCL too */
#else
    (void)color, (void)key;
#endif
    return 0;
}

void scp_dist_group_free(scp_dist *group)
{
    if (group->nccl) scp_dist_nccl_free(group);
#ifdef HAVE_MPI
    if (group->comm) MPI_Comm_free((MPI_Comm *)group->comm);
#endif
    free(group->comm);
    group->comm = NULL;
}

/* ---- watchdog: a blocking collective must return within the timeout ------------------------------------ */
static struct {
    _Atomic long long since_ns;     /* start of the collective in progress, 0 when none */
    _Atomic(const char *) what;
    _Atomic long long step;
    _Atomic int stop;
    int running, rank;
    double timeout;
    pthread_t th;
} wd;

static long long now_ns(void) { return (long long)(now_s() * 1e9); }

static void *watchdog_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&wd.stop)) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        long long s = atomic_load(&wd.since_ns);
        if (s && (double)(now_ns() - s) * 1e-9 > wd.timeout) {
            const char *w = atomic_load(&wd.what);
            fprintf(stderr,
                    "%s: rank %d: %s at step %lld did not complete within %.0f s: another rank died or hangs; "
                    "stopping (see the launcher's message for the rank that failed)\n",
                    scp_progname(), wd.rank, w ? w : "a collective", atomic_load(&wd.step), wd.timeout);
            fflush(stderr);
            _exit(1);
        }
    }
    return NULL;
}

void scp_dist_watchdog_start(scp_dist *d)
{
    if (d->world <= 1 || wd.running) return;
    wd.rank = d->rank;
    wd.timeout = d->timeout + GRACE_S + WATCHDOG_EXTRA_S;
    atomic_store(&wd.stop, 0);
    atomic_store(&wd.since_ns, 0);
    if (pthread_create(&wd.th, NULL, watchdog_main, NULL) == 0) wd.running = 1;
    else scp_warn("rank %d: cannot start the watchdog thread: collectives are bounded only by MPI", d->rank);
}

static inline double coll_begin(scp_dist *d, const char *what)
{
    atomic_store(&wd.what, what);
    atomic_store(&wd.step, (long long)d->step);
    atomic_store(&wd.since_ns, now_ns());
    return now_s();
}

static inline void coll_end(scp_dist *d, double t0, int64_t bytes)
{
    atomic_store(&wd.since_ns, 0);
    d->comm_seconds += now_s() - t0;
    d->comm_bytes += bytes;
}

#ifdef HAVE_MPI
/* Launched by mpirun, mpiexec or srun (PMI-1, PMI-2, PMIx)? */
static int launched(void)
{
    const char *f = getenv("SCP_DIST");
    if (f && strcmp(f, "none") == 0) return 0;
    if (f && strcmp(f, "mpi") == 0) return 1;
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    const char *nt = getenv("SLURM_NTASKS");   /* srun sets SLURM_STEP_ID for the tasks it starts */
    return nt && atoi(nt) > 1 && getenv("SLURM_STEP_ID") != NULL;
}

static const char *env_first(const char *a, const char *b, const char *c)
{
    const char *v = getenv(a);
    if (!v && b) v = getenv(b);
    if (!v && c) v = getenv(c);
    return v;
}
#endif

void scp_dist_launcher(int *world, int *rank)
{
    *world = 1, *rank = 0;
#ifdef HAVE_MPI
    if (!launched()) return;
    /* OpenMPI's mpirun, then PMI (MPICH's hydra), then srun's task count within a step (PMIx gives no size). */
    const char *w = env_first("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL);
    const char *r = env_first("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK");
    if (!w && getenv("SLURM_STEP_ID")) w = getenv("SLURM_NTASKS");
    if (!r) r = getenv("SLURM_PROCID");
    if (w && atoi(w) > 0) *world = atoi(w);
    if (r && atoi(r) >= 0 && atoi(r) < *world) *rank = atoi(r);
#endif
}

int scp_dist_init(scp_dist *d, int *argc, char ***argv)
{
    scp_dist_single(d);
#ifdef HAVE_MPI
    if (!launched()) return 0;
    int provided = 0, inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return scp_error("MPI_Init_thread failed");
    d->mpi = !inited;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    d->world_rank = d->rank, d->world_size = d->world;
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &d->local_rank);
    MPI_Comm_size(node, &d->local_size);
    MPI_Comm_free(&node);
    const char *lr = env_first("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID");
    if (lr) d->local_rank = atoi(lr);   /* the launcher's numbering, which GPU binding scripts also use */
    /* srun -n N with an MPI that found no matching PMI may start N separate one-rank worlds, which would all
     * write the same run directory: refuse that. (Only a world of one: under mpirun inside an allocation the
     * ranks inherit the SLURM_NTASKS of the step that started mpirun's daemons, which is not the world.) */
    const char *nt = getenv("SLURM_NTASKS");
    if (nt && getenv("SLURM_STEP_ID") && d->world == 1 && atoi(nt) > 1 && !getenv("OMPI_COMM_WORLD_SIZE"))
        return scp_error("srun started %s tasks but MPI sees a world of %d: the MPI library and srun's --mpi "
                         "plugin do not match (Debian's OpenMPI needs srun --mpi=pmix)", nt, d->world);
#else
    (void)argc;
    (void)argv;
#endif
    return 0;
}

const char *scp_dist_library(void)
{
#ifdef HAVE_MPI
    static char buf[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(buf, &len);
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
    char *comma = strchr(buf, ',');   /* OpenMPI: "Open MPI v4.1.4, package: ..." */
    if (comma) *comma = 0;
    return buf;
#else
    return "none";
#endif
}

void scp_dist_finish(scp_dist *d)
{
    /* A last bounded agreement before MPI_Finalize, which would otherwise wait forever for a rank that hangs
     * after the final step (the watchdog is stopped below). */
    scp_dist_step_sync(d, d->step);
    if (wd.running) {
        atomic_store(&wd.stop, 1);
        pthread_join(wd.th, NULL);
        wd.running = 0;
    }
    scp_dist_nccl_free(d);
#ifdef HAVE_MPI
    if (d->mpi) {
        MPI_Finalize();
        d->mpi = 0;
    }
#endif
}

_Noreturn void scp_dist_abort(scp_dist *d, int code)
{
    scp_cleanup_run();
#ifdef HAVE_MPI
    if (d->world_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)d;
#endif
    exit(code);
}

/* ---- waiting with a bound -------------------------------------------------------------------------------
 * Collectives are started non-blocking and completed here, polling MPI_Test (which also drives their
 * progress), so that a rank never blocks without a deadline and every rank keeps answering rank 0's pings.
 * When rank 0's deadline passes it pings every rank: the ranks that do not answer within a few seconds are
 * the ones that died or hang, and the message names them. */
#ifdef HAVE_MPI
static void answer_pings(scp_dist *d)
{
    if (d->world_rank == 0) return;
    int flag = 0;
    MPI_Iprobe(0, TAG_PING, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
    if (!flag) return;
    long long v;
    MPI_Recv(&v, 1, MPI_LONG_LONG, 0, TAG_PING, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Send(&v, 1, MPI_LONG_LONG, 0, TAG_PONG, MPI_COMM_WORLD);   /* one word: eager, returns at once */
}

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* Rank 0 of all ranks, after a timeout in `what` (in any group): ping every rank, name those that do not answer,
 * stop the job. */
_Noreturn static void name_and_abort(scp_dist *d, const char *what)
{
    int W = d->world_size;
    long long ping = (long long)d->step, *pong = scp_xcalloc((size_t)W, sizeof *pong);
    MPI_Request *rq = scp_xmalloc(sizeof *rq * 2 * (size_t)W);
    for (int r = 1; r < W; r++) {
        MPI_Isend(&ping, 1, MPI_LONG_LONG, r, TAG_PING, MPI_COMM_WORLD, &rq[2 * r]);
        MPI_Irecv(&pong[r], 1, MPI_LONG_LONG, r, TAG_PONG, MPI_COMM_WORLD, &rq[2 * r + 1]);
    }
    int *ans = scp_xcalloc((size_t)W, sizeof *ans), left = W - 1;
    double end = now_s() + 5.0;
    while (left > 0 && now_s() < end) {
        for (int r = 1; r < W; r++)
            if (!ans[r]) {
                int f = 0;
                MPI_Test(&rq[2 * r + 1], &f, MPI_STATUS_IGNORE);
                if (f) ans[r] = 1, left--;
            }
        nap_us(1000);
    }
    char list[256] = "";
    size_t len = 0;
    int n = 0;
    for (int r = 1; r < W; r++)
        if (!ans[r] && len < sizeof list - 16) len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", n++ ? ", " : "", r);
    if (n)
        scp_warn("rank 0: %s at step %lld did not complete within %.0f s: rank%s %s do%s not answer (died or "
                 "hangs); stopping all ranks", what, ping, d->timeout, n > 1 ? "s" : "", list, n > 1 ? "" : "es");
    else
        scp_warn("rank 0: %s at step %lld did not complete within %.0f s, though every rank answers: stopping all "
                 "ranks", what, ping, d->timeout);
    scp_dist_abort(d, 1);
}

/* Poll test(ctx) (1 done, 0 not yet, -1 failed with a message) until it is done, answering rank 0's pings
 * meanwhile; when the deadline passes, rank 0 names the ranks that do not answer and stops the job, and the
 * others stop it a grace period later. Spins for the first 10 ms (data is moving), then naps 50 us between
 * tests (waiting for a slower rank). 0 when done, -1 when test failed. */
static int wait_bounded(scp_dist *d, int (*test)(void *), void *ctx, const char *what)
{
    double t0 = now_s(), deadline = t0 + d->timeout + (d->world_rank ? GRACE_S : 0.0);
    for (long k = 0;; k++) {
        int st = test(ctx);
        if (st) return st > 0 ? 0 : -1;
        if ((k & 63) == 0) {
            answer_pings(d);
            double t = now_s();
            if (t > deadline) {
                if (d->world_rank == 0) name_and_abort(d, what);
                scp_warn("rank %d: %s at step %lld did not complete within %.0f s and rank 0 did not stop the job "
                         "(rank 0 died or hangs?): stopping all ranks", d->world_rank, what, (long long)d->step,
                         d->timeout + GRACE_S);
                scp_dist_abort(d, 1);
            }
            if (t - t0 > 0.01) nap_us(50);
        }
    }
}

typedef struct {
    MPI_Request *rq;
    int n;
} mpi_requests;

static int test_mpi(void *ctx)
{
    mpi_requests *r = ctx;
    int flag = 0;
    MPI_Testall(r->n, r->rq, &flag, MPI_STATUSES_IGNORE);
    return flag;
}

/* Complete n requests of the collective `what`, or stop the job when the deadline passes. */
static void finish(scp_dist *d, MPI_Request *rq, int n, const char *what)
{
    mpi_requests r = {rq, n};
    wait_bounded(d, test_mpi, &r, what);
}
#endif

/* ---- collectives ------------------------------------------------------------------------------------ */
int scp_dist_allreduce_sum_f32(scp_dist *d, float *x, int64_t n, const char *what)
{
    if (d->world <= 1) return 0;
#ifdef HAVE_MPI
    double t0 = coll_begin(d, what);
    for (int64_t off = 0; off < n; off += DIST_CHUNK) {
        int c = (int)(n - off < DIST_CHUNK ? n - off : DIST_CHUNK);
        MPI_Request rq;
        MPI_Iallreduce(MPI_IN_PLACE, x + off, c, MPI_FLOAT, MPI_SUM, comm_of(d), &rq);
        finish(d, &rq, 1, what);
    }
    coll_end(d, t0, n * (int64_t)sizeof *x);
#else
    (void)x, (void)n, (void)what;
#endif
    return 0;
}

int64_t scp_dist_allreduce_temp_bytes(int64_t n, int world)
{
    if (world <= 1) return 0;
    return (n < DIST_CHUNK ? n : DIST_CHUNK) * (int64_t)sizeof(float);
}

int scp_dist_allreduce_sum_f64(scp_dist *d, double *x, int n, const char *what)
{
    if (d->world <= 1) return 0;
#ifdef HAVE_MPI
    double t0 = coll_begin(d, what);
    MPI_Request rq;
    MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, comm_of(d), &rq);
    finish(d, &rq, 1, what);
    coll_end(d, t0, n * (int64_t)sizeof *x);
#else
    (void)x, (void)n, (void)what;
#endif
    return 0;
}

int scp_dist_any(scp_dist *d, int flag, const char *what)
{
    if (d->world <= 1) return flag;
#ifdef HAVE_MPI
    int v = flag;
    double t0 = coll_begin(d, what);
    MPI_Request rq;
    MPI_Iallreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, comm_of(d), &rq);
    finish(d, &rq, 1, what);
    coll_end(d, t0, 0);
    return v;
#else
    (void)what;
    return flag;
#endif
}

int scp_dist_bcast(scp_dist *d, void *buf, size_t bytes, int root, const char *what)
{
    if (d->world <= 1) return 0;
#ifdef HAVE_MPI
    double t0 = coll_begin(d, what);
    for (size_t off = 0; off < bytes; off += (size_t)DIST_CHUNK) {
        int c = (int)(bytes - off < (size_t)DIST_CHUNK ? bytes - off : (size_t)DIST_CHUNK);
        MPI_Request rq;
        MPI_Ibcast((char *)buf + off, c, MPI_BYTE, root, comm_of(d), &rq);
        finish(d, &rq, 1, what);
    }
    coll_end(d, t0, (int64_t)bytes);
#else
    (void)buf, (void)bytes, (void)root, (void)what;
#endif
    return 0;
}

int scp_dist_gather_to(scp_dist *d, int root, float *full, const float *part, const int64_t *lo, const char *what)
{
    if (d->world <= 1) {
        if (full + lo[0] != part) memcpy(full + lo[0], part, (size_t)(lo[1] - lo[0]) * sizeof *full);
        return 0;
    }
#ifdef HAVE_MPI
    double t0 = coll_begin(d, what);
    /* Point to point in pieces: no int counts to overflow, and the root takes the shards one after another. */
    if (d->rank == root) {
        memcpy(full + lo[root], part, (size_t)(lo[root + 1] - lo[root]) * sizeof *full);
        for (int r = 0; r < d->world; r++)
            for (int64_t off = lo[r]; r != root && off < lo[r + 1]; off += DIST_CHUNK) {
                int c = (int)(lo[r + 1] - off < DIST_CHUNK ? lo[r + 1] - off : DIST_CHUNK);
                MPI_Request rq;
                MPI_Irecv(full + off, c, MPI_FLOAT, r, TAG_GATHER, comm_of(d), &rq);
                finish(d, &rq, 1, what);
            }
    } else {
        int64_t a = lo[d->rank], b = lo[d->rank + 1];
        for (int64_t off = a; off < b; off += DIST_CHUNK) {
            int c = (int)(b - off < DIST_CHUNK ? b - off : DIST_CHUNK);
            MPI_Request rq;
            MPI_Isend(part + (off - a), c, MPI_FLOAT, root, TAG_GATHER, comm_of(d), &rq);
            finish(d, &rq, 1, what);
        }
    }
    coll_end(d, t0, (lo[d->rank + 1] - lo[d->rank]) * (int64_t)sizeof *full);
#else
    (void)root, (void)what;
#endif
    return 0;
}

int scp_dist_copy_to(scp_dist *d, int src, int root, float *out, const float *part, int64_t n, const char *what)
{
    if (src == root) {
        if (d->rank == root && out != part) memcpy(out, part, (size_t)n * sizeof *out);
        return 0;
    }
    int64_t *lo = scp_xmalloc(sizeof *lo * (size_t)(d->world + 1));
    for (int r = 0; r <= d->world; r++) lo[r] = r <= src ? 0 : n;
    int rc = scp_dist_gather_to(d, root, out, d->rank == src ? part : out, lo, what);
    free(lo);
    return rc;
}

/* ---- rings over equal pieces: the collectives of the sharded state ------------------------------------------ */
#ifdef HAVE_MPI
/* One step of a ring: send `bytes` from src to the next rank while receiving as many from the previous into dst,
 * in pieces that keep MPI's int counts small. */
static void ring_step(scp_dist *d, const void *src, void *dst, int64_t bytes, const char *what)
{
    int next = (d->rank + 1) % d->world, prev = (d->rank + d->world - 1) % d->world;
    for (int64_t off = 0; off < bytes; off += DIST_CHUNK) {
        int c = (int)(bytes - off < DIST_CHUNK ? bytes - off : DIST_CHUNK);
        MPI_Request rq[2];
        MPI_Irecv((char *)dst + off, c, MPI_BYTE, prev, TAG_RING, comm_of(d), &rq[0]);
        MPI_Isend((const char *)src + off, c, MPI_BYTE, next, TAG_RING, comm_of(d), &rq[1]);
        finish(d, rq, 2, what);
    }
}
#endif

/* Rings rather than MPI_Allgather and MPI_Reduce_scatter_block: the same bytes on the wire (w - 1 pieces in and
 * out of each rank), no temporary memory beyond one piece (which MPI's algorithms take on some ranks and not
 * others, up to a copy of the whole buffer), and a summation order fixed by the rank count. */
int scp_dist_allgather_pieces(scp_dist *d, void *buf, int64_t piece_bytes, const char *what)
{
    if (d->world <= 1) return 0;
#ifdef HAVE_MPI
    double t0 = coll_begin(d, what);
    int W = d->world, r = d->rank;
    char *b = buf;
    /* step s: pass on piece r - s (this rank's, then the ones just received), take piece r - s - 1 */
    for (int s = 0; s < W - 1; s++) {
        int give = (r - s + W) % W, take = (r - s - 1 + 2 * W) % W;
        ring_step(d, b + (size_t)give * (size_t)piece_bytes, b + (size_t)take * (size_t)piece_bytes, piece_bytes,
                  what);
    }
    coll_end(d, t0, piece_bytes * (W - 1));
#else
    (void)buf, (void)piece_bytes, (void)what;
#endif
    return 0;
}

/* acc (n elements) += in, in fp32, or in bf16 rounding each sum to bf16 (as a sum that travels in bf16 is). */
static void add_f32(void *acc, const void *in, int64_t n)
{
    float *a = acc;
    const float *x = in;
    for (int64_t k = 0; k < n; k++) a[k] += x[k];
}

static void add_bf16(void *acc, const void *in, int64_t n)
{
    uint16_t *a = acc;
    const uint16_t *x = in;
    for (int64_t k = 0; k < n; k++) a[k] = scp_f32_to_bf16(scp_bf16_to_f32(a[k]) + scp_bf16_to_f32(x[k]));
}

/* The reduce-scatter ring over pieces of `piece` elements of `elem` bytes, summed by `add`. */
static int reduce_scatter(scp_dist *d, void *x, void *out, int64_t piece, size_t elem,
                          void (*add)(void *, const void *, int64_t), const char *what)
{
    size_t bytes = (size_t)piece * elem;
    if (d->world <= 1) {
        memcpy(out, x, bytes);
        return 0;
    }
#ifdef HAVE_MPI
    double t0 = coll_begin(d, what);
    int W = d->world, r = d->rank;
    char *b = x;
    /* step s: send piece r - s - 1 (summed over s + 1 ranks so far) to the next rank, receive piece r - s - 2 from
     * the previous into out and add it in; after w - 1 steps piece r holds every rank's sum. */
    for (int s = 0; s < W - 1; s++) {
        int give = (r - s - 1 + 2 * W) % W, take = (r - s - 2 + 2 * W) % W;
        ring_step(d, b + (size_t)give * bytes, out, (int64_t)bytes, what);
        add(b + (size_t)take * bytes, out, piece);
    }
    memcpy(out, b + (size_t)r * bytes, bytes);
    coll_end(d, t0, (int64_t)bytes * (W - 1));
#else
    (void)add, (void)what;
#endif
    return 0;
}

int scp_dist_reduce_scatter_f32(scp_dist *d, float *x, float *out, int64_t piece, const char *what)
{
    return reduce_scatter(d, x, out, piece, sizeof *x, add_f32, what);
}

int scp_dist_reduce_scatter_bf16(scp_dist *d, uint16_t *x, uint16_t *out, int64_t piece, const char *what)
{
    return reduce_scatter(d, x, out, piece, sizeof *x, add_bf16, what);
}

int scp_dist_alltoallv(scp_dist *d, const void *send, const int64_t *send_bytes, void *recv, const int64_t *recv_bytes,
                       const char *what)
{
    if (d->world <= 1) {
        if (send_bytes[0] != recv_bytes[0]) return scp_error("%s: %lld bytes sent to itself, %lld expected", what,
                                                             (long long)send_bytes[0], (long long)recv_bytes[0]);
        memcpy(recv, send, (size_t)send_bytes[0]);
        return 0;
    }
#ifdef HAVE_MPI
    int W = d->world, rc = 0;
    int *sc = scp_xmalloc(sizeof *sc * (size_t)W * 4), *sd = sc + W, *rcnt = sc + 2 * W, *rd = sc + 3 * W;
    int64_t so = 0, ro = 0;
    for (int r = 0; r < W; r++) {
        if (send_bytes[r] > INT_MAX || recv_bytes[r] > INT_MAX || so > INT_MAX || ro > INT_MAX) rc = -1;
        sc[r] = (int)send_bytes[r], sd[r] = (int)so, rcnt[r] = (int)recv_bytes[r], rd[r] = (int)ro;
        so += send_bytes[r], ro += recv_bytes[r];
    }
    if (rc == 0) {
        double t0 = coll_begin(d, what);
        MPI_Request rq;
        MPI_Ialltoallv(send, sc, sd, MPI_BYTE, recv, rcnt, rd, MPI_BYTE, comm_of(d), &rq);
        finish(d, &rq, 1, what);
        coll_end(d, t0, so);
    }
    free(sc);
    if (rc) return scp_error("%s: more than 2 GiB in one all-to-all", what);
#else
    (void)send, (void)send_bytes, (void)recv, (void)recv_bytes, (void)what;
#endif
    return 0;
}

static inline uint64_t hash_bytes(const void *buf, size_t bytes)
{
    /* FNV-1a over 64-bit words, then the tail: only equality matters, and it runs at memory speed. */
    const unsigned char *p = buf;
    uint64_t h = 0xcbf29ce484222325ull, w;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < bytes; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int scp_dist_same(scp_dist *d, const void *buf, size_t bytes, const char *what)
{
    if (d->world <= 1) return 1;
#ifdef HAVE_MPI
    uint64_t h = hash_bytes(buf, bytes), mx = h, mn = h;
    double t0 = coll_begin(d, what);
    MPI_Request rq[2];
    MPI_Iallreduce(MPI_IN_PLACE, &mx, 1, MPI_UINT64_T, MPI_MAX, comm_of(d), &rq[0]);
    MPI_Iallreduce(MPI_IN_PLACE, &mn, 1, MPI_UINT64_T, MPI_MIN, comm_of(d), &rq[1]);
    finish(d, rq, 2, what);
    coll_end(d, t0, 0);
    return mx == mn;
#else
    (void)buf, (void)bytes, (void)what;
    return 1;
#endif
}

/* ---- bounded step barrier ---------------------------------------------------------------------------- */
#ifdef HAVE_MPI
/* Poll one request until done or the deadline; spin the first millisecond, then sleep 100 us between tests
 * (this is a wait for the slowest rank, not a latency-critical path). */
static int wait_until(scp_dist *d, MPI_Request *rq, int n, double deadline)
{
    double t0 = now_s();
    for (;;) {
        int flag = 0;
        MPI_Testall(n, rq, &flag, MPI_STATUSES_IGNORE);
        if (flag) return 1;
        answer_pings(d);
        double t = now_s();
        if (t > deadline) return 0;
        if (t - t0 > 1e-3) {
            struct timespec ts = {0, 100 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}
#endif

void scp_dist_step_sync(scp_dist *d, int64_t step)
{
    d->step = step;
    if (d->world <= 1) return;
#ifdef HAVE_MPI
    double t0 = now_s(), deadline = t0 + d->timeout;
    int W = d->world;
    long long mine = (long long)step;
    if (d->rank == 0) {
        long long *got = scp_xmalloc(sizeof *got * (size_t)W);
        MPI_Request *rq = scp_xmalloc(sizeof *rq * (size_t)W);
        for (int r = 1; r < W; r++) MPI_Irecv(&got[r], 1, MPI_LONG_LONG, r, TAG_STEP, MPI_COMM_WORLD, &rq[r]);
        if (!wait_until(d, rq + 1, W - 1, deadline)) {
            /* Name the ranks whose message has not come. */
            char list[256] = "";
            size_t len = 0;
            int missing = 0;
            for (int r = 1; r < W; r++) {
                int flag = 0;
                MPI_Test(&rq[r], &flag, MPI_STATUS_IGNORE);
                if (!flag && len < sizeof list - 16) {
                    len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", missing ? ", " : "", r);
                    missing++;
                }
            }
            scp_warn("rank 0: rank%s %s did not reach step %lld within %.0f s (died or hangs): stopping all ranks",
                     missing > 1 ? "s" : "", list, mine, d->timeout);
            scp_dist_abort(d, 1);
        }
        for (int r = 1; r < W; r++)
            if (got[r] != mine) {
                scp_warn("rank 0: rank %d is at step %lld, rank 0 at step %lld: the ranks diverged; stopping", r,
                         got[r], mine);
                scp_dist_abort(d, 1);
            }
        for (int r = 1; r < W; r++) MPI_Isend(&mine, 1, MPI_LONG_LONG, r, TAG_ACK, MPI_COMM_WORLD, &rq[r]);
        MPI_Waitall(W - 1, rq + 1, MPI_STATUSES_IGNORE);   /* eager one-word sends: complete at once */
        free(got);
        free(rq);
    } else {
        long long ack = -1;
        MPI_Request rq[2];
        MPI_Isend(&mine, 1, MPI_LONG_LONG, 0, TAG_STEP, MPI_COMM_WORLD, &rq[0]);
        MPI_Irecv(&ack, 1, MPI_LONG_LONG, 0, TAG_ACK, MPI_COMM_WORLD, &rq[1]);
        if (!wait_until(d, rq, 2, deadline + GRACE_S)) {
            scp_warn("rank %d: rank 0 did not confirm step %lld within %.0f s (rank 0 died or hangs?): stopping all "
                     "ranks", d->rank, mine, d->timeout + GRACE_S);
            scp_dist_abort(d, 1);
        }
    }
    d->wait_seconds += now_s() - t0;
#endif
}

/* ---- NCCL: in the CUDA plugin (dist/nccl.h), loaded by the first communicator ---------------------------- */
#ifdef HAVE_NCCL
static const scp_nccl_functions *nccl;   /* set by the first scp_dist_nccl_init that finds them */
#endif

int scp_dist_nccl_init(scp_dist *d)
{
#ifdef HAVE_NCCL
    if (!nccl) {
        const scp_nccl_functions *(*entry)(const char *, size_t);
        *(void **)&entry = scp_cuda_plugin_symbol(SCP_NCCL_ENTRY);
        if (!entry) return scp_error_prefix("rank %d: NCCL", d->rank);
        if (!(nccl = entry(PACKAGE_VERSION, sizeof(scp_dist))))
            return scp_error("rank %d: NCCL: the CUDA plugin was built from other sources than this program", d->rank);
    }
    return nccl->init(d);
#else
    (void)d;
    return scp_error("this scp-train was built without NCCL (configure --with-nccl, needs CUDA and MPI)");
#endif
}

/* A communicator exists only through scp_dist_nccl_init, which found the functions. */
int scp_dist_nccl_allreduce_f32(scp_dist *d, float *dev, int64_t n, void *stream)
{
#ifdef HAVE_NCCL
    if (d->nccl) return nccl->allreduce_f32(d, dev, n, stream);
#endif
    (void)dev, (void)n, (void)stream;
    return scp_error("rank %d: NCCL all-reduce before scp_dist_nccl_init", d->rank);
}

#ifdef HAVE_NCCL
static int test_nccl(void *ctx)
{
    int r = nccl->query(ctx);
    return r == 0 ? 1 : r > 0 ? 0 : -1;
}
#endif

/* What d's communicator has queued, completed: polled with the bound and the naming of wait_bounded, as the MPI
 * collectives are (NCCL itself would wait forever for a dead peer), and watched by the watchdog. */
static int nccl_finish(scp_dist *d, const char *what)
{
#ifdef HAVE_NCCL
    double t0 = coll_begin(d, what);
    int rc = wait_bounded(d, test_nccl, d, what);
    coll_end(d, t0, 0);
    return rc;
#else
    (void)d, (void)what;
    return 0;
#endif
}

int scp_dist_nccl_allgather_pieces(scp_dist *d, void *dev, int64_t piece_bytes)
{
#ifdef HAVE_NCCL
    if (nccl && d->nccl) return nccl->allgather_start(d, dev, piece_bytes) ? -1 : nccl_finish(d, "NCCL all-gather");
#endif
    (void)dev, (void)piece_bytes;
    return scp_error("rank %d: NCCL all-gather without a communicator", d->rank);
}

int scp_dist_nccl_allgather_start(scp_dist *d, void *dev, int64_t piece_bytes)
{
#ifdef HAVE_NCCL
    if (nccl && d->nccl) return nccl->allgather_start(d, dev, piece_bytes);
#endif
    (void)dev, (void)piece_bytes;
    return scp_error("rank %d: NCCL all-gather without a communicator", d->rank);
}

/* The host waits (bounded) for the started all-gather, then orders the compute stream after it: a dead peer is
 * named within the timeout instead of holding the compute stream, and the host, forever. The gather still runs
 * beside the kernels queued before the join. */
int scp_dist_nccl_join(scp_dist *d)
{
#ifdef HAVE_NCCL
    if (nccl && d->nccl) return nccl_finish(d, "NCCL all-gather") ? -1 : nccl->join(d);
#endif
    (void)d;
    return 0;
}

int scp_dist_nccl_reduce_scatter_f32(scp_dist *d, const float *dev, float *out, int64_t piece)
{
#ifdef HAVE_NCCL
    if (nccl && d->nccl)
        return nccl->reduce_scatter_f32(d, dev, out, piece) ? -1 : nccl_finish(d, "NCCL reduce-scatter");
#endif
    (void)dev, (void)out, (void)piece;
    return scp_error("rank %d: NCCL reduce-scatter without a communicator", d->rank);
}

int scp_dist_nccl_reduce_scatter_bf16(scp_dist *d, const uint16_t *dev, uint16_t *out, int64_t piece)
{
#ifdef HAVE_NCCL
    if (nccl && d->nccl)
        return nccl->reduce_scatter_bf16(d, dev, out, piece) ? -1 : nccl_finish(d, "NCCL reduce-scatter");
#endif
    (void)dev, (void)out, (void)piece;
    return scp_error("rank %d: NCCL reduce-scatter without a communicator", d->rank);
}

int scp_dist_nccl_alltoallv(scp_dist *d, const void *send, const int64_t *send_bytes, void *recv,
                            const int64_t *recv_bytes)
{
#ifdef HAVE_NCCL
    if (nccl && d->nccl)
        return nccl->alltoallv(d, send, send_bytes, recv, recv_bytes) ? -1 : nccl_finish(d, "NCCL all-to-all");
#endif
    (void)send, (void)send_bytes, (void)recv, (void)recv_bytes;
    return scp_error("rank %d: NCCL all-to-all without a communicator", d->rank);
}

int scp_dist_nccl_split(const scp_dist *parent, int color, int key, scp_dist *group)
{
#ifdef HAVE_NCCL
    if (nccl && parent->nccl) return nccl->split(parent, color, key, group);
#endif
    (void)color, (void)key, (void)group;
    return scp_error("rank %d: NCCL group before scp_dist_nccl_init", parent->rank);
}

int scp_dist_nccl_wait(scp_dist *d)
{
    return d->nccl ? nccl_finish(d, "NCCL all-reduce") : 0;
}

void scp_dist_nccl_free(scp_dist *d)
{
#ifdef HAVE_NCCL
    if (d->nccl) nccl->free(d);
#endif
    d->nccl = NULL;
}
