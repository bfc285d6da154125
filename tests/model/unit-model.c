/* unit-model.c: the model driver and the CPU backend without PyTorch: the fast backend against the reference
 * loops ("cpu-ref"), the blocked matmul against CBLAS, logits against the step's loss, determinism, gradient
 * accumulation, checkpoint round trips and the refusals. (Gradients against PyTorch: tests/model/grad-check.py.) */
#include "../tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/attn_visibility.h"
#include "model/cpu/cpu.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "model/model.h"
#include "model/workspace_size.h"
#include "core/rng.h"
#include "formats/safetensors.h"

static json_t *small_config(const char *arch, int tied)
{
    json_t *j = json_object();
    json_object_set_new(j, "model_type", json_string(arch));
    json_object_set_new(j, "hidden_size", json_integer(24));
    json_object_set_new(j, "intermediate_size", json_integer(40));
    json_object_set_new(j, "num_hidden_layers", json_integer(2));
    json_object_set_new(j, "num_attention_heads", json_integer(4));
    json_object_set_new(j, "num_key_value_heads", json_integer(2));
    json_object_set_new(j, "head_dim", json_integer(6));
    json_object_set_new(j, "vocab_size", json_integer(53));
    json_object_set_new(j, "tie_word_embeddings", json_boolean(tied));
    return j;
}

static scp_model *small_model(const char *arch, int tied, const char *backend)
{
    json_t *j = small_config(arch, tied);
    scp_model_config c;
    if (scp_config_from_json(&c, j, "test config") < 0) return NULL;
    json_decref(j);
    scp_model *m = scp_model_new(&c, backend);
    scp_config_free(&c);
    if (m) scp_model_init_random(m, 7, 0.2f);
    return m;
}

typedef struct ex { int32_t in[3 * 16], tg[3 * 16], doc[3 * 16]; float w[3 * 16]; } ex;

static scp_batch make_batch(ex *e, int B, int T, int V, scp_attn_mode attn, int with_doc, uint64_t seed)
{
    scp_rng r;
    scp_rng_init(&r, seed, 0);
    for (int k = 0; k < B * T; k++) {
        e->in[k] = (int32_t)scp_rng_below(&r, (uint64_t)V);
        e->tg[k] = scp_rng_uniform(&r) < 0.6 ? (int32_t)scp_rng_below(&r, (uint64_t)V) : -1;
        e->w[k] = (float)(0.5 + scp_rng_uniform(&r));
        e->doc[k] = (k % T) < T / 2 ? 0 : ((k % T) < T - 2 ? 1 : -1);
    }
    scp_batch b = {.B = B, .T = T, .input = e->in, .target = e->tg, .weight = e->w, .doc = with_doc ? e->doc : NULL,
                   .attn = attn, .anneal_p = 0.3f, .anneal_seed = 99};
    return b;
}

static double rel(const float *a, const float *b, int64_t n)
{
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), s += (double)b[i] * b[i];
    return sqrt(d / (s > 0 ? s : 1e-300));
}

/* The whole step on "cpu" against "cpu-ref" (naive matmul, attention and cross-entropy in double). */
static void test_fast_vs_ref(void)
{
    static const struct { const char *arch; int tied; scp_attn_mode attn; int doc; const char *what; } cs[] = {
        {"llama", 0, SCP_ATTN_CAUSAL, 0, "llama causal"},
        {"qwen2", 1, SCP_ATTN_BIDIRECTIONAL, 1, "qwen2 bidirectional doc"},
        {"qwen3", 0, SCP_ATTN_ANNEAL, 0, "qwen3 anneal"},
        {"qwen3", 1, SCP_ATTN_CAUSAL, 1, "qwen3 causal doc"},
    };
    for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
        scp_model *a = small_model(cs[c].arch, cs[c].tied, "cpu"), *r = small_model(cs[c].arch, cs[c].tied, "cpu-ref");
        ex e;
        scp_batch b = make_batch(&e, 3, 16, 53, cs[c].attn, cs[c].doc, 3 + c);
        scp_model_zero_grad(a);
        scp_model_zero_grad(r);
        float na[48], nr[48];
        double la = scp_model_step(a, &b, 1, na), lr = scp_model_step(r, &b, 1, nr);
        tap_ok(fabs(la - lr) < 1e-5 * fabs(lr), "%s: loss fast %.7f = reference %.7f", cs[c].what, la, lr);
        double e1 = rel(na, nr, 48), e2 = rel(a->grads, r->grads, a->n_weights);
        tap_ok(e1 < 1e-5 && e2 < 1e-5, "%s: token nll (rel %.1e) and gradients (rel %.1e) match the reference loops",
               cs[c].what, e1, e2);
        scp_model_free(a);
        scp_model_free(r);
    }
}

/* The blocked fallback (used without CBLAS) and the fast entries against the double-precision definition, on
 * odd sizes, strided rows, a bias and accumulation. */
