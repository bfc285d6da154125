/* eval/setup.c: scp-eval's model and data, opened and checked against each other. */
#include "eval/setup.h"
#include "core/error.h"

#include <inttypes.h>
#include <string.h>

int scp_eval_check_length(const scp_model_config *c, const char *model_name, int64_t T, int causal, const char *what)
{
    int64_t positions = causal ? T - 1 : T;
    if (positions <= c->max_position_embeddings) return 0;
    return scp_error("%s: sequences of %" PRId64 " tokens need %" PRId64 " positions, but %s has "
                     "max_position_embeddings %d", what, T, positions, model_name, c->max_position_embeddings);
}

int scp_eval_data_open(scp_eval_data *d, const scp_eval_source_spec *spec, const scp_model *m, const char *model_dir,
                       int causal)
{
    memset(d, 0, sizeof *d);
    uint64_t data_hash;
    int data_vocab;
    if (spec->shards) {
        d->name = spec->shards;
        d->shards = scp_shardset_open(spec->shards, spec->split);
        if (!d->shards) return -1;
        scp_source_shards(&d->src, d->shards);
        data_hash = scp_shardset_tokenizer_hash(d->shards);
        data_vocab = scp_shardset_vocab_size(d->shards);
    } else {
        d->name = spec->stream;
        if (scp_windows_open(&d->windows, spec->stream, spec->seq_len, spec->stride)) return -1;
        scp_source_windows(&d->src, &d->windows);
        data_hash = d->windows.tokenizer_hash;
        data_vocab = d->windows.vocab_size;
    }
    int rc = 0;
    if (d->src.n == 0)
        rc = scp_error("%s: no %s sequence to score", d->name, spec->shards ? spec->split : "whole-window");
    else if (data_vocab > m->cfg.vocab_size)
        rc = scp_error("%s: vocabulary of %d ids does not fit the model's %d embedding rows", d->name, data_vocab,
                       m->cfg.vocab_size);
    else if (scp_tokenizer_check_dir(model_dir, data_hash, d->name))
        rc = -1;
    else
        rc = scp_eval_check_length(&m->cfg, model_dir, d->src.T, causal, d->name);
    if (rc) scp_eval_data_close(d);
    return rc;
}

void scp_eval_data_close(scp_eval_data *d)
{
    if (d->shards) scp_shardset_close(d->shards);
    scp_windows_free(&d->windows);
    d->shards = NULL;
}

int scp_eval_loss_resolve(scp_eval_opts *eo, const scp_model *m, const char *model_dir, int mask_id, int shift,
                          int elbo)
{
    eo->mask_id = mask_id >= 0 ? mask_id : m->cfg.mask_token_id;
    eo->shift = shift >= 0 ? shift : m->cfg.shift_logits;
    if (elbo && eo->mask_id < 0)
        return scp_error("%s: config.json has no mask_token_id (give --mask-id ID, or import with scp-import)",
                         model_dir);
    if (elbo && eo->mask_id >= m->cfg.vocab_size)
        return scp_error("--mask-id %d is outside the model's %d embedding rows", eo->mask_id, m->cfg.vocab_size);
    return 0;
}

void scp_eval_model_defaults(scp_eval_model *e)
{
    memset(e, 0, sizeof *e);
    e->backend = "cpu";
    e->mode = SCP_EVAL_AUTO;
    e->shift = -1;
    e->mask_id = -1;
}

int scp_eval_model_open(scp_eval_model *e)
{
    scp_set_threads(e->threads);
    e->m = scp_model_load(e->path, e->backend);
    if (!e->m) return -1;
    e->tok = scp_tokenizer_load(e->path);
    if (!e->tok) {
        scp_eval_model_close(e);
        return -1;
    }
    const scp_model_config *c = &e->m->cfg;
    e->ar = e->mode == SCP_EVAL_AR || (e->mode == SCP_EVAL_AUTO && c->causal);
    if (e->mask_id < 0) e->mask_id = c->mask_token_id;
    if (e->shift < 0) e->shift = c->shift_logits;
    if (!e->ar && (e->mask_id < 0 || e->mask_id >= c->vocab_size)) {
        scp_error("%s: no mask token in the model's %d rows (give --mask-id ID, or import with scp-import)", e->path,
                  c->vocab_size);
        scp_eval_model_close(e);
        return -1;
    }
    e->bos = e->no_bos ? -1 : c->bos_token_id >= 0 ? c->bos_token_id : scp_tokenizer_bos_id(e->tok);
    return 0;
}

void scp_eval_model_close(scp_eval_model *e)
{
    if (e->tok) scp_tokenizer_free(e->tok);
    if (e->m) scp_model_free(e->m);
    e->tok = NULL;
    e->m = NULL;
}
