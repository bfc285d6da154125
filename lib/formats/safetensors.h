/* formats/safetensors.h: read (mmap, zero-copy, validated) and write (atomic) safetensors files.
 *
 * Format: u64 little-endian header length N, N bytes of JSON {"name": {"dtype": "F32", "shape": [..],
 * "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data; offsets are relative to the
 * end of the header. The reader checks: header inside the file, valid JSON object, known dtype, shape of
 * non-negative integers, begin <= end <= data size, (end - begin) == prod(shape) * sizeof(dtype) without
 * overflow, no two tensors overlapping. */
#ifndef SCP_SAFETENSORS_H
#define SCP_SAFETENSORS_H

#include <stdint.h>
#include <stddef.h>
#include <jansson.h>

#include "core/dtype.h"
#include "core/io.h"

#define SCP_MAX_DIMS 8

typedef struct scp_tensor_info {
    char *name;
    scp_dtype dtype;
    int ndim;
    int64_t shape[SCP_MAX_DIMS];
    int64_t numel;
    const void *data;     /* points into the mapping */
    size_t nbytes;
} scp_tensor_info;

typedef struct scp_st_file {
    scp_map map;
    int n;
    scp_tensor_info *t;   /* sorted by name */
    json_t *metadata;     /* __metadata__ object or NULL */
} scp_st_file;

int scp_st_open(scp_st_file *f, const char *path);
/* Validate a buffer already in memory (used by the fuzz target); the buffer must outlive f. */
int scp_st_parse(scp_st_file *f, const uint8_t *buf, size_t len, const char *what);
void scp_st_close(scp_st_file *f);
const scp_tensor_info *scp_st_find(const scp_st_file *f, const char *name);
/* Shape as "[512,64]" into buf. */
const char *scp_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* Writer: tensors are added by reference (data must live until scp_st_write returns). */
typedef struct scp_st_writer scp_st_writer;
scp_st_writer *scp_st_writer_new(void);
void scp_st_writer_free(scp_st_writer *w);
void scp_st_add(scp_st_writer *w, const char *name, scp_dtype dtype, int ndim, const int64_t *shape, const void *data);
/* Add a tensor whose bytes the writer owns (freed with the writer). */
void scp_st_add_owned(scp_st_writer *w, const char *name, scp_dtype dtype, int ndim, const int64_t *shape, void *data);
void scp_st_set_metadata(scp_st_writer *w, const char *key, const char *value);
/* Tensors are written in name order (HF convention, stable bytes). Atomic. */
int scp_st_write(scp_st_writer *w, const char *path);

/* Streaming, for a file whose tensors never exist all at once: the tensors added to w (data may be NULL) are
 * declared in the header in the order added, then their bytes are given one tensor at a time in that order
 * (scp_st_stream_put, nbytes of the declared shape); scp_st_stream_end(s, ok) commits the file when ok and every
 * tensor came, else removes it (-1). w must outlive the stream. */
typedef struct scp_st_stream scp_st_stream;
scp_st_stream *scp_st_stream_begin(const scp_st_writer *w, const char *path);
int scp_st_stream_put(scp_st_stream *s, const void *data);
int scp_st_stream_end(scp_st_stream *s, int ok);

#endif
