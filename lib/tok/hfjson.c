/* tok/hfjson.c: Hugging Face tokenizer.json (model BPE) and the original GPT-2 files (encoder.json + vocab.bpe).
 *
 * Supported pipeline pieces, those real BPE models use:
 *   normalizer: null, NFC, Prepend("\u2581"), Replace(" " -> "\u2581"), Sequence of these; the Replace regexes
 *     tok/tokjson_write.c writes for SentencePiece's remove_extra_whitespaces;
 *   pre_tokenizer: null, ByteLevel (with or without its GPT-2 regex), Split (regex or string, every behavior,
 *     invert), Metaspace, Sequence of Split + ByteLevel;
 *   model: BPE (merges as "a b" strings or [a, b] pairs, byte_fallback, unk_token, ignore_merges);
 *   decoder: ByteLevel, Metaspace, or Replace/ByteFallback/Fuse/Strip sequences (Llama 2 style).
 * Anything else is refused with a message naming the key, rather than tokenised differently. */
#include "tok/tok_internal.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

static const char META[] = "\xE2\x96\x81";

static int unsupported(const char *path, const char *what, const char *type)
{
    return scp_error("%s: %s type '%s' is not supported", path, what, type ? type : "(none)");
}

static int do_normalizer(scp_tokenizer *t, const char *path, json_t *n)
{
    if (!n || json_is_null(n)) return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (!type) return scp_error("%s: normalizer has no \"type\"", path);
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(n, "normalizers");
        size_t i;
        json_t *x;
        if (!json_is_array(arr)) return scp_error("%s: normalizer Sequence has no \"normalizers\" array", path);
        json_array_foreach(arr, i, x) if (do_normalizer(t, path, x)) return -1;
        return 0;
    }
    if (strcmp(type, "NFC") == 0) { t->nfc = 1; return 0; }
    if (strcmp(type, "Prepend") == 0) {
        const char *p = json_string_value(json_object_get(n, "prepend"));
        if (!p || strcmp(p, META) != 0) return scp_error("%s: normalizer Prepend of '%s' is not supported (only U+2581)", path, p ? p : "");
        t->spm_prefix = 1;
        return 0;
    }
    if (strcmp(type, "Replace") == 0) {
        const char *pat = json_string_value(json_object_get(json_object_get(n, "pattern"), "String"));
        const char *c = json_string_value(json_object_get(n, "content"));
        /* SentencePiece's remove_extra_whitespaces, as tok/tokjson_write.c writes it (three regex Replaces) */
        const char *re = json_string_value(json_object_get(json_object_get(n, "pattern"), "Regex"));
        if (re && c && ((strcmp(re, "\\A +| +\\z") == 0 && !*c) || (strcmp(re, " {2,}") == 0 && strcmp(c, " ") == 0) ||
                        (strcmp(re, "\xE2\x96\x81+\\z") == 0 && !*c))) {
            t->spm_collapse = 1;
            return 0;
        }
        if (!pat || !c || strcmp(pat, " ") != 0 || strcmp(c, META) != 0)
            return scp_error("%s: normalizer Replace is supported only for ' ' -> U+2581", path);
        t->spm_escape = 1;
        return 0;
    }
    return unsupported(path, "normalizer", type);
}

