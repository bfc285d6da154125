/* model/model.c: the decoder driver, written once over a backend's table of operations (model/backend.h): forward,
 * backward, AdamW, gradient norm. It never computes on numbers itself; it only sequences the operations and owns
 * the workspace (activations kept for backward), which is sized once for the largest batch seen.
 *
 * One layer (M = B * T rows, D hidden, S = (H + 2 KV) hd the width of the joint q|k|v buffer):
 *   ln1 = rmsnorm(x);  qkv = ln1 Wqkv^T (+ bias);  [qk_norm: per-head rmsnorm of q, k];  rope(q, k)
 *   y = attention(q, k, v);  x2 = x + y Wo^T;  ln2 = rmsnorm(x2);  x' = x2 + mlp(ln2)
 * and mlp(u) = (silu(u Wg^T) * (u Wu^T)) Wd^T is a step of its own, where a MoE layer will plug in. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "model/attn_visibility.h"
#include "model/backend.h"
#include "core/error.h"
#include "model/model.h"
#include "model/model_internal.h"
#include "model/workspace_size.h"
#include "core/rng.h"

/* ---- construction ----------------------------------------------------------------------------------------- */
/* The buffers run from `resid` to the end of the struct. */
static void ws_free_buffers(const scp_backend *be, workspace *w)
{
    void **p = (void **)&w->resid, **end = (void **)(w + 1);
    for (; p < end; p++) {
        if (*p) be->free(*p);
        *p = NULL;
    }
}

static void ws_free(const scp_backend *be, workspace *w)
{
    if (!w) return;
    ws_free_buffers(be, w);
    if (w->dweights) be->free(w->dweights);
    if (w->cweights) be->free(w->cweights);
    if (w->kv) be->free(w->kv);
    if (w->dgrads) be->free(w->dgrads);
    if (w->dm) be->free(w->dm);
    if (w->dv) be->free(w->dv);
    free(w->lix);
    free(w->layer_lo);
    free(w->unit_lo);
    free(w->unit_w);
    free(w->unit_g);
    scp_moe_release(be, w->moe);
    scp_moe_free(w->moe);
    free(w);
}

static workspace *ws_new(const scp_model *m)
{
    const scp_model_config *c = &m->cfg;
    workspace *w = scp_xcalloc(1, sizeof *w);
    w->kv_pos = -1;
    w->L = c->num_layers, w->D = c->hidden_size, w->H = c->num_heads, w->KV = c->num_kv_heads, w->hd = c->head_dim;
    w->qd = w->H * w->hd, w->kvd = w->KV * w->hd, w->S = w->qd + 2 * w->kvd, w->I = c->intermediate_size;
    if (c->num_experts) w->I = c->num_experts_per_tok * c->moe_intermediate_size, w->moe = scp_moe_new(m);   /* model/moe.c */
    w->V = c->vocab_size;
    w->lix = scp_xcalloc((size_t)w->L, sizeof *w->lix);
    for (int l = 0; l < w->L; l++) {
        layer_ix *x = &w->lix[l];
        int64_t *slot[SCP_P_KIND_COUNT] = {0};
        slot[SCP_P_ATTN_NORM] = &x->ln1, slot[SCP_P_Q] = &x->q, slot[SCP_P_K] = &x->k, slot[SCP_P_V] = &x->v;
        slot[SCP_P_O] = &x->o, slot[SCP_P_QB] = &x->qb, slot[SCP_P_KB] = &x->kb, slot[SCP_P_VB] = &x->vb;
        slot[SCP_P_OB] = &x->ob, slot[SCP_P_QNORM] = &x->qn, slot[SCP_P_KNORM] = &x->kn;
        slot[SCP_P_MLP_NORM] = &x->ln2, slot[SCP_P_GATE] = &x->gate, slot[SCP_P_UP] = &x->up, slot[SCP_P_DOWN] = &x->down;
        for (int k = 0; k < SCP_P_KIND_COUNT; k++)
            if (slot[k]) *slot[k] = -1;
        for (int i = 0; i < m->n_params; i++)
            if (m->desc[i].layer == l && slot[m->desc[i].kind]) *slot[m->desc[i].kind] = m->offset[i];
        x->qkv_joint = x->qb < 0 && x->k == x->q + (int64_t)w->qd * w->D && x->v == x->k + (int64_t)w->kvd * w->D;
        x->gateup_joint = x->up == x->gate + (int64_t)w->I * w->D;
    }
    w->layer_lo = scp_xcalloc((size_t)w->L + 1, sizeof *w->layer_lo);
    for (int i = m->n_params - 1; i >= 0; i--) {
        int l = m->desc[i].layer;
        if (l >= 0) w->layer_lo[l] = m->offset[i];
        else if (i > 0 && m->desc[i - 1].layer == w->L - 1) w->layer_lo[w->L] = m->offset[i];
    }
    w->lm_head = -1;
    for (int i = 0; i < m->n_params; i++) {
        if (m->desc[i].kind == SCP_P_EMBED) w->embed = m->offset[i];
        if (m->desc[i].kind == SCP_P_LM_HEAD) w->lm_head = m->offset[i];
        if (m->desc[i].kind == SCP_P_FINAL_NORM) w->final_norm = m->offset[i];
    }
    if (w->lm_head < 0) w->lm_head = w->embed;   /* tied: both uses read (and add gradients into) one matrix */
    int split = c->expert_ranks > 1;   /* expert parallelism: a layer's experts are a unit of their own */
    w->unit_lo = scp_xmalloc(sizeof *w->unit_lo * (size_t)(2 * w->L + 3));
    w->units = scp_param_units_split(m->desc, m->n_params, w->L, split, w->unit_lo);
    w->layer_units = split ? 2 : 1;
    return w;
}

static void *ws_alloc(workspace *w, const scp_backend *be, size_t bytes)
{
    w->bytes += (int64_t)bytes;
    return be->alloc(bytes);
}

/* (Re)allocate the activation buffers when a batch is larger than any seen before, or when more layer slots
 * are needed (see layer_acts): every layer keeps its activations only when a backward pass needs them and
 * recomputation is off; a forward-only caller (eval, generation) holds one slot, reused layer after layer. The
 * sizes are model/workspace_size.h's, the account the memory planner adds up. */
