/* convert/rope_rows.c: moving q/k rows between RoPE's interleaved and half-split orders (convert/rope_rows.h). */
#include "convert/rope_rows.h"
#include "core/error.h"

#include <string.h>

/* Each head's rows between the interleaved layout (row 2i + j: pair i, member j) and the half-split one (row
 * j * head_dim/2 + i). w is (n_heads * head_dim, cols) of es bytes. */
static void *rope_rows(const void *w, size_t es, int n_heads, int head_dim, int64_t cols, int to_half_split)
{
    size_t row = (size_t)cols * es, half = (size_t)head_dim / 2;
    uint8_t *out = scp_xmalloc((size_t)n_heads * (size_t)head_dim * row);
    const uint8_t *src = w;
    for (size_t h = 0; h < (size_t)n_heads; h++)
        for (size_t i = 0; i < half; i++)
            for (size_t j = 0; j < 2; j++) {
                size_t inter = h * (size_t)head_dim + 2 * i + j, split = h * (size_t)head_dim + j * half + i;
                memcpy(out + (to_half_split ? split : inter) * row, src + (to_half_split ? inter : split) * row, row);
            }
    return out;
}

void *scp_rope_unpermute(const void *w, size_t es, int n_heads, int head_dim, int64_t cols)
{
    return rope_rows(w, es, n_heads, head_dim, cols, 1);
}

void *scp_rope_permute(const void *w, size_t es, int n_heads, int head_dim, int64_t cols)
{
    return rope_rows(w, es, n_heads, head_dim, cols, 0);
}
