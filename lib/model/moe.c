/* model/moe.c: the mixture-of-experts step of a qwen3_moe layer (HF Qwen3MoeSparseMoeBlock), in place of the
 * dense MLP of model/model.c, written over the backend's table (model/backend.h) like the rest of the driver.
 *
 * Forward, for u = ln2 (M, D), E experts of width Ie, k per row, N = M k assignments:
 *   logits = u Wr^T (M, E); probs = softmax (fp32); idx, weight = top-k (renormalised when norm_topk_prob)
 *   the assignments sorted by expert (counts per expert, each expert's rows contiguous in token order): x = u[tok]
 *   (N, D)
 *   per expert e on its own rows only: gateup = x We_gu^T (n_e, 2 Ie); h = silu(gate) * up; y = h We_d^T
 *   out = x2 + sum_j weight[r, j] y[pos[r, j]] (the combine, in the order of j)
 * Kept per layer slot for backward: probs, weight, lse, idx and the permutation (tok, pos), and gateup and h in
 * the dense MLP's buffers; y is made again by the backward.
 * Backward: the combine gives dy and d weight; the experts as the dense MLP per expert; dln = the gather's
 * backward (a combine with weight 1); d weight flows through the routing (renormalisation, softmax) into the
 * router's logits, with the load-balancing and z losses (model/moe.h) added there, never through the choice.
 *
 * Expert parallelism (model/model.h scp_expert_exchange): a rank holds El = E / P of the experts, those of its
 * place j in an expert group of P ranks. The routing and the sorted rows are this rank's as above; the rows of
 * each peer's experts (a contiguous run of the sorted rows, experts being sorted) go to that peer by all-to-all,
 * the counts first, and every rank runs its own experts on the rows it receives, (P, El) blocks in the order
 * peer then expert, kept per layer slot with their gate|up and h. The outputs go back to their senders by the
 * reverse all-to-all, into the sorted layout the combine reads. Backward: the owners make y again and send it
 * back (the combine's backward needs it where the routing weights are), the weighted dy goes to the owners, and
 * the inputs' gradients come back: five all-to-alls of N D rows per layer and step, three of them backward.
 *
 * Two ways to run the experts. A backend with SCP_BACKEND_CAP_MOE_GROUPED (model/backend_ops.def) sorts on the
 * device (moe_permute, a stable counting sort over many blocks with the host's result: the run offsets off (E + 1),
 * pos and tok) and runs each of the layer's GEMMs for all its experts in one grouped call that reads the row
 * offsets and the weights' offsets (dwoff) from backend memory:
 * no expert shape crosses to the host between the router and the combine, so a device runs the layer without
 * waiting for the host. The counts come to the host only where the host needs them: under expert parallelism
 * at once (the all-to-all's byte counts are host arguments of MPI_Alltoallv: one download of E + 1 ints, the
 * layer's one synchronisation, as the exchange makes anyway); without it after the combine, with psum and lse
 * for the statistics and the load-balancing loss (one download per layer for the three, where the layer's work
 * is queued already), and in a forward rerun for backward only when the load-balancing gradient needs them.
 * Otherwise (cpu-ref) the M k indices come down, the host sorts, pos and tok go up, and each expert is its own
 * matmul calls on its contiguous rows. On the CPU both ways make the same calls in the same order, so the same
 * bits. */
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "core/error.h"
#include "model/model.h"
#include "model/model_internal.h"
#include "model/moe.h"
#include "model/workspace_size.h"

struct scp_moe {
    int L, E, k, Ie, D, norm;
    int P, El, e0;                /* expert group size (1 without expert parallelism), experts held, the first */
    int64_t *router;              /* (L) offset of mlp.gate.weight (E, D) */
    int64_t *gate, *up, *down;    /* (L, El) offsets of the held experts' (Ie, D), (Ie, D), (D, Ie) */
    scp_expert_exchange xc;       /* the all-to-all over the expert group (P > 1) */
    int64_t *send_b, *recv_b;     /* (P) bytes of one all-to-all */
    int *rcnt;                    /* (slots, P, El) rows each peer sent for each held expert */
    /* Rows received from the group, per layer slot (kept for backward) and as scratch; grown to the largest
     * count seen (the routing decides it: up to P M min(k, El) rows). */
    scp_act **ex_x, **ex_gu, **ex_h;   /* (slots): (R, D) inputs, (R, 2 Ie) gate|up, (R, Ie) h */
    size_t *ex_cap;                    /* (slots) rows they hold */
    scp_act *ex_y, *ex_dh, *ex_dgu;    /* (R, D) outputs, then their gradients, then the inputs'; (R, Ie); (R, 2 Ie) */
    size_t ex_scap;
    int failed;                   /* an exchange failed (its message: scp_last_error) */
    /* The grouped path (SCP_BACKEND_CAP_MOE_GROUPED). The weights of a layer's held experts are found from the
     * first held expert's: element offsets relative to it, the same for the weights and their gradients. */
    int64_t *h_woff;              /* (3, L, El) gate, up, down offsets relative to the layer's first held expert */
    int64_t *dwoff;               /* the same in backend memory */
    int *gu_adjacent;             /* (L) every held expert's up follows its gate: one GEMM of 2 Ie columns */
    int32_t *doff;                /* (slots, E + 1) backend memory: moe_permute's run offsets of each slot */
    int32_t *ex_doff;             /* (slots, P El + 1) backend memory: the received blocks' offsets */
    int32_t *h_off;               /* (max(E, P El) + 1) host scratch for offsets */
    size_t capM, slots;
    int *counts;                  /* (slots, E) assignments per expert of the batch in each slot */
    int32_t *h_idx, *h_tok, *h_pos;   /* (capM k) host copies for the permutation */
    float *h_lse, *h_psum, *h_dprob;  /* (capM), (E), (E) */
    double aux_coef, z_coef, share;
    int64_t *load;                /* (E) statistics since the last reset */
    double aux, z;
};

