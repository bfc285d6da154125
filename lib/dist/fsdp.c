/* dist/fsdp.c: ZeRO-2 and ZeRO-3, the sharded gradients, moments and (stage 3) weights of dist/fsdp.h. */
#include "dist/fsdp.h"
#include "dist/coll.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffers ---------------------------------------------------------------------------------------------- */
/* The buffers units are gathered into and their gradients made in live from their first use to scp_fsdp_trim,
 * so that a step does not allocate and fault in fresh memory for every unit. Slot 0 holds the embeddings' unit,
 * which the driver holds through the whole step; slot 1 the tail's (final norm, LM head) and, one after another,
 * every layer's: the driver gives the tail back before the first layer's backward and takes it after the last
 * layer's forward. With keep, whose layers are all held at the end of a forward, layer l's weights have slot
 * 2 + l of their own (its gradients still share slot 1). With prefetch (and without keep) the weights of the
 * units after the embeddings alternate between slot 1 (odd units) and pslot (even units): the unit the driver
 * runs and the next one, gathered meanwhile, are then never in the same buffer, forward (u, u + 1) and backward
 * (the tail and the last layer, then u, u - 1). */
static int pool_slot(const scp_fsdp *f, int u, int weights)
{
    if (u == 0) return 0;
    if (weights && f->pslot) return u % 2 ? 1 : f->pslot;
    if (u == f->lay.units - 1) return 1;
    if (weights && f->keep) return 1 + u;
    return f->unit_expert[u] ? f->xslot : 1;
}

/* Floats of a unit gathered over its group. */
static int64_t gathered_floats(const scp_shard_layout *L, int u) { return L->per[u] * L->world_of[u]; }

static int64_t pool_floats(const scp_fsdp *f, int slot)
{
    const scp_shard_layout *L = &f->lay;
    if (slot == 0) return gathered_floats(L, 0);
    if (f->pslot && slot == f->pslot) {   /* the even units after the embeddings */
        int64_t most = 0;
        for (int u = 2; u < L->units; u += 2) most = gathered_floats(L, u) > most ? gathered_floats(L, u) : most;
        return most;
    }
    if (slot >= 2 && slot != f->xslot) return gathered_floats(L, slot - 1);
    /* slot 1: the tail and every layer's unit (without its experts); xslot: every layer's experts */
    int64_t most = slot == 1 ? gathered_floats(L, L->units - 1) : 0;
    for (int u = 1; u < L->units - 1; u++)
        if (f->unit_expert[u] == (slot == f->xslot) && gathered_floats(L, u) > most) most = gathered_floats(L, u);
    return most;
}

/* The group unit u is cut over, and its transport. */
static scp_dist *dist_of(const scp_fsdp *f, int u) { return f->unit_expert[u] ? f->replicas : f->d; }
static const scp_coll *coll_of(const scp_fsdp *f, int u) { return f->unit_expert[u] ? f->rcoll : f->coll; }

static void *pooled(scp_fsdp *f, void **pool, int slot, size_t elem)
{
    if (!pool[slot]) {
        int64_t bytes = pool_floats(f, slot) * (int64_t)elem;
        pool[slot] = f->m->backend->alloc((size_t)bytes);
        f->pool_bytes += bytes;
    }
    return pool[slot];
}

void scp_fsdp_trim(scp_fsdp *f)
{
    const scp_backend *be = f->m->backend;
    for (int k = 0; k < f->pool_slots; k++) {
        if (f->wpool[k]) be->free(f->wpool[k]);
        if (f->gpool[k]) be->free(f->gpool[k]);
        if (f->hpool[k]) be->free(f->hpool[k]);
        f->wpool[k] = f->gpool[k] = f->hpool[k] = NULL;
    }
    for (int u = 0; u < f->lay.units; u++) f->gathered[u] = NULL;
    f->ahead = -1;
    f->pool_bytes = 0;
}

/* ---- the driver's callbacks (model/model.h scp_param_provider) ----------------------------------------------- */
/* Unit u's weights in the storage type: each rank rounds its fp32 piece into its slot of a world * per[u]
 * buffer, then the slots are all-gathered, at once (complete on return) or started (prefetch: joined when the
 * driver asks for the unit). */
