/* model.c: the decoder driver, written once over a backend's table of operations (backend.h): forward,
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

#include "backend.h"
#include "error.h"
#include "model.h"
#include "rng.h"

/* Offsets of one layer's parameters in the weight/gradient vectors (-1 where absent). */
typedef struct layer_ix {
    int64_t ln1, q, k, v, o, qb, kb, vb, ob, qn, kn, ln2, gate, up, down;
    int qkv_joint;      /* q, k, v weights adjacent and no biases: one matmul for all three */
    int gateup_joint;   /* gate and up adjacent: one matmul for both */
} layer_ix;

typedef struct workspace {
    int capB, capT;         /* sizes the buffers hold */
    int att_layers;         /* layers of attention probabilities held: all for training, one for forward only */
    int64_t bytes;          /* what they take */
    int logit_rows;         /* rows of logits computed at a time (the logits buffer holds that many) */
    int L, D, S, qd, kvd, I, V, H, KV, hd;
    layer_ix *lix;
    int64_t embed, lm_head, final_norm;
    /* A device backend (host_memory 0): the device copies of m->weights and m->grads, and whether each side
     * changed since the last copy (see "host and device" below). */
    float *dweights, *dgrads;
    int weights_dirty, grads_dirty;
    /* activations, per layer where backward needs them */
    float *resid;           /* (L + 1, M, D): input of each layer, then the final hidden state */
    float *resid2;          /* (L, M, D): after attention's residual add */
    float *ln1, *ln2;       /* (L, M, D) */
    float *rstd1, *rstd2;   /* (L, M) */
    float *qkv;             /* (L, M, S): q|k|v as attention reads them (after q/k norm and rope) */
    float *qkv_raw;         /* (L, M, S): before q/k norm (qk_norm only) */
    float *qk_rstd;         /* (L, M, H + KV) (qk_norm only) */
    float *att;             /* (att_layers, B, H, T, T) softmax probabilities */
    float *atty;            /* (L, M, qd) attention output */
    float *gateup;          /* (L, M, 2I) */
    float *hmlp;            /* (L, M, I) */
    float *lnf, *rstdf;     /* (M, D), (M) */
    float *sel;             /* (M, D) final-norm rows that carry a loss */
    float *logits;          /* (logit_rows, V); holds dlogits after the cross-entropy */
    float *nll, *wsel;      /* (M) */
    int32_t *ids, *rows, *tsel;   /* (M) */
    uint8_t *mask;          /* (B, T, T) */
    float *cos, *sin;       /* (T, hd/2) */
    /* gradients of activations, reused by every layer */
    float *dresid, *dln, *dqkv, *datty, *dgateup, *dh, *dsel;
} workspace;

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
    if (w->dgrads) be->free(w->dgrads);
    free(w->lix);
    free(w);
}

static workspace *ws_new(const scp_model *m)
{
    const scp_model_config *c = &m->cfg;
    workspace *w = scp_xcalloc(1, sizeof *w);
    w->L = c->num_layers, w->D = c->hidden_size, w->H = c->num_heads, w->KV = c->num_kv_heads, w->hd = c->head_dim;
    w->qd = w->H * w->hd, w->kvd = w->KV * w->hd, w->S = w->qd + 2 * w->kvd, w->I = c->intermediate_size;
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
    w->lm_head = -1;
    for (int i = 0; i < m->n_params; i++) {
        if (m->desc[i].kind == SCP_P_EMBED) w->embed = m->offset[i];
        if (m->desc[i].kind == SCP_P_LM_HEAD) w->lm_head = m->offset[i];
        if (m->desc[i].kind == SCP_P_FINAL_NORM) w->final_norm = m->offset[i];
    }
    if (w->lm_head < 0) w->lm_head = w->embed;   /* tied: both uses read (and add gradients into) one matrix */
    return w;
}

static void *ws_alloc(workspace *w, const scp_backend *be, size_t bytes)
{
    w->bytes += (int64_t)bytes;
    return be->alloc(bytes);
}

