/* eval/sampler.h: text generation from a checkpoint (scp-eval generate).
 *
 * Diffusion (masked-diffusion models: LLaDA, Dream, RND1): a canvas of n ids in which some positions hold the
 * mask id. Each of `steps` model calls predicts every masked position of the current block at once, draws a
 * token for each (temperature, top-k, top-p), scores each draw by the chosen order, and commits the most
 * confident ones; how many per step follows a linear schedule (LLaDA's: masked count / steps, the remainder
 * spread over the first steps), so the last step of a block leaves no mask. Orders:
 *   low-confidence  probability of the drawn token (LLaDA's "low_confidence" remasking, Dream's "maskgit_plus")
 *   margin          top-1 minus top-2 probability (Dream's "topk_margin")
 *   entropy         negative entropy of the distribution (Dream's "entropy")
 *   random          a uniform draw (LLaDA's "random" remasking, Dream's "origin")
 * Blocks (LLaDA's semi-autoregressive sampling): the span from the first mask to the end of the canvas is cut
 * into blocks of `block` positions, filled left to right, steps shared equally. With logit shift (Dream, RND1)
 * position i is predicted by the logits at i - 1 (position 0 by its own). The mask id is never drawn.
 * EOS: `fill` turns every generated position after the first committed EOS into EOS (LLaDA's SFT pads
 * answers with EOS: the answer ends there, and the remaining masks cost no steps); `stop` and `ignore` leave
 * the canvas to the model (the caller cuts the text at the first EOS for `stop`).
 *
 * Autoregressive (causal checkpoints): greedy (temperature 0) or sampled next-token decoding, up to `length`
 * tokens, stopping at EOS unless `ignore`.
 *
 * Randomness is derived from (seed, step, position), so a run is reproducible for a seed on any thread count. */
#ifndef SCP_SAMPLER_H
#define SCP_SAMPLER_H

#include <stdint.h>

#include "model/model.h"

typedef enum scp_unmask_order { SCP_ORDER_LOW_CONFIDENCE, SCP_ORDER_MARGIN, SCP_ORDER_ENTROPY, SCP_ORDER_RANDOM } scp_unmask_order;
typedef enum scp_eos_mode { SCP_EOS_STOP, SCP_EOS_FILL, SCP_EOS_IGNORE } scp_eos_mode;

/* The value of a name ("low-confidence", "margin", "entropy", "random"); -1 when unknown. */
int scp_unmask_order_from_name(const char *s);

typedef struct scp_gen_opts {
    int steps;                  /* diffusion: model calls in all (at least 1 per block) */
    int block;                  /* diffusion: block length, 0 = one block */
    scp_unmask_order order;
    float temperature;          /* 0: greedy (argmax) */
    int top_k;                  /* 0: off */
    float top_p;                /* 1: off */
    uint64_t seed;
    int32_t mask_id;
    int32_t eos_id;             /* -1: none */
    scp_eos_mode eos;
    int shift;                  /* logits at i predict token i + 1 */
    scp_attn_mode attn;         /* diffusion: bidirectional normally */
    /* Called after every model call with the canvas (may be NULL). */
    void (*on_step)(void *ud, const int32_t *canvas, int n, int step);
    void *ud;
} scp_gen_opts;

void scp_gen_opts_default(scp_gen_opts *o);

/* Fill every mask of canvas (n ids) in place. Returns the number of model calls made, or -1. */
int scp_generate_diffusion(scp_model *m, const scp_gen_opts *o, int32_t *canvas, int n);

/* Continue ids (n of them, capacity cap >= n + length): appends up to `length` tokens; returns the new count
 * (the EOS, when drawn, is included), or -1. */
int scp_generate_ar(scp_model *m, const scp_gen_opts *o, int32_t *ids, int n, int length);

/* One draw from logits (V values, modified in place: temperature, top-k, top-p, the banned id set to -inf),
 * with u uniform in [0, 1); temperature 0 gives the argmax. Exposed for tests. */
int32_t scp_sample_logits(float *logits, int V, float temperature, int top_k, float top_p, int32_t banned, double u);

#endif
