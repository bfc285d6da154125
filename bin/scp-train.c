/* scp-train: continue pretraining a checkpoint with the masked-diffusion (or next-token) objective.
 *
 *   scp-train --init CKPT --data SHARDS -o RUNDIR [OPTIONS]
 *   scp-train --resume -o RUNDIR [OPTIONS that override the saved ones]
 *
 * One optimizer step: the global batch (--batch-tokens, whole sequences) is taken from the data order at the
 * cursor; for mdm each sequence gets a noise level t (stratified over the batch from (seed, step)) and its mask
 * from the stream (seed, cursor position); micro-batches (--micro-batch) accumulate gradients; then clipping,
 * the NaN/Inf check and AdamW with per-group rates. Everything a step draws is a function of (seed, step,
 * cursor) or of the saved trainer RNG, so a resumed run repeats the uninterrupted one bit for bit. */
#include "core/cli.h"
#include "dist/dist.h"
#include "core/error.h"
#include "eval/loss.h"
#include "core/io.h"
#include "model/model.h"
#include "core/progress.h"
#include "data/shard.h"
#include "tok/tokenizer.h"
#include "data/batch.h"
#include "train/run_checkpoint.h"
#include "train/metrics.h"
#include "train/opts.h"
#include "train/schedule.h"
#include "data/source.h"
#include "train/state.h"
#include "train/step.h"

#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn static void usage(void)
{
    printf("Usage: %s --init CKPT --data SHARDS -o RUNDIR [OPTIONS]\n"
           "       %s --resume -o RUNDIR [OPTIONS]\n"
           "Continue pretraining a checkpoint as a masked diffusion model (or with the next-token loss).\n"
           "\n"
           "Model and data:\n"
           "  -i, --init CKPT          checkpoint directory, or random:CONFIG.json for a model from scratch\n"
           "      --init-random        random weights of CKPT's shape (its config and tokenizer)\n"
           "      --init-std S         standard deviation of random weights (default 0.02)\n"
           "  -d, --data SHARDS        shard set directory (scp-shard); its train split is used\n"
           "  -o, --output RUNDIR      run directory: checkpoints, latest, metrics.jsonl\n"
           "  -r, --resume             continue the run in RUNDIR from its latest checkpoint\n"
           "  -f, --force              start over in an existing RUNDIR (removes it)\n"
           "Objective:\n"
           "      --objective mdm|ar   masked diffusion (default) or next-token loss\n"
           "      --loss-norm length|masked  divide each sequence's loss by its length (default) or by\n"
           "                           its number of masked tokens\n"
           "      --attention MODE     bidirectional (mdm default), causal (ar default), or anneal:STEPS\n"
           "                           (causal plus each future key with probability step/STEPS)\n"
           "      --doc-mask           keep attention inside documents\n"
           "      --shift, --no-shift  logits at i predict token i+1 (default: config.json shift_logits)\n"
           "      --t-sampler uniform|stratified|antithetic  noise levels across the batch (default stratified)\n"
           "      --mask-schedule linear|cosine|poly2  masking probability at t (default linear)\n"
           "      --t-eps E            smallest noise level (default 0.001)\n"
           "Optimizer:\n"
           "      --lr LR              base learning rate (default 3e-4)\n"
           "      --lr-attn X, --lr-mlp X, --lr-embed X, --lr-norm X, --lr-router X\n"
           "                           group multipliers (default 1; 0 freezes; mlp covers the experts)\n"
           "      --beta1 B, --beta2 B, --eps E, --weight-decay W   AdamW (0.9, 0.95, 1e-8, 0.1);\n"
           "                           no decay on norms and biases\n"
           "      --clip C             clip the global gradient norm to C (default 1; 0: off)\n"
           "      --aux-loss C, --z-loss C   MoE: load-balancing and router z-loss coefficients (default 0)\n"
           "      --warmup STEPS       linear warmup (default 0)\n"
           "      --schedule constant|cosine|wsd   after warmup (default constant)\n"
           "      --min-lr LR          final rate of cosine and wsd (default 0)\n"
           "      --decay-frac F       wsd: fraction of the steps spent decaying (default 0.2)\n"
           "Batches and length:\n"
           "      --batch-tokens N     tokens per optimizer step (whole sequences; default 8 sequences)\n"
           "      --micro-batch N      sequences per forward/backward (default: the whole batch)\n"
           "      --steps N            optimizer steps\n"
           "      --tokens N           or tokens (k, M, G suffixes)\n"
           "      --no-shuffle         visit the sequences in order (default: shuffled per epoch)\n"
           "Checkpoints and evaluation:\n"
           "      --save-every N       checkpoint every N steps (default: only at the end)\n"
           "      --keep N             keep the newest N checkpoints (default: all)\n"
           "      --eval-every N       diffusion bound (mdm) or NLL (ar) on the val split every N steps and at the end\n"
           "      --eval-seqs N        val sequences per evaluation (default 16)\n"
           "      --eval-samples N     noise levels per val sequence (default 4)\n"
           "Run:\n"
           "  -s, --seed S             data order, noise levels, masks, random init (default 1)\n"
           "  -t, --threads N          threads (default: all cores, shared by the ranks on a node)\n"
           "      --backend NAME       compute backend: cpu (default), cpu-bf16, cuda (bf16), cuda-fp32\n"
           "      --recompute          keep one layer's activations, recompute the rest in backward\n"
           "Data parallel (under mpirun or srun; see DISTRIBUTED in the manual):\n"
           "      --zero 0|1           1: shard the AdamW moments across the ranks (ZeRO-1; default 0)\n"
           "      --dist-timeout S     seconds a rank waits for the others before stopping the job (default 600)\n"
           "  -q, --quiet              no summary lines on stderr\n"
           "  -h, --help               this help\n"
           "  -V, --version            version and features\n"
           "SIGINT or SIGTERM: the current step ends, a checkpoint is saved, exit status 130 or 143.\n",
           scp_progname(), scp_progname());
    exit(0);
}