static void test_matmul(void)
{
    int M = 37, K = 29, N = 23, ldi = 31, ldo = 27;
    scp_rng r;
    scp_rng_init(&r, 5, 5);
    float *x = malloc(sizeof(float) * M * ldi), *w = malloc(sizeof(float) * N * K), *bias = malloc(sizeof(float) * N);
    float *d = malloc(sizeof(float) * M * ldo);
    for (int i = 0; i < M * ldi; i++) x[i] = (float)scp_rng_normal(&r);
    for (int i = 0; i < N * K; i++) w[i] = (float)scp_rng_normal(&r);
    for (int i = 0; i < N; i++) bias[i] = (float)scp_rng_normal(&r);
    for (int i = 0; i < M * ldo; i++) d[i] = (float)scp_rng_normal(&r);
    float *o[3], *di[3], *dw[3], *db[3];
    for (int v = 0; v < 3; v++) {
        o[v] = malloc(sizeof(float) * M * ldo), di[v] = malloc(sizeof(float) * M * ldi);
        dw[v] = malloc(sizeof(float) * N * K), db[v] = malloc(sizeof(float) * N);
        for (int i = 0; i < M * ldo; i++) o[v][i] = 0.5f;   /* beta 1: adds to this */
        for (int i = 0; i < M * ldi; i++) di[v][i] = 0.25f;
        for (int i = 0; i < N * K; i++) dw[v][i] = 0.125f;
        for (int i = 0; i < N; i++) db[v][i] = 1.0f;
    }
    scp_cpu_matmul_fwd_ref(o[0], ldo, x, ldi, w, bias, M, K, N, 1.0f);
    scp_cpu_matmul_fwd_blocked(o[1], ldo, x, ldi, w, bias, M, K, N, 1.0f);
    scp_cpu_matmul_fwd(o[2], ldo, x, ldi, w, bias, M, K, N, 1.0f);
    scp_cpu_matmul_bwd_inp_ref(di[0], ldi, d, ldo, w, M, K, N, 1.0f);
    scp_cpu_matmul_bwd_inp_blocked(di[1], ldi, d, ldo, w, M, K, N, 1.0f);
    scp_cpu_matmul_bwd_inp(di[2], ldi, d, ldo, w, M, K, N, 1.0f);
    scp_cpu_matmul_bwd_w_ref(dw[0], db[0], d, ldo, x, ldi, M, K, N);
    scp_cpu_matmul_bwd_w_blocked(dw[1], db[1], d, ldo, x, ldi, M, K, N);
    scp_cpu_matmul_bwd_w(dw[2], db[2], d, ldo, x, ldi, M, K, N);
    for (int v = 1; v < 3; v++) {
        const char *nm = v == 1 ? "blocked" : "fast";
        tap_ok(rel(o[v], o[0], M * ldo) < 1e-6, "%s matmul forward (bias, beta 1, strides) = reference", nm);
        tap_ok(rel(di[v], di[0], M * ldi) < 1e-6, "%s matmul input gradient = reference", nm);
        tap_ok(rel(dw[v], dw[0], N * K) < 1e-6 && rel(db[v], db[0], N) < 1e-6, "%s matmul weight and bias gradients = reference", nm);
    }
    for (int v = 0; v < 3; v++) free(o[v]), free(di[v]), free(dw[v]), free(db[v]);
    free(x), free(w), free(bias), free(d);
}

/* scp_model_logits against the step: -log softmax(logits)[target] (computed here, in double) = token_nll. */
static void test_logits(void)
{
    scp_model *m = small_model("qwen3", 0, "cpu");
    ex e;
    scp_batch b = make_batch(&e, 2, 16, 53, SCP_ATTN_BIDIRECTIONAL, 0, 11);
    float nll[32], *lg = malloc(sizeof(float) * 32 * 53);
    double loss = scp_model_step(m, &b, 0, nll), sum = 0, worst = 0;
    tap_ok(scp_model_logits(m, &b, lg) == 0, "scp_model_logits runs");
    for (int k = 0; k < 32; k++) {
        if (e.tg[k] < 0) {
            worst = fmax(worst, fabs(nll[k]));
            continue;
        }
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < 53; v++) mx = fmax(mx, lg[k * 53 + v]);
        for (int v = 0; v < 53; v++) s += exp(lg[k * 53 + v] - mx);
        double ref = mx + log(s) - lg[k * 53 + e.tg[k]];
        worst = fmax(worst, fabs(ref - nll[k]));
        sum += e.w[k] * ref;
    }
    tap_ok(worst < 1e-5, "token nll of the step = cross-entropy of scp_model_logits (max diff %.1e)", worst);
    tap_ok(fabs(sum - loss) < 1e-5 * fabs(loss), "loss = sum of weight * nll from the logits (%.6f vs %.6f)", loss, sum);
    scp_model_zero_grad(m);
    double lb = scp_model_step(m, &b, 1, NULL);   /* grows the workspace from forward-only to training */
    tap_ok(lb == loss, "a training step after forward-only ones gives bitwise the same loss");
    free(lg);
    scp_model_free(m);
}

/* scp_model_logits_rows: the chosen rows (any order, one repeated) are those rows of scp_model_logits, on fp32
 * storage and on bf16 storage: not bitwise, since the matmul of 5 rows may block its sums otherwise than the
 * matmul of 32 (fp32: 1e-6 of the norm; bf16: a value rounding to the neighbouring bf16 number, 4e-3); and bad
 * rows are refused. */
