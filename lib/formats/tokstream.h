/* formats/tokstream.h: the token stream, scp-tokenize's output and scp-shard's input (man 5 scp-tokens).
 *
 * Little-endian throughout. A 64-byte header:
 *   0  char[8] magic "SCPTOKS\0"
 *   8  u32 version (1)
 *  12  u32 token_bytes (2 or 4: 2 when the vocabulary fits in 16 bits)
 *  16  u32 vocab_size
 *  20  i32 bos_id, i32 eos_id, i32 pad_id, i32 mask_id   (-1: none)
 *  36  u32 flags (bit 0: BOS added to each document, bit 1: EOS added)
 *  40  u64 tokenizer_hash (scp_tokenizer_hash: identifies the tokenizer; 0 = unknown)
 *  48  u8[16] reserved, zero
 * then documents, each: u32 n_tokens, then n_tokens tokens of token_bytes each;
 * then a trailer: u32 0xFFFFFFFF, u64 n_documents, u64 n_tokens, u32 crc32 of every byte before this crc field
 * (header, documents and the trailer's first 20 bytes).
 * A stream that ends without its trailer is truncated, and readers say so. Written and read sequentially, so
 * it passes through pipes. */
#ifndef SCP_TOKSTREAM_H
#define SCP_TOKSTREAM_H

#include <stdint.h>
#include <stdio.h>

#define SCP_TOKSTREAM_MAGIC "SCPTOKS"
#define SCP_TOKSTREAM_VERSION 1
#define SCP_TOKSTREAM_END 0xFFFFFFFFu
#define SCP_TOKSTREAM_FLAG_BOS 1u
#define SCP_TOKSTREAM_FLAG_EOS 2u

typedef struct scp_tokstream_header {
    uint32_t version, token_bytes, vocab_size;
    int32_t bos_id, eos_id, pad_id, mask_id;
    uint32_t flags;
    uint64_t tokenizer_hash;
} scp_tokstream_header;

typedef struct scp_tokstream_writer {
    FILE *f;
    const char *what;          /* name for messages */
    scp_tokstream_header h;
    uint64_t n_docs, n_tokens;
    uint32_t crc;
    void *buf;                 /* encoding buffer */
    size_t cap;
} scp_tokstream_writer;

/* Header fields are taken from h (token_bytes chosen from vocab_size when 0). */
int scp_tokstream_write_begin(scp_tokstream_writer *w, FILE *f, const char *what, const scp_tokstream_header *h);
int scp_tokstream_write_doc(scp_tokstream_writer *w, const int32_t *ids, uint32_t n);
int scp_tokstream_write_end(scp_tokstream_writer *w);   /* writes the trailer, frees the buffer */

typedef struct scp_tokstream_reader {
    FILE *f;
    char *what;
    scp_tokstream_header h;
    uint64_t n_docs, n_tokens;
    uint32_t crc;
    int done;
    uint8_t *raw;
    size_t raw_cap;
} scp_tokstream_reader;

int scp_tokstream_read_begin(scp_tokstream_reader *r, FILE *f, const char *what);
/* Next document into *ids (grown with realloc, capacity in *cap); returns 1 and sets *n, 0 at the verified
 * end, -1 on error (truncated, bad id >= vocab_size, checksum or count mismatch). */
int scp_tokstream_read_doc(scp_tokstream_reader *r, int32_t **ids, size_t *cap, uint32_t *n);
void scp_tokstream_read_close(scp_tokstream_reader *r);

#endif
