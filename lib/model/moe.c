/* model/moe.c: the mixture-of-experts step of a qwen3_moe layer (HF Qwen3MoeSparseMoeBlock), in place of the
 * dense MLP of model/model.c, written over the backend's table (model/backend.h) like the rest of the driver.
 *
 * Forward, for u = ln2 (M, D), E experts of width Ie, k per row, N = M k assignments:
 *   logits = u Wr^T (M, E); probs = softmax (fp32); idx, weight = top-k (renormalised when norm_topk_prob)
 *   the assignments sorted by expert (a permutation made on the host from the M k downloaded indices: counts
 *   per expert, each expert's rows contiguous in token order): x = u[tok] (N, D)
 *   per expert e on its own rows only: gateup = x We_gu^T (n_e, 2 Ie); h = silu(gate) * up; y = h We_d^T
 *   out = x2 + sum_j weight[r, j] y[pos[r, j]] (the combine, in the order of j)
 * Kept per layer slot for backward: probs, weight, lse, idx and the permutation (tok, pos), and gateup and h in
 * the dense MLP's buffers; y is made again by the backward.
 * Backward: the combine gives dy and d weight; the experts as the dense MLP per expert; dln = the gather's
 * backward (a combine with weight 1); d weight flows through the routing (renormalisation, softmax) into the
 * router's logits, with the load-balancing and z losses (model/moe.h) added there, never through the choice. */
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
    int64_t *router;              /* (L) offset of mlp.gate.weight (E, D) */
    int64_t *gate, *up, *down;    /* (L, E) offsets of the experts' (Ie, D), (Ie, D), (D, Ie) */
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
    size_t LE = (size_t)x->L * x->E;
    x->router = scp_xmalloc((size_t)x->L * sizeof *x->router);
    x->gate = scp_xmalloc(LE * sizeof *x->gate);
    x->up = scp_xmalloc(LE * sizeof *x->up);
    x->down = scp_xmalloc(LE * sizeof *x->down);
    for (int i = 0; i < m->n_params; i++) {
        const scp_param_desc *d = &m->desc[i];
        size_t le = (size_t)d->layer * x->E + (size_t)d->expert;
        if (d->kind == SCP_P_ROUTER) x->router[d->layer] = m->offset[i];
        else if (d->kind == SCP_P_EXP_GATE) x->gate[le] = m->offset[i];
        else if (d->kind == SCP_P_EXP_UP) x->up[le] = m->offset[i];
        else if (d->kind == SCP_P_EXP_DOWN) x->down[le] = m->offset[i];
    }
    x->h_psum = scp_xmalloc((size_t)x->E * sizeof *x->h_psum);
    x->h_dprob = scp_xmalloc((size_t)x->E * sizeof *x->h_dprob);
    x->load = scp_xcalloc((size_t)x->E, sizeof *x->load);
    x->share = 1.0;
    return x;
}

void scp_moe_free(struct scp_moe *x)
{
    if (!x) return;
    free(x->router), free(x->gate), free(x->up), free(x->down), free(x->counts);
    free(x->h_idx), free(x->h_tok), free(x->h_pos), free(x->h_lse), free(x->h_psum), free(x->h_dprob);
    free(x->load);
    free(x);
}

/* ws_reserve allocated the MoE buffers of the workspace; the host scratch of the permutation comes here, sized by
 * the same account (model/workspace_size.h). */