static void ws_reserve(scp_model *m, int B, int T, int slots)
{
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    if (B <= w->capB && T <= w->capT && slots <= w->slots) return;
    if (w->slots > slots) slots = w->slots;
    ws_free_buffers(be, w);
    w->slots = slots;
    w->bytes = 0;
    w->capB = B > w->capB ? B : w->capB;
    w->capT = T > w->capT ? T : w->capT;
    int capT = w->capT;
    size_t f = sizeof(float);
    const char *env = getenv("SCP_LOGIT_ROWS");   /* for tests: force small chunks */
    scp_backend_traits tr;
    scp_backend_traits_of(be, &tr);
    scp_ws_sizes z;
    scp_workspace_size(&m->cfg, &tr, w->capB, capT, slots, env && atoi(env) > 0 ? atoi(env) : 0, &z);
    w->att_floats = z.att_floats;
    w->logit_rows = z.logit_rows;
#define WS_ALLOC(b) w->b = z.b ? ws_alloc(w, be, z.b) : NULL;
    SCP_WS_BUFFERS(WS_ALLOC)
#undef WS_ALLOC
    if (w->moe) scp_moe_reserve(m, &z);
    /* RoPE tables for positions 0..capT-1 (double, then fp32). */
    int half = w->hd / 2;
    double *inv = scp_xmalloc((size_t)half * sizeof *inv);
    scp_rope_inv_freq(&m->cfg, inv);
    float *c = scp_xmalloc((size_t)capT * half * f), *s = scp_xmalloc((size_t)capT * half * f);
    for (int t = 0; t < capT; t++)
        for (int i = 0; i < half; i++) c[(size_t)t * half + i] = (float)cos(t * inv[i]), s[(size_t)t * half + i] = (float)sin(t * inv[i]);
    be->upload(w->cos, c, (size_t)capT * half * f);
    be->upload(w->sin, s, (size_t)capT * half * f);
    free(c);
    free(s);
    free(inv);
}

/* OpenBLAS runs one thread per call: the CPU backend splits matmuls over OpenMP threads itself (matmul.c). */
extern void openblas_set_num_threads(int) __attribute__((weak));
static void blas_one_thread(void)
{
    if (openblas_set_num_threads) openblas_set_num_threads(1);
}

static scp_model *model_new(const scp_model_config *cfg, const char *backend, int with_weights)
{
    const scp_backend *be = scp_backend_find(backend);
    if (!be) return NULL;
    if (cfg->num_experts > 0 && !scp_backend_has(be, SCP_BACKEND_CAP_MOE)) {
        scp_error("%s model with %d experts: backend '%s' has no mixture-of-experts operations yet (use cpu)",
                  scp_arch_name(cfg->arch), cfg->num_experts, be->name);
        return NULL;
    }
    if (cfg->hidden_size < 1 || cfg->num_layers < 1 || cfg->num_heads < 1 || cfg->num_kv_heads < 1 ||
        cfg->num_heads % cfg->num_kv_heads || cfg->head_dim < 2 || cfg->head_dim % 2 || cfg->vocab_size < 1 ||
        (cfg->num_experts > 0 ? cfg->moe_intermediate_size : cfg->intermediate_size) < 1) {
        scp_error("model config: inconsistent sizes (hidden %d, layers %d, heads %d/%d, head_dim %d, vocab %d, mlp %d)",
                  cfg->hidden_size, cfg->num_layers, cfg->num_heads, cfg->num_kv_heads, cfg->head_dim, cfg->vocab_size,
                  cfg->intermediate_size);
        return NULL;
    }
    blas_one_thread();   /* also for programs that never call scp_set_threads */
    scp_model *m = scp_xcalloc(1, sizeof *m);
    scp_config_copy(&m->cfg, cfg);
    m->n_params = scp_param_table(&m->cfg, &m->desc);
    m->offset = scp_xmalloc((size_t)m->n_params * sizeof *m->offset);
    int64_t off = 0;
    for (int i = 0; i < m->n_params; i++) m->offset[i] = off, off += m->desc[i].numel;
    m->n_weights = off;
    m->backend = be;
    m->ctx = ws_new(m);
    if (!with_weights) return m;
    if (be->host_memory) {
        m->weights = be->alloc((size_t)off * sizeof(float));
    } else {
        workspace *w = m->ctx;
        m->weights = scp_xcalloc((size_t)off, sizeof(float));
        w->dweights = be->alloc((size_t)off * sizeof(float));
        if (be->act_size != sizeof(float)) w->cweights = be->alloc((size_t)off * be->act_size);
        w->weights_dirty = 1;
    }
    return m;
}

scp_model *scp_model_new(const scp_model_config *cfg, const char *backend) { return model_new(cfg, backend, 1); }

scp_model *scp_model_new_shell(const scp_model_config *cfg, const char *backend) { return model_new(cfg, backend, 0); }

int scp_model_set_param_provider(scp_model *m, const scp_param_provider *p)
{
    workspace *w = m->ctx;
    free(w->unit_w);
    free(w->unit_g);
    w->unit_w = NULL, w->unit_g = NULL;
    memset(&w->prov, 0, sizeof w->prov);
    if (p) {
        w->prov = *p;
        if (p->acquire) w->unit_w = scp_xcalloc((size_t)w->units, sizeof *w->unit_w);
        if (p->grads) w->unit_g = scp_xcalloc((size_t)w->units, sizeof *w->unit_g);
    }
    return w->units;
}

/* Unit u's weights held from the provider (nothing without a weight provider), and given back; `again`: the
 * backward of the same batch will ask for them again. */
static void hold_weights(scp_model *m, int u)
{
    workspace *w = m->ctx;
    if (w->unit_w && !w->unit_w[u]) w->unit_w[u] = w->prov.acquire(w->prov.ctx, u);
}

static void drop_weights(scp_model *m, int u, int again)
{
    workspace *w = m->ctx;
    if (!w->unit_w || !w->unit_w[u]) return;
    w->prov.release(w->prov.ctx, u, again);
    w->unit_w[u] = NULL;
}

/* The units of layer l (model/model.h: one, or two under expert parallelism) held, given back, their gradient
 * buffers taken and handed back. */
static void hold_layer(scp_model *m, int l)
{
    const workspace *w = m->ctx;
    for (int k = 0; k < w->layer_units; k++) hold_weights(m, 1 + l * w->layer_units + k);
}

static void drop_layer(scp_model *m, int l, int again)
{
    const workspace *w = m->ctx;
    for (int k = 0; k < w->layer_units; k++) drop_weights(m, 1 + l * w->layer_units + k, again);
}

/* The units outside the layers, held from the start of a forward to the end of its use. */
static void drop_outer_weights(scp_model *m)
{
    workspace *w = m->ctx;
    drop_weights(m, w->units - 1, 0);
    drop_weights(m, 0, 0);
}

