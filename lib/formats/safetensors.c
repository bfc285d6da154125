/* formats/safetensors.c: validated zero-copy reader and atomic writer. */
#include "formats/safetensors.h"
#include "core/error.h"
#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *scp_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const scp_tensor_info *)a)->name, ((const scp_tensor_info *)b)->name);
}

typedef struct { uint64_t begin, end; const char *name; } span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

static int parse_entry(scp_tensor_info *t, const char *name, json_t *v, uint64_t data_size, span *sp, const char *what)
{
    if (!json_is_object(v)) return scp_error("%s: tensor '%s': header entry is not an object", what, name);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"), *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return scp_error("%s: tensor '%s': missing or non-string dtype", what, name);
    t->dtype = scp_dtype_from_name(json_string_value(dt));
    if (t->dtype == SCP_DTYPE_INVALID)
        return scp_error("%s: tensor '%s': unknown dtype '%s'", what, name, json_string_value(dt));
    if (!json_is_array(sh)) return scp_error("%s: tensor '%s': missing or non-array shape", what, name);
    if (json_array_size(sh) > SCP_MAX_DIMS)
        return scp_error("%s: tensor '%s': %zu dimensions (at most %d supported)", what, name, json_array_size(sh), SCP_MAX_DIMS);
    t->ndim = (int)json_array_size(sh);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_t *d = json_array_get(sh, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return scp_error("%s: tensor '%s': shape entry %d is not a non-negative integer", what, name, i);
        t->shape[i] = json_integer_value(d);
        uint64_t dim = (uint64_t)t->shape[i];
        if (dim && numel > UINT64_MAX / dim) return scp_error("%s: tensor '%s': shape overflows", what, name);
        numel *= dim;
    }
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)))
        return scp_error("%s: tensor '%s': data_offsets must be [begin, end]", what, name);
    json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b) return scp_error("%s: tensor '%s': data_offsets [%lld, %lld] are not ordered", what, name, (long long)b, (long long)e);
    if ((uint64_t)e > data_size)
        return scp_error("%s: tensor '%s': data_offsets [%lld, %lld] past the end of the data (%llu bytes)", what, name,
                         (long long)b, (long long)e, (unsigned long long)data_size);
    size_t es = scp_dtype_size(t->dtype);
    if (numel > UINT64_MAX / es) return scp_error("%s: tensor '%s': byte size overflows", what, name);
    if ((uint64_t)(e - b) != numel * es) {
        char s[128];
        return scp_error("%s: tensor '%s': shape %s of %s needs %llu bytes, data_offsets give %lld", what, name,
                         scp_shape_str(s, sizeof s, t->ndim, t->shape), scp_dtype_name(t->dtype),
                         (unsigned long long)(numel * es), (long long)(e - b));
    }
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)(e - b);
    sp->begin = (uint64_t)b;
    sp->end = (uint64_t)e;
    sp->name = t->name;
    return 0;
}

int scp_st_parse(scp_st_file *f, const uint8_t *buf, size_t len, const char *what)
{
    scp_map keep = f->map;
    memset(f, 0, sizeof *f);
    f->map = keep;
    if (len < 8) return scp_error("%s: truncated: %zu bytes, a safetensors file has at least 8", what, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > len - 8)
        return scp_error("%s: header length %llu runs past the end of the file (%zu bytes)", what, (unsigned long long)hlen, len);
    if (hlen > (100u << 20)) return scp_error("%s: header length %llu is implausibly large", what, (unsigned long long)hlen);
    json_t *h = scp_json_parse((const char *)buf + 8, (size_t)hlen, what);
    if (!h) return -1;
    if (!json_is_object(h)) {
        json_decref(h);
        return scp_error("%s: header is not a JSON object", what);
    }
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_size = len - 8 - hlen;
    size_t cap = json_object_size(h);
    f->t = scp_xcalloc(cap, sizeof *f->t);
    span *spans = scp_xcalloc(cap, sizeof *spans);
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(h, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) { rc = scp_error("%s: __metadata__ is not an object", what); break; }
            const char *mk; json_t *mv;
            json_object_foreach(v, mk, mv) if (!json_is_string(mv)) { rc = scp_error("%s: __metadata__ value '%s' is not a string", what, mk); break; }
            if (rc) break;
            f->metadata = json_incref(v);
            continue;
        }
        scp_tensor_info *t = &f->t[f->n];
        t->name = scp_xstrdup(key);
        f->n++;
        if ((rc = parse_entry(t, key, v, data_size, &spans[f->n - 1], what))) break;
        t->data = data + spans[f->n - 1].begin;
    }
    if (!rc) {
        qsort(spans, (size_t)f->n, sizeof *spans, cmp_span);
        /* Empty tensors occupy no bytes; among the others each must start at or after the furthest end so far. */
        const span *furthest = NULL;
        for (int i = 0; i < f->n; i++) {
            if (spans[i].end == spans[i].begin) continue;
            if (furthest && spans[i].begin < furthest->end) {
                rc = scp_error("%s: tensors '%s' and '%s' overlap in the data section", what, furthest->name, spans[i].name);
                break;
            }
            if (!furthest || spans[i].end > furthest->end) furthest = &spans[i];
        }
    }
    free(spans);
    json_decref(h);
    if (rc) {
        scp_map keep = f->map;    /* the caller owns the buffer */
        memset(&f->map, 0, sizeof f->map);
        scp_st_close(f);
        f->map = keep;
        return -1;
    }
    qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_name);
    return 0;
}

