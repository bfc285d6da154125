/* eval/choice.h: log-likelihood of a continuation given a context, for multiple-choice scoring
 * (scp-eval choice, lm-eval-harness style).
 *
 * AR (causal checkpoints): the exact log p(cont | ctx) = sum over continuation tokens of log softmax of the
 *   causal logits one position earlier.
 * Diffusion (masked-diffusion checkpoints): LLaDA's Monte-Carlo lower bound on log p(cont | ctx). Over N
 *   samples, the number of masked continuation tokens l is stratified: l_i = ((round(k + i L / N) - 1) mod L)
 *   + 1 for one uniform k in [1, L] (L continuation tokens); sample i masks l_i continuation positions drawn
 *   uniformly (the context stays visible), runs the bidirectional model, and scores
 *   Y_i = (L / l_i) * sum over masked positions of log p(x_j | x_masked); the estimate is mean_i Y_i.
 *   The randomness comes from (seed, stream), so one item's choices can share it (common random numbers). */
#ifndef SCP_EVAL_CHOICE_H
#define SCP_EVAL_CHOICE_H

#include <stdint.h>

#include "model/model.h"

/* seq = ctx ids followed by cont ids (n_ctx >= 1, n_cont >= 1). Returns 0 and *ll, or -1. */
int scp_loglik_ar(scp_model *m, const int32_t *seq, int n_ctx, int n_cont, double *ll);
int scp_loglik_diffusion(scp_model *m, const int32_t *seq, int n_ctx, int n_cont, int samples, uint64_t seed, uint64_t stream,
                         int32_t mask_id, int shift, double *ll);

#endif
