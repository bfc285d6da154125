/* core/rng.h: reproducible random numbers. Streams are derived from (seed, stream id), so example i of a data set
 * gets the same randomness whatever the thread count, batch order or rank (docs/design.md, "Exact resume").
 * Generator: xoshiro256** seeded through splitmix64. The state is 32 bytes and is saved in trainer_state.json
 * for exact resume. */
#ifndef SCP_RNG_H
#define SCP_RNG_H

#include <stdint.h>

#include "core/hostdev.h"

typedef struct scp_rng { uint64_t s[4]; } scp_rng;

/* A stream for (seed, stream): distinct streams are statistically independent. */
void scp_rng_init(scp_rng *r, uint64_t seed, uint64_t stream);
uint64_t scp_rng_u64(scp_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double scp_rng_uniform(scp_rng *r);
/* Uniform integer in [0, n), unbiased. */
uint64_t scp_rng_below(scp_rng *r, uint64_t n);
/* Standard normal (Box-Muller, no cached second value, so the state alone determines the sequence). */
double scp_rng_normal(scp_rng *r);
/* A 64-bit mix of several values (for deriving seeds: scp_mix3(seed, step, rank)); splitmix64's finaliser.
 * Inline and callable from CUDA kernels: the annealed attention mask is drawn from it on every backend. */
static inline SCP_HD uint64_t scp_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline SCP_HD uint64_t scp_mix3(uint64_t a, uint64_t b, uint64_t c)
{
    return scp_mix64(scp_mix64(scp_mix64(a) ^ b) ^ c);
}

#endif
