/* backend.h: the table of operations the model driver (lib/model.c) is written over. A backend (lib/cpu/ now,
 * lib/cuda/ later) fills one scp_backend; the driver never touches numbers itself, only calls these entries on
 * buffers the backend allocated, so a new backend plugs in without changing the driver.
 *
 * Conventions: every pointer is backend memory (host memory for the CPU backend); M is the number of token rows
 * (B * T); a Linear weight is (N, K) as in HF, so y = x W^T + b; "ld" arguments are row strides in floats, so
 * one buffer can hold q, k and v side by side. Backward entries ADD into weight gradients (micro-batches
 * accumulate); whether they add into input gradients is said per entry. All entries are deterministic for a
 * fixed thread count (no atomics, reductions in a fixed order), which exact resume relies on. */
#ifndef SCP_BACKEND_H
#define SCP_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* Attention over one batch: q, k, v live in one (M, ld_qkv) buffer at column offsets given by the pointers;
 * q has H heads, k and v have KV heads (GQA: query head h reads kv head h / (H / KV)), each hd wide. */
typedef struct scp_attn_args {
    int B, T, H, KV, hd;
    int ld_qkv;               /* row stride of q, k, v (and of dq, dk, dv) */
    int causal;               /* key j visible to query i only if j <= i */
    const uint8_t *mask;      /* (B, T, T) 1 = visible, or NULL; combined with causal */
    float scale;              /* softmax scale, 1/sqrt(hd) */
} scp_attn_args;

