/* unit-tokenize.c: the tokenizing engine of scp-tokenize (lib/data/tokenize.c, detokenize.c) on a small llama2.c
 * tokenizer.bin written here: the token stream and the id lines are the same bytes for 1, 2 and 4 threads over
 * several batches, every document is the tokenizer's encoding of its line in input order, decoding gives the
 * lines back, and a bad input line or a full disk stops the run with a message naming it. */
#include "../tap.h"

#include "core/error.h"
#include "core/io.h"
#include "data/tokenize.h"
#include "formats/tokstream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];
enum { N_DOCS = 150000 };   /* more than two batches of 65536 documents */

static void put_tok(FILE *f, float score, const char *s)
{
    int32_t l = (int32_t)strlen(s);
    fwrite(&score, 4, 1, f);
    fwrite(&l, 4, 1, f);
    fwrite(s, 1, (size_t)l, f);
}

/* <unk> <s> </s>, 256 byte tokens, then ' ', a, b, c, ' a', ab, bc, ' ab' with scores. */
static char *write_tokenizer(void)
{
    char *p = scp_path_join(tmpdir, "tok.bin");
    FILE *f = fopen(p, "wb");
    uint32_t maxlen = 16;
    fwrite(&maxlen, 4, 1, f);
    put_tok(f, 0, "<unk>");
    put_tok(f, 0, "\n<s>\n");
    put_tok(f, 0, "\n</s>\n");
    for (int b = 0; b < 256; b++) {
        char s[8];
        sprintf(s, "<0x%02X>", b);
        put_tok(f, 0, s);
    }
    static const char *pieces[] = {" ", "a", "b", "c", " a", "ab", "bc", " ab"};
    static const float scores[] = {-10, -10, -10, -10, -1, -2, -0.5f, -3};
    for (int i = 0; i < 8; i++) put_tok(f, scores[i], pieces[i]);
    fclose(f);
    return p;
}

/* Line i: 1 to 8 words drawn from (i), so that documents differ in length and in cost. */
static void line_text(int i, char *buf)
{
    static const char *words[] = {"a", "ab", "abc", "bca", "cab", "b", "cc", "x"};
    uint64_t r = (uint64_t)i * 0x9E3779B97F4A7C15ull + 1;
    int n = 1 + (int)(r >> 61);
    buf[0] = 0;
    for (int w = 0; w < n; w++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        if (w) strcat(buf, " ");
        strcat(buf, words[r >> 61]);
    }
}

static char *write_text(void)
{
    char *p = scp_path_join(tmpdir, "docs.txt");
    FILE *f = fopen(p, "w");
    char line[64];
    for (int i = 0; i < N_DOCS; i++) {
        line_text(i, line);
        fprintf(f, "%s\n", line);
    }
    fclose(f);
    return p;
}

/* Run the engine onto file `name`; its bytes in *out (malloc'ed). */
static int tokenize_to(const scp_tokenizer *tok, const char *input, scp_tokenize_opts o, const char *name, scp_map *out,
                       scp_tokenize_stats *st)
{
    char *p = scp_path_join(tmpdir, name);
    FILE *f = fopen(p, "wb");
    const char *inputs[] = {input};
    int rc = scp_tokenize(tok, inputs, 1, &o, f, name, st);
    fclose(f);
    if (rc == 0 && out) rc = scp_map_file(out, p);
    free(p);
    return rc;
}

static int same(const scp_map *a, const scp_map *b)
{
    return a->size == b->size && memcmp(a->data, b->data, a->size) == 0;
}

/* Every document of the stream is BOS + the encoding of line i. */
static int stream_matches_lines(const scp_tokenizer *tok, const char *path, int *checked)
{
    FILE *f = fopen(path, "rb");
    scp_tokstream_reader r;
    if (scp_tokstream_read_begin(&r, f, path)) return 0;
    int32_t *ids = NULL;
    size_t cap = 0;
    uint32_t n;
    int i = 0, good = 1;
    while (good && scp_tokstream_read_doc(&r, &ids, &cap, &n) == 1) {
        char line[64];
        line_text(i, line);
        int32_t *want;
        size_t nw;
        good = scp_tokenizer_encode(tok, line, strlen(line), 1, &want, &nw) == 0 && n == nw + 1 && ids[0] == 1 &&
               memcmp(ids + 1, want, nw * sizeof *want) == 0;
        free(want);
        i++;
    }
    good = good && r.done && i == N_DOCS && r.h.flags == SCP_TOKSTREAM_FLAG_BOS;
    *checked = i;
    free(ids);
    scp_tokstream_read_close(&r);
    fclose(f);
    return good;
}

