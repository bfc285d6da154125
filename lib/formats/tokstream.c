/* formats/tokstream.c: token stream writer and reader (format in formats/tokstream.h). */
#include "formats/tokstream.h"
#include "core/error.h"
#include "core/io.h"

#include <stdlib.h>
#include <string.h>

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

static int w_bytes(scp_tokstream_writer *w, const void *b, size_t n)
{
    w->crc = scp_crc32(w->crc, b, n);
    return scp_write_all(w->f, b, n, w->what);
}

int scp_tokstream_write_begin(scp_tokstream_writer *w, FILE *f, const char *what, const scp_tokstream_header *h)
{
    memset(w, 0, sizeof *w);
    w->f = f;
    w->what = what;
    w->h = *h;
    w->h.version = SCP_TOKSTREAM_VERSION;
    if (!w->h.token_bytes) w->h.token_bytes = h->vocab_size <= 65536 ? 2 : 4;
    if (w->h.token_bytes != 2 && w->h.token_bytes != 4) return scp_error("%s: token width must be 2 or 4 bytes", what);
    if (w->h.token_bytes == 2 && h->vocab_size > 65536)
        return scp_error("%s: vocabulary of %u tokens does not fit 16-bit tokens", what, h->vocab_size);
    uint8_t hb[64] = {0};
    memcpy(hb, SCP_TOKSTREAM_MAGIC, 8);
    put32(hb + 8, w->h.version);
    put32(hb + 12, w->h.token_bytes);
    put32(hb + 16, w->h.vocab_size);
    put32(hb + 20, (uint32_t)w->h.bos_id);
    put32(hb + 24, (uint32_t)w->h.eos_id);
    put32(hb + 28, (uint32_t)w->h.pad_id);
    put32(hb + 32, (uint32_t)w->h.mask_id);
    put32(hb + 36, w->h.flags);
    put64(hb + 40, w->h.tokenizer_hash);
    return w_bytes(w, hb, sizeof hb);
}

int scp_tokstream_write_doc(scp_tokstream_writer *w, const int32_t *ids, uint32_t n)
{
    if (n == SCP_TOKSTREAM_END) return scp_error("%s: document too long", w->what);
    size_t need = 4 + (size_t)n * w->h.token_bytes;
    if (need > w->cap) w->buf = scp_xrealloc(w->buf, w->cap = need * 2);
    uint8_t *p = w->buf;
    put32(p, n);
    p += 4;
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= w->h.vocab_size)
            return scp_error("%s: token id %d outside the vocabulary (%u)", w->what, ids[i], w->h.vocab_size);
        if (w->h.token_bytes == 2) {
            p[0] = (uint8_t)ids[i];
            p[1] = (uint8_t)(ids[i] >> 8);
            p += 2;
        } else {
            put32(p, (uint32_t)ids[i]);
            p += 4;
        }
    }
    w->n_docs++;
    w->n_tokens += n;
    return w_bytes(w, w->buf, need);
}

int scp_tokstream_write_end(scp_tokstream_writer *w)
{
    uint8_t t[24];
    put32(t, SCP_TOKSTREAM_END);
    put64(t + 4, w->n_docs);
    put64(t + 12, w->n_tokens);
    w->crc = scp_crc32(w->crc, t, 20);
    put32(t + 20, w->crc);
    free(w->buf);
    w->buf = NULL;
    return scp_write_all(w->f, t, 24, w->what);
}

/* A document is read this many tokens at a time (scp_tokstream_read_doc). */
#define READ_PIECE_TOKENS ((size_t)1 << 20)

static int r_bytes(scp_tokstream_reader *r, void *b, size_t n, const char *part)
{
    int rc = scp_read_exact(r->f, b, n, r->what, 0);
    if (rc) return scp_error("%s: truncated token stream (in %s after %llu documents)", r->what, part, (unsigned long long)r->n_docs);
    r->crc = scp_crc32(r->crc, b, n);
    return 0;
}

