/* scp-eval-model.c: the options that scp-eval generate and choice share (which checkpoint, and how to read
 * it: mode, BOS, logit shift, mask id, threads, backend); lib/eval/setup.c opens the model they describe. */
#include "scp-eval.h"

#include "core/cli.h"
#include "core/error.h"
#include "model/backend.h"

#include <stdint.h>
#include <string.h>

const char *scp_eval_backend_option(const char *arg)
{
    if (scp_backend_check_name(arg)) scp_usage_error("--backend: %s", scp_last_error());
    return arg;
}

int scp_eval_model_option(scp_eval_model *e, int id, const char *arg)
{
    switch (id) {
    case SCP_OPT_MODEL: e->path = arg; return 1;
    case SCP_OPT_THREADS: e->threads = (int)scp_opt_int("--threads", arg, 0, 4096); return 1;
    case SCP_OPT_BACKEND: e->backend = scp_eval_backend_option(arg); return 1;
    case SCP_OPT_MODE:
        if (!strcmp(arg, "auto")) e->mode = SCP_EVAL_AUTO;
        else if (!strcmp(arg, "ar")) e->mode = SCP_EVAL_AR;
        else if (!strcmp(arg, "diffusion")) e->mode = SCP_EVAL_DIFFUSION;
        else scp_usage_error("--mode: '%s' is not auto, ar or diffusion", arg);
        return 1;
    case SCP_OPT_NO_BOS: e->no_bos = 1; return 1;
    case SCP_OPT_SHIFT: e->shift = 1; return 1;
    case SCP_OPT_NO_SHIFT: e->shift = 0; return 1;
    case SCP_OPT_MASK_ID: e->mask_id = (int)scp_opt_int("--mask-id", arg, 0, INT32_MAX); return 1;
    default: return 0;
    }
}
