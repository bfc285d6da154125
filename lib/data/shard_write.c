/* data/shard_write.c: token streams -> shard set (see data/shard_write.h; layout in formats/shard_format.h, man 5 scp-shards). */
#include "data/shard_write.h"
#include "formats/shard_format.h"
#include "formats/tokstream.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/rng.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Stream tags for the generators, so that the split and the shuffles never share a random stream. */
#define TAG_VAL 0x76616c73706c6974ull      /* "valsplit" */
#define TAG_SHUFFLE 0x73687566666c6530ull  /* "shuffle0" (+ split) */

static const char *split_names[2] = {"train", "val"};

struct scp_shard_builder {
    char *dir;
    scp_shard_opts o;
    int have_ref;
    scp_tokstream_header ref;
    char *ref_name;
    uint32_t tb;                 /* shard token width (2 or 4), fixed by the first stream's vocabulary */
    char *spool_path;
    FILE *spool;
    uint8_t *conv;               /* one document in the shard width */
    size_t conv_cap;
    int32_t *ids;
    size_t ids_cap;
    uint64_t spool_bytes;
    /* Inputs read straight from their files: a regular file whose token width is the shard width is not
     * copied to the spool; its documents are gathered from a mapping of the file itself. Source 0 is the
     * spool, source k >= 1 is direct input k - 1 (a dup'ed descriptor, mapped at the end). */
    int *direct_fd;
    char **direct_name;
    uint64_t *direct_size;   /* bytes of the file the stream occupies, from its start */
    int n_direct;
    /* Documents in input order: source, byte offset of the first token in it, length in tokens. */
    uint32_t *doc_src;
    uint64_t *doc_off;
    uint32_t *doc_len;
    int64_t n_docs, docs_cap;
    uint64_t n_tokens;
    json_t *inputs;
};

scp_shard_builder *scp_shard_builder_new(const char *dir, const scp_shard_opts *o)
{
    if (o->seq_len < 1) {
        scp_error("sequence length must be positive");
        return NULL;
    }
    scp_shard_builder *b = scp_xcalloc(1, sizeof *b);
    b->dir = scp_xstrdup(dir);
    b->o = *o;
    if (b->o.threads < 1) b->o.threads = 1;
    b->spool_path = scp_path_join(dir, ".spool");
    b->spool = fopen(b->spool_path, "w+b");
    if (!b->spool) {
        scp_error("%s: cannot create: %s", b->spool_path, strerror(errno));
        scp_shard_builder_free(b);
        return NULL;
    }
    setvbuf(b->spool, NULL, _IOFBF, 4 << 20);
    b->inputs = json_array();
    return b;
}

void scp_shard_builder_free(scp_shard_builder *b)
{
    if (!b) return;
    if (b->spool) fclose(b->spool);
    if (b->spool_path) unlink(b->spool_path);
    free(b->spool_path);
    free(b->dir);
    free(b->ref_name);
    free(b->conv);
    free(b->ids);
    free(b->doc_off);
    free(b->doc_len);
    free(b->doc_src);
    for (int k = 0; k < b->n_direct; k++) {
        close(b->direct_fd[k]);
        free(b->direct_name[k]);
    }
    free(b->direct_fd);
    free(b->direct_name);
    free(b->direct_size);
    json_decref(b->inputs);
    free(b);
}

static int same_tokenizer(const scp_tokstream_header *a, const scp_tokstream_header *h)
{
    return a->tokenizer_hash == h->tokenizer_hash && a->vocab_size == h->vocab_size && a->bos_id == h->bos_id &&
           a->eos_id == h->eos_id && a->pad_id == h->pad_id;
}