static void test_logits_rows(void)
{
    const char *backends[2] = {"cpu", "cpu-bf16"};
    for (int k = 0; k < 2; k++) {
        scp_model *m = small_model("llama", 1, backends[k]);
        ex e;
        scp_batch b = make_batch(&e, 2, 16, 53, SCP_ATTN_BIDIRECTIONAL, 0, 12);
        float *all = malloc(sizeof(float) * 32 * 53), *some = malloc(sizeof(float) * 5 * 53);
        const int32_t rows[5] = {31, 0, 17, 17, 5};
        int run = scp_model_logits(m, &b, all) == 0 && scp_model_logits_rows(m, &b, rows, 5, some) == 0;
        float *want = malloc(sizeof(float) * 5 * 53);
        for (int r = 0; r < 5; r++) memcpy(want + r * 53, all + rows[r] * 53, sizeof(float) * 53);
        double err = run ? rel(some, want, 5 * 53) : 1;
        tap_ok(run && err <= (k ? 4e-3 : 1e-6), "%s: logits of rows 31, 0, 17, 17, 5 = those rows of all the logits (rel %.1e)",
               backends[k], err);
        free(want);
        const int32_t bad[1] = {32};
        tap_ok(scp_model_logits_rows(m, &b, bad, 1, some) < 0 && scp_model_logits_rows(m, &b, rows, 33, some) < 0,
               "%s: a row outside the batch, or more rows than it has, refused", backends[k]);
        free(all), free(some);
        scp_model_free(m);
    }
}

/* Incremental decoding (scp_model_decode_*): a 5-token prompt, then 7 tokens one at a time; the logits of every
 * position against scp_model_logits over the whole causal sequence, on qwen3 (q/k norm, GQA), llama and
 * qwen3_moe, on fp32 and bf16 storage. The sums differ only in order (fp32: 1e-5 of the norm), but in bf16 one
 * stored value rounding to the neighbouring bf16 number moves what follows (3e-2). Misuse is refused. */
static void test_decode(void)
{
    const char *archs[3] = {"qwen3", "llama", "qwen3_moe"}, *backends[2] = {"cpu", "cpu-bf16"};
    const int P = 5, N = 12, V = 53;
    int32_t ids[12];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 29 + 3) % V);
    for (int ai = 0; ai < 3; ai++)
        for (int bi = 0; bi < 2; bi++) {
            json_t *j = small_config(archs[ai], ai != 1);
            if (ai == 2) {
                json_object_set_new(j, "num_experts", json_integer(4));
                json_object_set_new(j, "num_experts_per_tok", json_integer(2));
                json_object_set_new(j, "moe_intermediate_size", json_integer(16));
            }
            scp_model_config c;
            scp_model *m = scp_config_from_json(&c, j, "test config") == 0 ? scp_model_new(&c, backends[bi]) : NULL;
            json_decref(j);
            if (!m) {
                tap_ok(0, "%s on %s: model made (%s)", archs[ai], backends[bi], scp_last_error());
                continue;
            }
            scp_config_free(&c);
            scp_model_init_random(m, 7, 0.2f);
            float *full = malloc(sizeof(float) * N * V), *step = malloc(sizeof(float) * N * V);
            scp_batch b = {.B = 1, .T = N, .input = ids, .attn = SCP_ATTN_CAUSAL};
            int run = scp_model_can_decode(m) && scp_model_logits(m, &b, full) == 0 &&
                      scp_model_decode_start(m, ids, P, N, step + (size_t)(P - 1) * V) == 0;
            for (int t = P; run && t < N; t++) run = scp_model_decode_next(m, ids[t], step + (size_t)t * V) == 0;
            double err = run ? rel(step + (size_t)(P - 1) * V, full + (size_t)(P - 1) * V, (int64_t)(N - P + 1) * V) : 1;
            tap_ok(run && err <= (bi ? 3e-2 : 1e-5), "%s on %s: decoded logits of positions %d..%d = the full forward's (rel %.1e)",
                   archs[ai], backends[bi], P - 1, N - 1, err);
            if (ai == 0) {
                tap_ok(scp_model_decode_next(m, ids[0], step) < 0 && strstr(scp_last_error(), "full"),
                       "%s: a full cache refused (%s)", backends[bi], scp_last_error());
                scp_model_decode_end(m);
                tap_ok(scp_model_decode_next(m, ids[0], step) < 0 && scp_model_decode_start(m, ids, 3, 2, step) < 0 &&
                           scp_model_decode_start(m, ids, 2, 4, step) == 0 && scp_model_decode_next(m, V, step) < 0,
                       "%s: decode_next before a prompt, a prompt beyond the cache, a token outside the vocabulary refused",
                       backends[bi]);
            }
            free(full), free(step);
            scp_model_free(m);
        }
}