enum {
    O_INIT_RANDOM = 256, O_INIT_STD, O_OBJECTIVE, O_LOSS_NORM, O_ATTENTION, O_DOC_MASK, O_SHIFT, O_NO_SHIFT, O_T_SAMPLER,
    O_MASK_SCHED, O_T_EPS, O_LR, O_LR_ATTN, O_LR_MLP, O_LR_EMBED, O_LR_NORM, O_LR_ROUTER, O_BETA1, O_BETA2, O_EPS,
    O_WD, O_CLIP, O_WARMUP, O_SCHEDULE, O_MIN_LR, O_DECAY_FRAC, O_BATCH_TOKENS, O_MICRO, O_STEPS, O_TOKENS,
    O_NO_SHUFFLE, O_SAVE_EVERY, O_KEEP, O_EVAL_EVERY, O_EVAL_SEQS, O_EVAL_SAMPLES, O_BACKEND, O_ZERO, O_DIST_TIMEOUT,
    O_RECOMPUTE, O_AUX_LOSS, O_Z_LOSS
};

static const struct option longopts[] = {
    {"init", required_argument, 0, 'i'}, {"init-random", no_argument, 0, O_INIT_RANDOM},
    {"init-std", required_argument, 0, O_INIT_STD}, {"data", required_argument, 0, 'd'},
    {"output", required_argument, 0, 'o'}, {"resume", no_argument, 0, 'r'}, {"force", no_argument, 0, 'f'},
    {"objective", required_argument, 0, O_OBJECTIVE}, {"loss-norm", required_argument, 0, O_LOSS_NORM},
    {"attention", required_argument, 0, O_ATTENTION}, {"doc-mask", no_argument, 0, O_DOC_MASK},
    {"shift", no_argument, 0, O_SHIFT}, {"no-shift", no_argument, 0, O_NO_SHIFT},
    {"t-sampler", required_argument, 0, O_T_SAMPLER}, {"mask-schedule", required_argument, 0, O_MASK_SCHED},
    {"t-eps", required_argument, 0, O_T_EPS}, {"lr", required_argument, 0, O_LR},
    {"lr-attn", required_argument, 0, O_LR_ATTN}, {"lr-mlp", required_argument, 0, O_LR_MLP},
    {"lr-embed", required_argument, 0, O_LR_EMBED}, {"lr-norm", required_argument, 0, O_LR_NORM},
    {"lr-router", required_argument, 0, O_LR_ROUTER}, {"aux-loss", required_argument, 0, O_AUX_LOSS},
    {"z-loss", required_argument, 0, O_Z_LOSS}, {"beta1", required_argument, 0, O_BETA1},
    {"beta2", required_argument, 0, O_BETA2}, {"eps", required_argument, 0, O_EPS},
    {"weight-decay", required_argument, 0, O_WD}, {"clip", required_argument, 0, O_CLIP},
    {"warmup", required_argument, 0, O_WARMUP}, {"schedule", required_argument, 0, O_SCHEDULE},
    {"min-lr", required_argument, 0, O_MIN_LR}, {"decay-frac", required_argument, 0, O_DECAY_FRAC},
    {"batch-tokens", required_argument, 0, O_BATCH_TOKENS}, {"micro-batch", required_argument, 0, O_MICRO},
    {"steps", required_argument, 0, O_STEPS}, {"tokens", required_argument, 0, O_TOKENS},
    {"no-shuffle", no_argument, 0, O_NO_SHUFFLE}, {"save-every", required_argument, 0, O_SAVE_EVERY},
    {"keep", required_argument, 0, O_KEEP}, {"eval-every", required_argument, 0, O_EVAL_EVERY},
    {"eval-seqs", required_argument, 0, O_EVAL_SEQS}, {"eval-samples", required_argument, 0, O_EVAL_SAMPLES},
    {"seed", required_argument, 0, 's'}, {"threads", required_argument, 0, 't'},
    {"backend", required_argument, 0, O_BACKEND}, {"quiet", no_argument, 0, 'q'},
    {"recompute", no_argument, 0, O_RECOMPUTE}, {"zero", required_argument, 0, O_ZERO}, {"dist-timeout", required_argument, 0, O_DIST_TIMEOUT},
    {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};

typedef struct cli_flags {
    int resume, force, quiet;
    int zero;              /* ZeRO stage (0 or 1) */
    int recompute;         /* --recompute: activation recomputation */
    double dist_timeout;   /* seconds, 0: the default */
    char *out;
} cli_flags;

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = scp_xstrdup(v);
}