int scp_shard_builder_add(scp_shard_builder *b, FILE *f, const char *name)
{
    scp_tokstream_reader r;
    struct stat st;
    off_t start = ftello(f);   /* -1 on a pipe */
    int regular = start >= 0 && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode);
    if (scp_tokstream_read_begin(&r, f, name)) {
        scp_tokstream_read_close(&r);
        return -1;
    }
    if (!b->have_ref) {
        b->ref = r.h;
        b->ref_name = scp_xstrdup(name);
        b->have_ref = 1;
        b->tb = r.h.vocab_size <= 65536 ? 2 : 4;
    } else if (!same_tokenizer(&b->ref, &r.h)) {
        scp_error("%s: made with a different tokenizer than %s (tokenizer hash %016" PRIx64 ", vocabulary %u, bos %d, "
                  "eos %d, pad %d; %s has %016" PRIx64 ", %u, %d, %d, %d): streams of different tokenizers cannot share "
                  "a shard set", name, b->ref_name, r.h.tokenizer_hash, r.h.vocab_size, r.h.bos_id, r.h.eos_id,
                  r.h.pad_id, b->ref_name, b->ref.tokenizer_hash, b->ref.vocab_size, b->ref.bos_id, b->ref.eos_id,
                  b->ref.pad_id);
        scp_tokstream_read_close(&r);
        return -1;
    }
    uint64_t docs0 = (uint64_t)b->n_docs, toks0 = b->n_tokens;
    uint32_t n, src = 0;
    int rc;
    /* Byte position in the file of the next document's length field (header: 64 bytes). */
    uint64_t pos = (uint64_t)start + 64;
    if (regular && r.h.token_bytes == b->tb) {
        int fd = dup(fileno(f));
        if (fd >= 0) {
            b->direct_fd = scp_xrealloc(b->direct_fd, sizeof *b->direct_fd * (size_t)(b->n_direct + 1));
            b->direct_size = scp_xrealloc(b->direct_size, sizeof *b->direct_size * (size_t)(b->n_direct + 1));
            b->direct_name = scp_xrealloc(b->direct_name, sizeof *b->direct_name * (size_t)(b->n_direct + 1));
            b->direct_fd[b->n_direct] = fd;
            b->direct_name[b->n_direct] = scp_xstrdup(name);
            src = (uint32_t)++b->n_direct;
        }
    }
    while ((rc = scp_tokstream_read_doc(&r, &b->ids, &b->ids_cap, &n)) == 1) {
        if (b->n_docs == b->docs_cap) {
            b->docs_cap = b->docs_cap ? b->docs_cap * 2 : 4096;
            b->doc_off = scp_xrealloc(b->doc_off, sizeof *b->doc_off * (size_t)b->docs_cap);
            b->doc_len = scp_xrealloc(b->doc_len, sizeof *b->doc_len * (size_t)b->docs_cap);
            b->doc_src = scp_xrealloc(b->doc_src, sizeof *b->doc_src * (size_t)b->docs_cap);
        }
        b->doc_src[b->n_docs] = src;
        b->doc_off[b->n_docs] = src ? pos + 4 : b->spool_bytes;
        b->doc_len[b->n_docs] = n;
        b->n_docs++;
        b->n_tokens += n;
        size_t nb = (size_t)n * b->tb;
        pos += 4 + nb;
        if (src) continue;   /* read (and checked) by the reader; gathered from the file later */
        b->spool_bytes += nb;
        if (nb > b->conv_cap) b->conv = scp_xrealloc(b->conv, b->conv_cap = nb);
        const int32_t *ids = b->ids;
        uint8_t *p = b->conv;
        /* Little-endian in the shard width; ids were range-checked by the reader. */
        if (b->tb == 2)
            for (uint32_t i = 0; i < n; i++) {
                p[2 * i] = (uint8_t)ids[i];
                p[2 * i + 1] = (uint8_t)(ids[i] >> 8);
            }
        else
            for (uint32_t i = 0; i < n; i++) scp_put32(p + 4 * i, (uint32_t)ids[i]);
        if (nb && fwrite(p, 1, nb, b->spool) != nb) {
            scp_tokstream_read_close(&r);
            return scp_error("%s: write error: %s", b->spool_path, strerror(errno));
        }
    }
    scp_tokstream_read_close(&r);
    if (rc < 0) return -1;
    if (fgetc(f) != EOF)
        return scp_error("%s: data after the end of the token stream (concatenated streams? give each as its own "
                         "argument)", name);
    if (src) b->direct_size[src - 1] = pos + 24;   /* the trailer ends the stream */
    json_t *in = json_object();
    json_object_set_new(in, "name", json_string(name));
    json_object_set_new(in, "documents", json_integer((json_int_t)((uint64_t)b->n_docs - docs0)));
    json_object_set_new(in, "tokens", json_integer((json_int_t)(b->n_tokens - toks0)));
    json_array_append_new(b->inputs, in);
    return 0;
}

