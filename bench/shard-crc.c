/* bench/shard-crc.c: what the CRC check on a shard's first read (data/shard_read.c) costs, against reading the
 * shard. For every shard of a split, in manifest order:
 *   cold: the file is dropped from the page cache (posix_fadvise DONTNEED, best effort), then the set's first
 *         read of it (scp_shardset_get of its first sequence) times the CRC check, which reads the whole file
 *         from disk; a plain read() of the file, dropped again first, is the reference;
 *   warm: the same with the file in the page cache (a fresh scp_shardset_open, so the check runs again);
 *   get:  every sequence of the shard through scp_shardset_get after the check (what the trainer does).
 * Wall times, and the CPU time of the warm check (this thread's: on a busy machine the wall time includes waiting
 * for a core). Prints a Markdown table (milliseconds, and GB/s of shard bytes) and the totals.
 *   bench/shard-crc SET [SPLIT]      (SPLIT: train, the default, or val) */
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "data/shard.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* This thread's CPU seconds: steadier than the wall time on a machine shared with other jobs. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

/* Seconds to read the whole file with read() in 4 MiB pieces. */
static double read_file(const char *path)
{
    static char buf[4 << 20];
    double t0 = now();
    int fd = open(path, O_RDONLY);
    if (fd < 0) scp_die("%s: cannot open", path);
    while (read(fd, buf, sizeof buf) > 0) {}
    close(fd);
    return now() - t0;
}

typedef struct shard_info { char *path; int64_t first, n, bytes; } shard_info;

int main(int argc, char **argv)
{
    scp_set_progname(argv[0]);
    if (argc < 2 || argc > 3) scp_die("usage: shard-crc SET [train|val]");
    const char *dir = argv[1], *split = argc > 2 ? argv[2] : "train";
    char *mp = scp_path_join(dir, "manifest.json");
    json_t *m = scp_json_load(mp);
    if (!m) scp_die_last();
    json_t *sh = json_object_get(m, "shards");
    shard_info *si = scp_xcalloc(json_array_size(sh) + 1, sizeof *si);
    int ns = 0;
    for (size_t i = 0; i < json_array_size(sh); i++) {
        json_t *e = json_array_get(sh, i);
        if (strcmp(json_string_value(json_object_get(e, "split")), split) != 0) continue;
        si[ns].path = scp_path_join(dir, json_string_value(json_object_get(e, "file")));
        si[ns].first = json_integer_value(json_object_get(e, "first_seq"));
        si[ns].n = json_integer_value(json_object_get(e, "sequences"));
        si[ns].bytes = json_integer_value(json_object_get(e, "bytes"));
        ns++;
    }
    scp_shardset *cold = scp_shardset_open(dir, split);
    if (!cold) scp_die_last();
    int T = scp_shardset_seq_len(cold);
    int32_t *tok = scp_xmalloc(sizeof *tok * (size_t)T), *doc = scp_xmalloc(sizeof *doc * (size_t)T);
    double *t_cold = scp_xcalloc((size_t)ns, sizeof(double)), *t_rcold = scp_xcalloc((size_t)ns, sizeof(double));
    double *t_warm = scp_xcalloc((size_t)ns, sizeof(double)), *t_rwarm = scp_xcalloc((size_t)ns, sizeof(double));
    double *t_get = scp_xcalloc((size_t)ns, sizeof(double)), *c_warm = scp_xcalloc((size_t)ns, sizeof(double));
    for (int k = 0; k < ns; k++) {
        drop_cache(si[k].path);
        t_rcold[k] = read_file(si[k].path);
        drop_cache(si[k].path);
        double t0 = now();
        if (scp_shardset_get(cold, si[k].first, tok, doc)) scp_die_last();
        t_cold[k] = now() - t0;
    }
    scp_shardset_close(cold);
    scp_shardset *warm = scp_shardset_open(dir, split);
    if (!warm) scp_die_last();
    for (int k = 0; k < ns; k++) {
        t_rwarm[k] = read_file(si[k].path);
        double t0 = now(), c0 = cpu_now();
        if (scp_shardset_get(warm, si[k].first, tok, doc)) scp_die_last();
        t_warm[k] = now() - t0;
        c_warm[k] = cpu_now() - c0;
        t0 = now();
        for (int64_t i = si[k].first; i < si[k].first + si[k].n; i++)
            if (scp_shardset_get(warm, i, tok, doc)) scp_die_last();
        t_get[k] = now() - t0;
    }
    scp_shardset_close(warm);

    printf("| shard | MB | CRC cold ms | read() cold ms | CRC warm ms | CRC warm CPU ms | CRC warm GB/s (CPU) | read() warm ms "
           "| get every sequence ms |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    double tot[6] = {0}, bytes = 0;
    for (int k = 0; k < ns; k++) {
        const char *name = strrchr(si[k].path, '/') ? strrchr(si[k].path, '/') + 1 : si[k].path;
        printf("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f |\n", name, si[k].bytes / 1e6, 1e3 * t_cold[k],
               1e3 * t_rcold[k], 1e3 * t_warm[k], 1e3 * c_warm[k], si[k].bytes / 1e9 / c_warm[k], 1e3 * t_rwarm[k], 1e3 * t_get[k]);
        tot[0] += t_cold[k], tot[1] += t_rcold[k], tot[2] += t_warm[k], tot[3] += t_rwarm[k], tot[4] += t_get[k], tot[5] += c_warm[k];
        bytes += (double)si[k].bytes;
    }
    printf("| all %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f |\n\n", ns, bytes / 1e6, 1e3 * tot[0], 1e3 * tot[1],
           1e3 * tot[2], 1e3 * tot[5], bytes / 1e9 / tot[5], 1e3 * tot[3], 1e3 * tot[4]);
    double gb = bytes / 1e9;
    printf("Per GB of shards: CRC check %.3f s warm (%.3f s CPU), %.3f s cold; read() %.3f s warm, %.3f s cold; "
           "scp_shardset_get of every sequence %.3f s\n", tot[2] / gb, tot[5] / gb, tot[0] / gb, tot[3] / gb, tot[1] / gb, tot[4] / gb);
    for (int k = 0; k < ns; k++) free(si[k].path);
    free(si), free(tok), free(doc), free(t_cold), free(t_rcold), free(t_warm), free(t_rwarm), free(t_get), free(c_warm), free(mp);
    json_decref(m);
    return 0;
}