struct scp_moe *scp_moe_new(const scp_model *m)
{
    const scp_model_config *c = &m->cfg;
    struct scp_moe *x = scp_xcalloc(1, sizeof *x);
    x->L = c->num_layers, x->E = c->num_experts, x->k = c->num_experts_per_tok, x->Ie = c->moe_intermediate_size;
    x->D = c->hidden_size, x->norm = c->norm_topk_prob;
    x->P = c->expert_ranks > 1 ? c->expert_ranks : 1;
    int e_hi = x->E;
    x->e0 = 0;
    if (x->P > 1) scp_expert_range(x->E, x->P, c->expert_rank, &x->e0, &e_hi);
    x->El = e_hi - x->e0;
    size_t LE = (size_t)x->L * x->El;
    x->router = scp_xmalloc((size_t)x->L * sizeof *x->router);
    x->gate = scp_xmalloc(LE * sizeof *x->gate);
    x->up = scp_xmalloc(LE * sizeof *x->up);
    x->down = scp_xmalloc(LE * sizeof *x->down);
    for (int i = 0; i < m->n_params; i++) {
        const scp_param_desc *d = &m->desc[i];
        size_t le = (size_t)d->layer * x->El + (size_t)(d->expert - x->e0);
        if (d->kind == SCP_P_ROUTER) x->router[d->layer] = m->offset[i];
        else if (d->kind == SCP_P_EXP_GATE) x->gate[le] = m->offset[i];
        else if (d->kind == SCP_P_EXP_UP) x->up[le] = m->offset[i];
        else if (d->kind == SCP_P_EXP_DOWN) x->down[le] = m->offset[i];
    }
    x->h_woff = scp_xmalloc(3 * LE * sizeof *x->h_woff);
    x->gu_adjacent = scp_xmalloc((size_t)x->L * sizeof *x->gu_adjacent);
    for (int l = 0; l < x->L; l++) {
        size_t l0 = (size_t)l * x->El;
        x->gu_adjacent[l] = 1;
        for (size_t e = l0; e < l0 + (size_t)x->El; e++) {
            x->h_woff[e] = x->gate[e] - x->gate[l0];
            x->h_woff[LE + e] = x->up[e] - x->up[l0];
            x->h_woff[2 * LE + e] = x->down[e] - x->down[l0];
            if (x->up[e] != x->gate[e] + (int64_t)x->Ie * x->D) x->gu_adjacent[l] = 0;
        }
    }
    int nbmax = x->E > x->P * x->El ? x->E : x->P * x->El;
    x->h_off = scp_xmalloc(((size_t)nbmax + 1) * sizeof *x->h_off);
    x->h_psum = scp_xmalloc((size_t)x->E * sizeof *x->h_psum);
    x->h_dprob = scp_xmalloc((size_t)x->E * sizeof *x->h_dprob);
    x->load = scp_xcalloc((size_t)x->E, sizeof *x->load);
    x->share = 1.0;
    x->send_b = scp_xcalloc((size_t)x->P, sizeof *x->send_b);
    x->recv_b = scp_xcalloc((size_t)x->P, sizeof *x->recv_b);
    return x;
}

/* The received rows' buffers: free them all (the model is freed, or the slots change). */
static void ex_release(const scp_backend *be, struct scp_moe *x)
{
    for (size_t s = 0; x->ex_cap && s < x->slots; s++) be->free(x->ex_x[s]), be->free(x->ex_gu[s]), be->free(x->ex_h[s]);
    if (x->ex_scap) be->free(x->ex_y), be->free(x->ex_dh), be->free(x->ex_dgu);
    free(x->ex_x), free(x->ex_gu), free(x->ex_h), free(x->ex_cap), free(x->rcnt);
    x->ex_x = x->ex_gu = x->ex_h = NULL;
    x->ex_y = x->ex_dh = x->ex_dgu = NULL;
    x->ex_cap = NULL;
    x->rcnt = NULL;
    x->ex_scap = 0;
}

