/* unit-mask.c: the forward noising process (lib/data/mask.c): schedules against their definitions (weights
 * against numeric derivatives, means against numeric integrals), the t samplers (range, strata, pairs,
 * chi-square uniformity), and the per-example masks (determinism, prompt and keep positions, the masked
 * fraction within a binomial bound). */
#include "../tap.h"
#include "../capped.h"

#include "data/mask.h"
#include "formats/masked_examples.h"
#include "core/rng.h"
#include "core/io.h"
#include "core/error.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_schedules(void)
{
    tap_ok(scp_mask_prob(SCP_SCHED_LINEAR, 0.3) == 0.3, "linear: p(0.3) = 0.3");
    tap_ok(fabs(scp_mask_prob(SCP_SCHED_COSINE, 1.0) - 1.0) < 1e-15 && scp_mask_prob(SCP_SCHED_COSINE, 0) == 0,
           "cosine: p(0) = 0, p(1) = 1");
    tap_ok(fabs(scp_mask_prob(SCP_SCHED_COSINE, 0.5) - (1 - sqrt(0.5))) < 1e-15, "cosine: p(0.5) = 1 - cos(pi/4)");
    tap_ok(scp_mask_prob(SCP_SCHED_POLY2, 0.5) == 0.25, "poly2: p(0.5) = 0.25");
    /* weight = -alpha'/(1 - alpha) = p'/p: against a central difference of p. */
    double worst = 0;
    for (int s = 0; s < 3; s++)
        for (double t = 0.05; t < 0.99; t += 0.07) {
            double h = 1e-6, dp = (scp_mask_prob(s, t + h) - scp_mask_prob(s, t - h)) / (2 * h);
            double w = dp / scp_mask_prob(s, t), e = fabs(scp_mask_weight(s, t) - w) / w;
            worst = e > worst ? e : worst;
        }
    tap_ok(worst < 1e-6, "ELBO weights equal p'(t)/p(t) by numeric differentiation (worst relative error %.1e)", worst);
    tap_ok(scp_mask_weight(SCP_SCHED_LINEAR, 0.25) == 4.0, "linear weight 1/t");
    /* Mean masking probability for t uniform on [eps, 1]: against Simpson's rule. */
    worst = 0;
    for (int s = 0; s < 3; s++) {
        double eps = 1e-3, a = eps, b = 1, sum = 0;
        int n = 2000;
        for (int k = 0; k <= n; k++) {
            double t = a + (b - a) * k / n, wgt = (k == 0 || k == n) ? 1 : (k & 1) ? 4 : 2;
            sum += wgt * scp_mask_prob(s, t);
        }
        double integral = sum * (b - a) / (3.0 * n) / (b - a);
        double e = fabs(integral - scp_mask_mean_prob(s, eps));
        worst = e > worst ? e : worst;
    }
    tap_ok(worst < 1e-10, "mean masking probability matches numeric integration (worst %.1e)", worst);
    tap_ok(scp_mask_schedule_from_name("cosine") == SCP_SCHED_COSINE && scp_t_sampler_from_name("antithetic") == SCP_T_ANTITHETIC &&
           scp_mask_schedule_from_name("cos") == -1 && strcmp(scp_t_sampler_name(SCP_T_STRATIFIED), "stratified") == 0,
           "names");
}