static void gather(scp_fsdp *f, int u, int started)
{
    const scp_backend *be = f->m->backend;
    const scp_shard_layout *L = &f->lay;
    int64_t per = L->per[u];
    char *buf = pooled(f, f->wpool, pool_slot(f, u, 1), be->act_size);
    be->to_act((scp_act *)(void *)(buf + (size_t)(L->rank_of[u] * per) * be->act_size), f->master + L->shard_off[u],
               (size_t)per);
    const scp_coll *c = coll_of(f, u);
    if (L->world_of[u] > 1 &&
        (started ? c->allgather_start : c->allgather_pieces)(dist_of(f, u), buf, per * (int64_t)be->act_size,
                                                             "ZeRO-3 weight all-gather"))
        f->failed = 1;
    f->gathered[u] = buf;
}

/* The unit the driver asks for after u: the next layer in a forward (after the last, the final norm with the LM
 * head), the layer below in a backward, and after the final norm the last layer when a backward follows. -1:
 * none, or one gathered already (the embeddings, held through the step; a layer kept since its forward). */
static int unit_after(const scp_fsdp *f, int u)
{
    int tail = f->lay.units - 1, next;
    if (u == 0) next = 1;
    else if (u == tail) next = f->backward_follows ? tail - 1 : -1;
    else next = u > f->last ? u + 1 : u - 1;   /* the units rise through a forward and fall through a backward */
    return next >= 1 && next <= tail && !f->gathered[next] ? next : -1;
}

static const void *acquire(void *ctx, int u)
{
    scp_fsdp *f = ctx;
    if (f->ahead == u) {   /* prefetched while the unit before it ran */
        if (coll_of(f, u)->allgather_join(dist_of(f, u), "ZeRO-3 weight all-gather")) f->failed = 1;
        f->ahead = -1;
    } else if (!f->gathered[u]) {   /* else kept since the forward */
        gather(f, u, 0);
    }
    if (f->prefetch && f->ahead < 0) {
        int next = unit_after(f, u);
        if (next >= 0) gather(f, next, 1), f->ahead = next;
    }
    f->last = u;
    return f->gathered[u];
}

static void release(void *ctx, int u, int again)
{
    scp_fsdp *f = ctx;
    if (u > 0 && u < f->lay.units - 1) f->backward_follows = again;
    if (f->keep && again) return;   /* the backward asks for it again */
    f->gathered[u] = NULL;
}

static float *grads(void *ctx, int u)
{
    scp_fsdp *f = ctx;
    float *g = pooled(f, f->gpool, pool_slot(f, u, 0), sizeof(float));
    /* zeroed, the padding past the unit too (it is reduced with the rest and must add nothing) */
    f->m->backend->zero_bytes(g, (size_t)gathered_floats(&f->lay, u) * sizeof(float));
    f->gbuf[u] = g;
    return g;
}

/* The unit's gradient of this micro-batch, summed over ranks piece by piece, added to this rank's shard. */
static void grads_done(void *ctx, int u)
{
    scp_fsdp *f = ctx;
    const scp_shard_layout *L = &f->lay;
    const scp_backend *be = f->m->backend;
    int64_t per = L->per[u], n = gathered_floats(L, u);
    const float *mine = f->gbuf[u];   /* one rank: the whole unit is its piece */
    scp_dist *d = dist_of(f, u);
    const scp_coll *coll = coll_of(f, u);
    if (L->world_of[u] > 1 && f->reduce_bf16) {
        /* rounded to bf16, summed in bf16 over the ranks, widened again for this rank's fp32 shard */
        uint16_t *h = pooled(f, f->hpool, pool_slot(f, u, 0), sizeof *h);
        if (be->act_size == 2) be->to_act((scp_act *)(void *)h, f->gbuf[u], (size_t)n);
        else scp_convert_from_f32(h, SCP_BF16, f->gbuf[u], (size_t)n);
        if (coll->reduce_scatter_bf16(d, h, f->hpiece, per, "ZeRO gradient reduce-scatter (bf16)")) f->failed = 1;
        if (be->act_size == 2) be->from_act(f->piece, (const scp_act *)(const void *)f->hpiece, (size_t)per);
        else scp_convert_to_f32(f->piece, f->hpiece, SCP_BF16, (size_t)per);
        mine = f->piece;
    } else if (L->world_of[u] > 1) {
        if (coll->reduce_scatter_f32(d, f->gbuf[u], f->piece, per, "ZeRO gradient reduce-scatter")) f->failed = 1;
        mine = f->piece;
    }
    be->add(f->grad + L->shard_off[u], mine, (size_t)per);
    f->gbuf[u] = NULL;
}