/* Same inputs, same thread count: the same bits (resume relies on it); and two calls add their gradients. */
static void test_determinism(void)
{
    scp_model *m = small_model("qwen2", 1, "cpu");
    ex e;
    scp_batch b = make_batch(&e, 3, 16, 53, SCP_ATTN_ANNEAL, 1, 17);
    scp_model_zero_grad(m);
    double l1 = scp_model_step(m, &b, 1, NULL);
    float *g1 = malloc(sizeof(float) * m->n_weights);
    memcpy(g1, m->grads, sizeof(float) * m->n_weights);
    scp_model_zero_grad(m);
    double l2 = scp_model_step(m, &b, 1, NULL);
    tap_ok(l1 == l2 && memcmp(g1, m->grads, sizeof(float) * m->n_weights) == 0, "a repeated step gives bitwise the same loss and gradients");
    scp_model_step(m, &b, 1, NULL);
    for (int64_t i = 0; i < m->n_weights; i++) g1[i] *= 2.0f;
    tap_ok(rel(m->grads, g1, m->n_weights) < 1e-6, "a second step adds its gradients (micro-batch accumulation)");
    double n = 0;
    for (int64_t i = 0; i < m->n_weights; i++) n += (double)m->grads[i] * m->grads[i];
    double gn = scp_model_grad_norm(m);
    tap_ok(fabs(gn - sqrt(n)) < 1e-6 * sqrt(n), "grad norm %.6f = sqrt(sum g^2)", gn);
    scp_model_scale_grads(m, 0.5f);
    tap_ok(fabs(scp_model_grad_norm(m) - 0.5 * gn) < 1e-6 * gn, "scale_grads halves the norm");
    /* A frozen parameter (lr 0) keeps its weights. */
    float *om = calloc(m->n_weights, sizeof(float)), *ov = calloc(m->n_weights, sizeof(float)), *lr = malloc(sizeof(float) * m->n_params);
    for (int i = 0; i < m->n_params; i++) lr[i] = m->desc[i].group == SCP_GROUP_MLP ? 0.0f : 1e-2f;
    float *w0 = malloc(sizeof(float) * m->n_weights);
    memcpy(w0, m->weights, sizeof(float) * m->n_weights);
    scp_model_adamw(m, om, ov, lr, 0.9f, 0.999f, 1e-8f, 0.1f, 1);
    int frozen = 1, moved = 0;
    for (int i = 0; i < m->n_params; i++)
        for (int64_t k = m->offset[i]; k < m->offset[i] + m->desc[i].numel; k++) {
            if (lr[i] == 0.0f && m->weights[k] != w0[k]) frozen = 0;
            if (lr[i] != 0.0f && m->weights[k] != w0[k]) moved++;
        }
    tap_ok(frozen && moved > 0, "AdamW leaves the frozen MLP group untouched and moves the others");
    free(om), free(ov), free(lr), free(w0), free(g1);
    scp_model_free(m);
}

/* The driver's host/device mirroring ("cpu-mirror": the CPU kernels on buffers the driver must treat as device
 * memory): three training steps with AdamW, a scaled gradient and a direct weight edit in between, bitwise
 * equal to the same on "cpu". */
static void test_mirror(void)
{
    scp_model *a = small_model("qwen3", 1, "cpu"), *d = small_model("qwen3", 1, "cpu-mirror");
    ex e;
    scp_batch b = make_batch(&e, 2, 16, 53, SCP_ATTN_BIDIRECTIONAL, 1, 23);
    float *om[2], *ov[2], *lr = malloc(sizeof(float) * a->n_params);
    for (int k = 0; k < 2; k++) om[k] = calloc(a->n_weights, sizeof(float)), ov[k] = calloc(a->n_weights, sizeof(float));
    for (int i = 0; i < a->n_params; i++) lr[i] = 1e-2f;
    int same = 1;
    for (int step = 1; step <= 3; step++) {
        scp_model *ms[2] = {a, d};
        double l[2];
        for (int k = 0; k < 2; k++) {
            scp_model_zero_grad(ms[k]);
            l[k] = scp_model_step(ms[k], &b, 1, NULL);
            l[k] += scp_model_step(ms[k], &b, 1, NULL);   /* two micro-batches */
            scp_model_scale_grads(ms[k], 0.5f);
            scp_model_adamw(ms[k], om[k], ov[k], lr, 0.9f, 0.95f, 1e-8f, 0.1f, step);
            if (step == 2) {
                scp_model_sync_host(ms[k]);
                ms[k]->weights[5] += 0.25f;   /* a caller's own edit */
                scp_model_weights_changed(ms[k]);
            }
        }
        scp_model_sync_host(d);
        same = same && l[0] == l[1] && memcmp(a->grads, d->grads, sizeof(float) * a->n_weights) == 0 &&
               memcmp(a->weights, d->weights, sizeof(float) * a->n_weights) == 0 &&
               memcmp(om[0], om[1], sizeof(float) * a->n_weights) == 0 && memcmp(ov[0], ov[1], sizeof(float) * a->n_weights) == 0;
    }
    tap_ok(same, "device-resident buffers: losses, gradients, weights and moments bitwise equal to the CPU's over 3 steps");
    /* Gradients changed on the host (an MPI all-reduce), then AdamW on the host arrays, then a step on the device. */
    for (int k = 0; k < 2; k++) {
        scp_model *mk = k ? d : a;
        scp_model_zero_grad(mk);
        scp_model_step(mk, &b, 1, NULL);
        float *g = scp_model_host_grads(mk);
        for (int64_t i = 0; i < mk->n_weights; i += 7) g[i] *= 2.0f;
        scp_model_grads_changed(mk);
        scp_model_adamw(mk, om[k], ov[k], lr, 0.9f, 0.95f, 1e-8f, 0.1f, 4);
        scp_model_zero_grad(mk);
        scp_model_step(mk, &b, 1, NULL);
        scp_model_adamw(mk, om[k], ov[k], lr, 0.9f, 0.95f, 1e-8f, 0.1f, 5);
    }
    scp_model_sync_host(d);
    tap_ok(memcmp(a->weights, d->weights, sizeof(float) * a->n_weights) == 0 && memcmp(om[0], om[1], sizeof(float) * a->n_weights) == 0,
           "host-side gradient edit, host AdamW, then device AdamW: weights and moments still bitwise equal");
    float *la = malloc(sizeof(float) * 32 * 53), *ld = malloc(sizeof(float) * 32 * 53);
    tap_ok(scp_model_logits(a, &b, la) == 0 && scp_model_logits(d, &b, ld) == 0 && memcmp(la, ld, sizeof(float) * 32 * 53) == 0,
           "mirrored logits equal");
    for (int k = 0; k < 2; k++) free(om[k]), free(ov[k]);
    free(lr), free(la), free(ld);
    scp_model_free(a);
    scp_model_free(d);
}

