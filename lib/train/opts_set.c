/* train/opts_set.c: scp-train's options from the command line, their ranges, and absolute input paths. */
#include "train/opts_set.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "model/backend.h"
#include "train/batch_schedule.h"

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { V_REAL, V_COUNT, V_INT } value_kind;

/* A numeric option: a double (V_REAL), an int64_t count with k/M/G suffixes (V_COUNT) or an int (V_INT) of
 * scp_train_opts at `offset`. */
typedef struct numeric_opt {
    scp_opt_id id;          /* SCP_OPT_END: set through another option, only checked (lr_mult.expert) */
    const char *key;        /* its name in trainer_state.json's options */
    value_kind kind;
    size_t offset;
    double min, max;        /* V_REAL */
    int64_t lo, hi;         /* V_COUNT, V_INT */
    int zero_unset;         /* 0 is valid too: the option was not given */
} numeric_opt;

#define OFF(field) offsetof(scp_train_opts, field)
#define REAL(id, key, field, min, max) {SCP_OPT_##id, key, V_REAL, OFF(field), min, max, 0, 0, 0}
#define COUNT(id, key, field, lo, hi, z) {SCP_OPT_##id, key, V_COUNT, OFF(field), 0, 0, lo, hi, z}
#define INT(id, key, field, lo, hi, z) {SCP_OPT_##id, key, V_INT, OFF(field), 0, 0, lo, hi, z}
#define BIG (INT64_MAX / 2)

static const numeric_opt numeric[] = {
    REAL(INIT_STD, "init_std", init_std, 0, 10),
    REAL(T_EPS, "t_eps", t_eps, 1e-9, 0.5),
    REAL(LR, "lr", lr, 0, 10),
    REAL(LR_ATTN, "lr_mult.attn", lr_mult[SCP_GROUP_ATTN], 0, 1e6),
    REAL(LR_MLP, "lr_mult.mlp", lr_mult[SCP_GROUP_MLP], 0, 1e6),
    {SCP_OPT_END, "lr_mult.expert", V_REAL, OFF(lr_mult[SCP_GROUP_EXPERT]), 0, 1e6, 0, 0, 0},
    REAL(LR_EMBED, "lr_mult.embed", lr_mult[SCP_GROUP_EMBED], 0, 1e6),
    REAL(LR_NORM, "lr_mult.norm", lr_mult[SCP_GROUP_NORM], 0, 1e6),
    REAL(LR_ROUTER, "lr_mult.router", lr_mult[SCP_GROUP_ROUTER], 0, 1e6),
    REAL(BETA1, "beta1", beta1, 0, 0.999999999),
    REAL(BETA2, "beta2", beta2, 0, 0.999999999),
    REAL(EPS, "adam_eps", adam_eps, 0, 1),
    REAL(WEIGHT_DECAY, "weight_decay", weight_decay, 0, 10),
    REAL(CLIP, "clip", clip, 0, 1e30),
    REAL(AUX_LOSS, "aux_loss", aux_loss, 0, 1e6),
    REAL(Z_LOSS, "z_loss", z_loss, 0, 1e6),
    REAL(MIN_LR, "min_lr", min_lr, 0, 10),
    REAL(DECAY_FRAC, "decay_frac", decay_frac, 0, 1),
    COUNT(WARMUP, "warmup", warmup, 0, BIG, 0),
    COUNT(BATCH_TOKENS, "batch_tokens", batch_tokens, 1, BIG, 1),
    INT(MICRO_BATCH, "micro_batch", micro_batch, 1, 1 << 20, 1),
    COUNT(STEPS, "steps", steps, 1, BIG, 1),
    COUNT(TOKENS, "tokens", tokens, 1, BIG, 1),
    COUNT(SAVE_EVERY, "save_every", save_every, 0, BIG, 0),
    {SCP_OPT_END, "save_seconds", V_REAL, OFF(save_seconds), 0, 1e9, 0, 0, 0},
    INT(KEEP, "keep", keep, 0, 1 << 30, 0),
    COUNT(EVAL_EVERY, "eval_every", eval_every, 0, BIG, 0),
    INT(EVAL_SEQS, "eval_seqs", eval_seqs, 1, 1 << 30, 0),
    INT(EVAL_SAMPLES, "eval_samples", eval_samples, 1, 1 << 20, 0),
    INT(THREADS, "threads", threads, 0, 4096, 0),
};
#define N_NUMERIC (int)(sizeof numeric / sizeof *numeric)

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = scp_xstrdup(v);
}

static int set_numeric(scp_train_opts *o, scp_opt_id id, const char *arg)
{
    for (int i = 0; i < N_NUMERIC; i++) {
        const numeric_opt *n = &numeric[i];
        if (n->id != id) continue;
        char *p = (char *)o + n->offset;
        const char *name = scp_opt_name(id);
        if (n->kind == V_REAL) *(double *)p = scp_opt_double(name, arg, n->min, n->max);
        else if (n->kind == V_COUNT) *(int64_t *)p = scp_opt_count(name, arg, n->lo, n->hi);
        else *(int *)p = (int)scp_opt_int(name, arg, n->lo, n->hi);
        return 1;
    }
    return 0;
}