/* ---- packing -------------------------------------------------------------------------------------------- */

/* One split: its documents (indices into the builder's tables, input order), and for each packed sequence
 * where it starts (document position in `docs`, offset in that document). */
typedef struct split_plan {
    int64_t *docs, n_docs;
    uint64_t n_tokens;
    int64_t n_seqs;
    int64_t *p_doc;
    uint32_t *p_off;
    int64_t *perm;                /* output position -> packed index */
    int64_t per_shard, n_shards;
} split_plan;

typedef struct shard_result {
    char *file;
    int64_t first_seq, n_seqs;
    uint64_t n_tokens, n_segments, bytes;
    uint32_t crc;                 /* CRC32 of the whole file */
    char *error;
} shard_result;

static void plan_split(const scp_shard_builder *b, const uint8_t *is_val, int split, split_plan *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->docs = scp_xmalloc(sizeof *sp->docs * (size_t)(b->n_docs ? b->n_docs : 1));
    for (int64_t d = 0; d < b->n_docs; d++)
        if (is_val[d] == split) {
            sp->docs[sp->n_docs++] = d;
            sp->n_tokens += b->doc_len[d];
        }
    uint64_t L = (uint64_t)b->o.seq_len;
    sp->n_seqs = (int64_t)((sp->n_tokens + L - 1) / L);
    sp->p_doc = scp_xmalloc(sizeof *sp->p_doc * (size_t)(sp->n_seqs + 1));
    sp->p_off = scp_xmalloc(sizeof *sp->p_off * (size_t)(sp->n_seqs + 1));
    int64_t k = 0;
    uint64_t pos = 0;   /* split offset of the current document's first token */
    for (int64_t di = 0; di < sp->n_docs && k < sp->n_seqs; di++) {
        uint64_t len = b->doc_len[sp->docs[di]];
        while (k < sp->n_seqs && (uint64_t)k * L < pos + len) {
            sp->p_doc[k] = di;
            sp->p_off[k] = (uint32_t)((uint64_t)k * L - pos);
            k++;
        }
        pos += len;
    }
    sp->perm = scp_xmalloc(sizeof *sp->perm * (size_t)(sp->n_seqs + 1));
    for (int64_t i = 0; i < sp->n_seqs; i++) sp->perm[i] = i;
    if (b->o.shuffle) {
        scp_rng r;
        scp_rng_init(&r, b->o.seed, TAG_SHUFFLE + (uint64_t)split);
        for (int64_t i = sp->n_seqs - 1; i > 0; i--) {
            int64_t j = (int64_t)scp_rng_below(&r, (uint64_t)i + 1), t = sp->perm[i];
            sp->perm[i] = sp->perm[j];
            sp->perm[j] = t;
        }
    }
    int64_t per = b->o.shard_tokens / b->o.seq_len;
    sp->per_shard = per < 1 ? 1 : per;
    sp->n_shards = (sp->n_seqs + sp->per_shard - 1) / sp->per_shard;
}

static void free_plan(split_plan *sp)
{
    free(sp->docs);
    free(sp->p_doc);
    free(sp->p_off);
    free(sp->perm);
}

typedef struct segbuf { uint8_t *p; size_t n, cap; } segbuf;

static void seg_add(segbuf *s, uint64_t doc_id, uint32_t pos, uint32_t off)
{
    if (s->n + SCP_SHARD_SEGREC > s->cap) s->p = scp_xrealloc(s->p, s->cap = s->cap ? s->cap * 2 : 1 << 16);
    scp_put64(s->p + s->n, doc_id);
    scp_put32(s->p + s->n + 8, pos);
    scp_put32(s->p + s->n + 12, off);
    s->n += SCP_SHARD_SEGREC;
}

