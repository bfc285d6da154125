/* scp-eval: loss figures (and later samples and choice accuracy) of a checkpoint, JSON on stdout.
 *
 *   scp-eval ppl  --model CKPT --data SHARDS [--split val|train] [--max-seqs N]
 *   scp-eval elbo --model CKPT --data SHARDS [--samples N] [--seed S]
 * Both also read a token stream cut into windows (--tokens FILE --seq-len N --stride S), which is how the
 * usual perplexity protocol (overlapping windows) is reproduced. The computations are in lib/eval/loss.c. */
#include "scp-eval.h"

#include "core/cli.h"
#include "core/error.h"
#include "eval/loss.h"
#include "core/io.h"
#include "model/model.h"
#include "data/shard.h"
#include "tok/tokenizer.h"
#include "train/opts.h"
#include "data/source.h"

#include <getopt.h>
#include <inttypes.h>
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

static void top_usage(FILE *f)
{
    fprintf(f, "Usage: %s SUBCOMMAND [OPTIONS]\nFigures and samples of a checkpoint: JSON (or text) on stdout.\n\nSubcommands:\n",
            scp_progname());
    for (int i = 0; i < N_SUBCMDS; i++) fprintf(f, "  %-9s %s\n", subcmds[i].name, subcmds[i].summary);
    fprintf(f, "\n'%s SUBCOMMAND --help' lists its options.\n  -h, --help     this help\n  -V, --version  version and features\n",
            scp_progname());
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    if (argc < 2) scp_usage_error("a subcommand is required (%s)", "ppl, elbo, generate, choice");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        top_usage(stdout);
        return 0;
    }
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
    const char *model, *data, *split, *tokens, *backend;
    int seq_len, stride, threads, doc_mask, shift, mask_id, attn;
    scp_eval_opts eo;
} loss_args;

enum { O_SPLIT = 256, O_TOKENS, O_SEQ_LEN, O_STRIDE, O_MAX_SEQS, O_BATCH, O_DOC_MASK, O_SAMPLES, O_T_EPS,
       O_MASK_SCHED, O_SHIFT, O_NO_SHIFT, O_ATTENTION, O_MASK_ID, O_BACKEND };