/* The grouped path's buffers. */
static void grouped_release(const scp_backend *be, struct scp_moe *x)
{
    if (x->dwoff) be->free(x->dwoff), be->free(x->doff), be->free(x->ex_doff);
    x->dwoff = NULL, x->doff = x->ex_doff = NULL;
}

void scp_moe_release(const scp_backend *be, struct scp_moe *x)
{
    if (x) ex_release(be, x), grouped_release(be, x);
}

void scp_moe_free(struct scp_moe *x)
{
    if (!x) return;
    free(x->router), free(x->gate), free(x->up), free(x->down), free(x->counts);
    free(x->h_idx), free(x->h_tok), free(x->h_pos), free(x->h_lse), free(x->h_psum), free(x->h_dprob);
    free(x->load), free(x->send_b), free(x->recv_b), free(x->h_woff), free(x->gu_adjacent), free(x->h_off);
    free(x);
}

/* ws_reserve allocated the MoE buffers of the workspace; the host scratch of the permutation comes here, sized by
 * the same account (model/workspace_size.h). */
void scp_moe_reserve(scp_model *m, const scp_ws_sizes *z)
{
    struct scp_moe *x = ((workspace *)m->ctx)->moe;
    const scp_backend *be = m->backend;
    ex_release(be, x);
    grouped_release(be, x);
    free(x->counts), free(x->h_idx), free(x->h_tok), free(x->h_pos), free(x->h_lse);
    x->counts = scp_xcalloc(1, z->moe_counts);
    x->h_idx = scp_xmalloc(z->moe_h_idx);
    x->h_tok = scp_xmalloc(z->moe_h_tok);
    x->h_pos = scp_xmalloc(z->moe_h_pos);
    x->h_lse = scp_xmalloc(z->moe_h_lse);
    x->capM = (size_t)z->B * (size_t)z->T, x->slots = (size_t)z->slots;
    if (x->P > 1) {
        x->rcnt = scp_xcalloc(x->slots * (size_t)x->P * (size_t)x->El, sizeof *x->rcnt);
        x->ex_x = scp_xcalloc(x->slots, sizeof *x->ex_x);
        x->ex_gu = scp_xcalloc(x->slots, sizeof *x->ex_gu);
        x->ex_h = scp_xcalloc(x->slots, sizeof *x->ex_h);
        x->ex_cap = scp_xcalloc(x->slots, sizeof *x->ex_cap);
    }
    if (scp_backend_has(be, SCP_BACKEND_CAP_MOE_GROUPED)) {   /* the weights' offsets go up once */
        size_t n = 3 * (size_t)x->L * x->El * sizeof *x->dwoff;
        x->dwoff = be->alloc(n);
        be->upload(x->dwoff, x->h_woff, n);
        x->doff = be->alloc(x->slots * ((size_t)x->E + 1) * sizeof *x->doff);
        x->ex_doff = be->alloc(x->slots * ((size_t)x->P * x->El + 1) * sizeof *x->ex_doff);
    }
}

/* *buf made (rows, width) in the storage type, its contents not kept. */
static void remake(const scp_backend *be, scp_act **buf, size_t rows, size_t width)
{
    if (*buf) be->free(*buf);
    *buf = be->alloc((rows ? rows : 1) * width * be->act_size);
}

/* Room for R received rows in slot s and in the scratch. */
static void ex_reserve(const scp_backend *be, struct scp_moe *x, int s, size_t R)
{
    size_t D = (size_t)x->D, I = (size_t)x->Ie;
    if (R > x->ex_cap[s] || !x->ex_x[s]) {
        remake(be, &x->ex_x[s], R, D), remake(be, &x->ex_gu[s], R, 2 * I), remake(be, &x->ex_h[s], R, I);
        x->ex_cap[s] = R ? R : 1;
    }
    if (R > x->ex_scap || !x->ex_y) {
        remake(be, &x->ex_y, R, D), remake(be, &x->ex_dh, R, I), remake(be, &x->ex_dgu, R, 2 * I);
        x->ex_scap = R ? R : 1;
    }
}

/* One layer's slot views of the MoE buffers. */
typedef struct moe_acts {
    float *probs, *wt, *lse;
    int32_t *idx, *tok, *pos;
    int *cnt;
} moe_acts;