int scp_train_opts_set(scp_train_opts *o, scp_opt_id id, const char *arg)
{
    int v;
    if (id == SCP_OPT_SAVE_EVERY) {   /* N steps or Ns seconds: the one given replaces the default interval */
        scp_opt_interval("--save-every", arg, BIG, 1e9, &o->save_every, &o->save_seconds);
        return 0;
    }
    if (set_numeric(o, id, arg)) {
        /* --lr-mlp covers the experts; the last of --steps and --tokens wins (also over the one saved by a
         * resumed run). */
        if (id == SCP_OPT_LR_MLP) o->lr_mult[SCP_GROUP_EXPERT] = o->lr_mult[SCP_GROUP_MLP];
        if (id == SCP_OPT_STEPS) o->tokens = 0;
        if (id == SCP_OPT_TOKENS) o->steps = 0;
        return 0;
    }
    switch (id) {
    case SCP_OPT_INIT: set_str(&o->init, arg); break;
    case SCP_OPT_INIT_RANDOM: o->init_random = 1; break;
    case SCP_OPT_DATA: set_str(&o->data, arg); break;
    case SCP_OPT_OBJECTIVE:
        if ((v = scp_objective_parse(arg)) < 0) scp_usage_error("--objective: '%s' is not mdm or ar", arg);
        o->objective = (scp_objective)v;
        break;
    case SCP_OPT_LOSS_NORM:
        if ((v = scp_loss_norm_parse(arg)) < 0) scp_usage_error("--loss-norm: '%s' is not length or masked", arg);
        o->loss_norm = (scp_loss_norm)v;
        break;
    case SCP_OPT_ATTENTION:
        if ((v = scp_attn_parse(arg, &o->anneal_steps)) < 0)
            scp_usage_error("--attention: '%s' is not bidirectional, causal or anneal:STEPS", arg);
        o->attn = (scp_attn_mode)v;
        o->attn_set = 1;
        break;
    case SCP_OPT_DOC_MASK: o->doc_mask = 1; break;
    case SCP_OPT_SHIFT: o->shift = 1; break;
    case SCP_OPT_NO_SHIFT: o->shift = 0; break;
    case SCP_OPT_T_SAMPLER:
        if ((v = scp_t_sampler_from_name(arg)) < 0)
            scp_usage_error("--t-sampler: '%s' is not uniform, stratified or antithetic", arg);
        o->t_sampler = (scp_t_sampler)v;
        break;
    case SCP_OPT_MASK_SCHEDULE:
        if ((v = scp_mask_schedule_from_name(arg)) < 0)
            scp_usage_error("--mask-schedule: '%s' is not linear, cosine or poly2", arg);
        o->mask_schedule = (scp_mask_schedule)v;
        break;
    case SCP_OPT_SCHEDULE:
        if ((v = scp_lr_kind_parse(arg)) < 0) scp_usage_error("--schedule: '%s' is not constant, cosine or wsd", arg);
        o->schedule = (scp_lr_kind)v;
        break;
    case SCP_OPT_BATCH_SCHEDULE: {
        scp_batch_schedule bs;
        if (scp_batch_schedule_parse(arg, &bs)) scp_usage_error("%s", scp_last_error());
        set_str(&o->batch_schedule, arg);
        break;
    }
    case SCP_OPT_LR_SCALING:
        if ((v = scp_lr_scaling_parse(arg)) < 0) scp_usage_error("--lr-scaling: '%s' is not sqrt, linear or none", arg);
        o->lr_scaling = (scp_lr_scaling)v;
        break;
    case SCP_OPT_NO_SHUFFLE: o->shuffle = 0; break;
    case SCP_OPT_KEEP_BEST: o->keep_best = 1; break;
    case SCP_OPT_NO_GRAD_STATS: o->grad_stats = 0; break;
    case SCP_OPT_SEED: o->seed = (uint64_t)scp_opt_int("--seed", arg, 0, INT64_MAX); break;
    case SCP_OPT_BACKEND:
        if (scp_backend_check_name(arg)) scp_usage_error("--backend: %s", scp_last_error());
        set_str(&o->backend, arg);
        break;
    default: return 1;
    }
    return 0;
}

int scp_train_opts_check(const scp_train_opts *o, const char *what)
{
    for (int i = 0; i < N_NUMERIC; i++) {
        const numeric_opt *n = &numeric[i];
        const char *p = (const char *)o + n->offset;
        if (n->kind == V_REAL) {
            double v = *(const double *)p;
            if (!isfinite(v) || v < n->min || v > n->max)
                return scp_error("%s: option '%s' is %g, outside [%g, %g]", what, n->key, v, n->min, n->max);
            continue;
        }
        int64_t v = n->kind == V_COUNT ? *(const int64_t *)p : *(const int *)p;
        if ((v < n->lo || v > n->hi) && !(n->zero_unset && v == 0))
            return scp_error("%s: option '%s' is %" PRId64 ", outside [%" PRId64 ", %" PRId64 "]", what, n->key, v,
                             n->lo, n->hi);
    }
    if (o->attn == SCP_ATTN_ANNEAL && o->anneal_steps < 1)
        return scp_error("%s: option 'attention' anneals over %" PRId64 " steps", what, o->anneal_steps);
    if (o->backend && scp_backend_check_name(o->backend)) return scp_error_prefix("%s: option 'backend'", what);
    scp_batch_schedule bs;
    if (o->batch_schedule && scp_batch_schedule_parse(o->batch_schedule, &bs))
        return scp_error_prefix("%s: option 'batch_schedule'", what);
    return 0;
}

/* path made absolute against the working directory (as it is: symbolic links are kept). */
static void absolute(char **path, size_t prefix)
{
    const char *p = *path + prefix;
    if (!*p || p[0] == '/') return;
    char *cwd = getcwd(NULL, 0);
    if (!cwd) return;   /* a working directory that was removed: the path stays as given */
    char *abs = scp_xasprintf("%.*s%s/%s", (int)prefix, *path, cwd, p);
    free(cwd);
    free(*path);
    *path = abs;
}

void scp_train_opts_absolute(scp_train_opts *o)
{
    if (o->init) absolute(&o->init, strncmp(o->init, "random:", 7) == 0 ? 7 : 0);
    if (o->data) absolute(&o->data, 0);
}
