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
#include <unistd.h>

/* OpenMP threads that wait by sleeping unless the user chose otherwise. GNU libgomp's idle threads spin for
 * about 300000 iterations at every barrier before they sleep; on a machine whose cores are busy with other work
 * a spinning thread holds a core that the thread it waits for needs. bench/RESULTS.md ("OpenMP wait policy")
 * measured scp-eval elbo 3-4x slower that way on a shared machine than with passive waiting, and a bounded spin
 * (GOMP_SPINCOUNT=10000) between the two, never faster than passive. With a free core per thread a spin saves
 * a futex wake-up (microseconds) per barrier, small beside these programs' parallel regions (a matrix product,
 * the heads of an attention layer); OMP_WAIT_POLICY=active serves that machine.
 *
 * libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in its constructor, before main. A setenv in main is
 * too late, and one in the executable's .preinit_array (which runs before every library constructor) is lost:
 * glibc's own initialisation, which comes after it, sets environ to the process's initial environment. So the
 * program re-executes itself (same process id, argv and environment plus OMP_WAIT_POLICY=passive) from its
 * .preinit_array, before any library constructor and any thread, long before MPI_Init under mpirun or srun. A
 * program that does not link an OpenMP runtime (the weak reference to omp_get_max_threads is null) is left
 * alone, as is any environment that holds OMP_WAIT_POLICY or GOMP_SPINCOUNT: the user's choice. Where the
 * re-execution cannot happen (no /proc) the runtime's own default holds. The exec goes through the path
 * /proc/self/exe names, which under valgrind is the program's, not valgrind's. */
extern int omp_get_max_threads(void) __attribute__((weak));

static int has_omp_wait_setting(char **envp)
{
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "OMP_WAIT_POLICY=", 16) == 0 || strncmp(*e, "GOMP_SPINCOUNT=", 15) == 0) return 1;
    return 0;
}

static void scp_exec_with_passive_omp_wait(int argc, char **argv, char **envp)
{
    (void)argc;
    if (!omp_get_max_threads || !envp || has_omp_wait_setting(envp)) return;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0 || (size_t)len >= sizeof self - 1) return;
    self[len] = 0;
    size_t n = 0;
    while (envp[n]) n++;
    char **env = malloc((n + 2) * sizeof *env);
    if (!env) return;
    memcpy(env, envp, n * sizeof *env);
    env[n] = "OMP_WAIT_POLICY=passive";
    env[n + 1] = NULL;
    execve(self, argv, env);
    free(env);
}
__attribute__((section(".preinit_array"), used))
static void (*const scp_preinit_omp_wait)(int, char **, char **) = scp_exec_with_passive_omp_wait;

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
    char tail[512];
    snprintf(tail, sizeof tail, "\nTry '%s --help' for more information.\n", scp_progname());
    va_list ap;
    va_start(ap, fmt);
    scp_vsay(fmt, ap, tail);
    va_end(ap);
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
