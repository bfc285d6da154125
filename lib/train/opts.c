/* train/opts.c: scp-train's option defaults and their JSON form (saved in trainer_state.json). */
#include "train/opts.h"
#include "core/error.h"
#include "core/json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *lr_names[] = {"constant", "cosine", "wsd"};

const char *scp_lr_kind_name(scp_lr_kind x) { return lr_names[x]; }

int scp_lr_kind_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(lr_names[i], s) == 0) return i;
    return -1;
}

static const char *scaling_names[] = {"sqrt", "linear", "none"};

const char *scp_lr_scaling_name(scp_lr_scaling x) { return scaling_names[x]; }

int scp_lr_scaling_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(scaling_names[i], s) == 0) return i;
    return -1;
}

void scp_train_opts_default(scp_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->init_std = 0.02;
    o->objective = SCP_OBJ_MDM;
    o->loss_norm = SCP_NORM_LENGTH;
    o->attn = SCP_ATTN_BIDIRECTIONAL;
    o->shift = -1;
    o->t_sampler = SCP_T_STRATIFIED;
    o->mask_schedule = SCP_SCHED_LINEAR;
    o->t_eps = 1e-3;
    o->lr = 3e-4;
    for (int g = 0; g < SCP_GROUP_COUNT; g++) o->lr_mult[g] = 1.0;
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->adam_eps = 1e-8;
    o->weight_decay = 0.1;
    o->clip = 1.0;
    o->schedule = SCP_LR_CONSTANT;
    o->decay_frac = 0.2;
    o->batch_tokens = 0;   /* 0: 8 sequences */
    o->shuffle = 1;
    o->save_seconds = SCP_TRAIN_SAVE_SECONDS;
    o->grad_stats = 1;
    o->eval_seqs = 16;
    o->eval_samples = 4;
    o->seed = 1;
    o->backend = scp_xstrdup("cpu");
}

void scp_train_opts_free(scp_train_opts *o)
{
    free(o->init);
    free(o->data);
    free(o->out);
    free(o->backend);
    free(o->batch_schedule);
    o->init = o->data = o->out = o->backend = o->batch_schedule = NULL;
}

static void set_str(json_t *j, const char *k, const char *v)
{
    json_object_set_new(j, k, v ? json_string(v) : json_null());
}

json_t *scp_train_opts_to_json(const scp_train_opts *o)
{
    json_t *j = json_object();
    char buf[32];
    set_str(j, "init", o->init);
    json_object_set_new(j, "init_random", json_boolean(o->init_random));
    json_object_set_new(j, "init_std", json_real(o->init_std));
    set_str(j, "data", o->data);
    set_str(j, "objective", scp_objective_name(o->objective));
    set_str(j, "loss_norm", scp_loss_norm_name(o->loss_norm));
    if (o->attn == SCP_ATTN_ANNEAL) {
        snprintf(buf, sizeof buf, "anneal:%" PRId64, o->anneal_steps);
        set_str(j, "attention", buf);
    } else {
        set_str(j, "attention", scp_attn_name(o->attn));
    }
    json_object_set_new(j, "doc_mask", json_boolean(o->doc_mask));
    json_object_set_new(j, "shift", o->shift < 0 ? json_null() : json_boolean(o->shift));
    set_str(j, "t_sampler", scp_t_sampler_name(o->t_sampler));
    set_str(j, "mask_schedule", scp_mask_schedule_name(o->mask_schedule));
    json_object_set_new(j, "t_eps", json_real(o->t_eps));
    json_object_set_new(j, "lr", json_real(o->lr));
    json_t *m = json_object();
    for (int g = 0; g < SCP_GROUP_COUNT; g++) json_object_set_new(m, scp_group_name((scp_group)g), json_real(o->lr_mult[g]));
    json_object_set_new(j, "lr_mult", m);
    json_object_set_new(j, "beta1", json_real(o->beta1));
    json_object_set_new(j, "beta2", json_real(o->beta2));
    json_object_set_new(j, "adam_eps", json_real(o->adam_eps));
    json_object_set_new(j, "weight_decay", json_real(o->weight_decay));
    json_object_set_new(j, "clip", json_real(o->clip));
    json_object_set_new(j, "aux_loss", json_real(o->aux_loss));
    json_object_set_new(j, "z_loss", json_real(o->z_loss));
    json_object_set_new(j, "warmup", json_integer(o->warmup));
    set_str(j, "schedule", scp_lr_kind_name(o->schedule));
    json_object_set_new(j, "min_lr", json_real(o->min_lr));
    json_object_set_new(j, "decay_frac", json_real(o->decay_frac));
    json_object_set_new(j, "batch_tokens", json_integer(o->batch_tokens));
    json_object_set_new(j, "micro_batch", json_integer(o->micro_batch));
    set_str(j, "batch_schedule", o->batch_schedule);
    set_str(j, "lr_scaling", scp_lr_scaling_name(o->lr_scaling));
    json_object_set_new(j, "steps", json_integer(o->steps));
    json_object_set_new(j, "tokens", json_integer(o->tokens));
    json_object_set_new(j, "shuffle", json_boolean(o->shuffle));
    json_object_set_new(j, "grad_stats", json_boolean(o->grad_stats));
    json_object_set_new(j, "save_every", json_integer(o->save_every));
    json_object_set_new(j, "save_seconds", json_real(o->save_seconds));
    json_object_set_new(j, "keep", json_integer(o->keep));
    json_object_set_new(j, "keep_best", json_boolean(o->keep_best));
    json_object_set_new(j, "eval_every", json_integer(o->eval_every));
    json_object_set_new(j, "eval_seqs", json_integer(o->eval_seqs));
    json_object_set_new(j, "eval_samples", json_integer(o->eval_samples));
    snprintf(buf, sizeof buf, "%" PRIu64, o->seed);
    set_str(j, "seed", buf);   /* a string: 64 bits do not fit a JSON integer */
    json_object_set_new(j, "threads", json_integer(o->threads));
    set_str(j, "backend", o->backend);
    return j;
}

