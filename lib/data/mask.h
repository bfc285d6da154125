/* data/mask.h: the forward (noising) process of masked diffusion, shared by scp-remask and scp-train.
 * Example i of a shard set with seed s is masked identically whatever the thread count, batch order or rank:
 * its randomness comes from the stream (s, i) alone. */
#ifndef SCP_MASK_H
#define SCP_MASK_H

#include <stdint.h>

typedef enum scp_t_sampler { SCP_T_UNIFORM, SCP_T_STRATIFIED, SCP_T_ANTITHETIC } scp_t_sampler;
typedef enum scp_mask_schedule { SCP_SCHED_LINEAR, SCP_SCHED_COSINE, SCP_SCHED_POLY2 } scp_mask_schedule;

/* Noise levels t (B of them) in [eps, 1] for the batch `batch_id`:
 *   uniform: independent; stratified: one in each of B equal strata of [eps, 1], shuffled;
 *   antithetic: pairs t, 1 + eps - t. Deterministic in (seed, batch_id). */
void scp_mask_sample_t(scp_t_sampler s, uint64_t seed, uint64_t batch_id, int B, double eps, double *t);
/* Probability that a token is masked at time t (linear: t; cosine: 1 - cos(pi t / 2); poly2: t^2). */
double scp_mask_prob(scp_mask_schedule s, double t);
/* ELBO weight of a masked token at time t: -alpha'(t) / (1 - alpha(t)) with alpha = 1 - prob (linear: 1/t). */
double scp_mask_weight(scp_mask_schedule s, double t);
/* Mask example `index` at time t: positions >= prompt_len are masked independently with probability
 * scp_mask_prob(sched, t) using the stream (seed, index); noisy (T) = tokens with mask_id where masked,
 * mask (T) = 1 where masked. Returns the number masked. Either output may be NULL. */
int scp_mask_sequence(uint64_t seed, uint64_t index, double t, scp_mask_schedule sched, int T, const int32_t *tokens,
                      int prompt_len, int32_t mask_id, int32_t *noisy, uint8_t *mask);

/* As scp_mask_sequence, but positions with keep[i] != 0 (keep: T, or NULL) are
 * never masked either: per-document prompts, padding. The randomness of a position is the same as above. */
int scp_mask_sequence_keep(uint64_t seed, uint64_t index, double t, scp_mask_schedule sched, int T, const int32_t *tokens,
                           const uint8_t *keep, int prompt_len, int32_t mask_id, int32_t *noisy, uint8_t *mask);
/* E[scp_mask_prob(sched, t)] for t uniform on [eps, 1]: the expected masked fraction of a maskable token. */
double scp_mask_mean_prob(scp_mask_schedule s, double eps);
/* Names as on the command line ("uniform", "stratified", "antithetic"; "linear", "cosine", "poly2");
 * the parsers return -1 for an unknown name. */
const char *scp_t_sampler_name(scp_t_sampler s);
const char *scp_mask_schedule_name(scp_mask_schedule s);
int scp_t_sampler_from_name(const char *name);
int scp_mask_schedule_from_name(const char *name);

#endif
