/* formats/model_config.h: the model definition shared by every program: the Hugging Face config.json keys of the
 * Llama family (llama, qwen2, qwen3, qwen3_moe), the SCP keys, and the one parameter table that names every
 * tensor with its HF name, shape and optimizer group. */
#ifndef SCP_MODEL_CONFIG_H
#define SCP_MODEL_CONFIG_H

#include <stdint.h>
#include <jansson.h>

typedef enum scp_arch { SCP_ARCH_LLAMA, SCP_ARCH_QWEN2, SCP_ARCH_QWEN3, SCP_ARCH_QWEN3_MOE } scp_arch;

typedef struct scp_model_config {
    scp_arch arch;
    int hidden_size;            /* D */
    int intermediate_size;      /* I: dense MLP width */
    int num_layers;
    int num_heads;              /* H */
    int num_kv_heads;           /* KV (GQA: H % KV == 0) */
    int head_dim;               /* hd (Qwen3 sets it explicitly; otherwise D / H) */
    int vocab_size;             /* V: rows of the embedding matrix */
    int max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    /* Llama 3.1 style RoPE scaling (rope_scaling.rope_type == "llama3"); factor 0 means none. */
    double rope_scaling_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int tie_word_embeddings;
    int qkv_bias;               /* Qwen2: biases on q, k, v */
    int o_bias;                 /* Llama with attention_bias: bias on o too */
    int qk_norm;                /* Qwen3: RMSNorm over head_dim on q and k, before RoPE */
    /* Mixture of experts (qwen3_moe): every layer's MLP is a router plus num_experts SwiGLU experts. */
    int num_experts, num_experts_per_tok, moe_intermediate_size, norm_topk_prob;
    /* Special ids from config.json, -1 when absent. */
    int bos_token_id, eos_token_id, pad_token_id;
    /* SCP keys. */
    int mask_token_id;          /* -1: none yet */
    int causal;                 /* attention causal (AR checkpoint) or bidirectional (diffusion) */
    int shift_logits;           /* position i predicts token i+1 (RND1, Dream) or token i (LLaDA) */
    /* Expert parallelism (set by the trainer, never read from or written to config.json): the model of one rank
     * of an expert group of expert_ranks ranks holds the experts [expert_rank * E / expert_ranks, (expert_rank +
     * 1) * E / expert_ranks) of every layer, and its parameter table lists only those. 0 or 1: every expert. */
    int expert_ranks, expert_rank;
    json_t *raw;                /* the original object, so unknown keys survive a round trip */
} scp_model_config;

const char *scp_arch_name(scp_arch a);

/* The sizes config.json may give. Each size key must be a JSON integer (null, a float such as 1e9 or 64.0, a
 * string or a boolean is refused, naming the key and the file) within:
 *   hidden_size                  1 .. 2^17            intermediate_size        1 .. 2^20 (0 or absent: qwen3_moe)
 *   num_hidden_layers            1 .. 2^12            num_attention_heads      1 .. 2^12
 *   num_key_value_heads          1 .. 2^12, dividing num_attention_heads
 *   head_dim                     2 .. 2^12, even      vocab_size               1 .. 2^30
 *   max_position_embeddings      1 .. 2^30            rope_scaling.original_max_position_embeddings: the same
 *   num_experts                  1 .. 2^12 (qwen3_moe), num_experts_per_tok 1 .. num_experts
 *   moe_intermediate_size        1 .. 2^20
 * and the products that size allocations, computed without overflow while reading: at most 2^22 tensors in the
 * parameter table and at most 2^42 parameters. The largest published models are well inside every bound; a
 * value past one is a damaged or mistyped file, refused before anything is allocated from it. */
#define SCP_CONFIG_MAX_HIDDEN (1 << 17)
#define SCP_CONFIG_MAX_INTERMEDIATE (1 << 20)
#define SCP_CONFIG_MAX_LAYERS (1 << 12)
#define SCP_CONFIG_MAX_HEADS (1 << 12)
#define SCP_CONFIG_MAX_HEAD_DIM (1 << 12)
#define SCP_CONFIG_MAX_VOCAB (1 << 30)
#define SCP_CONFIG_MAX_POSITIONS (1 << 30)
#define SCP_CONFIG_MAX_EXPERTS (1 << 12)
#define SCP_CONFIG_MAX_TENSORS (1 << 22)
#define SCP_CONFIG_MAX_PARAMS ((int64_t)1 << 42)

