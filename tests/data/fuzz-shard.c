/* fuzz-shard.c: libFuzzer target for the shard set reader (data/shard.h): the input is one shard file. Its two
 * CRC32s (the header's and the data's) are set to match the bytes, unless bit 0 of the first reserved byte
 * (offset 96, which the reader ignores) is set, so that the fuzzer reaches the tables behind them; a
 * manifest.json that agrees with the header is written beside it. Any input is either refused with a message
 * naming the set or read: every sequence's tokens, documents and segments, and the whole set verified. Built
 * by `make fuzz`. */
#include "core/io.h"
#include "data/shard.h"
#include "formats/shard_format.h"
#include "fuzz_check.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dir, *shard_path, *manifest_path;

static void write_bytes(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
}

/* manifest.json for one shard whose header says h (zeros when the header does not decode). */
static void write_manifest(const scp_shard_header *h, size_t size, uint32_t file_crc)
{
    char hex[32];
    json_t *m = json_object(), *e = json_object(), *shards = json_array(), *splits = json_object();
    json_object_set_new(m, "format", json_string("scp-shards"));
    json_object_set_new(m, "version", json_integer(SCP_SHARD_VERSION));
    json_object_set_new(m, "seq_len", json_integer(h->seq_len));
    json_object_set_new(m, "token_bytes", json_integer(h->token_bytes));
    json_object_set_new(m, "vocab_size", json_integer(h->vocab_size));
    json_object_set_new(m, "bos_id", json_integer(h->bos_id));
    json_object_set_new(m, "eos_id", json_integer(h->eos_id));
    json_object_set_new(m, "pad_id", json_integer(h->pad_id));
    json_object_set_new(m, "mask_id", json_integer(h->mask_id));
    json_object_set_new(m, "pad_value", json_integer(h->pad_value));
    snprintf(hex, sizeof hex, "%016" PRIx64, h->tokenizer_hash);
    json_object_set_new(m, "tokenizer_hash", json_string(hex));
    json_object_set_new(e, "file", json_string("shard-0.bin"));
    json_object_set_new(e, "split", json_string(h->split ? "val" : "train"));
    json_object_set_new(e, "index", json_integer(h->shard_index));
    json_object_set_new(e, "first_seq", json_integer((json_int_t)h->first_seq));
    json_object_set_new(e, "sequences", json_integer((json_int_t)h->n_seqs));
    json_object_set_new(e, "tokens", json_integer((json_int_t)h->n_tokens));
    json_object_set_new(e, "segments", json_integer((json_int_t)h->n_segments));
    json_object_set_new(e, "bytes", json_integer((json_int_t)size));
    snprintf(hex, sizeof hex, "%08x", file_crc);
    json_object_set_new(e, "crc32", json_string(hex));
    json_array_append_new(shards, e);
    json_object_set_new(m, "shards", shards);
    for (int s = 0; s < 3; s++) {
        int mine = s == 2 || (uint32_t)s == h->split;
        json_t *o = json_object();
        json_object_set_new(o, "sequences", json_integer(mine ? (json_int_t)h->n_seqs : 0));
        json_object_set_new(o, "tokens", json_integer(mine ? (json_int_t)h->n_tokens : 0));
        json_object_set_new(o, "shards", json_integer(mine));
        json_object_set_new(o, "bytes", json_integer(mine ? (json_int_t)size : 0));
        if (s < 2) {
            json_object_set_new(o, "padding", json_integer(mine ? (json_int_t)(h->n_seqs * h->seq_len - h->n_tokens) : 0));
            json_object_set_new(splits, s ? "val" : "train", o);
        } else {
            json_object_set_new(m, "totals", o);
        }
    }
    json_object_set_new(m, "splits", splits);
    if (json_dump_file(m, manifest_path, 0) != 0) abort();
    json_decref(m);
}

static void read_every_sequence(const scp_shardset *s)
{
    int L = scp_shardset_seq_len(s), V = scp_shardset_vocab_size(s);
    int32_t *tok = malloc(sizeof *tok * (size_t)L), *doc = malloc(sizeof *doc * (size_t)L);
    scp_doc_segment *segs = malloc(sizeof *segs * (size_t)L);
    for (int64_t i = 0; i < scp_shardset_num_seqs(s); i++) {
        fuzz_expect_message();
        if (scp_shardset_get(s, i, tok, doc) != 0) {
            fuzz_check_refusal(dir);
            break;
        }
        for (int j = 0; j < L; j++)
            if (tok[j] < 0 || tok[j] >= V || doc[j] < -1 || doc[j] >= L) abort();
        int64_t packed;
        int nv;
        fuzz_expect_message();
        int nseg = scp_shardset_seq_info(s, i, &packed, &nv, segs);
        if (nseg < 0) {
            fuzz_check_refusal(dir);
            break;
        }
        if (nv < 0 || nv > L || nseg > nv || packed < 0) abort();
        for (int k = 0; k < nseg; k++)
            if (segs[k].pos < 0 || segs[k].pos >= nv || segs[k].doc_id < 0 || segs[k].doc_offset < 0) abort();
    }
    free(tok);
    free(doc);
    free(segs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir) {
        char tmpl[] = "/tmp/fuzz-shard-XXXXXX";
        if (!mkdtemp(tmpl)) abort();
        dir = strdup(tmpl);
        shard_path = scp_path_join(dir, "shard-0.bin");
        manifest_path = scp_path_join(dir, "manifest.json");
    }
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    if (size >= SCP_SHARD_HEADER && !(buf[96] & 1)) {
        scp_put32(buf + 92, scp_crc32(0, buf + SCP_SHARD_HEADER, size - SCP_SHARD_HEADER));
        scp_put32(buf + 124, scp_crc32(0, buf, 124));
    }
    scp_shard_header h;
    memset(&h, 0, sizeof h);
    if (scp_shard_header_decode(&h, buf, size, "fuzz") != 0) memset(&h, 0, sizeof h);
    write_bytes(shard_path, buf, size);
    write_manifest(&h, size, scp_crc32(0, buf, size));
    free(buf);

    fuzz_expect_message();
    if (scp_shardset_verify(dir) != 0) fuzz_check_refusal(dir);
    for (int split = 0; split < 2; split++) {
        fuzz_expect_message();
        scp_shardset *s = scp_shardset_open(dir, split ? "val" : "train");
        if (!s) {
            fuzz_check_refusal(dir);
            continue;
        }
        read_every_sequence(s);
        scp_shardset_close(s);
    }
    return 0;
}
