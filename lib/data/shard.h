/* data/shard.h: reading a shard set (scp-shard's output, man 5 scp-shards) for training and evaluation.
 * A shard set is a directory with manifest.json and shard files of fixed-length sequences, memory-mapped.
 * Each sequence has seq_len tokens and, per token, the index of the document it belongs to within the
 * sequence (0, 1, 2, ...), so that attention can be kept inside documents (--doc-mask). */
#ifndef SCP_SHARD_H
#define SCP_SHARD_H

#include <stdint.h>

typedef struct scp_shardset scp_shardset;

/* split: "train" or "val". Checks every shard's header against manifest.json and the file's size; each shard's
 * CRC32s are checked the first time it is read (scp_shardset_get, scp_shardset_seq_info), so that reading stays
 * lazy: a failed check is an error naming the shard ("CRC mismatch"). */
scp_shardset *scp_shardset_open(const char *dir, const char *split);
void scp_shardset_close(scp_shardset *s);
/* 1 when manifest.json lists shards of `split` ("train" or "val"), 0 when it lists none (a set made without a
 * validation split), -1 when the manifest cannot be read. A listed shard that is missing or damaged is not
 * looked at here: scp_shardset_open names it. */
int scp_shardset_has_split(const char *dir, const char *split);
/* Check every shard's header, CRC32s and tables, and every count manifest.json records (per shard, per split,
 * in total) against the files; on failure the message names the first bad shard or manifest entry. */
int scp_shardset_verify(const char *dir);

int64_t scp_shardset_num_seqs(const scp_shardset *s);
int scp_shardset_seq_len(const scp_shardset *s);
uint64_t scp_shardset_tokenizer_hash(const scp_shardset *s);
int scp_shardset_vocab_size(const scp_shardset *s);
int scp_shardset_bos_id(const scp_shardset *s);
int scp_shardset_eos_id(const scp_shardset *s);
int scp_shardset_pad_id(const scp_shardset *s);

/* Sequence i (0 <= i < num_seqs): tokens (seq_len) and doc (seq_len, may be NULL). Positions past the end
 * of the data (a final partial sequence) hold pad_id (or eos when no pad) with doc = -1. Thread-safe. */
int scp_shardset_get(const scp_shardset *s, int64_t i, int32_t *tokens, int32_t *doc);

/* Man 5 scp-shards. scp_shardset_pad_id gives the token found at padding
 * positions: the stream's pad id, else its eos id, else 0 (doc = -1 tells padding apart in every case).
 * Where a sequence came from: */
typedef struct scp_doc_segment {
    int64_t doc_id;       /* the document's number over all inputs, in input order */
    int pos;              /* where the segment starts in the sequence */
    int64_t doc_offset;   /* how far into the document that position is (0: the document starts here) */
} scp_doc_segment;
/* Sequence i's place in packing order before the shuffle, its number of real tokens (the rest is padding)
 * and its document segments (segs: room for seq_len entries, or NULL). Returns the segment count, -1 on error. */
int scp_shardset_seq_info(const scp_shardset *s, int64_t i, int64_t *packed_index, int *n_valid, scp_doc_segment *segs);
int scp_shardset_token_bytes(const scp_shardset *s);
int64_t scp_shardset_num_tokens(const scp_shardset *s); /* real tokens in the split, padding excluded */

#endif
