/* fuzz-st-set.c: libFuzzer target for a checkpoint's tensors under one base name (formats/st_set.h): the input
 * is model.safetensors.index.json, then a NUL byte, then the file "a.safetensors" that the index may name (an
 * input without a NUL is the index alone). Any input is either refused with a message naming a file of the set
 * or opened; every tensor with a float type is then read whole and in two halves, and the halves agree with the
 * whole. Built by `make fuzz`. */
#include "core/io.h"
#include "formats/st_set.h"
#include "fuzz_check.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *dir, *index_path, *shard_path;

static void write_bytes(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
}

/* Up to 2^20 elements of tensor t, whole and as [0, h) + [h, n). */
static void read_tensor(const scp_st_set *s, const scp_tensor_info *t)
{
    if (!scp_dtype_is_float(t->dtype) || t->numel > (1 << 20)) return;
    size_t n = (size_t)t->numel;
    float *whole = malloc(sizeof *whole * (n ? n : 1)), *parts = malloc(sizeof *parts * (n ? n : 1));
    int64_t h = t->numel / 2;
    if (scp_st_set_read_f32(s, t->name, t->ndim, t->shape, whole) != 0 ||
        scp_st_set_read_f32_range(s, t->name, t->ndim, t->shape, 0, h, parts) != 0 ||
        scp_st_set_read_f32_range(s, t->name, t->ndim, t->shape, h, t->numel, parts + h) != 0) {
        fprintf(stderr, "tensor '%s' does not read: %s\n", t->name, scp_last_error());
        abort();
    }
    for (size_t i = 0; i < n; i++)
        if (memcmp(&whole[i], &parts[i], sizeof *whole) != 0 && !(isnan(whole[i]) && isnan(parts[i]))) abort();
    fuzz_expect_message();
    if (scp_st_set_read_f32_range(s, t->name, t->ndim, t->shape, 0, t->numel + 1, whole) == 0) abort();
    fuzz_check_refusal(t->name);
    free(whole);
    free(parts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir) {
        char tmpl[] = "/tmp/fuzz-st-set-XXXXXX";
        if (!mkdtemp(tmpl)) abort();
        dir = strdup(tmpl);
        index_path = scp_path_join(dir, "model.safetensors.index.json");
        shard_path = scp_path_join(dir, "a.safetensors");
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t ilen = nul ? (size_t)(nul - data) : size;
    write_bytes(index_path, data, ilen);
    unlink(shard_path);
    if (nul) write_bytes(shard_path, nul + 1, size - ilen - 1);

    scp_st_set s;
    fuzz_expect_message();
    if (scp_st_set_open(&s, dir, "model") != 0) {
        fuzz_check_refusal(dir);
        return 0;
    }
    for (int k = 0; k < s.n; k++)
        for (int i = 0; i < s.f[k].n; i++) {
            const char *path;
            if (scp_st_set_find(&s, s.f[k].t[i].name, &path) == NULL) abort();
            read_tensor(&s, scp_st_set_find(&s, s.f[k].t[i].name, NULL));
        }
    fuzz_expect_message();
    if (scp_st_set_find(&s, "\x01 no such tensor", NULL) != NULL) abort();
    scp_st_set_close(&s);
    return 0;
}
