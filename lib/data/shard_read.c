/* data/shard_read.c: opening, reading and verifying a shard set (data/shard.h; layout in formats/shard_format.h).
 * The shards are memory-mapped. Opening checks every header against manifest.json and the file sizes, so a
 * truncated or foreign file is refused at once. The first read of a shard checks its CRC32s (the header's
 * data CRC, and the manifest's CRC of the whole file), so that a flipped token is never trained on; a shard
 * that is never read is never checked. Every read bounds-checks the tables it follows, so a corrupt byte
 * gives an error, never a crash. scp_shardset_verify checks every shard, every table entry and every count
 * that manifest.json records. */
#include "data/shard.h"
#include "formats/shard_format.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct shard {
    scp_map map;
    scp_shard_header h;
    scp_shard_layout lay;
    char *path;
    uint32_t crc;    /* manifest's CRC32 of the whole file */
    /* The CRC check on first read: 0 not yet done, 1 passed, -1 failed. Readers on several threads may
     * arrive at once: the lock makes one of them do the check and the others wait for its answer. */
    _Atomic int crc_state;
    pthread_mutex_t crc_lock;
    int lock_ready;
    uint32_t data_crc_seen, file_crc_seen;   /* what the check computed */
} shard;

struct scp_shardset {
    int split;
    shard *sh;
    int n;
    int64_t *start;          /* (n + 1): index of each shard's first sequence */
    int64_t num_seqs;
    uint64_t n_tokens;
    int seq_len, token_bytes, vocab_size, bos_id, eos_id, pad_id, pad_value;
    uint64_t tokenizer_hash;
};

/* What manifest.json says about the whole set. */
typedef struct manifest {
    json_t *j;
    char *path;
    int64_t seq_len, token_bytes, vocab_size, bos_id, eos_id, pad_id, mask_id, pad_value;
    uint64_t tokenizer_hash;
    json_t *shards;
} manifest;

static int need_int(const json_t *o, const char *key, int64_t *v, const char *what)
{
    int rc = scp_json_get_int(o, key, v, what);
    if (rc > 0) return scp_error("%s: missing key '%s'", what, key);
    return rc;
}

