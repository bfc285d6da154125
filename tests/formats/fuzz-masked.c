/* fuzz-masked.c: libFuzzer target for the masked-example reader (formats/masked_examples.h): the input is read
 * from a memory file, example by example, to its verified end or to a refusal with a message naming it. Built
 * by `make fuzz`. */
#include "formats/masked_examples.h"
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
    if (fd < 0 && (fd = memfd_create("fuzz-masked", 0)) < 0) abort();
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0) abort();
    FILE *f = fdopen(dup(fd), "rb");
    if (!f) abort();
    scp_masked_reader r;
    fuzz_expect_message();
    if (scp_masked_read_begin(&r, f, "fuzz.masked") != 0) {
        fuzz_check_refusal("fuzz.masked");
    } else {
        /* outputs for a record of T tokens only where the input could hold one (every output may be NULL) */
        size_t T = r.h.seq_len <= size ? r.h.seq_len : 0;
        int32_t *noisy = T ? malloc(sizeof *noisy * T) : NULL, *targets = T ? malloc(sizeof *targets * T) : NULL;
        uint8_t *mask = T ? malloc(T) : NULL;
        uint64_t index;
        double t;
        int rc;
        while ((rc = scp_masked_read_next(&r, &index, &t, noisy, targets, mask)) == 1)
            for (size_t j = 0; j < T; j++)
                if (mask[j] > 1) abort();
        if (rc < 0) fuzz_check_refusal("fuzz.masked");
        free(noisy);
        free(targets);
        free(mask);
    }
    scp_masked_read_close(&r);
    fclose(f);
    return 0;
}
