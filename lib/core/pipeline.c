/* core/pipeline.c: the ordered parallel pipeline of core/pipeline.h on POSIX threads. */
#include "core/pipeline.h"
#include "core/error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct run {
    const scp_pipeline *p;
    int workers;                /* threads started (0: items run on the calling thread) */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t generation;        /* batches started so far; a worker waits for the next one */
    int quit;
    int slot;                   /* the batch being processed */
    int64_t n;
    atomic_llong next;          /* next item to hand out */
    atomic_int stop;            /* an item failed: hand out no more */
    int busy;                   /* workers still on the batch */
    int64_t err_item;           /* lowest failed item of the batch, -1: none */
    char *err_msg;
} run;

typedef struct worker_arg {
    run *r;
    int index;
} worker_arg;

static void record_item_failure(run *r, int64_t item)
{
    pthread_mutex_lock(&r->mu);
    if (r->err_item < 0 || item < r->err_item) {
        free(r->err_msg);
        r->err_msg = scp_xstrdup(scp_last_error());
        r->err_item = item;
    }
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->stop, 1);
}

/* Items are handed out in increasing order, so every item below a failed one has been handed out and runs: the
 * lowest failed item does not depend on the timing. */
static void process_items(run *r, int worker)
{
    while (!atomic_load(&r->stop)) {
        int64_t i = atomic_fetch_add(&r->next, 1);
        if (i >= r->n) break;
        if (r->p->work(r->p->ctx, r->slot, i, worker)) record_item_failure(r, i);
    }
}

static void *worker_main(void *arg)
{
    worker_arg *a = arg;
    run *r = a->r;
    uint64_t seen = 0;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (r->generation == seen && !r->quit) pthread_cond_wait(&r->go, &r->mu);
        if (r->quit) break;
        seen = r->generation;
        pthread_mutex_unlock(&r->mu);
        process_items(r, a->index);
        pthread_mutex_lock(&r->mu);
        if (--r->busy == 0) pthread_cond_signal(&r->done);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Hand slot's n items to the workers (or process them here when there are none). */
static void start_batch(run *r, int slot, int64_t n)
{
    pthread_mutex_lock(&r->mu);
    r->slot = slot;
    r->n = n;
    atomic_store(&r->next, 0);
    atomic_store(&r->stop, 0);
    r->err_item = -1;
    r->busy = r->workers;
    r->generation++;
    pthread_cond_broadcast(&r->go);
    pthread_mutex_unlock(&r->mu);
    if (!r->workers) process_items(r, 0);
}

/* Wait for the batch: 0, or -1 when an item failed (its message in r->err_msg). */
static int finish_batch(run *r)
{
    pthread_mutex_lock(&r->mu);
    while (r->busy) pthread_cond_wait(&r->done, &r->mu);
    int failed = r->err_item >= 0;
    pthread_mutex_unlock(&r->mu);
    return failed ? -1 : 0;
}

/* Keep the first failure's message: later stages may record others. */
static void keep_message(char **msg)
{
    if (!*msg) *msg = scp_xstrdup(scp_last_error());
}

static int run_batches(run *r)
{
    const scp_pipeline *p = r->p;
    int64_t n[2];
    char *msg = NULL;
    int cur = 0, in_flight = 0;
    n[0] = p->fill(p->ctx, 0);
    if (n[0] < 0) keep_message(&msg);
    else if (n[0] > 0) {
        start_batch(r, 0, n[0]);
        in_flight = 1;
    }
    while (!msg && n[cur] > 0) {
        int nxt = cur ^ 1;
        n[nxt] = p->fill(p->ctx, nxt);
        char *fill_msg = n[nxt] < 0 ? scp_xstrdup(scp_last_error()) : NULL;
        in_flight = 0;
        if (finish_batch(r)) {
            msg = r->err_msg;
            r->err_msg = NULL;
            free(fill_msg);
            break;
        }
        if (fill_msg) {
            msg = fill_msg;
            break;
        }
        if (n[nxt] > 0) {
            start_batch(r, nxt, n[nxt]);
            in_flight = 1;
        }
        if (p->drain(p->ctx, cur, n[cur])) keep_message(&msg);
        cur = nxt;
    }
    if (in_flight) finish_batch(r);
    if (!msg) return 0;
    scp_error("%s", msg);
    free(msg);
    return -1;
}

int scp_pipeline_run(const scp_pipeline *p)
{
    run r = {.p = p, .err_item = -1};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.go, NULL);
    pthread_cond_init(&r.done, NULL);
    int want = p->threads > 1 ? p->threads : 0;
    pthread_t *th = want ? scp_xmalloc(sizeof *th * (size_t)want) : NULL;
    worker_arg *args = want ? scp_xmalloc(sizeof *args * (size_t)want) : NULL;
    /* Fewer threads than asked (a process limit) only slow the job down; none at all runs it here. */
    for (int i = 0; i < want; i++) {
        args[i] = (worker_arg){&r, i};
        if (pthread_create(&th[i], NULL, worker_main, &args[i]) != 0) break;
        r.workers++;
    }
    int rc = run_batches(&r);
    pthread_mutex_lock(&r.mu);
    r.quit = 1;
    pthread_cond_broadcast(&r.go);
    pthread_mutex_unlock(&r.mu);
    for (int i = 0; i < r.workers; i++) pthread_join(th[i], NULL);
    free(th);
    free(args);
    free(r.err_msg);
    pthread_cond_destroy(&r.go);
    pthread_cond_destroy(&r.done);
    pthread_mutex_destroy(&r.mu);
    return rc;
}
