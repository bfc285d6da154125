/* unit-shard.c: shard sets through the library: every token of every document comes back in order with its
 * boundaries (sequences re-ordered by their packed index), the train and val splits are disjoint by document
 * and cover them all, the bytes do not depend on the thread count, headers are checked against the manifest,
 * and corrupt or truncated shards are refused with a message naming the file, never a crash. */
#include "../tap.h"

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "core/rng.h"
#include "data/shard.h"
#include "data/shard_write.h"
#include "formats/shard_format.h"
#include "formats/tokstream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[256];

/* The documents of the test corpus: lengths 0..400 (some longer than seq_len, a few empty), ids in [4, V). */
enum { NDOC = 300, V = 5000, L = 96 };
static int32_t *doc_tok[NDOC];
static uint32_t doc_len[NDOC];

static void make_docs(void)
{
    scp_rng r;
    scp_rng_init(&r, 99, 0);
    for (int d = 0; d < NDOC; d++) {
        doc_len[d] = d % 37 == 5 ? 0 : 1 + (uint32_t)scp_rng_below(&r, d % 10 == 0 ? 400 : 120);
        doc_tok[d] = malloc(sizeof(int32_t) * (doc_len[d] + 1));
        for (uint32_t i = 0; i < doc_len[d]; i++) doc_tok[d][i] = 4 + (int32_t)scp_rng_below(&r, V - 4);
        if (doc_len[d]) doc_tok[d][0] = 1, doc_tok[d][doc_len[d] - 1] = 2;   /* BOS ... EOS */
    }
}

/* Documents [d0, d1) as a token stream file (token width tb: 0 for the writer's choice, 2 here). */
static char *write_stream_tb(const char *name, int d0, int d1, uint64_t hash, uint32_t tb)
{
    char *path = scp_path_join(tmp, name);
    FILE *f = fopen(path, "wb");
    scp_tokstream_header h = {.token_bytes = tb, .vocab_size = V, .bos_id = 1, .eos_id = 2, .pad_id = 3, .mask_id = -1, .tokenizer_hash = hash, .flags = 3};
    scp_tokstream_writer w;
    scp_tokstream_write_begin(&w, f, path, &h);
    for (int d = d0; d < d1; d++) scp_tokstream_write_doc(&w, doc_tok[d], doc_len[d]);
    scp_tokstream_write_end(&w);
    fclose(f);
    return path;
}

static char *write_stream(const char *name, int d0, int d1, uint64_t hash) { return write_stream_tb(name, d0, d1, hash, 0); }

/* Inputs named "|PATH" are read through a pipe (the spool path); others as files (mapped directly when
 * their token width is the shard width). */
static int build(const char *out, char **inputs, int n, scp_shard_opts o)
{
    char *t = scp_dir_begin(out);
    scp_shard_builder *b = scp_shard_builder_new(t, &o);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (inputs[i][0] == '|') {
            char *cmd = scp_xasprintf("cat '%s'", inputs[i] + 1);
            FILE *f = popen(cmd, "r");
            rc = scp_shard_builder_add(b, f, inputs[i] + 1);
            pclose(f);
            free(cmd);
            continue;
        }
        FILE *f = fopen(inputs[i], "rb");
        rc = scp_shard_builder_add(b, f, inputs[i]);
        fclose(f);
    }
    if (!rc) rc = scp_shard_builder_finish(b);
    scp_shard_builder_free(b);
    if (!rc) rc = scp_dir_commit(t, out, 1);
    else scp_rm_rf(t);
    free(t);
    return rc;
}

typedef struct seqv { int64_t packed, i; } seqv;
static int cmp_seqv(const void *a, const void *b)
{
    const seqv *x = a, *y = b;
    return (x->packed > y->packed) - (x->packed < y->packed);
}

/* Read a split back in packing order; check it against the documents. Marks seen[d] += 1 for each document
 * whose tokens were found complete and in order. Returns 0 when everything agrees. */
