/* tok/tokenizer.c: the public tokenizer API: loading (dispatch on the file form), the encode pipeline (added
 * tokens, normalisation, pre-tokenisation, BPE), decoding, ids and the vocabulary hash. */
#include "tok/tok_internal.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char MASK_TOKEN[] = "<|mask|>";
static atomic_uint_fast64_t serial_counter = 1;

/* ---- GPT-2 byte alphabet ---- */

static uint32_t b2u[256];
static int16_t u2b[512];
static int b2u_ready;

static void b2u_init(void)
{
    if (b2u_ready) return;
    /* bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the rest map to 256, 257, ... */
    int n = 0;
    for (int i = 0; i < 512; i++) u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        b2u[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
        u2b[b2u[b]] = (int16_t)b;
    }
    b2u_ready = 1;   /* idempotent: racing initialisers write the same values */
}

uint32_t tok_byte_to_cp(uint8_t b) { b2u_init(); return b2u[b]; }

int tok_bytelevel_decode(const char *s, uint32_t len, char **out, uint32_t *outlen)
{
    b2u_init();
    char *o = scp_xmalloc(len + 1);
    uint32_t n = 0;
    for (uint32_t i = 0; i < len;) {
        uint8_t b = (uint8_t)s[i];
        uint32_t cp;
        if (b < 0x80) { cp = b; i++; }
        else if ((b & 0xE0) == 0xC0 && i + 1 < len) { cp = (uint32_t)(b & 0x1F) << 6 | ((uint8_t)s[i + 1] & 0x3F); i += 2; }
        else { free(o); return -1; }
        int v = cp < 512 ? u2b[cp] : -1;
        if (v < 0) { free(o); return -1; }
        o[n++] = (char)v;
    }
    o[n] = 0;
    *out = o;
    *outlen = n;
    return 0;
}

int tok_parse_byte_piece(const char *s, uint32_t len)
{
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ---- building ---- */

void tok_alloc_vocab(scp_tokenizer *t, int32_t n)
{
    int32_t old = t->n_vocab;
    if (n <= old) return;
    t->tok = scp_xrealloc(t->tok, sizeof *t->tok * (size_t)n);
    t->tok_len = scp_xrealloc(t->tok_len, sizeof *t->tok_len * (size_t)n);
    t->attr = scp_xrealloc(t->attr, (size_t)n);
    if (t->score) t->score = scp_xrealloc(t->score, sizeof *t->score * (size_t)n);
    for (int32_t i = old; i < n; i++) {
        t->tok[i] = NULL;
        t->tok_len[i] = 0;
        t->attr[i] = TOK_A_UNUSED;
        if (t->score) t->score[i] = 0;
    }
    t->n_vocab = n;
}

void tok_set_token(scp_tokenizer *t, int32_t id, const char *s, uint32_t len)
{
    if (id >= t->n_vocab) tok_alloc_vocab(t, id + 1);
    free(t->tok[id]);
    t->tok[id] = scp_xmalloc(len + 1);
    memcpy(t->tok[id], s, len);
    t->tok[id][len] = 0;
    t->tok_len[id] = len;
    t->attr[id] &= (uint8_t)~TOK_A_UNUSED;
}

int tok_add_added(scp_tokenizer *t, int32_t id, const char *s, uint32_t len, int special)
{
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) {
            if (special) t->added[i].special = 1;
            return 0;
        }
    if (!len) return 0;
    t->added = scp_xrealloc(t->added, sizeof *t->added * (size_t)(t->n_added + 1));
    tok_added *a = &t->added[t->n_added++];
    memset(a, 0, sizeof *a);
    a->id = id;
    a->s = scp_xmalloc(len + 1);
    memcpy(a->s, s, len);
    a->s[len] = 0;
    a->len = len;
    a->special = (uint8_t)(special != 0);
    if (id >= t->n_vocab || !t->tok[id]) tok_set_token(t, id, s, len);
    t->attr[id] |= TOK_A_ADDED | TOK_A_NOMERGE | (special ? TOK_A_SPECIAL : 0);
    return 0;
}

typedef struct { float s; int32_t id; } sc;

