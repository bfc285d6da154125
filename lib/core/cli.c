/* core/cli.c: shared command-line conventions. */
#include "core/cli.h"
#include "core/error.h"
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void scp_cli_init(int argc, char **argv)
{
    (void)argc;
    scp_set_progname(argv[0]);
    scp_cleanup_on_signals();
}

void scp_cli_exit_stdout(void)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: <stdout>: write error: %s\n", scp_progname(), strerror(errno ? errno : EIO));
        exit(1);
    }
    exit(0);
}

void scp_cli_version(void)
{
    printf("%s (scp) %s\nfeatures: %s\n", scp_progname(), PACKAGE_VERSION, SCP_FEATURES);
    scp_cli_exit_stdout();
}

void scp_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", scp_progname());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", scp_progname());
    exit(2);
}

int64_t scp_opt_int(const char *opt, const char *arg, int64_t min, int64_t max)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (errno || end == arg || *end) scp_usage_error("%s: '%s' is not an integer", opt, arg);
    if (v < min || v > max) scp_usage_error("%s: %lld is out of range [%lld, %lld]", opt, v, (long long)min, (long long)max);
    return v;
}

double scp_opt_double(const char *opt, const char *arg, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end || !isfinite(v)) scp_usage_error("%s: '%s' is not a number", opt, arg);
    if (v < min || v > max) scp_usage_error("%s: %g is out of range [%g, %g]", opt, v, min, max);
    return v;
}

int64_t scp_opt_count(const char *opt, const char *arg, int64_t min, int64_t max)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg) scp_usage_error("%s: '%s' is not a count", opt, arg);
    if (*end == 'k' || *end == 'K') v *= 1e3, end++;
    else if (*end == 'M') v *= 1e6, end++;
    else if (*end == 'G') v *= 1e9, end++;
    else if (*end == 'T') v *= 1e12, end++;
    if (*end || v != floor(v)) scp_usage_error("%s: '%s' is not a whole count (suffixes k, M, G, T)", opt, arg);
    if (v < (double)min || v > (double)max) scp_usage_error("%s: %s is out of range [%lld, %lld]", opt, arg, (long long)min, (long long)max);
    return (int64_t)v;
}

void scp_opt_interval(const char *opt, const char *arg, int64_t max_steps, double max_seconds, int64_t *steps,
                      double *seconds)
{
    size_t n = strlen(arg);
    *steps = 0;
    *seconds = 0;
    if (n > 1 && arg[n - 1] == 's') {
        char *num = scp_xasprintf("%.*s", (int)(n - 1), arg);
        char *end;
        errno = 0;
        double v = strtod(num, &end);
        int bad = errno || end == num || *end || !isfinite(v);
        free(num);
        if (bad) scp_usage_error("%s: '%s' is not a step count N or a number of seconds Ns", opt, arg);
        if (v < 0 || v > max_seconds) scp_usage_error("%s: %s is out of range [0, %gs]", opt, arg, max_seconds);
        *seconds = v;
        return;
    }
    *steps = scp_opt_count(opt, arg, 0, max_steps);
}
