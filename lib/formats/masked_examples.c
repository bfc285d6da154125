/* formats/masked_examples.c: writing and reading scp-remask's output (format in formats/masked_examples.h). */
#include "formats/masked_examples.h"
#include "formats/shard_format.h"
#include "core/error.h"
#include "core/io.h"

#include <stdlib.h>
#include <string.h>

/* A record is read this many bytes at a time (scp_masked_read_next). */
#define READ_PIECE ((size_t)1 << 20)

static uint64_t dbits(double x)
{
    uint64_t u;
    memcpy(&u, &x, 8);
    return u;
}

static double bitsd(uint64_t u)
{
    double x;
    memcpy(&x, &u, 8);
    return x;
}

size_t scp_masked_record_size(const scp_masked_header *h)
{
    size_t T = h->seq_len, n = 24 + T * h->token_bytes * ((h->flags & SCP_MASKED_FLAG_TARGETS) ? 2 : 1) + (T + 7) / 8;
    return (n + 7) & ~(size_t)7;
}

void scp_masked_header_encode(const scp_masked_header *h, uint8_t out[SCP_MASKED_HEADER])
{
    memset(out, 0, SCP_MASKED_HEADER);
    memcpy(out, SCP_MASKED_MAGIC, 8);
    scp_put32(out + 8, SCP_MASKED_VERSION);
    scp_put32(out + 12, h->token_bytes);
    scp_put32(out + 16, h->seq_len);
    scp_put32(out + 20, h->vocab_size);
    scp_put32(out + 24, (uint32_t)h->mask_id);
    scp_put32(out + 28, h->flags);
    scp_put64(out + 32, h->seed);
    scp_put32(out + 40, h->t_sampler);
    scp_put32(out + 44, h->schedule);
    scp_put64(out + 48, dbits(h->eps));
    scp_put32(out + 56, h->batch);
    scp_put32(out + 60, h->prompt_len);
    scp_put64(out + 64, h->tokenizer_hash);
    scp_put32(out + 72, h->split);
    scp_put32(out + 76, (uint32_t)h->prompt_end_id);
}

int scp_masked_header_decode(scp_masked_header *h, const uint8_t *in, size_t avail, const char *what)
{
    if (avail >= 8 && memcmp(in, SCP_MASKED_MAGIC, 8) != 0) return scp_error("%s: not an scp masked-example file (bad magic)", what);
    if (avail < SCP_MASKED_HEADER) return scp_error("%s: truncated masked-example header (%zu of 128 bytes)", what, avail);
    memset(h, 0, sizeof *h);
    h->version = scp_get32(in + 8);
    h->token_bytes = scp_get32(in + 12);
    h->seq_len = scp_get32(in + 16);
    h->vocab_size = scp_get32(in + 20);
    h->mask_id = (int32_t)scp_get32(in + 24);
    h->flags = scp_get32(in + 28);
    h->seed = scp_get64(in + 32);
    h->t_sampler = scp_get32(in + 40);
    h->schedule = scp_get32(in + 44);
    h->eps = bitsd(scp_get64(in + 48));
    h->batch = scp_get32(in + 56);
    h->prompt_len = scp_get32(in + 60);
    h->tokenizer_hash = scp_get64(in + 64);
    h->split = scp_get32(in + 72);
    h->prompt_end_id = (int32_t)scp_get32(in + 76);
    if (h->version != SCP_MASKED_VERSION) return scp_error("%s: masked-example version %u is not supported (expected 1)", what, h->version);
    if (h->token_bytes != 2 && h->token_bytes != 4) return scp_error("%s: token width %u is invalid (2 or 4)", what, h->token_bytes);
    if (h->seq_len == 0 || h->seq_len > (1u << 28)) return scp_error("%s: sequence length %u is invalid", what, h->seq_len);
    if (h->t_sampler > 2 || h->schedule > 2) return scp_error("%s: unknown t sampler or schedule code", what);
    return 0;
}

static void put_tokens(uint8_t *p, const int32_t *x, uint32_t T, uint32_t tb)
{
    if (tb == 2)
        for (uint32_t j = 0; j < T; j++) {
            p[2 * j] = (uint8_t)x[j];
            p[2 * j + 1] = (uint8_t)(x[j] >> 8);
        }
    else
        for (uint32_t j = 0; j < T; j++) scp_put32(p + 4 * j, (uint32_t)x[j]);
}

static void get_tokens(int32_t *x, const uint8_t *p, uint32_t T, uint32_t tb)
{
    if (tb == 2)
        for (uint32_t j = 0; j < T; j++) x[j] = (int32_t)((uint32_t)p[2 * j] | (uint32_t)p[2 * j + 1] << 8);
    else
        for (uint32_t j = 0; j < T; j++) x[j] = (int32_t)scp_get32(p + 4 * j);
}