static void test_samplers(void)
{
    const double eps = 1e-3;
    enum { B = 16 };
    double t[B], t2[B];
    int in_range = 1, strata_once = 1, pairs = 1, det = 1;
    for (uint64_t b = 0; b < 500; b++) {
        for (int s = 0; s < 3; s++) {
            scp_mask_sample_t(s, 42, b, B, eps, t);
            scp_mask_sample_t(s, 42, b, B, eps, t2);
            det &= memcmp(t, t2, sizeof t) == 0;
            for (int k = 0; k < B; k++) in_range &= t[k] >= eps && t[k] <= 1;
        }
        scp_mask_sample_t(SCP_T_STRATIFIED, 42, b, B, eps, t);
        int seen[B] = {0};
        for (int k = 0; k < B; k++) {
            int st = (int)floor((t[k] - eps) / (1 - eps) * B);
            if (st >= 0 && st < B) seen[st]++;
        }
        for (int k = 0; k < B; k++) strata_once &= seen[k] == 1;
        scp_mask_sample_t(SCP_T_ANTITHETIC, 42, b, B, eps, t);
        for (int k = 0; k < B; k += 2) pairs &= fabs(t[k] + t[k + 1] - (1 + eps)) < 1e-12;
    }
    tap_ok(det, "t samplers are deterministic in (seed, batch)");
    tap_ok(in_range, "every t lies in [eps, 1]");
    tap_ok(strata_once, "stratified: each batch has exactly one t in each of the B strata");
    tap_ok(pairs, "antithetic: pairs sum to 1 + eps");
    scp_mask_sample_t(SCP_T_UNIFORM, 42, 0, B, eps, t);
    scp_mask_sample_t(SCP_T_UNIFORM, 43, 0, B, eps, t2);
    tap_ok(memcmp(t, t2, sizeof t) != 0, "another seed gives other t");
    /* Chi-square of 20 000 uniform t over 20 bins: df 19, P(chi2 > 43.8) = 0.001. Stratified too (its marginal
     * is uniform as well; its chi-square is far smaller). */
    for (int s = 0; s < 2; s++) {
        int bins[20] = {0};
        for (uint64_t b = 0; b < 20000 / B; b++) {
            scp_mask_sample_t(s, 7, b, B, eps, t);
            for (int k = 0; k < B; k++) bins[(int)((t[k] - eps) / (1 - eps) * 20 * 0.999999999)]++;
        }
        double n = 20000.0 / B * B, e = n / 20, chi = 0;
        for (int k = 0; k < 20; k++) chi += (bins[k] - e) * (bins[k] - e) / e;
        tap_ok(chi < 43.8, "%s t: chi-square %.1f over 20 bins (df 19, 0.1%% critical value 43.8)", s ? "stratified" : "uniform", chi);
    }
    double odd[3];
    scp_mask_sample_t(SCP_T_ANTITHETIC, 1, 0, 3, eps, odd);
    tap_ok(fabs(odd[0] + odd[1] - 1 - eps) < 1e-12 && odd[2] >= eps && odd[2] <= 1, "antithetic with odd B: last one free");
}

