/* train/moments.h: AdamW's first and second moments of a run, on one rank: all of them, or under ZeRO-1 the shard
 * [zlo[rank], zlo[rank + 1]) of the flat weight vector that this rank updates (dist/zero.h). Checkpoints always
 * hold the full moments (train/state.h, optimizer.safetensors), so a run resumes under any number of ranks. */
#ifndef SCP_TRAIN_MOMENTS_H
#define SCP_TRAIN_MOMENTS_H

#include <stdint.h>

#include "model/model.h"

typedef struct scp_train_moments {
    float *m, *v;          /* (n) first and second moments of the weights this rank updates */
    int64_t n;             /* the model's n_weights, or the length of this rank's ZeRO-1 shard */
    int64_t *zlo;          /* ZeRO-1: shard boundaries (world + 1); NULL when every rank holds every moment */
    int rank;
} scp_train_moments;

/* Zero moments of model m for rank `rank` of `world`; zero1 != 0 shards them when there are several ranks. */
void scp_train_moments_init(scp_train_moments *mo, const scp_model *m, int zero1, int rank, int world);
/* Read the full moments of optimizer.safetensors at path and keep this rank's. 0, or -1 with a message. */
int scp_train_moments_load(scp_train_moments *mo, const scp_model *m, const char *path);
void scp_train_moments_free(scp_train_moments *mo);

#endif