/* ---- set-up ---------------------------------------------------------------------------------------------- */
int scp_fsdp_init(scp_fsdp *f, scp_model *m, scp_dist *d, int stage, int keep, int reduce_bf16)
{
    return scp_fsdp_init_experts(f, m, d, NULL, stage, keep, reduce_bf16);
}

int scp_fsdp_init_experts(scp_fsdp *f, scp_model *m, scp_dist *d, scp_dist *replicas, int stage, int keep,
                          int reduce_bf16)
{
    memset(f, 0, sizeof *f);
    /* bf16 reduction converts the gradients with the backend's bf16 storage entries, or on the host */
    if (reduce_bf16 && m->backend->act_size != 2 && !m->backend->host_memory)
        return scp_error("--reduce-dtype bf16: backend '%s' keeps fp32 buffers in device memory, where nothing "
                         "converts them to bf16 (use a bf16 backend, or f32)", m->backend->name);
    f->m = m, f->d = d, f->stage = stage, f->keep = keep && stage == 3;
    const scp_model_config *c = &m->cfg;
    int split = c->expert_ranks > 1;
    if (split && !replicas) return scp_error("an expert-parallel model sharded without its expert groups");
    int64_t *lo = scp_xmalloc(sizeof *lo * (size_t)(2 * c->num_layers + 3));
    int units = scp_param_units_split(m->desc, m->n_params, c->num_layers, split, lo);
    f->unit_expert = scp_xcalloc((size_t)units, 1);
    int *world_of = scp_xmalloc(sizeof *world_of * (size_t)units), *rank_of = scp_xmalloc(sizeof *rank_of * (size_t)units);
    for (int u = 0; u < units; u++) {
        f->unit_expert[u] = split && u > 0 && u < units - 1 && u % 2 == 0;   /* 2 + 2 l: layer l's experts */
        world_of[u] = f->unit_expert[u] ? replicas->world : d->world;
        rank_of[u] = f->unit_expert[u] ? replicas->rank : d->rank;
    }
    scp_shard_layout_init_groups(&f->lay, lo, units, d->world, d->rank, world_of, rank_of);
    free(lo);
    free(world_of);
    free(rank_of);
    f->replicas = replicas;
    f->rcoll = replicas ? scp_coll_for(replicas) : NULL;
    const scp_backend *be = m->backend;
    size_t S = (size_t)f->lay.shard_off[units] * sizeof(float);
    if (stage == 3) f->master = be->alloc(S ? S : 1);
    f->grad = be->alloc(S ? S : 1);
    f->mom_m = be->alloc(S ? S : 1);
    f->mom_v = be->alloc(S ? S : 1);
    int64_t maxper = 1;
    for (int u = 0; u < units; u++) maxper = f->lay.per[u] > maxper ? f->lay.per[u] : maxper;
    f->piece = be->alloc((size_t)maxper * sizeof *f->piece);
    f->coll = scp_coll_for(d);
    f->gathered = scp_xcalloc((size_t)units, sizeof *f->gathered);
    f->gbuf = scp_xcalloc((size_t)units, sizeof *f->gbuf);
    f->xslot = f->keep ? units : 2;   /* keep: slots 2 .. units - 1 are the layers' own (1 + u) */
    f->pool_slots = f->xslot + 2;     /* the last: pslot, with prefetch */
    f->ahead = -1;
    f->wpool = scp_xcalloc((size_t)f->pool_slots, sizeof *f->wpool);
    f->gpool = scp_xcalloc((size_t)f->pool_slots, sizeof *f->gpool);
    f->hpool = scp_xcalloc((size_t)f->pool_slots, sizeof *f->hpool);
    f->reduce_bf16 = reduce_bf16;
    if (reduce_bf16) f->hpiece = be->alloc((size_t)maxper * sizeof(uint16_t));
    scp_param_provider p = {.ctx = f, .grads = grads, .grads_done = grads_done};
    if (stage == 3) p.acquire = acquire, p.release = release;
    scp_model_set_param_provider(m, &p);
    return 0;
}

void scp_fsdp_set_prefetch(scp_fsdp *f, int on)
{
    /* Under expert parallelism a layer is two units held together, which the alternation does not cover; with
     * one rank there is nothing to overlap. */
    f->prefetch = on && f->stage == 3 && !f->replicas && f->d->world > 1;
    f->pslot = f->prefetch && !f->keep ? f->xslot + 1 : 0;
}

