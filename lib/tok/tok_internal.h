/* tok/tok_internal.h: the tokenizer's insides, shared by the loaders (tok/hfjson.c, tok/spm.c, tok_gpt2.c), the
 * pre-tokenizers (tok/pretok.c), the BPE core (tok/bpe.c) and the public API (tok/tokenizer.c).
 *
 * One model covers every supported file form: a BPE over token ids. A pre-token (a piece of text that merges
 * never cross) is split into initial symbols (bytes for byte-level BPE, UTF-8 characters with byte fallback for
 * SentencePiece-style BPE), then adjacent pairs are merged by rank (lowest first, leftmost on ties) until no
 * pair in the merge table remains. SentencePiece and llama2.c merge by piece score; their scores become ranks
 * (higher score = lower rank, equal scores = equal rank so that the leftmost pair wins, as both do). */
#ifndef SCP_TOK_INTERNAL_H
#define SCP_TOK_INTERNAL_H

#include "tok/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

/* An open-addressing map from byte strings to int32 (keys point into memory owned elsewhere). */
typedef struct tok_strmap {
    uint32_t cap;            /* power of two */
    uint32_t n;
    const char **key;
    uint32_t *klen;
    int32_t *val;
} tok_strmap;

void tok_strmap_init(tok_strmap *m, uint32_t expect);
void tok_strmap_free(tok_strmap *m);
/* Insert (keeps the first value for a key: returns 1 if the key was already there). */
int tok_strmap_put(tok_strmap *m, const char *k, uint32_t len, int32_t v);
int32_t tok_strmap_get(const tok_strmap *m, const char *k, uint32_t len);   /* -1 if absent */
uint64_t tok_hash_bytes(const void *p, size_t n);

/* Merge table: (left id, right id) -> (rank, merged id). */
typedef struct tok_pairmap {
    uint32_t cap, n;
    uint64_t *key;           /* (left << 32 | right) + 1; 0 = empty */
    int32_t *rank, *id;
} tok_pairmap;

void tok_pairmap_init(tok_pairmap *m, uint32_t expect);
void tok_pairmap_free(tok_pairmap *m);
int tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);  /* 1: existed (kept) */
/* Returns rank (or INT32_MAX when absent) and sets *id. */
int32_t tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *id);

/* Token attributes. */
enum {
    TOK_A_SPECIAL = 1,   /* special (control) token: never produced by merges, skipped by decode(skip_special) */
    TOK_A_ADDED = 2,     /* an added token, matched in the text before pre-tokenisation */
    TOK_A_BYTE = 4,      /* a byte-fallback token <0xXX> */
    TOK_A_UNUSED = 8,    /* a hole in the id space (no token) */
    TOK_A_NOMERGE = 16   /* may not be the result of a merge (control, unknown, byte) */
};

typedef struct tok_added {
    int32_t id;
    char *s;
    uint32_t len;
    uint8_t special, lstrip, rstrip, single_word, normalized;
} tok_added;

/* Pre-tokenizers. */
enum {
    TOK_PRE_NONE = 0,    /* the whole (normalised) segment is one pre-token */
    TOK_PRE_GPT2,        /* GPT-2's regex (ByteLevel use_regex), hand-written */
    TOK_PRE_QWEN2,       /* Qwen2/Qwen3 Split regex (\p{N} single digits), hand-written */
    TOK_PRE_LLAMA3,      /* Llama 3 Split regex (\p{N}{1,3}), hand-written */
    TOK_PRE_REGEX,       /* any other Split pattern, through PCRE2 */
    TOK_PRE_METASPACE    /* split before each U+2581 that follows another character (Metaspace split=true) */
};

/* Model families: how a pre-token becomes initial symbols, and how text is normalised. */
enum {
    TOK_BYTELEVEL = 1,   /* GPT-2 byte-level BPE: symbols are bytes, vocabulary in the bytes_to_unicode alphabet */
    TOK_SPM = 2          /* SentencePiece-style: symbols are UTF-8 characters, byte fallback, U+2581 for space */
};

struct scp_tokenizer {
    char *path;                  /* for messages */
    int family;
    int32_t n_vocab;             /* ids are [0, n_vocab) */
    char **tok;                  /* token as written in the file (byte-level alphabet, U+2581 ...); NULL for holes */
    uint32_t *tok_len;
    char **dec;                  /* the bytes each id decodes to (byte-level mapped back, U+2581 -> ' ', <0xXX> -> byte) */
    uint32_t *dec_len;
    uint8_t *attr;
    float *score;                /* SentencePiece / llama2.c scores (NULL otherwise) */
    tok_strmap piece;            /* piece bytes (internal form: raw bytes for byte-level, U+2581 for SPM) -> id */
    tok_pairmap merges;
    int32_t byte_id[256];        /* byte-level: the id of each byte; SPM: the <0xXX> id, -1 if none */
    int byte_fallback;
    int32_t unk_id;
    int ignore_merges;           /* HF BPE ignore_merges: a pre-token that is a whole vocabulary entry is kept */