/* (Re)allocate the activation buffers when a batch is larger than any seen before. The attention probabilities,
 * O(T^2) per layer, are kept for every layer only once a backward pass needs them; a forward-only caller (eval,
 * generation) holds one layer's worth, reused layer after layer. */
static void ws_reserve(scp_model *m, int B, int T, int att_layers)
{
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    if (B <= w->capB && T <= w->capT) {
        if (att_layers <= w->att_layers) return;
        size_t n = (size_t)att_layers * w->capB * w->H * w->capT * w->capT * sizeof(float);
        be->free(w->att);
        w->bytes += (int64_t)n - (int64_t)((size_t)w->att_layers * w->capB * w->H * w->capT * w->capT * sizeof(float));
        w->att = be->alloc(n);
        w->att_layers = att_layers;
        return;
    }
    if (w->att_layers > att_layers) att_layers = w->att_layers;
    ws_free_buffers(be, w);
    w->att_layers = att_layers;
    w->bytes = 0;
    w->capB = B > w->capB ? B : w->capB;
    w->capT = T > w->capT ? T : w->capT;
    int capB = w->capB, capT = w->capT;
    size_t M = (size_t)capB * capT, L = (size_t)w->L, D = (size_t)w->D, S = (size_t)w->S, I = (size_t)w->I;
    size_t f = sizeof(float);
    w->resid = ws_alloc(w, be, (L + 1) * M * D * f);
    w->resid2 = ws_alloc(w, be, L * M * D * f);
    w->ln1 = ws_alloc(w, be, L * M * D * f);
    w->ln2 = ws_alloc(w, be, L * M * D * f);
    w->rstd1 = ws_alloc(w, be, L * M * f);
    w->rstd2 = ws_alloc(w, be, L * M * f);
    w->qkv = ws_alloc(w, be, L * M * S * f);
    if (m->cfg.qk_norm) {
        w->qkv_raw = ws_alloc(w, be, L * M * S * f);
        w->qk_rstd = ws_alloc(w, be, L * M * (size_t)(w->H + w->KV) * f);
    }
    w->att = ws_alloc(w, be, (size_t)att_layers * capB * w->H * capT * capT * f);
    w->atty = ws_alloc(w, be, L * M * w->qd * f);
    w->gateup = ws_alloc(w, be, L * M * 2 * I * f);
    w->hmlp = ws_alloc(w, be, L * M * I * f);
    w->lnf = ws_alloc(w, be, M * D * f);
    w->rstdf = ws_alloc(w, be, M * f);
    w->sel = ws_alloc(w, be, M * D * f);
    /* The vocabulary projection runs in chunks of rows, 64 MB of logits at a time (at least 64 rows, so that the
     * sgemm stays efficient): a 151,936-word vocabulary does not need (B T, V) floats at once. */
    size_t lr = ((size_t)1 << 24) / (size_t)w->V;
    lr = lr < 64 ? 64 : lr;
    const char *env = getenv("SCP_LOGIT_ROWS");   /* for tests: force small chunks */
    if (env && atoi(env) > 0) lr = (size_t)atoi(env);
    w->logit_rows = (int)(lr < M ? lr : M);
    w->logits = ws_alloc(w, be, (size_t)w->logit_rows * w->V * f);
    w->nll = ws_alloc(w, be, M * f);
    w->wsel = ws_alloc(w, be, M * f);
    w->ids = ws_alloc(w, be, M * sizeof(int32_t));
    w->rows = ws_alloc(w, be, M * sizeof(int32_t));
    w->tsel = ws_alloc(w, be, M * sizeof(int32_t));
    w->mask = ws_alloc(w, be, (size_t)capB * capT * capT);
    w->cos = ws_alloc(w, be, (size_t)capT * (w->hd / 2) * f);
    w->sin = ws_alloc(w, be, (size_t)capT * (w->hd / 2) * f);
    w->dresid = ws_alloc(w, be, M * D * f);
    w->dln = ws_alloc(w, be, M * D * f);
    w->dqkv = ws_alloc(w, be, M * S * f);
    w->datty = ws_alloc(w, be, M * w->qd * f);
    w->dgateup = ws_alloc(w, be, M * 2 * I * f);
    w->dh = ws_alloc(w, be, M * I * f);
    w->dsel = ws_alloc(w, be, M * D * f);
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

scp_model *scp_model_new(const scp_model_config *cfg, const char *backend)
{
    const scp_backend *be = scp_backend_find(backend);
    if (!be) return NULL;
    if (cfg->num_experts > 0) {
        scp_error("%s model with %d experts: mixture-of-experts layers are not supported by the model driver yet",
                  scp_arch_name(cfg->arch), cfg->num_experts);
        return NULL;
    }
    if (cfg->hidden_size < 1 || cfg->num_layers < 1 || cfg->num_heads < 1 || cfg->num_kv_heads < 1 ||
        cfg->num_heads % cfg->num_kv_heads || cfg->head_dim < 2 || cfg->head_dim % 2 || cfg->vocab_size < 1 ||
        cfg->intermediate_size < 1) {
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
    if (be->host_memory) {
        m->weights = be->alloc((size_t)off * sizeof(float));
    } else {
        workspace *w = m->ctx;
        m->weights = scp_xcalloc((size_t)off, sizeof(float));
        w->dweights = be->alloc((size_t)off * sizeof(float));
        w->weights_dirty = 1;
    }
    return m;
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

void scp_model_init_random(scp_model *m, uint64_t seed, float std)
{
    for (int i = 0; i < m->n_params; i++) {
        const scp_param_desc *d = &m->desc[i];
        float *p = m->weights + m->offset[i];
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
    scp_model_weights_changed(m);
}

/* ---- host and device --------------------------------------------------------------------------------------
 * On a device backend the host arrays m->weights and m->grads stay the truth that callers read and write (model.h);
 * the device holds copies for the step. Weights go up before a step when they changed (AdamW, loading, init, or a
 * caller's scp_model_weights_changed); gradients go up before a backward when the host changed them (zeroing,
 * scaling, an all-reduce) and come back down after it. Norms, scaling and AdamW run on the host arrays with the
 * CPU backend's entries. On the CPU nothing is copied: the host arrays are the backend's buffers. */
static const scp_backend *host_ops(const scp_model *m) { return m->backend->host_memory ? m->backend : &scp_backend_cpu; }

void scp_model_weights_changed(scp_model *m)
{
    workspace *w = m->ctx;
    w->weights_dirty = 1;
    w->grads_dirty = 1;
}

static void sync_weights_to_device(scp_model *m)
{
    workspace *w = m->ctx;
    if (m->backend->host_memory || !w->weights_dirty) return;
    m->backend->upload(w->dweights, m->weights, (size_t)m->n_weights * sizeof(float));
    w->weights_dirty = 0;
}

static void sync_grads_to_device(scp_model *m)
{
    workspace *w = m->ctx;
    if (m->backend->host_memory || !w->grads_dirty) return;
    m->backend->upload(w->dgrads, m->grads, (size_t)m->n_weights * sizeof(float));
    w->grads_dirty = 0;
}

static void grads_to_host(scp_model *m)
{
    workspace *w = m->ctx;
    if (!m->backend->host_memory) m->backend->download(m->grads, w->dgrads, (size_t)m->n_weights * sizeof(float));
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
        w->grads_dirty = 1;
    }
}

void scp_model_zero_grad(scp_model *m)
{
    scp_model_alloc_grads(m);
    host_ops(m)->zero(m->grads, (size_t)m->n_weights);
    if (!m->backend->host_memory) {
        workspace *w = m->ctx;
        m->backend->zero(w->dgrads, (size_t)m->n_weights);
        w->grads_dirty = 0;
    }
}

double scp_model_grad_norm(const scp_model *m)
{
    if (!m->grads) return 0.0;
    return sqrt(host_ops(m)->sumsq(m->grads, (size_t)m->n_weights));
}

void scp_model_scale_grads(scp_model *m, float s)
{
    if (!m->grads) return;
    host_ops(m)->scale(m->grads, (size_t)m->n_weights, s);
    ((workspace *)m->ctx)->grads_dirty = 1;
}

void scp_model_adamw(scp_model *m, float *opt_m, float *opt_v, const float *lr, float beta1, float beta2, float eps,
                     float weight_decay, int64_t step)
{
    if (!m->grads) return;
    float bc1 = (float)(1.0 - pow(beta1, (double)step)), bc2 = (float)(1.0 - pow(beta2, (double)step));
    /* Runs of adjacent parameters with the same rate and decay go in one call (the update is elementwise). */
    for (int i = 0; i < m->n_params;) {
        int dec = m->desc[i].decay, j = i + 1;
        while (j < m->n_params && lr[j] == lr[i] && m->desc[j].decay == dec) j++;
        if (lr[i] != 0.0f) {   /* 0: a frozen group, weights and moments untouched */
            int64_t o = m->offset[i], n = m->offset[j - 1] + m->desc[j - 1].numel - o;
            host_ops(m)->adamw(m->weights + o, m->grads + o, opt_m + o, opt_v + o, (size_t)n, lr[i], beta1, beta2, eps,
                               dec ? weight_decay : 0.0f, bc1, bc2);
        }
        i = j;
    }
    ((workspace *)m->ctx)->weights_dirty = 1;
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
int scp_attn_visible(const scp_batch *b, int bi, int i, int j)
{
    if (b->doc) {
        int di = b->doc[(size_t)bi * b->T + i], dj = b->doc[(size_t)bi * b->T + j];
        if (di < 0 ? j != i : di != dj) return 0;
    }
    switch (b->attn) {
    case SCP_ATTN_BIDIRECTIONAL: return 1;
    case SCP_ATTN_CAUSAL: return j <= i;
    case SCP_ATTN_ANNEAL:
        if (j <= i) return 1;
        return (double)(scp_mix3(b->anneal_seed, (uint64_t)bi, ((uint64_t)i << 32) | (uint64_t)j) >> 11) * 0x1p-53 <
               b->anneal_p;
    }
    return 0;
}

/* ---- forward and backward ---------------------------------------------------------------------------------- */
/* The backend's copies of the weights and gradients (the host arrays themselves on the CPU). */
#define DW(m) ((m)->backend->host_memory ? (m)->weights : ((workspace *)(m)->ctx)->dweights)
#define DG(m) ((m)->backend->host_memory ? (m)->grads : ((workspace *)(m)->ctx)->dgrads)
#define W(off) (DW(m) + (off))
#define G(off) (DG(m) + (off))
#define OPT(off) ((off) >= 0 ? DW(m) + (off) : NULL)
#define OPTG(off) ((off) >= 0 ? DG(m) + (off) : NULL)

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

/* Everything before the logits: fills the workspace's activations; returns the attention arguments. */
static void forward_body(scp_model *m, const scp_batch *b, scp_attn_args *aa, int keep_att)
{
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    const int B = b->B, T = b->T, M = B * T, D = w->D, S = w->S, qd = w->qd, kvd = w->kvd, I = w->I;
    const float eps = (float)m->cfg.rms_norm_eps;
    be->upload(w->ids, b->input, (size_t)M * sizeof(int32_t));

    memset(aa, 0, sizeof *aa);
    aa->B = B, aa->T = T, aa->H = w->H, aa->KV = w->KV, aa->hd = w->hd, aa->ld_qkv = S;
    aa->scale = 1.0f / sqrtf((float)w->hd);
    aa->causal = b->attn == SCP_ATTN_CAUSAL;
    if (b->doc || b->attn == SCP_ATTN_ANNEAL) {
        uint8_t *mk = scp_xmalloc((size_t)B * T * T);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < B * T; r++)
            for (int j = 0; j < T; j++) mk[(size_t)r * T + j] = (uint8_t)scp_attn_visible(b, r / T, r % T, j);
        be->upload(w->mask, mk, (size_t)B * T * T);
        free(mk);
        aa->mask = w->mask;
    }

    be->embedding_fwd(w->resid, w->ids, W(w->embed), M, D);
    for (int l = 0; l < w->L; l++) {
        const layer_ix *x = &w->lix[l];
        float *xin = w->resid + (size_t)l * M * D, *x2 = w->resid2 + (size_t)l * M * D;
        float *ln1 = w->ln1 + (size_t)l * M * D, *ln2 = w->ln2 + (size_t)l * M * D;
        float *qkv = w->qkv + (size_t)l * M * S, *atty = w->atty + (size_t)l * M * qd;
        be->rmsnorm_fwd(ln1, w->rstd1 + (size_t)l * M, xin, W(x->ln1), M, 1, D, D, eps);
        if (x->qkv_joint) {
            be->matmul_fwd(qkv, S, ln1, D, W(x->q), NULL, M, D, S, 0.0f);
        } else {
            be->matmul_fwd(qkv, S, ln1, D, W(x->q), OPT(x->qb), M, D, qd, 0.0f);
            be->matmul_fwd(qkv + qd, S, ln1, D, W(x->k), OPT(x->kb), M, D, kvd, 0.0f);
            be->matmul_fwd(qkv + qd + kvd, S, ln1, D, W(x->v), OPT(x->vb), M, D, kvd, 0.0f);
        }
        if (m->cfg.qk_norm) {
            float *raw = w->qkv_raw + (size_t)l * M * S, *r = w->qk_rstd + (size_t)l * M * (w->H + w->KV);
            be->copy(raw, qkv, (size_t)M * S);
            be->rmsnorm_fwd(qkv, r, raw, W(x->qn), M, w->H, w->hd, S, eps);
            be->rmsnorm_fwd(qkv + qd, r + (size_t)M * w->H, raw + qd, W(x->kn), M, w->KV, w->hd, S, eps);
        }
        be->rope(qkv, w->cos, w->sin, M, T, w->H, w->hd, S, 0);
        be->rope(qkv + qd, w->cos, w->sin, M, T, w->KV, w->hd, S, 0);
        be->attention_fwd(atty, w->att + (size_t)(keep_att ? l : 0) * B * w->H * T * T, qkv, qkv + qd, qkv + qd + kvd, aa);
        be->copy(x2, xin, (size_t)M * D);
        be->matmul_fwd(x2, D, atty, qd, W(x->o), OPT(x->ob), M, qd, D, 1.0f);
        be->rmsnorm_fwd(ln2, w->rstd2 + (size_t)l * M, x2, W(x->ln2), M, 1, D, D, eps);
        /* the MLP step (a MoE layer replaces this block) */
        float *gu = w->gateup + (size_t)l * M * 2 * I, *h = w->hmlp + (size_t)l * M * I, *xout = xin + (size_t)M * D;
        if (x->gateup_joint) {
            be->matmul_fwd(gu, 2 * I, ln2, D, W(x->gate), NULL, M, D, 2 * I, 0.0f);
        } else {
            be->matmul_fwd(gu, 2 * I, ln2, D, W(x->gate), NULL, M, D, I, 0.0f);
            be->matmul_fwd(gu + I, 2 * I, ln2, D, W(x->up), NULL, M, D, I, 0.0f);
        }
        be->swiglu_fwd(h, gu, M, I);
        be->copy(xout, x2, (size_t)M * D);
        be->matmul_fwd(xout, D, h, I, W(x->down), NULL, M, I, D, 1.0f);
    }
    be->rmsnorm_fwd(w->lnf, w->rstdf, w->resid + (size_t)w->L * M * D, W(w->final_norm), M, 1, D, D, eps);
}

static void backward_body(scp_model *m, const scp_batch *b, const scp_attn_args *aa)
{
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    const int B = b->B, T = b->T, M = B * T, D = w->D, S = w->S, qd = w->qd, kvd = w->kvd, I = w->I;
    /* dresid holds d loss / d (residual stream) as it flows down; each rmsnorm backward adds its branch. */
    be->zero(w->dresid, (size_t)M * D);
    be->rmsnorm_bwd(w->dresid, G(w->final_norm), w->dln, w->resid + (size_t)w->L * M * D, W(w->final_norm), w->rstdf, M,
                    1, D, D, 1);
    for (int l = w->L - 1; l >= 0; l--) {
        const layer_ix *x = &w->lix[l];
        float *xin = w->resid + (size_t)l * M * D, *x2 = w->resid2 + (size_t)l * M * D;
        float *ln1 = w->ln1 + (size_t)l * M * D, *ln2 = w->ln2 + (size_t)l * M * D;
        float *qkv = w->qkv + (size_t)l * M * S, *atty = w->atty + (size_t)l * M * qd;
        float *gu = w->gateup + (size_t)l * M * 2 * I, *h = w->hmlp + (size_t)l * M * I;
        /* MLP */
        be->matmul_bwd_inp(w->dh, I, w->dresid, D, W(x->down), M, I, D, 0.0f);
        be->matmul_bwd_w(G(x->down), NULL, w->dresid, D, h, I, M, I, D);
        be->swiglu_bwd(w->dgateup, w->dh, gu, M, I);
        if (x->gateup_joint) {
            be->matmul_bwd_inp(w->dln, D, w->dgateup, 2 * I, W(x->gate), M, D, 2 * I, 0.0f);
            be->matmul_bwd_w(G(x->gate), NULL, w->dgateup, 2 * I, ln2, D, M, D, 2 * I);
        } else {
            be->matmul_bwd_inp(w->dln, D, w->dgateup, 2 * I, W(x->gate), M, D, I, 0.0f);
            be->matmul_bwd_inp(w->dln, D, w->dgateup + I, 2 * I, W(x->up), M, D, I, 1.0f);
            be->matmul_bwd_w(G(x->gate), NULL, w->dgateup, 2 * I, ln2, D, M, D, I);
            be->matmul_bwd_w(G(x->up), NULL, w->dgateup + I, 2 * I, ln2, D, M, D, I);
        }
        be->rmsnorm_bwd(w->dresid, G(x->ln2), w->dln, x2, W(x->ln2), w->rstd2 + (size_t)l * M, M, 1, D, D, 1);
        /* attention */
        be->matmul_bwd_inp(w->datty, qd, w->dresid, D, W(x->o), M, qd, D, 0.0f);
        be->matmul_bwd_w(G(x->o), OPTG(x->ob), w->dresid, D, atty, qd, M, qd, D);
        be->attention_bwd(w->dqkv, w->dqkv + qd, w->dqkv + qd + kvd, w->datty, w->att + (size_t)l * B * w->H * T * T, qkv,
                          qkv + qd, qkv + qd + kvd, aa);
        be->rope(w->dqkv, w->cos, w->sin, M, T, w->H, w->hd, S, 1);
        be->rope(w->dqkv + qd, w->cos, w->sin, M, T, w->KV, w->hd, S, 1);
        if (m->cfg.qk_norm) {
            float *raw = w->qkv_raw + (size_t)l * M * S, *r = w->qk_rstd + (size_t)l * M * (w->H + w->KV);
            be->rmsnorm_bwd(w->dqkv, G(x->qn), w->dqkv, raw, W(x->qn), r, M, w->H, w->hd, S, 0);
            be->rmsnorm_bwd(w->dqkv + qd, G(x->kn), w->dqkv + qd, raw + qd, W(x->kn), r + (size_t)M * w->H, M, w->KV,
                            w->hd, S, 0);
        }
        if (x->qkv_joint) {
            be->matmul_bwd_inp(w->dln, D, w->dqkv, S, W(x->q), M, D, S, 0.0f);
            be->matmul_bwd_w(G(x->q), NULL, w->dqkv, S, ln1, D, M, D, S);
        } else {
            be->matmul_bwd_inp(w->dln, D, w->dqkv, S, W(x->q), M, D, qd, 0.0f);
            be->matmul_bwd_inp(w->dln, D, w->dqkv + qd, S, W(x->k), M, D, kvd, 1.0f);
            be->matmul_bwd_inp(w->dln, D, w->dqkv + qd + kvd, S, W(x->v), M, D, kvd, 1.0f);
            be->matmul_bwd_w(G(x->q), OPTG(x->qb), w->dqkv, S, ln1, D, M, D, qd);
            be->matmul_bwd_w(G(x->k), OPTG(x->kb), w->dqkv + qd, S, ln1, D, M, D, kvd);
            be->matmul_bwd_w(G(x->v), OPTG(x->vb), w->dqkv + qd + kvd, S, ln1, D, M, D, kvd);
        }
        be->rmsnorm_bwd(w->dresid, G(x->ln1), w->dln, xin, W(x->ln1), w->rstd1 + (size_t)l * M, M, 1, D, D, 1);
    }
    be->embedding_bwd(G(w->embed), w->dresid, w->ids, M, D, w->V);
}

double scp_model_step(scp_model *m, const scp_batch *b, int backward, float *token_nll)
{
    if (check_batch(m, b, 1) < 0) return NAN;
    if (backward) {
        scp_model_alloc_grads(m);
        sync_grads_to_device(m);
    }
    sync_weights_to_device(m);
    ws_reserve(m, b->B, b->T, backward ? m->cfg.num_layers : 1);
    workspace *w = m->ctx;
    const scp_backend *be = m->backend;
    const int M = b->B * b->T, D = w->D, V = w->V;
    scp_attn_args aa;
    forward_body(m, b, &aa, backward);

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
        const float *sel = w->lnf;
        if (n < M) {
            be->upload(w->rows, rows, (size_t)n * sizeof *rows);
            be->gather_rows(w->sel, w->lnf, w->rows, n, D);
            sel = w->sel;
        }
        be->upload(w->tsel, tgt, (size_t)n * sizeof *tgt);
        be->upload(w->wsel, wt, (size_t)n * sizeof *wt);
        float *dsel = n < M ? w->dsel : w->dln;
        for (int r0 = 0; r0 < n; r0 += w->logit_rows) {   /* chunks of rows, in order (deterministic) */
            int nr = n - r0 < w->logit_rows ? n - r0 : w->logit_rows;
            const float *x = sel + (size_t)r0 * D;
            be->matmul_fwd(w->logits, V, x, D, W(w->lm_head), NULL, nr, D, V, 0.0f);
            loss += be->crossentropy(w->logits, w->nll + r0, w->tsel + r0, w->wsel + r0, nr, V, backward);
            if (backward) {   /* the logits buffer now holds d loss / d logits */
                be->matmul_bwd_w(G(w->lm_head), NULL, w->logits, V, x, D, nr, D, V);
                be->matmul_bwd_inp(dsel + (size_t)r0 * D, D, w->logits, V, W(w->lm_head), nr, D, V, 0.0f);
            }
        }
        if (token_nll) {
            float *nll = scp_xmalloc((size_t)n * sizeof *nll);
            be->download(nll, w->nll, (size_t)n * sizeof *nll);
            for (int k = 0; k < n; k++) token_nll[rows[k]] = nll[k];
            free(nll);
        }
        if (backward && n < M) {
            be->zero(w->dln, (size_t)M * D);
            be->scatter_rows(w->dln, w->dsel, w->rows, n, D);
        }
    } else if (backward) {
        be->zero(w->dln, (size_t)M * D);
    }
    if (backward) {
        backward_body(m, b, &aa);
        grads_to_host(m);
    }
    free(rows);
    free(tgt);
    free(wt);
    return loss;
}

int scp_model_logits(scp_model *m, const scp_batch *b, float *logits)
{
    if (check_batch(m, b, 0) < 0) return -1;
    sync_weights_to_device(m);
    ws_reserve(m, b->B, b->T, 1);
    workspace *w = m->ctx;
    const int M = b->B * b->T;
    scp_attn_args aa;
    forward_body(m, b, &aa, 0);
    for (int r0 = 0; r0 < M; r0 += w->logit_rows) {
        int nr = M - r0 < w->logit_rows ? M - r0 : w->logit_rows;
        m->backend->matmul_fwd(w->logits, w->V, w->lnf + (size_t)r0 * w->D, w->D, W(w->lm_head), NULL, nr, w->D, w->V, 0.0f);
        m->backend->download(logits + (size_t)r0 * w->V, w->logits, (size_t)nr * w->V * sizeof(float));
    }
    return 0;
}