/* The vocabulary projection in chunks of rows (SCP_LOGIT_ROWS forces 5-row chunks where 53 words would fit the
 * whole batch in one) gives the same loss, nll, gradients and logits. */
/* --recompute: each layer's forward rerun just before its backward gives bitwise the same loss and gradients
 * (on cpu and on the device-resident path), and holds fewer activation bytes. */
typedef struct hook_log { int calls; int64_t covered, next_hi; int in_order; float *grads; } hook_log;
static void log_hook(void *ctx, float *grads, int64_t off, int64_t n)
{
    hook_log *h = ctx;
    h->calls++;
    h->covered += n;
    h->grads = grads;
    /* layers come last-first: each range ends where the previous one began, until the embeddings and head */
    if (h->next_hi >= 0 && off + n != h->next_hi && h->calls <= 2) h->in_order = 0;
    h->next_hi = off;
}

static void test_recompute_and_hook(void)
{
    const char *bes[2] = {"cpu", "cpu-mirror"};
    for (int k = 0; k < 2; k++) {
        scp_model *a = small_model("qwen3", 0, bes[k]), *r = small_model("qwen3", 0, bes[k]);
        ex e;
        scp_batch b = make_batch(&e, 3, 16, 53, SCP_ATTN_CAUSAL, 1, 31);
        scp_model_set_recompute(r, 1);
        scp_model_zero_grad(a), scp_model_zero_grad(r);
        double la = scp_model_step(a, &b, 1, NULL), lr = scp_model_step(r, &b, 1, NULL);
        scp_model_sync_host(a), scp_model_sync_host(r);
        tap_ok(la == lr && memcmp(a->grads, r->grads, sizeof(float) * a->n_weights) == 0 &&
                   scp_model_workspace_bytes(r) < scp_model_workspace_bytes(a),
               "%s --recompute: bitwise the same loss and gradients, activations %lld bytes instead of %lld", bes[k],
               (long long)scp_model_workspace_bytes(r), (long long)scp_model_workspace_bytes(a));
        hook_log h = {.next_hi = -1, .in_order = 1};
        scp_model_set_grad_hook(a, log_hook, &h);
        scp_model_step(a, &b, 1, NULL);   /* not armed: no calls */
        int quiet = h.calls == 0;
        scp_model_arm_grad_hook(a);
        scp_model_step(a, &b, 1, NULL);
        int once = h.calls;
        scp_model_step(a, &b, 1, NULL);   /* disarmed after one backward */
        tap_ok(quiet && once == 2 + 2 && h.calls == once && h.covered == a->n_weights && h.in_order,
               "%s grad hook: %d ranges covering all %lld gradients once, last layer first, only when armed", bes[k],
               once, (long long)h.covered);
        scp_model_free(a), scp_model_free(r);
    }
}

/* The workspace a training step allocates is the account of model/workspace_size.h (which the memory planner adds
 * up): the same bytes, with every layer's activations or one slot under recomputation, dense and MoE, fp32 and
 * bf16 storage, host and device memory. */