/* Unit u's gradient buffer from the provider, and its hand-back once the backward has made it. */
static void take_grads(scp_model *m, int u)
{
    workspace *w = m->ctx;
    if (w->unit_g && !w->unit_g[u]) w->unit_g[u] = w->prov.grads(w->prov.ctx, u);
}

static void give_grads(scp_model *m, int u)
{
    workspace *w = m->ctx;
    if (!w->unit_g || !w->unit_g[u]) return;
    w->prov.grads_done(w->prov.ctx, u);
    w->unit_g[u] = NULL;
}

static void take_layer_grads(scp_model *m, int l)
{
    const workspace *w = m->ctx;
    for (int k = 0; k < w->layer_units; k++) take_grads(m, 1 + l * w->layer_units + k);
}

static void give_layer_grads(scp_model *m, int l)
{
    const workspace *w = m->ctx;
    for (int k = w->layer_units - 1; k >= 0; k--) give_grads(m, 1 + l * w->layer_units + k);
}

void scp_model_free(scp_model *m)
{
    if (!m) return;
    ws_free(m->backend, m->ctx);
    if (m->backend->host_memory) {
        m->backend->free(m->weights);
        if (m->grads) m->backend->free(m->grads);
    } else {
        free(m->weights);
        free(m->grads);
    }
    free(m->desc);
    free(m->offset);
    scp_config_free(&m->cfg);
    free(m);
}

float *scp_model_param(scp_model *m, int i) { return m->weights + m->offset[i]; }

int scp_model_find(const scp_model *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->desc[i].name, name) == 0) return i;
    return -1;
}

void scp_param_init_random(const scp_param_desc *d, int i, uint64_t seed, float std, float *p)
{
    int norm = d->kind == SCP_P_ATTN_NORM || d->kind == SCP_P_MLP_NORM || d->kind == SCP_P_FINAL_NORM ||
               d->kind == SCP_P_QNORM || d->kind == SCP_P_KNORM;
    if (norm) {
        for (int64_t k = 0; k < d->numel; k++) p[k] = 1.0f;
    } else if (d->ndim == 1) {
        memset(p, 0, (size_t)d->numel * sizeof *p);
    } else {
        scp_rng r;
        scp_rng_init(&r, seed, (uint64_t)i);   /* one stream per tensor: independent of the table's sizes */
        for (int64_t k = 0; k < d->numel; k++) p[k] = (float)(std * scp_rng_normal(&r));
    }
}

void scp_model_init_random(scp_model *m, uint64_t seed, float std)
{
    for (int i = 0; i < m->n_params; i++)
        scp_param_init_random(&m->desc[i], m->desc[i].index, seed, std, m->weights + m->offset[i]);
    scp_model_weights_changed(m);
}

/* ---- host and device --------------------------------------------------------------------------------------
 * On a device backend the weights, gradients and AdamW moments live on the device between steps: a step, the
 * gradient norm and scaling and AdamW all run there, and nothing crosses the bus per step but the batch and the
 * loss. The host arrays (m->weights, m->grads, the caller's moments) are copies brought up to date on demand:
 * scp_model_sync_host before a caller reads them (checkpoints, an MPI all-reduce), scp_model_weights_changed or
 * scp_model_grads_changed after a caller wrote them (loading, init, an all-reduce), after which the device copy
 * is refreshed before it is next used. A caller that hands AdamW other moment arrays, or whose gradients were
 * changed on the host, gets the update on the host with the CPU backend's entries (then the new weights go
 * up before the next step). On the CPU nothing is copied: the host arrays are the backend's buffers. */
static int on_device(const scp_model *m) { return !m->backend->host_memory; }

/* The gradients down to the host when the device holds newer ones. */
static void grads_to_host(const scp_model *m)
{
    workspace *w = m->ctx;
    if (!on_device(m) || !w->grads_on_dev || !m->grads) return;
    m->backend->download(m->grads, w->dgrads, (size_t)m->n_weights * sizeof(float));
    w->grads_on_dev = 0;
}

void scp_model_sync_host(const scp_model *m)
{
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    if (!on_device(m)) return;
    size_t bytes = (size_t)m->n_weights * sizeof(float);
    if (w->weights_on_dev) be->download(m->weights, w->dweights, bytes), w->weights_on_dev = 0;
    grads_to_host(m);
    if (w->moments_on_dev) {
        be->download(w->host_m, w->dm, bytes);
        be->download(w->host_v, w->dv, bytes);
        w->moments_on_dev = 0;
    }
}

float *scp_model_host_grads(scp_model *m)
{
    grads_to_host(m);
    return m->grads;
}

void scp_model_weights_changed(scp_model *m)
{
    workspace *w = m->ctx;
    w->weights_dirty = w->grads_dirty = w->moments_dirty = 1;
    w->weights_on_dev = w->grads_on_dev = w->moments_on_dev = 0;
}

void scp_model_grads_changed(scp_model *m)
{
    workspace *w = m->ctx;
    w->grads_dirty = 1;
    w->grads_on_dev = 0;
}

/* The weights the kernels read, after the fp32 master changed on the device (bf16 storage only). */
static void remake_compute_weights(scp_model *m)
{
    workspace *w = m->ctx;
    if (w->cweights) m->backend->to_act(w->cweights, w->dweights, (size_t)m->n_weights);
}

static void sync_weights_to_device(scp_model *m)
{
    workspace *w = m->ctx;
    if (!on_device(m) || !w->weights_dirty) return;
    m->backend->upload(w->dweights, m->weights, (size_t)m->n_weights * sizeof(float));
    remake_compute_weights(m);
    w->weights_dirty = 0;
}

static void sync_grads_to_device(scp_model *m)
{
    workspace *w = m->ctx;
    if (!on_device(m) || !w->grads_dirty) return;
    m->backend->upload(w->dgrads, m->grads, (size_t)m->n_weights * sizeof(float));
    w->grads_dirty = 0;
}

float *scp_model_master(scp_model *m)
{
    sync_weights_to_device(m);
    return DW(m);
}

void scp_model_master_changed(scp_model *m)
{
    workspace *w = m->ctx;
    if (!on_device(m)) return;
    remake_compute_weights(m);
    w->weights_on_dev = 1;
}