static moe_acts moe_acts_of(const workspace *w, const layer_acts *A, int M)
{
    const struct scp_moe *x = w->moe;
    size_t s = (size_t)A->slot, Mz = (size_t)M, E = (size_t)x->E, k = (size_t)x->k, N = Mz * k;
    moe_acts a = {
        .probs = w->moe_probs + s * Mz * E, .wt = w->moe_w + s * Mz * k, .lse = w->moe_lse + s * Mz,
        .idx = w->moe_idx + s * Mz * k, .tok = w->moe_tok + s * N,
        .pos = w->moe_pos + s * N, .cnt = x->counts + s * E,
    };
    return a;
}

/* The rows the held experts run on: nb = P El blocks one after another, block b for held expert b % El (E
 * blocks without expert parallelism, (P, El) with it), R rows in all. rows (nb): the counts on the host, for the
 * per-expert calls; doff (nb + 1): the offsets in backend memory, for the grouped ones (NULL: per expert). */
typedef struct expert_blocks {
    const int *rows;
    const int32_t *doff;
    int R;
} expert_blocks;

/* Whether layer l runs grouped: the backend can, and the layer's held experts lie in one buffer (a provider's
 * unit, model/model_internal.h, or the model's vectors), so that offsets from the first of them reach them all. */
static int grouped(const scp_model *m, const struct scp_moe *x, int l)
{
    const workspace *w = m->ctx;
    if (!x->dwoff) return 0;
    if (!w->unit_w && !w->unit_g) return 1;
    size_t l0 = (size_t)l * x->El;
    int u = scp_unit_of(w, x->gate[l0]);
    for (size_t e = l0; e < l0 + (size_t)x->El; e++)
        if (scp_unit_of(w, x->gate[e]) != u || scp_unit_of(w, x->up[e]) != u || scp_unit_of(w, x->down[e]) != u)
            return 0;
    return 1;
}

/* Layer l's weight offsets for the grouped calls: which = 0 gate, 1 up, 2 down, (El) in backend memory. */
static const int64_t *woff_of(const struct scp_moe *x, int which, int l)
{
    return x->dwoff + ((size_t)which * x->L + (size_t)l) * x->El;
}

/* out (n, 2 Ie) = u (n, D) [Wg; Wu]^T for held expert le = l El + e (one matmul when gate and up are adjacent). */
static void expert_gateup(scp_model *m, const struct scp_moe *x, size_t le, scp_act *out, const scp_act *u, int n)
{
    const scp_backend *be = m->backend;
    const int D = x->D, I = x->Ie;
    if (x->up[le] == x->gate[le] + (int64_t)I * D) {
        be->matmul_fwd(out, 2 * I, u, D, W(x->gate[le]), NULL, n, D, 2 * I, 0.0f);
    } else {
        be->matmul_fwd(out, 2 * I, u, D, W(x->gate[le]), NULL, n, D, I, 0.0f);
        be->matmul_fwd(AT(out, I), 2 * I, u, D, W(x->up[le]), NULL, n, D, I, 0.0f);
    }
}

/* The held experts of layer l on rows in blocks: rows[b] rows for held expert b % El, blocks one after another
 * (E blocks without expert parallelism, (P, El) with it). gu (R, 2 Ie) and h (R, Ie) from xin (R, D). */
static void experts_forward(scp_model *m, const struct scp_moe *x, int l, const expert_blocks *bk, const scp_act *xin,
                            scp_act *gu, scp_act *h)
{
    const scp_backend *be = m->backend;
    const int D = x->D, I = x->Ie, nb = x->P * x->El, El = x->El, R = bk->R;
    const size_t l0 = (size_t)l * El;
    if (bk->doff) {
        if (x->gu_adjacent[l]) {
            be->moe_gemm_fwd(gu, 2 * I, xin, D, W(x->gate[l0]), woff_of(x, 0, l), El, bk->doff, nb, R, D, 2 * I, 0.0f);
        } else {
            be->moe_gemm_fwd(gu, 2 * I, xin, D, W(x->gate[l0]), woff_of(x, 0, l), El, bk->doff, nb, R, D, I, 0.0f);
            be->moe_gemm_fwd(AT(gu, I), 2 * I, xin, D, W(x->up[l0]), woff_of(x, 1, l), El, bk->doff, nb, R, D, I, 0.0f);
        }
    } else {
        for (int b = 0, o = 0; b < nb; o += bk->rows[b], b++)
            if (bk->rows[b])
                expert_gateup(m, x, l0 + b % El, AT(gu, (size_t)o * 2 * I), AT(xin, (size_t)o * D), bk->rows[b]);
    }
    be->swiglu_fwd(h, gu, R, I);
}

/* The experts' outputs before the weights, y (R, D) = h We_d^T block by block. Not kept per layer: the backward
 * makes them again (a third of the experts' forward FLOPs, for R D elements a layer). */
