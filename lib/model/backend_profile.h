/* model/backend_profile.h: a backend that forwards every operation to another one and adds the wall time of each
 * call to a per-operation total, for benchmarks' "where the time goes" tables. The driver runs unchanged on
 * the wrapped table. */
#ifndef SCP_BACKEND_PROFILE_H
#define SCP_BACKEND_PROFILE_H

#include "model/backend.h"

typedef enum scp_prof_op {
    SCP_PROF_MM_FWD, SCP_PROF_MM_BWD, SCP_PROF_RMSNORM, SCP_PROF_ROPE, SCP_PROF_QK_NORM_ROPE, SCP_PROF_ATTN_FWD, SCP_PROF_ATTN_BWD,
    SCP_PROF_SWIGLU, SCP_PROF_EMBED, SCP_PROF_CE, SCP_PROF_ADAMW, SCP_PROF_COPY, SCP_PROF_MOE, SCP_PROF_OTHER,
    SCP_PROF_N
} scp_prof_op;

/* "matmul_fwd", "matmul_bwd", ..., "qk_norm_rope" (Qwen3's q/k norm and rotation in one entry), "moe" (routing and combining; the experts' matmuls count as matmuls),
 * "other" */
extern const char *const scp_prof_op_name[SCP_PROF_N];

/* The wrapped table (one per process: the wrappers keep base, sync and times in static state). times has
 * SCP_PROF_N seconds, added to by each call; sync, when not NULL, runs before and after every call so that a
 * device backend's asynchronous work is charged to the operation that queued it. */
const scp_backend *scp_backend_profiled(const scp_backend *base, void (*sync)(void), double *times);
/* The same with the sync a table's own memory calls for: none for host memory, else a download of 4 bytes from a
 * buffer of base's (the copy waits for the work queued before it). */
const scp_backend *scp_backend_profiled_synced(const scp_backend *base, double *times);

#endif
