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
#include "core/error.h"
#include "core/io.h"
#include "core/options.h"
#include "dist/dist.h"
#include "model/model.h"
#include "train/opts.h"
#include "train/opts_set.h"
#include "train/run.h"
#include "train/schedule.h"
#include "train/watch.h"
#include "scp-train.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn static void usage(void)
{
    printf("Usage: %s --init CKPT --data SHARDS -o RUNDIR [OPTIONS]\n"
           "       %s --resume -o RUNDIR [OPTIONS]\n"
           "       %s --plan --init CKPT --seq-len N [--world N] [--gpu-memory BYTES] [OPTIONS]\n"
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
           "      --batch-schedule SPEC  a batch that changes (the run's length is then --tokens):\n"
           "                           linear:START:END:TOKENS  from START to END tokens over the first TOKENS\n"
           "                           adaptive:K[:MIN:MAX]     K x the noise scale within [MIN, MAX] (default\n"
           "                           --batch-tokens and 64 x it), growing only; rounded down to whole\n"
           "                           multiples of ranks x --micro-batch sequences\n"
           "      --lr-scaling sqrt|linear|none  rates under a batch schedule: lr x sqrt(B / B0) (default),\n"
           "                           lr x B / B0, or lr (B0: --batch-tokens); warmup then counts tokens\n"
           "      --steps N            optimizer steps\n"
           "      --tokens N           or tokens (k, M, G suffixes)\n"
           "      --no-shuffle         visit the sequences in order (default: shuffled per epoch)\n"
           "Checkpoints and evaluation:\n"
           "      --save-every N|Ns    checkpoint every N steps, or every N seconds (e.g. 600s), and at the end\n"
           "                           (default 1800s; 0: only at the end)\n"
           "      --keep N             keep the newest N checkpoints (default: all)\n"
           "      --keep-best          keep the checkpoint of the lowest val loss as RUNDIR/best (never pruned)\n"
           "      --eval-every N       diffusion bound (mdm) or NLL (ar) on the val split every N steps and at the end\n"
           "      --eval-seqs N        val sequences per evaluation (default 16)\n"
           "      --eval-samples N     noise levels per val sequence (default 4)\n"
           "      --no-grad-stats      no noise scale, per-group gradient norms or update ratios in metrics.jsonl\n"
           "Run:\n"
           "  -s, --seed S             data order, noise levels, masks, random init (default 1)\n"
           "  -j, --threads N          threads (default: all cores, shared by the ranks on a node)\n"
           "      --backend NAME       compute backend: cpu (default), cpu-bf16, cuda (bf16), cuda-fp32\n"
           "      --recompute          keep one layer's activations, recompute the rest in backward\n"
           "      --profile            time each compute operation (the device waited for around each) and\n"
           "                           report the time per step on stderr and in RUNDIR/profile.json\n"
           "Data parallel (under mpirun or srun; see DISTRIBUTED in the manual):\n"
           "      --zero 0|1|2|3       shard across the ranks: 1 the AdamW moments, 2 also the gradients, 3 also\n"
           "                           the weights (ZeRO-1/2/3; default 0)\n"
           "      --keep-gathered      ZeRO-3: keep each layer's gathered weights from its forward to its backward\n"
           "      --no-prefetch        ZeRO-3: gather each layer's weights when it is reached, not while the layer\n"
           "                           before it runs (default: prefetched, one more layer's buffer)\n"
           "      --reduce-dtype f32|bf16  ZeRO-2/3: sum the gradients across the ranks in this type (default f32)\n"
           "      --expert-parallel P  split each MoE layer's experts over groups of P ranks; tokens travel to their\n"
           "                           experts by all-to-all (default 1: every rank holds every expert)\n"
           "      --dist-timeout S     seconds a rank waits for the others before stopping the job (default 600)\n"
           "Memory plan (see PLANNING in the manual):\n"
           "      --plan               print the bytes per rank the run would take, as JSON, and exit\n"
           "                           (reads config.json only; no --data or -o needed)\n"
           "  -L, --seq-len N          tokens per sequence of the plan (default: those of --data)\n"
           "      --world N            ranks of the plan (default: the launcher's, else 1)\n"
           "      --gpu-memory BYTES   memory per GPU (k, M, G suffixes): the plan says whether it fits\n"
           "Messages:\n"
           "      --log-every N|Ns     a plain line on stderr every N steps or N seconds: step, loss, tokens/s,\n"
           "                           ETA, epoch, peak memory (default: 30s when stderr is not a terminal; 0: none)\n"
           "  -q, --quiet              no summary lines on stderr (nor the default log line)\n"
           "  -h, --help               this help\n"
           "  -V, --version            version and features\n"
           "SIGINT or SIGTERM: the current step ends, a checkpoint is saved, exit status 130 or 143.\n",
           scp_progname(), scp_progname(), scp_progname());
    scp_cli_exit_stdout();
}