static int sc_cmp(const void *a, const void *b)
{
    const sc *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void tok_merges_from_scores(scp_tokenizer *t)
{
    /* rank = dense rank of the score, highest first: equal scores share a rank, so the leftmost pair wins. */
    int32_t n = t->n_vocab;
    int32_t *order = scp_xmalloc(sizeof *order * (size_t)n);
    int m = 0;
    for (int32_t i = 0; i < n; i++)
        if (t->tok[i] && !(t->attr[i] & (TOK_A_NOMERGE | TOK_A_UNUSED))) order[m++] = i;
    /* insertion into a sorted copy of the scores would be O(n^2); qsort over (score, id) pairs instead */
    sc *v = scp_xmalloc(sizeof *v * (size_t)(m ? m : 1));
    for (int i = 0; i < m; i++) v[i] = (sc){t->score[order[i]], order[i]};
    qsort(v, (size_t)m, sizeof *v, sc_cmp);
    int32_t *rank = scp_xmalloc(sizeof *rank * (size_t)n);
    int32_t r = 0;
    for (int i = 0; i < m; i++) {
        if (i > 0 && v[i].s != v[i - 1].s) r++;
        rank[v[i].id] = r;
    }
    tok_pairmap_init(&t->merges, (uint32_t)m * 2);
    for (int i = 0; i < m; i++) {
        int32_t id = v[i].id;
        const char *s = t->tok[id];
        uint32_t len = t->tok_len[id];
        for (uint32_t k = 1; k < len; k++) {
            if (((uint8_t)s[k] & 0xC0) == 0x80) continue;   /* split only between characters */
            int32_t a = tok_strmap_get(&t->piece, s, k), b = tok_strmap_get(&t->piece, s + k, len - k);
            if (a < 0 || b < 0 || (t->attr[a] & TOK_A_NOMERGE) || (t->attr[b] & TOK_A_NOMERGE)) continue;
            tok_pairmap_put(&t->merges, a, b, rank[id], id);
        }
    }
    free(rank);
    free(v);
    free(order);
}

/* A token's len bytes and a NUL. A token may hold NUL bytes (a SentencePiece piece or a tokenizer.bin token is
 * any bytes), so its length is tok_len, never strlen. */
static char *token_dup(const char *s, uint32_t len)
{
    char *d = scp_xmalloc((size_t)len + 1);
    memcpy(d, s, len);
    d[len] = 0;
    return d;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

int tok_finish(scp_tokenizer *t)
{
    /* dec strings */
    t->dec = scp_xcalloc((size_t)t->n_vocab, sizeof *t->dec);
    t->dec_len = scp_xcalloc((size_t)t->n_vocab, sizeof *t->dec_len);
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->tok[id];
        uint32_t len = t->tok_len[id];
        if (!s) {
            t->dec[id] = scp_xstrdup("");
            continue;
        }
        if (t->attr[id] & TOK_A_ADDED) {
            t->dec[id] = token_dup(s, len);
            t->dec_len[id] = len;
            continue;
        }
        if (t->family == TOK_BYTELEVEL) {
            if (tok_bytelevel_decode(s, len, &t->dec[id], &t->dec_len[id]) != 0) {
                t->dec[id] = token_dup(s, len);   /* outside the byte alphabet: keep as written */
                t->dec_len[id] = len;
            } else if (t->dec_len[id] == 1 && t->byte_id[(uint8_t)t->dec[id][0]] < 0) {
                t->byte_id[(uint8_t)t->dec[id][0]] = id;
            }
            continue;
        }
        int b = tok_parse_byte_piece(s, len);
        if (b >= 0 && (t->attr[id] & TOK_A_BYTE)) {
            t->dec[id] = scp_xmalloc(2);
            t->dec[id][0] = (char)b;
            t->dec[id][1] = 0;
            t->dec_len[id] = 1;
            if (t->byte_id[b] < 0) t->byte_id[b] = id;
            continue;
        }
        /* U+2581 -> ' ' */
        char *o = scp_xmalloc(len + 1);
        uint32_t n = 0;
        for (uint32_t i = 0; i < len; i++) {
            if (i + 2 < len && (uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 && (uint8_t)s[i + 2] == 0x81) {
                o[n++] = ' ';
                i += 2;
            } else {
                o[n++] = s[i];
            }
        }
        o[n] = 0;
        t->dec[id] = o;
        t->dec_len[id] = n;
    }
    /* piece map: internal form (raw bytes for byte-level) -> id; the first id wins for duplicates */
    if (!t->piece.cap) {
        tok_strmap_init(&t->piece, (uint32_t)t->n_vocab);
        for (int32_t id = 0; id < t->n_vocab; id++) {
            if (!t->tok[id] || (t->attr[id] & TOK_A_ADDED)) continue;
            if (t->family == TOK_BYTELEVEL) tok_strmap_put(&t->piece, t->dec[id], t->dec_len[id], id);
            else tok_strmap_put(&t->piece, t->tok[id], t->tok_len[id], id);
        }
    }
    /* SentencePiece-style: may we split before each word (U+2581 after another character)? */
    if (t->family == TOK_SPM) {
        int ok = 1;
        for (int32_t id = 0; id < t->n_vocab && ok; id++) {
            const char *s = t->tok[id];
            if (!s || (t->attr[id] & TOK_A_NOMERGE)) continue;
            int lead = 1;
            for (uint32_t i = 0; i < t->tok_len[id]; i++) {
                int meta = i + 2 < t->tok_len[id] && (uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 && (uint8_t)s[i + 2] == 0x81;
                if (meta && !lead) { ok = 0; break; }
                if (meta) i += 2;
                else lead = 0;
            }
        }
        t->spm_split_ok = ok;
    }
    memset(t->added_first, 0, sizeof t->added_first);
    for (int i = 0; i < t->n_added; i++) t->added_first[(uint8_t)t->added[i].s[0]] = 1;
    if (t->pretok == TOK_PRE_GPT2 || t->pretok == TOK_PRE_QWEN2 || t->pretok == TOK_PRE_LLAMA3) tok_pretok_init();
    t->mask = scp_tokenizer_token_id(t, MASK_TOKEN);
    /* hash: FNV-1a 64 over u32 vocabulary size, then per id u32 length + decoded bytes; "<|mask|>" excluded */
    uint64_t h = 1469598103934665603ull;
    uint32_t nv = (uint32_t)t->n_vocab - (t->mask >= 0 ? 1 : 0);
    uint8_t le[4] = {(uint8_t)nv, (uint8_t)(nv >> 8), (uint8_t)(nv >> 16), (uint8_t)(nv >> 24)};
    h = fnv1a(h, le, 4);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (id == t->mask) continue;
        uint32_t l = t->dec_len[id];
        uint8_t lb[4] = {(uint8_t)l, (uint8_t)(l >> 8), (uint8_t)(l >> 16), (uint8_t)(l >> 24)};
        h = fnv1a(h, lb, 4);
        h = fnv1a(h, t->dec[id], l);
    }
    t->hash = h;
    t->serial = atomic_fetch_add(&serial_counter, 1);
    return 0;
}

/* ---- tokenizer_config.json ---- */

static const char *cfg_token(json_t *v)
{
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static int apply_config(scp_tokenizer *t, const char *cfgpath)
{
    json_t *j = scp_json_load(cfgpath);
    if (!j) return -1;
    if (!json_is_object(j)) {
        json_decref(j);
        return scp_error("%s: not a JSON object", cfgpath);
    }
    json_t *atd = json_object_get(j, "added_tokens_decoder");
    if (atd && json_is_object(atd)) {
        const char *k;
        json_t *v;
        json_object_foreach(atd, k, v) {
            char *end;
            long id = strtol(k, &end, 10);
            const char *content = json_string_value(json_object_get(v, "content"));
            if (*end || id < 0 || id > 16777216 || !content) {
                /* k lives in j: the message is made before j is freed */
                scp_error("%s: added_tokens_decoder entry '%s' is not an id with a \"content\" string", cfgpath, k);
                json_decref(j);
                return -1;
            }
            if (id < t->n_vocab && t->tok[id] && !(t->attr[id] & TOK_A_UNUSED)) continue;   /* already known */
            json_t *sp = json_object_get(v, "special");
            tok_add_added(t, (int32_t)id, content, (uint32_t)strlen(content), sp ? json_is_true(sp) : 1);
        }
    }
    struct { const char *key; int32_t *dst; } sp[] = {{"bos_token", &t->bos}, {"eos_token", &t->eos}, {"pad_token", &t->pad}};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(j, sp[i].key);
        if (!v) continue;
        if (json_is_null(v)) { *sp[i].dst = -1; continue; }
        const char *s = cfg_token(v);
        if (!s) continue;
        int32_t id = -1;
        for (int32_t k = 0; k < t->n_vocab; k++)
            if (t->tok[k] && strcmp(t->tok[k], s) == 0) { id = k; break; }
        if (id >= 0) *sp[i].dst = id;
    }
    json_decref(j);
    return 0;
}

/* ---- loading ---- */

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static char *dir_of(const char *path)
{
    const char *sl = strrchr(path, '/');
    if (!sl) return scp_xstrdup(".");
    size_t n = (size_t)(sl - path);
    char *d = scp_xmalloc(n + 2);
    memcpy(d, path, n ? n : 1);
    d[n ? n : 1] = 0;
    if (!n) d[0] = '/';
    return d;
}

static int load_file(scp_tokenizer *t, const char *path)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (ends_with(path, ".model")) return tok_load_spm_model(t, path);
    if (ends_with(path, ".bin")) return tok_load_llama2c(t, path);
    if (strcmp(base, "vocab.bpe") == 0 || strcmp(base, "encoder.json") == 0) {
        char *d = dir_of(path);
        char *e = scp_path_join(d, "encoder.json"), *v = scp_path_join(d, "vocab.bpe");
        int rc = tok_load_gpt2(t, e, v);
        free(e);
        free(v);
        free(d);
        return rc;
    }
    if (ends_with(path, ".json")) return tok_load_hfjson(t, path);
    /* sniff */
    FILE *f = fopen(path, "rb");
    if (!f) return scp_error("%s: cannot open tokenizer", path);
    int c = fgetc(f);
    fclose(f);
    if (c == '{') return tok_load_hfjson(t, path);
    if (c == 0x0a) return tok_load_spm_model(t, path);
    return tok_load_llama2c(t, path);
}

scp_tokenizer *scp_tokenizer_load(const char *path)
{
    scp_tokenizer *t = scp_xcalloc(1, sizeof *t);
    t->path = scp_xstrdup(path);
    t->bos = t->eos = t->pad = t->mask = t->unk_id = -1;
    int rc;
    char *cfg = NULL;
    if (scp_is_dir(path)) {
        static const char *names[] = {"tokenizer.json", "tokenizer.model", "tokenizer.bin", "encoder.json"};
        char *found = NULL;
        for (int i = 0; i < 4 && !found; i++) {
            char *p = scp_path_join(path, names[i]);
            if (scp_file_exists(p)) found = p;
            else free(p);
        }
        if (!found) {
            scp_error("%s: no tokenizer in this directory (tokenizer.json, tokenizer.model, tokenizer.bin or encoder.json)", path);
            scp_tokenizer_free(t);
            return NULL;
        }
        rc = load_file(t, found);
        free(found);
        cfg = scp_path_join(path, "tokenizer_config.json");
    } else {
        rc = load_file(t, path);
        char *d = dir_of(path);
        cfg = scp_path_join(d, "tokenizer_config.json");
        free(d);
    }
    if (rc == 0 && scp_file_exists(cfg)) rc = apply_config(t, cfg);
    free(cfg);
    if (rc == 0) rc = tok_finish(t);
    if (rc) {
        scp_tokenizer_free(t);
        return NULL;
    }
    return t;
}

void scp_tokenizer_free(scp_tokenizer *t)
{
    if (!t) return;
    tok_cache_release(t);
    for (int32_t i = 0; i < t->n_vocab; i++) {
        free(t->tok[i]);
        if (t->dec) free(t->dec[i]);
    }
    free(t->tok);
    free(t->tok_len);
    free(t->dec);
    free(t->dec_len);
    free(t->attr);
    free(t->score);
    tok_strmap_free(&t->piece);
    tok_pairmap_free(&t->merges);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].s);
    free(t->added);
    if (t->re) tok_regex_free(t->re);
    free(t->path);
    free(t);
}