/* Parse an HF config.json object; `what` names the file in messages. Sizes outside the ranges above, an
 * unknown model_type, or a feature we cannot run (sliding window, unknown rope_scaling) is refused with a
 * message naming it. */
int scp_config_from_json(scp_model_config *c, json_t *j, const char *what);
int scp_config_load(scp_model_config *c, const char *path);
/* The config as HF config.json (the raw object updated with every field we own). New reference. */
json_t *scp_config_to_json(const scp_model_config *c);
int scp_config_save(const scp_model_config *c, const char *path);
void scp_config_free(scp_model_config *c);
/* Copy (the raw object is deep-copied). */
void scp_config_copy(scp_model_config *dst, const scp_model_config *src);

/* RoPE inverse frequencies, hd/2 of them (HF half-split convention: pair (i, i + hd/2)). */
void scp_rope_inv_freq(const scp_model_config *c, double *inv_freq);

/* Optimizer groups (docs/design.md, "A training step"): attention fast, MLP and experts slow. */
typedef enum scp_group {
    SCP_GROUP_EMBED,     /* embed_tokens and lm_head */
    SCP_GROUP_ATTN,      /* q/k/v/o weights and biases, q/k norms */
    SCP_GROUP_MLP,       /* dense MLP */
    SCP_GROUP_EXPERT,    /* MoE experts (trained with the MLP multiplier) */
    SCP_GROUP_ROUTER,    /* MoE router */
    SCP_GROUP_NORM,      /* input/post-attention/final RMSNorm */
    SCP_GROUP_COUNT
} scp_group;
const char *scp_group_name(scp_group g);

typedef enum scp_param_kind {
    SCP_P_EMBED, SCP_P_LM_HEAD, SCP_P_FINAL_NORM,
    SCP_P_ATTN_NORM, SCP_P_Q, SCP_P_K, SCP_P_V, SCP_P_O, SCP_P_QB, SCP_P_KB, SCP_P_VB, SCP_P_OB,
    SCP_P_QNORM, SCP_P_KNORM,
    SCP_P_MLP_NORM, SCP_P_GATE, SCP_P_UP, SCP_P_DOWN,
    SCP_P_ROUTER, SCP_P_EXP_GATE, SCP_P_EXP_UP, SCP_P_EXP_DOWN,
    SCP_P_KIND_COUNT
} scp_param_kind;

typedef struct scp_param_desc {
    char name[128];        /* HF tensor name, e.g. model.layers.3.self_attn.q_proj.weight */
    scp_param_kind kind;
    scp_group group;
    int layer;             /* -1 for embeddings, final norm, lm_head */
    int expert;            /* -1 unless an expert tensor */
    int ndim;
    int64_t shape[2];      /* HF layout: Linear weights are (out, in) */
    int64_t numel;
    int decay;             /* weight decay applies (not to norms and biases) */
    int index;             /* position in the table of every expert (the same as in this table without expert
                              parallelism): the random initialisation's stream */
} scp_param_desc;

/* The parameter table of a config, in a fixed order (embeddings, layers in order, final norm, lm_head); with
 * expert_ranks > 1 only this rank's experts. Returns the count; *out is freshly allocated. */
int scp_param_table(const scp_model_config *c, scp_param_desc **out);
int64_t scp_param_count(const scp_model_config *c);
/* The units of a parameter table of L layers, the pieces that sharded training (dist/fsdp.h) gathers and
 * reduces one at a time: unit 0 the embeddings, unit 1 + l layer l, unit L + 1 the final norm with the LM
 * head. lo (L + 3 entries) receives their boundaries in the flat parameter vector (parameters in table
 * order, each numel floats); unit u is [lo[u], lo[u + 1]). Returns the unit count, L + 2. */
int scp_param_units(const scp_param_desc *t, int n, int L, int64_t *lo);
/* The same with split != 0 (the table of an expert-parallel rank, whose experts are sharded over other ranks than
 * the rest): every layer is two units, 1 + 2 l its attention, norms and router, 2 + 2 l its experts, and the final
 * norm with the LM head is unit 2 L + 1. lo has 2 L + 3 entries; returns 2 L + 2. */
int scp_param_units_split(const scp_param_desc *t, int n, int L, int split, int64_t *lo);
/* The experts of a layer that rank `rank` of an expert group of `ranks` holds: [*lo, *hi) of E. */
void scp_expert_range(int E, int ranks, int rank, int *lo, int *hi);

#endif