static int parse_hex(const char *s, int digits, uint64_t *out)
{
    if (!s || (int)strlen(s) != digits) return -1;
    uint64_t v = 0;
    for (int i = 0; i < digits; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

static void manifest_free(manifest *m)
{
    json_decref(m->j);
    free(m->path);
}

static int manifest_load(manifest *m, const char *dir)
{
    memset(m, 0, sizeof *m);
    if (!scp_is_dir(dir)) return scp_error("%s: not a shard set (not a directory)", dir);
    m->path = scp_path_join(dir, "manifest.json");
    if (!scp_file_exists(m->path)) return scp_error("%s: not a shard set (no manifest.json)", dir);
    m->j = scp_json_load(m->path);
    if (!m->j) return -1;
    const char *what = m->path, *fmt = NULL, *hash = NULL;
    if (!json_is_object(m->j)) return scp_error("%s: not a JSON object", what);
    if (scp_json_get_str(m->j, "format", &fmt, what) != 0 || strcmp(fmt, "scp-shards") != 0)
        return scp_error("%s: not an scp shard set manifest (format is not \"scp-shards\")", what);
    int64_t version;
    if (need_int(m->j, "version", &version, what)) return -1;
    if (version != SCP_SHARD_VERSION) return scp_error("%s: shard set version %" PRId64 " is not supported (expected 1)", what, version);
    if (need_int(m->j, "seq_len", &m->seq_len, what) || need_int(m->j, "token_bytes", &m->token_bytes, what) ||
        need_int(m->j, "vocab_size", &m->vocab_size, what) || need_int(m->j, "bos_id", &m->bos_id, what) ||
        need_int(m->j, "eos_id", &m->eos_id, what) || need_int(m->j, "pad_id", &m->pad_id, what) ||
        need_int(m->j, "mask_id", &m->mask_id, what) || need_int(m->j, "pad_value", &m->pad_value, what))
        return -1;
    if (scp_json_get_str(m->j, "tokenizer_hash", &hash, what) != 0 || parse_hex(hash, 16, &m->tokenizer_hash))
        return scp_error("%s: 'tokenizer_hash' must be 16 hex digits", what);
    if (m->seq_len < 1 || m->seq_len > (1 << 30)) return scp_error("%s: seq_len %" PRId64 " is invalid", what, m->seq_len);
    if (m->token_bytes != 2 && m->token_bytes != 4) return scp_error("%s: token_bytes %" PRId64 " is invalid", what, m->token_bytes);
    m->shards = json_object_get(m->j, "shards");
    if (!json_is_array(m->shards)) return scp_error("%s: 'shards' must be an array", what);
    return 0;
}

/* A shard entry of the manifest: file name (a plain name inside the set), split, index, counts, CRC. */
typedef struct entry {
    const char *file;
    int split;
    int64_t index, first_seq, sequences, tokens, segments, bytes;
    uint32_t crc;
} entry;

static int entry_parse(const manifest *m, size_t i, entry *e)
{
    const json_t *o = json_array_get(m->shards, i);
    char what[512];
    snprintf(what, sizeof what, "%s: shards[%zu]", m->path, i);
    if (!json_is_object(o)) return scp_error("%s: not an object", what);
    const char *split = NULL, *crc = NULL;
    if (scp_json_get_str(o, "file", &e->file, what) != 0 || !e->file[0] || strchr(e->file, '/') || e->file[0] == '.')
        return scp_error("%s: 'file' must be a plain file name inside the set", what);
    if (scp_json_get_str(o, "split", &split, what) != 0 || (strcmp(split, "train") && strcmp(split, "val")))
        return scp_error("%s: 'split' must be \"train\" or \"val\"", what);
    e->split = strcmp(split, "val") == 0;
    if (need_int(o, "index", &e->index, what) || need_int(o, "first_seq", &e->first_seq, what) ||
        need_int(o, "sequences", &e->sequences, what) || need_int(o, "tokens", &e->tokens, what) ||
        need_int(o, "segments", &e->segments, what) || need_int(o, "bytes", &e->bytes, what))
        return -1;
    uint64_t c;
    if (scp_json_get_str(o, "crc32", &crc, what) != 0 || parse_hex(crc, 8, &c)) return scp_error("%s: 'crc32' must be 8 hex digits", what);
    e->crc = (uint32_t)c;
    return 0;
}

#define MISMATCH(field, hv, mv)                                                                                     \
    do {                                                                                                            \
        if ((int64_t)(hv) != (int64_t)(mv))                                                                         \
            return scp_error("%s: header says %s %" PRId64 ", manifest.json says %" PRId64, s->path, field,        \
                             (int64_t)(hv), (int64_t)(mv));                                                         \
    } while (0)

/* Map one shard and check its header against the manifest and its size against the header. */
static int shard_open(shard *s, const char *dir, const manifest *m, const entry *e)
{
    memset(s, 0, sizeof *s);
    s->path = scp_path_join(dir, e->file);
    s->crc = e->crc;
    atomic_init(&s->crc_state, 0);
    s->lock_ready = pthread_mutex_init(&s->crc_lock, NULL) == 0;
    if (!s->lock_ready) return scp_error("%s: cannot create a lock", s->path);
    if (scp_map_file(&s->map, s->path)) return -1;
    scp_shard_header *h = &s->h;
    if (scp_shard_header_decode(h, s->map.data, s->map.size, s->path)) return -1;
    if (scp_shard_layout_of(h, &s->lay)) return scp_error("%s: header counts are impossibly large: the shard is corrupt", s->path);
    MISMATCH("token_bytes", h->token_bytes, m->token_bytes);
    MISMATCH("seq_len", h->seq_len, m->seq_len);
    MISMATCH("vocab_size", h->vocab_size, m->vocab_size);
    MISMATCH("bos_id", h->bos_id, m->bos_id);
    MISMATCH("eos_id", h->eos_id, m->eos_id);
    MISMATCH("pad_id", h->pad_id, m->pad_id);
    MISMATCH("mask_id", h->mask_id, m->mask_id);
    MISMATCH("pad_value", h->pad_value, m->pad_value);
    MISMATCH("split", h->split, e->split);
    MISMATCH("shard index", h->shard_index, e->index);
    MISMATCH("first_seq", h->first_seq, e->first_seq);
    MISMATCH("sequences", h->n_seqs, e->sequences);
    MISMATCH("tokens", h->n_tokens, e->tokens);
    MISMATCH("segments", h->n_segments, e->segments);
    if (h->tokenizer_hash != m->tokenizer_hash)
        return scp_error("%s: header says tokenizer hash %016" PRIx64 ", manifest.json says %016" PRIx64, s->path,
                         h->tokenizer_hash, m->tokenizer_hash);
    if (h->n_tokens > h->n_seqs * h->seq_len) return scp_error("%s: header counts disagree: the shard is corrupt", s->path);
    if (s->map.size < s->lay.size)
        return scp_error("%s: truncated shard (%zu bytes, the header implies %" PRIu64 ")", s->path, s->map.size, s->lay.size);
    if (s->map.size > s->lay.size)
        return scp_error("%s: %zu bytes, the header implies %" PRIu64 ": trailing garbage", s->path, s->map.size, s->lay.size);
    if ((int64_t)s->map.size != e->bytes)
        return scp_error("%s: the file has %zu bytes, manifest.json says %" PRId64, s->path, s->map.size, e->bytes);
    return 0;
}

static void shard_close(shard *s)
{
    scp_unmap(&s->map);
    free(s->path);
    if (s->lock_ready) pthread_mutex_destroy(&s->crc_lock);
}

/* The CRC32 of everything after the header, and (combined with the header's, no second pass) of the whole file. */
static void shard_compute_crc(shard *sh)
{
    const uint8_t *d = sh->map.data;
    uint64_t n = sh->map.size - SCP_SHARD_HEADER;
    sh->data_crc_seen = scp_crc32(0, d + SCP_SHARD_HEADER, n);
    sh->file_crc_seen = (uint32_t)crc32_combine64(scp_crc32(0, d, SCP_SHARD_HEADER), sh->data_crc_seen, (z_off64_t)n);
}

/* The computed CRCs against the header's data_crc and manifest.json's crc32. */
static int shard_crc_verdict(const shard *sh)
{
    if (sh->data_crc_seen != sh->h.data_crc)
        return scp_error("%s: CRC mismatch: the data after the header has CRC32 %08x, the header says %08x: the shard is "
                         "corrupt", sh->path, sh->data_crc_seen, sh->h.data_crc);
    if (sh->file_crc_seen != sh->crc)
        return scp_error("%s: CRC mismatch: the file has CRC32 %08x, manifest.json says %08x", sh->path, sh->file_crc_seen, sh->crc);
    return 0;
}

/* Called before any read of a shard's sections: the first caller computes the CRCs, the others wait for it and
 * reuse its answer (the failure message is made again on each thread that asks, scp_error being per thread). */
static int shard_ready(shard *sh)
{
    int st = atomic_load_explicit(&sh->crc_state, memory_order_acquire);
    if (st == 0) {
        pthread_mutex_lock(&sh->crc_lock);
        st = atomic_load_explicit(&sh->crc_state, memory_order_relaxed);
        if (st == 0) {
            shard_compute_crc(sh);
            st = shard_crc_verdict(sh) ? -1 : 1;
            atomic_store_explicit(&sh->crc_state, st, memory_order_release);
        }
        pthread_mutex_unlock(&sh->crc_lock);
    }
    return st > 0 ? 0 : shard_crc_verdict(sh);
}

/* Sequence `i` of shard `s`: its record, checked. Fills the segment list when segs != NULL. */
static int seq_record(const shard *s, uint64_t i, int64_t *packed, int *n_valid, scp_doc_segment *segs)
{
    const uint8_t *r = s->map.data + s->lay.seqs + i * SCP_SHARD_SEQREC;
    uint64_t p = scp_get64(r), seg0 = scp_get64(r + 8);
    uint32_t nseg = scp_get32(r + 16), nv = scp_get32(r + 20);
    const uint32_t L = s->h.seq_len;
    if (nv > L || nseg > nv || seg0 > s->h.n_segments || nseg > s->h.n_segments - seg0 || (nv && !nseg) || p >= ((uint64_t)1 << 62))
        return scp_error("%s: sequence %" PRIu64 ": corrupt record (segments %" PRIu64 "+%u of %" PRIu64 ", %u tokens)",
                         s->path, i, seg0, nseg, s->h.n_segments, nv);
    const uint8_t *g = s->map.data + s->lay.segments + seg0 * SCP_SHARD_SEGREC;
    uint32_t prev = 0;
    for (uint32_t k = 0; k < nseg; k++, g += SCP_SHARD_SEGREC) {
        uint32_t pos = scp_get32(g + 8);
        if ((k == 0 && pos != 0) || (k > 0 && pos <= prev) || pos >= nv)
            return scp_error("%s: sequence %" PRIu64 ": corrupt document segment %u (starts at %u)", s->path, i, k, pos);
        prev = pos;
        if (segs) {
            segs[k].doc_id = (int64_t)(scp_get64(g) & INT64_MAX);
            segs[k].pos = (int)pos;
            segs[k].doc_offset = scp_get32(g + 12);
        }
    }
    if (packed) *packed = (int64_t)p;
    if (n_valid) *n_valid = (int)nv;
    return (int)nseg;
}

static void set_free(scp_shardset *s)
{
    if (!s) return;
    for (int k = 0; k < s->n; k++) shard_close(&s->sh[k]);
    free(s->sh);
    free(s->start);
    free(s);
}

scp_shardset *scp_shardset_open(const char *dir, const char *split)
{
    int want;
    if (strcmp(split, "train") == 0) want = 0;
    else if (strcmp(split, "val") == 0) want = 1;
    else {
        scp_error("%s: unknown split '%s' (train or val)", dir, split);
        return NULL;
    }
    manifest m;
    if (manifest_load(&m, dir)) {
        manifest_free(&m);
        return NULL;
    }
    scp_shardset *s = scp_xcalloc(1, sizeof *s);
    s->split = want;
    size_t ne = json_array_size(m.shards);
    s->sh = scp_xcalloc(ne ? ne : 1, sizeof *s->sh);
    s->start = scp_xcalloc(ne + 1, sizeof *s->start);
    for (size_t i = 0; i < ne; i++) {
        entry e;
        if (entry_parse(&m, i, &e)) goto fail;
        if (e.split != want) continue;
        if (e.index != s->n || e.first_seq != s->num_seqs) {
            scp_error("%s: %s shard %s is out of order (index %" PRId64 ", first sequence %" PRId64 "; expected %d, %" PRId64 ")",
                      m.path, split, e.file, e.index, e.first_seq, s->n, s->num_seqs);
            goto fail;
        }
        shard *sh = &s->sh[s->n++];
        if (shard_open(sh, dir, &m, &e)) goto fail;
        s->start[s->n - 1] = s->num_seqs;
        s->num_seqs += (int64_t)sh->h.n_seqs;
        s->n_tokens += sh->h.n_tokens;
    }
    s->start[s->n] = s->num_seqs;
    if (s->num_seqs == 0) {
        scp_error("%s: the shard set has no %s sequences%s", dir, split, want ? " (made without --val-fraction or --val-tokens)" : "");
        goto fail;
    }
    s->seq_len = (int)m.seq_len;
    s->token_bytes = (int)m.token_bytes;
    s->vocab_size = (int)m.vocab_size;
    s->bos_id = (int)m.bos_id;
    s->eos_id = (int)m.eos_id;
    s->pad_id = (int)m.pad_id;
    s->pad_value = (int)m.pad_value;
    s->tokenizer_hash = m.tokenizer_hash;
    manifest_free(&m);
    return s;
fail:
    manifest_free(&m);
    set_free(s);
    return NULL;
}

void scp_shardset_close(scp_shardset *s) { set_free(s); }

int scp_shardset_has_split(const char *dir, const char *split)
{
    int want = strcmp(split, "val") == 0;
    if (!want && strcmp(split, "train") != 0) return scp_error("%s: unknown split '%s' (train or val)", dir, split);
    manifest m;
    int rc = manifest_load(&m, dir);
    for (size_t i = 0; !rc && i < json_array_size(m.shards); i++) {
        entry e;
        if ((rc = entry_parse(&m, i, &e))) break;
        if (e.split == want && e.sequences > 0) rc = 1;
    }
    manifest_free(&m);
    return rc;
}

int64_t scp_shardset_num_seqs(const scp_shardset *s) { return s->num_seqs; }
int scp_shardset_seq_len(const scp_shardset *s) { return s->seq_len; }
uint64_t scp_shardset_tokenizer_hash(const scp_shardset *s) { return s->tokenizer_hash; }
int scp_shardset_vocab_size(const scp_shardset *s) { return s->vocab_size; }
int scp_shardset_bos_id(const scp_shardset *s) { return s->bos_id; }
int scp_shardset_eos_id(const scp_shardset *s) { return s->eos_id; }
/* The token found at padding positions: the stream's pad id, or eos when it has none. */
int scp_shardset_pad_id(const scp_shardset *s) { return s->pad_value; }
int scp_shardset_token_bytes(const scp_shardset *s) { return s->token_bytes; }
int64_t scp_shardset_num_tokens(const scp_shardset *s) { return (int64_t)s->n_tokens; }

/* The shard holding sequence i and i's index inside it, its CRCs checked (NULL on error). */
static shard *locate(const scp_shardset *s, int64_t i, uint64_t *local)
{
    if (i < 0 || i >= s->num_seqs) {
        scp_error("sequence %" PRId64 " is out of range (the set has %" PRId64 ")", i, s->num_seqs);
        return NULL;
    }
    int lo = 0, hi = s->n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (s->start[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    *local = (uint64_t)(i - s->start[lo]);
    return shard_ready(&s->sh[lo]) ? NULL : &s->sh[lo];
}

int scp_shardset_seq_info(const scp_shardset *s, int64_t i, int64_t *packed_index, int *n_valid, scp_doc_segment *segs)
{
    uint64_t li;
    const shard *sh = locate(s, i, &li);
    if (!sh) return -1;
    return seq_record(sh, li, packed_index, n_valid, segs);
}

int scp_shardset_get(const scp_shardset *s, int64_t i, int32_t *tokens, int32_t *doc)
{
    uint64_t li;
    const shard *sh = locate(s, i, &li);
    if (!sh) return -1;
    const int L = s->seq_len;
    if (tokens) {
        const uint8_t *p = sh->map.data + sh->lay.tokens + li * (uint64_t)L * (uint64_t)s->token_bytes;
        uint32_t bad = 0;
        const uint32_t V = (uint32_t)s->vocab_size;
        /* One pass, no calls: the trainer reads every token through here. */
        if (s->token_bytes == 2)
            for (int j = 0; j < L; j++) {
                uint32_t v = (uint32_t)p[2 * j] | (uint32_t)p[2 * j + 1] << 8;
                bad |= v >= V;
                tokens[j] = (int32_t)v;
            }
        else
            for (int j = 0; j < L; j++) {
                uint32_t v = scp_get32(p + 4 * j);
                bad |= v >= V;
                tokens[j] = (int32_t)v;
            }
        if (bad) return scp_error("%s: sequence %" PRIu64 " holds a token id outside the vocabulary (%u): the shard is corrupt", sh->path, li, V);
    }
    if (doc) {
        int nv;
        int nseg = seq_record(sh, li, NULL, &nv, NULL);
        if (nseg < 0) return -1;
        const uint8_t *g = sh->map.data + sh->lay.segments + scp_get64(sh->map.data + sh->lay.seqs + li * SCP_SHARD_SEQREC + 8) * SCP_SHARD_SEGREC;
        for (int k = 0; k < nseg; k++) {
            int a = (int)scp_get32(g + (size_t)k * SCP_SHARD_SEGREC + 8);
            int b = k + 1 < nseg ? (int)scp_get32(g + (size_t)(k + 1) * SCP_SHARD_SEGREC + 8) : nv;
            for (int j = a; j < b; j++) doc[j] = k;
        }
        for (int j = nv; j < L; j++) doc[j] = -1;
    }
    return 0;
}

/* ---- verification --------------------------------------------------------------------------------------- */

static int verify_shard(shard *sh)
{
    const uint8_t *d = sh->map.data;
    shard_compute_crc(sh);
    if (shard_crc_verdict(sh)) return -1;
    uint64_t ntok = 0;
    for (uint64_t i = 0; i < sh->h.n_seqs; i++) {
        int nv;
        if (seq_record(sh, i, NULL, &nv, NULL) < 0) return -1;
        ntok += (uint64_t)nv;
    }
    if (ntok != sh->h.n_tokens) return scp_error("%s: sequences hold %" PRIu64 " tokens, the header says %" PRIu64, sh->path, ntok, sh->h.n_tokens);
    /* Every token inside the vocabulary. */
    const uint8_t *p = d + sh->lay.tokens;
    uint64_t n = sh->h.n_seqs * sh->h.seq_len;
    uint32_t V = sh->h.vocab_size, mx = 0;
    if (sh->h.token_bytes == 2)
        for (uint64_t j = 0; j < n; j++) {
            uint32_t v = (uint32_t)p[2 * j] | (uint32_t)p[2 * j + 1] << 8;
            mx = v > mx ? v : mx;
        }
    else
        for (uint64_t j = 0; j < n; j++) {
            uint32_t v = scp_get32(p + 4 * j);
            mx = v > mx ? v : mx;
        }
    if (n && mx >= V) return scp_error("%s: token id %u outside the vocabulary (%u)", sh->path, mx, V);
    return 0;
}

/* A count manifest.json records at `where` (splits.train, totals), against the sum over the shards. */
static int check_count(const manifest *m, const json_t *o, const char *where, const char *key, int64_t want)
{
    int64_t v;
    int r = scp_json_get_int(o, key, &v, m->path);
    if (r > 0) return scp_error("%s: '%s.%s' is missing", m->path, where, key);
    if (r < 0) return -1;
    if (v != want) return scp_error("%s: %s.%s is %" PRId64 ", the shard files hold %" PRId64, m->path, where, key, v, want);
    return 0;
}

int scp_shardset_verify(const char *dir)
{
    manifest m;
    if (manifest_load(&m, dir)) {
        manifest_free(&m);
        return -1;
    }
    int rc = 0;
    size_t ne = json_array_size(m.shards);
    entry *es = scp_xcalloc(ne ? ne : 1, sizeof *es);
    for (size_t i = 0; i < ne && !rc; i++) rc = entry_parse(&m, i, &es[i]);
    /* The shards in parallel (reading and checksumming is the work). Then, in manifest order, the first shard
     * that is bad or out of place is the one reported: a wrong count in shards[i] is named there, before it
     * puts shards[i + 1] out of order. JSON is only read here, and jansson's getters are safe for that. */
    char **err = scp_xcalloc(ne ? ne : 1, sizeof *err);
    if (!rc) {
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t i = 0; i < ne; i++) {
            shard sh;
            int r = shard_open(&sh, dir, &m, &es[i]);
            if (!r) r = verify_shard(&sh);
            if (r) err[i] = scp_xstrdup(scp_last_error());
            shard_close(&sh);
        }
        int64_t next_index[2] = {0, 0}, next_seq[2] = {0, 0};
        for (size_t i = 0; i < ne && !rc; i++) {
            const entry *e = &es[i];
            if (err[i]) rc = scp_error("%s", err[i]);
            else if (e->index != next_index[e->split] || e->first_seq != next_seq[e->split])
                rc = scp_error("%s: shard %s is out of order (index %" PRId64 ", first sequence %" PRId64 "; expected %" PRId64
                               ", %" PRId64 ")", m.path, e->file, e->index, e->first_seq, next_index[e->split], next_seq[e->split]);
            next_index[e->split]++;
            next_seq[e->split] += e->sequences;
        }
    }
    for (size_t i = 0; i < ne; i++) free(err[i]);
    free(err);
    /* The counts manifest.json records per split and over both must be the sums over the shard files. */
    static const char *names[2] = {"train", "val"};
    const json_t *splits = json_object_get(m.j, "splits");
    int64_t sum[3][4] = {{0}};   /* [train, val, totals][sequences, tokens, shards, bytes] */
    for (size_t i = 0; i < ne && !rc; i++) {
        const entry *e = &es[i];
        int64_t v[4] = {e->sequences, e->tokens, 1, e->bytes};
        for (int k = 0; k < 4; k++) sum[e->split][k] += v[k], sum[2][k] += v[k];
    }
    for (int s = 0; s < 3 && !rc; s++) {
        static const char *keys[4] = {"sequences", "tokens", "shards", "bytes"};
        const json_t *o = s < 2 ? json_object_get(splits, names[s]) : json_object_get(m.j, "totals");
        char where[32];
        snprintf(where, sizeof where, s < 2 ? "splits.%s" : "totals", names[s < 2 ? s : 0]);
        if (!json_is_object(o)) {
            rc = scp_error("%s: '%s' is missing", m.path, where);
            break;
        }
        for (int k = 0; k < 4 && !rc; k++) rc = check_count(&m, o, where, keys[k], sum[s][k]);
        if (!rc && s < 2) rc = check_count(&m, o, where, "padding", sum[s][0] * m.seq_len - sum[s][1]);
    }
    free(es);
    manifest_free(&m);
    return rc;
}
