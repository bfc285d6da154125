/* train/noise.h: the gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, "An Empirical
 * Model of Large-Batch Training"), from the squared norms of two gradients of the same weights measured at two
 * batch sizes, B_small < B_big (in tokens that carry a loss). With G_B the mean-loss gradient of a batch of B,
 * E|G_B|^2 = |G|^2 + tr(Sigma) / B, so the paper's appendix A gives the unbiased estimates
 *     |G|^2     ~= (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
 *     tr(Sigma) ~= (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big).
 * Each step's pair is noisy (either estimate may come out negative), so the two are smoothed separately by
 * exponential moving averages and the scale is their ratio, EMA(tr Sigma) / EMA(|G|^2), in tokens. The EMAs start
 * at 0 with the same constant, so the ratio needs no bias correction. Everything is kept per optimizer group too
 * (formats/model_config.h scp_group) where the groups' norms are known: the whole model's estimates are then the
 * sums of the groups' (the formulas are linear in the squared norms). */
#ifndef SCP_TRAIN_NOISE_H
#define SCP_TRAIN_NOISE_H

#include <stdint.h>
#include <jansson.h>

#include "formats/model_config.h"

/* The EMA constant: each step's estimate enters with weight 1 - SCP_NOISE_EMA, a memory of about 100 steps. */
#define SCP_NOISE_EMA 0.99

#define SCP_NOISE_ALL SCP_GROUP_COUNT   /* the slot of the whole model, after the groups' */

typedef struct scp_noise {
    double ema_s[SCP_GROUP_COUNT + 1];    /* EMA of the tr(Sigma) estimates, per group, then the whole model's */
    double ema_g2[SCP_GROUP_COUNT + 1];   /* EMA of the |G|^2 estimates, likewise */
    int64_t n;                            /* estimates folded in (0: no scale yet) */
} scp_noise;

/* The unbiased estimates of one pair (the formulas above); -1 when b_small is not in (0, b_big). */
int scp_noise_estimate(double small_sq, double b_small, double big_sq, double b_big, double *g2, double *s);
void scp_noise_reset(scp_noise *e);
/* Fold one step's estimates into the EMAs: the whole model's, and the groups' (SCP_GROUP_COUNT each) unless NULL
 * (the groups' norms are unknown: their averages stay as they are). */
void scp_noise_fold(scp_noise *e, double g2_all, double s_all, const double *g2, const double *s);
/* The noise scale in tokens of group g, or of the whole model for g = SCP_NOISE_ALL; NaN when there is none: no
 * estimate folded in yet, or an EMA of |G|^2 that is not positive (the gradient is below the noise of its
 * estimate). */
double scp_noise_scale(const scp_noise *e, int g);
/* The averages in trainer_state.json, so that a resumed run continues them: {"steps": n, "tr_sigma": {GROUP: x,
 * ..., "all": x}, "grad_sq": {likewise}} over every group. A new reference; and back, `what` naming the file in
 * messages. */
json_t *scp_noise_to_json(const scp_noise *e);
int scp_noise_from_json(scp_noise *e, const json_t *j, const char *what);

#endif
