/* model/workspace_size.c: the bytes of the decoder driver's workspace buffers (model/workspace_size.h). */
#include <stdint.h>
#include <string.h>

#include "model/workspace_size.h"

void scp_workspace_size(const scp_model_config *c, const scp_backend_traits *be, int B, int T, int slots,
                        int logit_rows, scp_ws_sizes *z)
{
    memset(z, 0, sizeof *z);
    z->B = B, z->T = T, z->slots = slots;
    const size_t M = (size_t)B * T, L = (size_t)c->num_layers, P = (size_t)slots, D = (size_t)c->hidden_size;
    const size_t H = (size_t)c->num_heads, KV = (size_t)c->num_kv_heads, hd = (size_t)c->head_dim;
    const size_t qd = H * hd, S = qd + 2 * KV * hd, V = (size_t)c->vocab_size;
    const size_t E = (size_t)c->num_experts, k = (size_t)c->num_experts_per_tok, N = M * k;
    /* A MoE layer's experts put their gate|up and h in the dense MLP's buffers: k assignments per row. */
    const size_t I = E ? k * (size_t)c->moe_intermediate_size : (size_t)c->intermediate_size;
    const size_t a = be->act_size, f = sizeof(float), i32 = sizeof(int32_t);
    z->att_floats = be->attn_state_floats(B, (int)H, T);

    z->resid = (L + 1) * M * D * a;   /* every layer's input, also with recomputation (it restarts from them) */
    z->resid2 = z->ln1 = z->ln2 = P * M * D * a;
    z->rstd1 = z->rstd2 = P * M * f;
    z->qkv = P * M * S * a;
    if (c->qk_norm) {
        z->qkv_raw = P * M * S * a;
        z->qk_rstd = P * M * (H + KV) * f;
    }
    z->att = P * z->att_floats * f;
    z->atty = P * M * qd * a;
    z->gateup = P * M * 2 * I * a;
    z->hmlp = P * M * I * a;
    z->lnf = z->sel = M * D * a;
    z->rstdf = z->nll = z->wsel = M * f;
    /* The vocabulary projection runs in chunks of rows, so that a 151,936-word vocabulary never needs (B T, V)
     * logits at once: 2^24 fp32 logits (64 MiB) on the host, 2^26 (256 MiB) on a device, where larger matmuls pay. */
    size_t lr = logit_rows > 0 ? (size_t)logit_rows : ((size_t)1 << (be->host_memory ? 24 : 26)) / V;
    if (logit_rows <= 0 && lr < 64) lr = 64;   /* small chunks would starve the matmul */
    z->logit_rows = (int)(lr < M ? lr : M);
    z->logits = (size_t)z->logit_rows * V * a;
    z->ids = z->rows = z->tsel = M * i32;
    z->doc = M * i32;   /* the batch's document ids, for document-masked attention */
    z->cos = z->sin = (size_t)T * (hd / 2) * f;
    z->dresid = z->dln = z->dsel = M * D * a;
    z->dqkv = M * S * a;
    z->datty = M * qd * a;
    z->dgateup = M * 2 * I * a;
    z->dh = M * I * a;
    if (E) {
        z->moe_probs = P * M * E * f;
        z->moe_w = P * M * k * f;
        z->moe_lse = P * M * f;
        z->moe_idx = P * M * k * i32;
        z->moe_tok = z->moe_pos = P * N * i32;
        z->moe_logits = M * E * a;
        z->moe_psum = z->moe_dprob = E * f;
        z->moe_x = z->moe_dy = N * D * a;
        z->moe_dw = M * k * f;
        z->moe_counts = P * E * sizeof(int);
        z->moe_h_idx = z->moe_h_tok = z->moe_h_pos = N * i32;
        z->moe_h_lse = M * f;
    }
#define ADD_BACKEND(b) z->backend_bytes += z->b;
#define ADD_HOST(b) z->host_bytes += z->b;
    SCP_WS_BUFFERS(ADD_BACKEND)
    SCP_WS_HOST_BUFFERS(ADD_HOST)
#undef ADD_BACKEND
#undef ADD_HOST
}
