/* scp-step.c: the C side of bench/gpu/bench.sh. Times a full masked-diffusion training step (forward, backward,
 * AdamW; bidirectional attention) of a Qwen3-shaped decoder on a backend's operation table, calling the
 * entries in the order lib/model/model.c calls them (fused q|k|v and gate|up weights, per-head q/k norm, RoPE, tied
 * embeddings, the LM head and cross-entropy in chunks of rows so that fp32 logits for the whole batch never
 * exist). It drives the table directly, not scp_model_step, so that it measures the backend whatever the
 * driver's state. Prints one JSON object: step times, tokens/s, the peak of the table's memory, and the time per
 * operation (a separate step with a device synchronisation around each call). Model FLOPs and MFU are counted
 * by bench/gpu/gpu_bench.py, the one formula for scp's and PyTorch's rows.
 *
 * Activations are the table's storage type (scp_act: fp32, or bf16 on "cuda-bf16"); the fp32 master weights are
 * rounded into a compute copy at the start of each step (to_act), as lib/model/model.c does (fp32 storage uses the
 * master weights in place); weight gradients and AdamW stay fp32.
 *
 * usage: scp-step [--backend cuda|cuda-bf16|cuda-fp32|cpu] [--tiny | --config CONFIG.json] [--batch B] [--seq T]
 *                 [--steps N] [--driver [--recompute]]   (the step through lib/model/model.c, as scp-train runs it)
 * Default: the Qwen3-0.6B shape (hidden 1024, 28 layers, 16 heads, 8 KV heads, head_dim 128, intermediate 3072,
 * vocab 151936), B = 4, T = 2048, 3 timed steps after one warm-up. --tiny: a small shape for a dry run.
 * --config: the shape of a Hugging Face config.json (bench/gpu/gpu_bench.py writes one per named shape); the
 * table step takes tied qwen3 models, --driver every architecture the driver has, qwen3_moe included. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "model/backend.h"
#include "model/backend_profile.h"
#include "core/error.h"
#include "model/model.h"
#include <jansson.h>
#include "model/cuda_plugin.h"   /* the CUDA tables, or the emulated ones linked in (tests/gpu/emulated.sh) */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Wait for the device: a 4-byte download through the table (cudaMemcpy to the host waits for every kernel
 * queued before it on the default stream). */
static const scp_backend *base;
static int is_cuda;
static float *sync_buf;
static void sync_dev(int cuda)
{
    float x;
    if (cuda) base->download(&x, sync_buf, sizeof x);
}

/* ---- a profiling table: every entry synchronised and timed (lib/model/backend_profile.c) ----------------- */
static double op_t[SCP_PROF_N];
static void sync_current(void) { sync_dev(is_cuda); }

/* ---- the model ---------------------------------------------------------------------------------------- */
typedef struct {
    int L, D, H, KV, hd, I, V, B, T, M, qd, kvd, S, CH;
    float *w, *g, *om, *ov;        /* flat parameters, gradients, AdamW moments (n floats each) */
    scp_act *wc;                   /* the compute copy of w (n elements; w itself in fp32 storage) */
    size_t n, att_n;               /* att_n: floats of attention state per layer (see net_init) */
    size_t o_emb, o_fn, *o_ln1, *o_qkv, *o_qn, *o_kn, *o_o, *o_ln2, *o_gu, *o_dn;
    /* activations kept for backward, per layer (storage type), and their statistics (fp32) */
    scp_act *resid, *ln1, *qkv, *raw, *atty, *x2, *ln2, *gu, *h, *lnf;
    float *rstd1, *rq, *lse, *rstd2, *rstdf;
    /* backward and scratch */
    scp_act *dresid, *dln, *dqkv, *datty, *dh, *dgu, *logits;
    float *nll, *cosb, *sinb, *wt;
    int32_t *ids, *tgt;
} net;

static float *A(const scp_backend *be, size_t n) { return be->alloc(n * sizeof(float)); }
/* n elements of the storage type; AT: p offset by n elements */
static scp_act *AA(const scp_backend *be, size_t n) { return be->alloc(n * be->act_size); }
static size_t esz;  /* the table's act_size */
static scp_act *AT(const scp_act *p, size_t n) { return (scp_act *)((char *)p + n * esz); }

