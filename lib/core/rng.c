/* core/rng.c: splitmix64 seeding, xoshiro256** generation. */
#include "core/rng.h"

#include <math.h>

void scp_rng_init(scp_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = scp_mix64(seed) ^ scp_mix64(stream ^ 0x5851f42d4c957f2dull);
    for (int i = 0; i < 4; i++) r->s[i] = scp_mix64(x += 0x9e3779b97f4a7c15ull);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t scp_rng_u64(scp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double scp_rng_uniform(scp_rng *r)
{
    return (double)(scp_rng_u64(r) >> 11) * 0x1.0p-53;
}

uint64_t scp_rng_below(scp_rng *r, uint64_t n)
{
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = scp_rng_u64(r); while (x >= limit);
    return x % n;
}

double scp_rng_normal(scp_rng *r)
{
    double u1 = scp_rng_uniform(r), u2 = scp_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
