/* tok/tokenizer.h: text <-> token ids, token-for-token identical to the reference implementations (Hugging Face
 * tokenizers for tokenizer.json, SentencePiece for .model files, llama2.c's run.c for tokenizer.bin, OpenAI's
 * GPT-2 encoder for encoder.json + vocab.bpe).
 * Encoding is reentrant: one scp_tokenizer may be used from many threads at once. */
#ifndef SCP_TOKENIZER_H
#define SCP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct scp_tokenizer scp_tokenizer;

/* Load from a file: tokenizer.json, a SentencePiece .model, a llama2.c tokenizer.bin, or GPT-2 encoder.json
 * (with vocab.bpe beside it); or from a checkpoint directory (whatever tokenizer scp-import carried there).
 * Errors name the file and the fault. */
scp_tokenizer *scp_tokenizer_load(const char *path);
void scp_tokenizer_free(scp_tokenizer *t);
/* Whether a checkpoint directory carries a tokenizer file scp_tokenizer_load can read. */
int scp_tokenizer_in_dir(const char *dir);

/* Encode len bytes of text. special != 0 recognises added/special tokens written in the text (HF default);
 * 0 treats them as plain text (--no-special). *ids is malloc'ed. BOS/EOS are not added here. */
int scp_tokenizer_encode(const scp_tokenizer *t, const char *text, size_t len, int special, int32_t **ids, size_t *n);
/* Decode ids to text (malloc'ed, NUL-terminated; *len without the NUL). skip_special drops special tokens. */
char *scp_tokenizer_decode(const scp_tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len);

int scp_tokenizer_vocab_size(const scp_tokenizer *t);    /* ids are in [0, vocab_size) */
int scp_tokenizer_bos_id(const scp_tokenizer *t);        /* -1: none */
int scp_tokenizer_eos_id(const scp_tokenizer *t);
int scp_tokenizer_pad_id(const scp_tokenizer *t);
int scp_tokenizer_token_id(const scp_tokenizer *t, const char *token);  /* exact token string, -1 if absent */
/* A 64-bit identity of the tokenizer: FNV-1a over the vocabulary size and, for each id in order, the bytes
 * that id decodes to (so the same vocabulary carried in different file forms has the same hash).
 * Stored in token streams and shards; scp-train refuses data whose hash differs from the checkpoint's. */
uint64_t scp_tokenizer_hash(const scp_tokenizer *t);

/* Data (a shard set, token stream or masked examples named data_name) records the hash of the tokenizer that made
 * it (0: none recorded). 0 when that is tok's (or nothing is recorded), else -1 with a message naming both and
 * how to retokenize. tok_name names tok's checkpoint or file. */
int scp_tokenizer_check_data(const scp_tokenizer *tok, const char *tok_name, uint64_t data_hash, const char *data_name);
/* The same for the tokenizer of a checkpoint directory; 0 when the directory carries none. */
int scp_tokenizer_check_dir(const char *dir, uint64_t data_hash, const char *data_name);

#endif