static void net_init(net *m, const scp_backend *be)
{
    int L = m->L, D = m->D, M = m->M;
    m->qd = m->H * m->hd, m->kvd = m->KV * m->hd, m->S = m->qd + 2 * m->kvd;
    size_t o = 0;
    m->o_ln1 = calloc(L, sizeof(size_t)), m->o_qkv = calloc(L, sizeof(size_t)), m->o_qn = calloc(L, sizeof(size_t));
    m->o_kn = calloc(L, sizeof(size_t)), m->o_o = calloc(L, sizeof(size_t)), m->o_ln2 = calloc(L, sizeof(size_t));
    m->o_gu = calloc(L, sizeof(size_t)), m->o_dn = calloc(L, sizeof(size_t));
    m->o_emb = o, o += (size_t)m->V * D;
    for (int l = 0; l < L; l++) {
        m->o_ln1[l] = o, o += D;
        m->o_qkv[l] = o, o += (size_t)m->S * D;
        m->o_qn[l] = o, o += m->hd;
        m->o_kn[l] = o, o += m->hd;
        m->o_o[l] = o, o += (size_t)D * m->qd;
        m->o_ln2[l] = o, o += D;
        m->o_gu[l] = o, o += (size_t)2 * m->I * D;
        m->o_dn[l] = o, o += (size_t)D * m->I;
    }
    m->o_fn = o, o += D;
    m->n = o;
    /* Host init: normal-ish(0, 0.02) matrices (sum of uniforms), 1 for norms; uploaded once. */
    float *h = malloc(o * sizeof(float));
    uint64_t s = 1;
    for (size_t i = 0; i < o; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = 0.02f * 1.732f * (float)(((s >> 40) * (1.0 / (1 << 24))) * 2 - 1);
    }
    size_t norms[] = {m->o_fn};
    for (size_t i = 0; i < (size_t)D; i++) h[norms[0] + i] = 1;
    for (int l = 0; l < L; l++) {
        for (int i = 0; i < D; i++) h[m->o_ln1[l] + i] = h[m->o_ln2[l] + i] = 1;
        for (int i = 0; i < m->hd; i++) h[m->o_qn[l] + i] = h[m->o_kn[l] + i] = 1;
    }
    m->w = A(be, o), m->g = A(be, o), m->om = A(be, o), m->ov = A(be, o);
    m->wc = be->act_size == 4 ? (scp_act *)m->w : AA(be, o);
    be->upload(m->w, h, o * sizeof(float));
    free(h);
    size_t LM = (size_t)L * M;
    m->resid = AA(be, (LM + M) * D), m->ln1 = AA(be, LM * D), m->rstd1 = A(be, LM), m->qkv = AA(be, LM * m->S);
    /* Attention state kept for backward: the CUDA backend keeps the log-sum-exp (B, H, T), the CPU backends the
     * probabilities (B, H, T, T) (lib/model/backend.h, lib/model/cuda/backend_cuda.h). */
    m->att_n = (size_t)m->B * m->H * m->T * (is_cuda ? 1 : (size_t)m->T);
    m->raw = AA(be, LM * m->S), m->rq = A(be, LM * (m->H + m->KV)), m->lse = A(be, (size_t)L * m->att_n);
    m->atty = AA(be, LM * m->qd), m->x2 = AA(be, LM * D), m->ln2 = AA(be, LM * D), m->rstd2 = A(be, LM);
    m->gu = AA(be, LM * 2 * m->I), m->h = AA(be, LM * m->I), m->lnf = AA(be, (size_t)M * D), m->rstdf = A(be, M);
    m->dresid = AA(be, (size_t)M * D), m->dln = AA(be, (size_t)M * D), m->dqkv = AA(be, (size_t)M * m->S);
    m->datty = AA(be, (size_t)M * m->qd), m->dh = AA(be, (size_t)M * m->I), m->dgu = AA(be, (size_t)M * 2 * m->I);
    m->logits = AA(be, (size_t)m->CH * m->V), m->nll = A(be, M), m->wt = A(be, M);
    m->ids = be->alloc((size_t)M * 4), m->tgt = be->alloc((size_t)M * 4);
    int half = m->hd / 2;
    float *c = malloc((size_t)m->T * half * 4), *sn = malloc((size_t)m->T * half * 4), *wt = malloc((size_t)M * 4);
    for (int t = 0; t < m->T; t++)
        for (int i = 0; i < half; i++) {
            double f = t * pow(1e6, -2.0 * i / m->hd);
            c[t * half + i] = (float)cos(f), sn[t * half + i] = (float)sin(f);
        }
    m->cosb = A(be, (size_t)m->T * half), m->sinb = A(be, (size_t)m->T * half);
    be->upload(m->cosb, c, (size_t)m->T * half * 4), be->upload(m->sinb, sn, (size_t)m->T * half * 4);
    /* the batch: random ids; about half of the positions masked (input: the mask token, id V - 1) and scored
     * against the original id, weight 1 / (number scored) */
    int32_t *ids = malloc((size_t)M * 4), *tg = malloc((size_t)M * 4);
    int nt = 0;
    for (int i = 0; i < M; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int32_t id = (int32_t)((s >> 33) % (uint64_t)m->V);
        tg[i] = (s >> 20) & 1 ? id : -1;
        ids[i] = tg[i] >= 0 ? m->V - 1 : id;
        nt += tg[i] >= 0;
    }
    for (int i = 0; i < M; i++) wt[i] = 1.0f / (float)nt;
    be->upload(m->ids, ids, (size_t)M * 4), be->upload(m->tgt, tg, (size_t)M * 4), be->upload(m->wt, wt, (size_t)M * 4);
    free(c), free(sn), free(wt), free(ids), free(tg);
}