static const scp_opt_id opt_ids[] = {
    SCP_OPT_INIT, SCP_OPT_INIT_RANDOM, SCP_OPT_INIT_STD, SCP_OPT_DATA, SCP_OPT_OUTPUT, SCP_OPT_RESUME, SCP_OPT_FORCE,
    SCP_OPT_OBJECTIVE, SCP_OPT_LOSS_NORM, SCP_OPT_ATTENTION, SCP_OPT_DOC_MASK, SCP_OPT_SHIFT, SCP_OPT_NO_SHIFT,
    SCP_OPT_T_SAMPLER, SCP_OPT_MASK_SCHEDULE, SCP_OPT_T_EPS, SCP_OPT_LR, SCP_OPT_LR_ATTN, SCP_OPT_LR_MLP,
    SCP_OPT_LR_EMBED, SCP_OPT_LR_NORM, SCP_OPT_LR_ROUTER, SCP_OPT_AUX_LOSS, SCP_OPT_Z_LOSS, SCP_OPT_BETA1,
    SCP_OPT_BETA2, SCP_OPT_EPS, SCP_OPT_WEIGHT_DECAY, SCP_OPT_CLIP, SCP_OPT_WARMUP, SCP_OPT_SCHEDULE, SCP_OPT_MIN_LR,
    SCP_OPT_DECAY_FRAC, SCP_OPT_BATCH_TOKENS, SCP_OPT_MICRO_BATCH, SCP_OPT_BATCH_SCHEDULE, SCP_OPT_LR_SCALING, SCP_OPT_STEPS, SCP_OPT_TOKENS, SCP_OPT_NO_SHUFFLE,
    SCP_OPT_SAVE_EVERY, SCP_OPT_KEEP, SCP_OPT_KEEP_BEST, SCP_OPT_EVAL_EVERY, SCP_OPT_EVAL_SEQS, SCP_OPT_EVAL_SAMPLES,
    SCP_OPT_NO_GRAD_STATS, SCP_OPT_SEED, SCP_OPT_THREADS, SCP_OPT_BACKEND, SCP_OPT_RECOMPUTE, SCP_OPT_PROFILE, SCP_OPT_ZERO,
    SCP_OPT_KEEP_GATHERED, SCP_OPT_NO_PREFETCH, SCP_OPT_REDUCE_DTYPE, SCP_OPT_EXPERT_PARALLEL, SCP_OPT_DIST_TIMEOUT, SCP_OPT_PLAN,
    SCP_OPT_SEQ_LEN, SCP_OPT_WORLD, SCP_OPT_GPU_MEMORY, SCP_OPT_LOG_EVERY, SCP_OPT_QUIET, SCP_OPT_HELP,
    SCP_OPT_VERSION, SCP_OPT_END};
static const scp_cli_alias old_spellings[] = {{NULL, 't', SCP_OPT_THREADS}, {NULL, 0, 0}};

/* The command line: the program's own flags, and the training options in their order, applied to the defaults
 * of a new run or over the options a resumed run saved. */
typedef struct cli_args {
    const char *out;
    int resume, force, quiet, zero, keep_gathered, no_prefetch, reduce_bf16, recompute, profile;
    int expert_parallel;   /* ranks per expert group, 0: the option was not given */
    double dist_timeout;   /* seconds, 0: the default */
    int log_given;         /* --log-every: */
    int64_t log_every;     /* its steps */
    double log_every_s;    /* or its seconds */
    int plan;              /* --plan: the memory plan instead of the run (bin/scp-train-plan.c) */
    scp_train_plan_args pa;   /* its --world, --seq-len, --gpu-memory */
    int n;
    scp_opt_id *ids;       /* (n) training options */
    const char **vals;     /* (n) their values */
} cli_args;

