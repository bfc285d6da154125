/* dist/expert.c: expert groups, the exchange the MoE layers call, and the gradient sums of expert parallelism
 * (dist/expert.h). */
#include "dist/expert.h"
#include "core/error.h"
#include "dist/coll.h"
#include "model/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int scp_expert_par_init(scp_expert_par *ep, scp_dist *d, int P)
{
    memset(ep, 0, sizeof *ep);
    ep->d = d;
    ep->P = P > 1 ? P : 1;
    if (d->world % ep->P)
        return scp_error("--expert-parallel %d does not divide the %d ranks into expert groups", ep->P, d->world);
    ep->place = d->rank % ep->P;
    /* groups: consecutive ranks (one node's, when ranks fill nodes in order); replicas: one rank per group */
    if (scp_dist_group(d, d->rank / ep->P, d->rank, &ep->group) ||
        scp_dist_group(d, ep->place, d->rank, &ep->replicas))
        return -1;
    return 0;
}

void scp_expert_par_free(scp_expert_par *ep)
{
    scp_dist_group_free(&ep->group);
    scp_dist_group_free(&ep->replicas);
    free(ep->run_lo);
    free(ep->run_expert);
    free(ep->full);
    free(ep->local_of);
    memset(ep, 0, sizeof *ep);
}

/* The groups' time and bytes count as the run's communication. */
static void take_group_time(scp_expert_par *ep, scp_dist *g)
{
    ep->d->comm_seconds += g->comm_seconds;
    ep->d->comm_bytes += g->comm_bytes;
    g->comm_seconds = 0;
    g->comm_bytes = 0;
}

static int exchange(void *ctx, const void *send, const int64_t *send_bytes, void *recv, const int64_t *recv_bytes,
                    const char *what)
{
    scp_expert_par *ep = ctx;
    ep->group.step = ep->d->step;
    int rc = scp_coll_for(&ep->group)->alltoallv(&ep->group, send, send_bytes, recv, recv_bytes, what);
    take_group_time(ep, &ep->group);
    return rc;
}

static int exchange_host(void *ctx, const void *send, const int64_t *send_bytes, void *recv, const int64_t *recv_bytes,
                         const char *what)
{
    scp_expert_par *ep = ctx;
    ep->group.step = ep->d->step;
    int rc = scp_dist_alltoallv(&ep->group, send, send_bytes, recv, recv_bytes, what);
    take_group_time(ep, &ep->group);
    return rc;
}

void scp_expert_par_attach(scp_expert_par *ep, scp_model *m)
{
    ep->m = m;
    if (ep->P > 1) {
        scp_expert_exchange xc = {ep, exchange, exchange_host};
        scp_model_set_expert_exchange(m, &xc);
    }
    /* runs of one kind, in table order */
    ep->run_lo = scp_xmalloc(sizeof *ep->run_lo * (size_t)(m->n_params + 1));
    ep->run_expert = scp_xmalloc((size_t)(m->n_params ? m->n_params : 1));
    ep->runs = 0;
    for (int i = 0; i < m->n_params; i++) {
        char ex = m->desc[i].expert >= 0;
        if (ep->runs == 0 || ep->run_expert[ep->runs - 1] != ex) {
            ep->run_lo[ep->runs] = m->offset[i];
            ep->run_expert[ep->runs++] = ex;
        }
    }
    ep->run_lo[ep->runs] = m->n_weights;
    /* the full table and where its entries are here */
    scp_model_config all = m->cfg;
    all.expert_ranks = 1, all.expert_rank = 0;
    ep->n_full = scp_param_table(&all, &ep->full);
    ep->local_of = scp_xmalloc(sizeof *ep->local_of * (size_t)ep->n_full);
    for (int i = 0; i < ep->n_full; i++) ep->local_of[i] = -1;
    for (int i = 0; i < m->n_params; i++) ep->local_of[m->desc[i].index] = i;
}

/* The gradients where the backend keeps them (a GPU rank's stay on its device: no copy through the host, and
 * AdamW then runs there), each run reduced through the transport for that memory (dist/coll.h). */
int scp_expert_par_reduce_grads(scp_expert_par *ep)
{
    float *g = scp_model_backend_grads(ep->m);
    if (!g) return 0;
    int rc = 0;
    for (int k = 0; k < ep->runs && rc == 0; k++) {
        scp_dist *over = ep->run_expert[k] ? &ep->replicas : ep->d;
        over->step = ep->d->step;
        const char *what = ep->run_expert[k] ? "expert gradient all-reduce" : "gradient all-reduce";
        rc = scp_coll_for(over)->allreduce_f32(over, g + ep->run_lo[k], ep->run_lo[k + 1] - ep->run_lo[k], what);
        if (over != ep->d) take_group_time(ep, over);
    }
    return rc;
}

int scp_expert_par_grad_norm(scp_expert_par *ep, double *norm)
{
    const float *g = scp_model_backend_grads(ep->m);
    const scp_backend *be = ep->m->backend;
    double sq[2] = {0, 0};   /* held by every rank; this place's experts */
    for (int k = 0; g && k < ep->runs; k++)
        sq[(int)ep->run_expert[k]] += be->sumsq(g + ep->run_lo[k], (size_t)(ep->run_lo[k + 1] - ep->run_lo[k]));
    ep->group.step = ep->d->step;
    int rc = scp_dist_allreduce_sum_f64(&ep->group, &sq[1], 1, "expert gradient norm");   /* every expert once */
    take_group_time(ep, &ep->group);
    *norm = sqrt(sq[0] + sq[1]);
    return rc;
}

int scp_expert_par_locate(const scp_expert_par *ep, int i, int *place)
{
    const scp_param_desc *pd = &ep->full[i];
    *place = -1;
    if (pd->expert < 0) return ep->local_of[i];
    int per = ep->m->cfg.num_experts / ep->P;
    *place = pd->expert / per;
    /* the full table lists a layer's experts one after another, three tensors each */
    return ep->local_of[i + 3 * per * (ep->place - *place)];
}

int scp_expert_par_gather_param(scp_expert_par *ep, const float *vec, int i, int root, float *out)
{
    const scp_param_desc *pd = &ep->full[i];
    const scp_model *m = ep->m;
    scp_dist *d = ep->d;
    int place, li = scp_expert_par_locate(ep, i, &place);
    /* Entries every rank holds come from root's own copy; an expert from the rank of its place in group 0. */
    int src = place < 0 ? root : place;
    return scp_dist_copy_to(d, src, root, out, vec + m->offset[li], pd->numel, "checkpoint expert gather");
}

int scp_expert_par_same(scp_expert_par *ep, const float *vec, int64_t n, const char *what)
{
    int same = scp_dist_same(&ep->replicas, vec, (size_t)n * sizeof *vec, what);
    for (int k = 0; k < ep->runs; k++)
        if (!ep->run_expert[k])
            same &= scp_dist_same(ep->d, vec + ep->run_lo[k], (size_t)(ep->run_lo[k + 1] - ep->run_lo[k]) * sizeof *vec,
                                  what);
    return scp_dist_any(ep->d, !same, what) ? 0 : 1;
}
