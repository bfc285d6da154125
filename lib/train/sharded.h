/* train/sharded.h: a run's sharded state under ZeRO-2/3 (dist/fsdp.h): filling the shards from a checkpoint or a
 * random init, and writing a checkpoint that no rank holds whole.
 *
 * A sharded checkpoint is a Hugging Face sharded checkpoint: model-0000k-of-0000n.safetensors with
 * model.safetensors.index.json, and the moments alike (optimizer-0000k-of-0000n.safetensors with
 * optimizer.safetensors.index.json, tensors exp_avg.NAME and exp_avg_sq.NAME), n the world size. Tensors are
 * dealt to the files in table order, each file taking about 1/n of the bytes; rank k - 1 gathers the tensors of
 * file k from the ranks' pieces and writes it, all ranks at once, into the checkpoint's temporary directory
 * (which therefore must be on a file system every rank sees). Any reader of HF directories reads the model, and
 * any world size, or one process, resumes from it. */
#ifndef SCP_TRAIN_SHARDED_H
#define SCP_TRAIN_SHARDED_H

#include <stdint.h>

#include "dist/fsdp.h"

/* This rank's pieces of the weights from checkpoint directory dir (model.safetensors or its shards). */
int scp_sharded_load_weights(scp_fsdp *f, const char *dir);
/* This rank's pieces of scp_model_init_random's weights for seed and std. */
void scp_sharded_random_weights(scp_fsdp *f, uint64_t seed, float std);
/* This rank's pieces of the moments from dir (optimizer.safetensors or its shards). */
int scp_sharded_load_moments(scp_fsdp *f, const char *dir);
/* Write model and optimizer shards into tmpdir (every rank its file). Collective; 0 on every rank when every
 * rank succeeded, else -1 (messages on the ranks that failed). */
int scp_sharded_save(scp_fsdp *f, const char *tmpdir);

/* Where a sharded checkpoint's tensors come from, whatever holds them: the table of the checkpoint (desc, n),
 * and gather(ctx, vec, i, root, out), which brings entry i of vector vec (0 the weights, 1 and 2 AdamW's first
 * and second moments) whole onto rank root (out, numel floats, given on every rank). Collective over d. */
typedef struct scp_ckpt_source {
    const scp_param_desc *desc;
    int n;
    scp_dist *d;
    void *ctx;
    int (*gather)(void *ctx, int vec, int i, int root, float *out);
} scp_ckpt_source;
int scp_sharded_save_source(const scp_ckpt_source *src, const char *tmpdir);

/* Where the tensors a rank loads go, whatever keeps them: the model's table (desc, n); piece(ctx, vec, i, &lo, &hi)
 * names the elements [lo, hi) of entry i of vector vec (0 the weights, 1 and 2 AdamW's first and second moments)
 * that this rank keeps (returns 0 for none), and put(ctx, vec, i, data) takes them (hi - lo floats, host memory). */
typedef struct scp_ckpt_sink {
    const scp_param_desc *desc;
    int n;
    void *ctx;
    int (*piece)(void *ctx, int vec, int i, int64_t *lo, int64_t *hi);
    void (*put)(void *ctx, int vec, int i, const float *data);
} scp_ckpt_sink;
/* The sink's pieces of DIR/BASE (one file or an index's shards): base "model" fills vector 0 from the tensors
 * NAME, base "optimizer" vectors 1 and 2 from exp_avg.NAME and exp_avg_sq.NAME. Only the elements a rank keeps
 * are read (the files are mapped), so that N ranks loading a sharded state read the checkpoint once between them,
 * not N times, and no rank holds more than its pieces and one piece in flight. A rank with no piece of a tensor
 * still checks that it is there, with its shape and a float type. 0, or -1 with a message. */
int scp_sharded_load_sink(const scp_ckpt_sink *sink, const char *dir, const char *base);

#endif