static int do_pretok(scp_tokenizer *t, const char *path, json_t *p, int *bytelevel)
{
    if (!p || json_is_null(p)) return 0;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return scp_error("%s: pre_tokenizer has no \"type\"", path);
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(p, "pretokenizers");
        size_t i;
        json_t *x;
        if (!json_is_array(arr)) return scp_error("%s: pre_tokenizer Sequence has no \"pretokenizers\" array", path);
        json_array_foreach(arr, i, x) if (do_pretok(t, path, x, bytelevel)) return -1;
        return 0;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        *bytelevel = 1;
        json_t *ur = json_object_get(p, "use_regex");
        int use_regex = ur ? json_is_true(ur) : 1;
        if (json_is_true(json_object_get(p, "add_prefix_space"))) t->bl_prefix_space = 1;
        if (use_regex) {
            if (t->pretok != TOK_PRE_NONE)
                return scp_error("%s: ByteLevel with its regex after another splitting pre-tokenizer is not supported", path);
            t->pretok = TOK_PRE_GPT2;
        }
        return 0;
    }
    if (strcmp(type, "Split") == 0) {
        if (t->pretok != TOK_PRE_NONE) return scp_error("%s: more than one splitting pre-tokenizer is not supported", path);
        json_t *pat = json_object_get(p, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        const char *str = json_string_value(json_object_get(pat, "String"));
        const char *beh = json_string_value(json_object_get(p, "behavior"));
        int behavior = 0;
        if (!beh || strcmp(beh, "Isolated") == 0) behavior = 0;
        else if (strcmp(beh, "Removed") == 0) behavior = 1;
        else if (strcmp(beh, "MergedWithPrevious") == 0) behavior = 2;
        else if (strcmp(beh, "MergedWithNext") == 0) behavior = 3;
        else if (strcmp(beh, "Contiguous") == 0) behavior = 4;
        else return scp_error("%s: Split behavior '%s' is not supported", path, beh);
        int invert = json_is_true(json_object_get(p, "invert"));
        if (re && !invert && behavior == 0) {
            if (strcmp(re, tok_pattern_qwen2) == 0) { t->pretok = TOK_PRE_QWEN2; return 0; }
            if (strcmp(re, tok_pattern_llama3) == 0) { t->pretok = TOK_PRE_LLAMA3; return 0; }
            if (strcmp(re, tok_pattern_gpt2) == 0) { t->pretok = TOK_PRE_GPT2; return 0; }
        }
        char *rx;
        if (re) rx = scp_xstrdup(re);
        else if (str) {
            /* a literal: every ASCII character other than a letter or a digit escaped (a backslash before such a
             * character is always that character). Quoting with \Q...\E would end at a \E inside the literal. */
            rx = scp_xmalloc(2 * strlen(str) + 1);
            char *o = rx;
            for (const char *c = str; *c; c++) {
                uint8_t b = (uint8_t)*c;
                if (b < 0x80 && !((b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z'))) *o++ = '\\';
                *o++ = *c;
            }
            *o = 0;
        } else return scp_error("%s: Split pre-tokenizer has no Regex or String pattern", path);
        t->re = tok_regex_compile(rx, path);
        free(rx);
        if (!t->re) return -1;
        t->pretok = TOK_PRE_REGEX;
        t->re_behavior = behavior;
        t->re_invert = invert;
        return 0;
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *rep = json_string_value(json_object_get(p, "replacement"));
        if (rep && strcmp(rep, META) != 0) return scp_error("%s: Metaspace replacement other than U+2581 is not supported", path);
        t->spm_escape = 1;
        const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
        json_t *aps = json_object_get(p, "add_prefix_space");
        if (scheme) t->spm_prefix = strcmp(scheme, "always") == 0 ? 3 : strcmp(scheme, "first") == 0 ? 2 : 0;
        else t->spm_prefix = !aps || json_is_true(aps) ? 3 : 0;
        json_t *split = json_object_get(p, "split");
        if (!split || json_is_true(split)) t->pretok = TOK_PRE_METASPACE;
        return 0;
    }
    return unsupported(path, "pre_tokenizer", type);
}

static void do_decoder(scp_tokenizer *t, json_t *d)
{
    if (!d || json_is_null(d)) return;
    const char *type = json_string_value(json_object_get(d, "type"));
    if (!type) return;
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(d, "decoders"), i, x) do_decoder(t, x);
    } else if (strcmp(type, "Strip") == 0) {
        json_t *st = json_object_get(d, "start");
        if (json_integer_value(st) > 0) t->decode_strip_space = 1;
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *scheme = json_string_value(json_object_get(d, "prepend_scheme"));
        json_t *aps = json_object_get(d, "add_prefix_space");
        if (scheme ? strcmp(scheme, "never") != 0 : (!aps || json_is_true(aps))) t->decode_strip_space = 1;
    }
}

int tok_load_hfjson(scp_tokenizer *t, const char *path)
{
    json_t *j = scp_json_load(path);
    if (!j) return -1;
    int rc = 0;
    tok_strmap byname = {0};
    if (!json_is_object(j)) { rc = scp_error("%s: not a JSON object", path); goto out; }
    json_t *model = json_object_get(j, "model");
    if (!json_is_object(model)) { rc = scp_error("%s: no \"model\" object (not a Hugging Face tokenizer.json?)", path); goto out; }
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE") != 0) { rc = scp_error("%s: model type '%s' is not supported (only BPE)", path, mtype); goto out; }
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) { rc = scp_error("%s: model.vocab is not an object", path); goto out; }
    if (!json_is_array(merges)) { rc = scp_error("%s: model.merges is not an array", path); goto out; }
    const char *csp = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *ews = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if ((csp && *csp) || (ews && *ews)) {
        rc = scp_error("%s: model.continuing_subword_prefix / end_of_word_suffix are not supported", path);
        goto out;
    }
    /* vocabulary */
    const char *k;
    json_t *v;
    int64_t maxid = -1;
    json_object_foreach(vocab, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 16777216) {
            rc = scp_error("%s: model.vocab['%s'] is not a valid id", path, k);
            goto out;
        }
        if (json_integer_value(v) > maxid) maxid = json_integer_value(v);
    }
    json_t *added = json_object_get(j, "added_tokens");
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > 16777216 ||
            !json_is_string(json_object_get(v, "content"))) {
            rc = scp_error("%s: added_tokens[%zu] needs an integer \"id\" and a \"content\" string", path, i);
            goto out;
        }
        if (json_integer_value(id) > maxid) maxid = json_integer_value(id);
    }
    tok_alloc_vocab(t, (int32_t)(maxid + 1));
    json_object_foreach(vocab, k, v) {
        int32_t id = (int32_t)json_integer_value(v);
        tok_set_token(t, id, k, (uint32_t)strlen(k));
        t->attr[id] = 0;
    }
    /* pipeline */
    int bytelevel = 0;
    if (do_normalizer(t, path, json_object_get(j, "normalizer"))) { rc = -1; goto out; }
    if (do_pretok(t, path, json_object_get(j, "pre_tokenizer"), &bytelevel)) { rc = -1; goto out; }
    json_t *dec = json_object_get(j, "decoder");
    if (!bytelevel && dec && json_is_string(json_object_get(dec, "type")) && strcmp(json_string_value(json_object_get(dec, "type")), "ByteLevel") == 0)
        bytelevel = 1;
    t->family = bytelevel ? TOK_BYTELEVEL : TOK_SPM;
    if (!bytelevel) do_decoder(t, dec);
    if (bytelevel && (t->spm_escape || t->spm_prefix)) { rc = scp_error("%s: Metaspace and ByteLevel together are not supported", path); goto out; }
    t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    if (unk) {
        json_t *u = json_object_get(vocab, unk);
        if (u) t->unk_id = (int32_t)json_integer_value(u);
    }
    if (!bytelevel && t->byte_fallback)
        for (int32_t id = 0; id < t->n_vocab; id++)
            if (t->tok[id] && tok_parse_byte_piece(t->tok[id], t->tok_len[id]) >= 0) t->attr[id] |= TOK_A_BYTE | TOK_A_NOMERGE;
    /* added tokens */
    json_array_foreach(added, i, v) {
        int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
        const char *c = json_string_value(json_object_get(v, "content"));
        int special = json_is_true(json_object_get(v, "special"));
        if (id < t->n_vocab && t->tok[id] && strcmp(t->tok[id], c) != 0 && !(t->attr[id] & TOK_A_UNUSED)) {
            rc = scp_error("%s: added token %d '%s' differs from the vocabulary's '%s'", path, id, c, t->tok[id]);
            goto out;
        }
        tok_add_added(t, id, c, (uint32_t)strlen(c), special);
        /* tok_add_added adds no entry for an empty content (it never matches text) or an id added before: the
         * last entry, if any, is this token's only when the ids agree */
        tok_added *a = t->n_added ? &t->added[t->n_added - 1] : NULL;
        if (a && a->id == id) {
            a->lstrip = json_is_true(json_object_get(v, "lstrip"));
            a->rstrip = json_is_true(json_object_get(v, "rstrip"));
            a->single_word = json_is_true(json_object_get(v, "single_word"));
            a->normalized = json_is_true(json_object_get(v, "normalized"));
        }
    }
    if (unk && t->unk_id < 0) t->unk_id = scp_tokenizer_token_id(t, unk);
    /* merges: rank = position in the list; the merged token must be in the vocabulary */
    tok_strmap_init(&byname, (uint32_t)t->n_vocab);
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->tok[id]) tok_strmap_put(&byname, t->tok[id], t->tok_len[id], id);
    tok_pairmap_init(&t->merges, (uint32_t)json_array_size(merges));
    char *buf = NULL;
    size_t bufcap = 0;
    json_array_foreach(merges, i, v) {
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            const char *sp = strchr(s + (s[0] == ' ' ? 1 : 0), ' ');
            if (!sp) { rc = scp_error("%s: model.merges[%zu] '%s' is not two tokens separated by a space", path, i, s); break; }
            a = s;
            al = (size_t)(sp - s);
            b = sp + 1;
            bl = strlen(b);
        } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) && json_is_string(json_array_get(v, 1))) {
            a = json_string_value(json_array_get(v, 0));
            b = json_string_value(json_array_get(v, 1));
            al = strlen(a);
            bl = strlen(b);
        } else {
            rc = scp_error("%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, i);
            break;
        }
        int32_t ia = tok_strmap_get(&byname, a, (uint32_t)al), ib = tok_strmap_get(&byname, b, (uint32_t)bl);
        if (al + bl + 1 > bufcap) buf = scp_xrealloc(buf, bufcap = (al + bl + 1) * 2);
        memcpy(buf, a, al);
        memcpy(buf + al, b, bl);
        int32_t ic = tok_strmap_get(&byname, buf, (uint32_t)(al + bl));
        if (ia < 0 || ib < 0 || ic < 0) {
            rc = scp_error("%s: model.merges[%zu] ('%.*s' '%.*s') names a token missing from the vocabulary", path, i, (int)al, a, (int)bl, b);
            break;
        }
        tok_pairmap_put(&t->merges, ia, ib, (int32_t)i, ic);
    }
    free(buf);
