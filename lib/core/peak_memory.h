/* core/peak_memory.h: the most memory the process has held, as the operating system counts it. */
#ifndef SCP_PEAK_MEMORY_H
#define SCP_PEAK_MEMORY_H

#include <stdint.h>

/* Peak resident set of this process in bytes (getrusage's ru_maxrss, which Linux keeps in KiB and which equals
 * /proc/self/status VmHWM); 0 when the system does not say. */
int64_t scp_peak_rss_bytes(void);

#endif
