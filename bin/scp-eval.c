/* scp-eval: loss figures, samples and choice accuracy of a checkpoint, JSON (or text) on stdout.
 *
 *   scp-eval ppl  --model CKPT --data SHARDS [--split val|train] [--max-seqs N]
 *   scp-eval elbo --model CKPT --data SHARDS [--samples N] [--seed S]
 * Both also read a token stream cut into windows (--stream FILE --seq-len N --stride S), which is how the
 * usual perplexity protocol (overlapping windows) is reproduced. The computations are in lib/eval/loss.c, the
 * model and the data are opened and checked by lib/eval/setup.c. */
#include "scp-eval.h"

#include "core/cli.h"
#include "core/error.h"
#include "core/json.h"
#include "eval/loss.h"
#include "eval/setup.h"
#include "model/model.h"
#include "train/opts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct subcmd {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
} subcmd;

static const subcmd subcmds[] = {
    {"ppl", scp_eval_ppl_main, "causal next-token NLL and perplexity"},
    {"elbo", scp_eval_elbo_main, "diffusion NLL upper bound (Monte-Carlo over t, stratified)"},
    {"generate", scp_eval_generate_main, "text by iterative unmasking (diffusion) or next-token decoding (AR)"},
    {"choice", scp_eval_choice_main, "multiple-choice accuracy from likelihoods (JSONL tasks)"},
};
#define N_SUBCMDS (int)(sizeof subcmds / sizeof *subcmds)

_Noreturn static void top_usage(void)
{
    printf("Usage: %s SUBCOMMAND [OPTIONS]\n"
           "Figures and samples of a checkpoint: JSON (or text) on stdout.\n\nSubcommands:\n",
           scp_progname());
    for (int i = 0; i < N_SUBCMDS; i++) printf("  %-9s %s\n", subcmds[i].name, subcmds[i].summary);
    printf("\n'%s SUBCOMMAND --help' lists its options.\n"
           "  -h, --help     this help\n  -V, --version  version and features\n",
           scp_progname());
    scp_cli_exit_stdout();
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    if (argc < 2) scp_usage_error("a subcommand is required (%s)", "ppl, elbo, generate, choice");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) top_usage();
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) scp_cli_version();
    for (int i = 0; i < N_SUBCMDS; i++)
        if (!strcmp(argv[1], subcmds[i].name)) {
            char *name = scp_xasprintf("%s %s", scp_progname(), subcmds[i].name);
            scp_set_progname(name);   /* messages read "scp-eval ppl: ..." */
            argv[1] = name;
            return subcmds[i].main(argc - 1, argv + 1);
        }
    scp_usage_error("unknown subcommand '%s' (ppl, elbo, generate, choice)", argv[1]);
}

/* ---- ppl and elbo: shared options ---------------------------------------------------------------------- */
typedef struct loss_args {
    const char *model, *backend;
    scp_eval_source_spec src;
    int threads, shift, mask_id, quiet;
    scp_eval_opts eo;
} loss_args;

static const scp_opt_id loss_ids[] = {
    SCP_OPT_MODEL, SCP_OPT_DATA, SCP_OPT_SPLIT, SCP_OPT_STREAM, SCP_OPT_SEQ_LEN, SCP_OPT_STRIDE, SCP_OPT_MAX_SEQS,
    SCP_OPT_BATCH, SCP_OPT_DOC_MASK, SCP_OPT_SAMPLES, SCP_OPT_SEED, SCP_OPT_T_EPS, SCP_OPT_MASK_SCHEDULE,
    SCP_OPT_SHIFT, SCP_OPT_NO_SHIFT, SCP_OPT_ATTENTION, SCP_OPT_MASK_ID, SCP_OPT_THREADS, SCP_OPT_BACKEND,
    SCP_OPT_QUIET, SCP_OPT_HELP, SCP_OPT_VERSION, SCP_OPT_END};
static const scp_cli_alias loss_old[] = {{"tokens", 0, SCP_OPT_STREAM}, SCP_EVAL_OLD_THREADS, {NULL, 0, 0}};

