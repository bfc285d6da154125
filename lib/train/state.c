/* train/state.c: trainer_state.json, optimizer.safetensors and the run directory. */
#include "train/state.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "formats/safetensors.h"
#include "train/opts_set.h"
#include "train/sharded.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_t *u64_hex(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%016" PRIx64, v);
    return json_string(buf);
}

static int parse_u64_hex(const json_t *v, uint64_t *out, const char *what, const char *key)
{
    const char *s = json_string_value(v);
    char *end;
    if (!s || !*s) return scp_error("%s: '%s' must be a hexadecimal string", what, key);
    errno = 0;
    *out = strtoull(s, &end, 16);
    if (errno || *end) return scp_error("%s: '%s' is not a 64-bit hexadecimal number: '%s'", what, key, s);
    return 0;
}

int scp_train_state_save(const char *path, const scp_train_state *s, const scp_train_opts *o)
{
    json_t *j = json_object();
    json_object_set_new(j, "format", json_string("scp-trainer-state"));
    json_object_set_new(j, "version", json_integer(1));
    json_object_set_new(j, "step", json_integer(s->step));
    json_object_set_new(j, "adam_step", json_integer(s->adam_step));
    json_object_set_new(j, "skipped", json_integer(s->skipped));
    json_object_set_new(j, "tokens", json_integer(s->tokens));
    json_object_set_new(j, "cursor", json_integer(s->cursor));
    json_object_set_new(j, "total_steps", json_integer(s->total_steps));
    json_t *r = json_array();
    for (int i = 0; i < 4; i++) json_array_append_new(r, u64_hex(s->rng.s[i]));
    json_object_set_new(j, "rng", r);
    json_object_set_new(j, "data_tokenizer_hash", u64_hex(s->data_hash));
    if (s->world > 0) json_object_set_new(j, "world_size", json_integer(s->world));
    if (s->noise.n > 0) json_object_set_new(j, "noise_scale_ema", scp_noise_to_json(&s->noise));
    if (s->batch > 0) json_object_set_new(j, "batch_seqs", json_integer(s->batch));
    json_object_set_new(j, "options", scp_train_opts_to_json(o));
    int rc = scp_json_save_exact(path, j);
    json_decref(j);
    return rc;
}

/* A state the trainer can reach: counts of steps within 2^53 (where doubles still count exactly), every step
 * either applied or skipped, 1 to 2^24 sequences a step (the cursor) of at least one token each, and an RNG state
 * that is not all zero (xoshiro256 never reaches it and would draw only zeros from it). */
static int check_plausible(const scp_train_state *s, const char *path)
{
    const int64_t max_steps = (int64_t)1 << 53, max_batch = (int64_t)1 << 24;
    if (s->step > max_steps) return scp_error("%s: 'step' %" PRId64 " is beyond 2^53", path, s->step);
    if (s->total_steps > max_steps)
        return scp_error("%s: 'total_steps' %" PRId64 " is beyond 2^53", path, s->total_steps);
    /* adam_step and skipped are known only to be non-negative: step - adam_step cannot overflow, their sum can */
    if (s->adam_step > s->step || s->skipped != s->step - s->adam_step)
        return scp_error("%s: 'adam_step' %" PRId64 " and 'skipped' %" PRId64 " do not add up to 'step' %" PRId64, path,
                         s->adam_step, s->skipped, s->step);
    if (s->cursor < s->step || s->cursor / max_batch + (s->cursor % max_batch != 0) > s->step)
        return scp_error("%s: the data cursor %" PRId64 " is out of range for %" PRId64
                         " steps (1 to 2^24 sequences a step)", path, s->cursor, s->step);
    if (s->tokens < s->cursor)
        return scp_error("%s: 'tokens' %" PRId64 " is fewer than the %" PRId64 " sequences consumed", path, s->tokens,
                         s->cursor);
    if (!(s->rng.s[0] | s->rng.s[1] | s->rng.s[2] | s->rng.s[3]))
        return scp_error("%s: the RNG state 'rng' is all zero, which the generator never reaches", path);
    return 0;
}