static void net_free(net *m, const scp_backend *be)
{
    void *f[] = {m->w, m->g, m->om, m->ov, m->resid, m->ln1, m->rstd1, m->qkv, m->raw, m->rq, m->lse, m->atty, m->x2,
                 m->ln2, m->rstd2, m->gu, m->h, m->lnf, m->rstdf, m->dresid, m->dln, m->dqkv, m->datty, m->dh, m->dgu,
                 m->logits, m->nll, m->cosb, m->sinb, m->wt};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) be->free(f[i]);
    if ((void *)m->wc != (void *)m->w) be->free(m->wc);
    be->free(m->ids), be->free(m->tgt);
    size_t *o[] = {m->o_ln1, m->o_qkv, m->o_qn, m->o_kn, m->o_o, m->o_ln2, m->o_gu, m->o_dn};
    for (size_t i = 0; i < sizeof o / sizeof *o; i++) free(o[i]);
}

/* One step: forward, backward (as lib/model/model.c orders the calls), AdamW. Returns the loss. */
static double step(const net *m, const scp_backend *be, int t)
{
    const int L = m->L, D = m->D, M = m->M, S = m->S, qd = m->qd, kvd = m->kvd, I = m->I, V = m->V, H = m->H, KV = m->KV;
    const float eps = 1e-6f;
    const size_t es = be->act_size;
    float *G = m->g;
    const scp_act *W = m->wc;
    scp_attn_args aa = {.B = m->B, .T = m->T, .H = H, .KV = KV, .hd = m->hd, .ld_qkv = S, .scale = 1.0f / sqrtf((float)m->hd)};
    if ((void *)m->wc != (void *)m->w) be->to_act(m->wc, m->w, m->n);
    be->zero_bytes(G, m->n * sizeof(float));
    be->embedding_fwd(m->resid, m->ids, AT(W, m->o_emb), M, D);
    for (int l = 0; l < L; l++) {
        size_t a = (size_t)l * M;
        scp_act *xin = AT(m->resid, a * D), *xout = AT(xin, (size_t)M * D), *ln1 = AT(m->ln1, a * D);
        scp_act *qkv = AT(m->qkv, a * S), *raw = AT(m->raw, a * S), *atty = AT(m->atty, a * qd), *x2 = AT(m->x2, a * D);
        scp_act *ln2 = AT(m->ln2, a * D), *gu = AT(m->gu, a * 2 * I), *h = AT(m->h, a * I);
        float *r = m->rq + a * (H + KV), *lse = m->lse + (size_t)l * m->att_n;
        be->rmsnorm_fwd(ln1, m->rstd1 + a, xin, AT(W, m->o_ln1[l]), M, 1, D, D, eps);
        be->matmul_fwd(qkv, S, ln1, D, AT(W, m->o_qkv[l]), NULL, M, D, S, 0.0f);
        be->qk_norm_rope_fwd(qkv, raw, r, AT(W, m->o_qn[l]), AT(W, m->o_kn[l]), m->cosb, m->sinb, M, m->T, H, KV, m->hd,
                             S, eps);
        be->attention_fwd(atty, lse, qkv, AT(qkv, qd), AT(qkv, qd + kvd), &aa);
        be->copy_bytes(x2, xin, (size_t)M * D * es);
        be->matmul_fwd(x2, D, atty, qd, AT(W, m->o_o[l]), NULL, M, qd, D, 1.0f);
        be->rmsnorm_fwd(ln2, m->rstd2 + a, x2, AT(W, m->o_ln2[l]), M, 1, D, D, eps);
        be->matmul_fwd(gu, 2 * I, ln2, D, AT(W, m->o_gu[l]), NULL, M, D, 2 * I, 0.0f);
        be->swiglu_fwd(h, gu, M, I);
        be->copy_bytes(xout, x2, (size_t)M * D * es);
        be->matmul_fwd(xout, D, h, I, AT(W, m->o_dn[l]), NULL, M, I, D, 1.0f);
    }
    scp_act *xf = AT(m->resid, (size_t)L * M * D);
    be->rmsnorm_fwd(m->lnf, m->rstdf, xf, AT(W, m->o_fn), M, 1, D, D, eps);
    /* LM head (tied) and loss, CH rows at a time: logits (CH, V) are overwritten by their gradient. */
    double loss = 0;
    for (int r0 = 0; r0 < M; r0 += m->CH) {
        int n = M - r0 < m->CH ? M - r0 : m->CH;
        be->matmul_fwd(m->logits, V, AT(m->lnf, (size_t)r0 * D), D, AT(W, m->o_emb), NULL, n, D, V, 0.0f);
        loss += be->crossentropy(m->logits, m->nll + r0, m->tgt + r0, m->wt + r0, n, V, 1);
        be->matmul_bwd_w(G + m->o_emb, NULL, m->logits, V, AT(m->lnf, (size_t)r0 * D), D, n, D, V);
        be->matmul_bwd_inp(AT(m->dln, (size_t)r0 * D), D, m->logits, V, AT(W, m->o_emb), n, D, V, 0.0f);
    }
    be->zero_bytes(m->dresid, (size_t)M * D * es);
    be->rmsnorm_bwd(m->dresid, G + m->o_fn, m->dln, xf, AT(W, m->o_fn), m->rstdf, M, 1, D, D, 1);
    for (int l = L - 1; l >= 0; l--) {
        size_t a = (size_t)l * M;
        scp_act *xin = AT(m->resid, a * D), *ln1 = AT(m->ln1, a * D), *qkv = AT(m->qkv, a * S), *raw = AT(m->raw, a * S);
        scp_act *atty = AT(m->atty, a * qd), *x2 = AT(m->x2, a * D), *ln2 = AT(m->ln2, a * D);
        scp_act *gu = AT(m->gu, a * 2 * I), *h = AT(m->h, a * I), *dqkv = m->dqkv;
        float *r = m->rq + a * (H + KV), *lse = m->lse + (size_t)l * m->att_n;
        be->matmul_bwd_inp(m->dh, I, m->dresid, D, AT(W, m->o_dn[l]), M, I, D, 0.0f);
        be->matmul_bwd_w(G + m->o_dn[l], NULL, m->dresid, D, h, I, M, I, D);
        be->swiglu_bwd(m->dgu, m->dh, gu, M, I);
        be->matmul_bwd_inp(m->dln, D, m->dgu, 2 * I, AT(W, m->o_gu[l]), M, D, 2 * I, 0.0f);
        be->matmul_bwd_w(G + m->o_gu[l], NULL, m->dgu, 2 * I, ln2, D, M, D, 2 * I);
        be->rmsnorm_bwd(m->dresid, G + m->o_ln2[l], m->dln, x2, AT(W, m->o_ln2[l]), m->rstd2 + a, M, 1, D, D, 1);
        be->matmul_bwd_inp(m->datty, qd, m->dresid, D, AT(W, m->o_o[l]), M, qd, D, 0.0f);
        be->matmul_bwd_w(G + m->o_o[l], NULL, m->dresid, D, atty, qd, M, qd, D);
        be->attention_bwd(dqkv, AT(dqkv, qd), AT(dqkv, qd + kvd), m->datty, atty, lse, qkv, AT(qkv, qd), AT(qkv, qd + kvd), &aa);
        be->qk_norm_rope_bwd(dqkv, G + m->o_qn[l], G + m->o_kn[l], raw, AT(W, m->o_qn[l]), AT(W, m->o_kn[l]), r, m->cosb,
                             m->sinb, M, m->T, H, KV, m->hd, S);
        be->matmul_bwd_inp(m->dln, D, dqkv, S, AT(W, m->o_qkv[l]), M, D, S, 0.0f);
        be->matmul_bwd_w(G + m->o_qkv[l], NULL, dqkv, S, ln1, D, M, D, S);
        be->rmsnorm_bwd(m->dresid, G + m->o_ln1[l], m->dln, xin, AT(W, m->o_ln1[l]), m->rstd1 + a, M, 1, D, D, 1);
    }
    be->embedding_bwd(G + m->o_emb, m->dresid, m->ids, M, D, V);
    float b1 = 0.9f, b2 = 0.95f;
    be->adamw(m->w, G, m->om, m->ov, m->n, 1e-4f, b1, b2, 1e-8f, 0.0f, 1 - powf(b1, (float)t), 1 - powf(b2, (float)t));
    return loss;
}