static int read_back(const char *dir, const char *split, int *seen, int64_t *tokens_out)
{
    scp_shardset *s = scp_shardset_open(dir, split);
    if (!s) {
        tap_diag("open %s: %s", split, scp_last_error());
        return -1;
    }
    int64_t n = scp_shardset_num_seqs(s);
    seqv *order = malloc(sizeof *order * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        order[i].i = i;
        if (scp_shardset_seq_info(s, i, &order[i].packed, NULL, NULL) < 0) return -1;
    }
    qsort(order, (size_t)n, sizeof *order, cmp_seqv);
    int32_t tok[L], doc[L];
    scp_doc_segment segs[L];
    int bad = 0;
    int64_t cur = -1, pos = 0, ntok = 0;   /* the document being read and how far */
    for (int64_t k = 0; k < n && !bad; k++) {
        if (order[k].packed != k) bad = 1, tap_diag("%s: packed indices are not 0..n-1", split);
        int nv, ns = scp_shardset_seq_info(s, order[k].i, NULL, &nv, segs);
        if (ns < 0 || scp_shardset_get(s, order[k].i, tok, doc)) {
            tap_diag("%s", scp_last_error());
            bad = 1;
            break;
        }
        ntok += nv;
        for (int g = 0; g < ns && !bad; g++) {
            int a = segs[g].pos, b = g + 1 < ns ? segs[g + 1].pos : nv;
            int64_t d = segs[g].doc_id;
            if (d < 0 || d >= NDOC) { bad = 1; break; }
            if (segs[g].doc_offset == 0) {
                if (cur >= 0 && pos != doc_len[cur]) bad = 1, tap_diag("document %lld cut short", (long long)cur);
                cur = d;
                pos = 0;
            } else if (d != cur || segs[g].doc_offset != pos) {
                bad = 1;
                tap_diag("sequence %lld: segment %d continues document %lld at %lld, expected %lld at %lld", (long long)k, g,
                         (long long)d, (long long)segs[g].doc_offset, (long long)cur, (long long)pos);
            }
            for (int j = a; j < b && !bad; j++) {
                if (doc[j] != g) bad = 1, tap_diag("doc[] disagrees with the segments");
                if (pos >= doc_len[d] || tok[j] != doc_tok[d][pos]) bad = 1, tap_diag("document %lld token %lld differs", (long long)d, (long long)pos);
                pos++;
            }
            if (!bad && pos == doc_len[d]) seen[d]++;
        }
        for (int j = nv; j < L && !bad; j++)
            if (doc[j] != -1 || tok[j] != scp_shardset_pad_id(s)) bad = 1, tap_diag("padding is not pad id with doc -1");
    }
    free(order);
    *tokens_out = ntok;
    scp_shardset_close(s);
    return bad ? -1 : 0;
}

static int same_files(const char *a, const char *b)
{
    char *ma = scp_path_join(a, "manifest.json");
    json_t *m = scp_json_load(ma);
    free(ma);
    if (!m) return 0;
    int same = 1;
    json_t *sh = json_object_get(m, "shards");
    for (size_t i = 0; i <= json_array_size(sh) && same; i++) {
        const char *name = i < json_array_size(sh) ? json_string_value(json_object_get(json_array_get(sh, i), "file")) : "manifest.json";
        char *pa = scp_path_join(a, name), *pb = scp_path_join(b, name);
        scp_map x, y;
        if (scp_map_file(&x, pa) || scp_map_file(&y, pb)) same = 0;
        else same = x.size == y.size && memcmp(x.data, y.data, x.size) == 0;
        scp_unmap(&x);
        scp_unmap(&y);
        free(pa);
        free(pb);
    }
    json_decref(m);
    return same;
}

/* The shard files only (the manifest names the inputs). */
static int same_shards(const char *a, const char *b)
{
    char *ma = scp_path_join(a, "manifest.json");
    json_t *m = scp_json_load(ma);
    free(ma);
    json_t *sh = json_object_get(m, "shards");
    int same = m != NULL;
    for (size_t i = 0; i < json_array_size(sh) && same; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(sh, i), "file"));
        char *pa = scp_path_join(a, name), *pb = scp_path_join(b, name);
        scp_map x, y;
        if (scp_map_file(&x, pa) || scp_map_file(&y, pb)) same = 0;
        else same = x.size == y.size && memcmp(x.data, y.data, x.size) == 0;
        scp_unmap(&x);
        scp_unmap(&y);
        free(pa);
        free(pb);
    }
    json_decref(m);
    return same;
}

static void flip_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
}

