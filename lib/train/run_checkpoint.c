/* train/run_checkpoint.c: one atomic checkpoint of a training run. */
#include "train/run_checkpoint.h"
#include "core/error.h"
#include "core/io.h"
#include "formats/model_config.h"

#include <stdlib.h>

int scp_train_finish_checkpoint(const char *rundir, const char *name, const char *final, char *tmp, int rc,
                                const scp_model_config *cfg, const scp_train_state *s, const scp_train_opts *o,
                                const char *tok_dir)
{
    char *p;
    if (!tmp) rc = -1;
    if (rc == 0 && cfg) {
        p = scp_path_join(tmp, "config.json");
        rc = scp_config_save(cfg, p);
        free(p);
    }
    if (rc == 0 && tok_dir && scp_copy_tokenizer_files(tok_dir, tmp) < 0) rc = -1;
    if (rc == 0) {
        p = scp_path_join(tmp, "trainer_state.json");
        rc = scp_train_state_save(p, s, o);
        free(p);
    }
    if (rc == 0) rc = scp_dir_commit(tmp, final, 1);
    else if (tmp) {
        scp_rm_rf(tmp);
        scp_cleanup_unregister(tmp);
    }
    if (rc == 0) rc = scp_run_set_latest(rundir, name);
    if (rc == 0) rc = scp_run_prune(rundir, o->keep);
    return rc;
}

int scp_train_save_checkpoint_gathered(const char *rundir, int writer, const scp_model *m,
                                       int (*gather)(void *ctx, int k, int i, float *out), void *ctx,
                                       const scp_train_state *s, const scp_train_opts *o, const char *tok_dir)
{
    char *name = NULL, *final = NULL, *tmp = NULL, *opt = NULL;
    int rc = 0;
    if (writer) {
        name = scp_run_ckpt_name(s->step);
        final = scp_path_join(rundir, name);
        tmp = scp_dir_begin(final);
        rc = tmp && scp_model_save(m, tmp, SCP_F32) == 0 ? 0 : -1;
        if (rc == 0) opt = scp_path_join(tmp, "optimizer.safetensors");
    }
    /* the other ranks' gathers must run whatever happened here */
    if (scp_optimizer_save_stream(opt, m, gather, ctx)) rc = -1;
    if (writer) rc = scp_train_finish_checkpoint(rundir, name, final, tmp, rc, NULL, s, o, tok_dir);
    free(opt);
    free(tmp);
    free(name);
    free(final);
    return rc;
}

int scp_train_save_checkpoint(const char *rundir, const scp_model *m, const float *opt_m, const float *opt_v,
                              const scp_train_state *s, const scp_train_opts *o, const char *tok_dir)
{
    scp_whole_moments w = {m, {(float *)opt_m, (float *)opt_v}};   /* only read */
    return scp_train_save_checkpoint_gathered(rundir, 1, m, scp_whole_moments_gather, &w, s, o, tok_dir);
}

int scp_train_mark_best(const char *rundir, int64_t step, int keep)
{
    char *name = scp_run_ckpt_name(step);
    int rc = scp_run_set_best(rundir, name);
    free(name);
    return rc ? rc : scp_run_prune(rundir, keep);
}
