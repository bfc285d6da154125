/* train/run.c: one scp-train run: its set-up (model, data, batches, optimizer state, run directory) and the loop
 * of steps with their metrics lines, evaluations and checkpoints. */
#include "train/run.h"
#include "core/error.h"
#include "core/io.h"
#include "core/peak_memory.h"
#include "core/progress.h"
#include "data/source.h"
#include "eval/setup.h"
#include "model/backend.h"
#include "train/init.h"
#include "train/run_checkpoint.h"
#include "train/sharded.h"
#include "train/watch.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void scp_train_run_init(scp_train_run *r, scp_train_opts *o, scp_dist *d, const char *rundir)
{
    memset(r, 0, sizeof *r);
    r->o = o;
    r->dist = d;
    r->rundir = rundir;
    r->expert_parallel = 1;
    r->prefetch = 1;
}

void scp_train_run_free(scp_train_run *r)
{
    if (r->tr_open) scp_trainer_free(&r->tr);
    if (r->mt_open) scp_metrics_close(&r->mt);
    scp_train_moments_free(&r->mo);
    scp_zero1_free(&r->zero1);
    scp_fsdp_free(&r->fsdp);
    scp_expert_par_free(&r->ep);
    free(r->weights_dir);
    free(r->tok_dir);
    free(r->resume_dir);
    if (r->val) scp_shardset_close(r->val);
    if (r->train) scp_shardset_close(r->train);
    if (r->m) scp_model_free(r->m);
    r->tr_open = r->mt_open = 0;
    r->tok_dir = r->resume_dir = NULL;
    r->val = r->train = NULL;
    r->m = NULL;
}

int scp_train_resume_options(scp_train_run *r)
{
    if (!scp_is_dir(r->rundir)) return scp_error("%s: no such run directory to resume", r->rundir);
    if (r->dist->rank == 0) scp_run_clean_stale(r->rundir);
    r->resume_dir = scp_run_latest(r->rundir);
    if (!r->resume_dir) return -1;
    char *sp = scp_path_join(r->resume_dir, "trainer_state.json");
    scp_train_opts_free(r->o);
    scp_train_opts_default(r->o);
    int rc = scp_train_state_load(sp, &r->st, r->o);
    free(sp);
    return rc;
}

int scp_train_check_rundir(const char *rundir, int force)
{
    if (force || !scp_file_exists(rundir)) return 0;
    char *l = scp_path_join(rundir, "latest");
    int has = scp_file_exists(l);
    free(l);
    if (has) return scp_error("%s: a run is already there (--resume to continue it, --force to start over)", rundir);
    return 0;
}

int scp_train_open_model(scp_train_run *r)
{
    const scp_train_opts *o = r->o;
    int P = r->expert_parallel;
    if (P > 1 && scp_expert_par_init(&r->ep, r->dist, P)) return -1;
    /* ZeRO-3: no rank holds every weight; the shards are filled in scp_train_open_optimizer. Expert parallelism:
     * each rank holds the experts of its place. */
    if (P > 1) r->m = scp_train_load_part(o, r->resume_dir, P, r->ep.place, r->zero == 3, &r->tok_dir, &r->weights_dir);
    else if (r->zero == 3) r->m = scp_train_load_shell(o, r->resume_dir, &r->tok_dir, &r->weights_dir);
    else r->m = scp_train_load_model(o, r->resume_dir, &r->tok_dir);
    if (!r->m) return -1;
    if (P > 1 && (r->m->cfg.num_experts == 0 || r->m->cfg.num_experts % P))
        return scp_error("--expert-parallel %d: the model has %d experts per layer, which %s", P,
                         r->m->cfg.num_experts, r->m->cfg.num_experts ? "P must divide" : "a qwen3_moe model has");
    /* before anything keeps the table: the expert groups, the sharded optimizer state */
    if (r->profile) scp_train_profile_attach(&r->prof, r->m);
    if (P > 1) scp_expert_par_attach(&r->ep, r->m);
    scp_model_set_recompute(r->m, r->recompute);
    if ((o->aux_loss > 0 || o->z_loss > 0) && r->m->cfg.num_experts == 0 && !r->quiet)
        scp_warn("--aux-loss and --z-loss apply to mixture-of-experts models only: this %s model has no router",
                 scp_arch_name(r->m->cfg.arch));
    /* Every rank starts from rank 0's weights (a random init is the same everywhere; this makes sure). Under expert
     * parallelism the ranks hold different experts, drawn or read alike. */
    if (r->m->weights && P == 1) {
        scp_dist_bcast(r->dist, r->m->weights, (size_t)r->m->n_weights * sizeof *r->m->weights, 0, "weight broadcast");
        scp_model_weights_changed(r->m);
    }
    r->shift = scp_train_configure_model(r->m, o, r->resume_dir ? r->resume_dir : o->init);
    return r->shift < 0 ? -1 : 0;
}