    /* Added tokens, matched leftmost-longest in the text before normalisation. */
    tok_added *added;
    int n_added;
    uint8_t added_first[256];    /* 1 if some added token starts with this byte */

    /* Normalisation. */
    int nfc;                     /* HF NFC normalizer */
    int spm_escape;              /* replace ' ' by U+2581 */
    int spm_prefix;              /* 1: prepend U+2581 to every segment (HF Prepend, SentencePiece dummy prefix);
                                    2: Metaspace prepend_scheme first: only to the segment at the start of the text,
                                    3: Metaspace always; 2 and 3 skip a segment already starting with U+2581 */
    int spm_collapse;            /* SentencePiece remove_extra_whitespaces: strip and squeeze ' ' runs */
    int spm_split_ok;            /* pieces never hold U+2581 after another character: split before each word */
    int decode_strip_space;      /* decoding drops one leading space (SentencePiece dummy prefix, HF Strip) */
    int bl_prefix_space;         /* ByteLevel add_prefix_space: a segment not starting with ' ' gets one */

    /* Pre-tokenisation. */
    int pretok;
    void *re;                    /* pcre2_code* for TOK_PRE_REGEX */
    int re_invert;               /* Split invert */
    int re_behavior;             /* 0 isolated, 1 removed, 2 merged_with_previous, 3 merged_with_next, 4 contiguous */

    int32_t bos, eos, pad, mask;
    uint64_t hash;
    uint64_t serial;             /* identifies this tokenizer for the per-thread caches */
};

/* Loaders (fill a zeroed tokenizer; path names the file in messages). */
int tok_load_hfjson(scp_tokenizer *t, const char *path);
int tok_load_spm_model(scp_tokenizer *t, const char *path);
int tok_load_llama2c(scp_tokenizer *t, const char *path);
int tok_load_gpt2(scp_tokenizer *t, const char *encoder_json, const char *vocab_bpe);

/* Helpers for the loaders. */
void tok_alloc_vocab(scp_tokenizer *t, int32_t n);
void tok_set_token(scp_tokenizer *t, int32_t id, const char *s, uint32_t len);
int tok_add_added(scp_tokenizer *t, int32_t id, const char *s, uint32_t len, int special);
/* GPT-2 bytes_to_unicode: the code point that stands for byte b (tok_bytelevel_decode maps back). */
uint32_t tok_byte_to_cp(uint8_t b);
/* Map a byte-level alphabet string to raw bytes (malloc'ed); returns -1 if a character is outside the alphabet. */
int tok_bytelevel_decode(const char *s, uint32_t len, char **out, uint32_t *outlen);
/* Finish: piece map, dec strings, byte ids, merge-free checks, hash. */
int tok_finish(scp_tokenizer *t);
/* For SPM families: build the merge table from the scores (rank = dense rank of descending score). */
void tok_merges_from_scores(scp_tokenizer *t);
int tok_parse_byte_piece(const char *s, uint32_t len);   /* "<0xAB>" -> 0xAB, else -1 */

/* Pre-tokenizers (tok/pretok.c). The callback receives each pre-token in order. tok_pretok_init builds the
 * code point class table (about 20 ms, once per process); loading a tokenizer that needs it calls it. */
void tok_pretok_init(void);
typedef int (*tok_piece_fn)(void *ctx, const char *s, size_t len);
int tok_pretokenize(const scp_tokenizer *t, const char *s, size_t len, tok_piece_fn fn, void *ctx);
/* The hand-written splitters, exposed for the test that checks them against PCRE2. */
int tok_split_fast(int kind, const char *s, size_t len, tok_piece_fn fn, void *ctx);
void *tok_regex_compile(const char *pattern, const char *what);
int tok_split_regex(void *re, int behavior, int invert, const char *s, size_t len, tok_piece_fn fn, void *ctx);
void tok_regex_free(void *re);
/* The pattern strings the fast paths implement. */
extern const char tok_pattern_gpt2[], tok_pattern_qwen2[], tok_pattern_llama3[];
/* NFC (only non-ASCII runs are touched); returns a malloc'ed buffer or NULL when s is already unchanged. */
char *tok_nfc(const char *s, size_t len, size_t *outlen);
/* Replace invalid UTF-8 by U+FFFD (maximal subparts, like Python, Rust and WHATWG decoders); NULL if valid. */
char *tok_utf8_sanitize(const char *s, size_t len, size_t *outlen);

/* BPE (tok/bpe.c): append the ids of one pre-token to a growing array. */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;
void tok_ids_push(tok_ids *a, int32_t id);
int tok_bpe_word(const scp_tokenizer *t, const char *s, size_t len, tok_ids *out);
void tok_cache_release(const scp_tokenizer *t);

#endif