static void test_workspace_account(void)
{
    const char *archs[3] = {"llama", "qwen3", "qwen3_moe"}, *bes[3] = {"cpu", "cpu-mirror", "cpu-bf16"};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++)
            for (int rc = 0; rc < 2; rc++) {
                json_t *j = small_config(archs[i], 0);
                if (i == 2) {
                    json_object_set_new(j, "num_experts", json_integer(4));
                    json_object_set_new(j, "num_experts_per_tok", json_integer(2));
                    json_object_set_new(j, "moe_intermediate_size", json_integer(8));
                }
                scp_model_config c;
                scp_config_from_json(&c, j, "test config");
                json_decref(j);
                scp_model *m = scp_model_new(&c, bes[k]);
                scp_model_init_random(m, 7, 0.2f);
                scp_model_set_recompute(m, rc);
                ex e;
                scp_batch b = make_batch(&e, 3, 16, 53, SCP_ATTN_BIDIRECTIONAL, 0, 5);
                scp_model_zero_grad(m);
                scp_model_step(m, &b, 1, NULL);
                scp_backend_traits tr;
                scp_backend_traits_of(m->backend, &tr);
                scp_ws_sizes z;
                scp_workspace_size(&c, &tr, 3, 16, rc ? 1 : c.num_layers, 0, &z);
                /* a few sizes from their shapes: one slot is (M = 48 rows) x width x element bytes */
                size_t a = tr.act_size, P = rc ? 1 : 2, per_slot_qkv = 48 * (4 + 2 * 2) * 6 * a;
                int shapes = z.qkv == P * per_slot_qkv && z.resid == 3 * 48 * 24 * a && z.doc == 3 * 16 * 4 &&
                             (i == 0 ? z.qkv_raw == 0 && z.qk_rstd == 0 : z.qk_rstd == P * 48 * 6 * 4) &&
                             (i == 2 ? z.moe_x == 48 * 2 * 24 * a && z.hmlp == P * 48 * 16 * a && z.host_bytes > 0
                                     : z.moe_x == 0 && z.host_bytes == 0);
                tap_ok(shapes && (int64_t)z.backend_bytes == scp_model_workspace_bytes(m),
                       "%s on %s%s: the step's workspace is the account's %zu bytes (model %lld)", archs[i], bes[k],
                       rc ? ", recompute" : "", z.backend_bytes, (long long)scp_model_workspace_bytes(m));
                scp_model_free(m);
                scp_config_free(&c);
            }
}

static void test_logit_chunks(void)
{
    scp_model *a = small_model("llama", 1, "cpu"), *c = small_model("llama", 1, "cpu");
    ex e;
    scp_batch b = make_batch(&e, 2, 16, 53, SCP_ATTN_CAUSAL, 0, 29);
    float na[32], nc[32], *la = malloc(sizeof(float) * 32 * 53), *lc = malloc(sizeof(float) * 32 * 53);
    scp_model_zero_grad(a);
    scp_model_zero_grad(c);
    double xa = scp_model_step(a, &b, 1, na);
    setenv("SCP_LOGIT_ROWS", "5", 1);   /* read when the workspace is sized, at c's first step */
    double xc = scp_model_step(c, &b, 1, nc);
    unsetenv("SCP_LOGIT_ROWS");
    /* sgemm rounds a 5-row product differently from a 32-row one: equal to fp32 rounding */
    tap_ok(fabs(xa - xc) < 1e-6 * fabs(xa) && rel(nc, na, 32) < 1e-6 && rel(c->grads, a->grads, a->n_weights) < 1e-5,
           "5-row vocabulary chunks: same loss, nll and gradients (rel %.1e)", rel(c->grads, a->grads, a->n_weights));
    int run = scp_model_logits(a, &b, la) == 0 && scp_model_logits(c, &b, lc) == 0;
    double el = run ? rel(lc, la, 32 * 53) : 1.0;
    tap_ok(el < 1e-6, "5-row vocabulary chunks: same logits (rel %.1e)", el);
    free(la), free(lc);
    scp_model_free(a);
    scp_model_free(c);
}