int scp_train_open_data(scp_train_run *r)
{
    const scp_train_opts *o = r->o;
    const scp_model_config *cfg = &r->m->cfg;
    r->train = scp_shardset_open(o->data, "train");
    if (!r->train) return -1;
    r->data_hash = scp_shardset_tokenizer_hash(r->train);
    if (r->resume_dir && r->st.data_hash != r->data_hash)
        return scp_error("%s: tokenizer hash %016" PRIx64 " differs from the one the run started with (%016" PRIx64 ")",
                         o->data, r->data_hash, r->st.data_hash);
    if (!r->resume_dir && scp_train_check_tokenizer(r->tok_dir, r->data_hash, o->data, r->quiet)) return -1;
    if (scp_shardset_vocab_size(r->train) > cfg->vocab_size)
        return scp_error("%s: vocabulary of %d ids does not fit the model's %d embedding rows", o->data,
                         scp_shardset_vocab_size(r->train), cfg->vocab_size);
    scp_source_shards(&r->src, r->train);
    if (r->src.n <= 0) return scp_error("%s: the train split has no sequences", o->data);
    /* The next-token loss never reads the logits of a sequence's last position. */
    const char *model_name = r->resume_dir                        ? r->resume_dir
                             : strncmp(o->init, "random:", 7) == 0 ? o->init + 7
                                                                   : o->init;
    if (scp_eval_check_length(cfg, model_name, r->src.T, o->objective == SCP_OBJ_AR, o->data)) return -1;
    /* Rank 0 evaluates, the others wait at the next step; under ZeRO-3 every rank takes part in the forward. */
    if (o->eval_every && (r->dist->rank == 0 || r->zero == 3 || r->expert_parallel > 1)) {
        int has_val = scp_shardset_has_split(o->data, "val");
        if (has_val < 0) return -1;
        if (!has_val) {
            if (!r->quiet) scp_warn("%s: no val split: --eval-every ignored", o->data);
        } else {
            /* A val shard the manifest lists is missing or damaged: an error, not "no val split". */
            if (!(r->val = scp_shardset_open(o->data, "val"))) return -1;
            scp_source_shards(&r->vsrc, r->val);
        }
    }
    if (o->keep_best && !r->quiet && (!o->eval_every || (r->dist->rank == 0 && !r->val)))
        scp_warn("--keep-best needs evaluations on a val split (--eval-every and a shard set with one): no best "
                 "checkpoint will be kept");
    return 0;
}

/* The batch schedule's first and largest batches and its length; options that contradict it are refused. */
static int schedule_plan(const scp_train_opts *o, int T, int world, scp_train_batches *b)
{
    scp_batch_schedule *bs = &b->bs;
    if (scp_batch_schedule_parse(o->batch_schedule, bs)) return -1;
    int64_t base = scp_batch_base_tokens(o->batch_tokens, T);
    scp_batch_schedule_resolve(bs, base);
    if (o->steps)
        return scp_error("--batch-schedule: the run's length is --tokens (the steps follow from the batches), "
                         "not --steps");
    if (bs->kind == SCP_BATCH_ADAPTIVE && !o->grad_stats)
        return scp_error("--batch-schedule adaptive follows the noise scale, which --no-grad-stats turns off");
    b->scheduled = 1;
    b->quantum = world * (o->micro_batch > 0 ? o->micro_batch : 1);
    b->B = scp_batch_schedule_first(bs, T, b->quantum);
    b->B_max = scp_batch_schedule_largest(bs, T, b->quantum);
    if (b->B_max > (1 << 24))
        return scp_error("--batch-schedule %s: more than 2^24 sequences per step", o->batch_schedule);
    /* one rank measures the noise scale from a step of two micro-batches or more (train/grad_stats.h) */
    if (bs->kind == SCP_BATCH_ADAPTIVE && world == 1 && (o->micro_batch < 1 || b->B < 2 * o->micro_batch))
        return scp_error("--batch-schedule %s: one rank measures the noise scale from two micro-batches or more: "
                         "give --micro-batch N with N at most half of MIN's %d sequences", o->batch_schedule, b->B);
    b->micro = o->micro_batch > 0 && o->micro_batch < b->B ? o->micro_batch : b->B;
    b->micro_max = o->micro_batch > 0 && o->micro_batch < b->B_max ? o->micro_batch : b->B_max;
    b->total = scp_batch_schedule_steps(bs, o->tokens, 0, 0, b->B, T, b->quantum);
    return 0;
}

