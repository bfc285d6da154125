/* core/cli.h: conventions shared by every program: --version text, usage errors (exit 2), numeric options. */
#ifndef SCP_CLI_H
#define SCP_CLI_H

#include <stdint.h>

/* Call first in main: sets the program name used in messages. */
void scp_cli_init(int argc, char **argv);
/* Print "PROG (scp) VERSION" and the compiled-in features to stdout, exit 0. */
_Noreturn void scp_cli_version(void);
/* End a program after it printed its help (or another result) on stdout: exit 0 once stdout is flushed, or exit 1
 * with "PROG: <stdout>: write error: ..." when it could not be written (a full disk, a closed pipe). */
_Noreturn void scp_cli_exit_stdout(void);
/* Print "PROG: MESSAGE" and "Try 'PROG --help'." to stderr, exit 2. */
_Noreturn void scp_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse option values strictly (whole string, in range), or exit 2 naming the option. */
int64_t scp_opt_int(const char *opt, const char *arg, int64_t min, int64_t max);
double scp_opt_double(const char *opt, const char *arg, double min, double max);
/* Accepts suffixes k, M, G (powers of 1000) for counts such as --tokens 10M. */
int64_t scp_opt_count(const char *opt, const char *arg, int64_t min, int64_t max);
/* An interval of steps or of wall-clock time: "N" is N steps (a count as above, 0 to max_steps), "Ns" N seconds
 * (a number, fractions allowed, 0 to max_seconds). Sets the one given and zeroes the other; "0" zeroes both. */
void scp_opt_interval(const char *opt, const char *arg, int64_t max_steps, double max_seconds, int64_t *steps,
                      double *seconds);

#endif
