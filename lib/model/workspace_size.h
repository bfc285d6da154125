/* model/workspace_size.h: the bytes of every buffer of the decoder driver's workspace (the activations kept for
 * the backward, their gradients, the logits chunk, the batch's ids and document ids, the RoPE tables, the MoE routing
 * state: `workspace` in model/model_internal.h), from a config, a backend's traits and a batch shape. It is the
 * one account of those sizes: ws_reserve (lib/model/model.c) and scp_moe_reserve (lib/model/moe.c) allocate
 * exactly these, and the memory planner (train/memplan.h, scp-train --plan) adds them up without allocating.
 *
 * Shapes (M = B T rows; L layers; P = slots; D hidden; S = (H + 2 KV) hd the joint q|k|v width; I the MLP width,
 * k times the expert width for a MoE layer; E experts, k per token, N = M k assignments; V vocabulary):
 *   resid (L + 1, M, D); resid2, ln1, ln2 (P, M, D); rstd1, rstd2 (P, M) fp32; qkv (P, M, S); qkv_raw (P, M, S)
 *   and qk_rstd (P, M, H + KV) fp32 with q/k norms only; att (P, attn_state_floats(B, H, T)) fp32; atty (P, M, H hd);
 *   gateup (P, M, 2 I); hmlp (P, M, I); lnf, sel (M, D); rstdf, nll, wsel (M) fp32; logits (logit_rows, V);
 *   ids, rows, tsel, doc (M) int32; cos, sin (T, hd / 2) fp32; the gradients dresid, dln, dsel
 *   (M, D), dqkv (M, S), datty (M, H hd), dgateup (M, 2 I), dh (M, I); and for a MoE model moe_probs (P, M, E),
 *   moe_w (P, M, k), moe_lse (P, M) fp32, moe_idx (P, M, k), moe_tok, moe_pos (P, N) int32, moe_logits (M, E),
 *   moe_psum, moe_dprob (E) fp32, moe_x, moe_dy (N, D), moe_dw (M, k) fp32.
 * Elements without a type above are activations, act_size bytes each. Host scratch of the MoE step (lib/model/moe.c):
 *   moe_counts (P, E) int, moe_h_idx, moe_h_tok, moe_h_pos (N) int32, moe_h_lse (M) fp32. */
#ifndef SCP_WORKSPACE_SIZE_H
#define SCP_WORKSPACE_SIZE_H

#include <stddef.h>

#include "formats/model_config.h"
#include "model/backend_traits.h"

/* The buffers in the backend's memory, named as the workspace's fields. */
#define SCP_WS_BUFFERS(X)                                                                                         \
    X(resid) X(resid2) X(ln1) X(ln2) X(rstd1) X(rstd2) X(qkv) X(qkv_raw) X(qk_rstd) X(att) X(atty) X(gateup)       \
    X(hmlp) X(lnf) X(rstdf) X(sel) X(logits) X(nll) X(wsel) X(ids) X(rows) X(tsel) X(doc) X(cos)  X(sin)           \
    X(dresid) X(dln) X(dqkv) X(datty) X(dgateup) X(dh) X(dsel)                                                    \
    X(moe_probs) X(moe_w) X(moe_lse) X(moe_idx) X(moe_tok) X(moe_pos) X(moe_logits) X(moe_psum) X(moe_dprob)     \
    X(moe_x) X(moe_dy) X(moe_dw)
/* The MoE step's host scratch. */
#define SCP_WS_HOST_BUFFERS(X) X(moe_counts) X(moe_h_idx) X(moe_h_tok) X(moe_h_pos) X(moe_h_lse)

typedef struct scp_ws_sizes {
    int B, T, slots;          /* the shape the buffers hold */
    int logit_rows;           /* rows of the logits chunk */
    size_t att_floats;        /* attention state per slot, attn_state_floats(B, H, T) */
#define SCP_WS_FIELD(b) size_t b;
    SCP_WS_BUFFERS(SCP_WS_FIELD)
    SCP_WS_HOST_BUFFERS(SCP_WS_FIELD)
#undef SCP_WS_FIELD
    size_t backend_bytes;     /* the sum of SCP_WS_BUFFERS: the workspace in the backend's memory */
    size_t host_bytes;        /* the sum of SCP_WS_HOST_BUFFERS (0 for a dense model) */
} scp_ws_sizes;

/* The sizes for B sequences of T tokens with `slots` layer slots (num_layers when every layer keeps its
 * activations for the backward, 1 for a forward or with recomputation). logit_rows: rows of logits per chunk
 * of the vocabulary projection, 0 for the default (64 MiB of fp32 logits on host memory, 256 MiB on a device,
 * at least 64 rows), in every case at most B T. A size that does not apply (q/k norm buffers of a model without
 * them, the MoE buffers of a dense model) is 0. */
void scp_workspace_size(const scp_model_config *c, const scp_backend_traits *be, int B, int T, int slots,
                        int logit_rows, scp_ws_sizes *z);

#endif
