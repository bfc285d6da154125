/* formats/st_set.c: one safetensors file or the shards of an index, as one set of tensors (formats/st_set.h). */
#include "formats/st_set.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int scp_st_index_files(const char *path, char ***files, int *nf)
{
    json_t *j = scp_json_load(path);
    if (!j) return -1;
    json_t *map = json_object_get(j, "weight_map");
    if (!json_is_object(map)) {
        json_decref(j);
        return scp_error("%s: no weight_map object", path);
    }
    *files = NULL, *nf = 0;
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        const char *fn = json_string_value(val);
        if (!fn || strchr(fn, '/') || strcmp(fn, "..") == 0) {
            scp_error("%s: weight_map entry '%s' is not a file name", path, key);   /* key lives in j: before freeing it */
            for (int k = 0; k < *nf; k++) free((*files)[k]);
            free(*files);
            *files = NULL, *nf = 0;
            json_decref(j);
            return -1;
        }
        int seen = 0;
        for (int k = 0; k < *nf && !seen; k++) seen = strcmp((*files)[k], fn) == 0;
        if (!seen) {
            *files = scp_xrealloc(*files, (size_t)(*nf + 1) * sizeof **files);
            (*files)[(*nf)++] = scp_xstrdup(fn);
        }
    }
    json_decref(j);
    return 0;
}

static void add_file(scp_st_set *s, char *path)
{
    s->f = scp_xrealloc(s->f, (size_t)(s->n + 1) * sizeof *s->f);
    s->path = scp_xrealloc(s->path, (size_t)(s->n + 1) * sizeof *s->path);
    s->path[s->n] = path;
    s->n++;
}

int scp_st_set_open(scp_st_set *s, const char *dir, const char *base)
{
    memset(s, 0, sizeof *s);
    char *single = scp_xasprintf("%s/%s.safetensors", dir, base);
    char *index = scp_xasprintf("%s/%s.safetensors.index.json", dir, base);
    int rc = 0;
    if (scp_file_exists(single) || !scp_file_exists(index)) {
        add_file(s, single);
        single = NULL;
    } else {
        char **files;
        int nf;
        rc = scp_st_index_files(index, &files, &nf);
        for (int k = 0; rc == 0 && k < nf; k++) add_file(s, scp_path_join(dir, files[k]));
        for (int k = 0; rc == 0 && k < nf; k++) free(files[k]);
        if (rc == 0) free(files);
    }
    int opened = 0;
    for (; rc == 0 && opened < s->n; opened++)
        if (scp_st_open(&s->f[opened], s->path[opened]) < 0) rc = -1;
    if (rc) {
        for (int k = 0; k < opened - 1; k++) scp_st_close(&s->f[k]);
        for (int k = 0; k < s->n; k++) free(s->path[k]);
        free(s->f);
        free(s->path);
        memset(s, 0, sizeof *s);
    }
    free(single);
    free(index);
    return rc;
}

void scp_st_set_close(scp_st_set *s)
{
    for (int k = 0; k < s->n; k++) {
        scp_st_close(&s->f[k]);
        free(s->path[k]);
    }
    free(s->f);
    free(s->path);
    memset(s, 0, sizeof *s);
}

const scp_tensor_info *scp_st_set_find(const scp_st_set *s, const char *name, const char **path)
{
    for (int k = 0; k < s->n; k++) {
        const scp_tensor_info *t = scp_st_find(&s->f[k], name);
        if (t) {
            if (path) *path = s->path[k];
            return t;
        }
    }
    return NULL;
}

int scp_st_set_read_f32_range(const scp_st_set *s, const char *name, int ndim, const int64_t *shape, int64_t lo,
                              int64_t hi, float *out)
{
    const char *path = NULL;
    const scp_tensor_info *t = scp_st_set_find(s, name, &path);
    if (!t) return scp_error("%s: tensor '%s' is missing", s->n ? s->path[0] : "checkpoint", name);
    int same = t->ndim == ndim;
    for (int k = 0; same && k < ndim; k++) same = t->shape[k] == shape[k];
    if (!same) {
        char a[64], b[64];
        return scp_error("%s: tensor '%s' has shape %s, the model needs %s", path, name,
                         scp_shape_str(a, sizeof a, t->ndim, t->shape), scp_shape_str(b, sizeof b, ndim, shape));
    }
    if (lo < 0 || hi < lo || hi > t->numel)
        return scp_error("%s: elements [%lld, %lld) of tensor '%s' asked for; it has %lld", path, (long long)lo,
                         (long long)hi, name, (long long)t->numel);
    /* only the range's bytes are touched: on a mapped file, a rank that keeps a piece reads only that piece */
    const char *src = (const char *)t->data + (size_t)lo * scp_dtype_size(t->dtype);
    if (!scp_dtype_is_float(t->dtype) || scp_convert_to_f32(out, src, t->dtype, (size_t)(hi - lo)) < 0)
        return scp_error("%s: tensor '%s' has dtype %s (expected F32, F16, BF16 or F64)", path, name,
                         scp_dtype_name(t->dtype));
    return 0;
}

int scp_st_set_read_f32(const scp_st_set *s, const char *name, int ndim, const int64_t *shape, float *out)
{
    int64_t n = 1;
    for (int k = 0; k < ndim; k++) n *= shape[k];
    return scp_st_set_read_f32_range(s, name, ndim, shape, 0, n, out);
}

char *scp_st_shard_name(const char *base, int k, int n)
{
    return scp_xasprintf("%s-%05d-of-%05d.safetensors", base, k, n);
}

int scp_st_index_write(const char *dir, const char *base, int files, const char *const *names, const int *file_of,
                       int n, int64_t total_size)
{
    json_t *j = json_object(), *meta = json_object(), *map = json_object();
    json_object_set_new(meta, "total_size", json_integer(total_size));
    json_object_set_new(j, "metadata", meta);
    for (int i = 0; i < n; i++) {
        char *fn = scp_st_shard_name(base, file_of[i] + 1, files);
        json_object_set_new(map, names[i], json_string(fn));
        free(fn);
    }
    json_object_set_new(j, "weight_map", map);
    char *path = scp_xasprintf("%s/%s.safetensors.index.json", dir, base);
    int rc = scp_json_save(path, j);
    free(path);
    json_decref(j);
    return rc;
}
