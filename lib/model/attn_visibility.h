/* model/attn_visibility.h: which keys a query sees, one rule for every backend's attention kernels (C and CUDA:
 * SCP_HD) and for the driver's own check (scp_attn_visible in model/model.h gives the same answer from a batch).
 *
 * Key j is visible to query i of sequence b when
 *   - they are in one document (a->doc, (B, T) ids; a negative id, padding, sees itself alone), and
 *   - the attention is bidirectional, or j <= i, or (annealed attention, DiffuLLaMA's schedule) the draw for
 *     (b, i, j) falls below a->anneal_thresh: each future key visible with probability p.
 * The draw is the top 53 bits of scp_mix3(anneal_seed, b, i << 32 | j): a pure function of its arguments, so a
 * kernel evaluates it wherever a tile needs it and the forward and backward agree without any stored mask.
 * Comparing the 53-bit integer x with thresh = ceil(p 2^53) is the same test as x 2^-53 < p in doubles. */
#ifndef SCP_ATTN_VISIBILITY_H
#define SCP_ATTN_VISIBILITY_H

#include <math.h>
#include <stdint.h>

#include "core/hostdev.h"
#include "core/rng.h"
#include "model/backend.h"

/* The documents' part of the rule, from the ids of query i and key j. */
static inline SCP_HD int scp_attn_doc_visible(int32_t doc_i, int32_t doc_j, int i, int j)
{
    return doc_i < 0 ? i == j : doc_i == doc_j;
}

/* Bounds on the keys the documents leave query i: every key j it sees has lo[i] <= j < hi[i] (lo, hi are (T)).
 * Where the non-negative ids never decrease along the sequence (documents packed one after another, padding
 * anywhere), a document's positions lie between its first and last, so [lo, hi) is that span and a padding query
 * gets [i, i + 1). Returns 0 (lo, hi untouched) where some id decreases: the bounds would not hold, and a kernel
 * takes every key. A kernel that restricts each block of queries to the union of its rows' bounds does only the
 * work of the visible blocks: about T x (mean document length) pairs instead of T x T. */
static inline int scp_attn_doc_spans(const int32_t *doc, int T, int32_t *lo, int32_t *hi)
{
    int32_t last = -1;
    for (int i = 0; i < T; i++) {
        if (doc[i] < 0) continue;
        if (doc[i] < last) return 0;
        last = doc[i];
    }
    for (int i = 0, start = 0; i < T; i++) {
        if (doc[i] >= 0 && (doc[start] < 0 || doc[i] != doc[start])) start = i;
        lo[i] = doc[i] < 0 ? i : start;
    }
    for (int i = T - 1, end = T; i >= 0; i--) {
        if (doc[i] >= 0 && (doc[end - 1] < 0 || doc[i] != doc[end - 1])) end = i + 1;
        hi[i] = doc[i] < 0 ? i + 1 : end;
    }
    return 1;
}

/* The annealed draw in two steps: the part of scp_mix3(seed, b, i << 32 | j) that depends on (seed, b) alone, which a
 * kernel computes once per sequence, then the draw for (i, j) from it. */
static inline SCP_HD uint64_t scp_attn_anneal_key(uint64_t seed, int b) { return scp_mix64(scp_mix64(seed) ^ (uint64_t)b); }
static inline SCP_HD int scp_attn_anneal_visible_keyed(uint64_t key, uint64_t thresh, int i, int j)
{
    return (scp_mix64(key ^ (((uint64_t)(uint32_t)i << 32) | (uint64_t)(uint32_t)j)) >> 11) < thresh;
}

/* The annealed draw: whether future key j of query i in sequence b is visible. */
static inline SCP_HD int scp_attn_anneal_visible(uint64_t seed, uint64_t thresh, int b, int i, int j)
{
    return scp_attn_anneal_visible_keyed(scp_attn_anneal_key(seed, b), thresh, i, j);
}

/* The whole rule for (b, i, j) under a (its doc array read where it lives: host memory on the CPU backends,
 * device memory in a CUDA kernel). */
static inline SCP_HD int scp_attn_visible_at(const scp_attn_args *a, int b, int i, int j)
{
    if (a->doc && !scp_attn_doc_visible(a->doc[(size_t)b * a->T + i], a->doc[(size_t)b * a->T + j], i, j)) return 0;
    if (!a->causal || j <= i) return 1;
    return a->anneal_thresh && scp_attn_anneal_visible(a->anneal_seed, a->anneal_thresh, b, i, j);
}

/* 1 when no query sees a key after itself (causal, not annealed): a kernel's keys for query i end at i. */
static inline SCP_HD int scp_attn_past_only(const scp_attn_args *a) { return a->causal && !a->anneal_thresh; }

/* 1 when keys within that bound (up to i, or every key) can be hidden, so that a kernel evaluates the rule pair by
 * pair: documents, or annealed future keys. 0: plain causal or bidirectional attention, every key in bounds seen. */
static inline SCP_HD int scp_attn_per_pair(const scp_attn_args *a) { return a->doc || (a->causal && a->anneal_thresh); }

/* anneal_thresh for a probability p: ceil(p 2^53), 0 for p <= 0 (plain causal), 2^53 for p >= 1 (every key). */
static inline uint64_t scp_attn_anneal_threshold(double p)
{
    if (!(p > 0)) return 0;
    if (p >= 1) return (uint64_t)1 << 53;
    return (uint64_t)ceil(p * 0x1p53);
}

#endif