int scp_train_batches_plan(const scp_train_opts *o, int T, int world, scp_train_batches *b)
{
    memset(b, 0, sizeof *b);
    if (o->batch_schedule) return schedule_plan(o, T, world, b);
    int64_t batch_tokens = scp_batch_base_tokens(o->batch_tokens, T);
    if (batch_tokens / T > (1 << 24))
        return scp_error("--batch-tokens %" PRId64 ": more than 2^24 sequences per step", batch_tokens);
    b->B = (int)(batch_tokens / T);
    if (b->B < 1) b->B = 1;
    b->rounded = (int64_t)b->B * T != batch_tokens;
    if (b->B < world)
        return scp_error("--batch-tokens: %d sequences per step cannot be shared by %d ranks", b->B, world);
    b->micro = o->micro_batch > 0 && o->micro_batch < b->B ? o->micro_batch : b->B;
    b->B_max = b->B, b->micro_max = b->micro;
    b->total = o->steps;
    if (!b->total && o->tokens) b->total = (o->tokens + (int64_t)b->B * T - 1) / ((int64_t)b->B * T);
    return 0;
}

int scp_train_plan(scp_train_run *r)
{
    scp_train_batches b;
    int T = r->src.T;
    if (scp_train_batches_plan(r->o, T, r->dist->world, &b)) return -1;
    if (!r->quiet && b.rounded) {
        int64_t bt = r->o->batch_tokens ? r->o->batch_tokens : 8LL * T;
        scp_warn("--batch-tokens %" PRId64 " is not a whole number of %d-token sequences: using %d sequences (%" PRId64
                 " tokens)", bt, T, b.B, (int64_t)b.B * T);
    }
    if (r->zero >= 2 && r->dist->world > 1 && !b.scheduled) {
        /* Sharded gradients are reduced after every micro-batch's backward, a collective: every rank must run
         * the same number of them (a scheduled batch is a multiple of world x micro-batch: always). */
        int few = b.B / r->dist->world, many = (b.B + r->dist->world - 1) / r->dist->world;
        if ((few + b.micro - 1) / b.micro != (many + b.micro - 1) / b.micro)
            return scp_error("--zero %d: %d sequences per step over %d ranks gives %d or %d per rank, which make "
                             "different numbers of %d-sequence micro-batches: choose a batch or --micro-batch where "
                             "every rank makes the same number", r->zero, b.B, r->dist->world, few, many, b.micro);
    }
    if (b.scheduled && b.bs.kind == SCP_BATCH_ADAPTIVE && r->expert_parallel > 1 && r->zero == 0)
        return scp_error("--batch-schedule adaptive follows the noise scale, which --expert-parallel with --zero 0 "
                         "does not measure (--zero 2 or 3 does)");
    if (b.scheduled && r->resume_dir && r->st.batch > 0) {
        /* an adaptive batch continues from the last step's (in whole quanta of this run's ranks) */
        int last = (int)r->st.batch - (int)(r->st.batch % b.quantum);
        if (b.bs.kind == SCP_BATCH_ADAPTIVE && last > b.B) b.B = last < b.B_max ? last : b.B_max;
        b.micro = r->o->micro_batch > 0 && r->o->micro_batch < b.B ? r->o->micro_batch : b.B;
        if (b.bs.kind == SCP_BATCH_ADAPTIVE)
            b.total = scp_batch_schedule_steps(&b.bs, r->o->tokens, r->st.step, r->st.tokens, b.B, T, b.quantum);
    }
    r->plan = b;
    r->B = b.B;
    r->micro = b.micro;
    r->total = b.total;
    return 0;
}

/* ZeRO-1's shard of the moments as a sink (train/sharded.h): vectors 1 and 2 only. */
static int zero1_piece(void *ctx, int vec, int i, int64_t *lo, int64_t *hi)
{
    return vec > 0 && scp_zero1_param_piece(ctx, i, lo, hi);
}

static void zero1_put(void *ctx, int vec, int i, const float *data)
{
    scp_zero1_set_moment_piece(ctx, vec - 1, i, data);
}

/* This rank's pieces of the moments of optimizer.safetensors (or its shards) in dir. */
static int load_zero1_moments(scp_zero1 *z, const char *dir)
{
    scp_ckpt_sink sink = {.desc = z->m->desc, .n = z->m->n_params, .ctx = z, .piece = zero1_piece, .put = zero1_put};
    return scp_sharded_load_sink(&sink, dir, "optimizer");
}