int scp_train_state_load(const char *path, scp_train_state *s, scp_train_opts *o)
{
    json_t *j = scp_json_load(path);
    if (!j) return -1;
    int rc = -1;
    const char *fmt;
    memset(s, 0, sizeof *s);
    if (!json_is_object(j)) {
        scp_error("%s: not a JSON object", path);
        goto out;
    }
    if (scp_json_get_str(j, "format", &fmt, path) != 0 || strcmp(fmt, "scp-trainer-state") != 0) {
        scp_error("%s: not an scp trainer state (\"format\": \"scp-trainer-state\" missing)", path);
        goto out;
    }
    static const char *req[] = {"step", "adam_step", "skipped", "tokens", "cursor", "total_steps"};
    int64_t *dst[] = {&s->step, &s->adam_step, &s->skipped, &s->tokens, &s->cursor, &s->total_steps};
    for (int i = 0; i < 6; i++) {
        int g = scp_json_get_int(j, req[i], dst[i], path);
        if (g < 0) goto out;
        if (g == 1) {
            scp_error("%s: missing key '%s'", path, req[i]);
            goto out;
        }
        if (*dst[i] < 0) {
            scp_error("%s: '%s' is negative", path, req[i]);
            goto out;
        }
    }
    json_t *r = json_object_get(j, "rng");
    if (!json_is_array(r) || json_array_size(r) != 4) {
        scp_error("%s: 'rng' must be an array of 4 hexadecimal strings", path);
        goto out;
    }
    for (int i = 0; i < 4; i++)
        if (parse_u64_hex(json_array_get(r, (size_t)i), &s->rng.s[i], path, "rng")) goto out;
    json_t *h = json_object_get(j, "data_tokenizer_hash");
    if (h && parse_u64_hex(h, &s->data_hash, path, "data_tokenizer_hash")) goto out;
    if (scp_json_get_int(j, "world_size", &s->world, path) < 0) goto out;
    if (json_object_get(j, "world_size") && s->world < 1) {
        scp_error("%s: 'world_size' must be at least 1", path);
        goto out;
    }
    json_t *ne = json_object_get(j, "noise_scale_ema");
    if (ne && scp_noise_from_json(&s->noise, ne, path)) goto out;
    if (scp_json_get_int(j, "batch_seqs", &s->batch, path) < 0) goto out;
    if (s->batch < 0 || s->batch > ((int64_t)1 << 24)) {
        scp_error("%s: 'batch_seqs' %" PRId64 " is outside [0, 2^24]", path, s->batch);
        goto out;
    }
    if (check_plausible(s, path)) goto out;
    if (o) {
        json_t *oj = json_object_get(j, "options");
        if (!oj) {
            scp_error("%s: missing key 'options'", path);
            goto out;
        }
        if (scp_train_opts_from_json(o, oj, path) || scp_train_opts_check(o, path)) goto out;
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

/* ---- optimizer moments ------------------------------------------------------------------------------ */
/* A tensor of optimizer.safetensors: moment k of parameter i, under its name. */
typedef struct moment_entry {
    char name[160];
    int k, i;
} moment_entry;

static int cmp_moment_entry(const void *a, const void *b)
{
    return strcmp(((const moment_entry *)a)->name, ((const moment_entry *)b)->name);
}

int scp_optimizer_save_stream(const char *path, const scp_model *m, int (*gather)(void *ctx, int k, int i, float *out),
                              void *ctx)
{
    /* name order, the order scp_st_write gives tensors (HF convention, stable bytes) */
    int n = 2 * m->n_params;
    moment_entry *e = scp_xmalloc(sizeof *e * (size_t)(n ? n : 1));
    int64_t largest = 1;
    for (int i = 0; i < m->n_params; i++) {
        for (int k = 0; k < 2; k++) {
            moment_entry *x = &e[2 * i + k];
            snprintf(x->name, sizeof x->name, "%s.%s", k ? "exp_avg_sq" : "exp_avg", m->desc[i].name);
            x->k = k, x->i = i;
        }
        largest = m->desc[i].numel > largest ? m->desc[i].numel : largest;
    }
    qsort(e, (size_t)n, sizeof *e, cmp_moment_entry);
    scp_st_writer *w = scp_st_writer_new();
    for (int j = 0; j < n; j++) {
        const scp_param_desc *d = &m->desc[e[j].i];
        scp_st_add(w, e[j].name, SCP_F32, d->ndim, d->shape, NULL);
    }
    scp_st_set_metadata(w, "format", "scp-adamw");
    scp_st_stream *st = path ? scp_st_stream_begin(w, path) : NULL;
    int rc = path && !st ? -1 : 0;
    float *out = scp_xmalloc((size_t)largest * sizeof *out);
    for (int j = 0; j < n; j++) {
        if (gather(ctx, e[j].k, e[j].i, out)) {   /* the ranks no longer agree: no further collective */
            rc = -1;
            break;
        }
        if (st && rc == 0 && scp_st_stream_put(st, out)) rc = -1;   /* the gathers go on: the others wait on them */
    }
    if (st && scp_st_stream_end(st, rc == 0)) rc = -1;
    free(out);
    scp_st_writer_free(w);
    free(e);
    return rc;
}

int scp_whole_moments_gather(void *ctx, int k, int i, float *out)
{
    const scp_whole_moments *w = ctx;
    memcpy(out, w->opt[k] + w->m->offset[i], (size_t)w->m->desc[i].numel * sizeof *out);
    return 0;
}

int scp_optimizer_save(const char *path, const scp_model *m, const float *opt_m, const float *opt_v)
{
    scp_whole_moments w = {m, {(float *)opt_m, (float *)opt_v}};   /* only read */
    return scp_optimizer_save_stream(path, m, scp_whole_moments_gather, &w);
}

/* As the sink of a load (train/sharded.h): vectors 1 and 2, whole, into opt[0] and opt[1]. */
static int whole_piece(void *ctx, int vec, int i, int64_t *lo, int64_t *hi)
{
    const scp_whole_moments *w = ctx;
    *lo = 0;
    *hi = w->m->desc[i].numel;
    return vec > 0;
}

static void whole_put(void *ctx, int vec, int i, const float *data)
{
    scp_whole_moments *w = ctx;
    memcpy(w->opt[vec - 1] + w->m->offset[i], data, (size_t)w->m->desc[i].numel * sizeof *data);
}

int scp_optimizer_load(const char *path, const scp_model *m, float *opt_m, float *opt_v)
{
    /* path is DIR/BASE.safetensors: that file, or the shards of DIR/BASE.safetensors.index.json */
    const char *slash = strrchr(path, '/'), *file = slash ? slash + 1 : path;
    size_t fl = strlen(file), sl = strlen(".safetensors");
    char *dir = slash ? scp_xasprintf("%.*s", (int)(slash - path), path) : scp_xstrdup(".");
    char *base = fl > sl && strcmp(file + fl - sl, ".safetensors") == 0 ? scp_xasprintf("%.*s", (int)(fl - sl), file)
                                                                        : scp_xstrdup(file);
    scp_whole_moments w = {m, {opt_m, opt_v}};
    scp_ckpt_sink sink = {.desc = m->desc, .n = m->n_params, .ctx = &w, .piece = whole_piece, .put = whole_put};
    int rc = scp_sharded_load_sink(&sink, dir, base);
    free(dir);
    free(base);
    return rc;
}

/* ---- run directory ---------------------------------------------------------------------------------- */
char *scp_run_ckpt_name(int64_t step)
{
    return scp_xasprintf("step-%07" PRId64, step);
}

/* RUNDIR/link -> name, replaced atomically. */
static int set_link(const char *rundir, const char *link, const char *name)
{
    char *tmp = scp_xasprintf("%s/%s.tmp-%ld", rundir, link, (long)getpid());
    char *dst = scp_path_join(rundir, link);
    unlink(tmp);
    int rc = 0;
    if (symlink(name, tmp) != 0) rc = scp_error("%s: cannot create link: %s", tmp, strerror(errno));
    else if (rename(tmp, dst) != 0) {
        rc = scp_error("%s: cannot replace: %s", dst, strerror(errno));
        unlink(tmp);
    }
    if (rc == 0) scp_fsync_dir(rundir);
    free(tmp);
    free(dst);
    return rc;
}

int scp_run_set_latest(const char *rundir, const char *name) { return set_link(rundir, "latest", name); }

int scp_run_set_best(const char *rundir, const char *name) { return set_link(rundir, "best", name); }

/* step-N with only digits after "step-": a complete checkpoint name (temporaries carry a suffix). */
static int ckpt_step(const char *name, int64_t *step)
{
    if (strncmp(name, "step-", 5) != 0 || !name[5]) return 0;
    int64_t v = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        v = v * 10 + (*p - '0');
    }
    *step = v;
    return 1;
}

int64_t scp_run_best_step(const char *rundir)
{
    char *link = scp_path_join(rundir, "best"), target[256];
    ssize_t n = readlink(link, target, sizeof target - 1);
    free(link);
    if (n <= 0) return -1;
    target[n] = 0;
    int64_t step;
    return ckpt_step(target, &step) ? step : -1;
}

typedef struct { int64_t step; char *name; } ckpt_ent;

static int cmp_ent(const void *a, const void *b)
{
    int64_t x = ((const ckpt_ent *)a)->step, y = ((const ckpt_ent *)b)->step;
    return x < y ? -1 : x > y;
}

static int list_ckpts(const char *rundir, ckpt_ent **out)
{
    DIR *d = opendir(rundir);
    if (!d) {
        scp_error("%s: cannot open run directory: %s", rundir, strerror(errno));
        return -1;
    }
    int n = 0, cap = 16;
    ckpt_ent *e = scp_xmalloc(sizeof *e * (size_t)cap);
    struct dirent *de;
    while ((de = readdir(d))) {
        int64_t st;
        if (!ckpt_step(de->d_name, &st)) continue;
        if (n == cap) e = scp_xrealloc(e, sizeof *e * (size_t)(cap *= 2));
        e[n].step = st;
        e[n++].name = scp_xstrdup(de->d_name);
    }
    closedir(d);
    qsort(e, (size_t)n, sizeof *e, cmp_ent);
    *out = e;
    return n;
}

static void free_ents(ckpt_ent *e, int n)
{
    for (int i = 0; i < n; i++) free(e[i].name);
    free(e);
}

char *scp_run_latest(const char *rundir)
{
    char *link = scp_path_join(rundir, "latest");
    char *state = scp_path_join(link, "trainer_state.json");
    int ok = scp_file_exists(state);
    free(state);
    if (ok) return link;
    free(link);
    ckpt_ent *e;
    int n = list_ckpts(rundir, &e);
    if (n < 0) return NULL;
    char *best = NULL;
    for (int i = n - 1; i >= 0 && !best; i--) {
        char *dir = scp_path_join(rundir, e[i].name);
        char *st = scp_path_join(dir, "trainer_state.json");
        if (scp_file_exists(st)) best = dir;
        else free(dir);
        free(st);
    }
    free_ents(e, n);
    if (!best) scp_error("%s: no checkpoint to resume from (no step-NNNNNNN/trainer_state.json)", rundir);
    return best;
}

int scp_run_prune(const char *rundir, int keep)
{
    if (keep <= 0) return 0;
    ckpt_ent *e;
    int n = list_ckpts(rundir, &e);
    if (n < 0) return -1;
    int rc = 0;
    int64_t best = scp_run_best_step(rundir);
    for (int i = 0; i < n - keep; i++) {
        if (e[i].step == best) continue;
        char *p = scp_path_join(rundir, e[i].name);
        if (scp_rm_rf(p)) rc = -1;
        free(p);
    }
    free_ents(e, n);
    return rc;
}

void scp_run_clean_stale(const char *rundir)
{
    DIR *d = opendir(rundir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, ".tmp-") && !strstr(de->d_name, ".old-")) continue;
        if (strncmp(de->d_name, "step-", 5) && strncmp(de->d_name, "latest", 6) && strncmp(de->d_name, "best", 4) &&
            strncmp(de->d_name, "metrics.jsonl", 13))
            continue;
        char *p = scp_path_join(rundir, de->d_name);
        scp_rm_rf(p);
        free(p);
    }
    closedir(d);
}

int scp_copy_tokenizer_files(const char *src_dir, const char *dst_dir)
{
    static const char *names[] = {"tokenizer.json", "tokenizer_config.json", "tokenizer.bin", "tokenizer.model",
                                  "special_tokens_map.json", "vocab.json", "merges.txt", "generation_config.json",
                                  "added_tokens.json"};
    int n = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *s = scp_path_join(src_dir, names[i]);
        if (scp_file_exists(s)) {
            char *d = scp_path_join(dst_dir, names[i]);
            int rc = scp_copy_file(s, d);
            free(d);
            if (rc) {
                free(s);
                return -1;
            }
            n++;
        }
        free(s);
    }
    return n;
}