static void test_io(void)
{
    char dir[] = "/tmp/scp-unit-model.XXXXXX";
    if (!mkdtemp(dir)) { tap_ok(0, "mkdtemp"); return; }
    scp_model *m = small_model("qwen3", 0, "cpu");
    tap_ok(scp_model_save(m, dir, SCP_F32) == 0, "save F32 checkpoint");
    scp_model *l = scp_model_load(dir, "cpu");
    tap_ok(l && l->n_weights == m->n_weights && memcmp(l->weights, m->weights, sizeof(float) * m->n_weights) == 0,
           "load gives bitwise the same weights");
    scp_model_free(l);
    tap_ok(scp_model_save(m, dir, SCP_BF16) == 0, "save BF16 checkpoint");
    l = scp_model_load(dir, "cpu");
    tap_ok(l && rel(l->weights, m->weights, m->n_weights) < 4e-3, "BF16 load is within bf16 rounding");
    scp_model_free(l);
    /* The same weights as two shards named by model.safetensors.index.json (how large HF models ship). */
    {
        char *single = scp_path_join(dir, "model.safetensors"), *s1 = scp_path_join(dir, "part-1.safetensors");
        char *s2 = scp_path_join(dir, "part-2.safetensors"), *ix = scp_path_join(dir, "model.safetensors.index.json");
        scp_st_writer *w1 = scp_st_writer_new(), *w2 = scp_st_writer_new();
        json_t *map = json_object();
        for (int i = 0; i < m->n_params; i++) {
            int first = i < m->n_params / 2;
            scp_st_add(first ? w1 : w2, m->desc[i].name, SCP_F32, m->desc[i].ndim, m->desc[i].shape, m->weights + m->offset[i]);
            json_object_set_new(map, m->desc[i].name, json_string(first ? "part-1.safetensors" : "part-2.safetensors"));
        }
        json_t *idx = json_object();
        json_object_set_new(idx, "weight_map", map);
        int ok = scp_st_write(w1, s1) == 0 && scp_st_write(w2, s2) == 0 && scp_json_save(ix, idx) == 0 && unlink(single) == 0;
        scp_st_writer_free(w1), scp_st_writer_free(w2), json_decref(idx);
        l = ok ? scp_model_load(dir, "cpu") : NULL;
        tap_ok(l && memcmp(l->weights, m->weights, sizeof(float) * m->n_weights) == 0, "load from a sharded checkpoint (index.json)");
        scp_model_free(l);
        unlink(s2);
        l = scp_model_load(dir, "cpu");
        tap_ok(!l && strstr(scp_last_error(), "part-2.safetensors"), "a missing shard is named: %s", scp_last_error());
        unlink(s1), unlink(ix);
        scp_model_save(m, dir, SCP_F32);
        free(single), free(s1), free(s2), free(ix);
    }
    /* A config whose shapes disagree with the tensors. */
    char *cp = scp_path_join(dir, "config.json");
    json_t *j = small_config("qwen3", 0);
    json_object_set_new(j, "intermediate_size", json_integer(41));
    scp_json_save(cp, j);
    json_decref(j);
    l = scp_model_load(dir, "cpu");
    tap_ok(!l && strstr(scp_last_error(), "model.safetensors") && strstr(scp_last_error(), "mlp.") &&
               strstr(scp_last_error(), "has shape") && strstr(scp_last_error(), "41"),
           "shape mismatch names file and tensor: %s", scp_last_error());
    /* qwen2 config (adds biases) on qwen3 tensors: q_norm is not a parameter, biases are missing. */
    j = small_config("qwen3", 0);
    json_object_set_new(j, "model_type", json_string("llama"));
    scp_json_save(cp, j);
    json_decref(j);
    l = scp_model_load(dir, "cpu");
    tap_ok(!l && strstr(scp_last_error(), "_norm.weight' is not a parameter"), "unexpected tensor refused: %s", scp_last_error());
    j = small_config("qwen3", 0);
    json_object_set_new(j, "model_type", json_string("qwen3_moe"));
    json_object_set_new(j, "num_experts", json_integer(4));
    json_object_set_new(j, "num_experts_per_tok", json_integer(2));
    json_object_set_new(j, "moe_intermediate_size", json_integer(8));
    scp_json_save(cp, j);
    json_decref(j);
    l = scp_model_load(dir, "cpu");
    tap_ok(!l && strstr(scp_last_error(), "mlp.down_proj.weight' is not a parameter"),
           "a qwen3_moe config on dense tensors is refused, naming the tensor: %s", scp_last_error());
    free(cp);
    scp_rm_rf(dir);
    ex e;
    scp_batch b = make_batch(&e, 1, 16, 53, SCP_ATTN_CAUSAL, 0, 1);
    e.in[3] = 53;
    int bad = isnan(scp_model_step(m, &b, 0, NULL));
    tap_ok(bad && strstr(scp_last_error(), "input id 53"), "input id outside the vocabulary refused: %s", scp_last_error());
    e.in[3] = 1, e.tg[4] = -2;
    tap_ok(isnan(scp_model_step(m, &b, 0, NULL)) && strstr(scp_last_error(), "target id -2"), "bad target refused");
    tap_ok(scp_model_new(&m->cfg, "tpu") == NULL && strstr(scp_last_error(), "unknown backend"), "unknown backend refused");
    scp_model_free(m);
}

/* The driver's rule, scp_attn_visible (model/attn_visibility.h's parts), against DiffuLLaMA's rule written out
 * here: documents first (a negative id sees itself alone, else keys of its own id), then causal order, and a
 * future key under annealing visible when the top 53 bits of splitmix64's finaliser chained over (seed, b,
 * i << 32 | j), as a fraction of 2^53 in doubles, fall below p. */
static uint64_t splitmix64(uint64_t *state)   /* Vigna's splitmix64 generator, one output */
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t finalise(uint64_t x) { return splitmix64(&x); }

static int visible_statement(const scp_batch *b, int bi, int i, int j)
{
    if (b->doc) {
        int di = b->doc[(size_t)bi * b->T + i], dj = b->doc[(size_t)bi * b->T + j];
        if (di < 0 ? j != i : di != dj) return 0;
    }
    if (b->attn == SCP_ATTN_BIDIRECTIONAL || j <= i) return 1;
    if (b->attn == SCP_ATTN_CAUSAL) return 0;
    uint64_t x = finalise(finalise(finalise(b->anneal_seed) ^ (uint64_t)bi) ^ (((uint64_t)i << 32) | (uint64_t)j));
    return (double)(x >> 11) * 0x1p-53 < (double)b->anneal_p;
}

