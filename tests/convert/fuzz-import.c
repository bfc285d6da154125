/* fuzz-import.c: libFuzzer target for the model importers on a single file (GGUF or llama2.c): the input is
 * written to a memory file and imported as scp-import does (open, validate against the parameter table, choose
 * the mask token, convert to bf16, summarise), without writing a checkpoint. Any input is refused with a
 * message or imported. Built by `make fuzz`. */
#include "convert/import.h"
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
    if (fd < 0) {
        fd = memfd_create("fuzz-import", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    scp_import im;
    fuzz_expect_message();
    if (scp_import_open(&im, path, NULL) == 0 && scp_import_validate(&im) == 0 && scp_import_set_mask(&im, -1) == 0 &&
        scp_import_convert(&im, SCP_BF16) == 0) {
        json_t *j = scp_import_info(&im);
        json_decref(j);
    } else {
        fuzz_check_refusal(path);
    }
    scp_import_free(&im);
    return 0;
}
