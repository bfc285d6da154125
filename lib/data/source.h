/* data/source.h: sequence sources (data/batch.h) over a shard set or over windows of a token stream.
 *
 * Windows: the documents of a token stream (man 5 scp-tokens) concatenated in order, cut into windows of
 * `len` tokens starting every `stride` tokens (stride < len makes consecutive windows overlap, e.g. the
 * common perplexity protocol len 513, stride 512: each window predicts 512 tokens from its own prefix).
 * Only whole windows are used. doc[] numbers the documents within each window from 0. */
#ifndef SCP_DATA_SOURCE_H
#define SCP_DATA_SOURCE_H

#include <stdint.h>

#include "data/shard.h"
#include "data/batch.h"

void scp_source_shards(scp_seq_source *src, scp_shardset *s);

typedef struct scp_windows {
    int32_t *tokens;        /* (n_tokens) all documents concatenated */
    int32_t *doc;           /* (n_tokens) document number */
    int64_t n_tokens;
    int len, stride;
    uint64_t tokenizer_hash;
    int vocab_size;
} scp_windows;

/* Read a whole token stream (path or '-'). */
int scp_windows_open(scp_windows *w, const char *path, int len, int stride);
void scp_windows_free(scp_windows *w);
void scp_source_windows(scp_seq_source *src, scp_windows *w);

#endif