void scp_fsdp_free(scp_fsdp *f)
{
    if (!f->m) return;
    const scp_backend *be = f->m->backend;
    scp_fsdp_trim(f);
    free(f->wpool);
    free(f->gpool);
    free(f->hpool);
    if (f->hpiece) be->free(f->hpiece);
    scp_model_set_param_provider(f->m, NULL);
    if (f->master) be->free(f->master);
    be->free(f->grad);
    be->free(f->mom_m);
    be->free(f->mom_v);
    be->free(f->piece);
    free(f->gathered);
    free(f->gbuf);
    free(f->unit_expert);
    scp_shard_layout_free(&f->lay);
    memset(f, 0, sizeof *f);
}

/* ---- parameters and their pieces ------------------------------------------------------------------------- */
/* The unit of parameter i (a parameter never straddles units). */
static int unit_of_param(const scp_fsdp *f, int i)
{
    return scp_shard_unit_of(&f->lay, f->m->offset[i]);
}

/* Parameter i's part of this rank's pieces: [*x, *y) of the parameter vector, starting at the returned offset of
 * the shard. */
static int64_t own_piece(const scp_fsdp *f, int i, int64_t *x, int64_t *y)
{
    int64_t s = f->m->offset[i];
    int u = unit_of_param(f, i);
    return scp_shard_span_piece(&f->lay, u, f->lay.rank_of[u], s, s + f->m->desc[i].numel, x, y);
}

static float *vec_of(scp_fsdp *f, scp_fsdp_vec which)
{
    return which == SCP_FSDP_EXP_AVG ? f->mom_m : which == SCP_FSDP_EXP_AVG_SQ ? f->mom_v : f->master;
}

int scp_fsdp_param_piece(const scp_fsdp *f, scp_fsdp_vec which, int i, int64_t *lo, int64_t *hi)
{
    int64_t s = f->m->offset[i], e = s + f->m->desc[i].numel;
    if (which == SCP_FSDP_WEIGHTS && f->stage == 2) {   /* every rank holds every weight */
        *lo = 0;
        *hi = e - s;
        return 1;
    }
    int64_t x, y;
    own_piece(f, i, &x, &y);
    *lo = x < y ? x - s : 0;
    *hi = x < y ? y - s : 0;
    return x < y;
}

void scp_fsdp_set_param_piece(scp_fsdp *f, scp_fsdp_vec which, int i, const float *piece)
{
    if (which == SCP_FSDP_WEIGHTS && f->stage == 2) {   /* the whole parameter, into m's own weights */
        scp_model_sync_host(f->m);
        memcpy(f->m->weights + f->m->offset[i], piece, (size_t)f->m->desc[i].numel * sizeof *piece);
        scp_model_weights_changed(f->m);
        return;
    }
    int64_t x, y, k = own_piece(f, i, &x, &y);
    if (x < y) f->m->backend->upload(vec_of(f, which) + k, piece, (size_t)(y - x) * sizeof *piece);
}

void scp_fsdp_set_param(scp_fsdp *f, scp_fsdp_vec which, int i, const float *data)
{
    int64_t lo, hi;
    if (scp_fsdp_param_piece(f, which, i, &lo, &hi)) scp_fsdp_set_param_piece(f, which, i, data + lo);
}

int scp_fsdp_gather_param(scp_fsdp *f, scp_fsdp_vec which, int i, int root, float *out)
{
    return scp_fsdp_gather_param_of(f, which, i, 0, 1, root, out);
}

