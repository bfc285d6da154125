/* fuzz-textinput.c: libFuzzer target for scp-tokenize's document input (data/textinput.h): the first byte of the
 * input picks the options (bits 0-1 the document unit, 2-3 the format, 4 skip_bad), the rest is the file, read
 * through libarchive as any input is (compressed, an archive, or plain). Any input is either read to its end,
 * document by document, or refused with a message naming the file. Built by `make fuzz`. */
#include "data/textinput.h"
#include "fuzz_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (fd < 0) {
        if ((fd = memfd_create("fuzz-textinput", 0)) < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data + 1, size - 1, 0) != (ssize_t)(size - 1)) abort();
    scp_textin_opts o = {.doc = data[0] & 3, .format = (data[0] >> 2) & 3, .field = "text", .skip_bad = (data[0] >> 4) & 1};
    if (o.doc > SCP_DOC_PARAGRAPH || o.format > SCP_IN_JSONL) return 0;
    fuzz_expect_message();
    scp_textin *in = scp_textin_open(path, &o);
    if (!in) {
        fuzz_check_refusal(path);
        return 0;
    }
    const char *text;
    size_t len;
    int rc;
    uint64_t sum = 0;
    while ((rc = scp_textin_next(in, &text, &len)) == 1) {
        if (!len) abort();   /* empty documents are skipped */
        sum += (uint8_t)text[0] + (uint8_t)text[len - 1];
    }
    if (rc < 0) fuzz_check_refusal(path);
    scp_textin_close(in);
    return (int)(sum & 0);
}