/* Getters that leave the field untouched when the key is absent. */
static int get_d(const json_t *j, const char *k, double *out, const char *what)
{
    return scp_json_get_real(j, k, out, what) < 0 ? -1 : 0;
}

static int get_i64(const json_t *j, const char *k, int64_t *out, const char *what)
{
    return scp_json_get_int(j, k, out, what) < 0 ? -1 : 0;
}

static int get_int(const json_t *j, const char *k, int *out, const char *what)
{
    int64_t v = *out;
    if (scp_json_get_int(j, k, &v, what) < 0) return -1;
    *out = (int)v;
    return 0;
}

static int get_b(const json_t *j, const char *k, int *out, const char *what)
{
    return scp_json_get_bool(j, k, out, what) < 0 ? -1 : 0;
}

static int get_s(const json_t *j, const char *k, char **out, const char *what)
{
    const char *s;
    int rc = scp_json_get_str(j, k, &s, what);
    if (rc < 0) return -1;
    if (rc == 0) {
        free(*out);
        *out = scp_xstrdup(s);
    }
    return 0;
}

static int get_enum(const json_t *j, const char *k, int (*parse)(const char *), int *out, const char *what)
{
    const char *s;
    int rc = scp_json_get_str(j, k, &s, what);
    if (rc < 0) return -1;
    if (rc == 1) return 0;
    int v = parse(s);
    if (v < 0) return scp_error("%s: '%s' has an unknown value '%s'", what, k, s);
    *out = v;
    return 0;
}