/* --driver: the same shape and batch through lib/model/model.c (scp_model_step with the device-resident weights,
 * gradients and moments, then the gradient norm and AdamW), as scp-train runs it. The driver scores only the
 * masked rows in the LM head (the table path above projects every row), so it does less work than the FLOP count
 * assumes, which is the one for the whole batch like PyTorch's. The per-operation times come from one more step
 * on the profiled table (the driver runs unchanged on it, model/backend_profile.h). */
static double driver_step(scp_model *dm, const scp_batch *b, float *om, float *ov, const float *lr, int t)
{
    scp_model_zero_grad(dm);
    double loss = scp_model_step(dm, b, 1, NULL);
    double gn = scp_model_grad_norm(dm);
    if (gn > 1.0) scp_model_scale_grads(dm, (float)(1.0 / gn));
    scp_model_adamw(dm, om, ov, lr, 0.9f, 0.95f, 1e-8f, 0.0f, t);
    return loss;
}

/* The device's peak, or -1 where the table lives in host memory (the process's resident set tells there). */
static long long peak_bytes(const scp_backend *be) { return be->host_memory ? -1 : (long long)be->peak_bytes(); }

/* The ops_ms object of the JSON line: op_t in milliseconds. */
static void print_ops(void)
{
    printf("\"ops_ms\": {");
    for (int o = 0; o < SCP_PROF_N; o++) printf("%s\"%s\": %.3f", o ? ", " : "", scp_prof_op_name[o], 1e3 * op_t[o]);
    printf("}");
}

