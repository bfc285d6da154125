/* dist/shard_layout.c: the unit-by-unit cut of the parameter vector across ranks (dist/shard_layout.h). */
#include "dist/shard_layout.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

#define PIECE_ALIGN 16   /* floats: 64-byte pieces */

void scp_shard_layout_init(scp_shard_layout *s, const int64_t *unit_lo, int units, int world, int rank)
{
    scp_shard_layout_init_groups(s, unit_lo, units, world, rank, NULL, NULL);
}

void scp_shard_layout_init_groups(scp_shard_layout *s, const int64_t *unit_lo, int units, int world, int rank,
                                  const int *world_of, const int *rank_of)
{
    memset(s, 0, sizeof *s);
    s->units = units, s->world = world, s->rank = rank;
    s->world_of = scp_xmalloc(sizeof *s->world_of * (size_t)units);
    s->rank_of = scp_xmalloc(sizeof *s->rank_of * (size_t)units);
    for (int u = 0; u < units; u++) {
        s->world_of[u] = world_of ? world_of[u] : world;
        s->rank_of[u] = rank_of ? rank_of[u] : rank;
    }
    s->unit_lo = scp_xmalloc(sizeof *s->unit_lo * (size_t)(units + 1));
    s->per = scp_xmalloc(sizeof *s->per * (size_t)units);
    s->shard_off = scp_xmalloc(sizeof *s->shard_off * (size_t)(units + 1));
    memcpy(s->unit_lo, unit_lo, sizeof *s->unit_lo * (size_t)(units + 1));
    s->shard_off[0] = 0;
    for (int u = 0; u < units; u++) {
        int w = s->world_of[u];
        int64_t n = unit_lo[u + 1] - unit_lo[u], per = (n + w - 1) / w;
        per = (per + PIECE_ALIGN - 1) / PIECE_ALIGN * PIECE_ALIGN;
        s->per[u] = per;
        s->shard_off[u + 1] = s->shard_off[u] + per;
        int64_t gathered = per * w;
        if (gathered > s->max_unit) s->max_unit = gathered;
        if (u > 0 && u < units - 1 && gathered > s->max_layer) s->max_layer = gathered;
    }
}

void scp_shard_layout_free(scp_shard_layout *s)
{
    free(s->unit_lo);
    free(s->per);
    free(s->shard_off);
    free(s->world_of);
    free(s->rank_of);
    memset(s, 0, sizeof *s);
}

void scp_shard_piece(const scp_shard_layout *s, int u, int r, int64_t *a, int64_t *b)
{
    int64_t lo = s->unit_lo[u], hi = s->unit_lo[u + 1];
    int64_t x = lo + (int64_t)r * s->per[u], y = x + s->per[u];
    *a = x < hi ? x : hi;
    *b = y < hi ? y : hi;
}

int scp_shard_unit_of(const scp_shard_layout *s, int64_t start)
{
    int u = 0;
    while (u + 1 < s->units && s->unit_lo[u + 1] <= start) u++;
    return u;
}

int64_t scp_shard_span_piece(const scp_shard_layout *s, int u, int r, int64_t start, int64_t end, int64_t *x,
                             int64_t *y)
{
    int64_t a, b;
    scp_shard_piece(s, u, r, &a, &b);
    *x = start > a ? start : a > end ? end : a;
    *y = end < b ? end : b < *x ? *x : b;
    return s->shard_off[u] + (*x - a);
}
