/* model/moe.h: the mixture-of-experts controls of the decoder driver (qwen3_moe; lib/model/moe.c): the
 * auxiliary router losses a trainer adds, and the per-expert load it reports. A dense model ignores them.
 *
 * Losses, per layer l of M = B T rows, E experts, k chosen per row (no gradient flows through the choice):
 *   aux_l = E * sum_e f_e P_e, f_e = (assignments to e) / (M k), P_e = mean over rows of the router probability
 *   z_l = mean over rows of logsumexp(router logits)^2
 * averaged over the L layers and weighted by the step's `share` (scp_model_moe_set_share): a trainer sets the
 * share of each micro-batch to its fraction of the global batch, so the sum over micro-batches and ranks is the
 * mean of the per-micro-batch values (for z exactly the one-batch value). The gradients of
 * aux_coef * share * mean_l aux_l + z_coef * share * mean_l z_l are added by every backward. */
#ifndef SCP_MODEL_MOE_H
#define SCP_MODEL_MOE_H

#include <stdint.h>

#include "model/model.h"

/* Coefficients of the load-balancing and z losses (0, the default: off). */
void scp_model_moe_set_losses(scp_model *m, double aux_coef, double z_coef);
/* The weight of the next steps' auxiliary losses (default 1). */
void scp_model_moe_set_share(scp_model *m, double share);
/* Zero the statistics below; they accumulate over every forward (not the reruns of --recompute). */
void scp_model_moe_reset_stats(scp_model *m);
/* Number of experts (0 for a dense model); load (E, may be NULL) receives the assignments per expert summed over
 * layers and forwards since the reset; aux and z (may be NULL) the share-weighted sums of mean_l aux_l and
 * mean_l z_l (without the coefficients). */
int scp_model_moe_stats(const scp_model *m, int64_t *load, double *aux, double *z);

#endif
