/* train/profile.h: scp-train --profile: the compute backend's time per operation over a run's steps. The model's
 * backend becomes the timing wrapper of model/backend_profile.h, with the device synchronised around every
 * operation (so each is charged its own time, and a profiled step is slower than a plain one); the steps' totals
 * are kept apart from evaluations and checkpoints. The first step of the process is left out: it allocates the
 * workspace and warms the libraries up. */
#ifndef SCP_TRAIN_PROFILE_H
#define SCP_TRAIN_PROFILE_H

#include <stdint.h>

#include "model/backend_profile.h"
#include "model/model.h"

typedef struct scp_train_profile {
    double now[SCP_PROF_N];      /* the wrapper's running totals, seconds */
    double before[SCP_PROF_N];   /* now[] when the step being timed began */
    double sum[SCP_PROF_N];      /* over the counted steps */
    double step_s;               /* the counted steps' wall time */
    int64_t seen;                /* steps timed; all but the first are counted */
    int64_t first;               /* the run's step number of the first counted step */
} scp_train_profile;

/* m's backend becomes the timing wrapper (one per process). */
void scp_train_profile_attach(scp_train_profile *p, scp_model *m);
/* Around one optimizer step: `step` is the run's step number once the step is done, step_s its wall time. */
void scp_train_profile_begin(scp_train_profile *p);
void scp_train_profile_end(scp_train_profile *p, int64_t step, double step_s);
/* The report: RUNDIR/profile.json (written atomically) and, unless quiet, a table on stderr. A run that counted
 * no step (one step in all) warns and writes nothing. 0, or -1 with the error set. */
int scp_train_profile_report(const scp_train_profile *p, const char *rundir, int quiet);

#endif
