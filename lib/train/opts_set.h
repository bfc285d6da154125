/* train/opts_set.h: scp-train's command-line options applied to scp_train_opts.
 *
 * The range of every numeric option is written once, in a table of train/opts_set.c: the command line refuses a
 * value outside it (exit 2, naming the option), and `scp-train --resume` refuses a trainer_state.json whose saved
 * options leave it (exit 1, naming the file), so that a damaged or hand-edited state cannot start a run that the
 * command line would not. */
#ifndef SCP_TRAIN_OPTS_SET_H
#define SCP_TRAIN_OPTS_SET_H

#include "core/options.h"
#include "train/opts.h"

/* Apply option id with its value arg (NULL for a flag) to o. A bad value ends the program with a usage error
 * (exit 2) naming the option. Returns 0, or 1 when id is not one of the options scp_train_opts holds (the
 * program's own: --output, --resume, --quiet, ...). */
int scp_train_opts_set(scp_train_opts *o, scp_opt_id id, const char *arg);

/* 0 when every numeric option of o is finite and within the range the command line accepts (0 also for the
 * counts whose 0 means "not given": batch_tokens, micro_batch, steps, tokens); else -1 with a message naming
 * `what` (the file the options were read from), the key and the range. */
int scp_train_opts_check(const scp_train_opts *o, const char *what);

/* Make o->init (the path after "random:" for a random init) and o->data absolute, relative to the working
 * directory, so that trainer_state.json names them from any directory a run is resumed in. */
void scp_train_opts_absolute(scp_train_opts *o);

#endif