static const struct option loss_longopts[] = {
    {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
    {"split", required_argument, 0, O_SPLIT}, {"tokens", required_argument, 0, O_TOKENS},
    {"seq-len", required_argument, 0, O_SEQ_LEN}, {"stride", required_argument, 0, O_STRIDE},
    {"max-seqs", required_argument, 0, O_MAX_SEQS}, {"batch", required_argument, 0, O_BATCH},
    {"doc-mask", no_argument, 0, O_DOC_MASK}, {"samples", required_argument, 0, O_SAMPLES},
    {"seed", required_argument, 0, 's'}, {"t-eps", required_argument, 0, O_T_EPS},
    {"mask-schedule", required_argument, 0, O_MASK_SCHED}, {"shift", no_argument, 0, O_SHIFT},
    {"no-shift", no_argument, 0, O_NO_SHIFT}, {"attention", required_argument, 0, O_ATTENTION},
    {"mask-id", required_argument, 0, O_MASK_ID}, {"threads", required_argument, 0, 't'},
    {"backend", required_argument, 0, O_BACKEND}, {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};

_Noreturn static void loss_usage(int elbo)
{
    printf("Usage: %s --model CKPT (--data SHARDS | --tokens FILE --seq-len N) [OPTIONS]\n", scp_progname());
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
           "      --tokens FILE      a token stream (scp-tokenize; '-' is stdin) instead of shards: documents\n"
           "                         concatenated and cut into windows\n"
           "      --seq-len N        window length with --tokens\n"
           "      --stride N         window start every N tokens (default: the window length)\n"
           "      --max-seqs N       score the first N sequences (default all)\n"
           "      --batch N          sequences per forward pass (default 8)\n"
           "      --doc-mask         keep attention inside documents\n");
    if (elbo)
        printf("      --samples N        noise levels per sequence (default 16)\n"
               "  -s, --seed S           noise levels and masks (default 1)\n"
               "      --t-eps E          smallest noise level (default 0.001)\n"
               "      --mask-schedule linear|cosine|poly2  masking probability at t (default linear)\n"
               "      --shift, --no-shift  logit shift (default: config.json shift_logits)\n"
               "      --attention bidirectional|causal  (default bidirectional)\n"
               "      --mask-id ID       mask token (default: config.json mask_token_id)\n");
    else
        printf("  -s, --seed S           accepted for symmetry with elbo (ppl draws nothing)\n");
    printf("  -t, --threads N        threads (default: all cores)\n"
           "      --backend NAME     compute backend: cpu (default), cpu-bf16, cuda (bf16), cuda-fp32\n"
           "  -h, --help             this help\n"
           "  -V, --version          version and features\n");
    exit(0);
}

static void loss_parse(int argc, char **argv, int elbo, loss_args *a)
{
    memset(a, 0, sizeof *a);
    scp_eval_opts_default(&a->eo);
    a->split = "val";
    a->backend = "cpu";
    a->shift = -1;
    a->mask_id = -1;
    a->attn = SCP_ATTN_BIDIRECTIONAL;
    int c, v;
    optind = 0;
    while ((c = getopt_long(argc, argv, "m:d:s:t:hV", loss_longopts, NULL)) != -1) {
        if (!elbo && (c == O_SAMPLES || c == O_T_EPS || c == O_MASK_SCHED || c == O_SHIFT || c == O_NO_SHIFT ||
                      c == O_ATTENTION || c == O_MASK_ID))
            scp_usage_error("%s is an option of 'elbo', not of 'ppl'", argv[optind - 1]);
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'd': a->data = optarg; break;
        case O_SPLIT:
            if (strcmp(optarg, "val") && strcmp(optarg, "train")) scp_usage_error("--split: '%s' is not val or train", optarg);
            a->split = optarg;
            break;
        case O_TOKENS: a->tokens = optarg; break;
        case O_SEQ_LEN: a->seq_len = (int)scp_opt_int("--seq-len", optarg, 2, 1 << 24); break;
        case O_STRIDE: a->stride = (int)scp_opt_int("--stride", optarg, 1, 1 << 24); break;
        case O_MAX_SEQS: a->eo.max_seqs = scp_opt_count("--max-seqs", optarg, 1, INT64_MAX / 2); break;
        case O_BATCH: a->eo.batch = (int)scp_opt_int("--batch", optarg, 1, 1 << 20); break;
        case O_DOC_MASK: a->doc_mask = 1; break;
        case O_SAMPLES: a->eo.samples = (int)scp_opt_int("--samples", optarg, 1, 1 << 20); break;
        case 's': a->eo.seed = (uint64_t)scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case O_T_EPS: a->eo.eps = scp_opt_double("--t-eps", optarg, 1e-9, 0.5); break;
        case O_MASK_SCHED:
            if ((v = scp_mask_schedule_from_name(optarg)) < 0)
                scp_usage_error("--mask-schedule: '%s' is not linear, cosine or poly2", optarg);
            a->eo.sched = (scp_mask_schedule)v;
            break;
        case O_SHIFT: a->shift = 1; break;
        case O_NO_SHIFT: a->shift = 0; break;
        case O_ATTENTION:
            if (!strcmp(optarg, "bidirectional")) a->attn = SCP_ATTN_BIDIRECTIONAL;
            else if (!strcmp(optarg, "causal")) a->attn = SCP_ATTN_CAUSAL;
            else scp_usage_error("--attention: '%s' is not bidirectional or causal", optarg);
            break;
        case O_MASK_ID: a->mask_id = (int)scp_opt_int("--mask-id", optarg, 0, INT32_MAX); break;
        case 't': a->threads = (int)scp_opt_int("--threads", optarg, 0, 4096); break;
        case O_BACKEND: a->backend = optarg; break;
        case 'h': loss_usage(elbo);
        case 'V': scp_cli_version();
        default: scp_usage_error("unknown option");
        }
    }
    if (optind < argc) scp_usage_error("unexpected argument '%s'", argv[optind]);
    if (!a->model) scp_usage_error("--model CKPT is required");
    if (!a->data == !a->tokens) scp_usage_error("give one of --data SHARDS or --tokens FILE");
    if (a->tokens && !a->seq_len) scp_usage_error("--tokens needs --seq-len N");
    if (!a->tokens && (a->seq_len || a->stride)) scp_usage_error("--seq-len and --stride go with --tokens");
    if (!a->stride) a->stride = a->seq_len;
    a->eo.doc_mask = a->doc_mask;
}

