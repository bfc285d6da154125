/* formats/masked_examples.h: the masked-example file, scp-remask's output (man 5 scp-masked).
 *
 * Little-endian throughout. A 128-byte header:
 *    0  char[8] magic "SCPMASK\0"
 *    8  u32 version (1)
 *   12  u32 token_bytes (2 or 4)
 *   16  u32 seq_len (T)
 *   20  u32 vocab_size (of the data)
 *   24  i32 mask_id
 *   28  u32 flags (bit 0: each record carries the clean tokens too)
 *   32  u64 seed
 *   40  u32 t_sampler (0 uniform, 1 stratified, 2 antithetic)
 *   44  u32 schedule (0 linear, 1 cosine, 2 poly2)
 *   48  f64 eps
 *   56  u32 batch (B: t is drawn per batch of B consecutive examples)
 *   60  u32 prompt_len
 *   64  u64 tokenizer_hash
 *   72  u32 split (0 train, 1 val)
 *   76  i32 prompt_end_id (-1: none)
 *   80  reserved, zero
 * then fixed-size records, one per example:
 *    0  u64 index (the sequence's index in the shard set split)
 *    8  f64 t
 *   16  u32 n_masked, u32 n_maskable
 *   24  noisy tokens: T of token_bytes each (mask_id where masked)
 *       [clean tokens: T of token_bytes each, when flags bit 0]
 *       mask bits: ceil(T / 8) bytes, position j is bit (j % 8) of byte j / 8
 *       zero bytes up to a multiple of 8
 * then a 40-byte trailer: u64 0xFFFFFFFFFFFFFFFF, u64 n_examples, u64 total masked, u64 total maskable,
 * u32 CRC32 of every byte before this field, u32 0. A file without its trailer is truncated. */
#ifndef SCP_MASKED_EXAMPLES_H
#define SCP_MASKED_EXAMPLES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SCP_MASKED_MAGIC "SCPMASK"
#define SCP_MASKED_VERSION 1
#define SCP_MASKED_HEADER 128
#define SCP_MASKED_TRAILER 40
#define SCP_MASKED_FLAG_TARGETS 1u

typedef struct scp_masked_header {
    uint32_t version, token_bytes, seq_len, vocab_size;
    int32_t mask_id;
    uint32_t flags;
    uint64_t seed;
    uint32_t t_sampler, schedule;
    double eps;
    uint32_t batch, prompt_len;
    uint64_t tokenizer_hash;
    uint32_t split;
    int32_t prompt_end_id;
} scp_masked_header;

size_t scp_masked_record_size(const scp_masked_header *h);
void scp_masked_header_encode(const scp_masked_header *h, uint8_t out[SCP_MASKED_HEADER]);
int scp_masked_header_decode(scp_masked_header *h, const uint8_t *in, size_t avail, const char *what);
/* One record into out (scp_masked_record_size bytes). targets is used only with SCP_MASKED_FLAG_TARGETS. */
void scp_masked_record_encode(const scp_masked_header *h, uint8_t *out, uint64_t index, double t, uint32_t n_masked,
                              uint32_t n_maskable, const int32_t *noisy, const int32_t *targets, const uint8_t *mask);
/* The trailer; crc is the CRC32 of everything written before it. */
void scp_masked_trailer_encode(uint8_t out[SCP_MASKED_TRAILER], uint64_t n_examples, uint64_t masked, uint64_t maskable,
                               uint32_t crc);

typedef struct scp_masked_reader {
    FILE *f;
    char *what;
    scp_masked_header h;
    uint8_t *rec;
    size_t rsize, rec_cap;   /* a record's size; the bytes rec holds room for (grown as a record's bytes arrive) */
    uint32_t crc;
    uint64_t n, masked, maskable;
    int done;
} scp_masked_reader;

int scp_masked_read_begin(scp_masked_reader *r, FILE *f, const char *what);
/* Next example (any output may be NULL; targets needs the flag): 1, or 0 at the verified end, -1 on error. */
int scp_masked_read_next(scp_masked_reader *r, uint64_t *index, double *t, int32_t *noisy, int32_t *targets, uint8_t *mask);
void scp_masked_read_close(scp_masked_reader *r);

#endif
