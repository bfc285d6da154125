/* unit-eval.c: scp-eval's set-up in lib/eval: the sequences to score (windows of a token stream, a shard set's
 * split) opened and checked against a model's vocabulary and positions, the mask token and logit shift of ppl and
 * elbo, and the names of choice's normalisations. */
#include "../tap.h"

#include "core/error.h"
#include "core/io.h"
#include "data/shard_write.h"
#include "eval/choice_item.h"
#include "eval/setup.h"
#include "formats/tokstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmpdir[256];

/* A token stream of 5 documents of 10 tokens, token k of document d = (3 d + k) mod 17 + 1 (vocabulary 20). */
static char *write_stream(void)
{
    char *path = scp_path_join(tmpdir, "s.tok");
    FILE *f = fopen(path, "wb");
    scp_tokstream_writer w;
    scp_tokstream_header h = {.vocab_size = 20, .bos_id = -1, .eos_id = -1, .pad_id = -1, .mask_id = 19,
                              .tokenizer_hash = 0xabcdULL};
    scp_tokstream_write_begin(&w, f, path, &h);
    for (int d = 0; d < 5; d++) {
        int32_t ids[10];
        for (int k = 0; k < 10; k++) ids[k] = (3 * d + k) % 17 + 1;
        scp_tokstream_write_doc(&w, ids, 10);
    }
    scp_tokstream_write_end(&w);
    fclose(f);
    return path;
}

/* The model fields the checks read: vocabulary, positions, mask token, shift. */
static void fake_model(scp_model *m, int vocab, int max_pos)
{
    memset(m, 0, sizeof *m);
    m->cfg.vocab_size = vocab;
    m->cfg.max_position_embeddings = max_pos;
    m->cfg.mask_token_id = 19;
    m->cfg.shift_logits = 1;
}

static void test_check_length(void)
{
    scp_model m;
    fake_model(&m, 20, 32);
    tap_ok(scp_eval_check_length(&m.cfg, "ck", 32, 0, "d") == 0 && scp_eval_check_length(&m.cfg, "ck", 33, 1, "d") == 0,
           "32 positions: 32 tokens bidirectional, 33 causal (the last is only a target)");
    int rc = scp_eval_check_length(&m.cfg, "ck", 33, 0, "data");
    tap_ok(rc == -1 && strcmp(scp_last_error(), "data: sequences of 33 tokens need 33 positions, but ck has "
                                                "max_position_embeddings 32") == 0,
           "33 tokens bidirectional refused: %s", scp_last_error());
    tap_ok(scp_eval_check_length(&m.cfg, "ck", 34, 1, "data") == -1 && strstr(scp_last_error(), "need 33 positions"),
           "34 tokens causal refused: %s", scp_last_error());
}

static void test_windows(const char *stream)
{
    scp_model m;
    fake_model(&m, 20, 32);
    scp_eval_source_spec spec = {.stream = stream, .seq_len = 8, .stride = 8};
    scp_eval_data d;
    int rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 0);
    int32_t tok[8], doc[8];
    int got = rc == 0 && d.src.get(d.src.ctx, 1, tok, doc) == 0;
    /* window 1 = stream tokens 8..15: document 0's last two, document 1's first six */
    tap_ok(got && d.src.n == 6 && d.src.T == 8 && strcmp(d.name, stream) == 0 && d.shards == NULL && tok[0] == 9 &&
               tok[1] == 10 && tok[2] == 4 && doc[1] == 0 && doc[2] == 1,
           "50 tokens in windows of 8: 6 whole windows, tokens and documents in order%s%s", rc ? ": " : "",
           rc ? scp_last_error() : "");
    if (rc == 0) scp_eval_data_close(&d);
    spec.stride = 4;
    rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 0);
    tap_ok(rc == 0 && d.src.n == 11, "stride 4: (50 - 8) / 4 + 1 = 11 overlapping windows");
    if (rc == 0) scp_eval_data_close(&d);

    spec.seq_len = spec.stride = 33;
    rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 0);
    tap_ok(rc == -1 && strstr(scp_last_error(), "s.tok: sequences of 33 tokens need 33 positions"),
           "windows beyond the positions refused (elbo): %s", scp_last_error());
    rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 1);
    tap_ok(rc == 0 && d.src.n == 1, "the same windows scored causally (ppl) fit");
    if (rc == 0) scp_eval_data_close(&d);
    spec.seq_len = spec.stride = 51;
    rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 1);
    tap_ok(rc == -1 && strstr(scp_last_error(), "no whole-window sequence to score"), "no whole window refused: %s",
           scp_last_error());
    fake_model(&m, 12, 32);
    spec.seq_len = spec.stride = 8;
    rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 0);
    tap_ok(rc == -1 && strstr(scp_last_error(), "vocabulary of 20 ids does not fit the model's 12 embedding rows"),
           "a vocabulary larger than the model's refused: %s", scp_last_error());
    char *missing = scp_path_join(tmpdir, "none.tok");
    spec.stream = missing;
    fake_model(&m, 20, 32);
    rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 0);
    tap_ok(rc == -1 && strstr(scp_last_error(), "none.tok"), "a missing stream refused naming it");
    free(missing);
}

