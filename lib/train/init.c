/* train/init.c: the model a run starts from (a checkpoint, random weights of a config's or a checkpoint's shape,
 * or the checkpoint it resumes) and its set-up for the objective. */
#include "train/init.h"
#include "core/error.h"
#include "core/io.h"
#include "formats/model_config.h"
#include "tok/tokenizer.h"

#include <libgen.h>
#include <stdlib.h>
#include <string.h>

/* Random weights of the shape config.json at config_path describes. */
static scp_model *random_model(const scp_train_opts *o, const char *config_path)
{
    scp_model_config cfg;
    if (scp_config_load(&cfg, config_path)) return NULL;
    scp_model *m = scp_model_new(&cfg, o->backend);
    scp_config_free(&cfg);
    if (m) scp_model_init_random(m, o->seed, (float)o->init_std);
    return m;
}

scp_model *scp_train_load_model(const scp_train_opts *o, const char *resume_dir, char **tok_dir)
{
    scp_model *m;
    *tok_dir = NULL;
    if (resume_dir) {
        m = scp_model_load(resume_dir, o->backend);
        *tok_dir = scp_xstrdup(resume_dir);
    } else if (strncmp(o->init, "random:", 7) == 0) {
        m = random_model(o, o->init + 7);
        char *cp = scp_xstrdup(o->init + 7);
        *tok_dir = scp_xstrdup(dirname(cp));
        free(cp);
    } else if (o->init_random) {
        char *cp = scp_path_join(o->init, "config.json");
        m = random_model(o, cp);
        free(cp);
        *tok_dir = scp_xstrdup(o->init);
    } else {
        m = scp_model_load(o->init, o->backend);
        *tok_dir = scp_xstrdup(o->init);
    }
    if (!m || !scp_tokenizer_in_dir(*tok_dir)) {
        free(*tok_dir);
        *tok_dir = NULL;
    }
    return m;
}

int scp_train_configure_model(scp_model *m, const scp_train_opts *o, const char *name)
{
    scp_model_config *cfg = &m->cfg;
    int shift = o->shift >= 0 ? o->shift : cfg->shift_logits;
    if (o->objective == SCP_OBJ_MDM) {
        if (cfg->mask_token_id < 0)
            return scp_error("%s: config.json has no mask_token_id: import the checkpoint with scp-import, which "
                             "adds one", name);
        cfg->causal = o->attn == SCP_ATTN_CAUSAL;
        cfg->shift_logits = shift;
    } else {
        cfg->causal = 1;
    }
    return shift;
}

int scp_train_check_tokenizer(const char *tok_dir, uint64_t data_hash, const char *data_name, int quiet)
{
    if (!tok_dir) {
        if (!quiet) scp_warn("the init has no tokenizer files: the data's tokenizer is not checked");
        return 0;
    }
    if (data_hash == 0) {
        if (!quiet) scp_warn("%s: the data records no tokenizer hash: not checked against %s", data_name, tok_dir);
        return 0;
    }
    return scp_tokenizer_check_dir(tok_dir, data_hash, data_name);
}