/* ---- encoding ---- */

typedef struct enc_ctx {
    const scp_tokenizer *t;
    tok_ids *out;
} enc_ctx;

static int on_piece(void *ctx, const char *s, size_t len)
{
    enc_ctx *c = ctx;
    return tok_bpe_word(c->t, s, len, c->out);
}

/* Split before each U+2581 that follows a character other than U+2581 (exact when no piece holds U+2581
 * after another character, checked at load), so that BPE never works on a whole document at once. */
static int split_words(const scp_tokenizer *t, const char *s, size_t n, enc_ctx *c)
{
    size_t start = 0;
    int prev_meta = 1;
    for (size_t i = 0; i < n;) {
        int meta = i + 3 <= n && (uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 && (uint8_t)s[i + 2] == 0x81;
        if (meta && !prev_meta && i > start) {
            if (tok_bpe_word(t, s + start, i - start, c->out)) return -1;
            start = i;
        }
        prev_meta = meta;
        i += meta ? 3 : 1;
    }
    return tok_bpe_word(t, s + start, n - start, c->out);
}

static int encode_segment(const scp_tokenizer *t, const char *s, size_t n, int first, tok_ids *out)
{
    char *nb = NULL, *sb = NULL;
    if (t->nfc) {
        size_t nl;
        nb = tok_nfc(s, n, &nl);
        if (nb) { s = nb; n = nl; }
    }
    if (t->family == TOK_SPM && (t->spm_escape || t->spm_prefix || t->spm_collapse)) {
        /* SentencePiece normaliser: strip and squeeze spaces, dummy prefix, spaces as U+2581 */
        size_t a = 0, b = n;
        if (t->spm_collapse) {
            while (a < b && s[a] == ' ') a++;
            while (b > a && s[b - 1] == ' ') b--;
        }
        sb = scp_xmalloc(3 * (b - a) + 4);
        size_t o = 0;
        int pre = t->spm_prefix == 1 || t->spm_prefix == 3 || (t->spm_prefix == 2 && first);
        /* Metaspace (2, 3) does not prepend to a segment that already starts with U+2581 (or a space) */
        if (pre && t->spm_prefix >= 2 && b > a &&
            (s[a] == ' ' || (b - a >= 3 && (uint8_t)s[a] == 0xE2 && (uint8_t)s[a + 1] == 0x96 && (uint8_t)s[a + 2] == 0x81)))
            pre = 0;
        if (pre && b > a) {
            memcpy(sb, "\xE2\x96\x81", 3);
            o = 3;
        }
        for (size_t i = a; i < b; i++) {
            if (s[i] == ' ') {
                if (t->spm_collapse && i > a && s[i - 1] == ' ') continue;
                if (t->spm_escape) {
                    memcpy(sb + o, "\xE2\x96\x81", 3);
                    o += 3;
                    continue;
                }
            }
            sb[o++] = s[i];
        }
        /* SentencePiece strips trailing U+2581 after escaping, so a literal U+2581 at the end goes too */
        if (t->spm_collapse && t->spm_escape)
            while (o >= 3 && (uint8_t)sb[o - 3] == 0xE2 && (uint8_t)sb[o - 2] == 0x96 && (uint8_t)sb[o - 1] == 0x81) o -= 3;
        s = sb;
        n = o;
    } else if (t->bl_prefix_space && n && s[0] != ' ') {
        sb = scp_xmalloc(n + 1);
        sb[0] = ' ';
        memcpy(sb + 1, s, n);
        s = sb;
        n++;
    }
    enc_ctx c = {t, out};
    int rc;
    if (t->family == TOK_SPM && t->pretok == TOK_PRE_NONE && t->spm_split_ok) rc = split_words(t, s, n, &c);
    else rc = tok_pretokenize(t, s, n, on_piece, &c);
    free(nb);
    free(sb);
    return rc;
}

static int is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static int is_word(uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80; }

int scp_tokenizer_encode(const scp_tokenizer *t, const char *text, size_t len, int special, int32_t **ids, size_t *n)
{
    size_t sl;
    char *san = tok_utf8_sanitize(text, len, &sl);
    if (san) {
        text = san;
        len = sl;
    }
    tok_ids out = {0};
    out.v = scp_xmalloc(sizeof *out.v * (out.cap = len / 3 + 16));
    size_t seg = 0, i = 0;
    int rc = 0;
    const uint8_t *s = (const uint8_t *)text;
    while (i < len && t->n_added) {
        if (!t->added_first[s[i]]) {
            i++;
            continue;
        }
        int best = -1;
        uint32_t blen = 0;
        for (int k = 0; k < t->n_added; k++) {
            const tok_added *a = &t->added[k];
            if (a->special && !special) continue;
            if (a->len <= blen || a->len > len - i || memcmp(text + i, a->s, a->len) != 0) continue;
            if (a->single_word && ((i > 0 && is_word(s[i - 1])) || (i + a->len < len && is_word(s[i + a->len])))) continue;
            best = k;
            blen = a->len;
        }
        if (best < 0) {
            i++;
            continue;
        }
        const tok_added *a = &t->added[best];
        size_t ms = i, me = i + a->len;
        if (a->lstrip) while (ms > seg && is_ws(s[ms - 1])) ms--;
        if (a->rstrip) while (me < len && is_ws(s[me])) me++;
        if (ms > seg && (rc = encode_segment(t, text + seg, ms - seg, seg == 0, &out))) break;
        tok_ids_push(&out, a->id);
        seg = i = me;
    }
    if (!rc && len > seg) rc = encode_segment(t, text + seg, len - seg, seg == 0, &out);
    free(san);
    if (rc) {
        free(out.v);
        return -1;
    }
    *ids = out.v;
    *n = out.n;
    return 0;
}

char *scp_tokenizer_decode(const scp_tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len)
{
    size_t cap = 64, o = 0;
    char *out = scp_xmalloc(cap);
    int at_start = 1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) continue;
        if (skip_special && (t->attr[id] & TOK_A_SPECIAL)) continue;
        const char *d = t->dec[id];
        size_t l = t->dec_len[id];
        if (t->attr[id] & TOK_A_SPECIAL) {
            /* a BOS resets the dummy-prefix strip, as run.c and SentencePiece do per sequence */
            at_start = 1;
            if (t->family == TOK_SPM && (id == t->bos || id == t->eos)) continue;
        } else if (at_start) {
            if (t->decode_strip_space && l && d[0] == ' ') {
                d++;
                l--;
            }
            at_start = 0;
        }
        if (o + l + 1 > cap) out = scp_xrealloc(out, cap = (o + l + 1) * 2);
        memcpy(out + o, d, l);
        o += l;
    }
    out[o] = 0;
    if (len) *len = o;
    return out;
}

