/* unit-remask.c: the masked-example writer of scp-remask (lib/data/remask.c) on a shard set built here: the file
 * is the same bytes, and the statistics the same figures, for 1, 2 and 4 threads over many batches of blocks;
 * read back (formats/masked_examples.c) every record is its sequence with exactly the masked positions replaced
 * and the trailer's totals are the statistics; example i does not depend on how many are asked for; a mask id
 * found in the data or a full disk stops the run with the same message for any thread count. */
#include "../tap.h"

#include "core/error.h"
#include "core/io.h"
#include "core/rng.h"
#include "data/remask.h"
#include "data/shard_write.h"
#include "formats/tokstream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmp[256];
/* About 38 000 sequences of 128: some 20 blocks of 1900 records (552 bytes each), so that 4 threads (8 blocks a
 * batch) go through three batches. */
enum { NDOC = 24000, V = 3000, L = 128, MASK = 3000 };

static char *make_shards(void)
{
    char *stream = scp_path_join(tmp, "docs.tok");
    FILE *f = fopen(stream, "wb");
    scp_tokstream_header h = {.vocab_size = V, .bos_id = 1, .eos_id = 2, .pad_id = 3, .mask_id = -1,
                              .tokenizer_hash = 0x77, .flags = 3};
    scp_tokstream_writer w;
    scp_tokstream_write_begin(&w, f, stream, &h);
    scp_rng r;
    scp_rng_init(&r, 5, 0);
    int32_t doc[400];
    for (int d = 0; d < NDOC; d++) {
        uint32_t n = 2 + (uint32_t)scp_rng_below(&r, 398);
        for (uint32_t i = 0; i < n; i++) doc[i] = 4 + (int32_t)scp_rng_below(&r, V - 4);
        doc[0] = 1;
        doc[n - 1] = 2;
        scp_tokstream_write_doc(&w, doc, n);
    }
    scp_tokstream_write_end(&w);
    fclose(f);
    char *dir = scp_path_join(tmp, "set");
    scp_shard_opts o = {.seq_len = L, .shard_tokens = 1000000, .seed = 1, .shuffle = 1, .threads = 2};
    scp_mkdir_p(dir);
    scp_shard_builder *b = scp_shard_builder_new(dir, &o);
    f = fopen(stream, "rb");
    int rc = !b || scp_shard_builder_add(b, f, stream) || scp_shard_builder_finish(b);
    fclose(f);
    scp_shard_builder_free(b);
    free(stream);
    if (rc) {
        free(dir);
        return NULL;
    }
    return dir;
}

static int write_examples(const scp_shardset *set, scp_remask_opts o, const char *name, scp_map *out, scp_remask_stats *st)
{
    char *p = scp_path_join(tmp, name);
    FILE *f = fopen(p, "wb");
    int rc = scp_remask_write(set, &o, f, name, st);
    fclose(f);
    if (rc == 0) rc = scp_map_file(out, p);
    free(p);
    return rc;
}

static int same_stats(const scp_remask_stats *a, const scp_remask_stats *b)
{
    return a->examples == b->examples && a->masked == b->masked && a->maskable == b->maskable && a->expect == b->expect &&
           a->var == b->var;
}

/* Every record against its sequence: the index in order, noisy = tokens outside the mask and the mask id inside,
 * padding never masked; the trailer's totals equal st. */
static int records_check(const scp_shardset *set, const char *path, const scp_remask_stats *st, int64_t *n_read)
{
    FILE *f = fopen(path, "rb");
    scp_masked_reader r;
    if (scp_masked_read_begin(&r, f, path)) return 0;
    int32_t noisy[L], targets[L], tokens[L];
    uint8_t mask[L];
    uint64_t index, masked = 0;
    double t;
    int64_t i = 0;
    int good = 1, k;
    while (good && (k = scp_masked_read_next(&r, &index, &t, noisy, targets, mask)) == 1) {
        int nv;
        good = index == (uint64_t)i && scp_shardset_get(set, i, tokens, NULL) == 0 &&
               scp_shardset_seq_info(set, i, NULL, &nv, NULL) >= 0 && memcmp(targets, tokens, sizeof tokens) == 0 &&
               t >= 1e-3 && t <= 1;
        for (int j = 0; good && j < L; j++) {
            good = mask[j] ? noisy[j] == MASK && j < nv : noisy[j] == tokens[j];
            masked += mask[j];
        }
        i++;
    }
    good = good && k == 0 && r.n == (uint64_t)st->examples && r.masked == st->masked && r.maskable == st->maskable &&
           masked == st->masked;
    *n_read = i;
    scp_masked_read_close(&r);
    fclose(f);
    return good;
}