float *scp_model_backend_grads(scp_model *m)
{
    if (!m->grads) return NULL;
    workspace *w = m->ctx;
    if (on_device(m) && !w->grads_on_dev) {   /* the host copy is the newer: it goes up, and the device's is current */
        w->grads_dirty = 1;
        sync_grads_to_device(m);
        w->grads_on_dev = 1;
    }
    return DG(m);
}

void scp_model_alloc_grads(scp_model *m)
{
    if (m->grads) return;
    if (m->backend->host_memory) {
        m->grads = m->backend->alloc((size_t)m->n_weights * sizeof(float));
    } else {
        workspace *w = m->ctx;
        m->grads = scp_xcalloc((size_t)m->n_weights, sizeof(float));
        w->dgrads = m->backend->alloc((size_t)m->n_weights * sizeof(float));
        w->grads_dirty = w->grads_on_dev = 0;
    }
}

void scp_model_zero_grad(scp_model *m)
{
    scp_model_alloc_grads(m);
    workspace *w = m->ctx;
    if (on_device(m)) {   /* the host copy is left stale: the device is the truth until synced */
        m->backend->zero_bytes(w->dgrads, (size_t)m->n_weights * sizeof(float));
        w->grads_dirty = 0;
        w->grads_on_dev = 1;
    } else {
        m->backend->zero_bytes(m->grads, (size_t)m->n_weights * sizeof(float));
    }
}

/* Where the gradients are current: the backend's array and its entries, or the host's and the CPU's. */
static int grads_live_on_device(const scp_model *m)
{
    const workspace *w = m->ctx;
    return m->backend->host_memory || w->grads_on_dev;
}

double scp_model_grad_norm(const scp_model *m)
{
    if (!m->grads) return 0.0;
    if (grads_live_on_device(m)) return sqrt(m->backend->sumsq(DG(m), (size_t)m->n_weights));
    return sqrt(scp_backend_cpu.sumsq(m->grads, (size_t)m->n_weights));
}

/* Sums of squares per group of a (n_weights) vector x in be's memory: runs of adjacent parameters of one group in
 * one call, a few calls per layer. */
static void sumsq_groups(const scp_model *m, const scp_backend *be, const float *x, double *out)
{
    for (int g = 0; g < SCP_GROUP_COUNT; g++) out[g] = 0.0;
    for (int i = 0; i < m->n_params;) {
        scp_group g = m->desc[i].group;
        int j = i + 1;
        while (j < m->n_params && m->desc[j].group == g) j++;
        int64_t o = m->offset[i], n = m->offset[j - 1] + m->desc[j - 1].numel - o;
        out[g] += be->sumsq(x + o, (size_t)n);
        i = j;
    }
}

void scp_model_grad_sumsq_groups(const scp_model *m, double *out)
{
    if (!m->grads) {
        for (int g = 0; g < SCP_GROUP_COUNT; g++) out[g] = 0.0;
        return;
    }
    int dev = grads_live_on_device(m);
    sumsq_groups(m, dev ? m->backend : &scp_backend_cpu, dev ? DG(m) : m->grads, out);
}

void scp_model_sumsq_groups(const scp_model *m, const float *x, double *out) { sumsq_groups(m, m->backend, x, out); }

void scp_model_scale_grads(scp_model *m, float s)
{
    if (!m->grads) return;
    if (grads_live_on_device(m)) {
        m->backend->scale(DG(m), (size_t)m->n_weights, s);
    } else {
        scp_backend_cpu.scale(m->grads, (size_t)m->n_weights, s);
        ((workspace *)m->ctx)->grads_dirty = 1;
    }
}

/* Make the device moments copies of opt_m, opt_v (allocating them the first time). */
static void moments_to_device(scp_model *m, float *opt_m, float *opt_v)
{
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    size_t bytes = (size_t)m->n_weights * sizeof(float);
    if (w->moments_on_dev && (w->host_m != opt_m || w->host_v != opt_v)) scp_model_sync_host(m);  /* keep the old */
    if (!w->dm) w->dm = be->alloc(bytes), w->dv = be->alloc(bytes), w->moments_dirty = 1;
    if (w->host_m != opt_m || w->host_v != opt_v || w->moments_dirty) {
        be->upload(w->dm, opt_m, bytes);
        be->upload(w->dv, opt_v, bytes);
        w->host_m = opt_m, w->host_v = opt_v, w->moments_dirty = 0;
    }
}

void scp_model_adamw(scp_model *m, float *opt_m, float *opt_v, const float *lr, float beta1, float beta2, float eps,
                     float weight_decay, int64_t step)
{
    if (!m->grads) return;
    workspace *w = m->ctx;
    float bc1 = (float)(1.0 - pow(beta1, (double)step)), bc2 = (float)(1.0 - pow(beta2, (double)step));
    /* On a device whose gradients are current there, the whole update stays there; otherwise it runs on the
     * host arrays (brought up to date first). */
    int dev = on_device(m) && w->grads_on_dev;
    const scp_backend *be = dev || !on_device(m) ? m->backend : &scp_backend_cpu;
    float *P = m->weights, *Gr = m->grads, *Mm = opt_m, *Vv = opt_v;
    if (dev) {
        sync_weights_to_device(m);
        moments_to_device(m, opt_m, opt_v);
        P = w->dweights, Gr = w->dgrads, Mm = w->dm, Vv = w->dv;
    } else if (on_device(m)) {
        scp_model_sync_host(m);
        if (w->host_m == opt_m) w->moments_dirty = 1;   /* the device copy goes stale */
    }
    /* Runs of adjacent parameters with the same rate and decay go in one call (the update is elementwise). */
    for (int i = 0; i < m->n_params;) {
        int dec = m->desc[i].decay, j = i + 1;
        while (j < m->n_params && lr[j] == lr[i] && m->desc[j].decay == dec) j++;
        if (lr[i] != 0.0f) {   /* 0: a frozen group, weights and moments untouched */
            int64_t o = m->offset[i], n = m->offset[j - 1] + m->desc[j - 1].numel - o;
            be->adamw(P + o, Gr + o, Mm + o, Vv + o, (size_t)n, lr[i], beta1, beta2, eps, dec ? weight_decay : 0.0f, bc1,
                      bc2);
        }
        i = j;
    }
    if (dev) w->weights_on_dev = w->moments_on_dev = 1, remake_compute_weights(m);
    else if (on_device(m)) w->weights_dirty = 1;
}

int64_t scp_model_workspace_bytes(const scp_model *m) { return ((const workspace *)m->ctx)->bytes; }

void scp_set_threads(int n)
{
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#endif
    blas_one_thread();
}

