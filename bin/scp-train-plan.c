/* scp-train-plan.c: scp-train --plan: the memory per rank and the traffic per step of the run a command line
 * describes, from its config.json alone (nothing of the model is allocated, no data is needed), as one JSON
 * object on stdout. The sizes are train/memplan.h's. */
#include "scp-train.h"

#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "data/shard.h"
#include "dist/dist.h"
#include "eval/setup.h"
#include "train/memplan.h"
#include "train/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The sequence length of the train split of a shard set, 0 with a message. */
static int data_seq_len(const char *dir)
{
    scp_shardset *s = scp_shardset_open(dir, "train");
    if (!s) return 0;
    int T = scp_shardset_seq_len(s);
    scp_shardset_close(s);
    return T;
}

int scp_train_print_plan(const scp_train_opts *o, const scp_train_plan_args *a)
{
    if (!o->init) scp_usage_error("--plan needs --init CKPT or --init random:CONFIG.json");
    int world, rank;
    scp_dist_launcher(&world, &rank);
    if (a->world) world = a->world;
    int T = a->seq_len;
    if (!T && o->data && !(T = data_seq_len(o->data))) return -1;
    if (!T) scp_usage_error("--plan needs --seq-len N (or the --data SHARDS whose sequence length it takes)");
    char *path = strncmp(o->init, "random:", 7) == 0 ? scp_xstrdup(o->init + 7) : scp_path_join(o->init, "config.json");
    scp_model_config c;
    if (scp_config_load(&c, path)) {
        free(path);
        return -1;
    }
    int rc = -1;
    json_t *j = NULL;
    scp_train_batches b;
    scp_memplan p;
    if (scp_eval_check_length(&c, path, T, o->objective == SCP_OBJ_AR, "--seq-len")) goto out;
    if (scp_train_batches_plan(o, T, world, &b)) scp_usage_error("%s", scp_last_error());
    if (a->zero >= 2 && world == 1 && !a->quiet && rank == 0)
        scp_warn("--zero %d with one rank: nothing is sharded", a->zero);
    scp_memplan_opts po = {.backend = o->backend, .world = world, .zero = a->zero, .T = T, .batch = b.B_max,
                           .micro = b.micro_max, .recompute = a->recompute, .keep_gathered = a->keep_gathered,
                           .no_prefetch = a->no_prefetch, .reduce_bf16 = a->reduce_bf16,
                           .expert_parallel = a->expert_parallel, .grad_stats = o->grad_stats};
    if (scp_memplan_make(&c, &po, &p)) goto out;
    j = scp_memplan_json(&p, &po, path, a->gpu_memory);
    if (rank == 0) {   /* under a launcher every rank plans, rank 0 speaks */
        char *s = json_dumps(j, JSON_INDENT(2));
        puts(s);
        free(s);
    }
    rc = 0;
out:
    if (j) json_decref(j);
    scp_config_free(&c);
    free(path);
    return rc;
}
