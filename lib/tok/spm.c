/* tok/spm.c: SentencePiece .model files (the ModelProto protobuf, read directly) and llama2.c tokenizer.bin
 * (u32 max_token_length, then per token: f32 score, i32 length, bytes).
 *
 * Both are BPE over pieces merged by score (SentencePiece's bpe_model.cc and llama2.c's run.c encode() agree:
 * the adjacent pair whose concatenation is a piece with the highest score, leftmost on ties), with spaces
 * written U+2581, a dummy prefix and byte fallback (<0xXX> pieces). A tokenizer.bin is a SentencePiece model
 * exported by llama2.c's tokenizer.py, so it gets the SentencePiece normaliser (leading/trailing spaces
 * dropped, runs of spaces squeezed), which is what produced the training data; run.c itself keeps extra
 * spaces, and differs only there. */
#include "tok/tok_internal.h"
#include "tok/llama2c_bin.h"
#include "core/error.h"
#include "core/io.h"

#include <stdlib.h>
#include <string.h>

/* ---- protobuf wire format ---- */

typedef struct pb {
    const uint8_t *p, *end;
} pb;

static int pb_varint(pb *b, uint64_t *v)
{
    uint64_t r = 0;
    for (int s = 0; s < 64; s += 7) {
        if (b->p >= b->end) return -1;
        uint8_t c = *b->p++;
        r |= (uint64_t)(c & 0x7F) << s;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* Next field: tag, wire type, and for length-delimited the sub-buffer; for fixed32 the raw value. */
static int pb_field(pb *b, uint32_t *field, int *wt, uint64_t *val, pb *sub)
{
    uint64_t key;
    if (pb_varint(b, &key)) return -1;
    *field = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    switch (*wt) {
    case 0:
        return pb_varint(b, val);
    case 1:
        if (b->end - b->p < 8) return -1;
        memcpy(val, b->p, 8);
        b->p += 8;
        return 0;
    case 2: {
        uint64_t len;
        if (pb_varint(b, &len) || len > (uint64_t)(b->end - b->p)) return -1;
        sub->p = b->p;
        sub->end = b->p + len;
        b->p += len;
        return 0;
    }
    case 5: {
        if (b->end - b->p < 4) return -1;
        uint32_t v;
        memcpy(&v, b->p, 4);
        *val = v;
        b->p += 4;
        return 0;
    }
    default:
        return -1;
    }
}

enum { SP_NORMAL = 1, SP_UNKNOWN = 2, SP_CONTROL = 3, SP_USER_DEFINED = 4, SP_UNUSED = 5, SP_BYTE = 6 };

static void spm_common(scp_tokenizer *t)
{
    t->family = TOK_SPM;
    t->pretok = TOK_PRE_NONE;
    t->spm_escape = 1;
    t->decode_strip_space = 1;
    /* piece map over the pieces as written (U+2581 for space); control/unknown/byte pieces never merge */
    tok_strmap_init(&t->piece, (uint32_t)t->n_vocab);
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->tok[id] && !(t->attr[id] & (TOK_A_UNUSED | TOK_A_ADDED))) tok_strmap_put(&t->piece, t->tok[id], t->tok_len[id], id);
    tok_merges_from_scores(t);
}

int tok_load_spm_model(scp_tokenizer *t, const char *path)
{
    scp_map m;
    if (scp_map_file(&m, path)) return -1;
    pb b = {m.data, m.data + m.size};
    int64_t unk = 0, bos = 1, eos = 2, pad = -1, model_type = 1;
    int dummy = 1, collapse = 1, escape = 1, byte_fallback = 0, have_pieces = 0;
    size_t charsmap = 0;
    int32_t n = 0;
    t->score = scp_xcalloc(1, sizeof *t->score);
    int rc = 0;
    while (b.p < b.end) {
        uint32_t f;
        int wt;
        uint64_t v = 0;
        pb sub = {0};
        if (pb_field(&b, &f, &wt, &v, &sub)) { rc = scp_error("%s: not a SentencePiece model (bad protobuf at byte %zu)", path, (size_t)(b.p - m.data)); break; }
        if (f == 1 && wt == 2) {   /* SentencePiece piece */
            const uint8_t *ps = NULL;
            size_t pl = 0;
            float score = 0;
            int type = SP_NORMAL;
            while (sub.p < sub.end) {
                uint32_t g;
                int w2;
                uint64_t v2 = 0;
                pb s2 = {0};
                if (pb_field(&sub, &g, &w2, &v2, &s2)) { rc = scp_error("%s: piece %d: bad protobuf", path, n); goto out; }
                if (g == 1 && w2 == 2) { ps = s2.p; pl = (size_t)(s2.end - s2.p); }
                else if (g == 2 && w2 == 5) { uint32_t u = (uint32_t)v2; memcpy(&score, &u, 4); }
                else if (g == 3 && w2 == 0) type = (int)v2;
            }
            if (!ps) { rc = scp_error("%s: piece %d has no text", path, n); goto out; }
            tok_alloc_vocab(t, n + 1);
            t->score = scp_xrealloc(t->score, sizeof *t->score * (size_t)(n + 1));
            tok_set_token(t, n, (const char *)ps, (uint32_t)pl);
            t->score[n] = score;
            t->attr[n] = 0;
            if (type == SP_CONTROL || type == SP_UNKNOWN) t->attr[n] |= TOK_A_SPECIAL | TOK_A_NOMERGE;
            if (type == SP_BYTE) t->attr[n] |= TOK_A_BYTE | TOK_A_NOMERGE;
            if (type == SP_UNUSED) t->attr[n] |= TOK_A_NOMERGE;
            if (type == SP_USER_DEFINED) tok_add_added(t, n, (const char *)ps, (uint32_t)pl, 0);
            n++;
            have_pieces = 1;
        } else if (f == 2 && wt == 2) {   /* TrainerSpec */
            while (sub.p < sub.end) {
                uint32_t g;
                int w2;
                uint64_t v2 = 0;
                pb s2 = {0};
                if (pb_field(&sub, &g, &w2, &v2, &s2)) { rc = scp_error("%s: trainer_spec: bad protobuf", path); goto out; }
                if (w2 != 0) continue;
                if (g == 3) model_type = (int64_t)v2;
                else if (g == 35) byte_fallback = v2 != 0;
                else if (g == 40) unk = (int32_t)v2;
                else if (g == 41) bos = (int32_t)v2;
                else if (g == 42) eos = (int32_t)v2;
                else if (g == 43) pad = (int32_t)v2;
            }
        } else if (f == 3 && wt == 2) {   /* NormalizerSpec */
            while (sub.p < sub.end) {
                uint32_t g;
                int w2;
                uint64_t v2 = 0;
                pb s2 = {0};
                if (pb_field(&sub, &g, &w2, &v2, &s2)) { rc = scp_error("%s: normalizer_spec: bad protobuf", path); goto out; }
                if (g == 2 && w2 == 2) charsmap = (size_t)(s2.end - s2.p);
                else if (g == 3 && w2 == 0) dummy = v2 != 0;
                else if (g == 4 && w2 == 0) collapse = v2 != 0;
                else if (g == 5 && w2 == 0) escape = v2 != 0;
            }
        }
    }
    if (rc) goto out;
    if (!have_pieces) { rc = scp_error("%s: not a SentencePiece model (no pieces)", path); goto out; }
    if (model_type != 2) {
        rc = scp_error("%s: SentencePiece model type %lld is not supported (only BPE, type 2)", path, (long long)model_type);
        goto out;
    }
    if (charsmap) {
        rc = scp_error("%s: precompiled normalisation rules (%zu bytes) are not supported; only the 'identity' normaliser", path, charsmap);
        goto out;
    }
    t->unk_id = unk >= 0 && unk < n ? (int32_t)unk : -1;
    t->bos = bos >= 0 && bos < n ? (int32_t)bos : -1;
    t->eos = eos >= 0 && eos < n ? (int32_t)eos : -1;
    t->pad = pad >= 0 && pad < n ? (int32_t)pad : -1;
    t->byte_fallback = byte_fallback;
    spm_common(t);
    t->spm_prefix = dummy;
    t->spm_collapse = collapse;
    t->spm_escape = escape;
    t->decode_strip_space = dummy;
out:
    scp_unmap(&m);
    return rc;
}

int tok_load_llama2c(scp_tokenizer *t, const char *path)
{
    scp_map m;
    if (scp_map_file(&m, path)) return -1;
    scp_llama2c_vocab v;
    int rc = scp_llama2c_vocab_read(&v, m.data, m.size, -1, path);
    int32_t n = rc ? 0 : v.n;
    if (!rc) {
        t->score = scp_xcalloc((size_t)n + 1, sizeof *t->score);
        tok_alloc_vocab(t, n);
    }
    for (int32_t id = 0; id < n; id++) {
        const uint8_t *p = v.bytes[id];
        uint32_t len = v.len[id];
        /* internal form: ' ' as U+2581, as in the SentencePiece model it was exported from */
        char *s = scp_xmalloc((size_t)len * 3 + 1);
        uint32_t o = 0;
        for (uint32_t i = 0; i < len; i++) {
            if (p[i] == ' ') { memcpy(s + o, "\xE2\x96\x81", 3); o += 3; }
            else s[o++] = (char)p[i];
        }
        s[o] = 0;
        uint8_t attr = 0;
        /* tokenizer.py writes BOS and EOS as "\n<s>\n" and "\n</s>\n" */
        if (strcmp(s, "\n<s>\n") == 0 || strcmp(s, "\n</s>\n") == 0) {
            memmove(s, s + 1, o - 2);
            o -= 2;
            s[o] = 0;
        }
        if (strcmp(s, "<unk>") == 0 || strcmp(s, "<s>") == 0 || strcmp(s, "</s>") == 0) attr = TOK_A_SPECIAL | TOK_A_NOMERGE;
        else if (tok_parse_byte_piece(s, o) >= 0) attr = TOK_A_BYTE | TOK_A_NOMERGE;
        tok_set_token(t, id, s, o);
        free(s);
        t->score[id] = v.score[id];
        t->attr[id] = attr;
    }
    scp_llama2c_vocab_free(&v);
    if (rc) goto out;
    if (n < 3) { rc = scp_error("%s: only %d tokens; a llama2.c tokenizer has <unk>, <s>, </s> first", path, n); goto out; }
    t->unk_id = 0;
    t->bos = 1;
    t->eos = 2;
    t->pad = -1;
    t->byte_fallback = 1;
    spm_common(t);
    t->spm_prefix = 1;
    t->spm_collapse = 1;
out:
    scp_unmap(&m);
    return rc;
}
