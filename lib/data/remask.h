/* data/remask.h: the masked-example writer of scp-remask: every sequence of a shard set split masked as masked
 * diffusion's forward process does (data/mask.h), written as masked examples (formats/masked_examples.h, man 5
 * scp-masked) or shown as text for people.
 *
 * Example i's noise level comes from (seed, i / batch) and its mask from (seed, i) alone, so the bytes and the
 * statistics do not depend on the thread count: blocks of about 1 MB of records are masked on a pool of threads
 * (core/pipeline.h) and written, with their sums, in example order. */
#ifndef SCP_DATA_REMASK_H
#define SCP_DATA_REMASK_H

#include "data/mask.h"
#include "data/shard.h"
#include "formats/masked_examples.h"
#include "tok/tokenizer.h"

#include <stdint.h>
#include <stdio.h>

typedef struct scp_remask_opts {
    const char *data;          /* the shard set's directory, for messages */
    int val;                   /* the split: 0 train, 1 val */
    int32_t mask_id;
    uint64_t seed;
    double eps;                /* smallest t */
    scp_t_sampler sampler;
    scp_mask_schedule schedule;
    int batch;                 /* examples per t-sampler batch */
    int prompt_len;            /* positions kept unmasked at the start of every sequence */
    int32_t prompt_end_id;     /* keep each document unmasked up to its first such token; -1: none */
    int targets;               /* store the clean tokens in each record */
    int64_t n_examples;        /* the first n sequences; -1: all */
    int threads;
} scp_remask_opts;

typedef struct scp_remask_stats {
    int64_t examples;
    uint64_t masked, maskable;
    double expect, var;        /* sums over examples of p(t) * maskable and p(t) (1 - p(t)) * maskable */
} scp_remask_stats;

/* The header of the examples of set under o. */
scp_masked_header scp_remask_header(const scp_shardset *set, const scp_remask_opts *o);

/* Write the masked examples (header, records, trailer) onto out (named out_name in messages): 0, or -1 with a
 * message naming the data or the output. Shows progress on a terminal; *st gets the totals. */
int scp_remask_write(const scp_shardset *set, const scp_remask_opts *o, FILE *out, const char *out_name,
                     scp_remask_stats *st);

/* Print the first o->n_examples examples as text onto out: a line of figures each, then the tokens with masked
 * spans in [[ ]], decoded with tok, or as ids when tok is NULL. 0 or -1 (write errors are out's: check it). */
int scp_remask_show(const scp_shardset *set, const scp_remask_opts *o, const scp_tokenizer *tok, FILE *out);

#endif
