/* train/sharded.c: loading and saving the sharded state of ZeRO-2/3 (train/sharded.h). */
#include "train/sharded.h"
#include "core/error.h"
#include "formats/st_set.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const moment_prefix[2] = {"exp_avg", "exp_avg_sq"};

int scp_sharded_load_sink(const scp_ckpt_sink *sink, const char *dir, const char *base)
{
    scp_st_set s;
    if (scp_st_set_open(&s, dir, base)) return -1;
    int optimizer = strcmp(base, "model") != 0, rc = 0;
    float *buf = NULL;
    for (int i = 0; i < sink->n && rc == 0; i++) {
        const scp_param_desc *d = &sink->desc[i];
        for (int k = 0; k < (optimizer ? 2 : 1) && rc == 0; k++) {
            char name[160];
            if (optimizer) snprintf(name, sizeof name, "%s.%s", moment_prefix[k], d->name);
            else snprintf(name, sizeof name, "%s", d->name);
            int vec = optimizer ? 1 + k : 0;
            int64_t lo, hi;
            if (!sink->piece(sink->ctx, vec, i, &lo, &hi)) lo = hi = 0;
            buf = scp_xrealloc(buf, (size_t)(hi - lo + 1) * sizeof *buf);
            rc = scp_st_set_read_f32_range(&s, name, d->ndim, d->shape, lo, hi, buf);
            if (rc == 0 && hi > lo) sink->put(sink->ctx, vec, i, buf);
        }
    }
    free(buf);
    scp_st_set_close(&s);
    return rc;
}

/* A ZeRO-2/3 shard as a sink and a source: vector vec (0 the weights, 1 and 2 the moments) is fsdp_vec[vec]. */
static const scp_fsdp_vec fsdp_vec[3] = {SCP_FSDP_WEIGHTS, SCP_FSDP_EXP_AVG, SCP_FSDP_EXP_AVG_SQ};

static int fsdp_piece(void *ctx, int vec, int i, int64_t *lo, int64_t *hi)
{
    return scp_fsdp_param_piece(ctx, fsdp_vec[vec], i, lo, hi);
}

static void fsdp_put(void *ctx, int vec, int i, const float *data)
{
    scp_fsdp_set_param_piece(ctx, fsdp_vec[vec], i, data);
}

static int load_set(scp_fsdp *f, const char *dir, const char *base)
{
    scp_ckpt_sink sink = {.desc = f->m->desc, .n = f->m->n_params, .ctx = f, .piece = fsdp_piece, .put = fsdp_put};
    return scp_sharded_load_sink(&sink, dir, base);
}

int scp_sharded_load_weights(scp_fsdp *f, const char *dir) { return load_set(f, dir, "model"); }

int scp_sharded_load_moments(scp_fsdp *f, const char *dir) { return load_set(f, dir, "optimizer"); }

void scp_sharded_random_weights(scp_fsdp *f, uint64_t seed, float std)
{
    const scp_model *m = f->m;
    float *buf = NULL;
    for (int i = 0; i < m->n_params; i++) {
        buf = scp_xrealloc(buf, (size_t)m->desc[i].numel * sizeof *buf);
        scp_param_init_random(&m->desc[i], m->desc[i].index, seed, std, buf);
        scp_fsdp_set_param(f, SCP_FSDP_WEIGHTS, i, buf);
    }
    free(buf);
}

/* File of each parameter: table order, file k taking the tensors that start in the k-th n-th of the bytes. */
static int *deal_files(const scp_ckpt_source *src, int files, int64_t *total)
{
    int *file_of = scp_xmalloc(sizeof *file_of * (size_t)(src->n ? src->n : 1));
    *total = 0;
    for (int i = 0; i < src->n; i++) *total += src->desc[i].numel;
    int64_t off = 0;
    for (int i = 0; i < src->n; i++) {
        int k = (int)((double)off * files / (double)*total);
        file_of[i] = k < files ? k : files - 1;
        off += src->desc[i].numel;
    }
    return file_of;
}