int scp_train_open_optimizer(scp_train_run *r)
{
    scp_dist *d = r->dist;
    scp_train_state *st = &r->st;
    if (r->zero && d->world == 1 && !r->quiet) scp_warn("--zero %d with one rank: nothing to shard", r->zero);
    if (r->zero >= 2) {
        if (scp_fsdp_init_experts(&r->fsdp, r->m, d, r->expert_parallel > 1 ? &r->ep.replicas : NULL, r->zero,
                                  r->keep_gathered, r->reduce_bf16))
            return -1;
        scp_fsdp_set_prefetch(&r->fsdp, r->prefetch);
        if (r->zero == 3 && r->weights_dir && scp_sharded_load_weights(&r->fsdp, r->weights_dir)) return -1;
        if (r->zero == 3 && !r->weights_dir) scp_sharded_random_weights(&r->fsdp, r->o->seed, (float)r->o->init_std);
    } else {
        scp_model_alloc_grads(r->m);
        if (r->zero == 1 && d->world > 1) scp_zero1_init(&r->zero1, r->m, d);
        else scp_train_moments_init(&r->mo, r->m);
    }
    if (r->resume_dir) {
        /* Checkpoints hold the full moments (gathered, or in shards every rank reads its pieces of): any rank count
         * can resume. */
        int rc;
        if (r->zero >= 2) {
            rc = scp_sharded_load_moments(&r->fsdp, r->resume_dir);
        } else if (r->zero1.m) {
            rc = load_zero1_moments(&r->zero1, r->resume_dir);
        } else {
            char *op = scp_path_join(r->resume_dir, "optimizer.safetensors");
            rc = scp_train_moments_load(&r->mo, r->m, op);
            free(op);
        }
        if (rc) return -1;
        if (d->rank == 0 && scp_metrics_truncate(r->rundir, st->step)) return -1;
        if (!st->world) st->world = 1;   /* saved before data parallelism */
        if (!r->quiet && st->world != d->world)
            scp_warn("%s was saved by %" PRId64 " rank%s, resuming with %d: weights, optimizer state and data "
                     "position carry over (the global batch is the same), but sums over ranks round differently, "
                     "so the run is not bit-identical to one that kept %" PRId64,
                     r->resume_dir, st->world, st->world == 1 ? "" : "s", d->world, st->world);
    } else {
        scp_rng_init(&st->rng, r->o->seed, 0x747261696e6572ull);   /* "trainer" */
        st->data_hash = r->data_hash;
    }
    st->total_steps = r->total;
    return 0;
}