static void experts_down(scp_model *m, const struct scp_moe *x, int l, const expert_blocks *bk, const scp_act *h,
                         scp_act *y)
{
    const int D = x->D, I = x->Ie, nb = x->P * x->El;
    const int *rows = bk->rows;
    if (bk->doff) {
        m->backend->moe_gemm_fwd(y, D, h, I, W(x->down[(size_t)l * x->El]), woff_of(x, 2, l), x->El, bk->doff, nb, bk->R,
                                 I, D, 0.0f);
        return;
    }
    for (int b = 0, o = 0; b < nb; o += rows[b], b++)
        if (rows[b])
            m->backend->matmul_fwd(AT(y, (size_t)o * D), D, AT(h, (size_t)o * I), I,
                                   W(x->down[(size_t)l * x->El + b % x->El]), NULL, rows[b], I, D, 0.0f);
}

/* Backward through the down projections: dh (R, Ie) from dy (R, D), and their weight gradients. */
static void experts_down_bwd(scp_model *m, const struct scp_moe *x, int l, const expert_blocks *bk, const scp_act *dy,
                             const scp_act *h, scp_act *dh)
{
    const scp_backend *be = m->backend;
    const int D = x->D, I = x->Ie, nb = x->P * x->El;
    const int *rows = bk->rows;
    if (bk->doff) {
        const int64_t l0 = x->down[(size_t)l * x->El], *wd = woff_of(x, 2, l);
        be->moe_gemm_bwd_inp(dh, I, dy, D, W(l0), wd, x->El, bk->doff, nb, bk->R, I, D, 0.0f);
        be->moe_gemm_bwd_w(G(l0), dy, D, h, I, wd, x->El, bk->doff, nb, bk->R, I, D);
        return;
    }
    for (int b = 0, o = 0; b < nb; o += rows[b], b++) {
        if (!rows[b]) continue;
        size_t le = (size_t)l * x->El + b % x->El;
        const scp_act *dyb = AT(dy, (size_t)o * D);
        be->matmul_bwd_inp(AT(dh, (size_t)o * I), I, dyb, D, W(x->down[le]), rows[b], I, D, 0.0f);
        be->matmul_bwd_w(G(x->down[le]), NULL, dyb, D, AT(h, (size_t)o * I), I, rows[b], I, D);
    }
}

/* Backward through gate|up: dx (R, D) from dgu (R, 2 Ie) and the inputs xin, and their weight gradients. */
static void experts_gateup_bwd(scp_model *m, const struct scp_moe *x, int l, const expert_blocks *bk,
                               const scp_act *dgu_all, const scp_act *xin, scp_act *dx_all)
{
    const scp_backend *be = m->backend;
    const int D = x->D, I = x->Ie, nb = x->P * x->El, El = x->El, R = bk->R;
    const int *rows = bk->rows;
    if (bk->doff) {
        const int64_t g0 = x->gate[(size_t)l * El], u0 = x->up[(size_t)l * El];
        const int64_t *wg = woff_of(x, 0, l), *wu = woff_of(x, 1, l);
        if (x->gu_adjacent[l]) {
            be->moe_gemm_bwd_w(G(g0), dgu_all, 2 * I, xin, D, wg, El, bk->doff, nb, R, D, 2 * I);
            be->moe_gemm_bwd_inp(dx_all, D, dgu_all, 2 * I, W(g0), wg, El, bk->doff, nb, R, D, 2 * I, 0.0f);
        } else {
            be->moe_gemm_bwd_w(G(g0), dgu_all, 2 * I, xin, D, wg, El, bk->doff, nb, R, D, I);
            be->moe_gemm_bwd_w(G(u0), AT(dgu_all, I), 2 * I, xin, D, wu, El, bk->doff, nb, R, D, I);
            be->moe_gemm_bwd_inp(dx_all, D, dgu_all, 2 * I, W(g0), wg, El, bk->doff, nb, R, D, I, 0.0f);
            be->moe_gemm_bwd_inp(dx_all, D, AT(dgu_all, I), 2 * I, W(u0), wu, El, bk->doff, nb, R, D, I, 1.0f);
        }
        return;
    }
    for (int b = 0, o = 0; b < nb; o += rows[b], b++) {
        if (!rows[b]) continue;
        size_t le = (size_t)l * x->El + b % x->El;
        const int n = rows[b];
        const scp_act *dgu = AT(dgu_all, (size_t)o * 2 * I), *xe = AT(xin, (size_t)o * D);
        scp_act *dx = AT(dx_all, (size_t)o * D);
        if (x->up[le] == x->gate[le] + (int64_t)I * D) {
            be->matmul_bwd_w(G(x->gate[le]), NULL, dgu, 2 * I, xe, D, n, D, 2 * I);
            be->matmul_bwd_inp(dx, D, dgu, 2 * I, W(x->gate[le]), n, D, 2 * I, 0.0f);
        } else {
            be->matmul_bwd_w(G(x->gate[le]), NULL, dgu, 2 * I, xe, D, n, D, I);
            be->matmul_bwd_w(G(x->up[le]), NULL, AT(dgu, I), 2 * I, xe, D, n, D, I);
            be->matmul_bwd_inp(dx, D, dgu, 2 * I, W(x->gate[le]), n, D, I, 0.0f);
            be->matmul_bwd_inp(dx, D, AT(dgu, I), 2 * I, W(x->up[le]), n, D, I, 1.0f);
        }
    }
}