_Noreturn static void loss_usage(int elbo)
{
    printf("Usage: %s --model CKPT (--data SHARDS | --stream FILE --seq-len N) [OPTIONS]\n", scp_progname());
    if (elbo)
        printf("The masked-diffusion NLL upper bound per token (nats): for each sequence, N noise levels t stratified\n"
               "over [eps, 1], mask each token with probability t, score the masked tokens with the bidirectional\n"
               "model (weight 1/t); JSON with the bound, its standard error over sequences, and exp(bound).\n");
    else
        printf("Causal next-token NLL per token (nats) and perplexity; each sequence is scored on its own, from its\n"
               "own prefix; JSON with the NLL, its standard error over sequences, and the perplexity.\n");
    printf("\n"
           "  -m, --model CKPT       checkpoint directory\n"
           "  -d, --data SHARDS      shard set directory (scp-shard)\n"
           "      --split val|train  which split (default val)\n"
           "      --stream FILE      a token stream (scp-tokenize; '-' is stdin) instead of shards: documents\n"
           "                         concatenated and cut into windows\n"
           "  -L, --seq-len N        window length with --stream\n"
           "      --stride N         window start every N tokens (default: the window length)\n"
           "      --max-seqs N       score the first N sequences (default all)\n"
           "  -B, --batch N          sequences per forward pass (default 8)\n"
           "      --doc-mask         keep attention inside documents\n");
    if (elbo)
        printf("      --samples N        noise levels per sequence (default 16)\n"
               "  -s, --seed S           noise levels and masks (default 1)\n"
               "      --t-eps E          smallest noise level (default 0.001)\n"
               "      --mask-schedule linear|cosine|poly2  masking probability at t (default linear)\n"
               "      --shift, --no-shift  logit shift (default: config.json shift_logits)\n"
               "      --attention bidirectional|causal  (default bidirectional)\n"
               "  -M, --mask-id ID       mask token (default: config.json mask_token_id)\n");
    else
        printf("  -s, --seed S           accepted for symmetry with elbo (ppl draws nothing)\n"
               "  -q, --quiet            no warning that the model was trained bidirectionally\n");
    printf("  -j, --threads N        threads (default: all cores)\n"
           "      --backend NAME     compute backend: cpu (default), cpu-bf16, cuda (bf16), cuda-fp32\n"
           "  -h, --help             this help\n"
           "  -V, --version          version and features\n");
    scp_cli_exit_stdout();
}

/* The options of elbo alone. */
static int elbo_only(int id)
{
    return id == SCP_OPT_SAMPLES || id == SCP_OPT_T_EPS || id == SCP_OPT_MASK_SCHEDULE || id == SCP_OPT_SHIFT ||
           id == SCP_OPT_NO_SHIFT || id == SCP_OPT_ATTENTION || id == SCP_OPT_MASK_ID;
}

static void loss_option(loss_args *a, int id, const char *arg, int elbo)
{
    int v;
    switch (id) {
    case SCP_OPT_MODEL: a->model = arg; break;
    case SCP_OPT_DATA: a->src.shards = arg; break;
    case SCP_OPT_SPLIT:
        if (strcmp(arg, "val") && strcmp(arg, "train")) scp_usage_error("--split: '%s' is not val or train", arg);
        a->src.split = arg;
        break;
    case SCP_OPT_STREAM: a->src.stream = arg; break;
    case SCP_OPT_SEQ_LEN: a->src.seq_len = (int)scp_opt_int("--seq-len", arg, 2, 1 << 24); break;
    case SCP_OPT_STRIDE: a->src.stride = (int)scp_opt_int("--stride", arg, 1, 1 << 24); break;
    case SCP_OPT_MAX_SEQS: a->eo.max_seqs = scp_opt_count("--max-seqs", arg, 1, INT64_MAX / 2); break;
    case SCP_OPT_BATCH: a->eo.batch = (int)scp_opt_int("--batch", arg, 1, 1 << 20); break;
    case SCP_OPT_DOC_MASK: a->eo.doc_mask = 1; break;
    case SCP_OPT_SAMPLES: a->eo.samples = (int)scp_opt_int("--samples", arg, 1, 1 << 20); break;
    case SCP_OPT_SEED: a->eo.seed = (uint64_t)scp_opt_int("--seed", arg, 0, INT64_MAX); break;
    case SCP_OPT_T_EPS: a->eo.eps = scp_opt_double("--t-eps", arg, 1e-9, 0.5); break;
    case SCP_OPT_MASK_SCHEDULE:
        if ((v = scp_mask_schedule_from_name(arg)) < 0)
            scp_usage_error("--mask-schedule: '%s' is not linear, cosine or poly2", arg);
        a->eo.sched = (scp_mask_schedule)v;
        break;
    case SCP_OPT_SHIFT: a->shift = 1; break;
    case SCP_OPT_NO_SHIFT: a->shift = 0; break;
    case SCP_OPT_ATTENTION:
        if (!strcmp(arg, "bidirectional")) a->eo.attn = SCP_ATTN_BIDIRECTIONAL;
        else if (!strcmp(arg, "causal")) a->eo.attn = SCP_ATTN_CAUSAL;
        else scp_usage_error("--attention: '%s' is not bidirectional or causal", arg);
        break;
    case SCP_OPT_MASK_ID: a->mask_id = (int)scp_opt_int("--mask-id", arg, 0, INT32_MAX); break;
    case SCP_OPT_THREADS: a->threads = (int)scp_opt_int("--threads", arg, 0, 4096); break;
    case SCP_OPT_BACKEND: a->backend = scp_eval_backend_option(arg); break;
    case SCP_OPT_QUIET: a->quiet = 1; break;
    case SCP_OPT_HELP: loss_usage(elbo);
    case SCP_OPT_VERSION: scp_cli_version();
    }
}