/* ---- attention visibility ------------------------------------------------------------------------------- */
/* The kernels' form of b's attention mode (model/attn_visibility.h): annealed attention is causal attention with
 * a threshold for its future keys. The document ids are the caller's to place (host or backend memory). */
static void attn_rule_of(const scp_batch *b, scp_attn_args *a)
{
    a->causal = b->attn != SCP_ATTN_BIDIRECTIONAL;
    a->anneal_seed = b->attn == SCP_ATTN_ANNEAL ? b->anneal_seed : 0;
    a->anneal_thresh = b->attn == SCP_ATTN_ANNEAL ? scp_attn_anneal_threshold(b->anneal_p) : 0;
}

int scp_attn_visible(const scp_batch *b, int bi, int i, int j)
{
    scp_attn_args a = {.T = b->T, .doc = b->doc};
    attn_rule_of(b, &a);
    return scp_attn_visible_at(&a, bi, i, j);
}

/* ---- forward and backward ---------------------------------------------------------------------------------- */
static int check_batch(const scp_model *m, const scp_batch *b, int need_target)
{
    if (b->B < 1 || b->T < 1) return scp_error("model: empty batch (B = %d, T = %d)", b->B, b->T);
    if (!b->input || (need_target && !b->target)) return scp_error("model: batch without input or target ids");
    int V = m->cfg.vocab_size;
    for (int64_t k = 0; k < (int64_t)b->B * b->T; k++) {
        if (b->input[k] < 0 || b->input[k] >= V)
            return scp_error("model: input id %d at position %lld is outside the vocabulary (%d rows)", b->input[k],
                             (long long)k, V);
        if (need_target && (b->target[k] < -1 || b->target[k] >= V))
            return scp_error("model: target id %d at position %lld is outside the vocabulary (%d rows)", b->target[k],
                             (long long)k, V);
    }
    if (b->attn == SCP_ATTN_ANNEAL && !(b->anneal_p >= 0 && b->anneal_p <= 1))
        return scp_error("model: anneal probability %g is not in [0, 1]", b->anneal_p);
    return 0;
}

/* The activations of layer slot `slot` for a batch of M rows (B sequences of T). */
static layer_acts acts_of(const scp_model *m, int slot, int B, int T)
{
    const workspace *w = m->ctx;
    size_t M = (size_t)B * T, s = (size_t)slot, D = (size_t)w->D, S = (size_t)w->S, I = (size_t)w->I;
    layer_acts a = {
        .slot = slot, .ln1 = AT(w->ln1, s * M * D), .rstd1 = w->rstd1 + s * M, .qkv = AT(w->qkv, s * M * S),
        .qkv_raw = w->qkv_raw ? AT(w->qkv_raw, s * M * S) : NULL,
        .qk_rstd = w->qk_rstd ? w->qk_rstd + s * M * (size_t)(w->H + w->KV) : NULL,
        .att = w->att + s * m->backend->attn_state_floats(B, w->H, T), .atty = AT(w->atty, s * M * (size_t)w->qd),
        .x2 = AT(w->resid2, s * M * D), .ln2 = AT(w->ln2, s * M * D), .rstd2 = w->rstd2 + s * M,
        .gateup = AT(w->gateup, s * M * 2 * I), .hmlp = AT(w->hmlp, s * M * I),
    };
    return a;
}

/* The MLP step of layer l: xout (M, D) = x2 + mlp(ln2) (a MoE layer replaces this step). With to_output 0
 * (recomputation) only the activations backward reads are made, not xout. */
static void mlp_forward(scp_model *m, int l, const layer_acts *A, int M, scp_act *xout, int to_output)
{
    workspace *w = m->ctx;
    if (w->moe) { scp_moe_forward(m, l, A, M, xout, to_output); return; }   /* model/moe.c */
    const scp_backend *be = m->backend;
    const layer_ix *x = &w->lix[l];
    const int D = w->D, I = w->I;
    if (x->gateup_joint) {
        be->matmul_fwd(A->gateup, 2 * I, A->ln2, D, W(x->gate), NULL, M, D, 2 * I, 0.0f);
    } else {
        be->matmul_fwd(A->gateup, 2 * I, A->ln2, D, W(x->gate), NULL, M, D, I, 0.0f);
        be->matmul_fwd(AT(A->gateup, I), 2 * I, A->ln2, D, W(x->up), NULL, M, D, I, 0.0f);
    }
    be->swiglu_fwd(A->hmlp, A->gateup, M, I);
    if (!to_output) return;
    be->copy_bytes(xout, A->x2, (size_t)M * D * be->act_size);
    be->matmul_fwd(xout, D, A->hmlp, I, W(x->down), NULL, M, I, D, 1.0f);
}

/* Backward of the MLP step: w->dln (M, D) = d loss / d ln2 from w->dresid = d loss / d xout; weight
 * gradients added. */
static void mlp_backward(scp_model *m, int l, const layer_acts *A, int M)
{
    workspace *w = m->ctx;
    if (w->moe) { scp_moe_backward(m, l, A, M); return; }
    const scp_backend *be = m->backend;
    const layer_ix *x = &w->lix[l];
    const int D = w->D, I = w->I;
    be->matmul_bwd_inp(w->dh, I, w->dresid, D, W(x->down), M, I, D, 0.0f);
    be->matmul_bwd_w(G(x->down), NULL, w->dresid, D, A->hmlp, I, M, I, D);
    be->swiglu_bwd(w->dgateup, w->dh, A->gateup, M, I);
    if (x->gateup_joint) {
        be->matmul_bwd_inp(w->dln, D, w->dgateup, 2 * I, W(x->gate), M, D, 2 * I, 0.0f);
        be->matmul_bwd_w(G(x->gate), NULL, w->dgateup, 2 * I, A->ln2, D, M, D, 2 * I);
    } else {
        be->matmul_bwd_inp(w->dln, D, w->dgateup, 2 * I, W(x->gate), M, D, I, 0.0f);
        be->matmul_bwd_inp(w->dln, D, AT(w->dgateup, I), 2 * I, W(x->up), M, D, I, 1.0f);
        be->matmul_bwd_w(G(x->gate), NULL, w->dgateup, 2 * I, A->ln2, D, M, D, I);
        be->matmul_bwd_w(G(x->up), NULL, AT(w->dgateup, I), 2 * I, A->ln2, D, M, D, I);
    }
}

/* Layer l's forward from its input resid[l] into the activations A; writes resid[l + 1] unless to_output is 0
 * (recomputation before backward, when resid[l + 1] is already there). */