static int put_bytes(FILE *f, const void *p, size_t n, uint32_t *crc, const char *path)
{
    *crc = scp_crc32(*crc, p, n);
    if (n && fwrite(p, 1, n, f) != n) return scp_error("%s: write error: %s", path, strerror(errno));
    return 0;
}

static int put_zeros(FILE *f, size_t n, uint32_t *crc, const char *path)
{
    static const uint8_t z[SCP_SHARD_ALIGN];
    return put_bytes(f, z, n, crc, path);
}

static int write_shard(const scp_shard_builder *b, const uint8_t *const *src, const split_plan *sp, int split,
                       int64_t k, int32_t pad_value, shard_result *res)
{
    const uint32_t L = (uint32_t)b->o.seq_len, tb = b->tb;
    int64_t first = k * sp->per_shard, n = sp->n_seqs - first < sp->per_shard ? sp->n_seqs - first : sp->per_shard;
    res->file = scp_xasprintf("%s-%05" PRId64 ".shard", split_names[split], k);
    res->first_seq = first;
    res->n_seqs = n;
    char *path = scp_path_join(b->dir, res->file);
    FILE *f = fopen(path, "wb");
    if (!f) {
        scp_error("%s: cannot create: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    int rc = 0;
    uint32_t crc = 0, hcrc0 = 0;
    uint8_t hb[SCP_SHARD_HEADER] = {0};
    if (fwrite(hb, 1, sizeof hb, f) != sizeof hb) rc = scp_error("%s: write error: %s", path, strerror(errno));
    /* Tokens in chunks of whole sequences (about 4 MB), with the sequence records and segments on the side. */
    const size_t seq_bytes = (size_t)L * tb;
    int64_t chunk = (int64_t)((4u << 20) / seq_bytes);
    if (chunk < 1) chunk = 1;
    uint8_t *buf = scp_xmalloc(seq_bytes * (size_t)chunk);
    uint8_t *recs = scp_xmalloc(SCP_SHARD_SEQREC * (size_t)(n ? n : 1));
    segbuf segs = {0};
    uint64_t ntok = 0;
    for (int64_t c0 = 0; c0 < n && !rc; c0 += chunk) {
        int64_t cn = n - c0 < chunk ? n - c0 : chunk;
        for (int64_t c = 0; c < cn; c++) {
            int64_t j = first + c0 + c, p = sp->perm[j];
            uint8_t *dst = buf + (size_t)c * seq_bytes;
            uint64_t seg0 = segs.n / SCP_SHARD_SEGREC;
            uint32_t filled = 0;
            int64_t di = sp->p_doc[p];
            uint64_t off = sp->p_off[p];
            while (filled < L && di < sp->n_docs) {
                int64_t d = sp->docs[di];
                uint64_t len = b->doc_len[d], take = len - off;
                if (take > L - filled) take = L - filled;
                if (take) {
                    seg_add(&segs, (uint64_t)d, filled, (uint32_t)off);
                    memcpy(dst + (size_t)filled * tb, src[b->doc_src[d]] + b->doc_off[d] + off * tb, take * tb);
                    filled += (uint32_t)take;
                }
                off += take;
                if (off == len) {
                    di++;
                    off = 0;
                }
            }
            for (uint32_t i = filled; i < L; i++) {
                if (tb == 2) {
                    dst[2 * i] = (uint8_t)pad_value;
                    dst[2 * i + 1] = (uint8_t)(pad_value >> 8);
                } else scp_put32(dst + 4 * i, (uint32_t)pad_value);
            }
            uint8_t *r = recs + (size_t)(c0 + c) * SCP_SHARD_SEQREC;
            scp_put64(r, (uint64_t)p);
            scp_put64(r + 8, seg0);
            scp_put32(r + 16, (uint32_t)(segs.n / SCP_SHARD_SEGREC - seg0));
            scp_put32(r + 20, filled);
            ntok += filled;
        }
        rc = put_bytes(f, buf, seq_bytes * (size_t)cn, &crc, path);
    }
    scp_shard_header h = {
        .version = SCP_SHARD_VERSION, .token_bytes = tb, .seq_len = L, .vocab_size = b->ref.vocab_size,
        .bos_id = b->ref.bos_id, .eos_id = b->ref.eos_id, .pad_id = b->ref.pad_id, .mask_id = b->ref.mask_id,
        .tokenizer_hash = b->ref.tokenizer_hash, .n_seqs = (uint64_t)n, .n_tokens = ntok,
        .n_segments = segs.n / SCP_SHARD_SEGREC, .split = (uint32_t)split, .shard_index = (uint32_t)k,
        .first_seq = (uint64_t)first, .pad_value = pad_value,
    };
    scp_shard_layout lay;
    scp_shard_layout_of(&h, &lay);
    uint64_t tok_end = SCP_SHARD_HEADER + (uint64_t)n * seq_bytes;
    if (!rc) rc = put_zeros(f, (size_t)(lay.seqs - tok_end), &crc, path);
    if (!rc) rc = put_bytes(f, recs, SCP_SHARD_SEQREC * (size_t)n, &crc, path);
    if (!rc) rc = put_zeros(f, (size_t)(lay.segments - (lay.seqs + SCP_SHARD_SEQREC * (uint64_t)n)), &crc, path);
    if (!rc) rc = put_bytes(f, segs.p, segs.n, &crc, path);
    if (!rc) {
        h.data_crc = crc;
        scp_shard_header_encode(&h, hb);
        hcrc0 = scp_crc32(0, hb, sizeof hb);
        if (fseeko(f, 0, SEEK_SET) != 0 || fwrite(hb, 1, sizeof hb, f) != sizeof hb)
            rc = scp_error("%s: write error: %s", path, strerror(errno));
    }
    if (fclose(f) != 0 && !rc) rc = scp_error("%s: write error: %s", path, strerror(errno));
    res->n_tokens = ntok;
    res->n_segments = h.n_segments;
    res->bytes = lay.size;
    res->crc = (uint32_t)crc32_combine64(hcrc0, crc, (z_off64_t)(lay.size - SCP_SHARD_HEADER));
    free(buf);
    free(recs);
    free(segs.p);
    free(path);
    return rc;
}

/* ---- split selection ------------------------------------------------------------------------------------ */

typedef struct keyed { uint64_t key; int64_t doc; } keyed;

static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->doc > y->doc) - (x->doc < y->doc);
}