static int run_loss(int argc, char **argv, int elbo)
{
    loss_args a;
    loss_parse(argc, argv, elbo, &a);
    scp_set_threads(a.threads);
    scp_model *m = scp_model_load(a.model, a.backend);
    if (!m) scp_die_last();

    scp_seq_source src;
    scp_shardset *ss = NULL;
    scp_windows w = {0};
    uint64_t data_hash;
    int data_vocab;
    const char *data_name = a.data ? a.data : a.tokens;
    if (a.data) {
        ss = scp_shardset_open(a.data, a.split);
        if (!ss) scp_die_last();
        scp_source_shards(&src, ss);
        data_hash = scp_shardset_tokenizer_hash(ss);
        data_vocab = scp_shardset_vocab_size(ss);
    } else {
        if (scp_windows_open(&w, a.tokens, a.seq_len, a.stride)) scp_die_last();
        scp_source_windows(&src, &w);
        data_hash = w.tokenizer_hash;
        data_vocab = w.vocab_size;
    }
    if (src.n == 0) scp_die("%s: no %s sequence to score", data_name, a.data ? a.split : "whole-window");
    if (data_vocab > m->cfg.vocab_size)
        scp_die("%s: vocabulary of %d ids does not fit the model's %d embedding rows", data_name, data_vocab,
                m->cfg.vocab_size);
    if (data_hash && scp_tokenizer_in_dir(a.model)) {
        scp_tokenizer *t = scp_tokenizer_load(a.model);
        if (!t) scp_die_last();
        uint64_t h = scp_tokenizer_hash(t);
        scp_tokenizer_free(t);
        if (h != data_hash)
            scp_die("%s: tokenized with another tokenizer (hash %016" PRIx64 ") than %s (hash %016" PRIx64 ")", data_name,
                    data_hash, a.model, h);
    }

    a.eo.progress = 1;
    a.eo.mask_id = a.mask_id >= 0 ? a.mask_id : m->cfg.mask_token_id;
    a.eo.shift = a.shift >= 0 ? a.shift : m->cfg.shift_logits;
    a.eo.attn = (scp_attn_mode)a.attn;
    if (elbo && a.eo.mask_id < 0)
        scp_die("%s: config.json has no mask_token_id (give --mask-id ID, or import with scp-import)", a.model);
    if (elbo && a.eo.mask_id >= m->cfg.vocab_size)
        scp_die("--mask-id %d is outside the model's %d embedding rows", a.eo.mask_id, m->cfg.vocab_size);
    scp_eval_result r;
    if ((elbo ? scp_eval_elbo(m, &src, &a.eo, &r) : scp_eval_ppl(m, &src, &a.eo, &r))) scp_die_last();

    json_t *j = json_object();
    json_object_set_new(j, "metric", json_string(elbo ? "elbo" : "ppl"));
    json_object_set_new(j, "model", json_string(a.model));
    json_object_set_new(j, "data", json_string(data_name));
    if (a.data) json_object_set_new(j, "split", json_string(a.split));
    else {
        json_object_set_new(j, "seq_len", json_integer(a.seq_len));
        json_object_set_new(j, "stride", json_integer(a.stride));
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
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!s || printf("%s\n", s) < 0 || fflush(stdout) != 0) scp_die("<stdout>: write error");
    free(s);
    if (ss) scp_shardset_close(ss);
    scp_windows_free(&w);
    scp_model_free(m);
    return 0;
}

int scp_eval_ppl_main(int argc, char **argv) { return run_loss(argc, argv, 0); }
int scp_eval_elbo_main(int argc, char **argv) { return run_loss(argc, argv, 1); }
