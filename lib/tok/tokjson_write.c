/* tok/tokjson_write.c: a llama2.c tokenizer.bin as a Hugging Face tokenizer.json, laid out as transformers'
 * LlamaConverter lays out a SentencePiece BPE model: model BPE with byte_fallback, the pieces (U+2581 for
 * space) as the vocabulary, no pre-tokenizer, a normaliser that prepends U+2581 and writes spaces as U+2581,
 * the Llama 2 decoder (Replace, ByteFallback, Fuse, Strip) and <s> prepended by the post-processor.
 *
 * Two things differ from LlamaConverter, both so that the file encodes exactly as scp_tokenizer_load() does
 * with the tokenizer.bin (SentencePiece's encoder):
 *  - the merges. SentencePiece merges the adjacent pair whose joined piece has the highest score, the
 *    leftmost one on equal scores; HF BPE merges the pair of lowest rank (its index in the merge list). Every
 *    split of a piece into two mergeable pieces is a merge (a piece reachable by several splits has several),
 *    ordered by the joined piece's score, highest first. Equal scores have no equal ranks in HF, so within a
 *    run of equal scores a merge (A, B) is put before a merge (B, C): in "A B C" both are candidates and
 *    SentencePiece takes the left one. When that order has a cycle ((a, b) and (b, a) with one score), or a
 *    higher-scored merge builds on a tied merge's result, no list can follow SentencePiece in every text; a
 *    warning says so (trained vocabularies, whose scores fall merge by merge, have neither).
 *  - SentencePiece's remove_extra_whitespaces (leading and trailing spaces dropped, runs squeezed, which is
 *    what produced the data llama2.c models were trained on) as three Replace regex normalisers (tok/hfjson.c
 *    reads them back as that option).
 * <unk>, <s>, </s> and scp-import's <|mask|> are added special tokens, as HF files have them (HF then
 * matches "<s>" written in the text as the token; SentencePiece and scp-tokenize on the tokenizer.bin read it
 * as plain text). */
#include "tok/tokjson_write.h"
#include "tok/tok_internal.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

#define META "\xE2\x96\x81"   /* U+2581, SentencePiece's space */

typedef struct merge {
    float score;      /* the joined piece's score */
    int32_t id;       /* the joined piece */
    int32_t a, b;     /* left and right pieces */
    int32_t base;     /* position in the (score desc, id, left length) order */
} merge;

static int merge_cmp(const void *x, const void *y)
{
    const merge *p = x, *q = y;
    if (p->score != q->score) return p->score > q->score ? -1 : 1;
    if (p->id != q->id) return p->id < q->id ? -1 : 1;
    return (p->a > q->a) - (p->a < q->a);
}

/* Reorder g merges of one score so that (A, B) precedes (B, C) (Kahn's algorithm, smallest base first);
 * returns how many times a cycle forced a choice. O(g^2): runs of equal scores are short in trained models. */
static int order_ties(merge *m, int g)
{
    if (g < 2) return 0;
    int *indeg = scp_xcalloc((size_t)g, sizeof *indeg);
    char *done = scp_xcalloc((size_t)g, 1);
    merge *out = scp_xmalloc(sizeof *out * (size_t)g);
    for (int p = 0; p < g; p++)
        for (int q = 0; q < g; q++)
            if (p != q && m[p].b == m[q].a) indeg[q]++;
    int cycles = 0;
    for (int k = 0; k < g; k++) {
        int pick = -1;
        for (int i = 0; i < g && pick < 0; i++)
            if (!done[i] && indeg[i] == 0) pick = i;
        if (pick < 0) {
            cycles++;
            for (int i = 0; i < g && pick < 0; i++)
                if (!done[i]) pick = i;
        }
        done[pick] = 1;
        out[k] = m[pick];
        for (int q = 0; q < g; q++)
            if (!done[q] && q != pick && m[pick].b == m[q].a) indeg[q]--;
    }
    memcpy(m, out, sizeof *out * (size_t)g);
    free(out);
    free(done);
    free(indeg);
    return cycles;
}

static json_t *replace_regex(const char *re, const char *content)
{
    return json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "Regex", re, "content", content);
}

static json_t *added_entry(int32_t id, const char *content, int special)
{
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)id, "content", content, "single_word", 0,
                     "lstrip", 0, "rstrip", 0, "normalized", 0, "special", special);
}

