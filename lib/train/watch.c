/* train/watch.c: the plain log line of a run, its epoch, and the message when the train data repeats. */
#include "train/watch.h"
#include "core/error.h"
#include "core/peak_memory.h"
#include "core/progress.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>

void scp_train_watch_init(scp_train_watch *w, int64_t every_steps, double every_seconds, int64_t total,
                          int64_t n_seqs, int B, int64_t step, int64_t cursor, int64_t tokens)
{
    w->every_steps = every_steps;
    w->every_seconds = every_seconds;
    w->total = total;
    w->n_seqs = n_seqs;
    w->B = B;
    w->batch_tokens = 0;
    w->t_start = w->t_last = scp_now();
    w->step_start = step;
    w->tokens_last = tokens;
    w->loss_sum = 0;
    w->loss_n = 0;
    /* A run resumed past the first position of the second pass has said it already. */
    w->repeat_said = cursor > n_seqs;
    w->tty = isatty(STDERR_FILENO);
}

/* On a terminal the progress line (core/progress.h) holds the cursor's line: clear it before a line of ours
 * (the progress line is drawn again at the next step). */
static void clear_progress(const scp_train_watch *w)
{
    if (w->tty) fputs("\r\033[K", stderr);
}

double scp_train_epoch(int64_t cursor, int64_t n_seqs)
{
    return n_seqs > 0 ? (double)cursor / (double)n_seqs : 0.0;
}

/* "1:02:03", or "12:34" under an hour. */
static void format_duration(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0) s = 0;
    int64_t t = (int64_t)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%" PRId64 ":%02d:%02d", t / 3600, (int)(t / 60 % 60), (int)(t % 60));
    else snprintf(buf, n, "%d:%02d", (int)(t / 60), (int)(t % 60));
}

void scp_train_watch_step(scp_train_watch *w, int64_t step, int64_t cursor, int64_t tokens, double loss, int quiet)
{
    /* The first sequence seen twice is at position n_seqs of the data order; this step's batch held positions
     * cursor - B to cursor - 1. */
    if (!w->repeat_said && cursor > w->n_seqs) {
        w->repeat_said = 1;
        if (!quiet) {
            clear_progress(w);
            scp_warn("train data repeats: epoch 2 begins at step %" PRId64 " (%" PRId64 " sequences in the train "
                     "split, %d per step)", step, w->n_seqs, w->B);
        }
    }
    if (isfinite(loss)) {
        w->loss_sum += loss;
        w->loss_n++;
    }
    if (!w->every_steps && !w->every_seconds) return;
    double now = scp_now();
    int due = step == w->total || (w->every_steps && step % w->every_steps == 0) ||
              (w->every_seconds && now - w->t_last >= w->every_seconds);
    if (!due) return;
    double el = now - w->t_start, dt = now - w->t_last;
    int64_t done = step - w->step_start;
    char eta[32], elapsed[32], mean[32] = "nan";
    format_duration(eta, sizeof eta, done > 0 ? el / (double)done * (double)(w->total - step) : 0);
    format_duration(elapsed, sizeof elapsed, el);
    if (w->loss_n) snprintf(mean, sizeof mean, "%.4f", w->loss_sum / (double)w->loss_n);
    /* One plain line a log reader can grep: the loss is the mean over the steps since the last line. */
    char batch[48] = "";
    if (w->batch_tokens > 0) snprintf(batch, sizeof batch, " batch %" PRId64, w->batch_tokens);
    clear_progress(w);
    scp_warn("step %" PRId64 "/%" PRId64 " loss %s%s tokens/s %.0f elapsed %s ETA %s epoch %.3f peak_rss %.1f MiB", step,
             w->total, mean, batch, dt > 0 ? (double)(tokens - w->tokens_last) / dt : 0.0, elapsed, eta,
             scp_train_epoch(cursor, w->n_seqs), (double)scp_peak_rss_bytes() / (1 << 20));
    fflush(stderr);
    w->t_last = now;
    w->tokens_last = tokens;
    w->loss_sum = 0;
    w->loss_n = 0;
}
