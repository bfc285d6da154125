/* formats/gguf.c: validated zero-copy GGUF reader and atomic writer. */
#include "formats/gguf.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

static const char *value_names[SCP_GGUF_TYPE_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                                       "string", "array", "u64", "i64", "f64"};
static const uint8_t value_sizes[SCP_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *scp_gguf_type_name(uint32_t t)
{
    return t < SCP_GGUF_TYPE_COUNT ? value_names[t] : "unknown";
}

/* ggml types: name, elements per block, bytes per block (0: size unknown to us). */
static const struct { const char *name; uint32_t blck, size; } ggml_types[] = {
    [SCP_GGML_F32] = {"F32", 1, 4},      [SCP_GGML_F16] = {"F16", 1, 2},      [SCP_GGML_Q4_0] = {"Q4_0", 32, 18},
    [SCP_GGML_Q4_1] = {"Q4_1", 32, 20},  [4] = {"Q4_2", 0, 0},                [5] = {"Q4_3", 0, 0},
    [SCP_GGML_Q5_0] = {"Q5_0", 32, 22},  [SCP_GGML_Q5_1] = {"Q5_1", 32, 24},  [SCP_GGML_Q8_0] = {"Q8_0", 32, 34},
    [SCP_GGML_Q8_1] = {"Q8_1", 32, 36},  [SCP_GGML_Q2_K] = {"Q2_K", 256, 84}, [SCP_GGML_Q3_K] = {"Q3_K", 256, 110},
    [SCP_GGML_Q4_K] = {"Q4_K", 256, 144}, [SCP_GGML_Q5_K] = {"Q5_K", 256, 176}, [SCP_GGML_Q6_K] = {"Q6_K", 256, 210},
    [SCP_GGML_Q8_K] = {"Q8_K", 256, 292}, [16] = {"IQ2_XXS", 0, 0},          [17] = {"IQ2_XS", 0, 0},
    [18] = {"IQ3_XXS", 0, 0},            [19] = {"IQ1_S", 0, 0},              [20] = {"IQ4_NL", 0, 0},
    [21] = {"IQ3_S", 0, 0},              [22] = {"IQ2_S", 0, 0},              [23] = {"IQ4_XS", 0, 0},
    [SCP_GGML_I8] = {"I8", 1, 1},        [SCP_GGML_I16] = {"I16", 1, 2},      [SCP_GGML_I32] = {"I32", 1, 4},
    [SCP_GGML_I64] = {"I64", 1, 8},      [SCP_GGML_F64] = {"F64", 1, 8},      [29] = {"IQ1_M", 0, 0},
    [SCP_GGML_BF16] = {"BF16", 1, 2},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const char *scp_ggml_type_name(uint32_t t)
{
    return t < N_GGML_TYPES ? ggml_types[t].name : NULL;
}

/* ---- reader ------------------------------------------------------------------------------------------- */
typedef struct cursor {
    const uint8_t *buf;
    size_t len, pos;
    const char *what;
} cursor;

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int need(cursor *c, uint64_t n, const char *item)
{
    if (n > c->len - c->pos)
        return scp_error("%s: truncated: %s at byte %zu needs %llu bytes, %zu left", c->what, item, c->pos,
                         (unsigned long long)n, c->len - c->pos);
    return 0;
}

static int rd(cursor *c, int n, uint64_t *v, const char *item)
{
    if (need(c, (uint64_t)n, item)) return -1;
    *v = le(c->buf + c->pos, n);
    c->pos += (size_t)n;
    return 0;
}

static int rd_str(cursor *c, scp_gguf_str *s, const char *item)
{
    uint64_t n;
    if (rd(c, 8, &n, item) || need(c, n, item)) return -1;
    s->s = (const char *)c->buf + c->pos;
    s->len = n;
    c->pos += (size_t)n;
    return 0;
}

static char *str_dup(scp_gguf_str s)
{
    char *p = scp_xmalloc((size_t)s.len + 1);
    memcpy(p, s.s, (size_t)s.len);
    p[s.len] = 0;
    return p;
}

/* Printable form of a key for messages (keys may hold anything). */
static const char *key_for_msg(const char *k)
{
    return k && *k ? k : "(empty)";
}

static int read_value(cursor *c, scp_gguf_kv *kv)
{
    const char *k = key_for_msg(kv->key);
    uint32_t t = kv->type;
    if (t >= SCP_GGUF_TYPE_COUNT) return scp_error("%s: metadata '%s' has unknown value type %u", c->what, k, t);
    uint64_t v;
    switch (t) {
    case SCP_GGUF_STRING:
        return rd_str(c, &kv->v.str, "a metadata string");
    case SCP_GGUF_ARRAY: {
        uint64_t et, n;
        if (rd(c, 4, &et, "an array type") || rd(c, 8, &n, "an array length")) return -1;
        if (et >= SCP_GGUF_TYPE_COUNT) return scp_error("%s: metadata '%s' is an array of unknown type %llu", c->what, k, (unsigned long long)et);
        if (et == SCP_GGUF_ARRAY) return scp_error("%s: metadata '%s' is a nested array (not supported)", c->what, k);
        kv->arr_type = (uint32_t)et;
        kv->arr_n = n;
        if (et == SCP_GGUF_STRING) {
            /* Each string takes at least its 8-byte length: bound the count before allocating. */
            if (n > (c->len - c->pos) / 8)
                return scp_error("%s: metadata '%s': array of %llu strings cannot fit in the %zu bytes left", c->what, k,
                                 (unsigned long long)n, c->len - c->pos);
            kv->arr_str = scp_xcalloc(n ? (size_t)n : 1, sizeof *kv->arr_str);
            for (uint64_t i = 0; i < n; i++)
                if (rd_str(c, &kv->arr_str[i], "an array string")) return -1;
            return 0;
        }
        uint64_t es = value_sizes[et];
        if (n > (c->len - c->pos) / es)
            return scp_error("%s: metadata '%s': array of %llu %s runs past the end of the file", c->what, k,
                             (unsigned long long)n, value_names[et]);
        kv->arr_data = c->buf + c->pos;
        c->pos += (size_t)(n * es);
        return 0;
    }
    default: {
        int n = value_sizes[t];
        if (rd(c, n, &v, "a metadata value")) return -1;
        if (t == SCP_GGUF_F32) {
            uint32_t u = (uint32_t)v;
            float f;
            memcpy(&f, &u, 4);
            kv->v.f = f;
        } else if (t == SCP_GGUF_F64) {
            memcpy(&kv->v.f, &v, 8);
        } else if (t == SCP_GGUF_I8 || t == SCP_GGUF_I16 || t == SCP_GGUF_I32 || t == SCP_GGUF_I64) {
            int sh = 64 - 8 * n;
            kv->v.i = (int64_t)(v << sh) >> sh;   /* sign-extend */
        } else {
            if (t == SCP_GGUF_BOOL && v > 1) return scp_error("%s: metadata '%s': bool value %llu is not 0 or 1", c->what, k, (unsigned long long)v);
            kv->v.u = v;
        }
        return 0;
    }
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct { uint64_t begin, end; const char *name; } span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

/* Duplicate names among n strings (sorted copies of the pointers); returns the duplicate or NULL. */
static const char *find_duplicate(char **names, size_t n)
{
    if (n < 2) return NULL;
    char **s = scp_xmalloc(n * sizeof *s);
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0) dup = s[i];
    free(s);
    return dup;
}

static int parse_tensors(scp_gguf *g, cursor *c)
{
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        scp_gguf_tensor *t = &g->t[i];
        scp_gguf_str name;
        uint64_t nd, ty, off;
        if (rd_str(c, &name, "a tensor name")) return -1;
        t->name = str_dup(name);
        if (strlen(t->name) != name.len) return scp_error("%s: tensor %llu: name contains a NUL byte", c->what, (unsigned long long)i);
        if (rd(c, 4, &nd, "a tensor's dimension count")) return -1;
        if (nd < 1 || nd > SCP_GGUF_MAX_DIMS)
            return scp_error("%s: tensor '%s' has %llu dimensions (1 to %d allowed)", c->what, t->name, (unsigned long long)nd, SCP_GGUF_MAX_DIMS);
        t->ndim = (int)nd;
        uint64_t numel = 1;
        for (int d = 0; d < SCP_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (rd(c, 8, &t->ne[d], "a tensor dimension")) return -1;
            if (t->ne[d] == 0 || t->ne[d] > (1ull << 62)) return scp_error("%s: tensor '%s': dimension %d is %llu", c->what, t->name, d, (unsigned long long)t->ne[d]);
            if (numel > UINT64_MAX / t->ne[d]) return scp_error("%s: tensor '%s': shape overflows", c->what, t->name);
            numel *= t->ne[d];
        }
        t->numel = numel;
        if (rd(c, 4, &ty, "a tensor type") || rd(c, 8, &off, "a tensor offset")) return -1;
        t->type = (uint32_t)ty;
        t->offset = off;
        if (ty >= N_GGML_TYPES || !ggml_types[ty].name)
            return scp_error("%s: tensor '%s' has unknown ggml type %llu", c->what, t->name, (unsigned long long)ty);
        if (!ggml_types[ty].blck)
            return scp_error("%s: tensor '%s' has ggml type %s, which scp cannot read", c->what, t->name, ggml_types[ty].name);
        if (t->ne[0] % ggml_types[ty].blck)
            return scp_error("%s: tensor '%s': row of %llu elements is not a whole number of %s blocks", c->what, t->name,
                             (unsigned long long)t->ne[0], ggml_types[ty].name);
        uint64_t blocks = numel / ggml_types[ty].blck;
        if (blocks > UINT64_MAX / ggml_types[ty].size) return scp_error("%s: tensor '%s': byte size overflows", c->what, t->name);
        t->nbytes = (size_t)(blocks * ggml_types[ty].size);
        if (off % g->alignment)
            return scp_error("%s: tensor '%s': offset %llu is not a multiple of the alignment %u", c->what, t->name,
                             (unsigned long long)off, g->alignment);
    }
    return 0;
}

int scp_gguf_parse(scp_gguf *g, const uint8_t *buf, size_t len, const char *what)
{
    scp_map keep = g->map;
    memset(g, 0, sizeof *g);
    g->map = keep;
    cursor c = {buf, len, 0, what};
    uint64_t magic, ver;
    int rc = -1;
    if (len < 4 || memcmp(buf, "GGUF", 4) != 0) {
        if (len >= 4 && memcmp(buf, "FUGG", 4) == 0) return scp_error("%s: big-endian GGUF is not supported", what);
        return scp_error("%s: not a GGUF file (bad magic)", what);
    }
    if (rd(&c, 4, &magic, "the magic") || rd(&c, 4, &ver, "the version")) return -1;
    if (ver != 2 && ver != 3)
        return scp_error("%s: GGUF version %llu is not supported (2 and 3 are)", what, (unsigned long long)ver);
    g->version = (uint32_t)ver;
    if (rd(&c, 8, &g->n_tensors, "the tensor count") || rd(&c, 8, &g->n_kv, "the metadata count")) return -1;
    /* A tensor info takes at least 8 + 4 + 8 + 4 + 8 bytes and a metadata entry 8 + 4 + 1: absurd counts are
     * refused before anything is allocated. */
    if (g->n_tensors > (len - c.pos) / 32)
        return scp_error("%s: tensor count %llu cannot fit in a file of %zu bytes (truncated or corrupt)", what, (unsigned long long)g->n_tensors, len);
    if (g->n_kv > (len - c.pos) / 13)
        return scp_error("%s: metadata count %llu cannot fit in a file of %zu bytes (truncated or corrupt)", what, (unsigned long long)g->n_kv, len);
    g->kv = scp_xcalloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv);
    g->t = scp_xcalloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->t);
    char **names = NULL;
    span *spans = NULL;
    g->alignment = SCP_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        scp_gguf_kv *kv = &g->kv[i];
        scp_gguf_str key;
        uint64_t t;
        if (rd_str(&c, &key, "a metadata key")) goto out;
        kv->key = str_dup(key);
        if (strlen(kv->key) != key.len) {
            scp_error("%s: metadata key %llu contains a NUL byte", what, (unsigned long long)i);
            goto out;
        }
        if (rd(&c, 4, &t, "a metadata type")) goto out;
        kv->type = (uint32_t)t;
        if (read_value(&c, kv)) goto out;
        if (strcmp(kv->key, "general.alignment") == 0) {
            if (kv->type != SCP_GGUF_U32 || kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) || kv->v.u > (1u << 20)) {
                scp_error("%s: general.alignment must be a u32 power of two", what);
                goto out;
            }
            g->alignment = (uint32_t)kv->v.u;
        }
    }
    names = scp_xmalloc((g->n_kv ? (size_t)g->n_kv : 1) * sizeof *names);
    for (uint64_t i = 0; i < g->n_kv; i++) names[i] = g->kv[i].key;
    const char *dup = find_duplicate(names, (size_t)g->n_kv);
    if (dup) {
        scp_error("%s: metadata key '%s' appears twice", what, dup);
        goto out;
    }
    if (parse_tensors(g, &c)) goto out;
    names = scp_xrealloc(names, (g->n_tensors ? (size_t)g->n_tensors : 1) * sizeof *names);
    for (uint64_t i = 0; i < g->n_tensors; i++) names[i] = g->t[i].name;
    if ((dup = find_duplicate(names, (size_t)g->n_tensors))) {
        scp_error("%s: tensor '%s' appears twice", what, dup);
        goto out;
    }
    /* The data section starts at the next multiple of the alignment. A file without tensors may end here. */
    uint64_t start = ((uint64_t)c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && start > len) {
        scp_error("%s: truncated: the data section would start at byte %llu, past the end (%zu bytes)", what, (unsigned long long)start, len);
        goto out;
    }
    g->data_offset = (size_t)(start > len ? len : start);
    uint64_t data_size = len - g->data_offset;
    spans = scp_xcalloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *spans);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        scp_gguf_tensor *t = &g->t[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            scp_error("%s: tensor '%s': bytes [%llu, %llu) run past the end of the data (%llu bytes)", what, t->name,
                      (unsigned long long)t->offset, (unsigned long long)t->offset + t->nbytes, (unsigned long long)data_size);
            goto out;
        }
        t->data = buf + g->data_offset + t->offset;
        spans[i] = (span){t->offset, t->offset + t->nbytes, t->name};
    }
    qsort(spans, (size_t)g->n_tensors, sizeof *spans, cmp_span);
    for (uint64_t i = 1; i < g->n_tensors; i++)
        if (spans[i].begin < spans[i - 1].end) {
            scp_error("%s: tensors '%s' and '%s' overlap in the data section", what, spans[i - 1].name, spans[i].name);
            goto out;
        }
    rc = 0;