static json_t *build(const scp_tokenizer *t, const char *what)
{
    json_t *vocab = json_object(), *added = json_array();
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!t->tok[id] || (t->attr[id] & TOK_A_UNUSED)) continue;
        if (strlen(t->tok[id]) != t->tok_len[id]) {
            json_decref(vocab);
            json_decref(added);
            scp_error("%s: token %d holds a NUL byte; a tokenizer.json cannot hold it", what, id);
            return NULL;
        }
        if (json_object_get(vocab, t->tok[id])) continue;   /* a repeated piece: the first id, as scp reads it */
        json_t *v = json_integer(id);
        if (json_object_set_new(vocab, t->tok[id], v)) {
            json_decref(vocab);
            json_decref(added);
            scp_error("%s: token %d is not valid UTF-8; a tokenizer.json cannot hold it", what, id);
            return NULL;
        }
        if (t->attr[id] & (TOK_A_SPECIAL | TOK_A_ADDED))
            json_array_append_new(added, added_entry(id, t->tok[id], (t->attr[id] & TOK_A_SPECIAL) != 0));
    }

    /* merges: every split of every mergeable piece into two mergeable pieces (as tok_merges_from_scores) */
    size_t nm = 0, cap = 1024;
    merge *m = scp_xmalloc(sizeof *m * cap);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!t->tok[id] || (t->attr[id] & (TOK_A_NOMERGE | TOK_A_UNUSED))) continue;
        const char *s = t->tok[id];
        uint32_t len = t->tok_len[id];
        if (tok_strmap_get(&t->piece, s, len) != id) continue;   /* a repeated piece */
        for (uint32_t k = 1; k < len; k++) {
            if (((uint8_t)s[k] & 0xC0) == 0x80) continue;   /* split only between characters */
            int32_t a = tok_strmap_get(&t->piece, s, k), b = tok_strmap_get(&t->piece, s + k, len - k);
            if (a < 0 || b < 0 || (t->attr[a] & TOK_A_NOMERGE) || (t->attr[b] & TOK_A_NOMERGE)) continue;
            if (nm == cap) m = scp_xrealloc(m, sizeof *m * (cap *= 2));
            m[nm++] = (merge){t->score[id], id, a, b, 0};
        }
    }
    qsort(m, nm, sizeof *m, merge_cmp);
    int cycles = 0, big = 0, later = 0;
    /* tied[id]: id is the result of merges that share their score with merges of another result */
    uint8_t *tied = scp_xcalloc((size_t)t->n_vocab, 1);
    for (size_t i = 0; i < nm;) {
        size_t j = i + 1;
        while (j < nm && m[j].score == m[i].score) j++;
        if (j - i <= 4096) cycles += order_ties(m + i, (int)(j - i));
        else big = 1;
        if (m[j - 1].id != m[i].id)
            for (size_t k = i; k < j; k++) tied[m[k].id] = 1;
        i = j;
    }
    /* Which of two tied merges goes first also decides what a later, higher-scored merge can build on (in
     * SentencePiece the left one; here the first in the list). Trained models never score a piece above
     * its parts, so this is only a hand-made vocabulary's problem. */
    for (size_t i = 0; i < nm; i++)
        later += (tied[m[i].a] && t->score[m[i].a] < m[i].score) || (tied[m[i].b] && t->score[m[i].b] < m[i].score);
    free(tied);
    if (later)
        scp_warn("%s: %d merge(s) score higher than an operand that ties with other merges; tokenizer.json may tokenise "
                 "some texts differently from SentencePiece there", what, later);
    if (cycles)
        scp_warn("%s: %d merge(s) with equal scores overlap both ways round ((a, b) and (b, a)); tokenizer.json can follow "
                 "SentencePiece's leftmost-first rule for only one order, so some texts may tokenise differently",
                 what, cycles);
    if (big)
        scp_warn("%s: more than 4096 merges share a score; they are ordered by id, and texts where two of them overlap may "
                 "tokenise differently", what);
    json_t *merges = json_array();
    for (size_t i = 0; i < nm; i++) {
        /* "a b" strings: pieces hold U+2581, never a space */
        size_t la = t->tok_len[m[i].a], lb = t->tok_len[m[i].b];
        char *p = scp_xmalloc(la + lb + 2);
        memcpy(p, t->tok[m[i].a], la);
        p[la] = ' ';
        memcpy(p + la + 1, t->tok[m[i].b], lb);
        p[la + 1 + lb] = 0;
        json_array_append_new(merges, json_string(p));
        free(p);
    }
    free(m);

    json_t *normalizer = json_pack("{s:s, s:[o, o, {s:s, s:s}, {s:s, s:{s:s}, s:s}, o]}", "type", "Sequence", "normalizers",
                                   replace_regex("\\A +| +\\z", ""), replace_regex(" {2,}", " "), "type", "Prepend", "prepend", META,
                                   "type", "Replace", "pattern", "String", " ", "content", META, replace_regex(META "+\\z", ""));
    json_t *decoder = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}", "type", "Sequence", "decoders",
                                "type", "Replace", "pattern", "String", META, "content", " ", "type", "ByteFallback", "type", "Fuse",
                                "type", "Strip", "content", " ", "start", 1, "stop", 0);
    json_t *post = json_null();
    if (t->bos >= 0 && t->tok[t->bos]) {
        const char *b = t->tok[t->bos];
        post = json_pack("{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}], "
                         "s:{s:{s:s, s:[i], s:[s]}}}",
                         "type", "TemplateProcessing", "single", "SpecialToken", "id", b, "type_id", 0, "Sequence", "id", "A", "type_id", 0,
                         "pair", "SpecialToken", "id", b, "type_id", 0, "Sequence", "id", "A", "type_id", 0, "SpecialToken", "id", b,
                         "type_id", 1, "Sequence", "id", "B", "type_id", 1, "special_tokens", b, "id", b, "ids", (json_int_t)t->bos,
                         "tokens", b);
    }
    json_t *model = json_pack("{s:s, s:n, s:s?, s:n, s:n, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout",
                              "unk_token", t->unk_id >= 0 ? t->tok[t->unk_id] : NULL, "continuing_subword_prefix",
                              "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", t->byte_fallback, "vocab", vocab, "merges", merges);
    return json_pack("{s:s, s:n, s:n, s:o, s:o, s:n, s:o, s:o, s:o}", "version", "1.0", "truncation", "padding", "added_tokens", added,
                     "normalizer", normalizer, "pre_tokenizer", "post_processor", post, "decoder", decoder, "model", model);
}