int scp_st_open(scp_st_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    if (scp_map_file(&f->map, path)) return -1;
    scp_map m = f->map;
    if (scp_st_parse(f, m.data, m.size, path)) {
        scp_unmap(&m);
        memset(f, 0, sizeof *f);
        return -1;
    }
    f->map = m;
    return 0;
}

void scp_st_close(scp_st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    if (f->metadata) json_decref(f->metadata);
    if (f->map.data) scp_unmap(&f->map);
    memset(f, 0, sizeof *f);
}

const scp_tensor_info *scp_st_find(const scp_st_file *f, const char *name)
{
    scp_tensor_info key = {.name = (char *)name};
    return f->n ? bsearch(&key, f->t, (size_t)f->n, sizeof *f->t, cmp_name) : NULL;
}

/* ---- writer ------------------------------------------------------------------------------------------- */
typedef struct wtensor {
    char *name;
    scp_dtype dtype;
    int ndim;
    int64_t shape[SCP_MAX_DIMS];
    const void *data;
    void *owned;
    size_t nbytes;
} wtensor;

struct scp_st_writer {
    wtensor *t;
    int n, cap;
    json_t *meta;
};

scp_st_writer *scp_st_writer_new(void)
{
    return scp_xcalloc(1, sizeof(scp_st_writer));
}

void scp_st_writer_free(scp_st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].owned);
    }
    free(w->t);
    if (w->meta) json_decref(w->meta);
    free(w);
}

void scp_st_add(scp_st_writer *w, const char *name, scp_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    if (w->n == w->cap) w->t = scp_xrealloc(w->t, sizeof *w->t * (size_t)(w->cap = w->cap ? 2 * w->cap : 64));
    wtensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = scp_xstrdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    t->data = data;
    t->nbytes = numel * scp_dtype_size(dtype);
}

void scp_st_add_owned(scp_st_writer *w, const char *name, scp_dtype dtype, int ndim, const int64_t *shape, void *data)
{
    scp_st_add(w, name, dtype, ndim, shape, data);
    w->t[w->n - 1].owned = data;
}

void scp_st_set_metadata(scp_st_writer *w, const char *key, const char *value)
{
    if (!w->meta) w->meta = json_object();
    json_object_set_new(w->meta, key, json_string(value));
}

static int cmp_wname(const void *a, const void *b)
{
    return strcmp(((const wtensor *)a)->name, ((const wtensor *)b)->name);
}

/* The 8-byte length, the JSON header of w's tensors in their current order and its padding, into a new output. */
static scp_out *write_header(const scp_st_writer *w, const char *path)
{
    json_t *h = json_object();
    if (w->meta) json_object_set(h, "__metadata__", w->meta);
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        json_t *e = json_object(), *sh = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(sh, json_integer(t->shape[d]));
        json_object_set_new(e, "dtype", json_string(scp_dtype_name(t->dtype)));
        json_object_set_new(e, "shape", sh);
        json_t *o = json_array();
        json_array_append_new(o, json_integer((json_int_t)off));
        json_array_append_new(o, json_integer((json_int_t)(off + t->nbytes)));
        json_object_set_new(e, "data_offsets", o);
        json_object_set_new(h, t->name, e);
        off += t->nbytes;
    }
    char *hs = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    size_t hl = strlen(hs);
    size_t padded = (hl + 7) & ~(size_t)7;   /* pad the header with spaces to 8-byte alignment */
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    scp_out *out = scp_out_open(path, 1);
    if (out && (scp_write_all(out->f, lenb, 8, path) || scp_write_all(out->f, hs, hl, path) ||
                scp_write_all(out->f, "        ", padded - hl, path))) {
        scp_out_abort(out);
        out = NULL;
    }
    free(hs);
    return out;
}

int scp_st_write(scp_st_writer *w, const char *path)
{
    qsort(w->t, (size_t)w->n, sizeof *w->t, cmp_wname);
    scp_out *out = write_header(w, path);
    if (!out) return -1;
    int rc = 0;
    for (int i = 0; i < w->n && !rc; i++) rc = scp_write_all(out->f, w->t[i].data, w->t[i].nbytes, path);
    if (rc) {
        scp_out_abort(out);
        return -1;
    }
    return scp_out_commit(out);
}

struct scp_st_stream {
    scp_out *out;
    const scp_st_writer *w;
    char *path;
    int next;      /* the tensor whose bytes come next */
    int failed;
};

scp_st_stream *scp_st_stream_begin(const scp_st_writer *w, const char *path)
{
    scp_out *out = write_header(w, path);
    if (!out) return NULL;
    scp_st_stream *s = scp_xcalloc(1, sizeof *s);
    s->out = out, s->w = w, s->path = scp_xstrdup(path);
    return s;
}

int scp_st_stream_put(scp_st_stream *s, const void *data)
{
    if (s->failed) return -1;
    if (s->next >= s->w->n) {
        s->failed = 1;
        return scp_error("%s: more tensors written than declared (%d)", s->path, s->w->n);
    }
    if (scp_write_all(s->out->f, data, s->w->t[s->next].nbytes, s->path)) s->failed = 1;
    s->next++;
    return s->failed ? -1 : 0;
}

int scp_st_stream_end(scp_st_stream *s, int ok)
{
    int rc;
    if (ok && !s->failed && s->next != s->w->n) scp_error("%s: %d of %d tensors written", s->path, s->next, s->w->n);
    if (!ok || s->failed || s->next != s->w->n) {
        scp_out_abort(s->out);
        rc = -1;
    } else {
        rc = scp_out_commit(s->out);
    }
    free(s->path);
    free(s);
    return rc;
}