typedef struct scp_backend {
    const char *name;
    /* Workspace memory. */
    void *(*alloc)(size_t bytes);         /* zeroed; dies on exhaustion */
    void (*free)(void *p);
    void (*zero)(float *x, size_t n);
    void (*copy)(float *dst, const float *src, size_t n);
    /* Host <-> backend copies of n bytes (plain copies on the CPU). */
    void (*upload)(void *dst, const void *host, size_t n);
    void (*download)(void *host, const void *src, size_t n);

    /* out (M, N; row stride ldo) = inp (M, K; row stride ldi) @ w^T (w is (N, K)) + bias (N, or NULL);
     * beta 0 overwrites out, 1 adds to it (a fused residual add). */
    void (*matmul_fwd)(float *out, int ldo, const float *inp, int ldi, const float *w, const float *bias,
                       int M, int K, int N, float beta);
    /* dinp (M, K; ldi) (+)= dout (M, N; ldo) @ w; beta as above. */
    void (*matmul_bwd_inp)(float *dinp, int ldi, const float *dout, int ldo, const float *w, int M, int K, int N,
                           float beta);
    /* dw (N, K) += dout^T @ inp; dbias (N) += column sums of dout (when not NULL). */
    void (*matmul_bwd_w)(float *dw, float *dbias, const float *dout, int ldo, const float *inp, int ldi,
                         int M, int K, int N);

    /* RMSNorm over groups of C floats: row n (n < N) starts at x + n * ld and holds G groups of C floats
     * (G = 1 for the hidden state, G = heads for Qwen3's per-head q/k norm). out = x * rstd * w with
     * rstd = 1/sqrt(mean(x^2) + eps), computed in fp32 as HF does; rstd (N * G) is saved for backward. */
    void (*rmsnorm_fwd)(float *out, float *rstd, const float *x, const float *w, int N, int G, int C, int ld,
                        float eps);
    /* dx (+)= d/dx (accumulate != 0 adds, else overwrites; dx may equal dout), dw (C) += d/dw. */
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                        int N, int G, int C, int ld, int accumulate);

    /* RoPE in place on rows of G heads of hd floats (row n at x + n * ld), position of row n = n % T; HF's
     * half-split pairs (i, i + hd/2); cos, sin are (T, hd/2). inverse != 0 rotates back (the backward). */
    void (*rope)(float *x, const float *cos, const float *sin, int N, int T, int G, int hd, int ld, int inverse);

    /* Attention: out (M, H * hd) = softmax(q k^T * scale + mask) v per (b, h); att (attn_state_floats, below)
     * keeps what backward needs: the (B, H, T, T) probabilities on the CPU. */
    void (*attention_fwd)(float *out, float *att, const float *q, const float *k, const float *v,
                          const scp_attn_args *a);
    /* dq, dk, dv (same layout as q, k, v) are overwritten. */
    void (*attention_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                          const float *k, const float *v, const scp_attn_args *a);

    /* SwiGLU on a (M, 2I) buffer [gate | up]: h (M, I) = silu(gate) * up. */
    void (*swiglu_fwd)(float *h, const float *gateup, int M, int I);
    /* dgateup (M, 2I) = d/d[gate | up] (overwritten). */
    void (*swiglu_bwd)(float *dgateup, const float *dh, const float *gateup, int M, int I);

    /* out (M, C) = table[ids]; table is (V, C). */
    void (*embedding_fwd)(float *out, const int32_t *ids, const float *table, int M, int C);
    /* dtable (V, C) += scatter of dout (M, C) by ids (deterministic order). */
    void (*embedding_bwd)(float *dtable, const float *dout, const int32_t *ids, int M, int C, int V);

    /* dst row r (C floats) = src row rows[r], r < n; and its backward: dst row rows[r] = src row r (other
     * rows of dst untouched). Used to score only the positions that carry a loss. */
    void (*gather_rows)(float *dst, const float *src, const int32_t *rows, int n, int C);
    void (*scatter_rows)(float *dst, const float *src, const int32_t *rows, int n, int C);

    /* Cross-entropy of N rows of logits (N, V) against target (N) with weight (N): nll (N) receives
     * -log softmax[target]; returns sum of weight * nll (double, summed in row order). With backward != 0 the
     * logits are overwritten with weight * (softmax - onehot), the gradient of that sum. */
    double (*crossentropy)(float *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                           int backward);

    /* AdamW on n floats (decoupled weight decay; bias corrections bc1 = 1 - beta1^t, bc2 = 1 - beta2^t):
     * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * (m/bc1 / (sqrt(v/bc2) + eps) + wd * p). */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                  float eps, float wd, float bc1, float bc2);
    /* Sum of squares (double, fixed summation order), and x *= s. */
    double (*sumsq)(const float *x, size_t n);
    void (*scale)(float *x, size_t n, float s);

    /* 1: the buffers are plain host memory (the CPU backends), so m->weights and m->grads are used in place.
     * 0 (a device): the driver keeps m->weights, m->grads and the optimizer moments on the host, as model.h
     * promises its callers, and mirrors weights and gradients into device buffers around each step (model.c);
     * norms, scaling and AdamW then run on the host with the CPU backend's entries. */
    int host_memory;

    /* Floats of attention state (the `att` argument of attention_fwd/bwd) one layer needs for a batch; NULL
     * means the probabilities, B * H * T * T. A flash-style backend keeps only a row statistic. */
    size_t (*attn_state_floats)(int B, int H, int T);

    /* Mixture of experts (qwen3_moe, lib/model_moe.c). NULL where a backend has none: the driver then refuses
     * a MoE model. E experts, k chosen per row.
     * Routing: probs (M, E) = softmax(logits) in fp32; idx (M, k) the k largest probabilities in decreasing
     * order (ties: the lower index first); weight (M, k) their probabilities, divided by their sum when norm;
     * lse (M) = logsumexp of each row of logits (the z-loss); psum (E) = column sums of probs (the
     * load-balancing loss). */
    void (*moe_route)(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const float *logits,
                      int M, int E, int k, int norm);
    /* Its backward: dlogits (M, E) (overwritten) = d/dlogits of the loss whose gradients are dweight (M, k)
     * (through the renormalisation when norm, never through the choice of idx), plus dprob[e] (E, or NULL) on
     * every row's probability e, plus zscale * lse * probs (the z-loss: d/dlogits of zscale / 2 * lse^2). */
    void (*moe_route_bwd)(float *dlogits, const float *dweight, const float *probs, const float *lse,
                          const int32_t *idx, const float *weight, const float *dprob, float zscale, int M, int E,
                          int k, int norm);
    /* Weighted combine of expert outputs: out row r (D) = beta * out row r + sum over j < k, in order, of
     * weight[r k + j] * y row pos[r k + j]; y is (M k, D), weight NULL means 1 (the backward of a gather). */
    void (*moe_combine)(float *out, const float *y, const float *weight, const int32_t *pos, int M, int k, int D,
                        float beta);
    /* Its backward: dy row pos[r k + j] = weight[r k + j] * dout row r (every row of dy written);
     * dweight[r k + j] = dout row r . y row pos[r k + j] (overwritten). */
    void (*moe_combine_bwd)(float *dy, float *dweight, const float *dout, const float *y, const float *weight,
                            const int32_t *pos, int M, int k, int D);
} scp_backend;

/* The backends that are built. "cpu" is the fast CPU backend; "cpu-ref" the plain reference loops (naive
 * matmul and attention, in the order of the maths) it is checked against; "cpu-mirror" the fast one declared as
 * device memory (host_memory 0), which tests the driver's host/device mirroring without a device; "cuda" where
 * configure built it (lib/cuda/). */
extern const scp_backend scp_backend_cpu;
extern const scp_backend scp_backend_cpu_ref;
extern const scp_backend scp_backend_cpu_mirror;
const scp_backend *scp_backend_find(const char *name);

#endif
