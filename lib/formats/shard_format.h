/* formats/shard_format.h: the byte layout of one shard file (man 5 scp-shards), shared by the writer (data/shard_write.c)
 * and the reader (data/shard_read.c). Little-endian throughout.
 *
 * A 128-byte header:
 *    0  char[8] magic "SCPSHRD\0"
 *    8  u32 version (1)
 *   12  u32 token_bytes (2 when the vocabulary fits in 16 bits, else 4)
 *   16  u32 seq_len
 *   20  u32 vocab_size
 *   24  i32 bos_id, i32 eos_id, i32 pad_id, i32 mask_id (the stream's; -1: none)
 *   40  u64 tokenizer_hash
 *   48  u64 n_seqs      (sequences in this shard)
 *   56  u64 n_tokens    (real tokens in this shard, padding excluded)
 *   64  u64 n_segments  (entries of the segment table)
 *   72  u32 split (0 train, 1 val)
 *   76  u32 shard index within its split
 *   80  u64 first_seq   (index within the split of this shard's first sequence)
 *   88  i32 pad_value   (the token written at padding positions)
 *   92  u32 data_crc    (CRC32 of every byte after the header)
 *   96  reserved, zero
 *  124  u32 header_crc  (CRC32 of bytes 0..123)
 * Then three sections, each starting at a multiple of 64 bytes:
 *   tokens:   n_seqs * seq_len tokens of token_bytes each (sequence-major)
 *   seqs:     n_seqs records of 24 bytes: u64 packed_index (the sequence's place in packing order, before
 *             the shuffle), u64 first_segment, u32 n_segments, u32 n_valid (real tokens; the rest is padding)
 *   segments: n_segments records of 16 bytes: u64 doc_id (the document's number over all inputs, in input
 *             order), u32 pos (where it starts in the sequence), u32 doc_offset (how far into the document
 *             that position is: 0 when the document starts here)
 * Zero bytes fill the gaps between sections; the file ends right after the segment table. */
#ifndef SCP_SHARD_FORMAT_H
#define SCP_SHARD_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define SCP_SHARD_MAGIC "SCPSHRD"
#define SCP_SHARD_VERSION 1
#define SCP_SHARD_HEADER 128
#define SCP_SHARD_SEQREC 24
#define SCP_SHARD_SEGREC 16
#define SCP_SHARD_ALIGN 64

typedef struct scp_shard_header {
    uint32_t version, token_bytes, seq_len, vocab_size;
    int32_t bos_id, eos_id, pad_id, mask_id;
    uint64_t tokenizer_hash, n_seqs, n_tokens, n_segments;
    uint32_t split, shard_index;
    uint64_t first_seq;
    int32_t pad_value;
    uint32_t data_crc, header_crc;
} scp_shard_header;

static inline void scp_put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void scp_put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint32_t scp_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t scp_get64(const uint8_t *p) { return (uint64_t)scp_get32(p) | (uint64_t)scp_get32(p + 4) << 32; }
static inline uint64_t scp_align64(uint64_t x) { return (x + SCP_SHARD_ALIGN - 1) & ~(uint64_t)(SCP_SHARD_ALIGN - 1); }

/* Section offsets and the exact file size implied by a header. Saturates (returns UINT64_MAX) on overflow
 * so that a corrupt header cannot wrap the arithmetic. */
typedef struct scp_shard_layout { uint64_t tokens, seqs, segments, size; } scp_shard_layout;
int scp_shard_layout_of(const scp_shard_header *h, scp_shard_layout *l);

/* Encode (computing header_crc) and decode (checking magic, version and header_crc; messages name `what`). */
void scp_shard_header_encode(scp_shard_header *h, uint8_t out[SCP_SHARD_HEADER]);
int scp_shard_header_decode(scp_shard_header *h, const uint8_t *in, size_t avail, const char *what);

#endif
