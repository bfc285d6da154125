/* unit-tokenizer.c: the tokenizer without real assets: the hand-written pre-tokenizers against PCRE2 on the
 * same patterns, NFC against utf8proc, UTF-8 repair against the Unicode standard's example (Table 3-8), a
 * small byte-level BPE tokenizer.json, a small llama2.c tokenizer.bin and a small SentencePiece .model written
 * here, and malformed inputs. */
#include "../tap.h"

#include "core/error.h"
#include "core/io.h"
#include "tok/tok_internal.h"
#include "tok/llama2c_bin.h"
#include "tok/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

static char tmpdir[256];

/* ---- fast splitters vs PCRE2 ---- */

typedef struct pieces {
    size_t n, cap;
    size_t *end;   /* end offsets of the pieces */
    size_t pos;
} pieces;

static int collect(void *ctx, const char *s, size_t len)
{
    (void)s;
    pieces *p = ctx;
    if (p->n == p->cap) p->end = scp_xrealloc(p->end, sizeof *p->end * (p->cap = p->cap ? p->cap * 2 : 1024));
    p->pos += len;
    p->end[p->n++] = p->pos;
    return 0;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Random text over characters chosen to exercise every branch: letters of several scripts, digits of several
 * kinds, apostrophe contractions in both cases, every white-space kind (incl. U+0085, U+00A0, U+3000), \r \n,
 * punctuation, symbols, emoji, combining marks. */
static char *random_text(size_t nchars, size_t *len)
{
    static const char *atoms[] = {"a", "b", "Z", "s", "t", "re", "ve", "ll", "m", "d", "S", "T", "RE", "VE", "LL", "M", "D",
                                  "'", "'", "'", "\xC5\xBF", "0", "7", "\xD9\xA3", "\xC2\xBD", "\xE2\x85\xAB", " ", " ", " ",
                                  "  ", "\t", "\n", "\r", "\r\n", "\xC2\x85", "\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\xA8",
                                  "\x0B", "\x0C", ".", ",", "!", "?", "-", "(", ")", "\"", "#", "$", "\xE2\x80\x94",
                                  "\xE6\x97\xA5", "\xE6\x9C\xAC", "\xD0\x96", "\xCE\xB1", "\xF0\x9F\x98\x80",
                                  "\xE2\x80\x8D", "\xCC\x81", "\xEF\xB8\x8F", "_", "\xE2\x82\xAC", "\xD8\xB9"};
    size_t na = sizeof atoms / sizeof atoms[0];
    char *s = scp_xmalloc(nchars * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < nchars; i++) {
        const char *a = atoms[rnd() % na];
        size_t l = strlen(a);
        memcpy(s + o, a, l);
        o += l;
    }
    s[o] = 0;
    *len = o;
    return s;
}

static void test_splitters(void)
{
    struct { int kind; const char *pat; const char *name; } k[] = {
        {TOK_PRE_GPT2, tok_pattern_gpt2, "GPT-2"}, {TOK_PRE_QWEN2, tok_pattern_qwen2, "Qwen2/Qwen3"}, {TOK_PRE_LLAMA3, tok_pattern_llama3, "Llama 3"}};
    static const char *fixed[] = {"Hello world", "I'm you're HE'S we'LL 'sup ''s", "  a   b\t\tc\n\n d  ", "x \n\n  y\r\n\r\nz",
                                  "1234567 12 3", "!!!abc ...\n\n", "\xC2\x85 \xC2\xA0\x61 \xE3\x80\x80 b", "   ", "\n", "a ",
                                  "'\xC5\xBF 'S", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E!", "don't stop"};
    for (int i = 0; i < 3; i++) {
        void *re = tok_regex_compile(k[i].pat, "test");
        if (!tap_ok(re != NULL, "%s pattern compiles in PCRE2", k[i].name)) continue;
        int same = 1;
        size_t total = 0;
        for (int round = 0; round < 200 + 13 && same; round++) {
            size_t len;
            char *s;
            if (round < 13) {
                s = scp_xstrdup(fixed[round]);
                len = strlen(s);
            } else {
                s = random_text(2000, &len);
            }
            pieces a = {0}, b = {0};
            tok_split_fast(k[i].kind, s, len, collect, &a);
            tok_split_regex(re, 0, 0, s, len, collect, &b);
            total += len;
            if (a.n != b.n || memcmp(a.end, b.end, a.n * sizeof *a.end) != 0) {
                same = 0;
                size_t j = 0;
                while (j < a.n && j < b.n && a.end[j] == b.end[j]) j++;
                size_t from = j ? a.end[j - 1] : 0;
                tap_diag("%s: first difference after byte %zu: fast ends at %zu, PCRE2 at %zu; text there: '%.20s'", k[i].name, from,
                         j < a.n ? a.end[j] : 0, j < b.n ? b.end[j] : 0, s + from);
            }
            free(a.end);
            free(b.end);
            free(s);
        }
        tap_ok(same, "%s hand-written splitter = PCRE2 on %zu bytes of mixed text", k[i].name, total);
        tok_regex_free(re);
    }
}

/* A Split pattern that backtracks without end reaches PCRE2's match limit: an error, not "no more matches" (which
 * would leave the rest of the text one piece). */
static void test_split_match_limit(void)
{
    void *re = tok_regex_compile("(a+)+[bc]", "test");
    if (!tap_ok(re != NULL, "the pattern (a+)+[bc] compiles")) return;
    char s[41];
    memset(s, 'a', 40);
    s[40] = 0;
    pieces p = {0};
    int rc = tok_split_regex(re, 0, 0, s, 40, collect, &p);
    tap_ok(rc == -1 && strstr(scp_last_error(), "Split pattern failed at byte 0 of a 40-byte text") &&
           strstr(scp_last_error(), "limit"), "a Split pattern at PCRE2's match limit is an error: %s",
           rc ? scp_last_error() : "no error");
    free(p.end);
    tok_regex_free(re);
}

/* ---- NFC and UTF-8 repair ---- */

static void test_nfc_utf8(void)
{
    int same = 1;
    for (int round = 0; round < 300 && same; round++) {
        size_t len, ol;
        char *s = random_text(300, &len);
        char *mine = tok_nfc(s, len, &ol);
        utf8proc_uint8_t *ref = utf8proc_NFC((const utf8proc_uint8_t *)s);
        const char *got = mine ? mine : s;
        size_t gl = mine ? ol : len;
        if (!ref || strlen((char *)ref) != gl || memcmp(ref, got, gl) != 0) same = 0;
        free(mine);
        free(ref);
        free(s);
    }
    const char *t = "cafe\xCC\x81 A\xCC\x8A\xCC\x81 \xE1\x84\x80\xE1\x85\xA1 x\xCC\x81\xCC\xA3";
    size_t ol;
    char *m = tok_nfc(t, strlen(t), &ol);
    utf8proc_uint8_t *ref = utf8proc_NFC((const utf8proc_uint8_t *)t);
    same = same && m && ol == strlen((char *)ref) && memcmp(m, ref, ol) == 0;
    free(m);
    free(ref);
    tap_ok(same, "NFC by non-ASCII runs = utf8proc NFC of the whole text (300 random texts + composition cases)");
    size_t n0;
    tap_ok(tok_nfc("plain ascii", 11, &n0) == NULL, "ASCII text is left alone");

    /* Unicode 15, section 3.9, Table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 ->
     * a FFFD FFFD FFFD b FFFD c FFFD FFFD d (maximal subparts) */
    const char in[] = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
    const char want[] = "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD" "d";
    size_t l;
    char *o = tok_utf8_sanitize(in, sizeof in - 1, &l);
    tap_ok(o && l == sizeof want - 1 && memcmp(o, want, l) == 0, "invalid UTF-8 -> U+FFFD per maximal subpart (Unicode Table 3-8)");
    free(o);
    const char sur[] = "\xED\xA0\x80\xC0\xAF\xF4\x90\x80\x80";   /* surrogate, overlong, > U+10FFFF: each byte alone */
    o = tok_utf8_sanitize(sur, sizeof sur - 1, &l);
    tap_ok(o && l == 9 * 3, "surrogates, overlongs and code points past U+10FFFF: one U+FFFD per byte (%zu bytes)", l);
    free(o);
    tap_ok(tok_utf8_sanitize("ok \xE6\x97\xA5", 6, &l) == NULL, "valid UTF-8 is not copied");
}

/* ---- a small byte-level BPE tokenizer.json ---- */

static char *write_file(const char *name, const char *data, size_t len)
{
    char *p = scp_path_join(tmpdir, name);
    FILE *f = fopen(p, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    return p;
}

static int enc_is(scp_tokenizer *t, const char *text, int special, const int32_t *want, size_t nw)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (scp_tokenizer_encode(t, text, strlen(text), special, &ids, &n)) return 0;
    int ok = n == nw && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    if (!ok) {
        char buf[512] = "";
        for (size_t i = 0; i < n && strlen(buf) < 480; i++) sprintf(buf + strlen(buf), " %d", ids[i]);
        tap_diag("'%s' ->%s", text, buf);
    }
    free(ids);
    return ok;
}

static void test_small_bytelevel(void)
{
    /* The vocabulary is the 256 byte symbols of GPT-2's alphabet (ids 0..255 in byte order) plus merges
     * "h e" -> 256, "l l" -> 257, "he ll" -> 258, "Ġ w" -> 259 ("Ġ" stands for the space byte), and a special
     * <|end|> at 260. */
    char *js = scp_xmalloc(1 << 16);
    size_t o = (size_t)sprintf(js, "{\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tok_byte_to_cp((uint8_t)b);
        char u[8];
        int l = (int)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)u);
        u[l] = 0;
        if (cp == '"' || cp == '\\') o += (size_t)sprintf(js + o, "\"\\%s\":%d,", u, b);
        else o += (size_t)sprintf(js + o, "\"%s\":%d,", u, b);
    }
    o += (size_t)sprintf(js + o, "\"he\":256,\"ll\":257,\"hell\":258,\"\xC4\xA0w\":259},"
                                 "\"merges\":[\"h e\",\"l l\",\"he ll\",\"\xC4\xA0 w\"]},"
                                 "\"added_tokens\":[{\"id\":260,\"content\":\"<|end|>\",\"special\":true}],"
                                 "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
                                 "\"normalizer\":null,\"decoder\":{\"type\":\"ByteLevel\"}}");
    char *p = write_file("small.json", js, o);
    scp_tokenizer *t = scp_tokenizer_load(p);
    if (!tap_ok(t != NULL, "load a small byte-level tokenizer.json: %s", t ? "ok" : scp_last_error())) { free(js); free(p); return; }
    tap_ok(scp_tokenizer_vocab_size(t) == 261, "vocabulary 261 (256 bytes + 4 merges + 1 special)");
    /* "hello world": pre-tokens "hello", " world"; hello: h e l l o -> he l l o -> he ll o -> hell o */
    const int32_t w1[] = {258, 'o', 259, 'o', 'r', 'l', 'd'};
    tap_ok(enc_is(t, "hello world", 1, w1, 7), "'hello world' -> hell o Ġw o r l d");
    const int32_t w2[] = {258, 260, 'x'};
    tap_ok(enc_is(t, "hell<|end|>x", 1, w2, 3), "special token inside the text is its id");
    tap_ok(!enc_is(t, "hell<|end|>x", 0, w2, 3), "--no-special: the same text is encoded as bytes");
    const int32_t w3[] = {'!', 256};   /* "!" and "he" are separate pre-tokens */
    tap_ok(enc_is(t, "!he", 1, w3, 2), "punctuation then letters: ! he");
    int32_t ids[] = {258, 'o', 259, 260, 0xE6, 0x97, 0xA5};
    size_t dl;
    char *d = scp_tokenizer_decode(t, ids, 7, 0, &dl);
    tap_ok(dl == 17 && memcmp(d, "hello w<|end|>\xE6\x97\xA5", 17) == 0, "decode maps the byte alphabet back, bytes join into UTF-8");
    free(d);
    d = scp_tokenizer_decode(t, ids, 7, 1, &dl);
    tap_ok(strcmp(d, "hello w\xE6\x97\xA5") == 0, "decode skip_special drops <|end|>");
    free(d);
    uint64_t h1 = scp_tokenizer_hash(t);
    scp_tokenizer_free(t);
    /* the same vocabulary with a <|mask|> added at the end hashes the same */
    char *js2 = scp_xmalloc(o + 200);
    memcpy(js2, js, o);
    char *at = strstr(js2, "\"special\":true}]");
    size_t pre = (size_t)(at - js2) + strlen("\"special\":true}");
    size_t o2 = pre;
    o2 += (size_t)sprintf(js2 + o2, ",{\"id\":261,\"content\":\"<|mask|>\",\"special\":true}");
    memcpy(js2 + o2, js + pre, o - pre);
    o2 += o - pre;
    char *p2 = write_file("small-mask.json", js2, o2);
    scp_tokenizer *t2 = scp_tokenizer_load(p2);
    tap_ok(t2 && scp_tokenizer_vocab_size(t2) == 262 && scp_tokenizer_token_id(t2, "<|mask|>") == 261 &&
           scp_tokenizer_hash(t2) == h1, "adding <|mask|> keeps the hash, counts in the vocabulary");
    const int32_t wm[] = {'a', 261};
    tap_ok(t2 && enc_is(t2, "a<|mask|>", 1, wm, 2), "<|mask|> encodes from text");
    scp_tokenizer_free(t2);

    /* malformed tokenizer.json files: a clear message naming the file, never a crash */
    struct { const char *json; const char *expect; } bad[] = {
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, ", "bad.json:1:"},
        {"[1, 2]", "not a JSON object"},
        {"{\"version\": \"1.0\"}", "no \"model\""},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model type 'Unigram' is not supported"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}", "merges[0]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}", "not a valid id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"BertNormalizer\"}}", "normalizer type 'BertNormalizer'"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"}}}", "does not compile"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}", "neither"},
    };
    /* an added token with an empty content, the first of the list: loaded, never matched in text */
    const char *empty = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[{\"id\":1,\"content\":\"\"}]}";
    char *ep = write_file("empty-added.json", empty, strlen(empty));
    scp_tokenizer *et = scp_tokenizer_load(ep);
    const int32_t wa[] = {0};
    tap_ok(et && scp_tokenizer_vocab_size(et) == 2 && enc_is(et, "a", 1, wa, 1), "an added token with empty content loads: %s",
           et ? "ok" : scp_last_error());
    scp_tokenizer_free(et);
    free(ep);
    /* a Split on a literal String that holds "\E(": the text splits around the literal, not around a regex */
    const char *lit = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"x\":0,\"y\":1,\"\\\\\":2,\"E\":3,\"(\":4,\"xy\":5},"
                      "\"merges\":[\"x y\"]},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"\\\\E(\"},"
                      "\"behavior\":\"Isolated\"}}";
    char *lp = write_file("literal.json", lit, strlen(lit));
    scp_tokenizer *lt = scp_tokenizer_load(lp);
    const int32_t wl[] = {0, 2, 3, 4, 1}, wxy[] = {5};
    tap_ok(lt && enc_is(lt, "x\\E(y", 1, wl, 5) && enc_is(lt, "xy", 1, wxy, 1),
           "Split on the literal String '\\E(' isolates it: %s", lt ? "ok" : scp_last_error());
    scp_tokenizer_free(lt);
    free(lp);
    /* tokenizer_config.json beside it with an added_tokens_decoder entry that is not an id: refused naming the
     * entry. The entry's name is 34 MB, more than glibc ever serves from the heap rather than a mapping of its own
     * (32 MB at most), so it is unmapped when the file is freed: a message made after that would fault. */
    char *cdir = scp_path_join(tmpdir, "with-config");
    scp_mkdir_p(cdir);
    char *tj = scp_path_join(cdir, "tokenizer.json"), *tc = scp_path_join(cdir, "tokenizer_config.json");
    FILE *cf = fopen(tj, "w");
    fputs("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", cf);
    fclose(cf);
    cf = fopen(tc, "w");
    fputs("{\"added_tokens_decoder\": {\"", cf);
    for (int i = 0; i < 34 << 20; i++) putc('k', cf);
    fputs("\": {\"content\": \"x\"}}}", cf);
    fclose(cf);
    scp_tokenizer *ct = scp_tokenizer_load(cdir);
    tap_ok(!ct && strstr(scp_last_error(), "tokenizer_config.json: added_tokens_decoder entry 'kkkkkkkk"),
           "an added_tokens_decoder entry that is not an id is refused naming it");
    scp_tokenizer_free(ct);
    free(tj);
    free(tc);
    free(cdir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *bp = write_file("bad.json", bad[i].json, strlen(bad[i].json));
        scp_tokenizer *bt = scp_tokenizer_load(bp);
        const char *msg = scp_last_error();
        tap_ok(!bt && strstr(msg, "bad.json") && strstr(msg, bad[i].expect), "malformed tokenizer.json %zu refused: %s", i, msg);
        scp_tokenizer_free(bt);
        free(bp);
    }
    free(js);
    free(js2);
    free(p);
    free(p2);
}

/* ---- a small llama2.c tokenizer.bin ---- */

static void put_tok(FILE *f, float score, const char *s)
{
    int32_t l = (int32_t)strlen(s);
    fwrite(&score, 4, 1, f);
    fwrite(&l, 4, 1, f);
    fwrite(s, 1, (size_t)l, f);
}

static void test_small_llama2c(void)
{
    /* <unk> <s> </s>, 256 byte tokens, then pieces with scores: run.c merges the best-scoring pair first. */
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
    /* 259 ' ', 260 'a', 261 'b', 262 'c', 263 ' a' (-1), 264 'ab' (-2), 265 'bc' (-0.5), 266 ' ab' (-3) */
    put_tok(f, -10, " ");
    put_tok(f, -10, "a");
    put_tok(f, -10, "b");
    put_tok(f, -10, "c");
    put_tok(f, -1, " a");
    put_tok(f, -2, "ab");
    put_tok(f, -0.5f, "bc");
    put_tok(f, -3, " ab");
    fclose(f);
    scp_tokenizer *t = scp_tokenizer_load(p);
    if (!tap_ok(t != NULL, "load a small llama2.c tokenizer.bin: %s", t ? "ok" : scp_last_error())) { free(p); return; }
    tap_ok(scp_tokenizer_vocab_size(t) == 267 && scp_tokenizer_bos_id(t) == 1 && scp_tokenizer_eos_id(t) == 2, "267 tokens, bos 1, eos 2");
    /* "abc": dummy prefix -> " abc"; pairs ( ,a)=-1 (a,b)=-2 (b,c)=-0.5: bc first -> " a" "bc" -> (' a','bc') none */
    const int32_t w1[] = {263, 265};
    tap_ok(enc_is(t, "abc", 1, w1, 2), "score order: 'bc' (-0.5) before ' a' (-1): ' a' 'bc'");
    /* "ab": " ab" -> ' a' first (-1), then (' a','b') = ' ab' */
    const int32_t w2[] = {266};
    tap_ok(enc_is(t, "ab", 1, w2, 1), "'ab' -> ' ab'");
    /* unknown character: byte fallback, id = byte + 3 */
    const int32_t w3[] = {263, 0xC3 + 3, 0xA9 + 3};
    tap_ok(enc_is(t, "a\xC3\xA9", 1, w3, 3), "byte fallback: <0xC3> <0xA9> at byte + 3");
    const int32_t w4[] = {263, 263};
    tap_ok(enc_is(t, "  a  a  ", 1, w4, 2), "SentencePiece whitespace: leading/trailing dropped, runs squeezed");
    tap_ok(enc_is(t, "", 1, NULL, 0), "empty text: no tokens (no dummy prefix)");
    int32_t ids[] = {1, 263, 265, 0xC3 + 3, 0xA9 + 3};
    size_t dl;
    char *d = scp_tokenizer_decode(t, ids, 5, 0, &dl);
    tap_ok(strcmp(d, "abc\xC3\xA9") == 0, "decode: BOS dropped, dummy space stripped, bytes joined: '%s'", d);
    free(d);
    scp_tokenizer_free(t);

    /* truncated and corrupt files */
    scp_map m;
    scp_map_file(&m, p);
    size_t cuts[] = {2, 10, 30, m.size - 1};
    for (int i = 0; i < 4; i++) {
        char *q = write_file("cut.bin", (const char *)m.data, cuts[i]);
        scp_tokenizer *bt = scp_tokenizer_load(q);
        tap_ok(!bt && strstr(scp_last_error(), "cut.bin"), "tokenizer.bin cut at %zu bytes refused: %s", cuts[i], scp_last_error());
        free(q);
    }
    /* The reader itself (tok/llama2c_bin.h), as scp-import and the GGUF export use it. */
    scp_llama2c_vocab v;
    tap_ok(scp_llama2c_vocab_read(&v, m.data, m.size, -1, "tok.bin") == 0 && v.n == 267 && v.max_token_length == 16 &&
               v.len[1] == 5 && memcmp(v.bytes[1], "\n<s>\n", 5) == 0 && v.score[265] == -0.5f,
           "scp_llama2c_vocab_read: 267 tokens, lengths, bytes and scores");
    scp_llama2c_vocab_free(&v);
    tap_ok(scp_llama2c_vocab_read(&v, m.data, m.size, 267, "tok.bin") == 0 && v.n == 267, "with the model's vocabulary of 267");
    scp_llama2c_vocab_free(&v);
    tap_ok(scp_llama2c_vocab_read(&v, m.data, m.size, 266, "tok.bin") != 0 && strstr(scp_last_error(), "tok.bin: 11 bytes after the 266 tokens"),
           "a vocabulary of 266: the last token (8 + 3 bytes) is left over: %s", scp_last_error());
    scp_llama2c_vocab_free(&v);
    tap_ok(scp_llama2c_vocab_read(&v, m.data, m.size, 268, "tok.bin") != 0 && strstr(scp_last_error(), "truncated at token 267"),
           "a vocabulary of 268: %s", scp_last_error());
    scp_llama2c_vocab_free(&v);
    uint8_t *bad = malloc(m.size);
    memcpy(bad, m.data, m.size);
    const uint32_t nan_bits = 0x7fc00000u, long_len = 17;
    memcpy(bad + 4, &nan_bits, 4);   /* token 0's score */
    tap_ok(scp_llama2c_vocab_read(&v, bad, m.size, -1, "tok.bin") != 0 && strstr(scp_last_error(), "token 0 has a score that is not a number"),
           "a NaN score: %s", scp_last_error());
    scp_llama2c_vocab_free(&v);
    memcpy(bad + 4, m.data + 4, 4);
    memcpy(bad + 8, &long_len, 4);   /* token 0's length */
    tap_ok(scp_llama2c_vocab_read(&v, bad, m.size, -1, "tok.bin") != 0 && strstr(scp_last_error(), "token 0 has length 17, more than max_token_length 16"),
           "a length past max_token_length: %s", scp_last_error());
    scp_llama2c_vocab_free(&v);
    free(bad);
    scp_unmap(&m);
    char junk[64];
    memset(junk, 0xAB, sizeof junk);
    junk[0] = 0x0a;
    char *q = write_file("junk.model", junk, sizeof junk);
    scp_tokenizer *bt = scp_tokenizer_load(q);
    tap_ok(!bt && strstr(scp_last_error(), "junk.model"), "corrupt .model refused: %s", scp_last_error());
    free(q);
    free(p);
}

/* ---- a small SentencePiece .model ---- */

static size_t pb_varint(uint8_t *o, uint64_t x)
{
    size_t n = 0;
    do {
        o[n++] = (uint8_t)((x & 0x7F) | (x > 0x7F ? 0x80 : 0));
        x >>= 7;
    } while (x);
    return n;
}

/* A protobuf field: its key, then the varint v (wire type 0), or the length v and v bytes (wire type 2). */
static size_t pb_put(uint8_t *o, unsigned field, int wt, uint64_t v, const void *bytes)
{
    size_t n = pb_varint(o, (uint64_t)field << 3 | (uint64_t)wt);
    n += pb_varint(o + n, v);
    if (wt == 2) {
        memcpy(o + n, bytes, v);
        n += v;
    }
    return n;
}

/* A piece: ModelProto field 1 holding the text (1) and the type (3). */
static size_t pb_piece(uint8_t *o, const char *text, size_t len, int type)
{
    uint8_t sub[64];
    size_t n = pb_put(sub, 1, 2, len, text);
    n += pb_put(sub + n, 3, 0, (uint64_t)type, NULL);
    return pb_put(o, 1, 2, n, sub);
}

static void test_small_spm(void)
{
    /* <unk> <s> </s>, then a user-defined piece whose text holds a NUL byte (piece text is any bytes) */
    uint8_t buf[512], spec[16];
    size_t n = 0;
    n += pb_piece(buf + n, "<unk>", 5, 2);
    n += pb_piece(buf + n, "<s>", 3, 3);
    n += pb_piece(buf + n, "</s>", 4, 3);
    n += pb_piece(buf + n, "a\0b", 3, 4);
    n += pb_piece(buf + n, "a", 1, 1);
    size_t sn = pb_put(spec, 3, 0, 2, NULL);   /* trainer_spec.model_type = BPE */
    n += pb_put(buf + n, 2, 2, sn, spec);
    char *p = write_file("nul.model", (const char *)buf, n);
    scp_tokenizer *t = scp_tokenizer_load(p);
    if (tap_ok(t != NULL, "a .model with a NUL byte in a user-defined piece loads: %s", t ? "ok" : scp_last_error())) {
        int32_t id = 3;
        size_t dl = 0;
        char *d = scp_tokenizer_decode(t, &id, 1, 0, &dl);
        tap_ok(dl == 3 && memcmp(d, "a\0b", 3) == 0, "the piece decodes to its 3 bytes, the NUL included");
        free(d);
    }
    scp_tokenizer_free(t);
    free(p);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/scp-unit-tok.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;
    test_splitters();
    test_split_match_limit();
    test_nfc_utf8();
    test_small_bytelevel();
    test_small_llama2c();
    test_small_spm();
    scp_rm_rf(tmpdir);
    return tap_done();
}
