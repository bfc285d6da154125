/* model/cuda_plugin.h: the CUDA backend as a plugin. The kernels of lib/model/cuda, and the NCCL communicator of GPU
 * ranks (lib/dist/nccl.c), are built into a shared object of their own, libscp-cuda.so, installed in $(pkglibdir), so
 * that the programs and libscp link neither the CUDA runtime nor cuBLAS nor NCCL: a CPU run never maps them, and a
 * build with CUDA runs on a machine without the CUDA libraries. The plugin is loaded the first time a CUDA backend
 * (cuda, cuda-bf16, cuda-fp32), a GPU count or NCCL is asked for, from the first of these places that exists:
 *   - $SCP_PLUGIN_DIR/libscp-cuda.so, when SCP_PLUGIN_DIR is set (then the only place looked in);
 *   - the build tree's lib/ folder, for a program that runs from the build tree (the tests);
 *   - $(pkglibdir)/libscp-cuda.so.
 * A program that links the plugin's objects itself (tests/gpu/emulated.sh) uses them as they are.
 *
 * The plugin does not link libscp: the few library functions its code calls (scp_error, scp_die, scp_xcalloc)
 * are forwarded to the program's through scp_plugin_host, so that a message the plugin records is the one the
 * program prints. A plugin from another version or another build is refused (the tables it hands out must have
 * the layout the program was compiled with). */
#ifndef SCP_CUDA_PLUGIN_H
#define SCP_CUDA_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "model/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SCP_CUDA_PLUGIN_FILE "libscp-cuda.so"

/* What the plugin offers. */
typedef struct scp_cuda_plugin {
    /* The table a --backend name means ("cuda" or "cuda-bf16", "cuda-fp32"), NULL for any other name. */
    const scp_backend *(*backend_named)(const char *name);
    /* Usable CUDA devices (0 without a driver or a GPU), and a one-line description of device i (-1 if absent). */
    int (*device_count)(void);
    int (*device_describe)(int i, char *buf, int n);
} scp_cuda_plugin;

/* What the program lends the plugin: core/error.h's functions. */
typedef struct scp_plugin_host {
    int (*verror)(const char *fmt, va_list ap);
    void (*die_last)(void);   /* does not return */
    void *(*xcalloc)(size_t n, size_t size);
} scp_plugin_host;

/* The plugin's entry point. `version` and `layout` are the program's (PACKAGE_VERSION and SCP_CUDA_PLUGIN_LAYOUT);
 * the plugin answers NULL when they are not its own. The loader calls it before anything else of the plugin. */
#define SCP_CUDA_PLUGIN_ENTRY "scp_cuda_plugin_entry"
const scp_cuda_plugin *scp_cuda_plugin_entry(const char *version, size_t layout, const scp_plugin_host *host);
/* The sizes of what crosses between the two, folded into one number. */
#define SCP_CUDA_PLUGIN_LAYOUT \
    (sizeof(scp_backend) * 1000003u + sizeof(scp_cuda_plugin) * 1009u + sizeof(scp_plugin_host))

/* The plugin's functions, loading it on first use; NULL with a message (scp_last_error) naming the plugin and
 * where it was looked for, or what it lacks (a CUDA library that is not installed), when it cannot be loaded. */
const scp_cuda_plugin *scp_cuda_plugin_load(void);
/* Another symbol the plugin exports (dist/nccl.h's entry point), loading the plugin; NULL with a message when the
 * plugin cannot be loaded or has no such symbol. A plugin linked into the program: the program's own symbol. */
void *scp_cuda_plugin_symbol(const char *name);
/* The table of a CUDA backend's name, loading the plugin; NULL with a message when the plugin cannot be loaded
 * or the name is not one of its tables'. */
const scp_backend *scp_cuda_plugin_backend(const char *name);
/* Usable CUDA devices: 0 when the plugin cannot be loaded (scp_last_error says why), the driver is missing or
 * there is no GPU. */
int scp_cuda_plugin_devices(void);
/* "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB" into buf; -1 when the plugin cannot be loaded or device i is absent. */
int scp_cuda_plugin_describe(int i, char *buf, int n);

#ifdef __cplusplus
}
#endif
#endif
