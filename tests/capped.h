/* capped.h: running a piece of a test in a child process whose address space is capped a given number of bytes
 * above what it uses, so that a reader that allocates for a size a file merely claims fails the test (it runs
 * out of memory and exits) instead of passing on a machine that overcommits. AddressSanitizer reserves the
 * address space such a cap would limit: UNDER_ASAN tells tests to skip. */
#ifndef SCP_TEST_CAPPED_H
#define SCP_TEST_CAPPED_H

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef UNDER_ASAN
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#endif

/* Run fn(ctx) in a child capped `headroom` bytes above its current size; fn returns the message to pass back.
 * Returns 0 with the message in msg (n bytes, NUL-terminated) when the child exited 0 after sending one, -1 when
 * it died or exited otherwise (out of memory). */
static inline int capped_run(size_t headroom, const char *(*fn)(void *ctx), void *ctx, char *msg, size_t n)
{
    int fd[2];
    msg[0] = 0;
    if (pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1) _exit(2);
        fclose(f);
        rlim_t cap = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (rlim_t)headroom;
        struct rlimit rl = {cap, cap};
        if (setrlimit(RLIMIT_AS, &rl)) _exit(2);
        const char *m = fn(ctx);
        if (write(fd[1], m, strlen(m)) < 0) _exit(2);
        _exit(0);
    }
    close(fd[1]);
    ssize_t got = pid > 0 ? read(fd[0], msg, n - 1) : -1;
    close(fd[0]);
    int status = 0;
    if (pid > 0) waitpid(pid, &status, 0);
    if (got <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    msg[got] = 0;
    return 0;
}

#endif
