/* train/batch_schedule.c: batch-size schedules (train/batch_schedule.h). */
#include "train/batch_schedule.h"
#include "core/error.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tokens at most 2^50: a product with a sequence length stays far inside int64_t and exact in a double. */
#define TOKENS_MAX ((int64_t)1 << 50)

/* A whole count with the suffixes of --tokens, between 1 and TOKENS_MAX; *p moves past it. */
static int count(const char **p, const char *spec, const char *what, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(*p, &end);
    if (errno || end == *p) return scp_error("--batch-schedule '%s': %s is not a count", spec, what);
    if (*end == 'k' || *end == 'K') v *= 1e3, end++;
    else if (*end == 'M') v *= 1e6, end++;
    else if (*end == 'G') v *= 1e9, end++;
    else if (*end == 'T') v *= 1e12, end++;
    if ((*end && *end != ':') || v != floor(v))
        return scp_error("--batch-schedule '%s': %s is not a whole count (suffixes k, M, G, T)", spec, what);
    if (!(v >= 1 && v <= (double)TOKENS_MAX))
        return scp_error("--batch-schedule '%s': %s is out of range [1, 2^50]", spec, what);
    *out = (int64_t)v;
    *p = end;
    return 0;
}

/* Past the ':' that must follow, or -1 at the end of the spec. */
static int colon(const char **p, const char *spec, const char *what)
{
    if (**p != ':') return scp_error("--batch-schedule '%s': %s is missing", spec, what);
    (*p)++;
    return 0;
}

int scp_batch_schedule_parse(const char *spec, scp_batch_schedule *s)
{
    memset(s, 0, sizeof *s);
    const char *p;
    if (strncmp(spec, "linear:", 7) == 0) {
        s->kind = SCP_BATCH_LINEAR;
        p = spec + 7;
        if (count(&p, spec, "START", &s->start) || colon(&p, spec, "END") || count(&p, spec, "END", &s->end) ||
            colon(&p, spec, "TOKENS") || count(&p, spec, "TOKENS", &s->span))
            return -1;
    } else if (strncmp(spec, "adaptive:", 9) == 0) {
        s->kind = SCP_BATCH_ADAPTIVE;
        p = spec + 9;
        char *end;
        errno = 0;
        s->k = strtod(p, &end);
        if (errno || end == p || (*end && *end != ':') || !isfinite(s->k) || !(s->k > 0) || s->k > 1e6)
            return scp_error("--batch-schedule '%s': K is not a number in (0, 1e6]", spec);
        p = end;
        if (*p) {
            p++;
            if (count(&p, spec, "MIN", &s->min) || colon(&p, spec, "MAX") || count(&p, spec, "MAX", &s->max))
                return -1;
            if (s->min > s->max)
                return scp_error("--batch-schedule '%s': MIN %lld is above MAX %lld", spec, (long long)s->min,
                                 (long long)s->max);
        }
    } else {
        return scp_error("--batch-schedule '%s': not linear:START:END:TOKENS or adaptive:K[:MIN:MAX]", spec);
    }
    if (*p) return scp_error("--batch-schedule '%s': unexpected '%s' at the end", spec, p);
    return 0;
}

void scp_batch_schedule_resolve(scp_batch_schedule *s, int64_t base_tokens)
{
    if (s->kind != SCP_BATCH_ADAPTIVE || s->max) return;
    s->min = base_tokens;
    s->max = base_tokens * SCP_BATCH_ADAPT_MAX_FACTOR;
}

int64_t scp_batch_base_tokens(int64_t batch_tokens, int T) { return batch_tokens ? batch_tokens : 8LL * T; }

int scp_batch_round(double tokens, int T, int quantum)
{
    double seqs = floor(tokens / T);
    if (!(seqs < (double)(1 << 30))) seqs = (double)(1 << 30);
    int n = (int)seqs;
    n -= n % quantum;
    return n < quantum ? quantum : n;
}

/* Linear: the batch in tokens after `seen` tokens, before rounding. */
static double linear_tokens(const scp_batch_schedule *s, int64_t seen)
{
    double f = seen >= s->span ? 1.0 : (double)seen / (double)s->span;
    return (double)s->start + (double)(s->end - s->start) * f;
}

int scp_batch_schedule_first(const scp_batch_schedule *s, int T, int quantum)
{
    return scp_batch_round(s->kind == SCP_BATCH_LINEAR ? (double)s->start : (double)s->min, T, quantum);
}

int scp_batch_schedule_largest(const scp_batch_schedule *s, int T, int quantum)
{
    if (s->kind == SCP_BATCH_ADAPTIVE) return scp_batch_round((double)s->max, T, quantum);
    return scp_batch_round((double)(s->start > s->end ? s->start : s->end), T, quantum);
}

int scp_batch_schedule_next(const scp_batch_schedule *s, int64_t seen, int current, const scp_noise *noise, int T,
                            int quantum)
{
    if (s->kind == SCP_BATCH_LINEAR) return scp_batch_round(linear_tokens(s, seen), T, quantum);
    double scale = scp_noise_scale(noise, SCP_NOISE_ALL);
    if (noise->n < SCP_BATCH_ADAPT_ESTIMATES || !isfinite(scale)) return current;
    double want = s->k * scale;   /* clamped before rounding, so that a huge or negative estimate stays in range */
    if (!(want > (double)s->min)) want = (double)s->min;   /* NaN too */
    if (want > (double)s->max) want = (double)s->max;
    int target = scp_batch_round(want, T, quantum);
    return target > current ? target : current;
}

int64_t scp_batch_schedule_steps(const scp_batch_schedule *s, int64_t tokens, int64_t step, int64_t seen, int current,
                                 int T, int quantum)
{
    if (s->kind == SCP_BATCH_ADAPTIVE) {
        int64_t per = (int64_t)current * T;
        return seen >= tokens ? step : step + (tokens - seen + per - 1) / per;
    }
    /* step by step along the ramp, then at the END batch */
    int64_t n = 0, t = 0;
    for (; t < tokens && t < s->span; n++) t += (int64_t)scp_batch_round(linear_tokens(s, t), T, quantum) * T;
    int64_t per = (int64_t)scp_batch_round((double)s->end, T, quantum) * T;
    return t >= tokens ? n : n + (tokens - t + per - 1) / per;
}
