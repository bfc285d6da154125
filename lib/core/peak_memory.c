/* core/peak_memory.c: peak resident set of the process. */
#include "core/peak_memory.h"

#include <sys/resource.h>

int64_t scp_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (int64_t)ru.ru_maxrss * 1024;
}
