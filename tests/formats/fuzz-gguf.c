/* fuzz-gguf.c: libFuzzer target for the GGUF reader (scp_gguf_parse): any input is either refused with a
 * message or parsed into metadata and tensors that lie inside the buffer; the typed getters then read every
 * value. Built by `make fuzz`. */
#include "formats/gguf.h"
#include "fuzz_check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    scp_gguf g;
    memset(&g, 0, sizeof g);
    fuzz_expect_message();
    if (scp_gguf_parse(&g, data, size, "fuzz.gguf") != 0) {
        fuzz_check_refusal("fuzz.gguf");
        return 0;
    }
    double acc = 0;
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const scp_gguf_kv *kv = &g.kv[i];
        uint64_t u;
        double d;
        char *s = NULL;
        if (scp_gguf_get_uint(&g, kv->key, UINT64_MAX, &u, "fuzz") == 0) acc += (double)u;
        if (scp_gguf_get_real(&g, kv->key, &d, "fuzz") == 0) acc += d;
        if (scp_gguf_get_str(&g, kv->key, &s, "fuzz") == 0) free(s);
        if (kv->type == SCP_GGUF_ARRAY && kv->arr_type != SCP_GGUF_STRING)
            for (uint64_t k = 0; k < kv->arr_n; k++) acc += scp_gguf_arr_num(kv, k);
        if (kv->type == SCP_GGUF_ARRAY && kv->arr_type == SCP_GGUF_STRING)
            for (uint64_t k = 0; k < kv->arr_n; k++)
                if (kv->arr_str[k].len) acc += (uint8_t)kv->arr_str[k].s[kv->arr_str[k].len - 1];
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const scp_gguf_tensor *t = &g.t[i];
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size) abort();
        if (t->nbytes) acc += p[0] + p[t->nbytes - 1];
        if (scp_gguf_find_tensor(&g, t->name) != t) abort();
    }
    scp_gguf_close(&g);
    return acc != acc ? 0 : 0;
}
