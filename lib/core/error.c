/* core/error.c: failure messages, program name, cleanup of temporary outputs. */
#include "core/error.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <ftw.h>

static _Thread_local char last_msg[4096];
static const char *progname = "scp";

int scp_verror(const char *fmt, va_list ap)
{
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    return -1;
}

int scp_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    scp_verror(fmt, ap);
    va_end(ap);
    return -1;
}

int scp_error_prefix(const char *fmt, ...)
{
    char prefix[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t p = strlen(prefix) + 2, m = strlen(last_msg);
    if (p + m + 1 > sizeof last_msg) m = sizeof last_msg - p - 1;
    memmove(last_msg + p, last_msg, m);
    last_msg[p + m] = 0;
    memcpy(last_msg, prefix, p - 2);
    memcpy(last_msg + p - 2, ": ", 2);
    return -1;
}

const char *scp_last_error(void)
{
    return last_msg[0] ? last_msg : "unknown error";
}

void scp_set_progname(const char *argv0)
{
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    progname = slash ? slash + 1 : (argv0 ? argv0 : "scp");
}

const char *scp_progname(void) { return progname; }

void scp_vsay(const char *fmt, va_list ap, const char *tail)
{
    char line[8192];
    int n = snprintf(line, sizeof line, "%s: ", progname);
    if (n > 0 && (size_t)n < sizeof line) n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    if (n > 0 && (size_t)n < sizeof line) n += snprintf(line + n, sizeof line - (size_t)n, "%s", tail);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) {   /* cut, but still a whole line */
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    fwrite(line, 1, (size_t)n, stderr);
    fflush(stderr);
}

void scp_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    scp_vsay(fmt, ap, "\n");
    va_end(ap);
}

void scp_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    scp_vsay(fmt, ap, "\n");
    va_end(ap);
    scp_cleanup_run();
    /* _exit, after flushing what was written: exit() runs the libraries' destructors, which may wait for their
     * threads; one stuck retrying an allocation that cannot succeed (OpenBLAS's do) would hold the process
     * forever, and other threads still at work when scp_die runs in one of them would race the teardown. */
    fflush(NULL);
    _exit(1);
}

void scp_die_last(void)
{
    scp_die("%s", scp_last_error());
}

/* ---- cleanup registry ---------------------------------------------------------------------------------- */
/* A fixed table, so that the signal handler touches no allocator. */
#define MAX_CLEANUP 64
static char *cleanup_paths[MAX_CLEANUP];

void scp_cleanup_register(const char *path)
{
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (!cleanup_paths[i]) {
            cleanup_paths[i] = scp_xstrdup(path);
            return;
        }
}

void scp_cleanup_unregister(const char *path)
{
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (cleanup_paths[i] && strcmp(cleanup_paths[i], path) == 0) {
            free(cleanup_paths[i]);
            cleanup_paths[i] = NULL;
        }
}

static int remove_entry(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb; (void)type; (void)ftw;
    remove(p);
    return 0;
}

void scp_cleanup_run(void)
{
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (cleanup_paths[i]) {
            struct stat st;
            if (lstat(cleanup_paths[i], &st) == 0) {
                if (S_ISDIR(st.st_mode))
                    nftw(cleanup_paths[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
                else
                    unlink(cleanup_paths[i]);
            }
        }
}

static void on_fatal_signal(int sig)
{
    scp_cleanup_run();
    signal(sig, SIG_DFL);
    raise(sig);
}

void scp_cleanup_on_signals(void)
{
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    signal(SIGHUP, on_fatal_signal);
    signal(SIGPIPE, on_fatal_signal);
}

/* ---- allocation ---------------------------------------------------------------------------------------- */
void *scp_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) scp_die("out of memory (%zu bytes)", n);
    return p;
}

void *scp_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) scp_die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

void *scp_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) scp_die("out of memory (%zu bytes)", n);
    return q;
}

char *scp_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(scp_xmalloc(n), s, n);
}

char *scp_xasprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = scp_xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}