void scp_masked_record_encode(const scp_masked_header *h, uint8_t *out, uint64_t index, double t, uint32_t n_masked,
                              uint32_t n_maskable, const int32_t *noisy, const int32_t *targets, const uint8_t *mask)
{
    const uint32_t T = h->seq_len, tb = h->token_bytes;
    size_t rs = scp_masked_record_size(h);
    scp_put64(out, index);
    scp_put64(out + 8, dbits(t));
    scp_put32(out + 16, n_masked);
    scp_put32(out + 20, n_maskable);
    uint8_t *p = out + 24;
    put_tokens(p, noisy, T, tb);
    p += (size_t)T * tb;
    if (h->flags & SCP_MASKED_FLAG_TARGETS) {
        put_tokens(p, targets, T, tb);
        p += (size_t)T * tb;
    }
    memset(p, 0, (size_t)(out + rs - p));
    uint32_t j = 0;
    for (; j + 8 <= T; j += 8) {
        const uint8_t *m = mask + j;
        p[j >> 3] = (uint8_t)((m[0] & 1) | (m[1] & 1) << 1 | (m[2] & 1) << 2 | (m[3] & 1) << 3 | (m[4] & 1) << 4 |
                              (m[5] & 1) << 5 | (m[6] & 1) << 6 | (m[7] & 1) << 7);
    }
    for (; j < T; j++) p[j >> 3] |= (uint8_t)((mask[j] & 1) << (j & 7));
}

void scp_masked_trailer_encode(uint8_t out[SCP_MASKED_TRAILER], uint64_t n_examples, uint64_t masked, uint64_t maskable,
                               uint32_t crc)
{
    scp_put64(out, UINT64_MAX);
    scp_put64(out + 8, n_examples);
    scp_put64(out + 16, masked);
    scp_put64(out + 24, maskable);
    crc = scp_crc32(crc, out, 32);
    scp_put32(out + 32, crc);
    scp_put32(out + 36, 0);
}

int scp_masked_read_begin(scp_masked_reader *r, FILE *f, const char *what)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->what = scp_xstrdup(what);
    uint8_t hb[SCP_MASKED_HEADER];
    size_t got = fread(hb, 1, sizeof hb, f);
    if (scp_masked_header_decode(&r->h, hb, got, what)) return -1;
    r->crc = scp_crc32(0, hb, sizeof hb);
    r->rsize = scp_masked_record_size(&r->h);
    r->rec_cap = r->rsize < READ_PIECE ? r->rsize : READ_PIECE;
    r->rec = scp_xmalloc(r->rec_cap);
    return 0;
}

int scp_masked_read_next(scp_masked_reader *r, uint64_t *index, double *t, int32_t *noisy, int32_t *targets, uint8_t *mask)
{
    if (r->done) return 0;
    if (scp_read_exact(r->f, r->rec, 8, r->what, 0)) return scp_error("%s: truncated (no trailer after %llu examples)", r->what, (unsigned long long)r->n);
    if (scp_get64(r->rec) == UINT64_MAX) {
        uint8_t *tr = r->rec;
        uint8_t buf[SCP_MASKED_TRAILER];
        memcpy(buf, tr, 8);
        if (scp_read_exact(r->f, buf + 8, SCP_MASKED_TRAILER - 8, r->what, 0)) return scp_error("%s: truncated trailer", r->what);
        uint32_t crc = scp_crc32(r->crc, buf, 32);
        if (scp_get64(buf + 8) != r->n || scp_get64(buf + 16) != r->masked || scp_get64(buf + 24) != r->maskable)
            return scp_error("%s: trailer counts disagree with the records", r->what);
        if (crc != scp_get32(buf + 32)) return scp_error("%s: checksum mismatch: the file is corrupt", r->what);
        r->done = 1;
        return 0;
    }
    /* The header's seq_len sizes a record (up to 2 GiB) before any record is seen: the record is read in pieces,
     * its buffer growing with the bytes that arrive, so that a corrupt header ends in "truncated" rather than in
     * allocating for it. */
    for (size_t got = 8; got < r->rsize;) {
        size_t k = r->rsize - got < READ_PIECE ? r->rsize - got : READ_PIECE;
        if (got + k > r->rec_cap) {
            size_t grown = r->rec_cap * 2 > got + k ? r->rec_cap * 2 : got + k;
            r->rec = scp_xrealloc(r->rec, r->rec_cap = grown < r->rsize ? grown : r->rsize);
        }
        if (scp_read_exact(r->f, r->rec + got, k, r->what, 0)) return scp_error("%s: truncated record %llu", r->what, (unsigned long long)r->n);
        got += k;
    }
    r->crc = scp_crc32(r->crc, r->rec, r->rsize);
    const uint32_t T = r->h.seq_len, tb = r->h.token_bytes;
    const uint8_t *p = r->rec + 24;
    if (index) *index = scp_get64(r->rec);
    if (t) *t = bitsd(scp_get64(r->rec + 8));
    if (noisy) get_tokens(noisy, p, T, tb);
    p += (size_t)T * tb;
    if (r->h.flags & SCP_MASKED_FLAG_TARGETS) {
        if (targets) get_tokens(targets, p, T, tb);
        p += (size_t)T * tb;
    }
    uint32_t nm = 0;
    for (uint32_t j = 0; j < T; j++) {
        uint8_t b = (p[j >> 3] >> (j & 7)) & 1;
        nm += b;
        if (mask) mask[j] = b;
    }
    if (nm != scp_get32(r->rec + 16)) return scp_error("%s: record %llu: %u mask bits set, the record says %u", r->what, (unsigned long long)r->n, nm, scp_get32(r->rec + 16));
    r->n++;
    r->masked += nm;
    r->maskable += scp_get32(r->rec + 20);
    return 1;
}

void scp_masked_read_close(scp_masked_reader *r)
{
    free(r->rec);
    free(r->what);
    memset(r, 0, sizeof *r);
}
