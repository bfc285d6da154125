/* core/progress.h: a one-line progress display on stderr, shown only when stderr is a terminal, redrawn at most
 * ten times a second. Programs call it unconditionally; it decides. */
#ifndef SCP_PROGRESS_H
#define SCP_PROGRESS_H

#include <stdint.h>

typedef struct scp_progress {
    int enabled;
    double start, last;
    int64_t total;   /* 0: unknown */
} scp_progress;

void scp_progress_init(scp_progress *p, int64_t total);
/* done of total; `fmt` adds a free-form tail (rates, loss...). */
void scp_progress_update(scp_progress *p, int64_t done, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Clear the line. */
void scp_progress_end(scp_progress *p);
double scp_now(void);  /* monotonic seconds */

#endif