/* Apply argv to o (over its current values): once on defaults, or on the options saved by the run. */
static void parse_args(int argc, char **argv, scp_train_opts *o, cli_flags *fl)
{
    int c, v;
    optind = 0;   /* glibc: full re-initialisation, so argv can be parsed twice */
    while ((c = getopt_long(argc, argv, "i:d:o:rfs:t:qhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'i': set_str(&o->init, optarg); break;
        case O_INIT_RANDOM: o->init_random = 1; break;
        case O_INIT_STD: o->init_std = scp_opt_double("--init-std", optarg, 0, 10); break;
        case 'd': set_str(&o->data, optarg); break;
        case 'o': set_str(&fl->out, optarg); break;
        case 'r': fl->resume = 1; break;
        case 'f': fl->force = 1; break;
        case O_OBJECTIVE:
            if ((v = scp_objective_parse(optarg)) < 0) scp_usage_error("--objective: '%s' is not mdm or ar", optarg);
            o->objective = (scp_objective)v;
            break;
        case O_LOSS_NORM:
            if ((v = scp_loss_norm_parse(optarg)) < 0) scp_usage_error("--loss-norm: '%s' is not length or masked", optarg);
            o->loss_norm = (scp_loss_norm)v;
            break;
        case O_ATTENTION:
            if ((v = scp_attn_parse(optarg, &o->anneal_steps)) < 0)
                scp_usage_error("--attention: '%s' is not bidirectional, causal or anneal:STEPS", optarg);
            o->attn = (scp_attn_mode)v;
            o->attn_set = 1;
            break;
        case O_DOC_MASK: o->doc_mask = 1; break;
        case O_SHIFT: o->shift = 1; break;
        case O_NO_SHIFT: o->shift = 0; break;
        case O_T_SAMPLER:
            if ((v = scp_t_sampler_from_name(optarg)) < 0)
                scp_usage_error("--t-sampler: '%s' is not uniform, stratified or antithetic", optarg);
            o->t_sampler = (scp_t_sampler)v;
            break;
        case O_MASK_SCHED:
            if ((v = scp_mask_schedule_from_name(optarg)) < 0)
                scp_usage_error("--mask-schedule: '%s' is not linear, cosine or poly2", optarg);
            o->mask_schedule = (scp_mask_schedule)v;
            break;
        case O_T_EPS: o->t_eps = scp_opt_double("--t-eps", optarg, 1e-9, 0.5); break;
        case O_LR: o->lr = scp_opt_double("--lr", optarg, 0, 10); break;
        case O_LR_ATTN: o->lr_mult[SCP_GROUP_ATTN] = scp_opt_double("--lr-attn", optarg, 0, 1e6); break;
        case O_LR_MLP:
            o->lr_mult[SCP_GROUP_MLP] = o->lr_mult[SCP_GROUP_EXPERT] = scp_opt_double("--lr-mlp", optarg, 0, 1e6);
            break;
        case O_LR_EMBED: o->lr_mult[SCP_GROUP_EMBED] = scp_opt_double("--lr-embed", optarg, 0, 1e6); break;
        case O_LR_NORM: o->lr_mult[SCP_GROUP_NORM] = scp_opt_double("--lr-norm", optarg, 0, 1e6); break;
        case O_LR_ROUTER: o->lr_mult[SCP_GROUP_ROUTER] = scp_opt_double("--lr-router", optarg, 0, 1e6); break;
        case O_BETA1: o->beta1 = scp_opt_double("--beta1", optarg, 0, 0.999999999); break;
        case O_BETA2: o->beta2 = scp_opt_double("--beta2", optarg, 0, 0.999999999); break;
        case O_EPS: o->adam_eps = scp_opt_double("--eps", optarg, 0, 1); break;
        case O_WD: o->weight_decay = scp_opt_double("--weight-decay", optarg, 0, 10); break;
        case O_CLIP: o->clip = scp_opt_double("--clip", optarg, 0, 1e30); break;
        case O_AUX_LOSS: o->aux_loss = scp_opt_double("--aux-loss", optarg, 0, 1e6); break;
        case O_Z_LOSS: o->z_loss = scp_opt_double("--z-loss", optarg, 0, 1e6); break;
        case O_WARMUP: o->warmup = scp_opt_count("--warmup", optarg, 0, INT64_MAX / 2); break;
        case O_SCHEDULE:
            if ((v = scp_lr_kind_parse(optarg)) < 0) scp_usage_error("--schedule: '%s' is not constant, cosine or wsd", optarg);
            o->schedule = (scp_lr_kind)v;
            break;
        case O_MIN_LR: o->min_lr = scp_opt_double("--min-lr", optarg, 0, 10); break;
        case O_DECAY_FRAC: o->decay_frac = scp_opt_double("--decay-frac", optarg, 0, 1); break;
        case O_BATCH_TOKENS: o->batch_tokens = scp_opt_count("--batch-tokens", optarg, 1, INT64_MAX / 2); break;
        case O_MICRO: o->micro_batch = (int)scp_opt_int("--micro-batch", optarg, 1, 1 << 20); break;
        /* The last of --steps and --tokens wins (also over the one saved by a resumed run). */
        case O_STEPS: o->steps = scp_opt_count("--steps", optarg, 1, INT64_MAX / 2), o->tokens = 0; break;
        case O_TOKENS: o->tokens = scp_opt_count("--tokens", optarg, 1, INT64_MAX / 2), o->steps = 0; break;
        case O_NO_SHUFFLE: o->shuffle = 0; break;
        case O_SAVE_EVERY: o->save_every = scp_opt_count("--save-every", optarg, 0, INT64_MAX / 2); break;
        case O_KEEP: o->keep = (int)scp_opt_int("--keep", optarg, 0, 1 << 30); break;
        case O_EVAL_EVERY: o->eval_every = scp_opt_count("--eval-every", optarg, 0, INT64_MAX / 2); break;
        case O_EVAL_SEQS: o->eval_seqs = (int)scp_opt_int("--eval-seqs", optarg, 1, 1 << 30); break;
        case O_EVAL_SAMPLES: o->eval_samples = (int)scp_opt_int("--eval-samples", optarg, 1, 1 << 20); break;
        case 's': o->seed = (uint64_t)scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case 't': o->threads = (int)scp_opt_int("--threads", optarg, 0, 4096); break;
        case O_BACKEND: set_str(&o->backend, optarg); break;
        case 'q': fl->quiet = 1; break;
        case O_RECOMPUTE: fl->recompute = 1; break;
        case O_ZERO: fl->zero = (int)scp_opt_int("--zero", optarg, 0, 1); break;
        case O_DIST_TIMEOUT: fl->dist_timeout = scp_opt_double("--dist-timeout", optarg, 1, 1e7); break;
        case 'h': usage();
        case 'V': scp_cli_version();
        default: scp_usage_error("unknown option");
        }
    }
    if (optind < argc) scp_usage_error("unexpected argument '%s'", argv[optind]);
}

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
    if (stop_signal) {   /* a second signal: stop now (stale temporaries are removed by the next run) */
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_signal = sig;
}

/* The data must be tokenized with the checkpoint's tokenizer (hash over the vocabulary, mask token aside). */
static void check_tokenizer(const char *tok_dir, uint64_t data_hash, const char *data, int quiet)
{
    if (!tok_dir) {
        if (!quiet) scp_warn("the init has no tokenizer files: the data's tokenizer is not checked");
        return;
    }
    if (data_hash == 0) {
        if (!quiet) scp_warn("%s: the data records no tokenizer hash: not checked against %s", data, tok_dir);
        return;
    }
    scp_tokenizer *t = scp_tokenizer_load(tok_dir);
    if (!t) scp_die_last();
    uint64_t h = scp_tokenizer_hash(t);
    scp_tokenizer_free(t);
    if (h != data_hash)
        scp_die("%s: tokenized with another tokenizer (hash %016" PRIx64 ") than the checkpoint %s (hash %016" PRIx64
                "); tokenize the data with the checkpoint's tokenizer (scp-tokenize --model %s)",
                data, data_hash, tok_dir, h, tok_dir);
}

static json_t *lr_json(const scp_model *m, const double *glr)
{
    int present[SCP_GROUP_COUNT] = {0};
    for (int i = 0; i < m->n_params; i++) present[m->desc[i].group] = 1;
    json_t *j = json_object();
    for (int g = 0; g < SCP_GROUP_COUNT; g++)
        if (present[g]) json_object_set_new(j, scp_group_name((scp_group)g), json_real(glr[g]));
    return j;
}

/* An evaluation line on the val split: the diffusion bound (mdm) or the next-token NLL (ar). */
static void eval_line(scp_model *m, const scp_seq_source *vsrc, const scp_eval_opts *eo, scp_objective obj,
                      const scp_train_state *st, scp_metrics *mt, int quiet)
{
    scp_eval_result er;
    const char *key = obj == SCP_OBJ_MDM ? "elbo" : "nll";
    if ((obj == SCP_OBJ_MDM ? scp_eval_elbo(m, vsrc, eo, &er) : scp_eval_ppl(m, vsrc, eo, &er))) scp_die_last();
    json_t *j = json_object();
    json_object_set_new(j, "step", json_integer(st->step));
    json_object_set_new(j, "tokens", json_integer(st->tokens));
    json_object_set_new(j, "eval", json_string("val"));
    json_object_set_new(j, key, json_real(er.nll));
    json_object_set_new(j, "se", isfinite(er.se) ? json_real(er.se) : json_null());
    json_object_set_new(j, "seqs", json_integer(er.seqs));
    if (scp_metrics_write(mt, j)) scp_die_last();
    if (!quiet) scp_warn("step %" PRId64 ": val %s %.4f (se %.4f)", st->step, key, er.nll, er.se);
}

/* A checkpoint, written by rank 0. With ZeRO-1 (zlo not NULL) rank 0 first gathers the full moments, so a
 * checkpoint never depends on the rank count. Collective: every rank calls it at the same step. */
static void save_checkpoint(scp_dist *d, const char *rundir, scp_model *m, float *opt_m, float *opt_v,
                            const int64_t *zlo, scp_train_state *st, const scp_train_opts *o, const char *tok_dir)
{
    float *fm = opt_m, *fv = opt_v;
    st->world = d->world;
    scp_model_sync_host(m);   /* a device backend's weights and moments come down */
    /* Rank 0's state stands for every rank's: check that the ranks still agree bit for bit (MPI does not promise
     * identical all-reduce results on every rank), and if not, continue from rank 0's. */
    size_t wb = (size_t)m->n_weights * sizeof *m->weights;
    if (!scp_dist_same(d, m->weights, wb, "weight check") ||
        (!zlo && (!scp_dist_same(d, opt_m, wb, "moment check") || !scp_dist_same(d, opt_v, wb, "moment check")))) {
        if (d->rank == 0) scp_warn("step %" PRId64 ": the ranks' weights or moments differ in the last bits: continuing "
                                   "from rank 0's", st->step);
        scp_dist_bcast(d, m->weights, wb, 0, "weight broadcast");
        if (!zlo) {
            scp_dist_bcast(d, opt_m, wb, 0, "moment broadcast");
            scp_dist_bcast(d, opt_v, wb, 0, "moment broadcast");
        }
        scp_model_weights_changed(m);
    }
    if (zlo) {
        fm = fv = NULL;
        if (d->rank == 0) {
            fm = scp_xmalloc((size_t)m->n_weights * sizeof *fm);
            fv = scp_xmalloc((size_t)m->n_weights * sizeof *fv);
        }
        scp_dist_gather_f32(d, fm, opt_m, zlo, "ZeRO-1 optimizer gather");
        scp_dist_gather_f32(d, fv, opt_v, zlo, "ZeRO-1 optimizer gather");
    }
    if (d->rank == 0 && scp_train_save_checkpoint(rundir, m, fm, fv, st, o, tok_dir)) scp_die_last();
    if (zlo) {
        free(fm);
        free(fv);
    }
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    /* MPI first (it may take its own arguments out of argv); one rank without a launcher. */
    scp_dist dist;
    if (scp_dist_init(&dist, &argc, &argv)) scp_die_last();
    int r0 = dist.rank == 0;
    scp_train_opts o;
    cli_flags fl = {0};
    scp_train_opts_default(&o);
    parse_args(argc, argv, &o, &fl);
    if (fl.dist_timeout > 0) dist.timeout = fl.dist_timeout;
    if (!r0) fl.quiet = 1;   /* rank 0 speaks for the run; any rank still reports its own errors */
    if (!fl.out) scp_usage_error("-o RUNDIR is required");
    const char *rundir = fl.out;
    scp_train_state st;
    memset(&st, 0, sizeof st);
    char *resume_dir = NULL;

    if (fl.resume) {
        /* The saved options, then whatever this command line sets again. */
        if (!scp_is_dir(rundir)) scp_die("%s: no such run directory to resume", rundir);
        if (r0) scp_run_clean_stale(rundir);
        resume_dir = scp_run_latest(rundir);
        if (!resume_dir) scp_die_last();
        char *sp = scp_path_join(resume_dir, "trainer_state.json");
        scp_train_opts_free(&o);
        scp_train_opts_default(&o);
        if (scp_train_state_load(sp, &st, &o)) scp_die_last();
        free(sp);
        cli_flags fl2 = {0};
        parse_args(argc, argv, &o, &fl2);
        free(fl2.out);
    } else {
        if (!o.init) scp_usage_error("--init CKPT is required (or --resume)");
        if (!o.data) scp_usage_error("--data SHARDS is required");
        if (r0 && scp_file_exists(rundir)) {
            if (!fl.force) {
                char *l = scp_path_join(rundir, "latest");
                int has = scp_file_exists(l);
                free(l);
                if (has) scp_die("%s: a run is already there (--resume to continue it, --force to start over)", rundir);
            }
        }
    }
    if (!o.data) scp_usage_error("--data SHARDS is required");
    if (!o.steps && !o.tokens) scp_usage_error("--steps or --tokens is required");
    if (!o.attn_set) o.attn = o.objective == SCP_OBJ_AR ? SCP_ATTN_CAUSAL : SCP_ATTN_BIDIRECTIONAL;
    if (o.objective == SCP_OBJ_AR && o.attn != SCP_ATTN_CAUSAL)
        scp_usage_error("--objective ar needs causal attention (a token would see the one it predicts)");
    if (o.threads == 0 && dist.local_size > 1) {
        /* Ranks sharing a node share its cores: all cores for each would oversubscribe them. */
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        scp_set_threads(nc / dist.local_size > 1 ? (int)(nc / dist.local_size) : 1);
    } else {
        scp_set_threads(o.threads);
    }

    /* GPU ranks all-reduce on the device with NCCL, which also picks each rank's GPU (local rank modulo the
     * devices): before the model takes device memory. SCP_NCCL_ONE_RANK=1 takes that path with one rank too
     * (tests/gpu: the layer-by-layer all-reduce of a single GPU, an identity). */
    if ((dist.world > 1 || getenv("SCP_NCCL_ONE_RANK")) && strncmp(o.backend, "cuda", 4) == 0 && scp_dist_nccl_init(&dist))
        scp_die_last();

    /* ---- the model ---- */
    scp_model *m = NULL;
    char *tok_dir = NULL;
    if (resume_dir) {
        m = scp_model_load(resume_dir, o.backend);
        tok_dir = scp_xstrdup(resume_dir);
    } else if (strncmp(o.init, "random:", 7) == 0) {
        scp_model_config cfg;
        if (scp_config_load(&cfg, o.init + 7)) scp_die_last();
        m = scp_model_new(&cfg, o.backend);
        scp_config_free(&cfg);
        if (m) scp_model_init_random(m, o.seed, (float)o.init_std);
        char *cp = scp_xstrdup(o.init + 7);
        tok_dir = scp_xstrdup(dirname(cp));
        free(cp);
    } else if (o.init_random) {
        char *cp = scp_path_join(o.init, "config.json");
        scp_model_config cfg;
        if (scp_config_load(&cfg, cp)) scp_die_last();
        free(cp);
        m = scp_model_new(&cfg, o.backend);
        scp_config_free(&cfg);
        if (m) scp_model_init_random(m, o.seed, (float)o.init_std);
        tok_dir = scp_xstrdup(o.init);
    } else {
        m = scp_model_load(o.init, o.backend);
        tok_dir = scp_xstrdup(o.init);
    }
    if (!m) scp_die_last();
    scp_model_set_recompute(m, fl.recompute);
    if ((o.aux_loss > 0 || o.z_loss > 0) && m->cfg.num_experts == 0 && !fl.quiet)
        scp_warn("--aux-loss and --z-loss apply to mixture-of-experts models only: this %s model has no router",
                 scp_arch_name(m->cfg.arch));
    /* Every rank starts from rank 0's weights (a random init is the same everywhere; this makes sure). */
    scp_dist_bcast(&dist, m->weights, (size_t)m->n_weights * sizeof *m->weights, 0, "weight broadcast");
    scp_model_weights_changed(m);
    if (!scp_tokenizer_in_dir(tok_dir)) {
        free(tok_dir);
        tok_dir = NULL;
    }
    scp_model_config *cfg = &m->cfg;
    int shift = o.shift >= 0 ? o.shift : cfg->shift_logits;
    if (o.objective == SCP_OBJ_MDM) {
        if (cfg->mask_token_id < 0)
            scp_die("%s: config.json has no mask_token_id: import the checkpoint with scp-import, which adds one",
                    resume_dir ? resume_dir : o.init);
        cfg->causal = o.attn == SCP_ATTN_CAUSAL;
        cfg->shift_logits = shift;
    } else {
        cfg->causal = 1;
    }

    /* ---- the data ---- */
    scp_shardset *train = scp_shardset_open(o.data, "train");
    if (!train) scp_die_last();
    uint64_t data_hash = scp_shardset_tokenizer_hash(train);
    if (resume_dir && st.data_hash != data_hash)
        scp_die("%s: tokenizer hash %016" PRIx64 " differs from the one the run started with (%016" PRIx64 ")", o.data,
                data_hash, st.data_hash);
    if (!resume_dir) check_tokenizer(tok_dir, data_hash, o.data, fl.quiet);
    if (scp_shardset_vocab_size(train) > cfg->vocab_size)
        scp_die("%s: vocabulary of %d ids does not fit the model's %d embedding rows", o.data,
                scp_shardset_vocab_size(train), cfg->vocab_size);
    scp_seq_source src;
    scp_source_shards(&src, train);
    if (src.n <= 0) scp_die("%s: the train split has no sequences", o.data);
    int T = src.T;
    int64_t batch_tokens = o.batch_tokens ? o.batch_tokens : 8LL * T;
    if (batch_tokens / T > (1 << 24)) scp_usage_error("--batch-tokens %" PRId64 ": more than 2^24 sequences per step", batch_tokens);
    int B = (int)(batch_tokens / T);
    if (B < 1) B = 1;
    if (!fl.quiet && (int64_t)B * T != batch_tokens)
        scp_warn("--batch-tokens %" PRId64 " is not a whole number of %d-token sequences: using %d sequences (%" PRId64 " tokens)",
                 batch_tokens, T, B, (int64_t)B * T);
    if (B < dist.world)
        scp_usage_error("--batch-tokens: %d sequences per step cannot be shared by %d ranks", B, dist.world);
    int micro = o.micro_batch > 0 && o.micro_batch < B ? o.micro_batch : B;
    int64_t total = o.steps;
    if (!total && o.tokens) total = (o.tokens + (int64_t)B * T - 1) / ((int64_t)B * T);

    scp_shardset *val = NULL;
    scp_seq_source vsrc = {0};
    if (o.eval_every && r0) {   /* rank 0 evaluates, the others wait at the next step */
        int has_val = scp_shardset_has_split(o.data, "val");
        if (has_val < 0) scp_die_last();
        if (!has_val) {
            if (!fl.quiet) scp_warn("%s: no val split: --eval-every ignored", o.data);
        } else {
            if (!(val = scp_shardset_open(o.data, "val"))) scp_die_last();   /* a listed val shard missing or damaged */
            scp_source_shards(&vsrc, val);
        }
    }

    /* ---- optimizer state ---- */
    /* ZeRO-1: this rank keeps the moments of its shard zlo[rank] .. zlo[rank + 1] only. */
    scp_model_alloc_grads(m);
    int64_t *zlo = NULL, n_opt = m->n_weights;
    if (fl.zero && dist.world > 1) {
        zlo = scp_xmalloc(sizeof *zlo * (size_t)(dist.world + 1));
        scp_dist_shards(m->n_weights, dist.world, 16, zlo);
        n_opt = zlo[dist.rank + 1] - zlo[dist.rank];
    } else if (fl.zero && !fl.quiet) {
        scp_warn("--zero 1 with one rank: nothing to shard");
    }
    float *opt_m = scp_xcalloc((size_t)(n_opt ? n_opt : 1), sizeof *opt_m);
    float *opt_v = scp_xcalloc((size_t)(n_opt ? n_opt : 1), sizeof *opt_v);
    if (resume_dir) {
        /* Checkpoints hold the full moments (gathered on rank 0 under ZeRO-1): any rank count can resume. */
        char *op = scp_path_join(resume_dir, "optimizer.safetensors");
        float *fm = opt_m, *fv = opt_v;
        if (zlo) {
            fm = scp_xcalloc((size_t)m->n_weights, sizeof *fm);
            fv = scp_xcalloc((size_t)m->n_weights, sizeof *fv);
        }
        if (scp_optimizer_load(op, m, fm, fv)) scp_die_last();
        if (zlo) {
            memcpy(opt_m, fm + zlo[dist.rank], (size_t)n_opt * sizeof *opt_m);
            memcpy(opt_v, fv + zlo[dist.rank], (size_t)n_opt * sizeof *opt_v);
            free(fm);
            free(fv);
        }
        free(op);
        if (r0 && scp_metrics_truncate(rundir, st.step)) scp_die_last();
        if (!st.world) st.world = 1;   /* saved before data parallelism */
        if (!fl.quiet && st.world != dist.world)
            scp_warn("%s was saved by %" PRId64 " rank%s, resuming with %d: weights, optimizer state and data "
                     "position carry over (the global batch is the same), but sums over ranks round differently, "
                     "so the run is not bit-identical to one that kept %" PRId64,
                     resume_dir, st.world, st.world == 1 ? "" : "s", dist.world, st.world);
    } else {
        scp_rng_init(&st.rng, o.seed, 0x747261696e6572ull);   /* "trainer" */
        st.data_hash = data_hash;
    }
    st.total_steps = total;
    if (!resume_dir && r0) {
        /* Created only now that the model and the data are known good: a refused run leaves nothing behind. */
        if (fl.force && scp_file_exists(rundir) && scp_rm_rf(rundir)) scp_die_last();
        if (scp_mkdir_p(rundir)) scp_die_last();
        scp_run_clean_stale(rundir);
    }
    scp_metrics mt;
    if (r0 && scp_metrics_open(&mt, rundir)) scp_die_last();
    free(o.out);
    o.out = scp_xstrdup(rundir);

    if (!fl.quiet)
        scp_warn("%s %s, %d params (%" PRId64 " weights), %" PRId64 " sequences of %d; %d per step (micro %d), "
                 "steps %" PRId64 " to %" PRId64 "%s",
                 scp_objective_name(o.objective), resume_dir ? "resumed" : "from init", m->n_params, m->n_weights, src.n,
                 T, B, micro, st.step, total, resume_dir ? "" : "");
    if (!fl.quiet && dist.world > 1)
        scp_warn("data parallel: %d ranks (%s%s), %d-%d sequences per rank per step, ZeRO-%d, timeout %.0f s",
                 dist.world, scp_dist_library(), dist.nccl ? ", gradients by NCCL" : "", B / dist.world, (B + dist.world - 1) / dist.world, zlo ? 1 : 0,
                 dist.timeout);

    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);

    scp_trainer tr;
    scp_trainer_init(&tr, m, &o, &st, &src, B, micro, opt_m, opt_v, cfg->mask_token_id, shift);
    scp_trainer_set_dist(&tr, &dist, zlo);
    scp_dist_watchdog_start(&dist);
    scp_eval_opts eo;
    scp_eval_opts_default(&eo);
    eo.max_seqs = o.eval_seqs;
    eo.batch = micro;
    eo.doc_mask = o.doc_mask;
    eo.samples = o.eval_samples;
    eo.seed = o.seed;
    eo.eps = o.t_eps;
    eo.sched = o.mask_schedule;
    eo.mask_id = cfg->mask_token_id;
    eo.shift = shift;
    eo.attn = o.attn == SCP_ATTN_CAUSAL ? SCP_ATTN_CAUSAL : SCP_ATTN_BIDIRECTIONAL;


    if (val && st.step == 0) eval_line(m, &vsrc, &eo, o.objective, &st, &mt, fl.quiet);

    scp_progress prog;
    scp_progress_init(&prog, total);
    int64_t saved_at = resume_dir ? st.step : -1;
    double t_start = scp_now();
    int64_t tok_start = st.tokens;
    int stop = 0;   /* the signal that stops the run, seen by any rank (all ranks stop at the same step) */
    scp_dist_take_comm_time(&dist, NULL);
    while (st.step < total && !stop) {
        double t0 = scp_now();
        scp_step_info si;
        if (scp_trainer_step(&tr, &si)) scp_die_last();
        double dt = scp_now() - t0, wait = 0, comm = scp_dist_take_comm_time(&dist, &wait);
        stop = scp_dist_any(&dist, stop_signal, "stop flag");
        if (!r0) goto next;
        json_t *j = json_object();
        json_object_set_new(j, "step", json_integer(st.step));
        json_object_set_new(j, "tokens", json_integer(st.tokens));
        json_object_set_new(j, "loss", isfinite(si.loss) ? json_real(si.loss) : json_null());
        json_object_set_new(j, "lr", lr_json(m, tr.glr));
        json_object_set_new(j, "grad_norm", isfinite(si.grad_norm) ? json_real(si.grad_norm) : json_null());
        if (o.objective == SCP_OBJ_MDM) json_object_set_new(j, "masked_fraction", json_real(si.masked_fraction));
        json_object_set_new(j, "tokens_per_s", json_real(dt > 0 ? (double)B * T / dt : 0.0));
        json_object_set_new(j, "skipped", json_integer(st.skipped));
        scp_metrics_moe(j, si.n_experts, si.expert_load, si.aux_loss, si.z_loss);
        if (dist.world > 1) {   /* seconds all-reducing, and waiting at the step barrier for the slowest rank */
            json_object_set_new(j, "comm_s", json_real(comm));
            json_object_set_new(j, "wait_s", json_real(wait));
        }
        if (scp_metrics_write(&mt, j)) scp_die_last();
        double el = scp_now() - t_start;
        scp_progress_update(&prog, st.step, "step %" PRId64 "/%" PRId64 " loss %.4f %.0f tok/s", st.step, total, si.loss,
                            el > 0 ? (double)(st.tokens - tok_start) / el : 0.0);
        /* every N steps, and at the last step, so a run always ends with its held-out figure */
        if (val && (st.step % o.eval_every == 0 || st.step == total)) eval_line(m, &vsrc, &eo, o.objective, &st, &mt, fl.quiet);
    next:
        if (o.save_every && st.step % o.save_every == 0 && st.step < total) {
            save_checkpoint(&dist, rundir, m, opt_m, opt_v, zlo, &st, &o, tok_dir);
            saved_at = st.step;
        }
    }
    if (r0) scp_progress_end(&prog);
    if (saved_at != st.step) save_checkpoint(&dist, rundir, m, opt_m, opt_v, zlo, &st, &o, tok_dir);
    if (r0) scp_metrics_close(&mt);
    if (!fl.quiet) {
        double el = scp_now() - t_start;
        scp_warn("%s at step %" PRId64 " (%" PRId64 " skipped), %.0f tokens/s; checkpoint %s/latest",
                 stop ? "interrupted" : "done", st.step, st.skipped,
                 el > 0 ? (double)(st.tokens - tok_start) / el : 0.0, rundir);
    }
    int status = stop ? 128 + stop : 0;
    scp_trainer_free(&tr);
    free(opt_m);
    free(opt_v);
    free(zlo);
    free(tok_dir);
    free(resume_dir);
    free(fl.out);
    if (val) scp_shardset_close(val);
    scp_shardset_close(train);
    scp_model_free(m);
    scp_train_opts_free(&o);
    scp_dist_finish(&dist);
    return status;
}
