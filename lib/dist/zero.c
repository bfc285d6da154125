/* dist/zero.c: the sharded AdamW update of ZeRO-1 (dist/zero.h). */
#include "dist/zero.h"
#include "model/backend.h"

#include <math.h>

int scp_zero_adamw(scp_model *m, scp_dist *d, const int64_t *lo, float *opt_m, float *opt_v, const float *lr,
                   float beta1, float beta2, float eps, float weight_decay, int64_t step)
{
    if (!m->grads) return 0;
    /* The shard's update runs on the host arrays (on a device backend they are brought down first, and the
     * gathered weights go back up before the next step). */
    scp_model_sync_host(m);
    const scp_backend *be = m->backend->host_memory ? m->backend : &scp_backend_cpu;
    int64_t a = lo[d->rank], b = lo[d->rank + 1];
    /* The same bias corrections as scp_model_adamw, so that both paths compute the same floats. */
    float bc1 = (float)(1.0 - pow(beta1, (double)step)), bc2 = (float)(1.0 - pow(beta2, (double)step));
    for (int i = 0; i < m->n_params; i++) {
        int64_t s = m->offset[i], e = s + m->desc[i].numel;
        if (e <= a || s >= b || lr[i] == 0.0f) continue;   /* outside the shard, or a frozen group */
        if (s < a) s = a;
        if (e > b) e = b;
        be->adamw(m->weights + s, m->grads + s, opt_m + (s - a), opt_v + (s - a), (size_t)(e - s), lr[i],
                          beta1, beta2, eps, m->desc[i].decay ? weight_decay : 0.0f, bc1, bc2);
    }
    int rc = scp_dist_allgather_f32(d, m->weights, lo, "ZeRO-1 weight all-gather");
    scp_model_weights_changed(m);
    return rc;
}
