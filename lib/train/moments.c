/* train/moments.c: AdamW's moments of a run, whole or as this rank's ZeRO-1 shard. */
#include "train/moments.h"
#include "core/error.h"
#include "dist/dist.h"
#include "train/state.h"

#include <stdlib.h>
#include <string.h>

void scp_train_moments_init(scp_train_moments *mo, const scp_model *m, int zero1, int rank, int world)
{
    memset(mo, 0, sizeof *mo);
    mo->rank = rank;
    mo->n = m->n_weights;
    if (zero1 && world > 1) {
        /* shard boundaries aligned to 16 floats (dist/dist.h) */
        mo->zlo = scp_xmalloc(sizeof *mo->zlo * (size_t)(world + 1));
        scp_dist_shards(m->n_weights, world, 16, mo->zlo);
        mo->n = mo->zlo[rank + 1] - mo->zlo[rank];
    }
    mo->m = scp_xcalloc((size_t)(mo->n ? mo->n : 1), sizeof *mo->m);
    mo->v = scp_xcalloc((size_t)(mo->n ? mo->n : 1), sizeof *mo->v);
}

int scp_train_moments_load(scp_train_moments *mo, const scp_model *m, const char *path)
{
    if (!mo->zlo) return scp_optimizer_load(path, m, mo->m, mo->v);
    float *fm = scp_xcalloc((size_t)m->n_weights, sizeof *fm), *fv = scp_xcalloc((size_t)m->n_weights, sizeof *fv);
    int rc = scp_optimizer_load(path, m, fm, fv);
    if (rc == 0) {
        memcpy(mo->m, fm + mo->zlo[mo->rank], (size_t)mo->n * sizeof *mo->m);
        memcpy(mo->v, fv + mo->zlo[mo->rank], (size_t)mo->n * sizeof *mo->v);
    }
    free(fm);
    free(fv);
    return rc;
}

void scp_train_moments_free(scp_train_moments *mo)
{
    free(mo->m);
    free(mo->v);
    free(mo->zlo);
    memset(mo, 0, sizeof *mo);
}
