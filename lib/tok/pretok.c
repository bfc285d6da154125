/* tok/pretok.c: pre-tokenisation (splitting normalised text into the pieces BPE works on), NFC, UTF-8 repair.
 *
 * Hugging Face tokenizers runs its Split/ByteLevel regexes with Oniguruma. The three patterns real byte-level
 * models use (GPT-2's, Qwen2/Qwen3's, Llama 3's) are implemented here by hand as the leftmost-first
 * alternation the regex engine performs; any other pattern goes through PCRE2 (UTF + UCP + JIT), with \s widened
 * to Oniguruma's (Unicode White_Space, which includes U+0085). tests/tok/unit-tokenizer checks the hand-written
 * splitters against PCRE2 on the same text. */
#include "tok/tok_internal.h"
#include "core/error.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

const char tok_pattern_gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char tok_pattern_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char tok_pattern_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Character classes of every code point: letter (\p{L}), number (\p{N}), white space (Oniguruma's \s,
 * Unicode White_Space), and \r \n. One byte per code point, built once.
 * \p{L} and \p{N} are taken from PCRE2 rather than utf8proc: the two must agree with Hugging Face's
 * Oniguruma on every code point, and Debian's PCRE2 (10.42) and the Oniguruma that tokenizers bundles (6.9.8)
 * both implement Unicode 14, while utf8proc 2.8 is Unicode 15 (letters and digits added in 15 would differ).
 * All code points are written out as one UTF-8 string and the runs that \p{L}+ and \p{N}+ match are marked. */
enum { C_L = 1, C_N = 2, C_WS = 4, C_NL = 8 };
static uint8_t *cls_table;
static pthread_once_t cls_once = PTHREAD_ONCE_INIT;

static void mark_runs(uint8_t *c, const uint8_t *all, size_t len, const char *pattern, uint8_t bit)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!re) return;
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    size_t pos = 0;
    while (pos < len && pcre2_match(re, all, len, pos, PCRE2_NO_UTF_CHECK, md, NULL) >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        for (size_t i = ov[0]; i < ov[1];) {
            uint32_t cp;
            uint8_t b = all[i];
            int l = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
            if (l == 1) cp = b;
            else if (l == 2) cp = (uint32_t)(b & 0x1F) << 6 | (all[i + 1] & 0x3F);
            else if (l == 3) cp = (uint32_t)(b & 0x0F) << 12 | (uint32_t)(all[i + 1] & 0x3F) << 6 | (all[i + 2] & 0x3F);
            else cp = (uint32_t)(b & 0x07) << 18 | (uint32_t)(all[i + 1] & 0x3F) << 12 | (uint32_t)(all[i + 2] & 0x3F) << 6 | (all[i + 3] & 0x3F);
            c[cp] |= bit;
            i += (size_t)l;
        }
        pos = ov[1] > pos ? ov[1] : pos + 1;
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
}

static void cls_build(void)
{
    uint8_t *c = scp_xcalloc(0x110000, 1);
    uint8_t *all = scp_xmalloc(0x110000 * 4);
    size_t n = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        n += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, all + n);
    }
    mark_runs(c, all, n, "\\p{L}+", C_L);
    mark_runs(c, all, n, "\\p{N}+", C_N);
    free(all);
    static const uint32_t ws[] = {9, 10, 11, 12, 13, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) c[ws[i]] = C_WS;
    for (uint32_t cp = 0x2000; cp <= 0x200A; cp++) c[cp] = C_WS;
    c['\r'] = c['\n'] = C_WS | C_NL;
    cls_table = c;
}

/* Decode one code point of valid UTF-8 at s[i] (i < n); returns its length. */
static inline int dec(const uint8_t *s, size_t i, size_t n, uint32_t *cp)
{
    uint8_t b = s[i];
    if (b < 0x80) { *cp = b; return 1; }
    if (b < 0xE0 && i + 1 < n) { *cp = (uint32_t)(b & 0x1F) << 6 | (s[i + 1] & 0x3F); return 2; }
    if (b < 0xF0 && i + 2 < n) { *cp = (uint32_t)(b & 0x0F) << 12 | (uint32_t)(s[i + 1] & 0x3F) << 6 | (s[i + 2] & 0x3F); return 3; }
    if (i + 3 < n) {
        *cp = (uint32_t)(b & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3F) << 12 | (uint32_t)(s[i + 2] & 0x3F) << 6 | (s[i + 3] & 0x3F);
        if (*cp >= 0x110000) *cp = 0xFFFD;
        return 4;
    }
    *cp = 0xFFFD;   /* truncated sequence (input is sanitised before, so only at a cut) */
    return 1;
}