/* ---- the exchange over the expert group ---- */
/* Byte counts of the rows of each peer: to[p] the sorted rows of peer p's experts (cnt, E), from[q] what peer q
 * sends (rc, (P, El)); *R receives the rows received. */
static void exchange_sizes(struct scp_moe *x, const int *cnt, const int *rc, size_t row_bytes, int *R)
{
    *R = 0;
    for (int p = 0; p < x->P; p++) {
        int64_t to = 0, from = 0;
        for (int e = 0; e < x->El; e++) to += cnt[p * x->El + e], from += rc[p * x->El + e];
        x->send_b[p] = to * (int64_t)row_bytes;
        x->recv_b[p] = from * (int64_t)row_bytes;
        *R += (int)from;
    }
}

/* Rows to their owners (forward = 1: send_b out, recv_b in) or back (forward = 0). A failure is kept in
 * x->failed, and the step goes on with whatever the buffers hold (the caller checks, and discards it). */
static void exchange(struct scp_moe *x, const void *out, void *in, int forward, const char *what)
{
    if (x->failed) return;
    if (forward ? x->xc.alltoallv(x->xc.ctx, out, x->send_b, in, x->recv_b, what)
                : x->xc.alltoallv(x->xc.ctx, out, x->recv_b, in, x->send_b, what))
        x->failed = 1;
}

/* The counts: rc (P, El) receives the rows each peer routes to the held experts, from this rank's cnt (E), both
 * in host memory: the sizes of the exchanges that follow, which the collectives take on the host (the one host
 * synchronisation of the layer, with the download of the routing it is made from). */
static void exchange_counts(struct scp_moe *x, const int *cnt, int *rc)
{
    for (int p = 0; p < x->P; p++) x->send_b[p] = x->recv_b[p] = (int64_t)x->El * (int64_t)sizeof(int);
    if (!x->failed && x->xc.alltoallv_host(x->xc.ctx, cnt, x->send_b, rc, x->recv_b, "expert count all-to-all"))
        x->failed = 1;
    if (x->failed) memset(rc, 0, (size_t)x->P * (size_t)x->El * sizeof *rc);
}

/* The counts per expert (cnt, E) on the host from the run offsets of slot s in backend memory. */
static void download_counts(const scp_backend *be, struct scp_moe *x, const int32_t *doff, int *cnt)
{
    be->download(x->h_off, doff, ((size_t)x->E + 1) * sizeof *x->h_off);
    for (int e = 0; e < x->E; e++) cnt[e] = x->h_off[e + 1] - x->h_off[e];
}

/* The permutation on the host: the indices come down, assignment (r, j) goes to position pos of its expert's
 * run (runs in expert order, rows in token order within a run: a counting sort, deterministic, the one
 * moe_permute makes), pos and tok go up; cnt (E) receives the counts. */
static void permute_on_host(const scp_backend *be, struct scp_moe *x, const moe_acts *a, int N, int *cnt)
{
    const int E = x->E, k = x->k;
    be->download(x->h_idx, a->idx, (size_t)N * sizeof(int32_t));
    memset(cnt, 0, (size_t)E * sizeof *cnt);
    for (int i = 0; i < N; i++) {
        if ((unsigned)x->h_idx[i] >= (unsigned)E) x->h_idx[i] = 0;   /* never from the backends; in bounds whatever */
        cnt[x->h_idx[i]]++;
    }
    int *next = scp_xmalloc((size_t)E * sizeof *next);
    for (int e = 0, o = 0; e < E; e++) next[e] = o, o += cnt[e];
    for (int i = 0; i < N; i++) {
        int p = next[x->h_idx[i]]++;
        x->h_pos[i] = p;
        x->h_tok[p] = i / k;
    }
    free(next);
    be->upload(a->pos, x->h_pos, (size_t)N * sizeof(int32_t));
    be->upload(a->tok, x->h_tok, (size_t)N * sizeof(int32_t));
}

/* The received blocks of slot s, (P, El) counts rc on the host: their offsets go up for the grouped calls (the
 * counts are on the host already, for the all-to-all). */
