/* unit-pipeline.c: the ordered parallel pipeline (lib/core/pipeline.c): the drained items are the input's, in
 * order, for 1 to 8 threads with items finishing out of order; the stages run in the same order for any thread
 * count (fill k + 1 before drain k); and a failure in fill, work or drain stops the run with its message (from
 * the worker thread that recorded it), the lowest failed item of a batch winning, whatever the timing. */
#include "../tap.h"

#include "core/error.h"
#include "core/pipeline.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_BATCH = 64, MAX_ITEMS = 4000, MAX_EVENTS = 1000 };

typedef struct job {
    int64_t total, filled;          /* items of the whole input; handed out so far */
    int64_t first[2];               /* global index of each slot's first item */
    uint64_t value[2][MAX_BATCH];   /* work's result per item */
    int64_t out[MAX_ITEMS];         /* drained global indices, in drain order */
    uint64_t out_value[MAX_ITEMS];
    int64_t n_out;
    int threads, bad_worker;
    char events[MAX_EVENTS];        /* 'F' or 'D' per fill and drain call (fill returning 0 included) */
    int n_events, fill_calls, drain_calls;
    /* Failures to inject (-1: none). */
    int64_t fail_item, fail_item2, slow_item;
    int fail_fill_call, fail_drain_call;
} job;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* Batch k holds 1 + (37 k mod 50) items: varied sizes, some smaller than the thread count. */
static int64_t fill(void *ctx, int slot)
{
    job *j = ctx;
    j->events[j->n_events++] = 'F';
    if (j->fill_calls++ == j->fail_fill_call) return scp_error("fill %d failed", j->fail_fill_call);
    int64_t n = 1 + (37 * (j->fill_calls - 1)) % 50, left = j->total - j->filled;
    if (n > left) n = left;
    j->first[slot] = j->filled;
    j->filled += n;
    return n;
}

static void pause_ns(long ns)
{
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

static int work(void *ctx, int slot, int64_t item, int worker)
{
    job *j = ctx;
    int64_t g = j->first[slot] + item;
    if (worker < 0 || worker >= (j->threads > 1 ? j->threads : 1)) j->bad_worker = 1;
    /* Items finish out of order: a pseudo-random pause each, a long one for slow_item. */
    pause_ns(g == j->slow_item ? 20000000 : (long)(mix((uint64_t)g) % 20000));
    if (g == j->fail_item || g == j->fail_item2) return scp_error("item %lld failed", (long long)g);
    j->value[slot][item] = mix((uint64_t)g + 1);
    return 0;
}

static int drain(void *ctx, int slot, int64_t n)
{
    job *j = ctx;
    j->events[j->n_events++] = 'D';
    if (j->drain_calls++ == j->fail_drain_call) return scp_error("drain %d failed", j->fail_drain_call);
    for (int64_t i = 0; i < n; i++) {
        j->out[j->n_out] = j->first[slot] + i;
        j->out_value[j->n_out++] = j->value[slot][i];
    }
    return 0;
}

static job *new_job(int threads, int64_t total)
{
    job *j = calloc(1, sizeof *j);
    j->total = total;
    j->threads = threads;
    j->fail_item = j->fail_item2 = j->slow_item = -1;
    j->fail_fill_call = j->fail_drain_call = -1;
    return j;
}

static int go(job *j)
{
    scp_pipeline p = {.ctx = j, .fill = fill, .work = work, .drain = drain, .threads = j->threads};
    scp_error("no message");
    return scp_pipeline_run(&p);
}

/* The drained items are 0 .. n - 1 in order with the values work computed for them. */
static int in_order(const job *j, int64_t n)
{
    if (j->n_out != n) return 0;
    for (int64_t i = 0; i < n; i++)
        if (j->out[i] != i || j->out_value[i] != mix((uint64_t)i + 1)) return 0;
    return 1;
}

static void test_order(void)
{
    static const int counts[] = {1, 2, 4, 8};
    job *ref = new_job(1, 1000);
    int rc = go(ref);
    tap_ok(rc == 0 && in_order(ref, 1000) && !ref->bad_worker, "1 thread: 1000 items drained in order, once each");
    for (int k = 1; k < 4; k++) {
        job *j = new_job(counts[k], 1000);
        rc = go(j);
        tap_ok(rc == 0 && in_order(j, 1000) && !j->bad_worker && j->n_events == ref->n_events &&
                   memcmp(j->events, ref->events, (size_t)ref->n_events) == 0,
               "%d threads: the same items in the same order, the same fill/drain sequence as 1 thread", counts[k]);
        free(j);
    }
    /* fill 0, fill 1, drain 0, fill 2, drain 1, ...: reading and writing overlap the work. */
    tap_ok(ref->n_events >= 4 && memcmp(ref->events, "FFDFD", 5) == 0 && ref->events[ref->n_events - 1] == 'D',
           "fill k + 1 comes before drain k (%.8s...)", ref->events);
    free(ref);
    job *e = new_job(4, 0);
    rc = go(e);
    tap_ok(rc == 0 && e->n_out == 0 && e->n_events == 1 && e->events[0] == 'F', "an empty input: one fill, no drain");
    free(e);
}

static void test_failures(void)
{
    for (int threads = 1; threads <= 4; threads += 3) {
        /* Items 300 and 301 fail; 300 is slow, so with threads 301 fails first: 300's message must win. Batch sizes
         * 1, 38, 25, 12, 49, 36, 23, 10, 47, 34, 21, 8 end at items 1, 39, 64, 76, 125, 161, 184, 194, 241, 275, 296,
         * 304: both are in batch 11 (items 296 .. 303). */
        job *j = new_job(threads, 1000);
        j->fail_item = 300;
        j->fail_item2 = 301;
        j->slow_item = 300;
        int rc = go(j);
        tap_ok(rc == -1 && strcmp(scp_last_error(), "item 300 failed") == 0,
               "%d thread(s): the lowest failed item of a batch wins, its message carried from the worker ('%s')", threads,
               scp_last_error());
        tap_ok(in_order(j, 296), "%d thread(s): the batches before the failed one are drained (%lld items), nothing after",
               threads, (long long)j->n_out);
        free(j);

        j = new_job(threads, 1000);
        j->fail_fill_call = 3;
        rc = go(j);
        tap_ok(rc == -1 && strcmp(scp_last_error(), "fill 3 failed") == 0 && in_order(j, 39),
               "%d thread(s): a failed fill of batch 3 stops the run after draining batches 0 and 1", threads);
        free(j);

        j = new_job(threads, 1000);
        j->fail_drain_call = 2;
        rc = go(j);
        tap_ok(rc == -1 && strcmp(scp_last_error(), "drain 2 failed") == 0 && in_order(j, 39) && j->fill_calls == 4,
               "%d thread(s): a failed drain of batch 2 stops the run: no more fills (%d calls)", threads, j->fill_calls);
        free(j);
    }
}

int main(void)
{
    test_order();
    test_failures();
    return tap_done();
}