int scp_tokenizer_vocab_size(const scp_tokenizer *t) { return t->n_vocab; }
int scp_tokenizer_bos_id(const scp_tokenizer *t) { return t->bos; }
int scp_tokenizer_eos_id(const scp_tokenizer *t) { return t->eos; }
int scp_tokenizer_pad_id(const scp_tokenizer *t) { return t->pad; }
uint64_t scp_tokenizer_hash(const scp_tokenizer *t) { return t->hash; }

int scp_tokenizer_token_id(const scp_tokenizer *t, const char *token)
{
    size_t l = strlen(token);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == l && memcmp(t->added[i].s, token, l) == 0) return t->added[i].id;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->tok[id] && t->tok_len[id] == l && memcmp(t->tok[id], token, l) == 0) return id;
    return -1;
}

int scp_tokenizer_in_dir(const char *dir)
{
    static const char *names[] = {"tokenizer.json", "tokenizer.bin", "tokenizer.model", "encoder.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = scp_path_join(dir, names[i]);
        int e = scp_file_exists(p);
        free(p);
        if (e) return 1;
    }
    return 0;
}

int scp_tokenizer_check_data(const scp_tokenizer *tok, const char *tok_name, uint64_t data_hash, const char *data_name)
{
    uint64_t h = scp_tokenizer_hash(tok);
    if (data_hash == 0 || data_hash == h) return 0;
    return scp_error("%s: tokenized with another tokenizer (hash %016" PRIx64 ") than %s (hash %016" PRIx64
                     "); tokenize the data with that tokenizer (scp-tokenize --model %s)",
                     data_name, data_hash, tok_name, h, tok_name);
}

int scp_tokenizer_check_dir(const char *dir, uint64_t data_hash, const char *data_name)
{
    if (data_hash == 0 || !scp_tokenizer_in_dir(dir)) return 0;
    scp_tokenizer *t = scp_tokenizer_load(dir);
    if (!t) return -1;
    int rc = scp_tokenizer_check_data(t, dir, data_hash, data_name);
    scp_tokenizer_free(t);
    return rc;
}
