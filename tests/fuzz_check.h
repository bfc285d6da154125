/* fuzz_check.h: what every libFuzzer target checks of a refused input: the reader recorded a message, and the
 * message names the file it was given (core/error.h). fuzz_expect_message() before the call clears the last
 * message, so that a refusal that records none is caught rather than hidden by an earlier input's message. */
#ifndef SCP_FUZZ_CHECK_H
#define SCP_FUZZ_CHECK_H

#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void fuzz_expect_message(void) { scp_error("%s", ""); }

static inline void fuzz_check_refusal(const char *name)
{
    const char *msg = scp_last_error();
    if (!strstr(msg, name)) {
        fprintf(stderr, "refused without a message naming '%s': %s\n", name, msg);
        abort();
    }
}

#endif
