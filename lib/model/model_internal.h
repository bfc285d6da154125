/* model/model_internal.h: what the decoder driver's files share (lib/model/model.c, and lib/model/moe.c for the
 * mixture-of-experts step): the parameter offsets of a layer, the workspace of activations, and the accessors
 * of the backend's copies of weights and gradients. Not part of libscp's API. */
#ifndef SCP_MODEL_INTERNAL_H
#define SCP_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "model/backend.h"
#include "model/model.h"

/* Offsets of one layer's parameters in the weight/gradient vectors (-1 where absent). */
typedef struct layer_ix {
    int64_t ln1, q, k, v, o, qb, kb, vb, ob, qn, kn, ln2, gate, up, down;
    int qkv_joint;      /* q, k, v weights adjacent and no biases: one matmul for all three */
    int gateup_joint;   /* gate and up adjacent: one matmul for both */
} layer_ix;

typedef struct workspace {
    int capB, capT;         /* sizes the buffers hold */
    int slots;              /* layers of activations held (layer_acts): L for training, 1 for forward only or
                               with recomputation */
    int recompute;          /* scp_model_set_recompute: backward reruns each layer's forward into slot 0 */
    scp_grad_hook grad_hook;   /* scp_model_set_grad_hook, called when hook_armed */
    void *hook_ctx;
    int hook_armed;
    /* Incremental decoding (scp_model_decode_*): per layer, the q|k|v rows of the positions so far, as attention
     * reads them, (L, kv_cap, S) storage elements; kv_len positions filled; kv_fill set while the prompt's forward
     * copies its rows in; kv_pos >= 0 while layer_forward runs the one new position kv_pos against the cache. */
    scp_act *kv;
    int kv_cap, kv_len, kv_fill, kv_pos;
    int64_t *layer_lo;      /* (L + 1): layer l's parameters are [layer_lo[l], layer_lo[l + 1]) */
    /* Parameters held by a provider (scp_model_set_param_provider, sharded training): the units' boundaries
     * (formats/model_config.h scp_param_units), and while the driver holds a unit, the base of its weights
     * (unit_w, with a weight provider) and of its gradient buffer (unit_g); NULL when not held. */
    scp_param_provider prov;
    int units;
    int layer_units;        /* units per layer: 1, or 2 under expert parallelism (its experts apart) */
    int64_t *unit_lo;       /* (units + 1) */
    const scp_act **unit_w; /* (units), NULL array when the model keeps its own weights */
    float **unit_g;         /* (units), NULL array when the model keeps its own gradients */
    size_t att_floats;      /* attention state per layer slot for capB, capT (model/backend.h attn_state_floats) */
    int64_t bytes;          /* what they take */
    int logit_rows;         /* rows of logits computed at a time (the logits buffer holds that many) */
    int L, D, S, qd, kvd, I, V, H, KV, hd;
    layer_ix *lix;
    struct scp_moe *moe;    /* mixture of experts (model/moe.c): host-side state, NULL for a dense model */
    int64_t embed, lm_head, final_norm;
    /* A device backend (host_memory 0): the device copies of m->weights and m->grads, and whether each side
     * changed since the last copy (see "host and device" below). */
    float *dweights, *dgrads;
    /* The weights the kernels read, in the storage type (model/backend.h "Storage"): on a bf16 backend a rounded copy
     * of the fp32 master dweights, remade whenever the master changes (after AdamW, after an upload); NULL where
     * the storage is fp32 and the master itself is read. */
    scp_act *cweights;
    float *dm, *dv;                 /* device AdamW moments, copies of the caller's host_m, host_v */
    float *host_m, *host_v;
    /* Which side is newer: *_dirty, the host (a caller wrote it); *_on_dev, the device (a step or AdamW ran
     * there); neither, both agree. See "host and device" in model/model.c. */
    int weights_dirty, grads_dirty, moments_dirty;
    int weights_on_dev, grads_on_dev, moments_on_dev;
    /* activations (scp_act: the storage type) and their statistics (float); P = slots (see layer_acts) */
    scp_act *resid;         /* (L + 1, M, D): input of each layer, then the final hidden state (always all
                               layers: recomputation starts from them) */
    scp_act *resid2;        /* (P, M, D): after attention's residual add */
    scp_act *ln1, *ln2;     /* (P, M, D) */
    float *rstd1, *rstd2;   /* (P, M) */
    scp_act *qkv;           /* (P, M, S): q|k|v as attention reads them (after q/k norm and rope) */
    scp_act *qkv_raw;       /* (P, M, S): before q/k norm (qk_norm only) */
    float *qk_rstd;         /* (P, M, H + KV) (qk_norm only) */
    float *att;             /* (P, att_floats) attention state: (B, H, T, T) probabilities on the CPU */
    scp_act *atty;          /* (P, M, qd) attention output */
    scp_act *gateup;        /* (P, M, 2I) */
    scp_act *hmlp;          /* (P, M, I) */
    scp_act *lnf;           /* (M, D) */
    float *rstdf;           /* (M) */
    scp_act *sel;           /* (M, D) final-norm rows that carry a loss */
    scp_act *logits;        /* (logit_rows, V); holds dlogits after the cross-entropy */
    float *logits32;        /* (logit_rows, V) fp32 logits for scp_model_logits where the storage is bf16 (made
                               on its first call) */
    float *nll, *wsel;      /* (M) */
    int32_t *ids, *rows, *tsel;   /* (M) */
    int32_t *doc;           /* (B, T) the batch's document ids (attention's visibility rule) */
    float *cos, *sin;       /* (T, hd/2) */
    /* gradients of activations, reused by every layer */
    scp_act *dresid, *dln, *dqkv, *datty, *dgateup, *dh, *dsel;
    /* mixture of experts (model/moe.c; NULL for a dense model). E experts, k per token, N = M k assignments
     * sorted by expert; the experts' gate|up and h use gateup and hmlp above (I is then k times the expert width,
     * so a slot holds (N, 2 I_e) and (N, I_e)). Per slot: */
    float *moe_probs;       /* (P, M, E) router softmax */
    float *moe_w;           /* (P, M, k) routing weights */
    float *moe_lse;         /* (P, M) logsumexp of the router logits */
    int32_t *moe_idx;       /* (P, M, k) chosen experts */
    int32_t *moe_tok;       /* (P, N) token row of each sorted assignment */
    int32_t *moe_pos;       /* (P, M, k) sorted position of assignment (r, j) */
    /* scratch: */
    scp_act *moe_logits;    /* (M, E) router logits, then their gradient */
    float *moe_psum;        /* (E) */
    float *moe_dprob;       /* (E) load-balancing gradient on each probability */
    scp_act *moe_x;         /* (N, D) gathered expert inputs; then the experts' outputs before the weights */
    scp_act *moe_dy;        /* (N, D) gradient of the expert outputs, then of their inputs */
    float *moe_dw;          /* (M, k) gradient of the routing weights */
} workspace;

