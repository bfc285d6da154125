/* blas.c: loading the CBLAS and reserving what its callers need up front (cpu/blas.h). */
#include "config.h"

#ifdef HAVE_CBLAS
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/error.h"
#include "model/cpu/blas.h"

__typeof__(cblas_sgemm) *scp_cpu_sgemm;

/* OpenBLAS's working buffers, taken and given back by its sgemm; NULL for a BLAS without them. Their size is
 * OpenBLAS's BUFFER_SIZE (128 MiB in its default builds for x86-64) plus a page: a build with larger buffers
 * would pass the check below with too little room. */
static void *(*blas_memory_alloc)(int);
static void (*blas_memory_free)(void *);
#define BLAS_BUFFER_BYTES (((size_t)128 << 20) + ((size_t)64 << 10))

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int ready_threads;   /* threads started, with their buffers */

/* Whether `bytes` more of address space fit under the limit (ulimit -v) now: a mapping that reserves nothing. */
static int address_space_left(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return 0;
    munmap(p, bytes);
    return 1;
}

static void *open_blas(char *why, size_t n_why)
{
    /* The soname first (the loader's search, as for a linked library), then the folders the link used. */
    void *h = dlopen(SCP_BLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(why, n_why, "%s", dlerror());
    const char *dirs = SCP_BLAS_LIBDIRS;
    while (!h && *dirs) {
        size_t n = strcspn(dirs, ":");
        char *path = scp_xasprintf("%.*s/%s", (int)n, dirs, SCP_BLAS_LIBRARY);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        free(path);
        dirs += n + (dirs[n] == ':');
    }
    return h;
}

static void load(void)
{
    /* OpenBLAS reads it once, as it is loaded: no thread pool (cpu/blas.h). */
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    char why[512];
    void *h = open_blas(why, sizeof why);
    if (!h && !address_space_left((size_t)64 << 20))   /* the loader could not map it: ulimit -v */
        scp_die("out of memory (address space) loading the BLAS: %s", why);
    if (!h) scp_die("cannot load the BLAS the CPU backend was built with: %s", why);
    *(void **)&scp_cpu_sgemm = dlsym(h, "cblas_sgemm");
    if (!scp_cpu_sgemm) scp_die("the BLAS %s has no cblas_sgemm", SCP_BLAS_LIBRARY);
    *(void **)&blas_memory_alloc = dlsym(h, "blas_memory_alloc");
    *(void **)&blas_memory_free = dlsym(h, "blas_memory_free");
    if (!blas_memory_alloc || !blas_memory_free) blas_memory_alloc = NULL, blas_memory_free = NULL;
}

/* Threads of this process now (the main thread, OpenMP's and any other). */
static int threads_now(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = 1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    if (f) fclose(f);
    return n;
}

static size_t thread_stack_bytes(void)
{
    pthread_attr_t a;
    size_t s = (size_t)8 << 20;
    if (pthread_getattr_default_np(&a) == 0) {
        pthread_attr_getstacksize(&a, &s);
        pthread_attr_destroy(&a);
    }
    return s;
}

void scp_cpu_blas_ready(int threads)
{
    if (threads <= atomic_load_explicit(&ready_threads, memory_order_acquire)) return;
    pthread_mutex_lock(&lock);
    if (!scp_cpu_sgemm) load();
    int done = atomic_load_explicit(&ready_threads, memory_order_relaxed);
    if (threads > done) {
        int start = threads - threads_now();
        size_t need = (size_t)(start > 0 ? start : 0) * thread_stack_bytes() +
                      (blas_memory_alloc ? (size_t)(threads - done) * BLAS_BUFFER_BYTES : 0);
        if (!address_space_left(need))
            scp_die("out of memory (%zu MiB of address space for %d threads and their BLAS buffers: over the limit "
                    "of ulimit -v; fewer threads need less)", need >> 20, threads);
        /* All the buffers at once (the barrier), so that each thread holds its own: OpenBLAS then finds one free
         * for every caller of a later product. */
#pragma omp parallel num_threads(threads)
        {
            void *b = blas_memory_alloc ? blas_memory_alloc(0) : NULL;
#pragma omp barrier
            if (b) blas_memory_free(b);
        }
        atomic_store_explicit(&ready_threads, threads, memory_order_release);
    }
    pthread_mutex_unlock(&lock);
}
#endif
