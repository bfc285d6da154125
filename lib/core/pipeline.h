/* core/pipeline.h: an ordered parallel pipeline: batches of items read in order, processed by a pool of threads,
 * written in order.
 *
 * A job has two batch slots, 0 and 1. The calling thread fills a slot with the next batch (fill), the pool
 * processes the batch's items (work: in any order, each item once, on any worker), and the calling thread then
 * drains the slot (drain: the batch's results, in item order). While the pool works on batch k, the calling
 * thread drains batch k - 1 and fills batch k + 1, so reading and writing overlap the work. The stages run in the
 * same order for every thread count (fill k + 1 before drain k), so what drain sees depends on the input alone.
 *
 * A stage fails by returning -1 after scp_error(). The pipeline stops at the first failure in input order: a
 * failed fill, the failed item with the lowest index of a batch (every item before it has run), or a failed
 * drain. A batch with a failed item is never drained; the batches drained before stay drained. The failure's
 * message, recorded on whichever thread, is the caller's scp_last_error().
 *
 *   scp_pipeline p = {.ctx = &job, .fill = fill, .work = work, .drain = drain, .threads = 4};
 *   if (scp_pipeline_run(&p)) scp_die_last();
 */
#ifndef SCP_PIPELINE_H
#define SCP_PIPELINE_H

#include <stdint.h>

typedef struct scp_pipeline {
    void *ctx;
    /* Fill slot (0 or 1) with the next batch: its number of items, 0 when the input is done, or -1. Runs on the
     * calling thread while the workers may be processing the other slot. */
    int64_t (*fill)(void *ctx, int slot);
    /* Process item `item` of slot's batch on worker `worker` (0 <= worker < threads: an index for scratch space).
     * 0 or -1. */
    int (*work)(void *ctx, int slot, int64_t item, int worker);
    /* Consume the n processed items of slot, in item order. 0 or -1. Runs on the calling thread. */
    int (*drain)(void *ctx, int slot, int64_t n);
    /* Worker threads; 1 (or less) processes the items on the calling thread. */
    int threads;
} scp_pipeline;

/* Run the job to the end of its input: 0, or -1 with the first failure's message. */
int scp_pipeline_run(const scp_pipeline *p);

#endif
