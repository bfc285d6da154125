/* tok/llama2c_bin.h: llama2.c's tokenizer.bin, read and checked in one place for the tokenizer (tok/spm.c),
 * scp-import (which carries the file) and the GGUF export (which turns it into a GGUF vocabulary).
 * The format: a little-endian u32 max_token_length, then for each token id in order an f32 score, an i32
 * length and that many bytes (llama2.c's tokenizer.py writes BOS and EOS as "\n<s>\n" and "\n</s>\n"). */
#ifndef SCP_LLAMA2C_BIN_H
#define SCP_LLAMA2C_BIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct scp_llama2c_vocab {
    int n;                       /* tokens */
    uint32_t max_token_length;
    float *score;                /* (n) */
    const uint8_t **bytes;       /* (n) each token's bytes, pointing into the buffer read */
    uint32_t *len;               /* (n) their lengths */
} scp_llama2c_vocab;

/* Read data (size bytes of a tokenizer.bin named `path` in messages). vocab >= 0: exactly that many tokens and
 * nothing after them (the vocabulary of the model it comes with); vocab < 0: as many as the file holds (at most
 * 2^24). Every length is checked against max_token_length and the bytes left, every score is a number. 0, or
 * -1 with a message naming path and the fault; v is freed with scp_llama2c_vocab_free either way, and points
 * into data while it is used. */
int scp_llama2c_vocab_read(scp_llama2c_vocab *v, const uint8_t *data, size_t size, int vocab, const char *path);
void scp_llama2c_vocab_free(scp_llama2c_vocab *v);

#endif
