/* data/shard_write.h: building a shard set from token streams (scp-shard; format in man 5 scp-shards).
 *
 * Every stream is read and checked once (CRC32, ids). Documents of a regular file in the shard token width
 * are then gathered from a mapping of that file; those of a pipe (or of another token width) are first
 * spooled, in the shard width, to a file inside the output directory. The validation split is chosen by
 * whole documents, each split's documents are packed in input order into sequences of seq_len tokens, the
 * sequences are shuffled by the seed, and the shards are written (in parallel) from the mappings.
 * Same inputs and options give the same bytes whatever the thread count. */
#ifndef SCP_SHARD_WRITE_H
#define SCP_SHARD_WRITE_H

#include <stdint.h>
#include <stdio.h>

typedef struct scp_shard_opts {
    int seq_len;
    int64_t shard_tokens;   /* tokens per shard (rounded down to whole sequences, at least one) */
    uint64_t seed;
    int shuffle;            /* 0: keep packing order */
    double val_fraction;    /* of the tokens, taken as whole documents; or */
    int64_t val_tokens;     /* at least this many tokens (whole documents); 0 and 0.0: no validation split */
    int threads;            /* writers; the output does not depend on it */
    int progress;           /* show a progress line (when stderr is a terminal) */
} scp_shard_opts;

typedef struct scp_shard_builder scp_shard_builder;

/* dir: an existing, empty directory (scp_dir_begin's temporary). */
scp_shard_builder *scp_shard_builder_new(const char *dir, const scp_shard_opts *o);
/* Add one token stream; its tokenizer (hash, vocabulary, special ids) must match the first stream's. */
int scp_shard_builder_add(scp_shard_builder *b, FILE *f, const char *name);
/* Choose the split, pack, shuffle, write the shards and manifest.json. */
int scp_shard_builder_finish(scp_shard_builder *b);
void scp_shard_builder_free(scp_shard_builder *b);

#endif