static inline int cls_at(const uint8_t *s, size_t i, size_t n, int *len)
{
    uint32_t cp;
    *len = dec(s, i, n, &cp);
    return cls_table[cp];
}

/* End of the run of characters from i whose class satisfies (cls & mask) == want. */
static inline size_t run(const uint8_t *s, size_t i, size_t n, int mask, int want)
{
    while (i < n) {
        if (s[i] < 0x80) {
            if ((cls_table[s[i]] & mask) != want) break;
            i++;
            continue;
        }
        int l;
        if ((cls_at(s, i, n, &l) & mask) != want) break;
        i += (size_t)l;
    }
    return i;
}

#define IS_OTHER(c) (((c) & (C_L | C_N | C_WS)) == 0)

/* \s+(?!\S)|\s+ at i (a white-space character): the run, less its last character when a non-space follows
 * and the run has more than one character. */
static size_t ws_tail(const uint8_t *s, size_t i, size_t n)
{
    size_t k = run(s, i, n, C_WS, C_WS);
    if (k == n) return k;
    size_t p = k - 1;
    while (p > i && (s[p] & 0xC0) == 0x80) p--;   /* start of the last character */
    return p > i ? p : k;
}

static size_t m_gpt2(const uint8_t *s, size_t n, size_t i)
{
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < n) {
            uint8_t b = s[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        }
    }
    int l, c = cls_at(s, i, n, &l);
    if (s[i] == ' ' && i + 1 < n) {
        int l2, c2 = cls_at(s, i + 1, n, &l2);
        if (c2 & C_L) return run(s, i + 1 + (size_t)l2, n, C_L, C_L);
        if (c2 & C_N) return run(s, i + 1 + (size_t)l2, n, C_N, C_N);
        if (IS_OTHER(c2)) return run(s, i + 1 + (size_t)l2, n, C_L | C_N | C_WS, 0);
    }
    if (c & C_L) return run(s, i + (size_t)l, n, C_L, C_L);
    if (c & C_N) return run(s, i + (size_t)l, n, C_N, C_N);
    if (IS_OTHER(c)) return run(s, i + (size_t)l, n, C_L | C_N | C_WS, 0);
    return ws_tail(s, i, n);
}

static inline int lower_ascii(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Qwen2 (maxdig 1) and Llama 3 (maxdig 3). */
static size_t m_qwen(const uint8_t *s, size_t n, size_t i, int maxdig)
{
    if (s[i] == '\'' && i + 1 < n) {
        int a = lower_ascii(s[i + 1]);
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (s[i + 1] == 0xC5 && i + 2 < n && s[i + 2] == 0xBF) return i + 3;   /* U+017F long s folds to s */
        if (i + 2 < n) {
            int b = lower_ascii(s[i + 2]);
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        }
    }
    int l, c = cls_at(s, i, n, &l);
    size_t j = i + (size_t)l;
    if (c & C_L) return run(s, j, n, C_L, C_L);
    if (!(c & (C_NL | C_L | C_N)) && j < n) {   /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        int l2, c2 = cls_at(s, j, n, &l2);
        if (c2 & C_L) return run(s, j + (size_t)l2, n, C_L, C_L);
    }
    if (c & C_N) {
        for (int d = 1; d < maxdig && j < n; d++) {
            int l2, c2 = cls_at(s, j, n, &l2);
            if (!(c2 & C_N)) break;
            j += (size_t)l2;
        }
        return j;
    }
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    size_t k = i;
    int ck = c, lk = l;
    if (s[i] == ' ' && j < n) {
        int l2, c2 = cls_at(s, j, n, &l2);
        if (IS_OTHER(c2)) { k = j; ck = c2; lk = l2; }
    }
    if (IS_OTHER(ck)) {
        size_t e = run(s, k + (size_t)lk, n, C_L | C_N | C_WS, 0);
        while (e < n && (s[e] == '\r' || s[e] == '\n')) e++;
        return e;
    }
    /* white space: \s*[\r\n]+ */
    size_t e = run(s, i, n, C_WS, C_WS);
    for (size_t p = e; p > i; p--)
        if (s[p - 1] == '\r' || s[p - 1] == '\n') return p;
    return ws_tail(s, i, n);
}

void tok_pretok_init(void) { pthread_once(&cls_once, cls_build); }

int tok_split_fast(int kind, const char *text, size_t n, tok_piece_fn fn, void *ctx)
{
    pthread_once(&cls_once, cls_build);
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < n) {
        size_t e = kind == TOK_PRE_GPT2 ? m_gpt2(s, n, i) : m_qwen(s, n, i, kind == TOK_PRE_LLAMA3 ? 3 : 1);
        if (e <= i) e = i + 1;   /* cannot happen; guarantees progress */
        if (fn(ctx, text + i, e - i)) return -1;
        i = e;
    }
    return 0;
}

