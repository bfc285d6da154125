/* core/error.h: how libscp reports failure.
 *
 * Library functions return 0 (or a valid pointer) on success and -1 (or NULL) on failure, after recording one
 * message with scp_error(). The message names the file and what is wrong with it, never a bare errno:
 *   "model.safetensors: tensor 'lm_head.weight' has shape [512,64], config.json says [32000,64]".
 * Programs print it once, prefixed by their name, and exit 1 (scp_die_last). Temporary outputs registered with
 * scp_cleanup_register() are removed on any such exit, so nothing half-written is left behind. */
#ifndef SCP_ERROR_H
#define SCP_ERROR_H

#include <stddef.h>
#include <stdarg.h>

#if defined(__GNUC__)
#define SCP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SCP_PRINTF(a, b)
#endif

/* Record the failure message (thread-local; the last one wins). Always returns -1 for `return scp_error(...)`. */
int scp_error(const char *fmt, ...) SCP_PRINTF(1, 2);
int scp_verror(const char *fmt, va_list ap);
/* Prefix the recorded message with "PREFIX: " (e.g. a file name added by a caller that knows it). */
int scp_error_prefix(const char *fmt, ...) SCP_PRINTF(1, 2);
const char *scp_last_error(void);

void scp_set_progname(const char *argv0);
const char *scp_progname(void);

/* Print "prog: message" on stderr. */
void scp_warn(const char *fmt, ...) SCP_PRINTF(1, 2);
/* "prog: message" followed by `tail` (a newline, or more lines) on stderr in one write, so that the ranks of a job
 * sharing one stderr do not interleave their messages within a line. */
void scp_vsay(const char *fmt, va_list ap, const char *tail);
/* Print "prog: message", remove registered temporaries, exit 1 at once: stdio is flushed, atexit handlers and the
 * libraries' destructors do not run (other threads cannot hold the exit up). */
_Noreturn void scp_die(const char *fmt, ...) SCP_PRINTF(1, 2);
/* Same with the last recorded message. */
_Noreturn void scp_die_last(void);

/* Paths (files or directories) to remove if the process exits through scp_die or a fatal signal. */
void scp_cleanup_register(const char *path);
void scp_cleanup_unregister(const char *path);
void scp_cleanup_run(void);
/* Install SIGINT/SIGTERM/SIGHUP/SIGPIPE handlers that run the cleanup and exit 1 (programs that want their
 * own SIGINT handling, like scp-train, install theirs afterwards). */
void scp_cleanup_on_signals(void);

/* Allocation that dies with a message on exhaustion. */
void *scp_xmalloc(size_t n);
void *scp_xcalloc(size_t n, size_t size);
void *scp_xrealloc(void *p, size_t n);
char *scp_xstrdup(const char *s);
char *scp_xasprintf(const char *fmt, ...) SCP_PRINTF(1, 2);

#endif
