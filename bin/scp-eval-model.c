/* scp-eval-model.c: the options that scp-eval generate and choice share (which checkpoint, and how to read
 * it: mode, BOS, logit shift, mask id, threads, backend) and their resolution against config.json. */
#include "scp-eval.h"

#include "core/cli.h"
#include "core/error.h"

#include <stdint.h>
#include <string.h>

void scp_eval_model_defaults(scp_eval_model *e)
{
    memset(e, 0, sizeof *e);
    e->backend = "cpu";
    e->mode = SCP_EVAL_AUTO;
    e->shift = -1;
    e->mask_id = -1;
}

int scp_eval_model_option(scp_eval_model *e, int c, const char *arg)
{
    switch (c) {
    case 'm': e->path = arg; return 1;
    case 't': e->threads = (int)scp_opt_int("--threads", arg, 0, 4096); return 1;
    case SCP_EVAL_O_BACKEND: e->backend = arg; return 1;
    case SCP_EVAL_O_MODE:
        if (!strcmp(arg, "auto")) e->mode = SCP_EVAL_AUTO;
        else if (!strcmp(arg, "ar")) e->mode = SCP_EVAL_AR;
        else if (!strcmp(arg, "diffusion")) e->mode = SCP_EVAL_DIFFUSION;
        else scp_usage_error("--mode: '%s' is not auto, ar or diffusion", arg);
        return 1;
    case SCP_EVAL_O_NO_BOS: e->no_bos = 1; return 1;
    case SCP_EVAL_O_SHIFT: e->shift = 1; return 1;
    case SCP_EVAL_O_NO_SHIFT: e->shift = 0; return 1;
    case SCP_EVAL_O_MASK_ID: e->mask_id = (int)scp_opt_int("--mask-id", arg, 0, INT32_MAX); return 1;
    default: return 0;
    }
}

void scp_eval_model_open(scp_eval_model *e)
{
    if (!e->path) scp_usage_error("--model CKPT is required");
    scp_set_threads(e->threads);
    e->m = scp_model_load(e->path, e->backend);
    if (!e->m) scp_die_last();
    e->tok = scp_tokenizer_load(e->path);
    if (!e->tok) scp_die_last();
    const scp_model_config *c = &e->m->cfg;
    e->ar = e->mode == SCP_EVAL_AR || (e->mode == SCP_EVAL_AUTO && c->causal);
    if (e->mask_id < 0) e->mask_id = c->mask_token_id;
    if (e->shift < 0) e->shift = c->shift_logits;
    if (!e->ar && (e->mask_id < 0 || e->mask_id >= c->vocab_size))
        scp_die("%s: no mask token in the model's %d rows (give --mask-id ID, or import with scp-import)", e->path,
                c->vocab_size);
    e->bos = e->no_bos ? -1 : c->bos_token_id >= 0 ? c->bos_token_id : scp_tokenizer_bos_id(e->tok);
}

void scp_eval_model_close(scp_eval_model *e)
{
    if (e->tok) scp_tokenizer_free(e->tok);
    if (e->m) scp_model_free(e->m);
    e->tok = NULL;
    e->m = NULL;
}