static void layer_forward(scp_model *m, int l, const layer_acts *A, const scp_attn_args *aa, int to_output)
{
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    const layer_ix *x = &w->lix[l];
    const int T = aa->T, M = aa->B * aa->T, D = w->D, S = w->S, qd = w->qd, kvd = w->kvd;
    const float eps = (float)m->cfg.rms_norm_eps;
    scp_act *xin = AT(w->resid, (size_t)l * M * D), *qkv = A->qkv;
    /* Decoding one new position (M = 1): its q|k|v row goes straight into the cache, rotated for its position. */
    const scp_act *cache = w->kv ? AT(w->kv, (size_t)l * w->kv_cap * S) : NULL;
    const float *cs = w->cos, *sn = w->sin;   /* decoding: T = 1, the table from row kv_pos */
    if (w->kv_pos >= 0) {
        qkv = AT(cache, (size_t)w->kv_pos * S);
        cs += (size_t)w->kv_pos * (w->hd / 2), sn += (size_t)w->kv_pos * (w->hd / 2);
    }
    scp_act *k = AT(qkv, qd), *v = AT(qkv, qd + kvd);
    be->rmsnorm_fwd(A->ln1, A->rstd1, xin, W(x->ln1), M, 1, D, D, eps);
    if (x->qkv_joint) {
        be->matmul_fwd(qkv, S, A->ln1, D, W(x->q), NULL, M, D, S, 0.0f);
    } else {
        be->matmul_fwd(qkv, S, A->ln1, D, W(x->q), OPT(x->qb), M, D, qd, 0.0f);
        be->matmul_fwd(k, S, A->ln1, D, W(x->k), OPT(x->kb), M, D, kvd, 0.0f);
        be->matmul_fwd(v, S, A->ln1, D, W(x->v), OPT(x->vb), M, D, kvd, 0.0f);
    }
    /* q and k are side by side (k from column qd = H hd): the rotation takes them as one block of H + KV heads */
    if (m->cfg.qk_norm)
        be->qk_norm_rope_fwd(qkv, A->qkv_raw, A->qk_rstd, W(x->qn), W(x->kn), cs, sn, M, T, w->H, w->KV, w->hd, S, eps);
    else
        be->rope(qkv, cs, sn, M, T, w->H + w->KV, w->hd, S, 0);
    if (w->kv_pos >= 0) {
        be->attention_decode(A->atty, qkv, AT(cache, qd), AT(cache, qd + kvd), w->kv_pos + 1, w->H, w->KV, w->hd, S,
                             aa->scale);
    } else {
        if (w->kv_fill) be->copy_bytes(AT(w->kv, (size_t)l * w->kv_cap * S), qkv, (size_t)M * S * be->act_size);
        be->attention_fwd(A->atty, A->att, qkv, k, v, aa);
    }
    be->copy_bytes(A->x2, xin, (size_t)M * D * be->act_size);
    be->matmul_fwd(A->x2, D, A->atty, qd, W(x->o), OPT(x->ob), M, qd, D, 1.0f);
    be->rmsnorm_fwd(A->ln2, A->rstd2, A->x2, W(x->ln2), M, 1, D, D, eps);
    mlp_forward(m, l, A, M, AT(xin, (size_t)M * D), to_output);
}

/* Layer l's backward: w->dresid holds d loss / d resid[l + 1] on entry and d loss / d resid[l] on return;
 * weight gradients are added. */
static void layer_backward(scp_model *m, int l, const layer_acts *A, const scp_attn_args *aa)
{
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    const layer_ix *x = &w->lix[l];
    const int T = aa->T, M = aa->B * aa->T, D = w->D, S = w->S, qd = w->qd, kvd = w->kvd;
    const scp_act *xin = AT(w->resid, (size_t)l * M * D), *qkv = A->qkv;
    scp_act *dq = w->dqkv, *dk = AT(w->dqkv, qd), *dv = AT(w->dqkv, qd + kvd);
    mlp_backward(m, l, A, M);
    be->rmsnorm_bwd(w->dresid, G(x->ln2), w->dln, A->x2, W(x->ln2), A->rstd2, M, 1, D, D, 1);
    /* attention */
    be->matmul_bwd_inp(w->datty, qd, w->dresid, D, W(x->o), M, qd, D, 0.0f);
    be->matmul_bwd_w(G(x->o), OPTG(x->ob), w->dresid, D, A->atty, qd, M, qd, D);
    be->attention_bwd(dq, dk, dv, w->datty, A->atty, A->att, qkv, AT(qkv, qd), AT(qkv, qd + kvd), aa);
    if (m->cfg.qk_norm)
        be->qk_norm_rope_bwd(dq, G(x->qn), G(x->kn), A->qkv_raw, W(x->qn), W(x->kn), A->qk_rstd, w->cos, w->sin, M, T,
                             w->H, w->KV, w->hd, S);
    else
        be->rope(dq, w->cos, w->sin, M, T, w->H + w->KV, w->hd, S, 1);
    if (x->qkv_joint) {
        be->matmul_bwd_inp(w->dln, D, w->dqkv, S, W(x->q), M, D, S, 0.0f);
        be->matmul_bwd_w(G(x->q), NULL, w->dqkv, S, A->ln1, D, M, D, S);
    } else {
        be->matmul_bwd_inp(w->dln, D, w->dqkv, S, W(x->q), M, D, qd, 0.0f);
        be->matmul_bwd_inp(w->dln, D, dk, S, W(x->k), M, D, kvd, 1.0f);
        be->matmul_bwd_inp(w->dln, D, dv, S, W(x->v), M, D, kvd, 1.0f);
        be->matmul_bwd_w(G(x->q), OPTG(x->qb), dq, S, A->ln1, D, M, D, qd);
        be->matmul_bwd_w(G(x->k), OPTG(x->kb), dk, S, A->ln1, D, M, D, kvd);
        be->matmul_bwd_w(G(x->v), OPTG(x->vb), dv, S, A->ln1, D, M, D, kvd);
    }
    be->rmsnorm_bwd(w->dresid, G(x->ln1), w->dln, xin, W(x->ln1), A->rstd1, M, 1, D, D, 1);
}

/* Everything before the logits: fills the workspace's activations (slot l for layer l when `keep`, else slot
 * 0 for every layer); returns the attention arguments. `backward`: a backward of this batch follows (the
 * weight provider is told that each layer will be asked for again). */