static void parse_args(int argc, char **argv, cli_args *a)
{
    memset(a, 0, sizeof *a);
    a->ids = scp_xmalloc(sizeof *a->ids * (size_t)argc);
    a->vals = scp_xmalloc(sizeof *a->vals * (size_t)argc);
    scp_cli c;
    scp_cli_begin(&c, opt_ids, old_spellings);
    static const scp_cli_instead instead[] = {{SCP_OPT_MODEL, "the checkpoint a run starts from is -i/--init"}, {0}};
    c.instead = instead;
    for (int id; (id = scp_cli_next(&c, argc, argv)) >= 0;) {
        switch (id) {
        case SCP_OPT_OUTPUT: a->out = optarg; break;
        case SCP_OPT_RESUME: a->resume = 1; break;
        case SCP_OPT_FORCE: a->force = 1; break;
        case SCP_OPT_QUIET: a->quiet = 1; break;
        case SCP_OPT_RECOMPUTE: a->recompute = 1; break;
        case SCP_OPT_PROFILE: a->profile = 1; break;
        case SCP_OPT_ZERO: a->zero = (int)scp_opt_int("--zero", optarg, 0, 3); break;
        case SCP_OPT_KEEP_GATHERED: a->keep_gathered = 1; break;
        case SCP_OPT_NO_PREFETCH: a->no_prefetch = 1; break;
        case SCP_OPT_EXPERT_PARALLEL:
            a->expert_parallel = (int)scp_opt_int("--expert-parallel", optarg, 1, 1 << 20);
            break;
        case SCP_OPT_REDUCE_DTYPE:
            if (strcmp(optarg, "f32") && strcmp(optarg, "bf16"))
                scp_usage_error("--reduce-dtype: 'f32' or 'bf16', not '%s'", optarg);
            a->reduce_bf16 = strcmp(optarg, "bf16") == 0;
            break;
        case SCP_OPT_DIST_TIMEOUT: a->dist_timeout = scp_opt_double("--dist-timeout", optarg, 1, 1e7); break;
        case SCP_OPT_PLAN: a->plan = 1; break;
        case SCP_OPT_LOG_EVERY:
            scp_opt_interval("--log-every", optarg, INT64_MAX / 2, 1e9, &a->log_every, &a->log_every_s);
            a->log_given = 1;
            break;
        case SCP_OPT_SEQ_LEN: a->pa.seq_len = (int)scp_opt_int("--seq-len", optarg, 1, 1 << 30); break;
        case SCP_OPT_WORLD: a->pa.world = (int)scp_opt_int("--world", optarg, 1, 1 << 20); break;
        case SCP_OPT_GPU_MEMORY: a->pa.gpu_memory = scp_opt_count("--gpu-memory", optarg, 1, (int64_t)1 << 50); break;
        case SCP_OPT_HELP: usage();
        case SCP_OPT_VERSION: scp_cli_version();
        default:
            a->ids[a->n] = (scp_opt_id)id;
            a->vals[a->n++] = optarg;
        }
    }
    scp_cli_end(&c);
    if (optind < argc) scp_usage_error("unexpected argument '%s'", argv[optind]);
    a->pa.zero = a->zero, a->pa.recompute = a->recompute, a->pa.quiet = a->quiet;
    a->pa.keep_gathered = a->keep_gathered, a->pa.no_prefetch = a->no_prefetch, a->pa.reduce_bf16 = a->reduce_bf16;
    a->pa.expert_parallel = a->expert_parallel;
    if (a->plan && a->profile) scp_usage_error("--profile times a run's steps; --plan runs none");
    if (a->plan) return;
    if (a->pa.seq_len) scp_usage_error("--seq-len is for --plan: a run takes its sequence length from --data");
    if (a->pa.world) scp_usage_error("--world is for --plan: a run has the ranks its launcher starts");
    if (a->pa.gpu_memory) scp_usage_error("--gpu-memory is for --plan");
}

/* --plan sizes a run without joining one, so it is looked for before MPI would start under a launcher (an
 * abbreviation such as --pla is found by the parser after MPI started, and plans the same). */
static int asks_plan(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--plan") == 0) return 1;
    return 0;
}

static void apply_args(const cli_args *a, scp_train_opts *o)
{
    for (int i = 0; i < a->n; i++)
        if (scp_train_opts_set(o, a->ids[i], a->vals[i])) abort();   /* an id of opt_ids that nothing handles */
}

/* The last index of a->ids holding id, or -1. */
static int last_arg(const cli_args *a, scp_opt_id id)
{
    int at = -1;
    for (int i = 0; i < a->n; i++)
        if (a->ids[i] == id) at = i;
    return at;
}

/* --steps and --tokens both given: the last one sets the run's length (so that a resumed run's command line can
 * replace either one it saved), which a user who gave both cannot guess. */
