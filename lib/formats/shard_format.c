/* formats/shard_format.c: shard header encoding, decoding and the section layout (format in formats/shard_format.h). */
#include "formats/shard_format.h"
#include "core/error.h"
#include "core/io.h"

#include <string.h>

/* a * b + c with saturation at UINT64_MAX. */
static uint64_t mul_add(uint64_t a, uint64_t b, uint64_t c)
{
    if (b && a > (UINT64_MAX - c) / b) return UINT64_MAX;
    return a * b + c;
}

int scp_shard_layout_of(const scp_shard_header *h, scp_shard_layout *l)
{
    /* Anything past 2^62 bytes is nonsense from a corrupt header: refuse before the arithmetic wraps. */
    const uint64_t lim = (uint64_t)1 << 62;
    uint64_t ntok = mul_add(h->n_seqs, h->seq_len, 0);
    uint64_t tok_bytes = mul_add(ntok, h->token_bytes, 0);
    if (ntok >= lim || tok_bytes >= lim || h->n_seqs >= lim / SCP_SHARD_SEQREC || h->n_segments >= lim / SCP_SHARD_SEGREC)
        return -1;
    l->tokens = SCP_SHARD_HEADER;
    l->seqs = scp_align64(l->tokens + tok_bytes);
    l->segments = scp_align64(l->seqs + h->n_seqs * SCP_SHARD_SEQREC);
    l->size = l->segments + h->n_segments * SCP_SHARD_SEGREC;
    return 0;
}

void scp_shard_header_encode(scp_shard_header *h, uint8_t out[SCP_SHARD_HEADER])
{
    memset(out, 0, SCP_SHARD_HEADER);
    memcpy(out, SCP_SHARD_MAGIC, 8);
    scp_put32(out + 8, h->version);
    scp_put32(out + 12, h->token_bytes);
    scp_put32(out + 16, h->seq_len);
    scp_put32(out + 20, h->vocab_size);
    scp_put32(out + 24, (uint32_t)h->bos_id);
    scp_put32(out + 28, (uint32_t)h->eos_id);
    scp_put32(out + 32, (uint32_t)h->pad_id);
    scp_put32(out + 36, (uint32_t)h->mask_id);
    scp_put64(out + 40, h->tokenizer_hash);
    scp_put64(out + 48, h->n_seqs);
    scp_put64(out + 56, h->n_tokens);
    scp_put64(out + 64, h->n_segments);
    scp_put32(out + 72, h->split);
    scp_put32(out + 76, h->shard_index);
    scp_put64(out + 80, h->first_seq);
    scp_put32(out + 88, (uint32_t)h->pad_value);
    scp_put32(out + 92, h->data_crc);
    h->header_crc = scp_crc32(0, out, 124);
    scp_put32(out + 124, h->header_crc);
}

int scp_shard_header_decode(scp_shard_header *h, const uint8_t *in, size_t avail, const char *what)
{
    if (avail >= 8 && memcmp(in, SCP_SHARD_MAGIC, 8) != 0) return scp_error("%s: not an scp shard (bad magic)", what);
    if (avail < SCP_SHARD_HEADER) return scp_error("%s: truncated shard (%zu bytes, the header alone is 128)", what, avail);
    memset(h, 0, sizeof *h);
    h->version = scp_get32(in + 8);
    h->token_bytes = scp_get32(in + 12);
    h->seq_len = scp_get32(in + 16);
    h->vocab_size = scp_get32(in + 20);
    h->bos_id = (int32_t)scp_get32(in + 24);
    h->eos_id = (int32_t)scp_get32(in + 28);
    h->pad_id = (int32_t)scp_get32(in + 32);
    h->mask_id = (int32_t)scp_get32(in + 36);
    h->tokenizer_hash = scp_get64(in + 40);
    h->n_seqs = scp_get64(in + 48);
    h->n_tokens = scp_get64(in + 56);
    h->n_segments = scp_get64(in + 64);
    h->split = scp_get32(in + 72);
    h->shard_index = scp_get32(in + 76);
    h->first_seq = scp_get64(in + 80);
    h->pad_value = (int32_t)scp_get32(in + 88);
    h->data_crc = scp_get32(in + 92);
    h->header_crc = scp_get32(in + 124);
    if (scp_crc32(0, in, 124) != h->header_crc) return scp_error("%s: header checksum mismatch: the shard is corrupt", what);
    if (h->version != SCP_SHARD_VERSION) return scp_error("%s: shard version %u is not supported (expected 1)", what, h->version);
    if (h->token_bytes != 2 && h->token_bytes != 4) return scp_error("%s: token width %u is invalid (2 or 4)", what, h->token_bytes);
    if (h->seq_len == 0 || h->seq_len > (1u << 30)) return scp_error("%s: sequence length %u is invalid", what, h->seq_len);
    /* ids are int32_t once read: a vocabulary past INT32_MAX would let a 4-byte token in it read as a negative id */
    if (h->vocab_size == 0 || h->vocab_size > INT32_MAX || (h->token_bytes == 2 && h->vocab_size > 65536))
        return scp_error("%s: vocabulary size %u is invalid for %u-byte tokens", what, h->vocab_size, h->token_bytes);
    if (h->split > 1) return scp_error("%s: split code %u is invalid", what, h->split);
    return 0;
}
