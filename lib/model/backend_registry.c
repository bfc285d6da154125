/* model/backend_registry.c: the backends by name (the --backend option), whether each can run here, and the
 * check of a table before anything runs on it. The CPU tables are linked in; the CUDA ones are asked for by
 * name through cuda_table() alone, and the GPUs through cuda_devices(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "model/backend.h"
#include "core/error.h"
#include "model/cuda_plugin.h"

typedef struct registered {
    const char *name;
    const char *alias;          /* another name for it, or NULL */
    const scp_backend *table;   /* a CPU table; NULL for a CUDA one (cuda_table) */
} registered;

static const registered backends[] = {
    {"cpu", NULL, &scp_backend_cpu},
    {"cpu-ref", NULL, &scp_backend_cpu_ref},
    {"cpu-mirror", NULL, &scp_backend_cpu_mirror},
    {"cpu-bf16", NULL, &scp_backend_cpu_bf16},
    {"cuda", "cuda-bf16", NULL},
    {"cuda-fp32", NULL, NULL},
};
#define N_BACKENDS ((int)(sizeof backends / sizeof backends[0]))


/* The CUDA table of a registered name ("cuda" or "cuda-fp32"), from the plugin (loaded on the first call); NULL
 * with the plugin's message where CUDA is not built or the plugin cannot be loaded. */
static const scp_backend *cuda_table(const char *name) { return scp_cuda_plugin_backend(name); }

/* The GPUs the CUDA runtime sees: 0 without CUDA, its plugin, a driver or a device. */
static int cuda_devices(void) { return scp_cuda_plugin_devices(); }

/* Whether configure built the CUDA plugin: the list of an unknown name's alternatives says so without loading it. */
static int cuda_built(void)
{
#ifdef HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

static const registered *lookup(const char *name)
{
    for (int i = 0; i < N_BACKENDS; i++)
        if (strcmp(name, backends[i].name) == 0 || (backends[i].alias && strcmp(name, backends[i].alias) == 0))
            return &backends[i];
    return NULL;
}

/* The table of a registered backend; `asked` is the name it was asked by (an alias is passed on as it is, so that
 * the plugin's messages name what the user wrote). */
static const scp_backend *table_of(const registered *r, const char *asked)
{
    return r->table ? r->table : cuda_table(asked);
}

const char *scp_backend_missing(const scp_backend *be)
{
    if (!be->name) return "name";
    if (be->caps & ~(unsigned)SCP_BACKEND_CAP_ALL) return "caps";
    if (be->act_size != 4 && be->act_size != 2) return "act_size";
    if (be->host_memory != 0 && be->host_memory != 1) return "host_memory";
    if (be->act_size == 2 && be->host_memory) return "host_memory";   /* the driver uses fp32 host arrays in place */
#define SCP_BACKEND_OP(cap, ret, op, params) \
    if (!be->op && scp_backend_has(be, SCP_BACKEND_CAP_##cap)) return #op;
#include "model/backend_ops.def"
    return NULL;
}

/* A table that lacks an entry it owes is a bug in its backend, not a condition to report. */
static const scp_backend *checked(const scp_backend *be)
{
    const char *missing = scp_backend_missing(be);
    if (missing) {
        fprintf(stderr, "backend '%s': incomplete table (%s) (model/backend_ops.def)\n", be->name ? be->name : "?",
                missing);
        abort();
    }
    return be;
}

int scp_backend_check_name(const char *name)
{
    if (lookup(name)) return 0;
    char list[256] = "";
    size_t n = 0;
    for (int i = 0; i < N_BACKENDS; i++)
        n += (size_t)snprintf(list + n, n < sizeof list ? sizeof list - n : 0, "%s%s%s%s%s", n ? ", " : "",
                              backends[i].name, backends[i].alias ? " (also " : "",
                              backends[i].alias ? backends[i].alias : "", backends[i].alias ? ")" : "");
    return scp_error("unknown backend '%s' (the backends: %s)", name, list);
}

const scp_backend *scp_backend_find(const char *name)
{
    if (!name) name = "cpu";
    const registered *r = lookup(name);
    if (!r) {
        char list[256] = "";
        size_t n = 0;
        for (int i = 0; i < N_BACKENDS; i++) {
            if (!backends[i].table && !cuda_built()) continue;   /* not built */
            n += (size_t)snprintf(list + n, n < sizeof list ? sizeof list - n : 0, "%s%s%s%s%s", n ? ", " : "",
                                  backends[i].name, backends[i].alias ? " (also " : "",
                                  backends[i].alias ? backends[i].alias : "", backends[i].alias ? ")" : "");
        }
        scp_error("unknown backend '%s' (available: %s)", name, list);
        return NULL;
    }
    const scp_backend *be = table_of(r, name);
    if (!be) return NULL;   /* the plugin's message: CUDA not built, or the plugin cannot be loaded */
    return checked(be);
}

const char *scp_backend_registered(int i) { return i >= 0 && i < N_BACKENDS ? backends[i].name : NULL; }

int scp_backend_usable(const char *name, char *why, size_t why_len)
{
    const registered *r = lookup(name);
    const char *reason = NULL;
    if (!r)
        reason = "not a registered backend";
    else if (!table_of(r, name))
        reason = scp_last_error();   /* CUDA not built, or its plugin cannot be loaded */
    else if (!r->table && cuda_devices() == 0)
        reason = "no CUDA device";
    if (why && why_len) snprintf(why, why_len, "%s", reason ? reason : "");
    return reason == NULL;
}