static const int32_t *upload_block_offsets(const scp_backend *be, struct scp_moe *x, int s, const int *rc)
{
    const int nb = x->P * x->El;
    int32_t *d = x->ex_doff + (size_t)s * ((size_t)nb + 1);
    x->h_off[0] = 0;
    for (int b = 0; b < nb; b++) x->h_off[b + 1] = x->h_off[b] + rc[b];
    be->upload(d, x->h_off, ((size_t)nb + 1) * sizeof *x->h_off);
    return d;
}

void scp_moe_forward(scp_model *m, int l, const layer_acts *A, int M, scp_act *xout, int to_output)
{
    workspace *w = m->ctx;
    struct scp_moe *x = w->moe;
    const scp_backend *be = m->backend;
    const int D = x->D, E = x->E, k = x->k, N = M * k;
    moe_acts a = moe_acts_of(w, A, M);
    const int grp = grouped(m, x, l);
    int32_t *doff = grp ? x->doff + (size_t)A->slot * ((size_t)E + 1) : NULL;   /* (E + 1) the runs' offsets */

    be->matmul_fwd(w->moe_logits, E, A->ln2, D, W(x->router[l]), NULL, M, D, E, 0.0f);
    be->moe_route(a.probs, a.idx, a.wt, a.lse, w->moe_psum, w->moe_logits, M, E, k, x->norm);

    int *cnt = a.cnt;   /* (E) on the host: at once on the per-expert path, where it is needed below otherwise */
    if (grp) be->moe_permute(doff, a.pos, a.tok, a.idx, M, k, E);
    else permute_on_host(be, x, &a, N, cnt);
    be->gather_rows(w->moe_x, A->ln2, a.tok, N, D);

    if (x->P == 1) {   /* every expert here, on its own rows */
        expert_blocks bk = {cnt, doff, N};
        experts_forward(m, x, l, &bk, w->moe_x, A->gateup, A->hmlp);
        if (!to_output) {   /* a rerun for backward: y is made again there; the statistics were counted */
            if (grp && x->aux_coef != 0.0) download_counts(be, x, doff, cnt);   /* the load-balancing gradient's */
            return;
        }
        experts_down(m, x, l, &bk, A->hmlp, w->moe_x);
    } else {   /* the rows to the experts' owners, the held experts on what comes, the outputs back */
        int s = A->slot, R;
        int *rc = x->rcnt + (size_t)s * x->P * x->El;
        if (grp) download_counts(be, x, doff, cnt);   /* the all-to-all's sizes are host arguments */
        exchange_counts(x, cnt, rc);
        exchange_sizes(x, cnt, rc, (size_t)D * be->act_size, &R);
        ex_reserve(be, x, s, (size_t)R);
        expert_blocks bk = {rc, grp ? upload_block_offsets(be, x, s, rc) : NULL, R};
        exchange(x, w->moe_x, x->ex_x[s], 1, "expert dispatch all-to-all");
        experts_forward(m, x, l, &bk, x->ex_x[s], x->ex_gu[s], x->ex_h[s]);
        if (!to_output) return;   /* every rank of the group reruns this layer together */
        experts_down(m, x, l, &bk, x->ex_h[s], x->ex_y);
        exchange(x, x->ex_y, w->moe_x, 0, "expert combine all-to-all");
    }
    be->copy_bytes(xout, A->x2, (size_t)M * D * be->act_size);
    be->moe_combine(xout, w->moe_x, a.wt, a.pos, M, k, D, 1.0f);

    /* Statistics and the auxiliary loss values (model/moe.h): what they need comes down once the layer's work is
     * queued. */
    if (grp && x->P == 1) download_counts(be, x, doff, cnt);
    be->download(x->h_psum, w->moe_psum, (size_t)E * sizeof(float));
    be->download(x->h_lse, a.lse, (size_t)M * sizeof(float));
    double aux = 0.0, z = 0.0;
    for (int e = 0; e < E; e++) {
        x->load[e] += cnt[e];
        aux += ((double)cnt[e] / N) * ((double)x->h_psum[e] / M);
    }
    for (int r = 0; r < M; r++) z += (double)x->h_lse[r] * x->h_lse[r];
    x->aux += x->share * E * aux / x->L;
    x->z += x->share * (z / M) / x->L;
}

