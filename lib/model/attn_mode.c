/* model/attn_mode.c: the names of the attention modes (scp_attn_mode in model/model.h). */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

static const char *attn_names[] = {"causal", "bidirectional", "anneal"};

const char *scp_attn_name(scp_attn_mode x) { return attn_names[x]; }

int scp_attn_parse(const char *s, int64_t *anneal_steps)
{
    if (strcmp(s, "causal") == 0) return SCP_ATTN_CAUSAL;
    if (strcmp(s, "bidirectional") == 0) return SCP_ATTN_BIDIRECTIONAL;
    if (strncmp(s, "anneal:", 7) == 0) {
        char *end;
        long long v = strtoll(s + 7, &end, 10);
        if (end == s + 7 || *end || v < 1) return -1;
        *anneal_steps = v;
        return SCP_ATTN_ANNEAL;
    }
    return -1;
}
