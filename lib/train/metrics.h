/* train/metrics.h: RUNDIR/metrics.jsonl, one JSON object per line (man 5 scp-run).
 * Lines are written whole and flushed at once, so a killed run leaves at most its last line cut short; on
 * resume the file is cut back to the lines of the steps the checkpoint already covers. */
#ifndef SCP_TRAIN_METRICS_H
#define SCP_TRAIN_METRICS_H

#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

typedef struct scp_metrics {
    FILE *f;
    char *path;
} scp_metrics;

/* Open RUNDIR/metrics.jsonl for appending (created if absent). */
int scp_metrics_open(scp_metrics *m, const char *rundir);
/* One compact line, keys in insertion order, reals with 17 significant digits. Steals the reference. */
int scp_metrics_write(scp_metrics *m, json_t *line);
void scp_metrics_close(scp_metrics *m);
/* Keep only complete lines whose "step" is <= step (atomic rewrite); absent file is fine. */
int scp_metrics_truncate(const char *rundir, int64_t step);
/* The figure `key` ("elbo", "nll") of the val evaluation line at `step` into *out (the last such line): 0, or 1
 * when there is none (or no file), -1 with a message when the file cannot be read. */
int scp_metrics_eval_at(const char *rundir, int64_t step, const char *key, double *out);
/* The MoE keys of a step line (nothing when E is 0): "expert_load" (E counts: assignments per expert summed over
 * layers), "load_max_mean" (the largest count over the mean: 1 is perfect balance, E / k total collapse),
 * "aux_loss" and "z_loss" (without their coefficients). */
void scp_metrics_moe(json_t *line, int E, const int64_t *load, double aux, double z);

#endif