/* The first sequence and sequence count of shard `file` within its split, from manifest.json. */
static void shard_range(const char *dir, const char *file, int64_t *first, int64_t *n)
{
    char *mp = scp_path_join(dir, "manifest.json");
    json_t *m = scp_json_load(mp);
    json_t *sh = json_object_get(m, "shards");
    *first = *n = -1;
    for (size_t i = 0; i < json_array_size(sh); i++) {
        json_t *e = json_array_get(sh, i);
        if (strcmp(json_string_value(json_object_get(e, "file")), file) != 0) continue;
        *first = json_integer_value(json_object_get(e, "first_seq"));
        *n = json_integer_value(json_object_get(e, "sequences"));
    }
    json_decref(m);
    free(mp);
}

/* Read sequences [first, first + n) of a split on several threads at once; returns how many reads failed and
 * checks that each failure names `file` and says "CRC mismatch" (*named counts those). */
static int64_t read_range(scp_shardset *s, int64_t first, int64_t n, const char *file, int64_t *named)
{
    int64_t failed = 0, good_msgs = 0;
#pragma omp parallel for reduction(+ : failed, good_msgs) num_threads(4)
    for (int64_t i = first; i < first + n; i++) {
        int32_t tok[L], doc[L];
        if (scp_shardset_get(s, i, tok, doc) == 0) continue;
        failed++;
        good_msgs += strstr(scp_last_error(), file) && strstr(scp_last_error(), "CRC mismatch");
    }
    *named = good_msgs;
    return failed;
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "%s/scp-unit-shard.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) tap_skip_all("cannot make a temporary directory");
    make_docs();
    int64_t total = 0;
    for (int d = 0; d < NDOC; d++) total += doc_len[d];
    char *in[2] = {write_stream("a.tok", 0, 170, 0xabcdef), write_stream("b.tok", 170, NDOC, 0xabcdef)};
    char *set = scp_path_join(tmp, "set"), *set2 = scp_path_join(tmp, "set2"), *set3 = scp_path_join(tmp, "set3");
    scp_shard_opts o = {.seq_len = L, .shard_tokens = 1000, .seed = 5, .shuffle = 1, .val_fraction = 0.15, .threads = 1};
    int rc = build(set, in, 2, o);
    tap_ok(rc == 0, "build a shard set from two streams%s%s", rc ? ": " : "", rc ? scp_last_error() : "");

    int seen[NDOC] = {0};
    int64_t ttok = 0, vtok = 0;
    tap_ok(read_back(set, "train", seen, &ttok) == 0, "train: every token of every document in order, with boundaries and padding");
    tap_ok(read_back(set, "val", seen, &vtok) == 0, "val: the same");
    int once = 1, nonempty = 0;
    for (int d = 0; d < NDOC; d++) {
        if (doc_len[d]) once &= seen[d] == 1, nonempty++;
        else once &= seen[d] == 0;
    }
    tap_ok(once, "each of the %d non-empty documents is found whole in exactly one split (disjoint, complete)", nonempty);
    tap_ok(ttok + vtok == total && vtok >= (int64_t)(0.15 * total) && vtok < total / 2,
           "token counts: train %lld + val %lld = %lld; val holds at least 15%%", (long long)ttok, (long long)vtok, (long long)total);

    o.threads = 4;
    tap_ok(build(set2, in, 2, o) == 0 && same_files(set, set2), "4 writer threads give the same bytes as 1");
    /* The same documents through a pipe (spooled) and as a stream of 4-byte tokens (spooled, narrowed): the
     * same shards as from the files read in place. */
    char *b4 = write_stream_tb("b4.tok", 170, NDOC, 0xabcdef, 4);
    char *piped = scp_xasprintf("|%s", in[0]);
    char *mixed_in[2] = {piped, b4};
    o.threads = 2;
    tap_ok(build(set3, mixed_in, 2, o) == 0 && same_shards(set, set3), "a pipe and a 4-byte stream give the same shards as the files");
    free(b4);
    free(piped);
    o.seed = 6;
    tap_ok(build(set3, in, 2, o) == 0 && !same_files(set, set3), "another seed gives other bytes");
    int seen2[NDOC] = {0};
    int64_t t2 = 0;
    tap_ok(read_back(set3, "train", seen2, &t2) == 0 && read_back(set3, "val", seen2, &t2) == 0, "and reads back whole too");
    o.seed = 5;
    o.val_fraction = 0;
    o.val_tokens = 2000;
    tap_ok(build(set3, in, 2, o) == 0, "--val-tokens 2000");
    scp_shardset *v = scp_shardset_open(set3, "val");
    tap_ok(v && scp_shardset_num_tokens(v) >= 2000 && scp_shardset_num_tokens(v) < 2000 + 400,
           "val holds at least 2000 tokens, by whole documents (%lld)", v ? (long long)scp_shardset_num_tokens(v) : -1LL);
    scp_shardset_close(v);
    o.val_tokens = 0;
    o.shuffle = 0;
    tap_ok(build(set3, in, 2, o) == 0, "no validation split, no shuffle");
    scp_shardset *tr = scp_shardset_open(set3, "train");
    int64_t p5 = -1;
    tap_ok(tr && scp_shardset_seq_info(tr, 5, &p5, NULL, NULL) >= 0 && p5 == 5, "without shuffle, sequence i is packed sequence i");
    tap_ok(tr && scp_shardset_num_tokens(tr) == total && scp_shardset_seq_len(tr) == L && scp_shardset_vocab_size(tr) == V &&
           scp_shardset_tokenizer_hash(tr) == 0xabcdef && scp_shardset_bos_id(tr) == 1 && scp_shardset_eos_id(tr) == 2 &&
           scp_shardset_pad_id(tr) == 3 && scp_shardset_token_bytes(tr) == 2, "accessors");
    scp_shardset_close(tr);
    v = scp_shardset_open(set3, "val");
    tap_ok(!v && strstr(scp_last_error(), "no val sequences"), "no val split refused: %s", scp_last_error());
    tap_ok(scp_shardset_has_split(set3, "val") == 0 && scp_shardset_has_split(set3, "train") == 1, "and told apart by scp_shardset_has_split");

    /* A stream of another tokenizer is refused, naming both files. */
    char *c = write_stream("c.tok", 0, 10, 0x999);
    char *mixed[2] = {in[0], c};
    tap_ok(build(set3, mixed, 2, o) != 0 && strstr(scp_last_error(), "c.tok") && strstr(scp_last_error(), "a.tok") &&
           strstr(scp_last_error(), "different tokenizer"), "different tokenizer hashes refused: %s", scp_last_error());

    /* Corruption: set2 is a copy of set to damage. */
    tap_ok(scp_shardset_verify(set2) == 0, "verify a good set: %s", scp_shardset_verify(set2) ? scp_last_error() : "ok");
    char *s3 = scp_path_join(set2, "train-00003.shard");
    long sz = file_size(s3);
    flip_byte(s3, 128 + 50);
    tap_ok(scp_shardset_verify(set2) != 0 && strstr(scp_last_error(), "train-00003.shard"), "a flipped token byte: %s", scp_last_error());
    /* The same flip seen by a reader: open is cheap and succeeds (headers only), the first read of the damaged
     * shard fails naming it (from every thread that reads it), the other shards read normally. */
    scp_shardset *rd = scp_shardset_open(set2, "train");
    int64_t f3, n3, f0, n0, named = 0;
    shard_range(set2, "train-00003.shard", &f3, &n3);
    shard_range(set2, "train-00000.shard", &f0, &n0);
    tap_ok(rd != NULL, "a flipped token byte: open still succeeds (CRCs are checked on first read)");
    if (rd) {
        int64_t bad = read_range(rd, f3, n3, "train-00003.shard", &named);
        tap_ok(n3 > 0 && bad == n3 && named == n3, "every read of the damaged shard fails naming it with 'CRC mismatch' (%lld of %lld, 4 threads): %s",
               (long long)bad, (long long)n3, scp_last_error());
        int64_t pk;
        tap_ok(scp_shardset_seq_info(rd, f3, &pk, NULL, NULL) < 0 && strstr(scp_last_error(), "train-00003.shard: CRC mismatch"),
               "and so does its sequence table: %s", scp_last_error());
        tap_ok(read_range(rd, f0, n0, "-", &named) == 0, "another shard of the same set reads normally");
        scp_shardset_close(rd);
    }
    flip_byte(s3, 128 + 50);
    tap_ok(scp_shardset_verify(set2) == 0, "flipped back: good again");
    rd = scp_shardset_open(set2, "train");
    tap_ok(rd && read_range(rd, 0, scp_shardset_num_seqs(rd), "-", &named) == 0, "and reads back on every thread");
    scp_shardset_close(rd);
    /* A shard whose bytes agree with its header but not with the manifest's CRC32 (a shard of another set). */
    char *mp0 = scp_path_join(set2, "manifest.json");
    json_t *mj = scp_json_load(mp0);
    json_t *e3 = json_array_get(json_object_get(mj, "shards"), 3);
    char crc_hex[16];
    snprintf(crc_hex, sizeof crc_hex, "%s", json_string_value(json_object_get(e3, "crc32")));
    json_object_set_new(e3, "crc32", json_string("12345678"));
    scp_json_save(mp0, mj);
    rd = scp_shardset_open(set2, "train");
    tap_ok(rd && scp_shardset_get(rd, f3, (int32_t[L]){0}, NULL) < 0 &&
               strstr(scp_last_error(), "train-00003.shard: CRC mismatch") && strstr(scp_last_error(), "manifest.json says 12345678"),
           "a CRC32 that disagrees with manifest.json: refused on first read: %s", scp_last_error());
    scp_shardset_close(rd);
    tap_ok(scp_shardset_verify(set2) != 0 && strstr(scp_last_error(), "train-00003.shard: CRC mismatch"), "and by verify: %s", scp_last_error());
    json_object_set_new(e3, "crc32", json_string(crc_hex));
    scp_json_save(mp0, mj);
    json_decref(mj);
    free(mp0);
    tap_ok(scp_shardset_verify(set2) == 0, "restored");
    /* The sizes manifest.json records, one at a time. */
    static const struct { int index; const char *key, *named; int at_open; } sizes[] = {
        {3, "bytes", "train-00003.shard: the file has", 1},
        {3, "segments", "train-00003.shard: header says segments", 1},
        {3, "sequences", "train-00003.shard: header says sequences", 1},
        {3, "tokens", "train-00003.shard: header says tokens", 1},
        {-1, "splits.train.bytes", "splits.train.bytes is", 0},
        {-1, "splits.val.sequences", "splits.val.sequences is", 0},
        {-1, "splits.train.padding", "splits.train.padding is", 0},
        {-1, "totals.tokens", "totals.tokens is", 0},
        {-1, "totals.shards", "totals.shards is", 0},
    };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        const char *key = sizes[k].key;
        char path[64];
        if (sizes[k].index < 0) {   /* splits.train.bytes: object "splits.train", key "bytes" */
            const char *dot = strrchr(key, '.');
            snprintf(path, sizeof path, "%.*s", (int)(dot - key), key);
            key = dot + 1;
        }
        char *mpk = scp_path_join(set2, "manifest.json");
        json_t *mk = scp_json_load(mpk);
        json_t *o = sizes[k].index >= 0 ? json_array_get(json_object_get(mk, "shards"), (size_t)sizes[k].index)
                                        : strchr(path, '.') ? json_object_get(json_object_get(mk, "splits"), strchr(path, '.') + 1)
                                                            : json_object_get(mk, path);
        json_int_t was = json_integer_value(json_object_get(o, key));
        json_object_set_new(o, key, json_integer(was + 1));
        scp_json_save(mpk, mk);
        int vr = scp_shardset_verify(set2);
        tap_ok(vr != 0 && strstr(scp_last_error(), sizes[k].named), "%s one too large: verify names it: %s", sizes[k].key, scp_last_error());
        if (sizes[k].at_open) {
            scp_shardset *so = scp_shardset_open(set2, "train");
            tap_ok(!so && strstr(scp_last_error(), sizes[k].named), "and open refuses it: %s", scp_last_error());
            scp_shardset_close(so);
        }
        json_object_set_new(o, key, json_integer(was));
        scp_json_save(mpk, mk);
        json_decref(mk);
        free(mpk);
    }
    tap_ok(scp_shardset_verify(set2) == 0, "restored");
    /* A val shard listed in the manifest but missing: named, not taken for a set without a val split. */
    char *v0 = scp_path_join(set2, "val-00000.shard"), *v0x = scp_path_join(set2, "val-00000.shard.away");
    tap_ok(rename(v0, v0x) == 0 && scp_shardset_has_split(set2, "val") == 1 && !scp_shardset_open(set2, "val") &&
           strstr(scp_last_error(), "val-00000.shard"), "a missing val shard: the split is listed, open names the file: %s", scp_last_error());
    tap_ok(scp_shardset_verify(set2) != 0 && strstr(scp_last_error(), "val-00000.shard"), "and verify names it: %s", scp_last_error());
    rename(v0x, v0);
    free(v0), free(v0x);
    tap_ok(scp_shardset_has_split(set2, "train") == 1 && scp_shardset_has_split(set2, "val") == 1 && scp_shardset_has_split(set2, "test") < 0 &&
           scp_shardset_has_split(tmp, "val") < 0 && strstr(scp_last_error(), "no manifest.json"), "scp_shardset_has_split");
    flip_byte(s3, sz - 3);
    tap_ok(scp_shardset_verify(set2) != 0 && strstr(scp_last_error(), "train-00003.shard"), "a flipped segment byte: %s", scp_last_error());
    flip_byte(s3, sz - 3);
    flip_byte(s3, 20);
    tap_ok(!scp_shardset_open(set2, "train") && strstr(scp_last_error(), "train-00003.shard"), "a flipped header byte refused at open: %s", scp_last_error());
    flip_byte(s3, 20);
    tap_ok(truncate(s3, sz - 7) == 0 && !scp_shardset_open(set2, "train") && strstr(scp_last_error(), "truncated") &&
           strstr(scp_last_error(), "train-00003.shard"), "a truncated shard refused at open: %s", scp_last_error());
    tap_ok(scp_shardset_verify(set2) != 0 && strstr(scp_last_error(), "train-00003.shard"), "and by verify");
    tap_ok(truncate(s3, 60) == 0 && !scp_shardset_open(set2, "train") && strstr(scp_last_error(), "truncated"), "a shard cut inside its header");
    /* Random damage everywhere: open may refuse, reads may refuse, but never crash (ASan/UBSan run this too). */
    build(set2, in, 2, (scp_shard_opts){.seq_len = L, .shard_tokens = 1000, .seed = 5, .shuffle = 1, .val_fraction = 0.15, .threads = 1});
    char *s0 = scp_path_join(set2, "train-00000.shard");
    long sz0 = file_size(s0);
    scp_rng r;
    scp_rng_init(&r, 1, 2);
    int refused = 0, detected = 0, read_caught = 0, trials = 300;
    int32_t tok[L], doc[L];
    for (int k = 0; k < trials; k++) {
        long off = (long)scp_rng_below(&r, (uint64_t)sz0);
        flip_byte(s0, off);
        scp_shardset *s = scp_shardset_open(set2, "train");
        if (!s) refused++, read_caught++;
        else {
            int failed = 0;
            for (int64_t i = 0; i < scp_shardset_num_seqs(s); i++) failed |= scp_shardset_get(s, i, tok, doc) != 0;
            read_caught += failed;
            scp_shardset_close(s);
        }
        detected += scp_shardset_verify(set2) != 0;
        flip_byte(s0, off);
    }
    tap_ok(detected == trials, "verify detects %d of %d random single-byte flips (%d refused at open; no crash)", detected, trials, refused);
    tap_ok(read_caught == trials, "reading the set catches %d of them too (at open or on the first read of the shard)", read_caught);
    /* The manifest is checked too. */
    char *mp = scp_path_join(set2, "manifest.json");
    json_t *m = scp_json_load(mp);
    json_object_set_new(m, "seq_len", json_integer(L + 1));
    scp_json_save(mp, m);
    json_decref(m);
    tap_ok(!scp_shardset_open(set2, "train") && strstr(scp_last_error(), "seq_len"), "header vs manifest: %s", scp_last_error());
    tap_ok(!scp_shardset_open(tmp, "train") && strstr(scp_last_error(), "no manifest.json"), "not a shard set: %s", scp_last_error());

    /* A header whose vocabulary passes INT32_MAX: its 4-byte ids would read as negative int32_t. */
    scp_shard_header hh = {.version = SCP_SHARD_VERSION, .token_bytes = 4, .seq_len = L, .vocab_size = 0x80000000u,
                           .bos_id = -1, .eos_id = -1, .pad_id = -1, .mask_id = -1};
    uint8_t hb[SCP_SHARD_HEADER];
    scp_shard_header_encode(&hh, hb);
    tap_ok(scp_shard_header_decode(&hh, hb, sizeof hb, "big.shard") == -1 &&
           strstr(scp_last_error(), "big.shard: vocabulary size 2147483648 is invalid"),
           "a shard header with a vocabulary of 2^31 tokens is refused: %s", scp_last_error());
    scp_rm_rf(tmp);
    for (int d = 0; d < NDOC; d++) free(doc_tok[d]);
    free(in[0]), free(in[1]), free(c), free(set), free(set2), free(set3), free(s3), free(s0), free(mp);
    return tap_done();
}
