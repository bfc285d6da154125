/* train/moments.h: AdamW's first and second moments of a run whose every rank holds all of them (ZeRO-0; ZeRO-1
 * keeps this rank's pieces in the backend's memory instead, dist/zero.h). Checkpoints always hold the full
 * moments (train/state.h, optimizer.safetensors), so a run resumes under any number of ranks. */
#ifndef SCP_TRAIN_MOMENTS_H
#define SCP_TRAIN_MOMENTS_H

#include <stdint.h>

#include "model/model.h"

typedef struct scp_train_moments {
    float *m, *v;          /* (n) first and second moments */
    int64_t n;             /* the model's n_weights */
} scp_train_moments;

/* Zero moments of model m. */
void scp_train_moments_init(scp_train_moments *mo, const scp_model *m);
/* Read the full moments of optimizer.safetensors at path. 0, or -1 with a message. */
int scp_train_moments_load(scp_train_moments *mo, const scp_model *m, const char *path);
void scp_train_moments_free(scp_train_moments *mo);

#endif
