/* fuzz-tokstream.c: libFuzzer target for the token stream reader (formats/tokstream.h): the input is read as a
 * stream from a memory file, document by document, to its verified end or to a refusal with a message naming
 * it; every id read is inside the header's vocabulary. Built by `make fuzz`. */
#include "formats/tokstream.h"
#include "fuzz_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0 && (fd = memfd_create("fuzz-tokstream", 0)) < 0) abort();
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0) abort();
    FILE *f = fdopen(dup(fd), "rb");
    if (!f) abort();
    scp_tokstream_reader r;
    fuzz_expect_message();
    if (scp_tokstream_read_begin(&r, f, "fuzz.tokens") != 0) {
        fuzz_check_refusal("fuzz.tokens");
    } else {
        int32_t *ids = NULL;
        size_t cap = 0;
        uint32_t n;
        int rc;
        while ((rc = scp_tokstream_read_doc(&r, &ids, &cap, &n)) == 1)
            for (uint32_t i = 0; i < n; i++)
                if (ids[i] < 0 || (uint32_t)ids[i] >= r.h.vocab_size) abort();
        if (rc < 0) fuzz_check_refusal("fuzz.tokens");
        free(ids);
    }
    scp_tokstream_read_close(&r);
    fclose(f);
    return 0;
}
