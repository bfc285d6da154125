/* scp-train.h: what bin/scp-train.c hands its --plan (bin/scp-train-plan.c). */
#ifndef SCP_TRAIN_CMD_H
#define SCP_TRAIN_CMD_H

#include <stdint.h>

#include "train/opts.h"

/* The command line's flags that the plan reads besides the training options. */
typedef struct scp_train_plan_args {
    int world;            /* --world, 0: the launcher's (dist/dist.h scp_dist_launcher) */
    int zero;             /* --zero 0 .. 3 */
    int recompute;
    int keep_gathered;    /* --keep-gathered (zero 3) */
    int no_prefetch;      /* --no-prefetch (zero 3) */
    int reduce_bf16;      /* --reduce-dtype bf16 (zero 2, 3) */
    int expert_parallel;  /* --expert-parallel (zero 0, 2, 3) */
    int seq_len;          /* --seq-len, 0: the sequence length of --data */
    int64_t gpu_memory;   /* --gpu-memory bytes, 0: none given */
    int quiet;
} scp_train_plan_args;

/* Print the memory plan (train/memplan.h) of the run that o and a describe as one JSON object on stdout (rank 0
 * of a launcher only). 0, or -1 with a message; a usage error exits 2. */
int scp_train_print_plan(const scp_train_opts *o, const scp_train_plan_args *a);

#endif
