/* dist/shard_layout.h: how sharded training (ZeRO-2 and ZeRO-3, dist/fsdp.h) cuts the parameter vector across
 * ranks, as FSDP does: unit by unit (formats/model_config.h scp_param_units: the embeddings, each layer, the final
 * norm with the LM head), every unit split into `world` equal pieces of per[u] floats, per[u] = ceil(n_u / world)
 * rounded up to a multiple of 16 floats (64-byte rows). Rank r owns piece r of every unit: floats
 * [lo_u + r per[u], lo_u + (r + 1) per[u]) clipped to the unit, so the last pieces may be short or empty. A
 * rank's shard is its pieces one after another, each padded to per[u] (the padding stays zero): the gathered
 * unit is then world * per[u] floats with rank r's piece at r * per[u], which equal-sized collectives (NCCL's
 * all-gather and reduce-scatter) need.
 *
 * The planner (scp-train --plan) and the allocations of dist/fsdp.c both size from this layout. */
#ifndef SCP_SHARD_LAYOUT_H
#define SCP_SHARD_LAYOUT_H

#include <stdint.h>

typedef struct scp_shard_layout {
    int units, world, rank;
    /* (units) the group each unit is cut over: its ranks and this rank's place in it. world and rank above
     * for every unit, except under expert parallelism, whose expert units (formats/model_config.h
     * scp_param_units_split) are cut over the world / E ranks that hold the same experts (dist/expert.h). */
    int *world_of, *rank_of;
    int64_t *unit_lo;     /* (units + 1) unit u is [unit_lo[u], unit_lo[u + 1]) of the parameter vector */
    int64_t *per;         /* (units) floats of each rank's piece of unit u, padding included */
    int64_t *shard_off;   /* (units + 1) where unit u's piece starts in a rank's shard; shard_off[units] is the
                             shard's length in floats (the same on every rank) */
    int64_t max_unit;     /* floats of the largest gathered unit, world_of[u] * per[u] */
    int64_t max_layer;    /* floats of the largest gathered layer unit (units 1 .. units - 2) */
} scp_shard_layout;

/* The layout of `units` units with boundaries unit_lo (units + 1 entries) over world ranks, seen from rank. */
void scp_shard_layout_init(scp_shard_layout *s, const int64_t *unit_lo, int units, int world, int rank);
/* The same with unit u cut over the world_of[u] ranks of a group, in which this rank is rank_of[u] (arrays of
 * `units`; NULL: world and rank). */
void scp_shard_layout_init_groups(scp_shard_layout *s, const int64_t *unit_lo, int units, int world, int rank,
                                  const int *world_of, const int *rank_of);
void scp_shard_layout_free(scp_shard_layout *s);
/* The part of unit u that rank r owns, [*a, *b) in parameter-vector coordinates (*a == *b: none). */
void scp_shard_piece(const scp_shard_layout *s, int u, int r, int64_t *a, int64_t *b);
/* The unit that holds the parameter starting at s (a parameter never straddles units). */
int scp_shard_unit_of(const scp_shard_layout *s, int64_t start);
/* The part of the span [start, end) of unit u (a parameter) in piece r of the unit: [*x, *y) in parameter-vector
 * coordinates (*x == *y: none). Returns where it begins in the shard of the rank that owns piece r. */
int64_t scp_shard_span_piece(const scp_shard_layout *s, int u, int r, int64_t start, int64_t end, int64_t *x,
                             int64_t *y);

#endif
