/* fuzz-tokenizer.c: libFuzzer target for the tokenizer loaders (scp_tokenizer_load): the input is written to a
 * memory file whose name has no extension, so that the loader picks the form by its first byte as it does for
 * any such file: '{' a tokenizer.json, 0x0a a SentencePiece .model, anything else a llama2.c tokenizer.bin.
 * Any input is either refused with a message naming the file or loaded; a loaded tokenizer then encodes a few
 * texts and the input itself, with and without special tokens, to ids inside its vocabulary, and decodes them
 * and every id. Built by `make fuzz`. */
#include "tok/tokenizer.h"
#include "fuzz_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;
static char path[64];

static void encode_decode(const scp_tokenizer *t, const char *text, size_t len)
{
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (scp_tokenizer_encode(t, text, len, special, &ids, &n) != 0) {
            fprintf(stderr, "encoding failed: %s\n", scp_last_error());
            abort();
        }
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= scp_tokenizer_vocab_size(t)) {
                fprintf(stderr, "id %d outside the vocabulary of %d\n", ids[i], scp_tokenizer_vocab_size(t));
                abort();
            }
        size_t dl;
        free(scp_tokenizer_decode(t, ids, n, !special, &dl));
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0) {
        fd = memfd_create("fuzz-tokenizer", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    fuzz_expect_message();
    scp_tokenizer *t = scp_tokenizer_load(path);
    if (!t) {
        fuzz_check_refusal(path);
        return 0;
    }
    static const char *texts[] = {"", "Hello world", "  two  spaces ", "tab\tnew\nline", "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC",
                                  "\xE2\x96\x81meta", "<s>a</s><unk>", "<|endoftext|>x", "bad \xFF\xC3 utf8", "123 4567"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) encode_decode(t, texts[i], strlen(texts[i]));
    encode_decode(t, (const char *)data, size < 512 ? size : 512);
    int V = scp_tokenizer_vocab_size(t), n = V < 4096 ? V : 4096;
    int32_t *all = malloc(sizeof *all * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) all[i] = i;
    size_t dl;
    free(scp_tokenizer_decode(t, all, (size_t)n, 0, &dl));
    free(all);
    int b = scp_tokenizer_bos_id(t), e = scp_tokenizer_eos_id(t), p = scp_tokenizer_pad_id(t);
    if (b >= V || e >= V || p >= V || b < -1 || e < -1 || p < -1) abort();
    if (scp_tokenizer_token_id(t, "<unk>") >= V) abort();
    scp_tokenizer_free(t);
    return 0;
}
