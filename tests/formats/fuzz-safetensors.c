/* fuzz-safetensors.c: libFuzzer target for the safetensors header parser (scp_st_parse): any input is either
 * refused with a message or parsed into tensors that lie inside the buffer. Built by `make fuzz`. */
#include "formats/safetensors.h"
#include "fuzz_check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    scp_st_file f;
    memset(&f, 0, sizeof f);
    fuzz_expect_message();
    if (scp_st_parse(&f, data, size, "fuzz.safetensors") != 0) {
        fuzz_check_refusal("fuzz.safetensors");
        return 0;
    }
    uint64_t sum = 0;
    for (int i = 0; i < f.n; i++) {
        const scp_tensor_info *t = &f.t[i];
        const uint8_t *p = t->data;
        if (t->nbytes && (p < data || p + t->nbytes > data + size)) abort();
        if (t->nbytes) sum += p[0] + p[t->nbytes - 1];   /* touch both ends: ASan checks the bounds */
        if (scp_st_find(&f, t->name) != t) abort();
    }
    scp_st_close(&f);
    return (int)(sum & 0);
}