int scp_fsdp_gather_param_of(scp_fsdp *f, scp_fsdp_vec which, int i, int place, int places, int root, float *out)
{
    int64_t s = f->m->offset[i], e = s + f->m->desc[i].numel;
    int u = unit_of_param(f, i);
    if (which == SCP_FSDP_WEIGHTS && f->stage == 2) {
        /* every rank holds its weights; an expert of another place comes from the rank of its place in the first
         * group (dist/expert.h) */
        int src = f->unit_expert[u] ? place : root;
        scp_model_sync_host(f->m);
        return scp_dist_copy_to(f->d, src, root, out, f->m->weights + s, e - s, "sharded checkpoint gather");
    }
    const scp_shard_layout *L = &f->lay;
    int W = f->d->world;
    /* Rank r's share of the tensor is [lo[r], lo[r + 1]) of it: the pieces in rank order, clipped to [s, e); an
     * expert unit's pieces are those of its place's ranks, rank r being rank r / places of that group. */
    int64_t *lo = scp_xmalloc(sizeof *lo * (size_t)(W + 1));
    lo[0] = 0;
    int64_t x, y;
    for (int r = 0; r < W; r++) {
        int piece = r, holds = 1;
        if (f->unit_expert[u]) piece = r / places, holds = r % places == place;
        scp_shard_span_piece(L, u, piece, s, e, &x, &y);
        lo[r + 1] = lo[r] + (holds ? y - x : 0);
    }
    int me = f->d->rank, mine = !f->unit_expert[u] || me % places == place;
    /* This rank's share comes down from the backend's memory; the gather runs over MPI on the host. */
    int64_t k = own_piece(f, i, &x, &y), n = mine && y > x ? y - x : 0;
    float *part = scp_xmalloc((size_t)(n ? n : 1) * sizeof *part);
    if (n) f->m->backend->download(part, vec_of(f, which) + k, (size_t)n * sizeof *part);
    int rc = scp_dist_gather_to(f->d, root, out, part, lo, "sharded checkpoint gather");
    free(part);
    free(lo);
    return rc;
}

/* ---- the step ------------------------------------------------------------------------------------------- */
void scp_fsdp_zero_grad(scp_fsdp *f)
{
    f->m->backend->zero_bytes(f->grad, (size_t)f->lay.shard_off[f->lay.units] * sizeof(float));
}

int scp_fsdp_grad_norm(scp_fsdp *f, double *norm)
{
    double ss = f->m->backend->sumsq(f->grad, (size_t)f->lay.shard_off[f->lay.units]);
    if (scp_dist_allreduce_sum_f64(f->d, &ss, 1, "gradient norm all-reduce")) return -1;
    *norm = sqrt(ss);
    return f->failed ? -1 : 0;
}

void scp_fsdp_scale_grads(scp_fsdp *f, float s)
{
    f->m->backend->scale(f->grad, (size_t)f->lay.shard_off[f->lay.units], s);
}

int scp_fsdp_adamw(scp_fsdp *f, const float *lr, float beta1, float beta2, float eps, float weight_decay,
                   int64_t step)
{
    scp_model *m = f->m;
    const scp_backend *be = m->backend;
    const scp_shard_layout *L = &f->lay;
    /* The bias corrections of scp_model_adamw, so that a piece gets the floats the whole vector would. */
    float bc1 = (float)(1.0 - pow(beta1, (double)step)), bc2 = (float)(1.0 - pow(beta2, (double)step));
    float *master = f->stage == 3 ? f->master : scp_model_master(m);
    for (int i = 0; i < m->n_params; i++) {
        if (lr[i] == 0.0f) continue;   /* a frozen group */
        int64_t x, y, k = own_piece(f, i, &x, &y);
        if (x >= y) continue;
        float *p = f->stage == 3 ? master + k : master + x;
        be->adamw(p, f->grad + k, f->mom_m + k, f->mom_v + k, (size_t)(y - x), lr[i], beta1, beta2, eps,
                  m->desc[i].decay ? weight_decay : 0.0f, bc1, bc2);
    }
    if (f->stage == 2 && L->world > 1) {
        /* Every rank's updated pieces to every rank of the unit's group, unit by unit, through a padded buffer of
         * equal pieces (the last ones run past the unit). */
        int rc = 0;
        for (int u = 0; u < L->units && rc == 0; u++) {
            int64_t a, b, per = L->per[u];
            if (L->world_of[u] == 1) continue;
            float *buf = pooled(f, f->gpool, pool_slot(f, u, 0), sizeof *buf);   /* the unit's gradient buffer, free now */
            scp_shard_piece(L, u, L->rank_of[u], &a, &b);
            if (b > a) be->copy_bytes(buf + (size_t)(L->rank_of[u] * per), master + a, (size_t)(b - a) * sizeof *buf);
            rc = coll_of(f, u)->allgather_pieces(dist_of(f, u), buf, per * (int64_t)sizeof *buf, "ZeRO-2 weight all-gather");
            be->copy_bytes(master + L->unit_lo[u], buf, (size_t)(L->unit_lo[u + 1] - L->unit_lo[u]) * sizeof *buf);
        }
        if (rc) return -1;
    }
    if (f->stage == 2) scp_model_master_changed(m);
    return f->failed ? -1 : 0;
}