static void warn_length(const cli_args *a, int64_t total)
{
    int s = last_arg(a, SCP_OPT_STEPS), t = last_arg(a, SCP_OPT_TOKENS);
    if (a->quiet || s < 0 || t < 0) return;
    int used = s > t ? s : t;
    scp_warn("--steps %s and --tokens %s both set the run's length: the last one given, --%s %s, is used (%" PRId64
             " steps)", a->vals[s], a->vals[t], s > t ? "steps" : "tokens", a->vals[used], total);
}

/* The options that shape the learning rate of a step (train/schedule.h). */
static const scp_opt_id schedule_ids[] = {
    SCP_OPT_STEPS, SCP_OPT_TOKENS, SCP_OPT_BATCH_TOKENS, SCP_OPT_SCHEDULE, SCP_OPT_WARMUP, SCP_OPT_LR,
    SCP_OPT_LR_ATTN, SCP_OPT_LR_MLP, SCP_OPT_LR_EMBED, SCP_OPT_LR_NORM, SCP_OPT_LR_ROUTER, SCP_OPT_MIN_LR,
    SCP_OPT_DECAY_FRAC};

static int shapes_schedule(scp_opt_id id)
{
    for (size_t i = 0; i < sizeof schedule_ids / sizeof *schedule_ids; i++)
        if (schedule_ids[i] == id) return 1;
    return 0;
}

/* A resumed run whose command line changes its schedule jumps to another rate at the step it resumes at, which
 * the loss shows only steps later: say so, with the options that changed it. `saved` holds the saved options
 * (their numbers only: its strings may have been freed by the command line), `saved_total` the saved length. */
