/* formats/st_set.h: the tensors of a checkpoint directory under one base name, whether they sit in one file
 * (BASE.safetensors) or in the shards a Hugging Face index names (BASE.safetensors.index.json, whose "weight_map"
 * maps each tensor to its file BASE-0000k-of-0000n.safetensors). BASE is "model" for the weights, "optimizer"
 * for scp-train's AdamW moments. */
#ifndef SCP_ST_SET_H
#define SCP_ST_SET_H

#include <stdint.h>

#include "formats/safetensors.h"

typedef struct scp_st_set {
    int n;                 /* files */
    scp_st_file *f;        /* (n) mapped files */
    char **path;           /* (n) their paths, for messages */
} scp_st_set;

/* The file names a BASE.safetensors.index.json maps tensors to, each once, in first-seen order (*files freshly
 * allocated, *nf entries). -1 with a message naming path when the index is not one. */
int scp_st_index_files(const char *path, char ***files, int *nf);

/* Open DIR/BASE.safetensors, or else every shard of DIR/BASE.safetensors.index.json. -1 with a message. */
int scp_st_set_open(scp_st_set *s, const char *dir, const char *base);
void scp_st_set_close(scp_st_set *s);
/* The tensor `name` and the file it is in (*path may be NULL), or NULL. */
const scp_tensor_info *scp_st_set_find(const scp_st_set *s, const char *name, const char **path);
/* Tensor `name` as n fp32 values into out, checked to have shape (ndim, shape) and a float dtype; -1 with a
 * message naming the file and the tensor. */
int scp_st_set_read_f32(const scp_st_set *s, const char *name, int ndim, const int64_t *shape, float *out);
/* Elements [lo, hi) of tensor `name` (flat, row-major) as hi - lo fp32 values into out, the tensor checked as
 * above; only those elements' bytes are read. */
int scp_st_set_read_f32_range(const scp_st_set *s, const char *name, int ndim, const int64_t *shape, int64_t lo,
                              int64_t hi, float *out);

/* "BASE-0000k-of-0000n.safetensors" (k from 1), freshly allocated. */
char *scp_st_shard_name(const char *base, int k, int n);
/* Write DIR/BASE.safetensors.index.json: tensor names[i] (n of them) lives in shard file_of[i] (0-based) of
 * files, total_size bytes of tensor data in all. Atomic. */
int scp_st_index_write(const char *dir, const char *base, int files, const char *const *names, const int *file_of,
                       int n, int64_t total_size);

#endif