/* ---- PCRE2 ---- */

/* Oniguruma's \s is Unicode White_Space; PCRE2's (UCP) lacks U+0085. Widen \s and \S in the pattern. */
static char *widen_ws(const char *p)
{
    size_t n = strlen(p);
    char *o = scp_xmalloc(n * 8 + 1), *q = o;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\' && i + 1 < n) {
            if (p[i + 1] == 's') {
                q += sprintf(q, in_class ? "\\s\\x{85}" : "[\\s\\x{85}]");
                i++;
                continue;
            }
            if (p[i + 1] == 'S' && !in_class) {
                q += sprintf(q, "[^\\s\\x{85}]");
                i++;
                continue;
            }
            *q++ = p[i++];
            *q++ = p[i];
            continue;
        }
        if (p[i] == '[' && !in_class) in_class = 1;
        else if (p[i] == ']' && in_class) in_class = 0;
        *q++ = p[i];
    }
    *q = 0;
    return o;
}

void *tok_regex_compile(const char *pattern, const char *what)
{
    char *pat = widen_ws(pattern);
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, NULL);
    free(pat);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        scp_error("%s: pre-tokenizer regex /%s/ does not compile: %s", what, pattern, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* falls back to the interpreter when JIT is unavailable */
    return re;
}

void tok_regex_free(void *re) { pcre2_code_free(re); }

/* Hugging Face's Split: the text becomes segments, regex matches and the gaps between them; a segment is a
 * delimiter when it is a match (or a gap, with invert). The behavior then decides what becomes a piece:
 * isolated (0) every segment; removed (1) the non-delimiters; merged_with_previous (2) a delimiter joins the
 * piece before it; merged_with_next (3) a delimiter joins the piece after it; contiguous (4) runs of segments
 * of the same kind join. Empty matches are ignored. */
typedef struct seg {
    size_t a, b;
    int delim;
} seg;