int scp_train_opts_from_json(scp_train_opts *o, const json_t *j, const char *what)
{
    if (!json_is_object(j)) return scp_error("%s: options are not a JSON object", what);
    int e;
    if (get_s(j, "init", &o->init, what) || get_b(j, "init_random", &o->init_random, what) ||
        get_d(j, "init_std", &o->init_std, what) || get_s(j, "data", &o->data, what))
        return -1;
    /* Enums go through an int. */
    e = (int)o->objective;
    if (get_enum(j, "objective", scp_objective_parse, &e, what)) return -1;
    o->objective = (scp_objective)e;
    e = (int)o->loss_norm;
    if (get_enum(j, "loss_norm", scp_loss_norm_parse, &e, what)) return -1;
    o->loss_norm = (scp_loss_norm)e;
    e = (int)o->t_sampler;
    if (get_enum(j, "t_sampler", scp_t_sampler_from_name, &e, what)) return -1;
    o->t_sampler = (scp_t_sampler)e;
    e = (int)o->mask_schedule;
    if (get_enum(j, "mask_schedule", scp_mask_schedule_from_name, &e, what)) return -1;
    o->mask_schedule = (scp_mask_schedule)e;
    e = (int)o->schedule;
    if (get_enum(j, "schedule", scp_lr_kind_parse, &e, what)) return -1;
    o->schedule = (scp_lr_kind)e;
    e = (int)o->lr_scaling;
    if (get_enum(j, "lr_scaling", scp_lr_scaling_parse, &e, what)) return -1;
    o->lr_scaling = (scp_lr_scaling)e;
    json_t *bs = json_object_get(j, "batch_schedule");   /* null: a fixed batch */
    if (bs && json_is_null(bs)) {
        free(o->batch_schedule);
        o->batch_schedule = NULL;
    } else if (get_s(j, "batch_schedule", &o->batch_schedule, what)) {
        return -1;
    }
    const char *a;
    int rc = scp_json_get_str(j, "attention", &a, what);
    if (rc < 0) return -1;
    if (rc == 0) {
        int m = scp_attn_parse(a, &o->anneal_steps);
        if (m < 0) return scp_error("%s: 'attention' has an unknown value '%s'", what, a);
        o->attn = (scp_attn_mode)m;
        o->attn_set = 1;
    }
    json_t *sh = json_object_get(j, "shift");
    if (sh && json_is_null(sh)) o->shift = -1;
    else if (get_b(j, "shift", &o->shift, what)) return -1;
    json_t *m = json_object_get(j, "lr_mult");
    if (m) {
        if (!json_is_object(m)) return scp_error("%s: 'lr_mult' is not an object", what);
        for (int g = 0; g < SCP_GROUP_COUNT; g++)
            if (get_d(m, scp_group_name((scp_group)g), &o->lr_mult[g], what)) return -1;
    }
    const char *seed;
    rc = scp_json_get_str(j, "seed", &seed, what);
    if (rc < 0) return -1;
    if (rc == 0) {
        char *end;
        o->seed = strtoull(seed, &end, 10);
        if (end == seed || *end) return scp_error("%s: 'seed' is not a number: '%s'", what, seed);
    }
    if (get_b(j, "doc_mask", &o->doc_mask, what) || get_d(j, "t_eps", &o->t_eps, what) ||
        get_d(j, "lr", &o->lr, what) || get_d(j, "beta1", &o->beta1, what) || get_d(j, "beta2", &o->beta2, what) ||
        get_d(j, "adam_eps", &o->adam_eps, what) || get_d(j, "weight_decay", &o->weight_decay, what) ||
        get_d(j, "clip", &o->clip, what) || get_i64(j, "warmup", &o->warmup, what) ||
        get_d(j, "aux_loss", &o->aux_loss, what) || get_d(j, "z_loss", &o->z_loss, what) ||
        get_d(j, "min_lr", &o->min_lr, what) || get_d(j, "decay_frac", &o->decay_frac, what) ||
        get_i64(j, "batch_tokens", &o->batch_tokens, what) || get_int(j, "micro_batch", &o->micro_batch, what) ||
        get_i64(j, "steps", &o->steps, what) || get_i64(j, "tokens", &o->tokens, what) ||
        get_b(j, "shuffle", &o->shuffle, what) || get_b(j, "grad_stats", &o->grad_stats, what) || get_i64(j, "save_every", &o->save_every, what) ||
        get_int(j, "keep", &o->keep, what) || get_i64(j, "eval_every", &o->eval_every, what) ||
        get_int(j, "eval_seqs", &o->eval_seqs, what) || get_int(j, "eval_samples", &o->eval_samples, what) || get_int(j, "threads", &o->threads, what) ||
        get_s(j, "backend", &o->backend, what) || get_d(j, "save_seconds", &o->save_seconds, what) ||
        get_b(j, "keep_best", &o->keep_best, what))
        return -1;
    /* A state written before checkpoints by time: its --save-every N alone set the interval. */
    if (!json_object_get(j, "save_seconds") && o->save_every) o->save_seconds = 0;
    return 0;
}