static void forward_body(scp_model *m, const scp_batch *b, scp_attn_args *aa, int keep, int backward)
{
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    const int B = b->B, T = b->T, M = B * T, D = w->D;
    const float eps = (float)m->cfg.rms_norm_eps;
    be->upload(w->ids, b->input, (size_t)M * sizeof(int32_t));

    memset(aa, 0, sizeof *aa);
    aa->B = B, aa->T = T, aa->H = w->H, aa->KV = w->KV, aa->hd = w->hd, aa->ld_qkv = w->S;
    aa->scale = 1.0f / sqrtf((float)w->hd);
    attn_rule_of(b, aa);
    if (b->doc) {   /* the kernels read the ids where they run */
        be->upload(w->doc, b->doc, (size_t)M * sizeof(int32_t));
        aa->doc = w->doc;
    }

    hold_weights(m, 0);
    be->embedding_fwd(w->resid, w->ids, W(w->embed), M, D);
    for (int l = 0; l < w->L; l++) {
        layer_acts A = acts_of(m, keep ? l : 0, B, T);
        hold_layer(m, l);
        layer_forward(m, l, &A, aa, 1);
        drop_layer(m, l, backward);
    }
    hold_weights(m, w->units - 1);
    be->rmsnorm_fwd(w->lnf, w->rstdf, AT(w->resid, (size_t)w->L * M * D), W(w->final_norm), M, 1, D, D, eps);
}

static void backward_body(scp_model *m, const scp_batch *b, const scp_attn_args *aa)
{
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    const int B = b->B, T = b->T, M = B * T, D = w->D;
    /* dresid holds d loss / d (residual stream) as it flows down; each rmsnorm backward adds its branch. */
    be->zero_bytes(w->dresid, (size_t)M * D * be->act_size);
    be->rmsnorm_bwd(w->dresid, G(w->final_norm), w->dln, AT(w->resid, (size_t)w->L * M * D), W(w->final_norm), w->rstdf,
                    M, 1, D, D, 1);
    give_grads(m, w->units - 1);
    drop_weights(m, w->units - 1, 0);
    for (int l = w->L - 1; l >= 0; l--) {
        layer_acts A = acts_of(m, w->recompute ? 0 : l, B, T);
        hold_layer(m, l);
        take_layer_grads(m, l);
        if (w->recompute) layer_forward(m, l, &A, aa, 0);
        layer_backward(m, l, &A, aa);
        give_layer_grads(m, l);
        drop_layer(m, l, 0);
        if (w->hook_armed) w->grad_hook(w->hook_ctx, DG(m), w->layer_lo[l], w->layer_lo[l + 1] - w->layer_lo[l]);
    }
    be->embedding_bwd(G(w->embed), w->dresid, w->ids, M, D, w->V);
    give_grads(m, 0);
    drop_weights(m, 0, 0);
    if (w->hook_armed) {   /* what lies outside the layers: embeddings before them, final norm and LM head after */
        w->grad_hook(w->hook_ctx, DG(m), w->layer_lo[w->L], m->n_weights - w->layer_lo[w->L]);
        w->grad_hook(w->hook_ctx, DG(m), 0, w->layer_lo[0]);
        w->hook_armed = 0;
    }
}

void scp_model_set_recompute(scp_model *m, int on) { ((workspace *)m->ctx)->recompute = on != 0; }

void scp_model_set_grad_hook(scp_model *m, scp_grad_hook fn, void *ctx)
{
    workspace *w = m->ctx;
    w->grad_hook = fn, w->hook_ctx = ctx, w->hook_armed = 0;
}

void scp_model_arm_grad_hook(scp_model *m)
{
    workspace *w = m->ctx;
    w->hook_armed = w->grad_hook != NULL;
}

double scp_model_step(scp_model *m, const scp_batch *b, int backward, float *token_nll)
{
    if (check_batch(m, b, 1) < 0) return NAN;
    workspace *w = m->ctx;
    if (backward && !w->unit_g) {
        scp_model_alloc_grads(m);
        sync_grads_to_device(m);
    }
    sync_weights_to_device(m);
    const int keep = backward && !w->recompute;   /* every layer keeps its activations for the backward */
    ws_reserve(m, b->B, b->T, keep ? m->cfg.num_layers : 1);
    const scp_backend *be = m->backend;
    const int M = b->B * b->T, D = w->D, V = w->V;
    scp_attn_args aa;
    forward_body(m, b, &aa, keep, backward);
    if (backward) {   /* the LM head's gradients come first, the embeddings' last: both units for the whole backward */
        take_grads(m, w->units - 1);
        take_grads(m, 0);
    }

    /* Only rows with a target reach the vocabulary projection: a masked-diffusion batch scores only its masked
     * positions, so the largest matmul of a small model shrinks by the unmasked fraction. */
    int32_t *rows = scp_xmalloc((size_t)M * sizeof *rows), *tgt = scp_xmalloc((size_t)M * sizeof *tgt);
    float *wt = scp_xmalloc((size_t)M * sizeof *wt);
    int n = 0;
    for (int r = 0; r < M; r++)
        if (b->target[r] >= 0) rows[n] = r, tgt[n] = b->target[r], wt[n] = b->weight ? b->weight[r] : 1.0f, n++;
    double loss = 0.0;
    if (token_nll) memset(token_nll, 0, (size_t)M * sizeof *token_nll);
    if (n > 0) {
        const scp_act *sel = w->lnf;
        if (n < M) {
            be->upload(w->rows, rows, (size_t)n * sizeof *rows);
            be->gather_rows(w->sel, w->lnf, w->rows, n, D);
            sel = w->sel;
        }
        be->upload(w->tsel, tgt, (size_t)n * sizeof *tgt);
        be->upload(w->wsel, wt, (size_t)n * sizeof *wt);
        scp_act *dsel = n < M ? w->dsel : w->dln;
        for (int r0 = 0; r0 < n; r0 += w->logit_rows) {   /* chunks of rows, in order (deterministic) */
            int nr = n - r0 < w->logit_rows ? n - r0 : w->logit_rows;
            const scp_act *x = AT(sel, (size_t)r0 * D);
            be->matmul_fwd(w->logits, V, x, D, W(w->lm_head), NULL, nr, D, V, 0.0f);
            loss += be->crossentropy(w->logits, w->nll + r0, w->tsel + r0, w->wsel + r0, nr, V, backward);
            if (backward) {   /* the logits buffer now holds d loss / d logits */
                be->matmul_bwd_w(G(w->lm_head), NULL, w->logits, V, x, D, nr, D, V);
                be->matmul_bwd_inp(AT(dsel, (size_t)r0 * D), D, w->logits, V, W(w->lm_head), nr, D, V, 0.0f);
            }
        }
        if (token_nll) {
            float *nll = scp_xmalloc((size_t)n * sizeof *nll);
            be->download(nll, w->nll, (size_t)n * sizeof *nll);
            for (int k = 0; k < n; k++) token_nll[rows[k]] = nll[k];
            free(nll);
        }
        if (backward && n < M) {
            be->zero_bytes(w->dln, (size_t)M * D * be->act_size);
            be->scatter_rows(w->dln, w->dsel, w->rows, n, D);
        }
    } else if (backward) {
        be->zero_bytes(w->dln, (size_t)M * D * be->act_size);
    }
    if (backward) {
        backward_body(m, b, &aa);
        if (on_device(m) && !w->unit_g) w->grads_on_dev = 1;   /* they stay there: scp_model_sync_host */
    } else {
        drop_outer_weights(m);
    }
    free(rows);
    free(tgt);
    free(wt);
    return loss;
}