/* The activations of one layer that backward needs, in "slot" s of the per-layer buffers: slot l when every
 * layer keeps its own (training), slot 0 when one slot is reused layer after layer (forward only, or training
 * with recomputation, which reruns layer l's forward into slot 0 just before its backward). */
typedef struct layer_acts {
    int slot;
    scp_act *ln1, *qkv, *qkv_raw, *atty, *x2, *ln2, *gateup, *hmlp;
    float *rstd1, *qk_rstd, *att, *rstd2;
} layer_acts;

/* Element n of an scp_act array p of model m's backend: the driver's only arithmetic on activations. */
static inline scp_act *scp_act_at(const scp_model *m, const scp_act *p, size_t n)
{
    return (scp_act *)(void *)((char *)(void *)(uintptr_t)p + n * m->backend->act_size);
}
#define AT(p, n) scp_act_at(m, (p), (size_t)(n))

/* The backend's copies of the weights and gradients (the host arrays themselves on the CPU): DW the fp32
 * master, CW what the kernels read (the master, or its bf16 copy), DG the fp32 gradients. */
#define DW(m) ((m)->backend->host_memory ? (m)->weights : ((workspace *)(m)->ctx)->dweights)
#define CW(m) (((workspace *)(m)->ctx)->cweights ? ((workspace *)(m)->ctx)->cweights : (scp_act *)(void *)DW(m))
#define DG(m) ((m)->backend->host_memory ? (m)->grads : ((workspace *)(m)->ctx)->dgrads)

/* The unit holding parameter-vector offset off (binary search over the units' boundaries). */
static inline int scp_unit_of(const workspace *w, int64_t off)
{
    int lo = 0, hi = w->units - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (w->unit_lo[mid] <= off) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Weights the kernels read at offset off, and the gradients the backward adds into: the model's own vectors,
 * or the buffers of the unit a provider handed over (a unit the driver does not hold is a driver bug). */
static inline scp_act *scp_weight_at(const scp_model *m, int64_t off)
{
    const workspace *w = m->ctx;
    if (!w->unit_w) return scp_act_at(m, CW(m), (size_t)off);
    int u = scp_unit_of(w, off);
    return scp_act_at(m, w->unit_w[u], (size_t)(off - w->unit_lo[u]));
}

static inline float *scp_grad_at(const scp_model *m, int64_t off)
{
    const workspace *w = m->ctx;
    if (!w->unit_g) return DG(m) + off;
    int u = scp_unit_of(w, off);
    return w->unit_g[u] + (off - w->unit_lo[u]);
}
#define W(off) scp_weight_at(m, (off))
#define G(off) scp_grad_at(m, (off))
#define OPT(off) ((off) >= 0 ? W(off) : NULL)
#define OPTG(off) ((off) >= 0 ? G(off) : NULL)

/* model/moe.c: the mixture-of-experts step that replaces the dense MLP of a qwen3_moe layer. */
struct scp_moe *scp_moe_new(const scp_model *m);
void scp_moe_free(struct scp_moe *x);
/* Its buffers in the backend's memory (before scp_moe_free, which has no backend). */
void scp_moe_release(const scp_backend *be, struct scp_moe *x);
/* The MoE step's host scratch for the workspace sizes z (from ws_reserve, which allocated its backend buffers). */
struct scp_ws_sizes;
void scp_moe_reserve(scp_model *m, const struct scp_ws_sizes *z);
/* xout (M, D) = x2 + moe(ln2) of layer l into the activations A (as mlp_forward), and its backward (as
 * mlp_backward: w->dln = d loss / d ln2 from w->dresid, weight gradients added, the router's included). */
void scp_moe_forward(scp_model *m, int l, const layer_acts *A, int M, scp_act *xout, int to_output);
void scp_moe_backward(scp_model *m, int l, const layer_acts *A, int M);

#endif