int scp_tokstream_read_begin(scp_tokstream_reader *r, FILE *f, const char *what)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->what = scp_xstrdup(what);
    uint8_t hb[64];
    size_t got = fread(hb, 1, sizeof hb, f);
    if (got >= 8 && memcmp(hb, SCP_TOKSTREAM_MAGIC, 8) != 0) return scp_error("%s: not an scp token stream (bad magic)", what);
    if (got < sizeof hb) return scp_error("%s: truncated token stream header (%zu of 64 bytes)", what, got);
    r->crc = scp_crc32(0, hb, sizeof hb);
    r->h.version = get32(hb + 8);
    r->h.token_bytes = get32(hb + 12);
    r->h.vocab_size = get32(hb + 16);
    r->h.bos_id = (int32_t)get32(hb + 20);
    r->h.eos_id = (int32_t)get32(hb + 24);
    r->h.pad_id = (int32_t)get32(hb + 28);
    r->h.mask_id = (int32_t)get32(hb + 32);
    r->h.flags = get32(hb + 36);
    r->h.tokenizer_hash = get64(hb + 40);
    if (r->h.version != SCP_TOKSTREAM_VERSION) return scp_error("%s: token stream version %u is not supported (expected 1)", what, r->h.version);
    if (r->h.token_bytes != 2 && r->h.token_bytes != 4) return scp_error("%s: token width %u is invalid (2 or 4)", what, r->h.token_bytes);
    /* ids are int32_t once read: a vocabulary past INT32_MAX would let a 4-byte token in it read as a negative id */
    if (r->h.vocab_size == 0 || r->h.vocab_size > INT32_MAX || (r->h.token_bytes == 2 && r->h.vocab_size > 65536))
        return scp_error("%s: vocabulary size %u is invalid for %u-byte tokens", what, r->h.vocab_size, r->h.token_bytes);
    return 0;
}

int scp_tokstream_read_doc(scp_tokstream_reader *r, int32_t **ids, size_t *cap, uint32_t *n)
{
    if (r->done) return 0;
    uint8_t lb[4];
    if (r_bytes(r, lb, 4, "a document length")) return -1;
    uint32_t len = get32(lb);
    if (len == SCP_TOKSTREAM_END) {
        uint8_t t[20];
        if (scp_read_exact(r->f, t, 20, r->what, 0))
            return scp_error("%s: truncated token stream (in the trailer)", r->what);
        uint32_t crc = scp_crc32(r->crc, t, 16);
        uint64_t nd = get64(t), nt = get64(t + 8);
        if (nd != r->n_docs || nt != r->n_tokens)
            return scp_error("%s: trailer counts (%llu documents, %llu tokens) disagree with the stream (%llu, %llu)", r->what,
                             (unsigned long long)nd, (unsigned long long)nt, (unsigned long long)r->n_docs, (unsigned long long)r->n_tokens);
        if (crc != get32(t + 16)) return scp_error("%s: checksum mismatch: the token stream is corrupt", r->what);
        r->done = 1;
        return 0;
    }
    /* The length is a claim until the tokens are there: a corrupt one (up to 2^32 - 2 tokens, 16 GiB) must end in
     * "truncated", not in allocating for it. So the document is read in pieces, and the buffers grow only with
     * the tokens that have arrived. */
    if (!*ids) *ids = scp_xrealloc(*ids, sizeof **ids * (*cap = 1));
    const size_t tb = r->h.token_bytes;
    for (size_t done = 0; done < len;) {
        size_t k = len - done < READ_PIECE_TOKENS ? len - done : READ_PIECE_TOKENS;
        if (k * tb > r->raw_cap) r->raw = scp_xrealloc(r->raw, r->raw_cap = k * tb);
        if (r_bytes(r, r->raw, k * tb, "a document")) return -1;
        if (*cap < done + k) {
            size_t grown = *cap * 2 > done + k ? *cap * 2 : done + k;
            *ids = scp_xrealloc(*ids, sizeof **ids * (*cap = grown < len ? grown : len));
        }
        for (size_t i = 0; i < k; i++) {
            uint32_t v = tb == 2 ? (uint32_t)r->raw[2 * i] | (uint32_t)r->raw[2 * i + 1] << 8 : get32(r->raw + 4 * i);
            if (v >= r->h.vocab_size)
                return scp_error("%s: document %llu: token id %u outside the vocabulary (%u)", r->what, (unsigned long long)r->n_docs, v, r->h.vocab_size);
            (*ids)[done + i] = (int32_t)v;
        }
        done += k;
    }
    r->n_docs++;
    r->n_tokens += len;
    *n = len;
    return 1;
}

void scp_tokstream_read_close(scp_tokstream_reader *r)
{
    free(r->raw);
    free(r->what);
    memset(r, 0, sizeof *r);
}