/* Whole documents, in the order of a random key per document (seed, document number), until the target is
 * reached: deterministic for a seed, and independent of how the inputs were split into streams. */
static int choose_val(const scp_shard_builder *b, uint8_t *is_val)
{
    uint64_t target = b->o.val_tokens > 0 ? (uint64_t)b->o.val_tokens : 0;
    if (b->o.val_fraction > 0) {
        double t = b->o.val_fraction * (double)b->n_tokens;
        target = (uint64_t)t + ((double)(uint64_t)t < t);   /* ceil: any positive fraction holds out something */
    }
    if (!target) return 0;
    if (target >= b->n_tokens)
        return scp_error("the validation split would take all %" PRIu64 " tokens (asked for %" PRIu64 ")", b->n_tokens, target);
    keyed *k = scp_xmalloc(sizeof *k * (size_t)b->n_docs);
    for (int64_t d = 0; d < b->n_docs; d++) k[d] = (keyed){scp_mix3(b->o.seed, TAG_VAL, (uint64_t)d), d};
    qsort(k, (size_t)b->n_docs, sizeof *k, cmp_keyed);
    uint64_t got = 0;
    for (int64_t i = 0; i < b->n_docs && got < target; i++) {
        is_val[k[i].doc] = 1;
        got += b->doc_len[k[i].doc];
    }
    free(k);
    if (got >= b->n_tokens)
        return scp_error("the validation split would take every document (%" PRIu64 " tokens asked, the documents "
                         "are too few or too long): lower --val-fraction/--val-tokens", target);
    return 0;
}

/* ---- manifest ------------------------------------------------------------------------------------------- */

static json_t *jint(int64_t v) { return json_integer((json_int_t)v); }