static void test_threads(const scp_shardset *set)
{
    scp_remask_opts o = {.data = "set", .mask_id = MASK, .seed = 9, .eps = 1e-3, .sampler = SCP_T_STRATIFIED,
                         .schedule = SCP_SCHED_COSINE, .batch = 4, .prompt_end_id = -1, .targets = 1, .n_examples = -1,
                         .threads = 1};
    scp_map one, many;
    scp_remask_stats s1, sn;
    int rc = write_examples(set, o, "m1", &one, &s1);
    int64_t N = scp_shardset_num_seqs(set);
    tap_ok(rc == 0 && s1.examples == N && N > 36000 && s1.masked > 0 && s1.masked < s1.maskable,
           "1 thread: %lld examples, %llu of %llu maskable tokens masked", (long long)s1.examples,
           (unsigned long long)s1.masked, (unsigned long long)s1.maskable);
    char *p1 = scp_path_join(tmp, "m1");
    int64_t n_read = 0;
    int consistent = records_check(set, p1, &s1, &n_read);
    tap_ok(consistent, "read back: %lld records, each its sequence with the masked positions replaced; "
           "the trailer's totals are the statistics", (long long)n_read);
    free(p1);
    for (int threads = 2; threads <= 4; threads += 2) {
        o.threads = threads;
        rc = write_examples(set, o, "mn", &many, &sn);
        tap_ok(rc == 0 && one.size == many.size && memcmp(one.data, many.data, one.size) == 0 && same_stats(&s1, &sn),
               "%d threads: the same bytes (%zu) and the same figures, to the last bit", threads, many.size);
        scp_unmap(&many);
    }
    /* The first 100 examples alone are the first 100 records of the whole run. */
    o.n_examples = 100;
    rc = write_examples(set, o, "m100", &many, &sn);
    size_t head = SCP_MASKED_HEADER + 100 * (size_t)(one.size - SCP_MASKED_HEADER - SCP_MASKED_TRAILER) / (size_t)N;
    tap_ok(rc == 0 && sn.examples == 100 && many.size == head + SCP_MASKED_TRAILER && memcmp(one.data, many.data, head) == 0,
           "n_examples 100: the first 100 records of the whole run, byte for byte");
    scp_unmap(&many);
    scp_unmap(&one);

    /* --show: the asked-for examples as text, masked spans marked. */
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    o.n_examples = 3;
    rc = scp_remask_show(set, &o, NULL, m);
    fclose(m);
    int shown = 0;
    for (char *q = text; (q = strstr(q, "== example ")); q++) shown++;
    tap_ok(rc == 0 && shown == 3 && strncmp(text, "== example 0  t=", 16) == 0 && strstr(text, "[[") && strstr(text, "]]"),
           "show: 3 examples as ids with masked spans in [[ ]]");
    free(text);
}

static void test_failures(const scp_shardset *set)
{
    /* Mask id 10 is an ordinary token of the data: the first sequence holding it is named, whatever the threads. */
    scp_remask_opts o = {.data = "set", .mask_id = 10, .eps = 1e-3, .batch = 1, .prompt_end_id = -1, .n_examples = -1,
                         .threads = 1};
    scp_map out;
    scp_remask_stats st;
    int rc1 = write_examples(set, o, "bad1", &out, &st);
    char m1[512];
    snprintf(m1, sizeof m1, "%s", scp_last_error());
    o.threads = 4;
    int rc4 = write_examples(set, o, "bad4", &out, &st);
    tap_ok(rc1 == -1 && rc4 == -1 && strstr(m1, "set: train sequence ") && strstr(m1, "holds the mask id 10") &&
               strcmp(m1, scp_last_error()) == 0,
           "a mask id found in the data: the same message for 1 and 4 threads: %s", m1);
    FILE *full = fopen("/dev/full", "wb");
    if (full) {
        o.mask_id = MASK;
        int rc = scp_remask_write(set, &o, full, "/dev/full", &st);
        tap_ok(rc == -1 && strstr(scp_last_error(), "/dev/full") && strstr(scp_last_error(), "write error"),
               "a full disk stops the run: %s", scp_last_error());
        fclose(full);
    }
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "%s/scp-unit-remask.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) return 1;
    char *dir = make_shards();
    scp_shardset *set = dir ? scp_shardset_open(dir, "train") : NULL;
    if (!tap_ok(set != NULL, "build a shard set: %s", set ? "ok" : scp_last_error())) return tap_done();
    test_threads(set);
    test_failures(set);
    scp_shardset_close(set);
    free(dir);
    scp_rm_rf(tmp);
    return tap_done();
}
