/* plugin_host.c: the CUDA plugin's entry point, and the library functions its code calls, forwarded to the
 * program that loaded it (model/cuda_plugin.h). Built into libscp-cuda.so only. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "model/cuda_plugin.h"
#include "core/error.h"

extern const scp_cuda_plugin scp_cuda_plugin_functions;   /* plugin.c */

static const scp_plugin_host *host;

int scp_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    host->verror(fmt, ap);
    va_end(ap);
    return -1;
}

_Noreturn void scp_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    host->verror(fmt, ap);
    va_end(ap);
    host->die_last();
    abort();   /* die_last does not return */
}

void *scp_xcalloc(size_t n, size_t size) { return host->xcalloc(n, size); }

const scp_cuda_plugin *scp_cuda_plugin_entry(const char *version, size_t layout, const scp_plugin_host *h)
{
    if (strcmp(version, PACKAGE_VERSION) != 0 || layout != SCP_CUDA_PLUGIN_LAYOUT)
        return NULL;
    host = h;
    return &scp_cuda_plugin_functions;
}