int tok_split_regex(void *rev, int behavior, int invert, const char *s, size_t n, tok_piece_fn fn, void *ctx)
{
    pcre2_code *re = rev;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    size_t ns = 0, cap = 64, pos = 0, prev = 0;
    seg *sg = scp_xmalloc(sizeof *sg * cap);
#define ADD(x, y, d) do { if (ns + 1 >= cap) sg = scp_xrealloc(sg, sizeof *sg * (cap *= 2)); \
        sg[ns++] = (seg){(x), (y), ((d) != 0) != (invert != 0)}; } while (0)
    while (pos < n) {
        int m = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (m == PCRE2_ERROR_NOMATCH) break;
        if (m < 0) {   /* such as the match limit of a pattern that backtracks without end: not "no more pieces" */
            PCRE2_UCHAR why[256];
            pcre2_get_error_message(m, why, sizeof why);
            pcre2_match_data_free(md);
            free(sg);
            return scp_error("the pre-tokenizer's Split pattern failed at byte %zu of a %zu-byte text: %s", pos, n,
                             (const char *)why);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {   /* empty match: step one character */
            pos = ms + 1;
            while (pos < n && ((uint8_t)s[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (ms > prev) ADD(prev, ms, 0);
        ADD(ms, me, 1);
        prev = pos = me;
    }
    if (n > prev) ADD(prev, n, 0);
#undef ADD
    pcre2_match_data_free(md);
    /* apply the behavior in place: sg[0..k) become the pieces */
    size_t k = 0;
    int pm = 0;
    switch (behavior) {
    case 1:
        for (size_t i = 0; i < ns; i++)
            if (!sg[i].delim) sg[k++] = sg[i];
        break;
    case 2:
        for (size_t i = 0; i < ns; i++) {
            if (sg[i].delim && !pm && k) sg[k - 1].b = sg[i].b;
            else sg[k++] = sg[i];
            pm = sg[i].delim;
        }
        break;
    case 3:   /* the same from the right */
        k = ns;
        for (size_t i = ns; i-- > 0;) {
            int d = sg[i].delim;
            if (d && !pm && k < ns) sg[k].a = sg[i].a;
            else sg[--k] = sg[i];
            pm = d;
        }
        memmove(sg, sg + k, (ns - k) * sizeof *sg);
        k = ns - k;
        break;
    case 4:
        for (size_t i = 0; i < ns; i++) {
            if (k && sg[i].delim == pm) sg[k - 1].b = sg[i].b;
            else sg[k++] = sg[i];
            pm = sg[i].delim;
        }
        break;
    default:
        k = ns;
        break;
    }
    int rc = 0;
    for (size_t i = 0; i < k && !rc; i++)
        if (sg[i].b > sg[i].a && fn(ctx, s + sg[i].a, sg[i].b - sg[i].a)) rc = -1;
    free(sg);
    return rc;
}

/* Split before each U+2581 that follows another character (Metaspace split=true). */
static int split_metaspace(const char *s, size_t n, tok_piece_fn fn, void *ctx)
{
    size_t start = 0;
    for (size_t i = 1; i + 3 <= n; i++) {
        if ((uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 && (uint8_t)s[i + 2] == 0x81) {
            if (i > start && fn(ctx, s + start, i - start)) return -1;
            start = i;
            i += 2;
        }
    }
    return n > start ? fn(ctx, s + start, n - start) : 0;
}

int tok_pretokenize(const scp_tokenizer *t, const char *s, size_t n, tok_piece_fn fn, void *ctx)
{
    switch (t->pretok) {
    case TOK_PRE_GPT2: case TOK_PRE_QWEN2: case TOK_PRE_LLAMA3:
        return tok_split_fast(t->pretok, s, n, fn, ctx);
    case TOK_PRE_REGEX:
        return tok_split_regex(t->re, t->re_behavior, t->re_invert, s, n, fn, ctx);
    case TOK_PRE_METASPACE:
        return split_metaspace(s, n, fn, ctx);
    default:
        return n ? fn(ctx, s, n) : 0;
    }
}

/* ---- NFC ---- */

/* ASCII characters are starters that never combine with what precedes them, so NFC can be applied to each
 * maximal non-ASCII run together with the ASCII character just before it, and ASCII text is left alone. */
char *tok_nfc(const char *s, size_t n, size_t *outlen)
{
    size_t i = 0;
    while (i < n && (uint8_t)s[i] < 0x80) i++;
    if (i == n) return NULL;
    size_t cap = n + n / 2 + 16, o = 0;
    char *out = scp_xmalloc(cap);
    size_t done = 0;
    while (i < n) {
        size_t a = i > done ? i - 1 : i;   /* include the preceding ASCII starter */
        if (a < done) a = done;
        size_t b = i;
        while (b < n && (uint8_t)s[b] >= 0x80) b++;
        /* copy [done, a) as is */
        if (o + (a - done) + 1 > cap) out = scp_xrealloc(out, cap = (o + (a - done)) * 2 + 16);
        memcpy(out + o, s + done, a - done);
        o += a - done;
        utf8proc_uint8_t *r = NULL;
        utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)s + a, (utf8proc_ssize_t)(b - a), &r,
                                           UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (rl < 0) {   /* not expected on sanitised input: keep the bytes */
            rl = (utf8proc_ssize_t)(b - a);
            if (o + (size_t)rl + 1 > cap) out = scp_xrealloc(out, cap = (o + (size_t)rl) * 2 + 16);
            memcpy(out + o, s + a, (size_t)rl);
        } else {
            if (o + (size_t)rl + 1 > cap) out = scp_xrealloc(out, cap = (o + (size_t)rl) * 2 + 16);
            memcpy(out + o, r, (size_t)rl);
        }
        free(r);
        o += (size_t)rl;
        done = b;
        i = b;
        while (i < n && (uint8_t)s[i] < 0x80) i++;
    }
    if (o + (n - done) + 1 > cap) out = scp_xrealloc(out, cap = o + (n - done) + 1);
    memcpy(out + o, s + done, n - done);
    o += n - done;
    *outlen = o;
    return out;
}

/* ---- UTF-8 repair ---- */

/* Length of the valid sequence at s[i], or -k: the first k bytes are a maximal invalid subpart (k >= 1). */
static int utf8_check(const uint8_t *s, size_t i, size_t n)
{
    uint8_t b = s[i];
    if (b < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else return -1;
    for (int k = 1; k <= need; k++) {
        if (i + (size_t)k >= n) return -k;
        uint8_t c = s[i + (size_t)k];
        if (c < lo || c > hi) return -k;
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

char *tok_utf8_sanitize(const char *text, size_t n, size_t *outlen)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    for (;;) {
        while (i < n && s[i] < 0x80) i++;
        if (i == n) return NULL;
        int r = utf8_check(s, i, n);
        if (r < 0) break;
        i += (size_t)r;
    }
    char *out = scp_xmalloc(n * 3 + 1);
    memcpy(out, text, i);
    size_t o = i;
    while (i < n) {
        int r = utf8_check(s, i, n);
        if (r > 0) {
            memcpy(out + o, s + i, (size_t)r);
            o += (size_t)r;
            i += (size_t)r;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += (size_t)-r;
        }
    }
    *outlen = o;
    return out;
}
