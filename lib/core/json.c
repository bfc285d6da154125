/* core/json.c: jansson helpers. */
#include "core/json.h"
#include "core/error.h"
#include "core/io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jansson reports a failed allocation while parsing inconsistently: with no message at all, or as a syntax
 * error where it gave up ("string or '}' expected"). So its allocations go through this wrapper, which notes
 * the failure on the calling thread, and scp_json_loadb asks it. Installed before main (a constructor), while
 * no other thread can be allocating through jansson. */
static _Thread_local int alloc_failed;

static void *counted_malloc(size_t n)
{
    void *p = malloc(n);
    if (!p && n) alloc_failed = 1;
    return p;
}

__attribute__((constructor)) static void install_json_alloc(void) { json_set_alloc_funcs(counted_malloc, free); }

json_t *scp_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err, int *oom)
{
    alloc_failed = 0;
    json_t *j = json_loadb(buf, len, flags, err);
    int failed = !j && alloc_failed;
    if (failed) snprintf(err->text, sizeof err->text, "out of memory");
    if (oom) *oom = failed;
    return j;
}

json_t *scp_json_parse(const char *buf, size_t len, const char *what)
{
    json_error_t e;
    int oom;
    json_t *j = scp_json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e, &oom);
    if (!j && oom) scp_error("%s: out of memory reading %zu bytes of JSON", what, len);
    else if (!j) scp_error("%s:%d:%d: invalid JSON: %s", what, e.line, e.column, e.text);
    return j;
}

json_t *scp_json_load(const char *path)
{
    char *buf;
    size_t len;
    if (scp_read_file(path, &buf, &len)) return NULL;
    json_t *j = scp_json_parse(buf, len, path);
    free(buf);
    return j;
}

static int save_json(const char *path, const json_t *j, int precision)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(precision));
    if (!s) return scp_error("%s: out of memory encoding JSON", path);   /* json_dumps fails only for want of memory */
    scp_out *o = scp_out_open(path, 0);
    if (!o) {
        free(s);
        return -1;
    }
    int rc = scp_write_all(o->f, s, strlen(s), path) || scp_write_all(o->f, "\n", 1, path);
    free(s);
    if (rc) {
        scp_out_abort(o);
        return -1;
    }
    return scp_out_commit(o);
}

int scp_json_save(const char *path, const json_t *j) { return save_json(path, j, 9); }
int scp_json_save_exact(const char *path, const json_t *j) { return save_json(path, j, 17); }

int scp_json_get_int(const json_t *obj, const char *key, int64_t *out, const char *what)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 1;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    /* Some writers emit 64.0 for integers: accept integral reals. The range is checked before the conversion,
     * which is undefined for a double outside [-2^63, 2^63). */
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= -0x1p63 && d < 0x1p63 && d == (double)(int64_t)d) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return scp_error("%s: key '%s' must be an integer", what, key);
}

int scp_json_get_real(const json_t *obj, const char *key, double *out, const char *what)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 1;
    if (!json_is_number(v)) return scp_error("%s: key '%s' must be a number", what, key);
    *out = json_number_value(v);
    return 0;
}

int scp_json_get_bool(const json_t *obj, const char *key, int *out, const char *what)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 1;
    if (!json_is_boolean(v)) return scp_error("%s: key '%s' must be true or false", what, key);
    *out = json_is_true(v);
    return 0;
}

int scp_json_get_str(const json_t *obj, const char *key, const char **out, const char *what)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 1;
    if (!json_is_string(v)) return scp_error("%s: key '%s' must be a string", what, key);
    *out = json_string_value(v);
    return 0;
}

int scp_json_print(const json_t *j, size_t flags)
{
    char *s = json_dumps(j, flags);
    if (!s) return scp_error("<stdout>: out of memory formatting the JSON result");
    int bad = fputs(s, stdout) == EOF || fputc('\n', stdout) == EOF;
    free(s);
    if (fflush(stdout) != 0 || bad || ferror(stdout)) return scp_error("<stdout>: write error: %s", strerror(errno ? errno : EIO));
    return 0;
}
