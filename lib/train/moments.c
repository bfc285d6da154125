/* train/moments.c: AdamW's moments of a run, whole (train/moments.h). */
#include "train/moments.h"
#include "core/error.h"
#include "train/state.h"

#include <stdlib.h>
#include <string.h>

void scp_train_moments_init(scp_train_moments *mo, const scp_model *m)
{
    memset(mo, 0, sizeof *mo);
    mo->n = m->n_weights;
    mo->m = scp_xcalloc((size_t)(mo->n ? mo->n : 1), sizeof *mo->m);
    mo->v = scp_xcalloc((size_t)(mo->n ? mo->n : 1), sizeof *mo->v);
}

int scp_train_moments_load(scp_train_moments *mo, const scp_model *m, const char *path)
{
    return scp_optimizer_load(path, m, mo->m, mo->v);
}

void scp_train_moments_free(scp_train_moments *mo)
{
    free(mo->m);
    free(mo->v);
    memset(mo, 0, sizeof *mo);
}