/* Gather and write one vector set: base "model" (the weights) or "optimizer" (both moments). The file of each
 * rank is streamed: its tensors are declared, then gathered one at a time in table order (every rank takes part
 * in every gather) and appended, so a rank holds one tensor of it at a time. 0; -1 when this rank's file failed;
 * -2 when a gather failed (no collective may follow). */
static int save_set(const scp_ckpt_source *src, const char *tmpdir, const char *base, const int *file_of,
                    int64_t total)
{
    scp_dist *d = src->d;
    int me = d->rank, world = d->world, optimizer = strcmp(base, "model") != 0, vecs = optimizer ? 2 : 1;
    char name[160];
    scp_st_writer *w = scp_st_writer_new();
    scp_st_set_metadata(w, "format", optimizer ? "scp-adamw" : "pt");
    int64_t largest = 1;
    for (int i = 0; i < src->n; i++) {
        const scp_param_desc *pd = &src->desc[i];
        largest = pd->numel > largest ? pd->numel : largest;
        if (file_of[i] != me) continue;
        for (int k = 0; k < vecs; k++) {
            if (optimizer) snprintf(name, sizeof name, "%s.%s", moment_prefix[k], pd->name);
            else snprintf(name, sizeof name, "%s", pd->name);
            scp_st_add(w, name, SCP_F32, pd->ndim, pd->shape, NULL);
        }
    }
    char *fn = scp_st_shard_name(base, me + 1, world), *path = scp_xasprintf("%s/%s", tmpdir, fn);
    scp_st_stream *st = scp_st_stream_begin(w, path);
    int rc = st ? 0 : -1;
    float *out = scp_xmalloc((size_t)largest * sizeof *out);
    int broken = 0;   /* a gather failed: the ranks no longer agree, so no further collective */
    for (int i = 0; i < src->n && !broken; i++)
        for (int k = 0; k < vecs && !broken; k++) {
            broken = src->gather(src->ctx, optimizer ? 1 + k : 0, i, file_of[i], out) != 0;
            if (broken) rc = -1;
            /* a file that fails does not stop the gathers: the other ranks wait on them */
            if (file_of[i] == me && st && rc == 0 && scp_st_stream_put(st, out)) rc = -1;
        }
    if (st && scp_st_stream_end(st, rc == 0)) rc = -1;
    free(out);
    scp_st_writer_free(w);
    free(fn);
    free(path);
    if (broken) return -2;
    if (rc == 0 && me == 0) {   /* the index: every tensor's file */
        int n = src->n * vecs;
        char **names = scp_xmalloc(sizeof *names * (size_t)n);
        int *fo = scp_xmalloc(sizeof *fo * (size_t)n);
        for (int i = 0, j = 0; i < src->n; i++)
            for (int k = 0; k < vecs; k++, j++) {
                names[j] = optimizer ? scp_xasprintf("%s.%s", moment_prefix[k], src->desc[i].name)
                                     : scp_xstrdup(src->desc[i].name);
                fo[j] = file_of[i];
            }
        rc = scp_st_index_write(tmpdir, base, world, (const char *const *)names, fo, n,
                                total * vecs * (int64_t)sizeof(float));
        for (int j = 0; j < n; j++) free(names[j]);
        free(names);
        free(fo);
    }
    return rc;
}

int scp_sharded_save_source(const scp_ckpt_source *src, const char *tmpdir)
{
    int64_t total;
    int *file_of = deal_files(src, src->d->world, &total);
    int rc = save_set(src, tmpdir, "model", file_of, total);
    if (rc != -2) {
        int rc2 = save_set(src, tmpdir, "optimizer", file_of, total);
        rc = rc2 ? rc2 : rc;
    }
    free(file_of);
    if (rc == -2) return -1;
    /* every rank's file must be there before rank 0 commits the directory */
    return scp_dist_any(src->d, rc != 0, "checkpoint write") ? -1 : 0;
}

static int fsdp_gather(void *ctx, int vec, int i, int root, float *out)
{
    return scp_fsdp_gather_param(ctx, fsdp_vec[vec], i, root, out);
}

int scp_sharded_save(scp_fsdp *f, const char *tmpdir)
{
    scp_ckpt_source src = {f->m->desc, f->m->n_params, f->d, f, fsdp_gather};
    return scp_sharded_save_source(&src, tmpdir);
}
