/* data/tokenize.h: documents -> token ids and back, for scp-tokenize.
 *
 * scp_tokenize reads documents in order (data/textinput.h) into batches of about 8 MB, encodes each batch on a
 * pool of threads (core/pipeline.h) and writes the documents in input order, so the output is the same bytes for
 * any thread count. The output is a token stream (man 5 scp-tokens) or id lines (a document per line, ids
 * separated by spaces). scp_detokenize turns either back into text, a document per line. */
#ifndef SCP_DATA_TOKENIZE_H
#define SCP_DATA_TOKENIZE_H

#include "data/textinput.h"
#include "tok/tokenizer.h"

#include <stdint.h>
#include <stdio.h>

typedef struct scp_tokenize_opts {
    scp_textin_opts input;   /* what a document is, the input format, --skip-bad */
    int special;             /* recognise special tokens written in the text */
    int bos, eos;            /* add the tokenizer's BOS before, EOS after each document */
    int ids;                 /* 1: id lines, 0: a token stream */
    int threads;             /* encoding threads (1: the calling thread) */
    const char *tok_name;    /* the tokenizer's file or checkpoint, for messages */
} scp_tokenize_opts;

typedef struct scp_tokenize_stats {
    uint64_t docs, tokens;   /* written (tokens include BOS and EOS) */
    uint64_t bytes;          /* text read */
    uint64_t bad;            /* records skipped under skip_bad */
} scp_tokenize_stats;

/* Encode the documents of inputs (paths, '-' for standard input) with tok onto out (named out_name in messages):
 * 0, or -1 with a message naming the file, member and line, or the output. Shows progress on a terminal. *st is
 * filled in either case. */
int scp_tokenize(const scp_tokenizer *tok, const char *const *inputs, int n_inputs, const scp_tokenize_opts *o, FILE *out,
                 const char *out_name, scp_tokenize_stats *st);

/* Decode a token stream or id lines (path or '-') with tok onto out, a document per line; skip_special leaves
 * special tokens out. A stream made with another tokenizer (its hash) is refused. Adds to st->docs and
 * st->tokens. 0 or -1. */
int scp_detokenize(const scp_tokenizer *tok, const char *tok_name, const char *path, int skip_special, FILE *out,
                   const char *out_name, scp_tokenize_stats *st);

#endif