static int write_manifest(const scp_shard_builder *b, const split_plan sp[2], const shard_result *res,
                          int32_t pad_value)
{
    json_t *m = json_object();
    char hex[32];
    json_object_set_new(m, "format", json_string("scp-shards"));
    json_object_set_new(m, "version", jint(SCP_SHARD_VERSION));
    json_object_set_new(m, "seq_len", jint(b->o.seq_len));
    json_object_set_new(m, "token_bytes", jint(b->tb));
    json_object_set_new(m, "vocab_size", jint(b->ref.vocab_size));
    snprintf(hex, sizeof hex, "%016" PRIx64, b->ref.tokenizer_hash);
    json_object_set_new(m, "tokenizer_hash", json_string(hex));
    json_object_set_new(m, "bos_id", jint(b->ref.bos_id));
    json_object_set_new(m, "eos_id", jint(b->ref.eos_id));
    json_object_set_new(m, "pad_id", jint(b->ref.pad_id));
    json_object_set_new(m, "mask_id", jint(b->ref.mask_id));
    json_object_set_new(m, "pad_value", jint(pad_value));
    json_object_set_new(m, "stream_flags", jint(b->ref.flags));
    json_t *o = json_object();
    json_object_set_new(o, "seq_len", jint(b->o.seq_len));
    json_object_set_new(o, "shard_tokens", jint(b->o.shard_tokens));
    json_object_set_new(o, "seed", jint((int64_t)b->o.seed));
    json_object_set_new(o, "shuffle", json_boolean(b->o.shuffle));
    json_object_set_new(o, "val_fraction", json_real(b->o.val_fraction));
    json_object_set_new(o, "val_tokens", jint(b->o.val_tokens));
    json_object_set_new(m, "options", o);
    json_object_set_new(m, "inputs", json_incref(b->inputs));
    json_t *splits = json_object(), *shards = json_array();
    int64_t tot_seqs = 0, tot_shards = 0;
    uint64_t tot_bytes = 0;
    int64_t r = 0;
    for (int s = 0; s < 2; s++) {
        json_t *js = json_object();
        uint64_t bytes = 0;
        for (int64_t k = 0; k < sp[s].n_shards; k++, r++) {
            json_t *e = json_object();
            json_object_set_new(e, "file", json_string(res[r].file));
            json_object_set_new(e, "split", json_string(split_names[s]));
            json_object_set_new(e, "index", jint(k));
            json_object_set_new(e, "first_seq", jint(res[r].first_seq));
            json_object_set_new(e, "sequences", jint(res[r].n_seqs));
            json_object_set_new(e, "tokens", jint((int64_t)res[r].n_tokens));
            json_object_set_new(e, "segments", jint((int64_t)res[r].n_segments));
            json_object_set_new(e, "bytes", jint((int64_t)res[r].bytes));
            snprintf(hex, sizeof hex, "%08" PRIx32, res[r].crc);
            json_object_set_new(e, "crc32", json_string(hex));
            json_array_append_new(shards, e);
            bytes += res[r].bytes;
        }
        json_object_set_new(js, "documents", jint(sp[s].n_docs));
        json_object_set_new(js, "tokens", jint((int64_t)sp[s].n_tokens));
        json_object_set_new(js, "sequences", jint(sp[s].n_seqs));
        json_object_set_new(js, "padding", jint(sp[s].n_seqs * b->o.seq_len - (int64_t)sp[s].n_tokens));
        json_object_set_new(js, "shards", jint(sp[s].n_shards));
        json_object_set_new(js, "bytes", jint((int64_t)bytes));
        json_object_set_new(splits, split_names[s], js);
        tot_seqs += sp[s].n_seqs;
        tot_shards += sp[s].n_shards;
        tot_bytes += bytes;
    }
    json_object_set_new(m, "splits", splits);
    json_t *t = json_object();
    json_object_set_new(t, "documents", jint(b->n_docs));
    json_object_set_new(t, "tokens", jint((int64_t)b->n_tokens));
    json_object_set_new(t, "sequences", jint(tot_seqs));
    json_object_set_new(t, "shards", jint(tot_shards));
    json_object_set_new(t, "bytes", jint((int64_t)tot_bytes));
    json_object_set_new(m, "totals", t);
    json_object_set_new(m, "shards", shards);
    char *path = scp_path_join(b->dir, "manifest.json");
    int rc = scp_json_save(path, m);
    free(path);
    json_decref(m);
    return rc;
}