static void test_threads(const scp_tokenizer *tok, const char *text)
{
    scp_tokenize_opts o = {.input = {SCP_DOC_LINE, SCP_IN_AUTO, "text", 0}, .special = 1, .bos = 1, .threads = 1};
    scp_map one, many;
    scp_tokenize_stats s1, sn;
    int rc = tokenize_to(tok, text, o, "t1.tok", &one, &s1);
    tap_ok(rc == 0 && s1.docs == N_DOCS && s1.bad == 0, "1 thread: %llu documents, %llu tokens",
           (unsigned long long)s1.docs, (unsigned long long)s1.tokens);
    char *p1 = scp_path_join(tmpdir, "t1.tok");
    int checked = 0;
    int matches = stream_matches_lines(tok, p1, &checked);
    tap_ok(matches, "every document is BOS + the encoding of its line, in input order (%d)", checked);
    for (int threads = 2; threads <= 4; threads += 2) {
        o.threads = threads;
        rc = tokenize_to(tok, text, o, "tn.tok", &many, &sn);
        tap_ok(rc == 0 && same(&one, &many) && sn.docs == s1.docs && sn.tokens == s1.tokens && sn.bytes == s1.bytes,
               "%d threads: the same token stream, byte for byte (%zu bytes)", threads, many.size);
        scp_unmap(&many);
    }
    scp_unmap(&one);

    o.ids = 1;
    o.eos = 1;
    o.threads = 1;
    rc = tokenize_to(tok, text, o, "t1.ids", &one, &s1);
    o.threads = 4;
    int rc4 = tokenize_to(tok, text, o, "t4.ids", &many, &sn);
    size_t lines = 0;
    for (size_t i = 0; i < one.size; i++) lines += one.data[i] == '\n';
    tap_ok(rc == 0 && rc4 == 0 && same(&one, &many) && lines == N_DOCS && one.data[0] == '1' && one.data[1] == ' ' &&
               memcmp(one.data + one.size - 3, " 2\n", 3) == 0,
           "id lines: the same bytes for 1 and 4 threads, a line per document from 1 (BOS) to 2 (EOS)");
    scp_unmap(&one);
    scp_unmap(&many);

    /* Decoding the stream gives the lines back. */
    char *back = scp_path_join(tmpdir, "back.txt");
    FILE *f = fopen(back, "wb");
    scp_tokenize_stats sd = {0};
    rc = scp_detokenize(tok, "tok.bin", p1, 0, f, "back.txt", &sd);
    fclose(f);
    scp_map b, t;
    scp_map_file(&b, back);
    scp_map_file(&t, text);
    tap_ok(rc == 0 && same(&b, &t) && sd.docs == N_DOCS, "decoding the stream gives the text back (%llu documents)",
           (unsigned long long)sd.docs);
    scp_unmap(&b);
    scp_unmap(&t);
    free(back);
    free(p1);
}

static void test_failures(const scp_tokenizer *tok)
{
    /* JSONL whose line 70000 is not JSON: after the first batch, so some documents are written before it. */
    char *p = scp_path_join(tmpdir, "bad.jsonl");
    FILE *f = fopen(p, "w");
    for (int i = 1; i <= 80000; i++) fprintf(f, i == 70000 ? "{not json\n" : "{\"text\": \"ab c %d\"}\n", i);
    fclose(f);
    scp_tokenize_opts o = {.input = {SCP_DOC_LINE, SCP_IN_AUTO, "text", 0}, .special = 1, .threads = 1};
    scp_tokenize_stats st;
    int rc1 = tokenize_to(tok, p, o, "bad1.tok", NULL, &st);
    char m1[512];
    snprintf(m1, sizeof m1, "%s", scp_last_error());
    o.threads = 4;
    int rc4 = tokenize_to(tok, p, o, "bad4.tok", NULL, &st);
    tap_ok(rc1 == -1 && rc4 == -1 && strstr(m1, "bad.jsonl: line 70000") && strcmp(m1, scp_last_error()) == 0,
           "a bad line stops the run with the same message for 1 and 4 threads: %s", m1);
    o.input.skip_bad = 1;
    rc4 = tokenize_to(tok, p, o, "skip.tok", NULL, &st);
    tap_ok(rc4 == 0 && st.bad == 1 && st.docs == 79999, "skip_bad: 79999 documents, 1 bad record");
    free(p);

    FILE *full = fopen("/dev/full", "wb");
    if (full) {
        o.threads = 4;
        const char *inputs[] = {scp_path_join(tmpdir, "docs.txt")};
        int rc = scp_tokenize(tok, inputs, 1, &o, full, "/dev/full", &st);
        tap_ok(rc == -1 && strstr(scp_last_error(), "/dev/full") && strstr(scp_last_error(), "write error"),
               "a full disk stops the run: %s", scp_last_error());
        fclose(full);
        free((char *)inputs[0]);
    }
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/scp-unit-tokenize.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;
    char *tp = write_tokenizer();
    scp_tokenizer *tok = scp_tokenizer_load(tp);
    if (!tap_ok(tok != NULL, "load the test tokenizer")) return tap_done();
    char *text = write_text();
    test_threads(tok, text);
    test_failures(tok);
    scp_tokenizer_free(tok);
    free(text);
    free(tp);
    scp_rm_rf(tmpdir);
    return tap_done();
}