out:
    free(names);
    free(spans);
    if (rc) {
        scp_map keep2 = g->map;
        memset(&g->map, 0, sizeof g->map);
        scp_gguf_close(g);
        g->map = keep2;
    }
    return rc;
}

int scp_gguf_open(scp_gguf *g, const char *path)
{
    memset(g, 0, sizeof *g);
    scp_map m;
    if (scp_map_file(&m, path)) return -1;
    if (scp_gguf_parse(g, m.data, m.size, path)) {
        scp_unmap(&m);
        memset(g, 0, sizeof *g);
        return -1;
    }
    g->map = m;
    return 0;
}

void scp_gguf_close(scp_gguf *g)
{
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            free(g->kv[i].arr_str);
        }
    if (g->t)
        for (uint64_t i = 0; i < g->n_tensors; i++) free(g->t[i].name);
    free(g->kv);
    free(g->t);
    if (g->map.data) scp_unmap(&g->map);
    memset(g, 0, sizeof *g);
}

const scp_gguf_kv *scp_gguf_find(const scp_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const scp_gguf_tensor *scp_gguf_find_tensor(const scp_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->t[i].name && strcmp(g->t[i].name, name) == 0) return &g->t[i];
    return NULL;
}

static int is_int_type(uint32_t t)
{
    return t <= SCP_GGUF_I32 || t == SCP_GGUF_U64 || t == SCP_GGUF_I64;
}

