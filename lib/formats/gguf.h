/* formats/gguf.h: read (mmap, zero-copy, validated) and write (atomic) GGUF files, llama.cpp's model format.
 *
 * Format (v2 and v3; little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count; then the
 * metadata: key (u64 length + bytes), u32 value type, value (strings are u64 length + bytes, arrays are u32
 * element type + u64 count + elements); then per tensor: name, u32 n_dims, u64 ne[n_dims] (ne[0] is the
 * innermost, fastest-varying dimension: a row-major (rows, cols) matrix has ne = {cols, rows}), u32 ggml type,
 * u64 offset; then padding to general.alignment (default 32) and the data, each tensor at its offset from the
 * start of the data (a multiple of the alignment).
 *
 * The reader checks everything before anyone looks at it: counts that fit in the file, strings and arrays
 * inside the file, known value and tensor types, dimensions that multiply without overflow, offsets aligned,
 * inside the data and not overlapping, no duplicate keys or tensor names. */
#ifndef SCP_GGUF_H
#define SCP_GGUF_H

#include <stdint.h>
#include <stddef.h>

#include "core/io.h"
#include "formats/model_config.h"

/* Metadata value types. */
enum {
    SCP_GGUF_U8 = 0, SCP_GGUF_I8 = 1, SCP_GGUF_U16 = 2, SCP_GGUF_I16 = 3, SCP_GGUF_U32 = 4, SCP_GGUF_I32 = 5,
    SCP_GGUF_F32 = 6, SCP_GGUF_BOOL = 7, SCP_GGUF_STRING = 8, SCP_GGUF_ARRAY = 9, SCP_GGUF_U64 = 10,
    SCP_GGUF_I64 = 11, SCP_GGUF_F64 = 12, SCP_GGUF_TYPE_COUNT
};

/* Tensor (ggml) types we know the size of. Only F32, F16 and BF16 carry weights scp can use. */
enum {
    SCP_GGML_F32 = 0, SCP_GGML_F16 = 1, SCP_GGML_Q4_0 = 2, SCP_GGML_Q4_1 = 3, SCP_GGML_Q5_0 = 6, SCP_GGML_Q5_1 = 7,
    SCP_GGML_Q8_0 = 8, SCP_GGML_Q8_1 = 9, SCP_GGML_Q2_K = 10, SCP_GGML_Q3_K = 11, SCP_GGML_Q4_K = 12,
    SCP_GGML_Q5_K = 13, SCP_GGML_Q6_K = 14, SCP_GGML_Q8_K = 15, SCP_GGML_I8 = 24, SCP_GGML_I16 = 25,
    SCP_GGML_I32 = 26, SCP_GGML_I64 = 27, SCP_GGML_F64 = 28, SCP_GGML_BF16 = 30
};

#define SCP_GGUF_MAX_DIMS 4
#define SCP_GGUF_DEFAULT_ALIGNMENT 32

/* A string inside the mapping: not NUL-terminated. */
typedef struct scp_gguf_str {
    const char *s;
    uint64_t len;
} scp_gguf_str;

typedef struct scp_gguf_kv {
    char *key;                 /* NUL-terminated copy */
    uint32_t type;
    union {
        uint64_t u;            /* U8..U64, BOOL */
        int64_t i;             /* I8..I64 */
        double f;              /* F32, F64 */
        scp_gguf_str str;      /* STRING */
    } v;
    /* ARRAY: element type and count; numeric elements are packed little-endian at arr_data; string elements
     * are decoded into arr_str (allocated). Nested arrays are refused. */
    uint32_t arr_type;
    uint64_t arr_n;
    const uint8_t *arr_data;
    scp_gguf_str *arr_str;
} scp_gguf_kv;

typedef struct scp_gguf_tensor {
    char *name;                /* NUL-terminated copy */
    int ndim;
    uint64_t ne[SCP_GGUF_MAX_DIMS];   /* ne[0] innermost; unused dimensions are 1 */
    uint32_t type;
    uint64_t offset;           /* from the start of the data section */
    uint64_t numel;
    const void *data;          /* points into the mapping */
    size_t nbytes;
} scp_gguf_tensor;

typedef struct scp_gguf {
    scp_map map;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv, n_tensors;
    scp_gguf_kv *kv;
    scp_gguf_tensor *t;        /* in file order */
    size_t data_offset;        /* start of the data section in the file */
} scp_gguf;

int scp_gguf_open(scp_gguf *g, const char *path);
/* Validate a buffer already in memory (the fuzz target); the buffer must outlive g. */
int scp_gguf_parse(scp_gguf *g, const uint8_t *buf, size_t len, const char *what);
void scp_gguf_close(scp_gguf *g);

const scp_gguf_kv *scp_gguf_find(const scp_gguf *g, const char *key);
const scp_gguf_tensor *scp_gguf_find_tensor(const scp_gguf *g, const char *name);
const char *scp_gguf_type_name(uint32_t value_type);
/* "F32", "Q4_K", ... or NULL when unknown. */
const char *scp_ggml_type_name(uint32_t ggml_type);

/* Typed getters: 0 and *out set; 1 if the key is absent; -1 with a message naming `what` and the key when
 * the type is wrong or the value out of range. Integer getters accept any integer type; real getters any
 * number. */
int scp_gguf_get_uint(const scp_gguf *g, const char *key, uint64_t max, uint64_t *out, const char *what);
int scp_gguf_get_real(const scp_gguf *g, const char *key, double *out, const char *what);
/* A freshly allocated NUL-terminated copy (a string containing NUL is refused). */
int scp_gguf_get_str(const scp_gguf *g, const char *key, char **out, const char *what);
/* Element i of a numeric array as a double; the caller has checked the array's type and size. */
double scp_gguf_arr_num(const scp_gguf_kv *kv, uint64_t i);

/* Writer: metadata in the order added, tensors by reference (data must live until scp_gguf_write returns). */
typedef struct scp_gguf_writer scp_gguf_writer;
scp_gguf_writer *scp_gguf_writer_new(void);
void scp_gguf_writer_free(scp_gguf_writer *w);
void scp_gguf_set_str(scp_gguf_writer *w, const char *key, const char *value);
void scp_gguf_set_u32(scp_gguf_writer *w, const char *key, uint32_t value);
void scp_gguf_set_i32(scp_gguf_writer *w, const char *key, int32_t value);
void scp_gguf_set_f32(scp_gguf_writer *w, const char *key, float value);
void scp_gguf_set_bool(scp_gguf_writer *w, const char *key, int value);
/* Arrays: numeric elements given packed little-endian in their element type; strings as an array of C strings. */
void scp_gguf_set_arr(scp_gguf_writer *w, const char *key, uint32_t elem_type, const void *elems, uint64_t n);
void scp_gguf_set_str_arr(scp_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* ne as in the file (ne[0] innermost). */
void scp_gguf_add_tensor(scp_gguf_writer *w, const char *name, uint32_t ggml_type, int ndim, const uint64_t *ne, const void *data);
/* Version 3, alignment 32; written atomically. */
int scp_gguf_write(scp_gguf_writer *w, const char *path);

/* The llama.cpp tensor name of a parameter ("blk.3.attn_q.weight"; experts: the stacked
 * "blk.N.ffn_gate_exps.weight"), shared by the importer and the exporter. */
void scp_gguf_tensor_name(const scp_param_desc *d, char *out, size_t n);

#endif
