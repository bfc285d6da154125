/* cuda_plugin.c: finding and loading the CUDA plugin (model/cuda_plugin.h). */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "model/cuda_plugin.h"
#include "core/error.h"

/* Set where a program links the plugin's objects itself (tests/gpu/emulated.sh: lib/model/cuda/plugin.c). */
extern const scp_cuda_plugin scp_cuda_plugin_functions __attribute__((weak));

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const scp_cuda_plugin *plugin;
static void *handle;     /* of the loaded plugin; NULL for one linked in */
static char why[PATH_MAX + 1024];   /* why it could not be loaded */

#ifdef HAVE_CUDA
static const scp_plugin_host host = {
    .verror = scp_verror,
    .die_last = scp_die_last,
    .xcalloc = scp_xcalloc,
};

/* Whether `bytes` more of address space fit under the limit (ulimit -v) now: a mapping that reserves nothing. */
static int address_space_left(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return 0;
    munmap(p, bytes);
    return 1;
}

/* Whether this program is a file of the build tree (a test), whose plugin is then the build tree's. */
static int runs_from_build_tree(void)
{
    char exe[PATH_MAX], tree[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || !realpath(SCP_BUILD_LIBDIR "/..", tree)) return 0;
    exe[n] = 0;
    size_t t = strlen(tree);
    return strncmp(exe, tree, t) == 0 && exe[t] == '/';
}

static void load(void)
{
    char path[PATH_MAX + sizeof SCP_CUDA_PLUGIN_FILE + 1];
    const char *env = getenv("SCP_PLUGIN_DIR");
    const char *dirs[2];
    int nd = 0;
    if (env && *env)
        dirs[nd++] = env;
    else {
        if (runs_from_build_tree()) dirs[nd++] = SCP_BUILD_LIBDIR;
        dirs[nd++] = SCP_PKGLIBDIR;
    }
    int found = -1;
    for (int i = 0; i < nd && found < 0; i++) {
        snprintf(path, sizeof path, "%s/%s", dirs[i], SCP_CUDA_PLUGIN_FILE);
        if (access(path, F_OK) == 0) found = i;
    }
    if (found < 0) {
        if (env && *env)
            snprintf(why, sizeof why, "the CUDA plugin %s is not in %s (SCP_PLUGIN_DIR)", SCP_CUDA_PLUGIN_FILE, env);
        else
            snprintf(why, sizeof why, "the CUDA plugin %s is not in %s%s%s: install it with the programs, or set "
                     "SCP_PLUGIN_DIR to its folder", SCP_CUDA_PLUGIN_FILE, dirs[0], nd > 1 ? " nor in " : "",
                     nd > 1 ? dirs[1] : "");
        return;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        /* dlerror names the library that is missing (libcublas.so.N, ...) or the mapping that failed */
        const char *e = dlerror();
        if (!address_space_left((size_t)1 << 30))   /* the CUDA libraries take about 1 GiB of it */
            snprintf(why, sizeof why, "out of memory (address space, ulimit -v) loading the CUDA plugin: %s", e);
        else
            snprintf(why, sizeof why, "cannot load the CUDA plugin: %s (it needs the CUDA runtime, cuBLAS%s)", e,
#ifdef HAVE_NCCL
                     " and NCCL"
#else
                     ""
#endif
            );
        return;
    }
    const scp_cuda_plugin *(*entry)(const char *, size_t, const scp_plugin_host *);
    *(void **)&entry = dlsym(h, SCP_CUDA_PLUGIN_ENTRY);
    const scp_cuda_plugin *p = entry ? entry(PACKAGE_VERSION, SCP_CUDA_PLUGIN_LAYOUT, &host) : NULL;
    if (!p) {
        snprintf(why, sizeof why, "%s is not the CUDA plugin of this program (scp %s): it was built from other sources",
                 path, PACKAGE_VERSION);
        dlclose(h);
        return;
    }
    plugin = p, handle = h;   /* never closed: its tables and kernels live as long as the process */
}
#endif

static void init(void)
{
    if (&scp_cuda_plugin_functions) {
        plugin = &scp_cuda_plugin_functions;
        return;
    }
#ifdef HAVE_CUDA
    load();
#else
    snprintf(why, sizeof why, "this build has no CUDA backend (configure found no nvcc and cuBLAS)");
#endif
}

const scp_cuda_plugin *scp_cuda_plugin_load(void)
{
    pthread_once(&once, init);
    if (!plugin) scp_error("%s", why);
    return plugin;
}

void *scp_cuda_plugin_symbol(const char *name)
{
    if (!scp_cuda_plugin_load()) return NULL;
    /* A plugin linked into the program exports its symbols from the program (linked with -rdynamic). */
    void *sym = dlsym(handle ? handle : RTLD_DEFAULT, name);
    if (!sym) scp_error("the CUDA plugin has no %s", name);
    return sym;
}

const scp_backend *scp_cuda_plugin_backend(const char *name)
{
    const scp_cuda_plugin *p = scp_cuda_plugin_load();
    if (!p) {
        scp_error_prefix("backend '%s'", name);
        return NULL;
    }
    const scp_backend *be = p->backend_named(name);
    if (!be) scp_error("unknown backend '%s' (the CUDA ones: cuda (also cuda-bf16), cuda-fp32)", name);
    return be;
}

int scp_cuda_plugin_devices(void)
{
    const scp_cuda_plugin *p = scp_cuda_plugin_load();
    return p ? p->device_count() : 0;
}

int scp_cuda_plugin_describe(int i, char *buf, int n)
{
    const scp_cuda_plugin *p = scp_cuda_plugin_load();
    return p ? p->device_describe(i, buf, n) : -1;
}
