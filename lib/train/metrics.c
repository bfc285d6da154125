/* train/metrics.c: metrics.jsonl. */
#include "train/metrics.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int scp_metrics_open(scp_metrics *m, const char *rundir)
{
    m->path = scp_path_join(rundir, "metrics.jsonl");
    m->f = fopen(m->path, "a");
    if (!m->f) {
        int e = errno;
        scp_error("%s: cannot open: %s", m->path, strerror(e));
        free(m->path);
        m->path = NULL;
        return -1;
    }
    return 0;
}

int scp_metrics_write(scp_metrics *m, json_t *line)
{
    char *s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(line);
    if (!s) return scp_error("%s: cannot encode a metrics line", m->path);
    int rc = 0;
    if (fprintf(m->f, "%s\n", s) < 0 || fflush(m->f) != 0) rc = scp_error("%s: write error: %s", m->path, strerror(errno));
    free(s);
    return rc;
}

void scp_metrics_close(scp_metrics *m)
{
    if (m->f) fclose(m->f);
    free(m->path);
    m->f = NULL;
    m->path = NULL;
}

void scp_metrics_moe(json_t *line, int E, const int64_t *load, double aux, double z)
{
    if (E < 1) return;
    json_t *a = json_array();
    int64_t mx = 0, sum = 0;
    for (int e = 0; e < E; e++) {
        json_array_append_new(a, json_integer(load[e]));
        mx = load[e] > mx ? load[e] : mx;
        sum += load[e];
    }
    json_object_set_new(line, "expert_load", a);
    json_object_set_new(line, "load_max_mean", json_real(sum ? (double)mx * E / (double)sum : 0.0));
    json_object_set_new(line, "aux_loss", json_real(aux));
    json_object_set_new(line, "z_loss", json_real(z));
}

int scp_metrics_truncate(const char *rundir, int64_t step)
{
    char *path = scp_path_join(rundir, "metrics.jsonl");
    if (!scp_file_exists(path)) {
        free(path);
        return 0;
    }
    char *buf;
    size_t len;
    if (scp_read_file(path, &buf, &len)) {
        free(path);
        return -1;
    }
    scp_out *o = scp_out_open(path, 0);
    int rc = o ? 0 : -1;
    char *p = buf;
    while (rc == 0 && p < buf + len) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (!nl) break;   /* a cut last line: dropped */
        json_error_t err;
        int oom;
        json_t *j = scp_json_loadb(p, (size_t)(nl - p), 0, &err, &oom);
        if (oom) {   /* a line that could not be read is not a line to drop */
            rc = scp_error("%s: out of memory parsing a line of JSON", path);
            break;
        }
        json_t *st = j ? json_object_get(j, "step") : NULL;
        if (st && json_is_integer(st) && json_integer_value(st) <= step)
            rc = scp_write_all(o->f, p, (size_t)(nl - p + 1), path);
        json_decref(j);
        p = nl + 1;
    }
    if (o) rc = rc ? (scp_out_abort(o), -1) : scp_out_commit(o);
    free(buf);
    free(path);
    return rc;
}

int scp_metrics_eval_at(const char *rundir, int64_t step, const char *key, double *out)
{
    char *path = scp_path_join(rundir, "metrics.jsonl"), *buf;
    size_t len;
    int rc = 1;
    if (!scp_file_exists(path)) {
        free(path);
        return 1;
    }
    if (scp_read_file(path, &buf, &len)) {
        free(path);
        return -1;
    }
    for (char *p = buf, *nl; p < buf + len && (nl = memchr(p, '\n', (size_t)(buf + len - p))); p = nl + 1) {
        json_error_t err;
        int oom;
        json_t *j = scp_json_loadb(p, (size_t)(nl - p), 0, &err, &oom);
        json_t *st = j ? json_object_get(j, "step") : NULL, *v = j ? json_object_get(j, key) : NULL;
        if (st && json_is_integer(st) && json_integer_value(st) == step && json_object_get(j, "eval") && v &&
            json_is_number(v)) {
            *out = json_number_value(v);
            rc = 0;
        }
        json_decref(j);
    }
    free(buf);
    free(path);
    return rc;
}
