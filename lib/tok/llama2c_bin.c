/* tok/llama2c_bin.c: reading and checking llama2.c's tokenizer.bin (tok/llama2c_bin.h). */
#include "tok/llama2c_bin.h"
#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS (1 << 24)
#define MAX_TOKEN_LENGTH 65536u

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

int scp_llama2c_vocab_read(scp_llama2c_vocab *v, const uint8_t *data, size_t size, int vocab, const char *path)
{
    memset(v, 0, sizeof *v);
    if (size < 4) return scp_error("%s: truncated: no max_token_length (%zu bytes; not a llama2.c tokenizer.bin?)", path, size);
    uint32_t maxlen = rd32(data);
    if (maxlen == 0 || maxlen > MAX_TOKEN_LENGTH)
        return scp_error("%s: max_token_length %u is implausible (not a llama2.c tokenizer.bin?)", path, maxlen);
    v->max_token_length = maxlen;
    int cap = 0;
    size_t pos = 4;
    while (vocab < 0 ? pos < size : v->n < vocab) {
        int i = v->n;
        if (size - pos < 8) {
            if (vocab < 0) return scp_error("%s: truncated at token %d (score and length need 8 bytes, %zu left)", path, i, size - pos);
            return scp_error("%s: truncated at token %d (the model has a vocabulary of %d)", path, i, vocab);
        }
        if (i >= MAX_TOKENS) return scp_error("%s: more than %d tokens", path, MAX_TOKENS);
        float score;
        memcpy(&score, data + pos, 4);   /* little-endian f32, as every host this builds on */
        uint32_t len = rd32(data + pos + 4);
        if (len > maxlen) return scp_error("%s: token %d has length %d, more than max_token_length %u", path, i, (int32_t)len, maxlen);
        if (len > size - pos - 8) return scp_error("%s: truncated inside token %d (%u bytes, %zu left)", path, i, len, size - pos - 8);
        if (isnan(score)) return scp_error("%s: token %d has a score that is not a number", path, i);
        if (i == cap) {
            cap = cap ? 2 * cap : 1024;
            v->score = scp_xrealloc(v->score, sizeof *v->score * (size_t)cap);
            v->bytes = scp_xrealloc(v->bytes, sizeof *v->bytes * (size_t)cap);
            v->len = scp_xrealloc(v->len, sizeof *v->len * (size_t)cap);
        }
        v->score[i] = score;
        v->bytes[i] = data + pos + 8;
        v->len[i] = len;
        v->n++;
        pos += 8 + (size_t)len;
    }
    if (pos != size)
        return scp_error("%s: %zu bytes after the %d tokens the model's vocabulary has (a tokenizer for another model?)", path, size - pos, vocab);
    return 0;
}

void scp_llama2c_vocab_free(scp_llama2c_vocab *v)
{
    free(v->score);
    free(v->bytes);
    free(v->len);
    memset(v, 0, sizeof *v);
}