int scp_shard_builder_finish(scp_shard_builder *b)
{
    if (!b->have_ref) return scp_error("no input streams");
    if (b->n_tokens == 0) return scp_error("the input streams hold no tokens");
    if (fflush(b->spool) != 0) return scp_error("%s: write error: %s", b->spool_path, strerror(errno));
    fclose(b->spool);
    b->spool = NULL;
    scp_map spool;
    if (scp_map_file(&spool, b->spool_path)) return -1;
    unlink(b->spool_path);   /* the mapping keeps it alive; nothing is left behind in the output */
    if (spool.size != b->spool_bytes) {
        scp_unmap(&spool);
        return scp_error("%s: spool has %zu bytes, expected %" PRIu64, b->spool_path, spool.size, b->spool_bytes);
    }
    /* src[0]: the spool; src[k]: direct input k - 1, mapped whole (it must still be as long as when read). */
    const uint8_t **src = scp_xcalloc((size_t)b->n_direct + 1, sizeof *src);
    src[0] = spool.data;
    int rc = 0;
    for (int k = 0; k < b->n_direct && !rc; k++) {
        struct stat st;
        if (fstat(b->direct_fd[k], &st) != 0 || (uint64_t)st.st_size < b->direct_size[k]) {
            rc = scp_error("%s: changed size while it was being sharded", b->direct_name[k]);
            break;
        }
        void *m = mmap(NULL, (size_t)b->direct_size[k], PROT_READ, MAP_PRIVATE, b->direct_fd[k], 0);
        if (m == MAP_FAILED) rc = scp_error("%s: cannot map: %s", b->direct_name[k], strerror(errno));
        else src[k + 1] = m;
    }
    int32_t pad_value = b->ref.pad_id >= 0 ? b->ref.pad_id : b->ref.eos_id >= 0 ? b->ref.eos_id : 0;
    uint8_t *is_val = scp_xcalloc((size_t)b->n_docs, 1);
    if (!rc) rc = choose_val(b, is_val);
    split_plan sp[2];
    memset(sp, 0, sizeof sp);
    int64_t njobs = 0;
    if (!rc) {
        for (int s = 0; s < 2; s++) plan_split(b, is_val, s, &sp[s]);
        njobs = sp[0].n_shards + sp[1].n_shards;
    }
    shard_result *res = scp_xcalloc((size_t)(njobs ? njobs : 1), sizeof *res);
    scp_progress pr;
    scp_progress_init(&pr, b->o.progress ? njobs : 0);
    if (!b->o.progress) pr.enabled = 0;
    int64_t done = 0;
    if (!rc) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(b->o.threads)
        for (int64_t j = 0; j < njobs; j++) {
            int s = j < sp[0].n_shards ? 0 : 1;
            int64_t k = s ? j - sp[0].n_shards : j;
            if (write_shard(b, src, &sp[s], s, k, pad_value, &res[j])) res[j].error = scp_xstrdup(scp_last_error());
#pragma omp critical
            scp_progress_update(&pr, ++done, "shards");
        }
        scp_progress_end(&pr);
        for (int64_t j = 0; j < njobs && !rc; j++)
            if (res[j].error) rc = scp_error("%s", res[j].error);
    }
    if (!rc) rc = write_manifest(b, sp, res, pad_value);
    for (int64_t j = 0; j < njobs; j++) {
        free(res[j].file);
        free(res[j].error);
    }
    free(res);
    for (int s = 0; s < 2; s++) free_plan(&sp[s]);
    free(is_val);
    for (int k = 0; k < b->n_direct; k++)
        if (src[k + 1]) munmap((void *)src[k + 1], (size_t)b->direct_size[k]);
    free(src);
    scp_unmap(&spool);
    return rc;
}
