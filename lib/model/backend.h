/* model/backend.h: the table of operations the model driver (lib/model/model.c) is written over. A backend (lib/model/cpu/ now,
 * lib/model/cuda/ later) fills one scp_backend; the driver never touches numbers itself, only calls these entries on
 * buffers the backend allocated, so a new backend plugs in without changing the driver.
 *
 * Conventions: every pointer is backend memory (host memory for the CPU backend); M is the number of token rows
 * (B * T); a Linear weight is (N, K) as in HF, so y = x W^T + b; "ld" arguments are row strides in elements, so
 * one buffer can hold q, k and v side by side.
 *
 * Storage: activations, their gradients and the compute copy of the weights are `scp_act` arrays, whose element
 * is fp32 or bf16 as the backend's act_size says (4 or 2 bytes); the driver only ever offsets them by whole
 * elements (model/model_internal.h AT). Statistics (rstd, log-sum-exp, nll, routing weights), the fp32 master
 * weights, weight gradients and optimizer moments are float arrays on every backend. Kernels compute in fp32
 * whatever the storage: they widen what they read and round (to nearest even) what they write. Backward entries ADD into weight gradients (micro-batches
 * accumulate); whether they add into input gradients is said per entry. All entries are deterministic for a
 * fixed thread count (no atomics, reductions in a fixed order), which exact resume relies on. */
#ifndef SCP_BACKEND_H
#define SCP_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* An element of activation storage: opaque, so that a pointer to it cannot be indexed or offset by mistake as if
 * it were a float array (see "Storage" above). */
