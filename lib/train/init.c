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

/* Where a run's model comes from (see scp_train_load_model): the config.json to shape it, the checkpoint to read
 * its weights from (NULL: random), the directory of its tokenizer files; all freshly allocated. */
static void resolve(const scp_train_opts *o, const char *resume_dir, char **config, char **weights, char **tok_dir)
{
    const char *dir = resume_dir ? resume_dir : strncmp(o->init, "random:", 7) == 0 ? NULL : o->init;
    if (dir) {
        *config = scp_path_join(dir, "config.json");
        *weights = resume_dir || !o->init_random ? scp_xstrdup(dir) : NULL;
        *tok_dir = scp_xstrdup(dir);
    } else {
        *config = scp_xstrdup(o->init + 7);
        *weights = NULL;
        char *cp = scp_xstrdup(o->init + 7);
        *tok_dir = scp_xstrdup(dirname(cp));
        free(cp);
    }
}

/* The model of config.json at config (a shell without weights when shell != 0), holding the experts of place
 * ep_rank of ep_ranks (formats/model_config.h), NULL with a message. */
static scp_model *model_of_config(const char *config, const char *backend, int shell, int ep_ranks, int ep_rank)
{
    scp_model_config cfg;
    if (scp_config_load(&cfg, config)) return NULL;
    cfg.expert_ranks = ep_ranks, cfg.expert_rank = ep_rank;
    scp_model *m = shell ? scp_model_new_shell(&cfg, backend) : scp_model_new(&cfg, backend);
    scp_config_free(&cfg);
    return m;
}

static scp_model *load(const scp_train_opts *o, const char *resume_dir, char **tok_dir, char **weights_dir, int shell,
                       int ep_ranks, int ep_rank)
{
    char *config, *weights;
    resolve(o, resume_dir, &config, &weights, tok_dir);
    scp_model *m;
    if (shell) m = model_of_config(config, o->backend, 1, ep_ranks, ep_rank);
    else if (weights) m = scp_model_load_experts(weights, o->backend, ep_ranks, ep_rank);
    else if ((m = model_of_config(config, o->backend, 0, ep_ranks, ep_rank)))
        scp_model_init_random(m, o->seed, (float)o->init_std);
    free(config);
    if (weights_dir) *weights_dir = weights;
    else free(weights);
    if (!m || !scp_tokenizer_in_dir(*tok_dir)) {
        free(*tok_dir);
        *tok_dir = NULL;
    }
    return m;
}

scp_model *scp_train_load_model(const scp_train_opts *o, const char *resume_dir, char **tok_dir)
{
    return load(o, resume_dir, tok_dir, NULL, 0, 1, 0);
}

scp_model *scp_train_load_part(const scp_train_opts *o, const char *resume_dir, int ep_ranks, int ep_rank, int shell,
                               char **tok_dir, char **weights_dir)
{
    return load(o, resume_dir, tok_dir, shell ? weights_dir : NULL, shell, ep_ranks, ep_rank);
}

scp_model *scp_train_load_shell(const scp_train_opts *o, const char *resume_dir, char **tok_dir, char **weights_dir)
{
    return load(o, resume_dir, tok_dir, weights_dir, 1, 1, 0);
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
