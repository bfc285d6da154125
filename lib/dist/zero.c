/* dist/zero.c: ZeRO-1, the sharded moments and the update of dist/zero.h, on the backend's memory. */
#include "dist/zero.h"
#include "dist/coll.h"
#include "core/error.h"
#include "model/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void scp_zero1_init(scp_zero1 *z, scp_model *m, scp_dist *d)
{
    memset(z, 0, sizeof *z);
    z->m = m, z->d = d;
    z->coll = scp_coll_for(d);
    int64_t *lo = scp_xmalloc(sizeof *lo * (size_t)(m->cfg.num_layers + 3));
    int units = scp_param_units(m->desc, m->n_params, m->cfg.num_layers, lo);
    scp_shard_layout_init(&z->lay, lo, units, d->world, d->rank);
    free(lo);
    const scp_backend *be = m->backend;
    size_t S = (size_t)z->lay.shard_off[units] * sizeof(float);
    z->mom_m = be->alloc(S ? S : 1);
    z->mom_v = be->alloc(S ? S : 1);
    z->gather = be->alloc((size_t)z->lay.max_unit * sizeof(float));
}

void scp_zero1_free(scp_zero1 *z)
{
    if (!z->m) return;
    const scp_backend *be = z->m->backend;
    be->free(z->mom_m);
    be->free(z->mom_v);
    be->free(z->gather);
    scp_shard_layout_free(&z->lay);
    memset(z, 0, sizeof *z);
}

int scp_zero1_reduce_grads(scp_zero1 *z)
{
    float *g = scp_model_backend_grads(z->m);
    return g ? z->coll->allreduce_f32(z->d, g, z->m->n_weights, "gradient all-reduce") : 0;
}

/* Parameter i's part of this rank's pieces: [*x, *y) of the parameter vector, starting at *k of the shard. */
static void param_piece(const scp_zero1 *z, int i, int64_t *x, int64_t *y, int64_t *k)
{
    int64_t s = z->m->offset[i];
    *k = scp_shard_span_piece(&z->lay, scp_shard_unit_of(&z->lay, s), z->lay.rank, s, s + z->m->desc[i].numel, x, y);
}

/* AdamW on this rank's pieces of the backend's master weights (whose compute copy the caller then remakes). */
static void update_pieces(scp_zero1 *z, const float *lr, float beta1, float beta2, float eps, float weight_decay,
                          int64_t step)
{
    scp_model *m = z->m;
    const scp_backend *be = m->backend;
    float *grads = scp_model_backend_grads(m), *master = scp_model_master(m);
    /* The bias corrections of scp_model_adamw, so that a piece gets the floats the whole vector would. */
    float bc1 = (float)(1.0 - pow(beta1, (double)step)), bc2 = (float)(1.0 - pow(beta2, (double)step));
    for (int i = 0; i < m->n_params; i++) {
        if (lr[i] == 0.0f) continue;   /* a frozen group */
        int64_t x, y, k;
        param_piece(z, i, &x, &y, &k);
        if (x >= y) continue;
        be->adamw(master + x, grads + x, z->mom_m + k, z->mom_v + k, (size_t)(y - x), lr[i], beta1, beta2, eps,
                  m->desc[i].decay ? weight_decay : 0.0f, bc1, bc2);
    }
}

void scp_zero1_update(scp_zero1 *z, const float *lr, float beta1, float beta2, float eps, float weight_decay,
                      int64_t step)
{
    if (!z->m->grads) return;
    update_pieces(z, lr, beta1, beta2, eps, weight_decay, step);
    scp_model_master_changed(z->m);
}

int scp_zero1_adamw(scp_zero1 *z, const float *lr, float beta1, float beta2, float eps, float weight_decay,
                    int64_t step)
{
    scp_model *m = z->m;
    const scp_backend *be = m->backend;
    const scp_shard_layout *L = &z->lay;
    if (!m->grads) return 0;
    update_pieces(z, lr, beta1, beta2, eps, weight_decay, step);
    float *master = scp_model_master(m);
    /* Every rank's updated pieces to every rank, unit by unit, through a buffer of equal pieces (the last ones run
     * past the unit: their padding is never copied back). */
    int rc = 0;
    for (int u = 0; u < L->units && rc == 0 && L->world > 1; u++) {
        int64_t a, b, per = L->per[u];
        scp_shard_piece(L, u, L->rank, &a, &b);
        if (b > a) be->copy_bytes(z->gather + (size_t)(L->rank * per), master + a, (size_t)(b - a) * sizeof(float));
        rc = z->coll->allgather_pieces(z->d, z->gather, per * (int64_t)sizeof(float), "ZeRO-1 weight all-gather");
        be->copy_bytes(master + L->unit_lo[u], z->gather, (size_t)(L->unit_lo[u + 1] - L->unit_lo[u]) * sizeof(float));
    }
    scp_model_master_changed(m);
    return rc ? -1 : 0;
}

int scp_zero1_param_piece(const scp_zero1 *z, int i, int64_t *lo, int64_t *hi)
{
    int64_t x, y, k, s = z->m->offset[i];
    param_piece(z, i, &x, &y, &k);
    *lo = x < y ? x - s : 0;
    *hi = x < y ? y - s : 0;
    return x < y;
}

void scp_zero1_set_moment_piece(scp_zero1 *z, int which, int i, const float *piece)
{
    int64_t x, y, k;
    param_piece(z, i, &x, &y, &k);
    if (x < y) z->m->backend->upload((which ? z->mom_v : z->mom_m) + k, piece, (size_t)(y - x) * sizeof *piece);
}

int scp_zero1_gather_moment(scp_zero1 *z, int which, int i, int root, float *out)
{
    const scp_shard_layout *L = &z->lay;
    int64_t s = z->m->offset[i], e = s + z->m->desc[i].numel, x, y, k;
    int W = L->world, u = scp_shard_unit_of(L, s);
    /* Rank r's share of the tensor is [lo[r], lo[r + 1]) of it: the unit's pieces in rank order, clipped to [s, e). */
    int64_t *lo = scp_xmalloc(sizeof *lo * (size_t)(W + 1));
    lo[0] = 0;
    for (int r = 0; r < W; r++) {
        scp_shard_span_piece(L, u, r, s, e, &x, &y);
        lo[r + 1] = lo[r] + (y - x);
    }
    param_piece(z, i, &x, &y, &k);
    int64_t n = y > x ? y - x : 0;
    float *part = scp_xmalloc((size_t)(n ? n : 1) * sizeof *part);
    if (n) z->m->backend->download(part, (which ? z->mom_v : z->mom_m) + k, (size_t)n * sizeof *part);
    int rc = scp_dist_gather_to(z->d, root, out, part, lo, "ZeRO-1 optimizer gather");
    free(part);
    free(lo);
    return rc;
}