void scp_moe_backward(scp_model *m, int l, const layer_acts *A, int M)
{
    workspace *w = m->ctx;
    struct scp_moe *x = w->moe;
    const scp_backend *be = m->backend;
    const int D = x->D, E = x->E, k = x->k, I = x->Ie, N = M * k;
    moe_acts a = moe_acts_of(w, A, M);
    const int *cnt = a.cnt;
    const int grp = grouped(m, x, l);

    if (x->P == 1) {
        expert_blocks bk = {cnt, grp ? x->doff + (size_t)A->slot * ((size_t)E + 1) : NULL, N};
        experts_down(m, x, l, &bk, A->hmlp, w->moe_x);
        be->moe_combine_bwd(w->moe_dy, w->moe_dw, w->dresid, w->moe_x, a.wt, a.pos, M, k, D);
        experts_down_bwd(m, x, l, &bk, w->moe_dy, A->hmlp, w->dh);
        be->swiglu_bwd(w->dgateup, w->dh, A->gateup, N, I);
        be->gather_rows(w->moe_x, A->ln2, a.tok, N, D);   /* the scratch held y */
        experts_gateup_bwd(m, x, l, &bk, w->dgateup, w->moe_x, w->moe_dy);   /* each block's dy is spent: dx */
    } else {
        int s = A->slot, R;
        const int *rc = x->rcnt + (size_t)s * x->P * x->El;
        exchange_sizes(x, cnt, rc, (size_t)D * be->act_size, &R);
        expert_blocks bk = {rc, grp ? x->ex_doff + (size_t)s * ((size_t)x->P * x->El + 1) : NULL, R};
        experts_down(m, x, l, &bk, x->ex_h[s], x->ex_y);
        exchange(x, x->ex_y, w->moe_x, 0, "expert output all-to-all");
        be->moe_combine_bwd(w->moe_dy, w->moe_dw, w->dresid, w->moe_x, a.wt, a.pos, M, k, D);
        exchange(x, w->moe_dy, x->ex_y, 1, "expert gradient dispatch all-to-all");
        experts_down_bwd(m, x, l, &bk, x->ex_y, x->ex_h[s], x->ex_dh);
        be->swiglu_bwd(x->ex_dgu, x->ex_dh, x->ex_gu[s], R, I);
        experts_gateup_bwd(m, x, l, &bk, x->ex_dgu, x->ex_x[s], x->ex_y);
        exchange(x, x->ex_y, w->moe_dy, 0, "expert gradient combine all-to-all");
    }
    be->moe_combine(w->dln, w->moe_dy, NULL, a.pos, M, k, D, 0.0f);

    /* The router: d weight through the routing, plus the auxiliary losses' gradients on probs and logits. */
    const float *dprob = NULL;
    if (x->aux_coef != 0.0) {
        double sc = x->aux_coef * x->share / x->L * E / M;
        for (int e = 0; e < E; e++) x->h_dprob[e] = (float)(sc * cnt[e] / N);
        be->upload(w->moe_dprob, x->h_dprob, (size_t)E * sizeof(float));
        dprob = w->moe_dprob;
    }
    float zscale = (float)(x->z_coef * x->share / x->L * 2.0 / M);
    be->moe_route_bwd(w->moe_logits, w->moe_dw, a.probs, a.lse, a.idx, a.wt, dprob, zscale, M, E, k, x->norm);
    be->matmul_bwd_inp(w->dln, D, w->moe_logits, E, W(x->router[l]), M, D, E, 1.0f);
    be->matmul_bwd_w(G(x->router[l]), NULL, w->moe_logits, E, A->ln2, D, M, D, E);
}

/* ---- the controls of model/moe.h ---- */
void scp_model_moe_set_losses(scp_model *m, double aux_coef, double z_coef)
{
    struct scp_moe *x = ((workspace *)m->ctx)->moe;
    if (x) x->aux_coef = aux_coef, x->z_coef = z_coef;
}

void scp_model_moe_set_share(scp_model *m, double share)
{
    struct scp_moe *x = ((workspace *)m->ctx)->moe;
    if (x) x->share = share;
}

void scp_model_set_expert_exchange(scp_model *m, const scp_expert_exchange *xc)
{
    struct scp_moe *x = ((workspace *)m->ctx)->moe;
    if (x) x->xc = *xc;
}

int scp_model_expert_exchange_failed(scp_model *m)
{
    struct scp_moe *x = ((workspace *)m->ctx)->moe;
    if (!x || !x->failed) return 0;
    x->failed = 0;
    return 1;
}

void scp_model_moe_reset_stats(scp_model *m)
{
    struct scp_moe *x = ((workspace *)m->ctx)->moe;
    if (!x) return;
    memset(x->load, 0, (size_t)x->E * sizeof *x->load);
    x->aux = x->z = 0.0;
}

int scp_model_moe_stats(const scp_model *m, int64_t *load, double *aux, double *z)
{
    const struct scp_moe *x = ((const workspace *)m->ctx)->moe;
    if (!x) return 0;
    if (load) memcpy(load, x->load, (size_t)x->E * sizeof *load);
    if (aux) *aux = x->aux;
    if (z) *z = x->z;
    return x->E;
}