out:
    tok_strmap_free(&byname);
    json_decref(j);
    return rc;
}

int tok_load_gpt2(scp_tokenizer *t, const char *encoder_json, const char *vocab_bpe)
{
    json_t *j = scp_json_load(encoder_json);
    if (!j) return -1;
    int rc = 0;
    char *bpe = NULL;
    size_t bpelen;
    tok_strmap byname = {0};
    if (!json_is_object(j)) { rc = scp_error("%s: not a JSON object of token -> id", encoder_json); goto out; }
    const char *k;
    json_t *v;
    int64_t maxid = -1;
    json_object_foreach(j, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 16777216) {
            rc = scp_error("%s: entry '%s' is not a valid id", encoder_json, k);
            goto out;
        }
        if (json_integer_value(v) > maxid) maxid = json_integer_value(v);
    }
    tok_alloc_vocab(t, (int32_t)(maxid + 1));
    json_object_foreach(j, k, v) {
        tok_set_token(t, (int32_t)json_integer_value(v), k, (uint32_t)strlen(k));
        t->attr[json_integer_value(v)] = 0;
    }
    t->family = TOK_BYTELEVEL;
    t->pretok = TOK_PRE_GPT2;
    int32_t eot = -1;
    json_t *e = json_object_get(j, "<|endoftext|>");
    if (e) {
        eot = (int32_t)json_integer_value(e);
        tok_add_added(t, eot, "<|endoftext|>", 13, 1);
    }
    t->bos = t->eos = eot;
    if (scp_read_file(vocab_bpe, &bpe, &bpelen)) { rc = -1; goto out; }
    tok_strmap_init(&byname, (uint32_t)t->n_vocab);
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->tok[id]) tok_strmap_put(&byname, t->tok[id], t->tok_len[id], id);
    tok_pairmap_init(&t->merges, 65536);
    char *line = bpe, *end = bpe + bpelen;
    int32_t rank = 0;
    size_t lineno = 0;
    char buf[1024];
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) nl = end;
        lineno++;
        size_t ll = (size_t)(nl - line);
        if (ll && line[ll - 1] == '\r') ll--;
        if (ll && !(lineno == 1 && line[0] == '#')) {
            char *sp = memchr(line, ' ', ll);
            if (!sp || sp == line || (size_t)(sp - line) + 1 >= ll || ll >= sizeof buf) {
                rc = scp_error("%s:%zu: not a merge ('a b')", vocab_bpe, lineno);
                goto out;
            }
            size_t al = (size_t)(sp - line), bl = ll - al - 1;
            int32_t ia = tok_strmap_get(&byname, line, (uint32_t)al), ib = tok_strmap_get(&byname, sp + 1, (uint32_t)bl);
            memcpy(buf, line, al);
            memcpy(buf + al, sp + 1, bl);
            int32_t ic = tok_strmap_get(&byname, buf, (uint32_t)(al + bl));
            if (ia < 0 || ib < 0 || ic < 0) {
                rc = scp_error("%s:%zu: merge names a token missing from %s", vocab_bpe, lineno, encoder_json);
                goto out;
            }
            tok_pairmap_put(&t->merges, ia, ib, rank++, ic);
        }
        line = nl + 1;
    }
out:
    free(bpe);
    tok_strmap_free(&byname);
    json_decref(j);
    return rc;
}
