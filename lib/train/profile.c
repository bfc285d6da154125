/* train/profile.c: scp-train --profile (train/profile.h). */
#include "train/profile.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void scp_train_profile_attach(scp_train_profile *p, scp_model *m)
{
    memset(p, 0, sizeof *p);
    m->backend = scp_backend_profiled_synced(m->backend, p->now);
}

void scp_train_profile_begin(scp_train_profile *p) { memcpy(p->before, p->now, sizeof p->before); }

void scp_train_profile_end(scp_train_profile *p, int64_t step, double step_s)
{
    if (p->seen++ == 0) return;
    if (p->seen == 2) p->first = step;
    for (int o = 0; o < SCP_PROF_N; o++) p->sum[o] += p->now[o] - p->before[o];
    p->step_s += step_s;
}

int scp_train_profile_report(const scp_train_profile *p, const char *rundir, int quiet)
{
    const int64_t counted = p->seen - 1;
    if (counted <= 0) {
        scp_warn("--profile: no step to report (the first step of a run, which allocates and warms up, is left out)");
        return 0;
    }
    const double per = 1e3 / (double)counted;   /* seconds in all -> ms per step */
    double ops = 0;
    for (int o = 0; o < SCP_PROF_N; o++) ops += p->sum[o];
    const double step_ms = p->step_s * per, outside_ms = (p->step_s - ops) * per;
    json_t *j = json_object(), *t = json_object();
    json_object_set_new(j, "steps", json_integer(counted));
    json_object_set_new(j, "first_step", json_integer(p->first));
    json_object_set_new(j, "step_ms", json_real(step_ms));
    json_object_set_new(j, "outside_ms", json_real(outside_ms));
    for (int o = 0; o < SCP_PROF_N; o++) json_object_set_new(t, scp_prof_op_name[o], json_real(p->sum[o] * per));
    json_object_set_new(j, "ops_ms", t);
    char *path = scp_path_join(rundir, "profile.json");
    int rc = scp_json_save(path, j);
    json_decref(j);
    if (rc) {
        free(path);
        return -1;
    }
    if (!quiet) {
        /* the operations by time, largest first (a few entries: a selection sort) */
        int order[SCP_PROF_N], n = 0;
        for (int o = 0; o < SCP_PROF_N; o++)
            if (p->sum[o] > 0) order[n++] = o;
        for (int a = 0; a < n; a++)
            for (int b = a + 1; b < n; b++)
                if (p->sum[order[b]] > p->sum[order[a]]) {
                    int x = order[a];
                    order[a] = order[b], order[b] = x;
                }
        fprintf(stderr, "%s: time per step by operation, steps %" PRId64 " to %" PRId64 " (each operation waited for, "
                        "so these steps ran slower than unprofiled ones); %s\n",
                scp_progname(), p->first, p->first + counted - 1, path);
        for (int a = 0; a < n; a++)
            fprintf(stderr, "  %-16s %10.3f ms %5.1f%%\n", scp_prof_op_name[order[a]], p->sum[order[a]] * per,
                    100.0 * p->sum[order[a]] / p->step_s);
        fprintf(stderr, "  %-16s %10.3f ms %5.1f%%  (between the operations: communication, host work)\n", "outside",
                outside_ms, 100.0 * (p->step_s - ops) / p->step_s);
        fprintf(stderr, "  %-16s %10.3f ms\n", "step", step_ms);
    }
    free(path);
    return 0;
}