/* The directory's tokenizer_config.json (if any) with the Llama fields a Hugging Face loader needs. */
static json_t *config(const scp_tokenizer *t, const char *dir)
{
    char *p = scp_path_join(dir, "tokenizer_config.json");
    json_t *c = NULL;
    if (scp_file_exists(p)) {
        c = scp_json_load(p);
        if (c && !json_is_object(c)) {
            json_decref(c);
            c = NULL;
            scp_error("%s: not a JSON object", p);
        }
        if (!c) {
            free(p);
            return NULL;
        }
    } else {
        c = json_object();
    }
    free(p);
    json_t *dec = json_object_get(c, "added_tokens_decoder");
    if (!json_is_object(dec)) json_object_set_new(c, "added_tokens_decoder", dec = json_object());
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!t->tok[id] || !(t->attr[id] & (TOK_A_SPECIAL | TOK_A_ADDED))) continue;
        char key[32];
        snprintf(key, sizeof key, "%d", id);
        if (!json_object_get(dec, key))
            json_object_set_new(dec, key, json_pack("{s:s, s:b, s:b, s:b, s:b, s:b}", "content", t->tok[id], "lstrip", 0, "normalized", 0,
                                                    "rstrip", 0, "single_word", 0, "special", (t->attr[id] & TOK_A_SPECIAL) != 0));
    }
    struct { const char *key; int32_t id; } sp[] = {{"bos_token", t->bos}, {"eos_token", t->eos}, {"unk_token", t->unk_id}};
    for (int i = 0; i < 3; i++)
        if (sp[i].id >= 0 && t->tok[sp[i].id]) json_object_set_new(c, sp[i].key, json_string(t->tok[sp[i].id]));
    if (!json_object_get(c, "pad_token")) json_object_set_new(c, "pad_token", json_null());
    json_object_set_new(c, "add_bos_token", json_boolean(t->bos >= 0));
    json_object_set_new(c, "add_eos_token", json_false());
    json_object_set_new(c, "clean_up_tokenization_spaces", json_false());
    json_object_set_new(c, "legacy", json_true());
    json_object_set_new(c, "tokenizer_class", json_string("LlamaTokenizerFast"));
    return c;
}

int scp_tok_export_hf(const char *dir, char **tok_json, json_t **tok_config)
{
    *tok_json = NULL;
    *tok_config = NULL;
    static const char *const other[] = {"tokenizer.json", "tokenizer.model"};
    for (int i = 0; i < 2; i++) {
        char *p = scp_path_join(dir, other[i]);
        int have = scp_file_exists(p);
        free(p);
        if (have) return 0;
    }
    char *bin = scp_path_join(dir, "tokenizer.bin");
    if (!scp_file_exists(bin)) {
        free(bin);
        return 0;
    }
    /* the directory, not the file: tokenizer_config.json's added tokens (the mask) come with it */
    scp_tokenizer *t = scp_tokenizer_load(dir);
    if (!t) {
        free(bin);
        return -1;
    }
    int rc = -1;
    if (t->family != TOK_SPM || !t->score) {
        scp_error("%s: not read as a SentencePiece-style tokenizer; cannot write a tokenizer.json", bin);
        goto out;
    }
    json_t *j = build(t, bin);
    if (!j) goto out;
    json_t *c = config(t, dir);
    if (!c) {
        json_decref(j);
        goto out;
    }
    *tok_json = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    *tok_config = c;
    rc = 1;
out:
    scp_tokenizer_free(t);
    free(bin);
    return rc;
}
