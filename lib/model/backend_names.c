/* model/backend_names.c: the names --backend accepts (model/backend.h's registry resolves them). */
#include "model/backend_names.h"
#include "core/error.h"

#include <string.h>

/* cpu-ref: the reference loops; cpu-mirror: the CPU kernels behind the device-memory path; cpu-bf16: bf16
 * storage on the CPU; cuda is also spelled cuda-bf16. */
static const char *const names[] = {"cpu", "cpu-ref", "cpu-mirror", "cpu-bf16", "cuda", "cuda-bf16", "cuda-fp32"};
#define N_NAMES (sizeof names / sizeof *names)

int scp_backend_check_name(const char *name)
{
    char list[128] = "";
    for (size_t i = 0; i < N_NAMES; i++) {
        if (strcmp(name, names[i]) == 0) return 0;
        if (i) strcat(list, ", ");
        strcat(list, names[i]);
    }
    return scp_error("unknown backend '%s' (the backends: %s)", name, list);
}