/* logits (n, V) on the host = x (n rows of D) W_lm^T, in chunks of the logits buffer. */
static void project_rows(scp_model *m, const scp_act *x, int n, float *logits)
{
    workspace *w = m->ctx;
    if (m->backend->act_size != sizeof(float) && !w->logits32)   /* fp32 logits for the caller, made when first asked for */
        w->logits32 = ws_alloc(w, m->backend, (size_t)w->logit_rows * w->V * sizeof(float));
    for (int r0 = 0; r0 < n; r0 += w->logit_rows) {
        int nr = n - r0 < w->logit_rows ? n - r0 : w->logit_rows;
        size_t cnt = (size_t)nr * w->V;
        m->backend->matmul_fwd(w->logits, w->V, AT(x, (size_t)r0 * w->D), w->D, W(w->lm_head), NULL, nr, w->D, w->V, 0.0f);
        const void *src = w->logits;
        if (w->logits32) m->backend->from_act(w->logits32, w->logits, cnt), src = w->logits32;
        m->backend->download(logits + (size_t)r0 * w->V, src, cnt * sizeof(float));
    }
}

int scp_model_logits_rows(scp_model *m, const scp_batch *b, const int32_t *rows, int n, float *logits)
{
    if (check_batch(m, b, 0) < 0) return -1;
    const int M = b->B * b->T;
    if (!rows) n = M;
    if (n < 0 || n > M) return scp_error("model: %d logits rows asked of a batch of %d", n, M);
    for (int k = 0; rows && k < n; k++)
        if (rows[k] < 0 || rows[k] >= M) return scp_error("model: logits row %d outside the batch's %d rows", rows[k], M);
    sync_weights_to_device(m);
    ws_reserve(m, b->B, b->T, 1);
    workspace *w = m->ctx;
    scp_attn_args aa;
    forward_body(m, b, &aa, 0, 0);
    /* Only the rows asked for reach the vocabulary projection (its matmul, D V per row, is the largest of a
     * model with a large vocabulary): gathered into `sel` first, as the training step does. */
    const scp_act *x = w->lnf;
    if (rows && n > 0) {
        m->backend->upload(w->rows, rows, (size_t)n * sizeof *rows);
        m->backend->gather_rows(w->sel, w->lnf, w->rows, n, w->D);
        x = w->sel;
    }
    project_rows(m, x, n, logits);
    drop_outer_weights(m);
    return 0;
}

int scp_model_logits(scp_model *m, const scp_batch *b, float *logits)
{
    return scp_model_logits_rows(m, b, NULL, 0, logits);
}

/* ---- incremental decoding ------------------------------------------------------------------------------------
 * The prompt runs as one causal forward whose q|k|v rows (after q/k norm and RoPE) are copied into the cache,
 * layer by layer; each new token then runs the layers on its one row, attending through attention_decode to
 * the cached rows and its own. The sums are those of a full forward, in another order. */
int scp_model_can_decode(const scp_model *m) { return scp_backend_has(m->backend, SCP_BACKEND_CAP_DECODE); }

void scp_model_decode_end(scp_model *m)
{
    workspace *w = m->ctx;
    if (w->kv) m->backend->free(w->kv);
    w->kv = NULL, w->kv_cap = w->kv_len = w->kv_fill = 0, w->kv_pos = -1;
}

int scp_model_decode_start(scp_model *m, const int32_t *ids, int n, int capacity, float *logits)
{
    workspace *w = m->ctx;
    if (!scp_model_can_decode(m)) return scp_error("backend '%s' has no incremental decoding", m->backend->name);
    if (n < 1 || capacity < n) return scp_error("decode: a prompt of %d tokens in a cache of %d", n, capacity);
    scp_batch b = {.B = 1, .T = n, .input = ids, .attn = SCP_ATTN_CAUSAL};
    if (check_batch(m, &b, 0) < 0) return -1;
    sync_weights_to_device(m);
    ws_reserve(m, 1, capacity, 1);   /* RoPE tables for every position the cache will hold */
    if (capacity > w->kv_cap) {
        if (w->kv) m->backend->free(w->kv);
        w->kv = m->backend->alloc((size_t)w->L * capacity * w->S * m->backend->act_size);
        w->kv_cap = capacity;
    }
    scp_attn_args aa;
    w->kv_fill = 1;
    forward_body(m, &b, &aa, 0, 0);
    w->kv_fill = 0;
    w->kv_len = n;
    project_rows(m, AT(w->lnf, (size_t)(n - 1) * w->D), 1, logits);
    drop_outer_weights(m);
    return 0;
}

int scp_model_decode_next(scp_model *m, int32_t id, float *logits)
{
    workspace *w = m->ctx;
    if (!w->kv || w->kv_len < 1) return scp_error("decode: no prompt decoded yet (scp_model_decode_start)");
    if (w->kv_len >= w->kv_cap) return scp_error("decode: the cache of %d positions is full", w->kv_cap);
    scp_batch b = {.B = 1, .T = 1, .input = &id, .attn = SCP_ATTN_CAUSAL};
    if (check_batch(m, &b, 0) < 0) return -1;
    sync_weights_to_device(m);
    scp_attn_args aa;
    w->kv_pos = w->kv_len;   /* layer_forward: the one row at this position, against the cache */
    forward_body(m, &b, &aa, 0, 0);
    w->kv_pos = -1;
    w->kv_len++;
    project_rows(m, w->lnf, 1, logits);
    drop_outer_weights(m);
    return 0;
}
