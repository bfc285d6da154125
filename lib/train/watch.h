/* train/watch.h: what a long scp-train run tells whoever watches it without a terminal (a batch job's log): a
 * plain line on stderr every N steps or N seconds (--log-every), the epoch (passes over the train split) and the
 * moment the data starts repeating, and the process's peak memory (man 1 scp-train, LOGGING; man 5 scp-run).
 * Rank 0 alone calls these. */
#ifndef SCP_TRAIN_WATCH_H
#define SCP_TRAIN_WATCH_H

#include <stdint.h>

/* The interval of a run given no --log-every: none on a terminal (the progress line serves), else 30 s. */
#define SCP_TRAIN_LOG_SECONDS 30.0

typedef struct scp_train_watch {
    int64_t every_steps;      /* a line when the step is a multiple of it (0: not by steps) */
    double every_seconds;     /* a line when this many seconds passed since the last (0: not by time) */
    int64_t total;            /* the step the run ends at (its last step gets a line too) */
    int64_t n_seqs;           /* sequences in the train split */
    int B;                    /* sequences per step (the last step's, under a batch schedule) */
    int64_t batch_tokens;     /* a batch schedule: the last step's batch in tokens, shown in the line (0: none) */
    double t_start, t_last;   /* monotonic seconds: the loop's start, the last line */
    int64_t step_start, tokens_last;
    double loss_sum;          /* finite step losses since the last line */
    int64_t loss_n;
    int repeat_said;          /* the "train data repeats" line was printed (or the run resumed past it) */
    int tty;                  /* stderr is a terminal, where the progress line is drawn */
} scp_train_watch;

/* every_steps and every_seconds as --log-every set them; both 0: no lines. step, cursor and tokens: the state
 * the loop starts from. */
void scp_train_watch_init(scp_train_watch *w, int64_t every_steps, double every_seconds, int64_t total,
                          int64_t n_seqs, int B, int64_t step, int64_t cursor, int64_t tokens);

/* After step `step` (1 for the first), whose batch ended at data position `cursor`: the "train data repeats"
 * line on the step that takes the first sequence of the second pass (unless quiet), and the log line when one is
 * due. loss: the step's (NaN or infinite ones are left out of the line's mean). */
void scp_train_watch_step(scp_train_watch *w, int64_t step, int64_t cursor, int64_t tokens, double loss, int quiet);

/* Passes over the train split after `cursor` sequences of the data order: 1.37 is 37% into the second pass. */
double scp_train_epoch(int64_t cursor, int64_t n_seqs);

#endif