static void test_shards(const char *stream)
{
    char *dir = scp_path_join(tmpdir, "shards");
    scp_shard_opts so = {.seq_len = 10, .shard_tokens = 1000, .seed = 1, .shuffle = 0, .val_tokens = 10, .threads = 1};
    char *t = scp_dir_begin(dir);
    scp_shard_builder *b = scp_shard_builder_new(t, &so);
    FILE *f = fopen(stream, "rb");
    int rc = scp_shard_builder_add(b, f, stream) || scp_shard_builder_finish(b);
    fclose(f);
    scp_shard_builder_free(b);
    rc = rc || scp_dir_commit(t, dir, 1);
    free(t);
    tap_ok(rc == 0, "a shard set of sequences of 10");
    scp_model m;
    fake_model(&m, 20, 10);
    scp_eval_source_spec spec = {.shards = dir, .split = "train"};
    scp_eval_data d;
    rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 0);
    tap_ok(rc == 0 && d.shards && d.src.n == 4 && d.src.T == 10 && strcmp(d.name, dir) == 0,
           "its train split: 4 sequences of 10 (%s)", rc ? scp_last_error() : "");
    if (rc == 0) scp_eval_data_close(&d);
    spec.split = "val";
    rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 0);
    tap_ok(rc == 0 && d.src.n == 1, "its val split: one document");
    if (rc == 0) scp_eval_data_close(&d);
    fake_model(&m, 20, 9);
    rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 0);
    tap_ok(rc == -1 && strstr(scp_last_error(), "sequences of 10 tokens need 10 positions, but") &&
               strstr(scp_last_error(), "max_position_embeddings 9"),
           "shard sequences beyond the positions refused: %s", scp_last_error());
    rc = scp_eval_data_open(&d, &spec, &m, tmpdir, 1);
    tap_ok(rc == 0, "causally they fit");
    if (rc == 0) scp_eval_data_close(&d);
    free(dir);
}

static void test_loss_resolve(void)
{
    scp_model m;
    fake_model(&m, 20, 32);
    scp_eval_opts eo;
    scp_eval_opts_default(&eo);
    tap_ok(scp_eval_loss_resolve(&eo, &m, "ck", -1, -1, 1) == 0 && eo.mask_id == 19 && eo.shift == 1,
           "elbo: config.json's mask token and shift");
    tap_ok(scp_eval_loss_resolve(&eo, &m, "ck", 3, 0, 1) == 0 && eo.mask_id == 3 && eo.shift == 0,
           "--mask-id and --no-shift override them");
    m.cfg.mask_token_id = -1;
    tap_ok(scp_eval_loss_resolve(&eo, &m, "ck", -1, -1, 1) == -1 && strstr(scp_last_error(), "ck: config.json has no mask_token_id"),
           "elbo without a mask token refused: %s", scp_last_error());
    tap_ok(scp_eval_loss_resolve(&eo, &m, "ck", -1, -1, 0) == 0, "ppl needs none");
    tap_ok(scp_eval_loss_resolve(&eo, &m, "ck", 20, -1, 1) == -1 && strstr(scp_last_error(), "--mask-id 20 is outside"),
           "a mask id beyond the embedding rows refused: %s", scp_last_error());
}

static void test_choice_norm(void)
{
    tap_ok(scp_choice_norm_parse("none") == SCP_CHOICE_NORM_NONE && scp_choice_norm_parse("tokens") == SCP_CHOICE_NORM_TOKENS &&
               scp_choice_norm_parse("bytes") == SCP_CHOICE_NORM_BYTES &&
               scp_choice_norm_parse("chars") == SCP_CHOICE_NORM_CHARS && scp_choice_norm_parse("words") == -1 &&
               strcmp(scp_choice_norm_name(SCP_CHOICE_NORM_BYTES), "bytes") == 0,
           "choice normalisations by name");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/scp-unit-eval.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;
    char *stream = write_stream();
    test_check_length();
    test_windows(stream);
    test_shards(stream);
    test_loss_resolve();
    test_choice_norm();
    free(stream);
    scp_rm_rf(tmpdir);
    return tap_done();
}