int scp_train_start(scp_train_run *r)
{
    scp_train_opts *o = r->o;
    scp_dist *d = r->dist;
    int r0 = d->rank == 0;
    if (!r->resume_dir && r0) {
        /* Created only now that the model and the data are known good: a refused run leaves nothing behind. */
        if (r->force && scp_file_exists(r->rundir) && scp_rm_rf(r->rundir)) return -1;
        if (scp_mkdir_p(r->rundir)) return -1;
        scp_run_clean_stale(r->rundir);
    }
    if (r0) {
        if (scp_metrics_open(&r->mt, r->rundir)) return -1;
        r->mt_open = 1;
    }
    free(o->out);
    o->out = scp_xstrdup(r->rundir);
    r->best_loss = INFINITY;
    int64_t best_step;
    if (r0 && r->resume_dir && o->keep_best && (best_step = scp_run_best_step(r->rundir)) >= 0 &&
        scp_metrics_eval_at(r->rundir, best_step, o->objective == SCP_OBJ_MDM ? "elbo" : "nll", &r->best_loss) < 0)
        return -1;

    if (!r->quiet)
        scp_warn("%s %s, %d params (%" PRId64 " weights), %" PRId64 " sequences of %d; %d per step (micro %d), "
                 "steps %" PRId64 " to %" PRId64,
                 scp_objective_name(o->objective), r->resume_dir ? "resumed" : "from init", r->m->n_params,
                 r->m->n_weights, r->src.n, r->src.T, r->B, r->micro, r->st.step, r->total);
    if (!r->quiet) {
        char when[64] = "at the end only", kept[48] = "";
        if (o->save_every) snprintf(when, sizeof when, "every %" PRId64 " steps and at the end", o->save_every);
        else if (o->save_seconds) snprintf(when, sizeof when, "every %g s and at the end", o->save_seconds);
        if (o->keep) snprintf(kept, sizeof kept, ", the newest %d kept", o->keep);
        scp_warn("checkpoints %s%s%s", when, kept, o->keep_best ? ", the lowest val loss kept as best" : "");
    }
    if (!r->quiet && r->plan.scheduled) {
        const scp_batch_schedule *bs = &r->plan.bs;
        int64_t base = scp_batch_base_tokens(o->batch_tokens, r->src.T);
        char rule[96] = "lr as chosen for every batch";
        if (o->lr_scaling != SCP_LR_SCALE_NONE)
            snprintf(rule, sizeof rule, "lr x %s(B / %" PRId64 ")", o->lr_scaling == SCP_LR_SCALE_SQRT ? "sqrt" : "",
                     base);
        if (bs->kind == SCP_BATCH_LINEAR)
            scp_warn("batch schedule: %" PRId64 " to %" PRId64 " tokens over the first %" PRId64 " tokens, in "
                     "multiples of %d sequences; %s (--lr-scaling %s); warmup and decay count tokens", bs->start,
                     bs->end, bs->span, r->plan.quantum, rule, scp_lr_scaling_name(o->lr_scaling));
        else
            scp_warn("batch schedule: %g x the noise scale within [%" PRId64 ", %" PRId64 "] tokens, in multiples "
                     "of %d sequences, growing only; %s (--lr-scaling %s); warmup and decay count tokens", bs->k,
                     bs->min, bs->max, r->plan.quantum, rule, scp_lr_scaling_name(o->lr_scaling));
    }
    if (!r->quiet && d->world > 1)
        scp_warn("data parallel: %d ranks (%s%s), %d-%d sequences per rank per step, ZeRO-%d, timeout %.0f s", d->world,
                 scp_dist_library(), d->nccl ? ", gradients by NCCL" : "", r->B / d->world,
                 (r->B + d->world - 1) / d->world, r->zero, d->timeout);

    if (r->expert_parallel > 1 && r->zero == 0 && o->grad_stats) {
        /* each rank holds other experts: a rank's gradient is no sample of the whole model's */
        o->grad_stats = 0;
        if (!r->quiet)
            scp_warn("--expert-parallel with --zero 0: no gradient statistics (noise scale, per-group norms and update "
                     "ratios); --zero 2 or 3 gives the noise scale");
    }
    const scp_model_config *cfg = &r->m->cfg;
    scp_trainer_init(&r->tr, r->m, o, &r->st, &r->src, r->B, r->micro, r->mo.m, r->mo.v, cfg->mask_token_id, r->shift);
    r->tr_open = 1;
    if (r->zero >= 2) scp_trainer_set_fsdp(&r->tr, &r->fsdp);
    else scp_trainer_set_dist(&r->tr, d, r->zero1.m ? &r->zero1 : NULL);
    if (r->expert_parallel > 1) scp_trainer_set_experts(&r->tr, &r->ep);
    scp_dist_watchdog_start(d);
    scp_eval_opts *eo = &r->eo;
    scp_eval_opts_default(eo);
    eo->max_seqs = o->eval_seqs;
    eo->batch = r->micro;
    eo->doc_mask = o->doc_mask;
    eo->samples = o->eval_samples;
    eo->seed = o->seed;
    eo->eps = o->t_eps;
    eo->sched = o->mask_schedule;
    eo->mask_id = cfg->mask_token_id;
    eo->shift = r->shift;
    eo->attn = o->attn == SCP_ATTN_CAUSAL ? SCP_ATTN_CAUSAL : SCP_ATTN_BIDIRECTIONAL;
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------------------------- */

/* {"GROUP": rate} for the groups the model has. */
static json_t *lr_json(const scp_model *m, const double *glr)
{
    int present[SCP_GROUP_COUNT] = {0};
    for (int i = 0; i < m->n_params; i++) present[m->desc[i].group] = 1;
    json_t *j = json_object();
    for (int g = 0; g < SCP_GROUP_COUNT; g++)
        if (present[g]) json_object_set_new(j, scp_group_name((scp_group)g), json_real(glr[g]));
    return j;
}

/* An evaluation line on the val split: the diffusion bound (mdm) or the next-token NLL (ar), also into *loss. */
static int eval_line(scp_train_run *r, double *loss)
{
    scp_eval_result er;
    scp_objective obj = r->o->objective;
    const char *key = obj == SCP_OBJ_MDM ? "elbo" : "nll";
    if ((obj == SCP_OBJ_MDM ? scp_eval_elbo(r->m, &r->vsrc, &r->eo, &er) : scp_eval_ppl(r->m, &r->vsrc, &r->eo, &er)))
        return -1;
    if (scp_model_expert_exchange_failed(r->m)) return -1;
    if (r->dist->rank != 0) return 0;   /* ZeRO-3, experts: the other ranks took part in the forward */
    *loss = er.nll;
    json_t *j = json_object();
    json_object_set_new(j, "step", json_integer(r->st.step));
    json_object_set_new(j, "tokens", json_integer(r->st.tokens));
    json_object_set_new(j, "epoch", json_real(scp_train_epoch(r->st.cursor, r->src.n)));
    json_object_set_new(j, "eval", json_string("val"));
    json_object_set_new(j, key, json_real(er.nll));
    json_object_set_new(j, "se", isfinite(er.se) ? json_real(er.se) : json_null());
    json_object_set_new(j, "seqs", json_integer(er.seqs));
    if (scp_metrics_write(&r->mt, j)) return -1;
    if (!r->quiet) scp_warn("step %" PRId64 ": val %s %.4f (se %.4f)", r->st.step, key, er.nll, er.se);
    return 0;
}

/* The metrics line of the step just made (rank 0). */
static int step_line(scp_train_run *r, const scp_step_info *si, double dt, double comm, double wait)
{
    const scp_train_state *st = &r->st;
    json_t *j = json_object();
    json_object_set_new(j, "step", json_integer(st->step));
    json_object_set_new(j, "tokens", json_integer(st->tokens));
    json_object_set_new(j, "batch_tokens", json_integer((int64_t)r->B * r->src.T));
    json_object_set_new(j, "loss", isfinite(si->loss) ? json_real(si->loss) : json_null());
    json_object_set_new(j, "lr", lr_json(r->m, r->tr.glr));
    json_object_set_new(j, "grad_norm", isfinite(si->grad_norm) ? json_real(si->grad_norm) : json_null());
    if (r->o->objective == SCP_OBJ_MDM) json_object_set_new(j, "masked_fraction", json_real(si->masked_fraction));
    json_object_set_new(j, "tokens_per_s", json_real(dt > 0 ? (double)r->B * r->src.T / dt : 0.0));
    json_object_set_new(j, "skipped", json_integer(st->skipped));
    json_object_set_new(j, "epoch", json_real(scp_train_epoch(st->cursor, r->src.n)));
    json_object_set_new(j, "peak_rss_bytes", json_integer(scp_peak_rss_bytes()));
    int64_t dev = r->m->backend->host_memory ? -1 : r->m->backend->peak_bytes();
    if (dev >= 0) json_object_set_new(j, "device_peak_bytes", json_integer(dev));
    scp_metrics_moe(j, si->n_experts, si->expert_load, si->aux_loss, si->z_loss);
    scp_grad_stats_json(&r->tr.gstats, j);
    if (r->dist->world > 1) {   /* seconds all-reducing, and waiting at the step barrier for the slowest rank */
        json_object_set_new(j, "comm_s", json_real(comm));
        json_object_set_new(j, "wait_s", json_real(wait));
    }
    return scp_metrics_write(&r->mt, j);
}

/* A checkpoint, written by rank 0. With ZeRO-1 rank 0 gathers the full moments one tensor at a time as it writes
 * them, so a checkpoint never depends on the rank count and no rank holds them whole. Collective: every rank calls
 * it at the same step. */
static int save_sharded_checkpoint(scp_train_run *r);

static int zero1_gather(void *ctx, int k, int i, float *out)
{
    return scp_zero1_gather_moment(ctx, k, i, 0, out);
}

static int save_checkpoint(scp_train_run *r)
{
    if (r->zero >= 2 || r->expert_parallel > 1) return save_sharded_checkpoint(r);
    scp_dist *d = r->dist;
    scp_model *m = r->m;
    int zero1 = r->zero1.m != NULL;
    float *fm = r->mo.m, *fv = r->mo.v;
    r->st.world = d->world;
    scp_model_sync_host(m);   /* a device backend's weights and moments come down */
    /* Rank 0's state stands for every rank's: check that the ranks still agree bit for bit (MPI does not promise
     * identical all-reduce results on every rank), and if not, continue from rank 0's. */
    size_t wb = (size_t)m->n_weights * sizeof *m->weights;
    if (!scp_dist_same(d, m->weights, wb, "weight check") ||
        (!zero1 && (!scp_dist_same(d, fm, wb, "moment check") || !scp_dist_same(d, fv, wb, "moment check")))) {
        if (d->rank == 0)
            scp_warn("step %" PRId64 ": the ranks' weights or moments differ in the last bits: continuing from "
                     "rank 0's", r->st.step);
        scp_dist_bcast(d, m->weights, wb, 0, "weight broadcast");
        if (!zero1) {
            scp_dist_bcast(d, fm, wb, 0, "moment broadcast");
            scp_dist_bcast(d, fv, wb, 0, "moment broadcast");
        }
        scp_model_weights_changed(m);
    }
    if (zero1)   /* rank 0 writes the moments as they come, one tensor at a time from the ranks' pieces */
        return scp_train_save_checkpoint_gathered(r->rundir, d->rank == 0, m, zero1_gather, &r->zero1, &r->st, r->o,
                                                  r->tok_dir);
    return d->rank == 0 ? scp_train_save_checkpoint(r->rundir, m, fm, fv, &r->st, r->o, r->tok_dir) : 0;
}

/* Expert parallelism's tensors for a sharded checkpoint: this rank's weights and moments, an expert from a rank
 * of its place (dist/expert.h); with ZeRO-2/3 from the pieces of the ranks holding them. */
static int expert_gather(void *ctx, int vec, int i, int root, float *out)
{
    scp_train_run *r = ctx;
    if (r->zero >= 2) {
        static const scp_fsdp_vec which[3] = {SCP_FSDP_WEIGHTS, SCP_FSDP_EXP_AVG, SCP_FSDP_EXP_AVG_SQ};
        int place, li = scp_expert_par_locate(&r->ep, i, &place);
        return scp_fsdp_gather_param_of(&r->fsdp, which[vec], li, place < 0 ? 0 : place, r->ep.P, root, out);
    }
    const float *v = vec == 0 ? r->m->weights : vec == 1 ? r->mo.m : r->mo.v;
    return scp_expert_par_gather_param(&r->ep, v, i, root, out);
}

/* The ranks holding the same parameters agree bit for bit, or continue from the lowest rank's (see
 * save_checkpoint). */
static void expert_agree(scp_train_run *r)
{
    scp_model *m = r->m;
    scp_model_sync_host(m);   /* a device backend's weights and moments come down */
    float *vec[3] = {m->weights, r->mo.m, r->mo.v};
    int same = 1;
    for (int k = 0; k < 3; k++) same &= scp_expert_par_same(&r->ep, vec[k], m->n_weights, "checkpoint check");
    if (same) return;
    if (r->dist->rank == 0)
        scp_warn("step %" PRId64 ": the ranks' weights or moments differ in the last bits: continuing from those of "
                 "the first expert group", r->st.step);
    for (int k = 0; k < 3; k++)
        scp_dist_bcast(&r->ep.replicas, vec[k], (size_t)m->n_weights * sizeof *vec[k], 0, "checkpoint agreement");
    scp_model_weights_changed(m);
}

/* A ZeRO-2/3 or expert-parallel checkpoint (train/sharded.h): rank 0 makes the temporary directory and tells the
 * others its name, every rank writes its shard files into it, rank 0 adds the rest and commits it. Collective. */
static int save_sharded_checkpoint(scp_train_run *r)
{
    scp_dist *d = r->dist;
    r->st.world = d->world;
    if (r->zero >= 2) scp_fsdp_trim(&r->fsdp);   /* the step's unit buffers make room for the checkpoint's */
    else expert_agree(r);
    char *name = scp_run_ckpt_name(r->st.step), *final = scp_path_join(r->rundir, name), *tmp = NULL;
    char path[4096] = "";
    if (d->rank == 0 && (tmp = scp_dir_begin(final))) snprintf(path, sizeof path, "%s", tmp);
    scp_dist_bcast(d, path, sizeof path, 0, "checkpoint directory");
    scp_ckpt_source es = {r->ep.full, r->ep.n_full, d, r, expert_gather};
    int rc = !path[0] ? -1 : r->expert_parallel > 1 ? scp_sharded_save_source(&es, path) : scp_sharded_save(&r->fsdp, path);
    if (d->rank == 0) rc = scp_train_finish_checkpoint(r->rundir, name, final, tmp, rc, &r->m->cfg, &r->st, r->o,
                                                       r->tok_dir);
    rc = scp_dist_any(d, rc != 0, "checkpoint commit") ? -1 : 0;
    free(tmp);
    free(name);
    free(final);
    return rc;
}

/* Under a batch schedule: the batch of the next step, on every rank, and the run's length that follows. The
 * adaptive decision is rank 0's, broadcast: it comes from the averages every rank computes from the same
 * all-reduced sums, but MPI does not promise those bit for bit on every rank. */
static int next_batch(scp_train_run *r)
{
    scp_train_state *st = &r->st;
    const scp_train_batches *p = &r->plan;
    if (!p->scheduled) return 0;
    int T = r->src.T;
    int32_t B = scp_batch_schedule_next(&p->bs, st->tokens, r->B, &st->noise, T, p->quantum);
    if (p->bs.kind == SCP_BATCH_ADAPTIVE && scp_dist_bcast(r->dist, &B, sizeof B, 0, "batch schedule")) return -1;
    r->B = B;
    scp_trainer_set_batch(&r->tr, B);
    r->micro = r->tr.micro;
    st->batch = B;
    if (p->bs.kind == SCP_BATCH_ADAPTIVE)
        r->total = st->total_steps =
            scp_batch_schedule_steps(&p->bs, r->o->tokens, st->step, st->tokens, B, T, p->quantum);
    return 0;
}

/* The run has reached its length: --steps, or the --tokens of a batch schedule. */
static int run_done(const scp_train_run *r)
{
    return r->plan.scheduled ? r->st.tokens >= r->o->tokens : r->st.step >= r->total;
}

int scp_train_loop(scp_train_run *r, volatile sig_atomic_t *stop_signal)
{
    scp_dist *d = r->dist;
    scp_train_state *st = &r->st;
    const scp_train_opts *o = r->o;
    int r0 = d->rank == 0;
    double vloss = NAN;
    /* step 0 is the init, which no checkpoint of the run holds: it is not a candidate for --keep-best */
    if (r->val && st->step == 0 && eval_line(r, &vloss)) return -1;

    scp_progress prog;
    scp_progress_init(&prog, r->total);
    scp_train_watch watch;
    scp_train_watch_init(&watch, r->log_every, r->log_every_s, r->total, r->src.n, r->B, st->step, st->cursor,
                         st->tokens);
    int64_t saved_at = r->resume_dir ? st->step : -1, best_at = -1;
    double t_start = scp_now(), t_saved = t_start;
    int64_t tok_start = st->tokens, step_start = st->step;
    int stop = 0;   /* the signal that stops the run, seen by any rank (all ranks stop at the same step) */
    scp_dist_take_comm_time(d, NULL);
    while (!run_done(r) && !stop) {
        double t0 = scp_now();
        scp_step_info si;
        if (next_batch(r)) return -1;
        prog.total = watch.total = r->total;
        watch.B = r->B;
        if (r->plan.scheduled) watch.batch_tokens = (int64_t)r->B * r->src.T;
        if (r->profile) scp_train_profile_begin(&r->prof);
        if (scp_trainer_step(&r->tr, &si)) return -1;
        int last = run_done(r);
        double dt = scp_now() - t0, wait = 0, comm = scp_dist_take_comm_time(d, &wait);
        if (r->profile) scp_train_profile_end(&r->prof, st->step, dt);
        stop = scp_dist_any(d, *stop_signal, "stop flag");
        if (r0) {
            if (step_line(r, &si, dt, comm, wait)) return -1;
            double el = scp_now() - t_start;
            scp_progress_update(&prog, st->step, "step %" PRId64 "/%" PRId64 " loss %.4f %.0f tok/s", st->step,
                                r->total, si.loss, el > 0 ? (double)(st->tokens - tok_start) / el : 0.0);
            scp_train_watch_step(&watch, st->step, st->cursor, st->tokens, si.loss, r->quiet);
        }
        /* every N steps, and at the last step, so a run always ends with its held-out figure */
        int eval_step = o->eval_every && (st->step % o->eval_every == 0 || last);
        vloss = NAN;
        if (r->val && eval_step && eval_line(r, &vloss)) return -1;
        /* Rank 0 holds the figure and the clock; a checkpoint is collective, so every rank follows its word. */
        int best = o->keep_best && eval_step && scp_dist_any(d, r0 && vloss < r->best_loss, "best checkpoint");
        int clock = o->save_seconds > 0 &&
                    scp_dist_any(d, r0 && scp_now() - t_saved >= o->save_seconds, "checkpoint clock");
        if (best) {
            r->best_loss = vloss;
            best_at = st->step;
        }
        if ((best || clock || (o->save_every && st->step % o->save_every == 0)) && !last) {
            if (save_checkpoint(r)) return -1;
            saved_at = st->step;
            t_saved = scp_now();
            if (best && r0 && scp_train_mark_best(r->rundir, st->step, o->keep)) return -1;
        }
    }
    if (r0) scp_progress_end(&prog);
    if (saved_at != st->step && save_checkpoint(r)) return -1;
    if (best_at == st->step && r0 && scp_train_mark_best(r->rundir, st->step, o->keep)) return -1;
    if (r->mt_open) {
        scp_metrics_close(&r->mt);
        r->mt_open = 0;
    }
    if (r->profile && r0 && scp_train_profile_report(&r->prof, r->rundir, r->quiet)) return -1;
    if (!r->quiet && r->resume_dir && st->step == step_start && !stop) {
        scp_warn("%s: the run was already done at step %" PRId64 ": nothing to train (a larger --steps or --tokens "
                 "continues it)", r->rundir, st->step);
    } else if (!r->quiet) {
        double el = scp_now() - t_start;
        scp_warn("%s at step %" PRId64 " (%" PRId64 " skipped), %.0f tokens/s; checkpoint %s/latest",
                 stop ? "interrupted" : "done", st->step, st->skipped,
                 el > 0 ? (double)(st->tokens - tok_start) / el : 0.0, r->rundir);
    }
    return stop;
}