static void test_attn_visible(void)
{
    uint64_t s0 = 0;
    tap_ok(splitmix64(&s0) == 0xe220a8397b1dcdafull, "splitmix64 from 0: its published first output");
    /* long sequences, so that i << 32 | j uses high bits; documents of random lengths and padding (-1) */
    enum { B = 3, T = 70000 };
    int32_t *doc = malloc((size_t)B * T * sizeof *doc);
    scp_rng r;
    scp_rng_init(&r, 5, 5);
    for (int bi = 0; bi < B; bi++) {
        int32_t id = 0;
        for (int i = 0; i < T; i++) {
            if (scp_rng_below(&r, 50) == 0) id++;
            doc[(size_t)bi * T + i] = scp_rng_below(&r, 7) == 0 ? -1 : id;
        }
    }
    static const struct { scp_attn_mode attn; float p; } modes[] = {
        {SCP_ATTN_CAUSAL, 0}, {SCP_ATTN_BIDIRECTIONAL, 0}, {SCP_ATTN_ANNEAL, 0.0f}, {SCP_ATTN_ANNEAL, 0.3f},
        {SCP_ATTN_ANNEAL, 0.7071f}, {SCP_ATTN_ANNEAL, 1.0f}};
    for (size_t k = 0; k < sizeof modes / sizeof *modes; k++)
        for (int with_doc = 0; with_doc <= 1; with_doc++) {
            scp_batch b = {.B = B, .T = T, .doc = with_doc ? doc : NULL, .attn = modes[k].attn,
                           .anneal_p = modes[k].p, .anneal_seed = 0x243f6a8885a308d3ull + k};
            long agree = 0, n = 0, future = 0, future_seen = 0, pad = 0;
            for (int t = 0; t < 200000; t++) {
                int bi = (int)scp_rng_below(&r, B), i = (int)scp_rng_below(&r, T);
                /* near keys too, where documents meet and the diagonal is */
                int j = t % 2 ? (int)scp_rng_below(&r, T) : i - 40 + (int)scp_rng_below(&r, 81);
                if (j < 0 || j >= T) continue;
                if (t % 97 == 0) j = i;
                int want = visible_statement(&b, bi, i, j), got = scp_attn_visible(&b, bi, i, j);
                agree += want == got, n++;
                const int32_t di = doc[(size_t)bi * T + i], dj = doc[(size_t)bi * T + j];
                if (j > i && (!with_doc || (di >= 0 && di == dj))) future++, future_seen += got;   /* a draw decides */
                pad += with_doc && di < 0 && got;
            }
            double frac = future ? (double)future_seen / future : 0;
            double expect = modes[k].attn == SCP_ATTN_CAUSAL ? 0 : modes[k].attn == SCP_ATTN_BIDIRECTIONAL ? 1 : modes[k].p;
            tap_ok(agree == n && fabs(frac - expect) < 0.01 && (!with_doc || pad > 0),
                   "scp_attn_visible = the rule's statement, %s p=%g%s: %ld of %ld pairs; future keys seen %.4f "
                   "(expected %g); padding sees itself (%ld)", scp_attn_name(modes[k].attn), modes[k].p,
                   with_doc ? " with documents" : "", agree, n, frac, expect, pad);
        }
    free(doc);
}

/* scp_attn_doc_spans against the pairs the documents leave visible, found by brute force: on packed documents with
 * padding inside and at the ends, every visible key of query i lies in [lo, hi) and both ends are visible (the
 * span is the tightest); ids that decrease give no spans. */
static void test_doc_spans(void)
{
    enum { T = 300 };
    int32_t doc[T], lo[T], hi[T];
    uint64_t st = 7;
    long bad = 0, loose = 0, pairs = 0;
    for (int trial = 0; trial < 40; trial++) {
        int32_t id = trial % 3;   /* the first id need not be 0 */
        for (int i = 0; i < T; i++) {
            uint64_t r = scp_mix64(st++);
            if (r % 9 == 0) id += 1 + (int32_t)(r >> 32) % 2;   /* some ids skipped */
            doc[i] = (r >> 8) % 7 == 0 || (trial % 4 == 0 && i < 5) ? -1 : id;
        }
        if (!scp_attn_doc_spans(doc, T, lo, hi)) { bad++; continue; }
        for (int i = 0; i < T; i++) {
            int first = T, last = -1;
            for (int j = 0; j < T; j++)
                if (doc[i] < 0 ? i == j : doc[i] == doc[j]) {
                    if (j < first) first = j;
                    last = j;
                }
            pairs++;
            if (lo[i] > first || hi[i] <= last) bad++;
            if (lo[i] != first || hi[i] != last + 1) loose++;
        }
    }
    tap_ok(bad == 0 && loose == 0 && pairs == 40L * T,
           "scp_attn_doc_spans: %ld rows of packed documents with padding, %ld outside their span, %ld spans not the "
           "tightest", pairs, bad, loose);
    int32_t down[6] = {0, 0, 1, 1, 0, 0};
    lo[0] = -7;
    tap_ok(!scp_attn_doc_spans(down, 6, lo, hi) && lo[0] == -7, "scp_attn_doc_spans: ids that decrease give no spans");
}

int main(void)
{
    scp_set_threads(0);
    test_fast_vs_ref();
    test_matmul();
    test_logits();
    test_logits_rows();
    test_decode();
    test_determinism();
    test_mirror();
    test_recompute_and_hook();
    test_workspace_account();
    test_logit_chunks();
    test_io();
    test_attn_visible();
    test_doc_spans();
    return tap_done();
}