static void test_masks(void)
{
    enum { T = 512 };
    int32_t tok[T], noisy[T], noisy2[T];
    uint8_t mask[T], mask2[T], keep[T];
    for (int j = 0; j < T; j++) tok[j] = 10 + j;
    int n1 = scp_mask_sequence(5, 77, 0.4, SCP_SCHED_LINEAR, T, tok, 0, 9999, noisy, mask);
    int n2 = scp_mask_sequence(5, 77, 0.4, SCP_SCHED_LINEAR, T, tok, 0, 9999, noisy2, mask2);
    tap_ok(n1 == n2 && memcmp(noisy, noisy2, sizeof noisy) == 0 && memcmp(mask, mask2, sizeof mask) == 0,
           "example (seed, index) is masked the same way twice");
    int agree = 1, cnt = 0;
    for (int j = 0; j < T; j++) {
        agree &= mask[j] ? noisy[j] == 9999 : noisy[j] == tok[j];
        cnt += mask[j];
    }
    tap_ok(agree && cnt == n1, "noisy = mask id exactly where mask = 1; the count returned is the count set (%d)", n1);
    scp_mask_sequence(5, 78, 0.4, SCP_SCHED_LINEAR, T, tok, 0, 9999, NULL, mask2);
    tap_ok(memcmp(mask, mask2, sizeof mask) != 0, "another index, another mask");
    int np = scp_mask_sequence(5, 77, 0.4, SCP_SCHED_LINEAR, T, tok, 100, 9999, noisy2, mask2);
    int prompt_ok = 1, subset = 1;
    for (int j = 0; j < T; j++) {
        if (j < 100) prompt_ok &= !mask2[j] && noisy2[j] == tok[j];
        else subset &= mask2[j] == mask[j];
    }
    tap_ok(prompt_ok, "positions before prompt_len are never masked");
    tap_ok(subset && np <= n1, "past the prompt, a position's mask does not depend on prompt_len");
    for (int j = 0; j < T; j++) keep[j] = (j % 3) == 0;
    scp_mask_sequence_keep(5, 77, 0.4, SCP_SCHED_LINEAR, T, tok, keep, 0, 9999, NULL, mask2);
    int keep_ok = 1;
    for (int j = 0; j < T; j++) keep_ok &= keep[j] ? !mask2[j] : mask2[j] == mask[j];
    tap_ok(keep_ok, "kept positions are never masked; the others are masked as without keep");
    tap_ok(scp_mask_sequence(1, 1, 1.0, SCP_SCHED_LINEAR, T, tok, 10, 9999, NULL, NULL) == T - 10,
           "t = 1 masks every maskable position");
    tap_ok(scp_mask_sequence(1, 1, 0.0, SCP_SCHED_LINEAR, T, tok, 0, 9999, NULL, NULL) == 0, "t = 0 masks nothing");
    /* The documented stream (man 5 scp-masked): position j is masked when the j-th 32-bit half (low first) of
     * the generator (seed ^ 0x6d61736b5f626974, index) is below round(p 2^32). Odd T, longer than a window. */
    {
        enum { T2 = 1301 };
        int32_t tk[T2], nz[T2];
        uint8_t mk[T2];
        for (int j = 0; j < T2; j++) tk[j] = j;
        int n = scp_mask_sequence(77, 5, 0.3, SCP_SCHED_LINEAR, T2, tk, 0, -7, nz, mk);
        scp_rng r;
        scp_rng_init(&r, 77 ^ 0x6d61736b5f626974ull, 5);
        uint64_t thr = (uint64_t)llround(0.3 * 4294967296.0), x = 0;
        int same = 1, cnt = 0;
        for (int j = 0; j < T2; j++) {
            if (!(j & 1)) x = scp_rng_u64(&r);
            int m = ((j & 1) ? x >> 32 : x & 0xffffffffu) < thr;
            same &= m == mk[j] && nz[j] == (m ? -7 : j);
            cnt += m;
        }
        tap_ok(same && cnt == n, "the masks follow the documented generator stream exactly (T = %d)", T2);
        int n2 = scp_mask_sequence(77, 5, 0.3, SCP_SCHED_LINEAR, T2, tk, 0, -7, NULL, NULL);
        tap_ok(n2 == n, "the count is the same without outputs (%d)", n2);
    }
    /* Masked fraction at fixed t over 400 examples (204 800 Bernoulli trials): within 5 standard deviations. */
    for (int s = 0; s < 3; s++) {
        double t = 0.37, p = scp_mask_prob(s, t);
        long tot = 0;
        for (uint64_t i = 0; i < 400; i++) tot += scp_mask_sequence(11, i, t, s, T, tok, 0, 9999, NULL, NULL);
        double n = 400.0 * T, z = (tot - n * p) / sqrt(n * p * (1 - p));
        tap_ok(fabs(z) < 5, "%s schedule at t = 0.37: masked fraction %.4f, p = %.4f (z = %.2f)", scp_mask_schedule_name(s), tot / n, p, z);
    }
    /* Neighbouring positions are independent: pairs (j, j+1) both masked at the rate p^2. */
    long both = 0, pairs = 0;
    for (uint64_t i = 0; i < 400; i++) {
        scp_mask_sequence(12, i, 0.5, SCP_SCHED_LINEAR, T, tok, 0, 9999, NULL, mask);
        for (int j = 0; j + 1 < T; j += 2, pairs++) both += mask[j] & mask[j + 1];
    }
    double z = (both - pairs * 0.25) / sqrt(pairs * 0.25 * 0.75);
    tap_ok(fabs(z) < 5, "adjacent positions masked together at rate %.4f (expected 0.25, z = %.2f)", (double)both / pairs, z);
}