static void loss_parse(int argc, char **argv, int elbo, loss_args *a)
{
    memset(a, 0, sizeof *a);
    scp_eval_opts_default(&a->eo);
    a->src.split = "val";
    a->backend = "cpu";
    a->shift = -1;
    a->mask_id = -1;
    a->eo.attn = SCP_ATTN_BIDIRECTIONAL;
    scp_cli c;
    scp_cli_begin(&c, loss_ids, loss_old);
    for (int id; (id = scp_cli_next(&c, argc, argv)) >= 0;) {
        if (!elbo && elbo_only(id)) scp_usage_error("%s is an option of 'elbo', not of 'ppl'", argv[optind - 1]);
        if (elbo && id == SCP_OPT_QUIET) scp_usage_error("%s is an option of 'ppl', not of 'elbo'", argv[optind - 1]);
        loss_option(a, id, optarg, elbo);
    }
    scp_cli_end(&c);
    if (optind < argc) scp_usage_error("unexpected argument '%s'", argv[optind]);
    if (!a->model) scp_usage_error("--model CKPT is required");
    if (!a->src.shards == !a->src.stream) scp_usage_error("give one of --data SHARDS or --stream FILE");
    if (a->src.stream && !a->src.seq_len) scp_usage_error("--stream needs --seq-len N");
    if (!a->src.stream && (a->src.seq_len || a->src.stride)) scp_usage_error("--seq-len and --stride go with --stream");
    if (!a->src.stride) a->src.stride = a->src.seq_len;
}

static int run_loss(int argc, char **argv, int elbo)
{
    loss_args a;
    loss_parse(argc, argv, elbo, &a);
    scp_set_threads(a.threads);
    scp_model *m = scp_model_load(a.model, a.backend);
    if (!m) scp_die_last();
    /* A masked-diffusion model never learnt to predict from a prefix alone: its causal NLL is a figure of a
     * model it was not trained to be, usually far worse than its diffusion bound. */
    if (!elbo && !m->cfg.causal && !a.quiet)
        scp_warn("%s was trained bidirectionally (config.json: is_causal false), but ppl scores it causally, each "
                 "token from its prefix: scp-eval elbo gives its masked-diffusion bound", a.model);
    /* ppl reads the logits of every position but the last; elbo's bidirectional model sees every position. */
    scp_eval_data d;
    if (scp_eval_data_open(&d, &a.src, m, a.model, !elbo)) scp_die_last();
    a.eo.progress = 1;
    if (scp_eval_loss_resolve(&a.eo, m, a.model, a.mask_id, a.shift, elbo)) scp_die_last();
    scp_eval_result r;
    if ((elbo ? scp_eval_elbo(m, &d.src, &a.eo, &r) : scp_eval_ppl(m, &d.src, &a.eo, &r))) scp_die_last();

    json_t *j = json_object();
    json_object_set_new(j, "metric", json_string(elbo ? "elbo" : "ppl"));
    json_object_set_new(j, "model", json_string(a.model));
    json_object_set_new(j, "data", json_string(d.name));
    if (a.src.shards) {
        json_object_set_new(j, "split", json_string(a.src.split));
    } else {
        json_object_set_new(j, "seq_len", json_integer(a.src.seq_len));
        json_object_set_new(j, "stride", json_integer(a.src.stride));
    }
    json_object_set_new(j, "seqs", json_integer(r.seqs));
    json_object_set_new(j, "tokens", json_integer(r.tokens));
    json_object_set_new(j, "nll", json_real(r.nll));
    json_object_set_new(j, "se", isfinite(r.se) ? json_real(r.se) : json_null());
    json_object_set_new(j, "ppl", json_real(exp(r.nll)));
    if (elbo) {
        json_object_set_new(j, "samples", json_integer(a.eo.samples));
        json_object_set_new(j, "seed", json_integer((json_int_t)a.eo.seed));
        json_object_set_new(j, "masked_fraction", json_real(r.masked_fraction));
        json_object_set_new(j, "shift", json_boolean(a.eo.shift));
        json_object_set_new(j, "attention", json_string(scp_attn_name(a.eo.attn)));
    }
    json_object_set_new(j, "seconds", json_real(r.seconds));
    if (scp_json_print(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))) scp_die_last();
    json_decref(j);
    scp_eval_data_close(&d);
    scp_model_free(m);
    return 0;
}

int scp_eval_ppl_main(int argc, char **argv) { return run_loss(argc, argv, 0); }
int scp_eval_elbo_main(int argc, char **argv) { return run_loss(argc, argv, 1); }