static int run_driver(const net *m, const scp_model_config *cfg, const char *bname, const char *dev, int steps,
                      int recompute)
{
    scp_model *dm = scp_model_new(cfg, bname);
    if (!dm) scp_die_last();
    /* scp_model_init_random's values, a tensor per thread: on one thread the billions of normal draws of the
     * larger shapes would take longer than the timed steps. */
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < dm->n_params; i++)
        scp_param_init_random(&dm->desc[i], dm->desc[i].index, 1, 0.02f, scp_model_param(dm, i));
    scp_model_weights_changed(dm);
    scp_model_set_recompute(dm, recompute);
    int32_t *ids = malloc((size_t)m->M * 4), *tg = malloc((size_t)m->M * 4);
    float *wt = malloc((size_t)m->M * 4), *om = calloc((size_t)dm->n_weights, 4), *ov = calloc((size_t)dm->n_weights, 4);
    float *lr = malloc((size_t)dm->n_params * 4);
    if (!ids || !tg || !wt || !om || !ov || !lr) scp_die("out of host memory for the driver's batch and moments");
    uint64_t s = 1;
    int nt = 0;
    for (int i = 0; i < m->M; i++) {   /* the batch of net_init: half the positions masked and scored */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int32_t id = (int32_t)((s >> 33) % (uint64_t)m->V);
        tg[i] = (s >> 20) & 1 ? id : -1;
        ids[i] = tg[i] >= 0 ? m->V - 1 : id;
        nt += tg[i] >= 0;
    }
    for (int i = 0; i < m->M; i++) wt[i] = 1.0f / (float)nt;
    for (int i = 0; i < dm->n_params; i++) lr[i] = 1e-4f;
    scp_batch b = {.B = m->B, .T = m->T, .input = ids, .target = tg, .weight = wt, .attn = SCP_ATTN_BIDIRECTIONAL};
    double t_first = now(), loss0 = driver_step(dm, &b, om, ov, lr, 1);
    t_first = now() - t_first;   /* scp_model_step returns the loss: the device has finished */
    double best = 1e30, total = 0, loss = loss0;
    for (int k = 0; k < steps; k++) {
        double t0 = now();
        loss = driver_step(dm, &b, om, ov, lr, 2 + k);
        scp_model_grad_norm(dm);   /* a value read back: waits for AdamW */
        double dt = now() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    long long peak = peak_bytes(dm->backend);
    base = dm->backend;   /* the table the driver runs on, which sync_dev reads through */
    sync_buf = base->alloc(sizeof(float));
    dm->backend = scp_backend_profiled(base, sync_current, op_t);
    driver_step(dm, &b, om, ov, lr, 2 + steps);
    scp_model_grad_norm(dm);
    dm->backend = base;
    base->free(sync_buf);
    printf("{\"backend\": \"%s driver%s\", \"device\": \"%s\", \"model_type\": \"%s\", \"B\": %d, \"T\": %d, "
           "\"params\": %lld, \"first_step_s\": %.4f, \"best_s\": %.4f, \"mean_s\": %.4f, \"tok_s\": %.1f, "
           "\"loss0\": %.6f, \"loss\": %.6f, \"workspace_bytes\": %lld, \"device_peak_bytes\": %lld, ",
           bname, recompute ? " recompute" : "", dev, scp_arch_name(cfg->arch), m->B, m->T, (long long)dm->n_weights,
           t_first, best, total / steps, m->M / best, loss0, loss, (long long)scp_model_workspace_bytes(dm), peak);
    print_ops();
    printf("}\n");
    free(ids), free(tg), free(wt), free(om), free(ov), free(lr);
    scp_model_free(dm);
    return isfinite(loss) ? 0 : 1;
}