/* The masked-example file: encode, read back, and refuse truncated or corrupt files. */
static void test_file(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/scp-unit-mask.%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    enum { T = 37, N = 5 };
    scp_masked_header h = {.version = 1, .token_bytes = 4, .seq_len = T, .vocab_size = 70000, .mask_id = 69999,
                           .flags = SCP_MASKED_FLAG_TARGETS, .seed = 3, .t_sampler = 1, .schedule = 2, .eps = 1e-3,
                           .batch = 2, .prompt_len = 0, .tokenizer_hash = 42, .split = 0, .prompt_end_id = -1};
    size_t rs = scp_masked_record_size(&h);
    tap_ok(rs == (size_t)((24 + T * 4 * 2 + 5 + 7) / 8 * 8), "record size %zu", rs);
    FILE *f = fopen(path, "wb");
    uint8_t hb[SCP_MASKED_HEADER], *rec = calloc(1, rs), tr[SCP_MASKED_TRAILER];
    scp_masked_header_encode(&h, hb);
    fwrite(hb, 1, sizeof hb, f);
    uint32_t crc = scp_crc32(0, hb, sizeof hb);
    int32_t tok[N][T], noisy[N][T];
    uint8_t mask[N][T];
    uint64_t masked = 0;
    double t[N];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < T; j++) tok[i][j] = 65000 + i * 100 + j;
        t[i] = 0.1 + 0.2 * i;
        masked += (uint64_t)scp_mask_sequence(3, (uint64_t)i, t[i], SCP_SCHED_POLY2, T, tok[i], 0, 69999, noisy[i], mask[i]);
        int n = 0;
        for (int j = 0; j < T; j++) n += mask[i][j];
        scp_masked_record_encode(&h, rec, (uint64_t)i, t[i], (uint32_t)n, T, noisy[i], tok[i], mask[i]);
        fwrite(rec, 1, rs, f);
        crc = scp_crc32(crc, rec, rs);
    }
    scp_masked_trailer_encode(tr, N, masked, (uint64_t)N * T, crc);
    fwrite(tr, 1, sizeof tr, f);
    fclose(f);
    scp_masked_reader r;
    f = fopen(path, "rb");
    int rc = scp_masked_read_begin(&r, f, path), same = rc == 0 && r.h.seq_len == T && r.h.mask_id == 69999 && r.h.eps == 1e-3;
    uint64_t idx;
    double tt;
    int32_t nz[T], tg[T];
    uint8_t mk[T];
    int k = 0;
    while (same && (rc = scp_masked_read_next(&r, &idx, &tt, nz, tg, mk)) == 1) {
        same &= idx == (uint64_t)k && tt == t[k] && !memcmp(nz, noisy[k], sizeof nz) && !memcmp(tg, tok[k], sizeof tg) &&
                !memcmp(mk, mask[k], sizeof mk);
        k++;
    }
    tap_ok(same && rc == 0 && k == N, "masked examples read back exactly, trailer verified (%d records)", k);
    scp_masked_read_close(&r);
    fclose(f);
    /* Cut short, and one flipped byte in a token: refused with a message naming the file. */
    char path2[300];
    snprintf(path2, sizeof path2, "%s.2", path);
    scp_copy_file(path, path2);
    truncate(path, (off_t)(SCP_MASKED_HEADER + 2 * rs + 3));
    f = fopen(path, "rb");
    scp_masked_read_begin(&r, f, path);
    while ((rc = scp_masked_read_next(&r, NULL, NULL, NULL, NULL, NULL)) == 1) {}
    tap_ok(rc < 0 && strstr(scp_last_error(), "truncated"), "a truncated file: %s", scp_last_error());
    scp_masked_read_close(&r);
    fclose(f);
    f = fopen(path2, "r+b");
    fseek(f, SCP_MASKED_HEADER + 30, SEEK_SET);
    fputc(0x55, f);
    fclose(f);
    f = fopen(path2, "rb");
    scp_masked_read_begin(&r, f, path2);
    while ((rc = scp_masked_read_next(&r, NULL, NULL, NULL, NULL, NULL)) == 1) {}
    tap_ok(rc < 0 && strstr(scp_last_error(), "checksum") && strstr(scp_last_error(), path2), "a flipped byte: %s", scp_last_error());
    scp_masked_read_close(&r);
    fclose(f);
    unlink(path);
    unlink(path2);
    free(rec);
}

/* A header's seq_len sizes a record before any is read: a 136-byte file whose header says 2^28 four-byte tokens
 * with targets (2 GiB records) and that holds 8 bytes of a record is refused as truncated with the address space
 * capped 256 MB above what the process uses, rather than ending in "out of memory". */
#ifndef UNDER_ASAN
static const char *read_long_record(void *ctx)
{
    (void)ctx;
    scp_masked_header h = {.token_bytes = 4, .seq_len = 1u << 28, .vocab_size = 100, .mask_id = 99,
                           .flags = SCP_MASKED_FLAG_TARGETS, .prompt_end_id = -1};
    uint8_t s[SCP_MASKED_HEADER + 8] = {0};
    scp_masked_header_encode(&h, s);
    FILE *g = fmemopen(s, sizeof s, "rb");
    scp_masked_reader r;
    int rc = scp_masked_read_begin(&r, g, "claim.masked");
    if (rc == 0) rc = scp_masked_read_next(&r, NULL, NULL, NULL, NULL, NULL);
    return rc == -1 ? scp_last_error() : "read";
}
#endif

static void test_long_record(void)
{
#ifdef UNDER_ASAN
    tap_ok(1, "# SKIP a record size past the data: AddressSanitizer reserves the address space a cap would limit");
#else
    char msg[512];
    int rc = capped_run(256u << 20, read_long_record, NULL, msg, sizeof msg);
    tap_ok(rc == 0 && strstr(msg, "claim.masked: truncated record 0"),
           "records of 2^28 tokens with 8 bytes of one there, the address space capped: %s", rc ? "out of memory" : msg);
#endif
}

int main(void)
{
    test_schedules();
    test_samplers();
    test_masks();
    test_file();
    test_long_record();
    return tap_done();
}