static void warn_schedule_change(const cli_args *a, const scp_train_opts *saved, int64_t saved_total,
                                 const scp_train_opts *o, int64_t total, int64_t step)
{
    if (a->quiet) return;
    double before[SCP_GROUP_COUNT], after[SCP_GROUP_COUNT];
    scp_group_lr(saved, step, saved_total, before);
    scp_group_lr(o, step, total, after);
    double b = scp_lr_at(saved, step, saved_total), f = scp_lr_at(o, step, total);
    char what[32] = "lr";
    if (b == f) {
        /* the base rate is the same: a group's multiplier changed */
        int g = 0;
        while (g < SCP_GROUP_COUNT && before[g] == after[g]) g++;
        if (g == SCP_GROUP_COUNT) return;
        snprintf(what, sizeof what, "%s lr", scp_group_name((scp_group)g));
        b = before[g], f = after[g];
    }
    char opts[512] = "";
    size_t len = 0;
    for (int i = 0; i < a->n; i++) {
        if (!shapes_schedule(a->ids[i]) || last_arg(a, a->ids[i]) != i) continue;
        /* only the options that set a value other than the saved one */
        scp_train_opts one = *saved;
        if (scp_train_opts_set(&one, a->ids[i], a->vals[i]) || !memcmp(&one, saved, sizeof one)) continue;
        int w = snprintf(opts + len, sizeof opts - len, "%s%s%s%s", len ? ", " : "", scp_opt_name(a->ids[i]),
                         a->vals[i] ? " " : "", a->vals[i] ? a->vals[i] : "");
        if (w < 0 || (size_t)w >= sizeof opts - len) break;
        len += (size_t)w;
    }
    scp_warn("--resume: the schedule changes at step %" PRId64 ": %s %.3g -> %.3g (%s)", step, what, b, f, opts);
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

/* The run directory must not destroy or swallow an input: it may be replaced (--force) and is written into. */
static void check_output(const scp_train_opts *o, const char *rundir)
{
    const char *inputs[] = {strncmp(o->init, "random:", 7) == 0 ? o->init + 7 : o->init, o->data};
    if (scp_output_check(rundir, 1, inputs, 2)) scp_usage_error("-o: %s", scp_last_error());
    /* Every run has its metrics.jsonl from its start: a folder without one is not a run, and is left alone. */
    if (scp_output_replaceable(rundir, 1, "metrics.jsonl", "run directory")) scp_usage_error("-o: %s", scp_last_error());
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    /* MPI first (it may take its own arguments out of argv); one rank without a launcher. */
    scp_dist dist;
    if (asks_plan(argc, argv)) scp_dist_single(&dist);
    else if (scp_dist_init(&dist, &argc, &argv)) scp_die_last();
    int r0 = dist.rank == 0;
    cli_args a;
    parse_args(argc, argv, &a);
    scp_train_opts o;
    scp_train_opts_default(&o);
    apply_args(&a, &o);
    if (a.plan) {
        if (a.resume) scp_usage_error("--plan sizes a new run from --init, not a --resume");
        int rc = scp_train_print_plan(&o, &a.pa);
        scp_dist_finish(&dist);
        if (rc) scp_die_last();
        scp_cli_exit_stdout();
    }
    if (a.dist_timeout > 0) dist.timeout = a.dist_timeout;
    if (!r0) a.quiet = 1;   /* rank 0 speaks for the run; any rank still reports its own errors */
    if (!a.out) scp_usage_error("-o RUNDIR is required");
    if (a.resume && a.force) scp_usage_error("--resume continues the run in RUNDIR, --force removes it: give one");
    scp_train_run run;
    scp_train_run_init(&run, &o, &dist, a.out);
    run.force = a.force, run.quiet = a.quiet, run.zero = a.zero, run.recompute = a.recompute, run.profile = a.profile;
    run.keep_gathered = a.keep_gathered, run.prefetch = !a.no_prefetch, run.reduce_bf16 = a.reduce_bf16;
    /* Without a terminal (a batch job's log) the progress line is not drawn: a plain line stands in for it. */
    run.log_every = a.log_every, run.log_every_s = a.log_every_s;
    if (!a.log_given && !a.quiet && !isatty(STDERR_FILENO)) run.log_every_s = SCP_TRAIN_LOG_SECONDS;
    if (a.reduce_bf16 && a.zero < 2) scp_usage_error("--reduce-dtype bf16 applies to --zero 2 and 3");
    if (a.keep_gathered && a.zero != 3) scp_usage_error("--keep-gathered applies to --zero 3");
    if (a.no_prefetch && a.zero != 3) scp_usage_error("--no-prefetch applies to --zero 3");
    if (a.zero >= 2 && !dist.mpi)
        scp_usage_error("--zero %d shards the training state across MPI ranks: start scp-train with mpirun or srun "
                        "(mpirun -np 1 for a single rank)", a.zero);
    run.expert_parallel = a.expert_parallel > 1 ? a.expert_parallel : 1;
    if (run.expert_parallel > 1 && dist.world % run.expert_parallel)
        scp_usage_error("--expert-parallel %d must divide the %d ranks into expert groups", run.expert_parallel,
                        dist.world);
    if (run.expert_parallel > 1 && a.zero == 1)
        scp_usage_error("--expert-parallel with --zero 1: ZeRO-1's cut of the whole vector knows no expert groups "
                        "(use --zero 0, 2 or 3)");

    scp_train_opts saved;   /* a resumed run's options before this command line (their numbers) */
    int64_t saved_total = 0;
    if (a.resume) {
        /* The saved options, then whatever this command line sets again. */
        if (scp_train_resume_options(&run)) scp_die_last();
        saved = o;
        saved_total = run.st.total_steps;
        apply_args(&a, &o);
    } else {
        if (!o.init) scp_usage_error("--init CKPT is required (or --resume)");
        if (!o.data) scp_usage_error("--data SHARDS is required");
        check_output(&o, a.out);
        if (r0 && scp_train_check_rundir(a.out, a.force)) scp_die_last();
    }
    if (!o.data) scp_usage_error("--data SHARDS is required");
    if (!o.steps && !o.tokens)
        scp_usage_error(o.batch_schedule ? "--tokens is required: it sets the length of a run with --batch-schedule"
                                         : "--steps or --tokens is required");
    if (!o.attn_set) o.attn = o.objective == SCP_OBJ_AR ? SCP_ATTN_CAUSAL : SCP_ATTN_BIDIRECTIONAL;
    if (o.objective == SCP_OBJ_AR && o.attn != SCP_ATTN_CAUSAL)
        scp_usage_error("--objective ar needs causal attention (a token would see the one it predicts)");
    scp_train_opts_absolute(&o);
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

    if (scp_train_open_model(&run) || scp_train_open_data(&run)) scp_die_last();
    if (scp_train_plan(&run)) scp_usage_error("%s", scp_last_error());
    warn_length(&a, run.total);
    /* (a batch schedule's rate depends on the batch it picks at that step, which is not known yet) */
    if (a.resume && !o.batch_schedule && !saved.batch_schedule)
        warn_schedule_change(&a, &saved, saved_total, &o, run.total, run.st.step);
    if (scp_train_open_optimizer(&run) || scp_train_start(&run)) scp_die_last();
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);
    int stop = scp_train_loop(&run, &stop_signal);
    if (stop < 0) scp_die_last();
    scp_train_run_free(&run);
    scp_train_opts_free(&o);
    free(a.ids);
    free(a.vals);
    scp_dist_finish(&dist);
    return stop ? 128 + stop : 0;
}