/* The built-in shapes (Qwen3-0.6B, or --tiny) as a config.json object, so that both steps read one description. */
static json_t *builtin_config(int tiny)
{
    json_t *j = json_object();
    json_object_set_new(j, "model_type", json_string("qwen3"));
    json_object_set_new(j, "hidden_size", json_integer(tiny ? 64 : 1024));
    json_object_set_new(j, "intermediate_size", json_integer(tiny ? 128 : 3072));
    json_object_set_new(j, "num_hidden_layers", json_integer(tiny ? 2 : 28));
    json_object_set_new(j, "num_attention_heads", json_integer(tiny ? 4 : 16));
    json_object_set_new(j, "num_key_value_heads", json_integer(tiny ? 2 : 8));
    json_object_set_new(j, "head_dim", json_integer(tiny ? 16 : 128));
    json_object_set_new(j, "vocab_size", json_integer(tiny ? 1000 : 151936));
    json_object_set_new(j, "rope_theta", json_real(1e6));
    json_object_set_new(j, "tie_word_embeddings", json_true());
    return j;
}

int main(int argc, char **argv)
{
    scp_set_progname(argv[0]);
    const char *bname = "cuda", *config = NULL;
    int tiny = 0, steps = 3, driver = 0, recompute = 0, B = 0, T = 0;
    static const struct option lo[] = {{"backend", 1, 0, 'b'}, {"tiny", 0, 0, 'y'}, {"config", 1, 0, 'c'},
                                       {"batch", 1, 0, 'B'}, {"seq", 1, 0, 'T'}, {"steps", 1, 0, 'n'},
                                       {"driver", 0, 0, 'd'}, {"recompute", 0, 0, 'r'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "b:yc:B:T:n:dr", lo, NULL)) != -1) switch (c) {
        case 'b': bname = optarg; break;
        case 'y': tiny = 1; break;
        case 'c': config = optarg; break;
        case 'B': B = atoi(optarg); break;
        case 'T': T = atoi(optarg); break;
        case 'n': steps = atoi(optarg); break;
        case 'd': driver = 1; break;
        case 'r': recompute = 1; break;
        default:
            fprintf(stderr, "usage: scp-step [--backend cuda|cuda-bf16|cuda-fp32|cpu] [--tiny | --config CONFIG.json] "
                            "[--batch B] [--seq T] [--steps N] [--driver [--recompute]]\n");
            return 2;
        }
    if (optind < argc || steps < 1 || B < 0 || T < 0 || (tiny && config))
        scp_die("usage: --steps N >= 1, --batch and --seq positive, --tiny or --config (not both), no arguments");
    scp_model_config cfg;
    if (config) {
        if (scp_config_load(&cfg, config) < 0) scp_die_last();
    } else {
        json_t *j = builtin_config(tiny);
        if (scp_config_from_json(&cfg, j, "the built-in shape") < 0) scp_die_last();
        json_decref(j);
    }
    net m = {.L = cfg.num_layers, .D = cfg.hidden_size, .H = cfg.num_heads, .KV = cfg.num_kv_heads, .hd = cfg.head_dim,
             .I = cfg.intermediate_size, .V = cfg.vocab_size, .B = tiny ? 2 : 4, .T = tiny ? 64 : 2048, .CH = 2048};
    if (B) m.B = B;
    if (T) m.T = T;
    if (tiny) m.CH = 64;
    /* The table step below is written for the tied dense qwen3 layer; everything else goes through the driver. */
    if (!driver && (cfg.arch != SCP_ARCH_QWEN3 || !cfg.tie_word_embeddings))
        scp_die("%s: the table step takes tied qwen3 models; run %s models with --driver", config ? config : "shape",
                scp_arch_name(cfg.arch));
    char dev[256] = "cpu";
    if (strncmp(bname, "cuda", 4) == 0) {
        const scp_cuda_plugin *cuda = scp_cuda_plugin_load();
        if (!cuda) scp_die_last();
        if (cuda->device_count() == 0) scp_die("no CUDA device");
        cuda->device_describe(0, dev, sizeof dev);
        if (!(base = cuda->backend_named(bname))) scp_die("unknown backend '%s' (cuda, cuda-bf16 or cuda-fp32)", bname);
        is_cuda = 1;
    } else if (!(base = scp_backend_find(bname)))
        scp_die_last();
    esz = base->act_size;
    m.M = m.B * m.T;
    if (m.CH > m.M) m.CH = m.M;
    m.qd = m.H * m.hd, m.kvd = m.KV * m.hd, m.S = m.qd + 2 * m.kvd;
    if (driver) {
        int rc = run_driver(&m, &cfg, bname, dev, steps, recompute);
        scp_config_free(&cfg);
        return rc;
    }
    scp_config_free(&cfg);
    net_init(&m, base);
    sync_buf = m.nll;
    double t_first = now(), loss0 = step(&m, base, 1);
    sync_dev(is_cuda);
    t_first = now() - t_first;
    double best = 1e30, total = 0, loss = loss0;
    for (int s = 0; s < steps; s++) {
        double t0 = now();
        loss = step(&m, base, 2 + s);
        sync_dev(is_cuda);
        double dt = now() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    /* the profiled step: the same calls through the synchronising table */
    const scp_backend *prof = scp_backend_profiled(base, sync_current, op_t);
    step(&m, prof, 2 + steps);
    printf("{\"backend\": \"%s\", \"device\": \"%s\", \"model_type\": \"qwen3\", \"B\": %d, \"T\": %d, \"params\": %zu, "
           "\"first_step_s\": %.4f, \"best_s\": %.4f, \"mean_s\": %.4f, \"tok_s\": %.1f, \"loss0\": %.6f, "
           "\"loss\": %.6f, \"device_peak_bytes\": %lld, ",
           base->name, dev, m.B, m.T, m.n, t_first, best, total / steps, m.M / best, loss0, loss, peak_bytes(base));
    print_ops();
    printf("}\n");
    net_free(&m, base);
    return isfinite(loss) ? 0 : 1;
}