typedef struct scp_act scp_act;
/* A float array handed to a backend whose storage is fp32 (act_size 4): tests and benchmarks. */
#define SCP_ACT(p) ((scp_act *)(void *)(p))

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
    void (*zero_bytes)(void *x, size_t bytes);
    void (*copy_bytes)(void *dst, const void *src, size_t bytes);
    /* Host <-> backend copies of n bytes (plain copies on the CPU). */
    void (*upload)(void *dst, const void *host, size_t n);
    void (*download)(void *host, const void *src, size_t n);
    /* dst = src in the storage type (rounded to nearest even), n elements: the compute copy of the weights; and
     * back to fp32 (logits for a caller). Plain copies where act_size is 4. */
    void (*to_act)(scp_act *dst, const float *src, size_t n);
    void (*from_act)(float *dst, const scp_act *src, size_t n);

    /* out (M, N; row stride ldo) = inp (M, K; row stride ldi) @ w^T (w is (N, K)) + bias (N, or NULL);
     * beta 0 overwrites out, 1 adds to it (a fused residual add). */
    void (*matmul_fwd)(scp_act *out, int ldo, const scp_act *inp, int ldi, const scp_act *w, const scp_act *bias,
                       int M, int K, int N, float beta);
    /* dinp (M, K; ldi) (+)= dout (M, N; ldo) @ w; beta as above. */
    void (*matmul_bwd_inp)(scp_act *dinp, int ldi, const scp_act *dout, int ldo, const scp_act *w, int M, int K, int N,
                           float beta);
    /* dw (N, K) += dout^T @ inp; dbias (N) += column sums of dout (when not NULL); both fp32. */
    void (*matmul_bwd_w)(float *dw, float *dbias, const scp_act *dout, int ldo, const scp_act *inp, int ldi,
                         int M, int K, int N);

    /* RMSNorm over groups of C floats: row n (n < N) starts at x + n * ld and holds G groups of C floats
     * (G = 1 for the hidden state, G = heads for Qwen3's per-head q/k norm). out = x * rstd * w with
     * rstd = 1/sqrt(mean(x^2) + eps), computed in fp32 as HF does; rstd (N * G) is saved for backward. */
    void (*rmsnorm_fwd)(scp_act *out, float *rstd, const scp_act *x, const scp_act *w, int N, int G, int C, int ld,
                        float eps);
    /* dx (+)= d/dx (accumulate != 0 adds, else overwrites; dx may equal dout), dw (C) += d/dw. */
    void (*rmsnorm_bwd)(scp_act *dx, float *dw, const scp_act *dout, const scp_act *x, const scp_act *w, const float *rstd,
                        int N, int G, int C, int ld, int accumulate);

    /* RoPE in place on rows of G heads of hd floats (row n at x + n * ld), position of row n = n % T; HF's
     * half-split pairs (i, i + hd/2); cos, sin are (T, hd/2). inverse != 0 rotates back (the backward). */
    void (*rope)(scp_act *x, const float *cos, const float *sin, int N, int T, int G, int hd, int ld, int inverse);

    /* Attention: out (M, H * hd) = softmax(q k^T * scale + mask) v per (b, h); att (attn_state_floats, below)
     * keeps what backward needs: the (B, H, T, T) probabilities on the CPU. */
    void (*attention_fwd)(scp_act *out, float *att, const scp_act *q, const scp_act *k, const scp_act *v,
                          const scp_attn_args *a);
    /* dq, dk, dv (same layout as q, k, v) are overwritten. */
    void (*attention_bwd)(scp_act *dq, scp_act *dk, scp_act *dv, const scp_act *dout, const float *att,
                          const scp_act *q, const scp_act *k, const scp_act *v, const scp_attn_args *a);

    /* SwiGLU on a (M, 2I) buffer [gate | up]: h (M, I) = silu(gate) * up. */
    void (*swiglu_fwd)(scp_act *h, const scp_act *gateup, int M, int I);
    /* dgateup (M, 2I) = d/d[gate | up] (overwritten). */
    void (*swiglu_bwd)(scp_act *dgateup, const scp_act *dh, const scp_act *gateup, int M, int I);

    /* out (M, C) = table[ids]; table is (V, C). */
    void (*embedding_fwd)(scp_act *out, const int32_t *ids, const scp_act *table, int M, int C);
    /* dtable (V, C; fp32) += scatter of dout (M, C) by ids (deterministic order). */
    void (*embedding_bwd)(float *dtable, const scp_act *dout, const int32_t *ids, int M, int C, int V);

    /* dst row r (C floats) = src row rows[r], r < n; and its backward: dst row rows[r] = src row r (other
     * rows of dst untouched). Used to score only the positions that carry a loss. */
    void (*gather_rows)(scp_act *dst, const scp_act *src, const int32_t *rows, int n, int C);
    void (*scatter_rows)(scp_act *dst, const scp_act *src, const int32_t *rows, int n, int C);

    /* Cross-entropy of N rows of logits (N, V) against target (N) with weight (N): nll (N) receives
     * -log softmax[target]; returns sum of weight * nll (double, summed in row order). With backward != 0 the
     * logits are overwritten with weight * (softmax - onehot), the gradient of that sum. */
    double (*crossentropy)(scp_act *logits, float *nll, const int32_t *target, const float *weight, int N, int V,
                           int backward);

    /* AdamW on n floats (decoupled weight decay; bias corrections bc1 = 1 - beta1^t, bc2 = 1 - beta2^t):
     * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * (m/bc1 / (sqrt(v/bc2) + eps) + wd * p). */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                  float eps, float wd, float bc1, float bc2);
    /* Sum of squares (double, fixed summation order), and x *= s. */
    double (*sumsq)(const float *x, size_t n);
    void (*scale)(float *x, size_t n, float s);

    /* 1: the buffers are plain host memory (the fp32 CPU backends), so m->weights and m->grads are used in place.
     * 0 (a device, or a CPU backend posing as one): the weights, gradients and AdamW moments live in backend
     * buffers between steps, and the host arrays model/model.h promises its callers are copies brought up to date on
     * demand ("host and device" in model/model.c). */
    int host_memory;

    /* Floats of attention state (the `att` argument of attention_fwd/bwd) one layer needs for a batch; NULL
     * means the probabilities, B * H * T * T. A flash-style backend keeps only a row statistic. */
    size_t (*attn_state_floats)(int B, int H, int T);

    /* Bytes of one scp_act element: 4 (fp32) or 2 (bf16). */
    size_t act_size;


    /* Mixture of experts (qwen3_moe, lib/model/moe.c). NULL where a backend has none: the driver then refuses
     * a MoE model. E experts, k chosen per row.
     * Routing: probs (M, E) = softmax(logits) in fp32; idx (M, k) the k largest probabilities in decreasing
     * order (ties: the lower index first); weight (M, k) their probabilities, divided by their sum when norm;
     * lse (M) = logsumexp of each row of logits (the z-loss); psum (E) = column sums of probs (the
     * load-balancing loss). */
    void (*moe_route)(float *probs, int32_t *idx, float *weight, float *lse, float *psum, const scp_act *logits,
                      int M, int E, int k, int norm);
    /* Its backward: dlogits (M, E) (overwritten) = d/dlogits of the loss whose gradients are dweight (M, k)
     * (through the renormalisation when norm, never through the choice of idx), plus dprob[e] (E, or NULL) on
     * every row's probability e, plus zscale * lse * probs (the z-loss: d/dlogits of zscale / 2 * lse^2). */
    void (*moe_route_bwd)(scp_act *dlogits, const float *dweight, const float *probs, const float *lse,
                          const int32_t *idx, const float *weight, const float *dprob, float zscale, int M, int E,
                          int k, int norm);
    /* Weighted combine of expert outputs: out row r (D) = beta * out row r + sum over j < k, in order, of
     * weight[r k + j] * y row pos[r k + j]; y is (M k, D), weight NULL means 1 (the backward of a gather). */
    void (*moe_combine)(scp_act *out, const scp_act *y, const float *weight, const int32_t *pos, int M, int k, int D,
                        float beta);
    /* Its backward: dy row pos[r k + j] = weight[r k + j] * dout row r (every row of dy written);
     * dweight[r k + j] = dout row r . y row pos[r k + j] (overwritten). */
    void (*moe_combine_bwd)(scp_act *dy, float *dweight, const scp_act *dout, const scp_act *y, const float *weight,
                            const int32_t *pos, int M, int k, int D);

    /* Attention of one new query against the first n keys of a cache (incremental causal decoding,
     * scp_model_decode_*): out (H hd) = softmax(q k^T * scale) v per head, q (H hd) at q, key j and value j at
     * k + j ld and v + j ld (KV heads, GQA as above). NULL where a backend has none: decoding then runs the
     * whole sequence through attention_fwd for each token. */
    void (*attention_decode)(scp_act *out, const scp_act *q, const scp_act *k, const scp_act *v, int n, int H, int KV,
                             int hd, int ld, float scale);
} scp_backend;

/* The backends that are built. "cpu" is the fast CPU backend; "cpu-ref" the plain reference loops (naive
 * matmul and attention, in the order of the maths) it is checked against; "cpu-mirror" the fast one declared as
 * device memory (host_memory 0), which tests the driver's host/device mirroring without a device; "cpu-bf16"
 * the fast one behind bf16 storage (each entry widens its bf16 inputs, runs the fp32 kernel and rounds its
 * outputs: lib/model/cpu/backend_bf16.c), the reference for the numerics of bf16 storage and the test of the driver's
 * 2-byte arithmetic; "cuda" (bf16 storage, also named "cuda-bf16") and "cuda-fp32" where configure built them
 * (lib/model/cuda/backend_cuda.h). */
extern const scp_backend scp_backend_cpu;
extern const scp_backend scp_backend_cpu_ref;
extern const scp_backend scp_backend_cpu_mirror;
extern const scp_backend scp_backend_cpu_bf16;
const scp_backend *scp_backend_find(const char *name);

#endif