static int is_signed_type(uint32_t t)
{
    return t == SCP_GGUF_I8 || t == SCP_GGUF_I16 || t == SCP_GGUF_I32 || t == SCP_GGUF_I64;
}

int scp_gguf_get_uint(const scp_gguf *g, const char *key, uint64_t max, uint64_t *out, const char *what)
{
    const scp_gguf_kv *kv = scp_gguf_find(g, key);
    if (!kv) return 1;
    if (!is_int_type(kv->type)) return scp_error("%s: metadata '%s' is a %s, expected an integer", what, key, scp_gguf_type_name(kv->type));
    if (is_signed_type(kv->type) && kv->v.i < 0) return scp_error("%s: metadata '%s' = %lld is negative", what, key, (long long)kv->v.i);
    if (kv->v.u > max) return scp_error("%s: metadata '%s' = %llu is out of range (at most %llu)", what, key,
                                        (unsigned long long)kv->v.u, (unsigned long long)max);
    *out = kv->v.u;
    return 0;
}

int scp_gguf_get_real(const scp_gguf *g, const char *key, double *out, const char *what)
{
    const scp_gguf_kv *kv = scp_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type == SCP_GGUF_F32 || kv->type == SCP_GGUF_F64) *out = kv->v.f;
    else if (is_signed_type(kv->type)) *out = (double)kv->v.i;
    else if (is_int_type(kv->type)) *out = (double)kv->v.u;
    else return scp_error("%s: metadata '%s' is a %s, expected a number", what, key, scp_gguf_type_name(kv->type));
    return 0;
}

