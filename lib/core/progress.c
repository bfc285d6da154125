/* core/progress.c: terminal progress line. */
#include "core/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

double scp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void scp_progress_init(scp_progress *p, int64_t total)
{
    p->enabled = isatty(STDERR_FILENO);
    p->start = scp_now();
    p->last = 0;
    p->total = total;
}

void scp_progress_update(scp_progress *p, int64_t done, const char *fmt, ...)
{
    if (!p->enabled) return;
    double now = scp_now();
    if (now - p->last < 0.1 && !(p->total && done >= p->total)) return;
    p->last = now;
    char tail[256] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(tail, sizeof tail, fmt, ap);
        va_end(ap);
    }
    double el = now - p->start;
    if (p->total > 0) {
        double frac = (double)done / (double)p->total;
        if (frac > 1) frac = 1;
        int w = 24, fill = (int)(frac * w);
        char bar[32];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        double eta = frac > 0 ? el * (1 - frac) / frac : 0;
        fprintf(stderr, "\r\033[K[%s] %5.1f%% %s  %02d:%02d elapsed, ETA %02d:%02d", bar, 100 * frac, tail,
                (int)el / 60, (int)el % 60, (int)eta / 60, (int)eta % 60);
    } else {
        fprintf(stderr, "\r\033[K%s  %02d:%02d elapsed", tail, (int)el / 60, (int)el % 60);
    }
    fflush(stderr);
}

void scp_progress_end(scp_progress *p)
{
    if (p->enabled) fprintf(stderr, "\r\033[K");
}