void scp_moe_reserve(scp_model *m, const scp_ws_sizes *z)
{
    struct scp_moe *x = ((workspace *)m->ctx)->moe;
    free(x->counts), free(x->h_idx), free(x->h_tok), free(x->h_pos), free(x->h_lse);
    x->counts = scp_xcalloc(1, z->moe_counts);
    x->h_idx = scp_xmalloc(z->moe_h_idx);
    x->h_tok = scp_xmalloc(z->moe_h_tok);
    x->h_pos = scp_xmalloc(z->moe_h_pos);
    x->h_lse = scp_xmalloc(z->moe_h_lse);
    x->capM = (size_t)z->B * (size_t)z->T, x->slots = (size_t)z->slots;
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

/* out (n, 2 Ie) = u (n, D) [Wg; Wu]^T for expert e of layer l (one matmul when gate and up are adjacent). */
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

/* The experts' outputs before the weights, y (N, D) = h We_d^T on each expert's rows, into the scratch w->moe_x
 * (the gathered inputs are spent by then). Not kept per layer: the backward makes them again (a third of the
 * experts' forward FLOPs, for N D floats a layer). */
static void expert_down(scp_model *m, const struct scp_moe *x, int l, const layer_acts *A, const int *cnt)
{
    workspace *w = m->ctx;
    const int D = x->D, E = x->E, I = x->Ie;
    for (int e = 0, o = 0; e < E; o += cnt[e], e++)
        if (cnt[e])
            m->backend->matmul_fwd(AT(w->moe_x, (size_t)o * D), D, AT(A->hmlp, (size_t)o * I), I,
                                   W(x->down[(size_t)l * E + e]), NULL, cnt[e], I, D, 0.0f);
}

void scp_moe_forward(scp_model *m, int l, const layer_acts *A, int M, scp_act *xout, int to_output)
{
    workspace *w = m->ctx;
    struct scp_moe *x = w->moe;
    const scp_backend *be = m->backend;
    const int D = x->D, E = x->E, k = x->k, I = x->Ie, N = M * k;
    moe_acts a = moe_acts_of(w, A, M);

    be->matmul_fwd(w->moe_logits, E, A->ln2, D, W(x->router[l]), NULL, M, D, E, 0.0f);
    be->moe_route(a.probs, a.idx, a.wt, a.lse, w->moe_psum, w->moe_logits, M, E, k, x->norm);

    /* The permutation: assignment (r, j) goes to position pos of its expert's run; runs in expert order, rows
     * in token order within a run (a counting sort, deterministic). */
    be->download(x->h_idx, a.idx, (size_t)N * sizeof(int32_t));
    int *cnt = a.cnt;
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
    be->upload(a.pos, x->h_pos, (size_t)N * sizeof(int32_t));
    be->upload(a.tok, x->h_tok, (size_t)N * sizeof(int32_t));

    /* Each expert on its own rows. */
    be->gather_rows(w->moe_x, A->ln2, a.tok, N, D);
    for (int e = 0, o = 0; e < E; o += cnt[e], e++)
        if (cnt[e])
            expert_gateup(m, x, (size_t)l * E + e, AT(A->gateup, (size_t)o * 2 * I), AT(w->moe_x, (size_t)o * D), cnt[e]);
    be->swiglu_fwd(A->hmlp, A->gateup, N, I);
    if (!to_output) return;   /* a rerun for backward: y is made again there; the statistics were counted */
    expert_down(m, x, l, A, cnt);
    be->copy_bytes(xout, A->x2, (size_t)M * D * be->act_size);
    be->moe_combine(xout, w->moe_x, a.wt, a.pos, M, k, D, 1.0f);

    /* Statistics and the auxiliary loss values (model/moe.h). */
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

    expert_down(m, x, l, A, cnt);
    be->moe_combine_bwd(w->moe_dy, w->moe_dw, w->dresid, w->moe_x, a.wt, a.pos, M, k, D);
    for (int e = 0, o = 0; e < E; o += cnt[e], e++) {
        if (!cnt[e]) continue;
        size_t le = (size_t)l * E + e;
        const scp_act *dy = AT(w->moe_dy, (size_t)o * D);
        be->matmul_bwd_inp(AT(w->dh, (size_t)o * I), I, dy, D, W(x->down[le]), cnt[e], I, D, 0.0f);
        be->matmul_bwd_w(G(x->down[le]), NULL, dy, D, AT(A->hmlp, (size_t)o * I), I, cnt[e], I, D);
    }
    be->swiglu_bwd(w->dgateup, w->dh, A->gateup, N, I);
    be->gather_rows(w->moe_x, A->ln2, a.tok, N, D);   /* the scratch held another layer's rows */
    for (int e = 0, o = 0; e < E; o += cnt[e], e++) {
        if (!cnt[e]) continue;
        size_t le = (size_t)l * E + e;
        const scp_act *dgu = AT(w->dgateup, (size_t)o * 2 * I), *xe = AT(w->moe_x, (size_t)o * D);
        scp_act *dx = AT(w->moe_dy, (size_t)o * D);   /* this expert's dy is spent: its rows take dx */
        if (x->up[le] == x->gate[le] + (int64_t)I * D) {
            be->matmul_bwd_w(G(x->gate[le]), NULL, dgu, 2 * I, xe, D, cnt[e], D, 2 * I);
            be->matmul_bwd_inp(dx, D, dgu, 2 * I, W(x->gate[le]), cnt[e], D, 2 * I, 0.0f);
        } else {
            be->matmul_bwd_w(G(x->gate[le]), NULL, dgu, 2 * I, xe, D, cnt[e], D, I);
            be->matmul_bwd_w(G(x->up[le]), NULL, AT(dgu, I), 2 * I, xe, D, cnt[e], D, I);
            be->matmul_bwd_inp(dx, D, dgu, 2 * I, W(x->gate[le]), cnt[e], D, I, 0.0f);
            be->matmul_bwd_inp(dx, D, AT(dgu, I), 2 * I, W(x->up[le]), cnt[e], D, I, 1.0f);
        }
    }
    be->moe_combine(w->dln, w->moe_dy, NULL, a.pos, M, k, D, 0.0f);

    /* The router: d weight through the routing, plus the auxiliary losses' gradients on probs and logits. */
    const float *dprob = NULL;
    if (x->aux_coef != 0.0) {
        double s = x->aux_coef * x->share / x->L * E / M;
        for (int e = 0; e < E; e++) x->h_dprob[e] = (float)(s * cnt[e] / N);
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