int scp_gguf_get_str(const scp_gguf *g, const char *key, char **out, const char *what)
{
    const scp_gguf_kv *kv = scp_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != SCP_GGUF_STRING) return scp_error("%s: metadata '%s' is a %s, expected a string", what, key, scp_gguf_type_name(kv->type));
    if (memchr(kv->v.str.s, 0, (size_t)kv->v.str.len)) return scp_error("%s: metadata '%s' contains a NUL byte", what, key);
    *out = str_dup(kv->v.str);
    return 0;
}

double scp_gguf_arr_num(const scp_gguf_kv *kv, uint64_t i)
{
    uint32_t t = kv->arr_type;
    int n = value_sizes[t];
    uint64_t v = le(kv->arr_data + i * (uint64_t)n, n);
    if (t == SCP_GGUF_F32) {
        uint32_t u = (uint32_t)v;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    if (t == SCP_GGUF_F64) {
        double d;
        memcpy(&d, &v, 8);
        return d;
    }
    if (is_signed_type(t)) {
        int sh = 64 - 8 * n;
        return (double)((int64_t)(v << sh) >> sh);
    }
    return (double)v;
}

/* ---- writer ------------------------------------------------------------------------------------------- */
typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = scp_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_le(buf *b, uint64_t v, int n)
{
    uint8_t x[8];
    for (int i = 0; i < n; i++) x[i] = (uint8_t)(v >> (8 * i));
    put(b, x, (size_t)n);
}

static void put_str(buf *b, const char *s, size_t n)
{
    put_le(b, n, 8);
    put(b, s, n);
}

typedef struct wtensor {
    char *name;
    uint32_t type;
    int ndim;
    uint64_t ne[SCP_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
} wtensor;

struct scp_gguf_writer {
    buf kv;          /* encoded metadata entries */
    uint64_t n_kv;
    wtensor *t;
    int n, cap;
};

scp_gguf_writer *scp_gguf_writer_new(void)
{
    return scp_xcalloc(1, sizeof(scp_gguf_writer));
}

void scp_gguf_writer_free(scp_gguf_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    free(w->kv.p);
    free(w);
}

static void key(scp_gguf_writer *w, const char *k, uint32_t type)
{
    put_str(&w->kv, k, strlen(k));
    put_le(&w->kv, type, 4);
    w->n_kv++;
}

void scp_gguf_set_str(scp_gguf_writer *w, const char *k, const char *value)
{
    key(w, k, SCP_GGUF_STRING);
    put_str(&w->kv, value, strlen(value));
}

void scp_gguf_set_u32(scp_gguf_writer *w, const char *k, uint32_t value)
{
    key(w, k, SCP_GGUF_U32);
    put_le(&w->kv, value, 4);
}

void scp_gguf_set_i32(scp_gguf_writer *w, const char *k, int32_t value)
{
    key(w, k, SCP_GGUF_I32);
    put_le(&w->kv, (uint32_t)value, 4);
}

void scp_gguf_set_f32(scp_gguf_writer *w, const char *k, float value)
{
    uint32_t u;
    memcpy(&u, &value, 4);
    key(w, k, SCP_GGUF_F32);
    put_le(&w->kv, u, 4);
}

void scp_gguf_set_bool(scp_gguf_writer *w, const char *k, int value)
{
    key(w, k, SCP_GGUF_BOOL);
    put_le(&w->kv, value ? 1 : 0, 1);
}

void scp_gguf_set_arr(scp_gguf_writer *w, const char *k, uint32_t elem_type, const void *elems, uint64_t n)
{
    key(w, k, SCP_GGUF_ARRAY);
    put_le(&w->kv, elem_type, 4);
    put_le(&w->kv, n, 8);
    put(&w->kv, elems, (size_t)(n * value_sizes[elem_type]));
}

void scp_gguf_set_str_arr(scp_gguf_writer *w, const char *k, const char *const *strs, uint64_t n)
{
    key(w, k, SCP_GGUF_ARRAY);
    put_le(&w->kv, SCP_GGUF_STRING, 4);
    put_le(&w->kv, n, 8);
    for (uint64_t i = 0; i < n; i++) put_str(&w->kv, strs[i], strlen(strs[i]));
}

void scp_gguf_add_tensor(scp_gguf_writer *w, const char *name, uint32_t ggml_type, int ndim, const uint64_t *ne, const void *data)
{
    if (w->n == w->cap) w->t = scp_xrealloc(w->t, sizeof *w->t * (size_t)(w->cap = w->cap ? 2 * w->cap : 64));
    wtensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = scp_xstrdup(name);
    t->type = ggml_type;
    t->ndim = ndim;
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= (t->ne[d] = ne[d]);
    t->data = data;
    t->nbytes = (size_t)(numel / ggml_types[ggml_type].blck * ggml_types[ggml_type].size);
}

int scp_gguf_write(scp_gguf_writer *w, const char *path)
{
    const uint64_t A = SCP_GGUF_DEFAULT_ALIGNMENT;
    buf h = {0};
    put(&h, "GGUF", 4);
    put_le(&h, 3, 4);
    put_le(&h, (uint64_t)w->n, 8);
    put_le(&h, w->n_kv, 8);
    put(&h, w->kv.p, w->kv.n);
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        wtensor *t = &w->t[i];
        put_str(&h, t->name, strlen(t->name));
        put_le(&h, (uint64_t)t->ndim, 4);
        for (int d = 0; d < t->ndim; d++) put_le(&h, t->ne[d], 8);
        put_le(&h, t->type, 4);
        put_le(&h, off, 8);
        off += (t->nbytes + A - 1) / A * A;
    }
    static const uint8_t zeros[SCP_GGUF_DEFAULT_ALIGNMENT];
    size_t pad = (size_t)((A - h.n % A) % A);
    put(&h, zeros, pad);
    scp_out *o = scp_out_open(path, 1);
    if (!o) {
        free(h.p);
        return -1;
    }
    int rc = scp_write_all(o->f, h.p, h.n, path);
    free(h.p);
    for (int i = 0; i < w->n && !rc; i++) {
        wtensor *t = &w->t[i];
        rc = scp_write_all(o->f, t->data, t->nbytes, path) ||
             scp_write_all(o->f, zeros, (size_t)((A - t->nbytes % A) % A), path);
    }
    if (rc) {
        scp_out_abort(o);
        return -1;
    }
    return scp_out_commit(o);
}

void scp_gguf_tensor_name(const scp_param_desc *d, char *out, size_t n)
{
    static const char *fmt[SCP_P_KIND_COUNT] = {
        [SCP_P_EMBED] = "token_embd.weight", [SCP_P_LM_HEAD] = "output.weight", [SCP_P_FINAL_NORM] = "output_norm.weight",
        [SCP_P_ATTN_NORM] = "blk.%d.attn_norm.weight", [SCP_P_Q] = "blk.%d.attn_q.weight", [SCP_P_K] = "blk.%d.attn_k.weight",
        [SCP_P_V] = "blk.%d.attn_v.weight", [SCP_P_O] = "blk.%d.attn_output.weight", [SCP_P_QB] = "blk.%d.attn_q.bias",
        [SCP_P_KB] = "blk.%d.attn_k.bias", [SCP_P_VB] = "blk.%d.attn_v.bias", [SCP_P_OB] = "blk.%d.attn_output.bias",
        [SCP_P_QNORM] = "blk.%d.attn_q_norm.weight", [SCP_P_KNORM] = "blk.%d.attn_k_norm.weight",
        [SCP_P_MLP_NORM] = "blk.%d.ffn_norm.weight", [SCP_P_GATE] = "blk.%d.ffn_gate.weight", [SCP_P_UP] = "blk.%d.ffn_up.weight",
        [SCP_P_DOWN] = "blk.%d.ffn_down.weight", [SCP_P_ROUTER] = "blk.%d.ffn_gate_inp.weight",
        [SCP_P_EXP_GATE] = "blk.%d.ffn_gate_exps.weight", [SCP_P_EXP_UP] = "blk.%d.ffn_up_exps.weight",
        [SCP_P_EXP_DOWN] = "blk.%d.ffn_down_exps.weight",
    };
    snprintf(out, n, fmt[d->kind], d->layer);
}
