/* data/mask.c: the forward (noising) process of masked diffusion (data/mask.h).
 *
 * Randomness: t for batch b comes from the stream (seed ^ TAG_T, b); the mask of example i from the stream
 * (seed ^ TAG_MASK, i), consumed 32 bits per position in position order (two positions per 64-bit draw,
 * low half first), whether or not the position can be masked. So the mask of a position does not depend on
 * prompt_len or on other examples, and a longer prompt only unmasks positions. */
#include "data/mask.h"
#include "core/rng.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define TAG_T 0x745f73616d706c65ull     /* "t_sample" */
#define TAG_MASK 0x6d61736b5f626974ull  /* "mask_bit" */

void scp_mask_sample_t(scp_t_sampler s, uint64_t seed, uint64_t batch_id, int B, double eps, double *t)
{
    scp_rng r;
    scp_rng_init(&r, seed ^ TAG_T, batch_id);
    const double w = 1.0 - eps;
    switch (s) {
    case SCP_T_STRATIFIED:
        /* One draw in each stratum [eps + w k/B, eps + w (k+1)/B), then the strata shuffled over the batch. */
        for (int k = 0; k < B; k++) t[k] = eps + w * ((double)k + scp_rng_uniform(&r)) / B;
        for (int k = B - 1; k > 0; k--) {
            int j = (int)scp_rng_below(&r, (uint64_t)k + 1);
            double x = t[k];
            t[k] = t[j];
            t[j] = x;
        }
        break;
    case SCP_T_ANTITHETIC:
        /* Pairs (t, 1 + eps - t): both uniform on [eps, 1], negatively correlated. An odd last one is free. */
        for (int k = 0; k + 1 < B; k += 2) {
            t[k] = eps + w * scp_rng_uniform(&r);
            t[k + 1] = 1.0 + eps - t[k];
        }
        if (B & 1) t[B - 1] = eps + w * scp_rng_uniform(&r);
        break;
    default:
        for (int k = 0; k < B; k++) t[k] = eps + w * scp_rng_uniform(&r);
        break;
    }
}

double scp_mask_prob(scp_mask_schedule s, double t)
{
    switch (s) {
    case SCP_SCHED_COSINE: return 1.0 - cos(M_PI * t / 2.0);
    case SCP_SCHED_POLY2: return t * t;
    default: return t;
    }
}

double scp_mask_weight(scp_mask_schedule s, double t)
{
    /* -alpha'(t) / (1 - alpha(t)) = p'(t) / p(t) with p the masking probability. */
    switch (s) {
    case SCP_SCHED_COSINE: return (M_PI / 2.0) * sin(M_PI * t / 2.0) / (1.0 - cos(M_PI * t / 2.0));
    case SCP_SCHED_POLY2: return 2.0 / t;
    default: return 1.0 / t;
    }
}

/* xoshiro256** inline (the same numbers as scp_rng_u64): this loop runs for every token of every example. */
static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

int scp_mask_sequence_keep(uint64_t seed, uint64_t index, double t, scp_mask_schedule sched, int T, const int32_t *tokens,
                           const uint8_t *keep, int prompt_len, int32_t mask_id, int32_t *noisy, uint8_t *mask)
{
    double p = scp_mask_prob(sched, t);
    if (!(p > 0)) p = 0;
    if (p > 1) p = 1;
    /* Masked when a 32-bit uniform u < thr = round(p 2^32): P = thr / 2^32, within 2^-33 of p. */
    const uint64_t thr = (uint64_t)llround(p * 4294967296.0);
    scp_rng r;
    scp_rng_init(&r, seed ^ TAG_MASK, index);
    uint64_t s0 = r.s[0], s1 = r.s[1], s2 = r.s[2], s3 = r.s[3];
    uint8_t local[512];
    int n = 0;
    /* Windows of 512 positions (even, so a pair of positions never straddles two windows); w[j - j0] is
     * position j's mask, in the caller's array or a local one. */
    for (int j0 = 0; j0 < T; j0 += 512) {
        int j1 = j0 + 512 < T ? j0 + 512 : T;
        uint8_t *w = mask ? mask + j0 : local;
        for (int j = j0; j < j1; j += 2) {
            uint64_t x = rotl64(s1 * 5, 7) * 9, tt = s1 << 17;
            s2 ^= s0;
            s3 ^= s1;
            s1 ^= s2;
            s0 ^= s3;
            s2 ^= tt;
            s3 = rotl64(s3, 45);
            w[j - j0] = (uint8_t)((x & 0xffffffffu) < thr);
            if (j + 1 < j1) w[j + 1 - j0] = (uint8_t)((x >> 32) < thr);
        }
        /* The prompt and kept positions are never masked; their randomness was still consumed above. */
        for (int j = j0; j < j1 && j < prompt_len; j++) w[j - j0] = 0;
        if (keep)
            for (int j = j0; j < j1; j++) w[j - j0] &= (uint8_t)!keep[j];
        for (int j = j0; j < j1; j++) n += w[j - j0];
        if (noisy) {
            /* Branch-free select: the masks are random, a branch here would mispredict half the time. */
            int32_t *restrict nz = noisy + j0;
            const int32_t *restrict tk = tokens + j0;
            const uint8_t *restrict ww = w;
            for (int j = 0; j < j1 - j0; j++) {
                int32_t sel = -(int32_t)ww[j];
                nz[j] = (tk[j] & ~sel) | (mask_id & sel);
            }
        }
    }
    return n;
}

int scp_mask_sequence(uint64_t seed, uint64_t index, double t, scp_mask_schedule sched, int T, const int32_t *tokens,
                      int prompt_len, int32_t mask_id, int32_t *noisy, uint8_t *mask)
{
    return scp_mask_sequence_keep(seed, index, t, sched, T, tokens, NULL, prompt_len, mask_id, noisy, mask);
}

double scp_mask_mean_prob(scp_mask_schedule s, double eps)
{
    double w = 1.0 - eps;
    if (w <= 0) return scp_mask_prob(s, eps);
    switch (s) {
    case SCP_SCHED_COSINE: return 1.0 - (2.0 / M_PI) * (1.0 - sin(M_PI * eps / 2.0)) / w;
    case SCP_SCHED_POLY2: return (1.0 - eps * eps * eps) / (3.0 * w);
    default: return (1.0 + eps) / 2.0;
    }
}

static const char *sampler_names[] = {"uniform", "stratified", "antithetic"};
static const char *schedule_names[] = {"linear", "cosine", "poly2"};

const char *scp_t_sampler_name(scp_t_sampler s) { return (unsigned)s < 3 ? sampler_names[s] : "?"; }
const char *scp_mask_schedule_name(scp_mask_schedule s) { return (unsigned)s < 3 ? schedule_names[s] : "?"; }

int scp_t_sampler_from_name(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, sampler_names[i]) == 0) return i;
    return -1;
}

int scp_mask_schedule_from_name(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, schedule_names[i]) == 0) return i;
    return -1;
}
