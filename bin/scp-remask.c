/* scp-remask: the forward process of masked diffusion as a pipeline stage (man 1 scp-remask): shard set ->
 * masked examples (man 5 scp-masked), with the library code scp-train uses online (lib/data/remask.c). */
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "core/options.h"
#include "core/progress.h"
#include "data/remask.h"
#include "formats/model_config.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn static void usage(void)
{
    printf("Usage: %s --data SHARDS (--model DIR | --mask-id ID) [OPTIONS] [-o OUT]\n"
           "Mask every sequence of a shard set as masked diffusion's forward process does: draw t in [eps, 1],\n"
           "mask each token with the schedule's probability at t, replace it by the mask id. Writes masked\n"
           "examples (man 5 scp-masked) to OUT or standard output; --show prints them for people instead.\n\n"
           "  -d, --data DIR            the shard set (scp-shard's output)\n"
           "      --split NAME          train (default) or val\n"
           "  -m, --model DIR           take the mask id (config.json mask_token_id) and the tokenizer from DIR\n"
           "  -M, --mask-id ID          the mask token id (instead of --model)\n"
           "  -s, --seed N              seed (default 0): example i's randomness comes from (seed, i) alone\n"
           "      --t-eps E             smallest t (default 0.001)\n"
           "      --t-sampler NAME      uniform (default), stratified or antithetic across a batch\n"
           "      --mask-schedule NAME  masking probability at t: linear (t, default), cosine, poly2 (t^2)\n"
           "  -B, --batch N             batch size for the t sampler (default 1)\n"
           "  -P, --prompt-len N        keep the first N positions of every sequence unmasked\n"
           "  -E, --prompt-end-id ID    keep each document unmasked up to and including its first token ID\n"
           "      --max-seqs N          only the first N sequences (suffixes k M G)\n"
           "  -j, --threads N           worker threads (default: the number of CPUs; output does not depend on it)\n"
           "  -o, --output FILE         output file (default '-': standard output, never a terminal)\n"
           "  -T, --with-targets        store the clean tokens in each record too\n"
           "      --show                print examples as text (ids without a tokenizer), masked spans in [[ ]]\n"
           "  -q, --quiet               no statistics on stderr\n"
           "  -h, --help                show this help and exit\n"
           "  -V, --version             show the version and compiled-in features and exit\n"
           "Deprecated: --eps, -e (--t-eps), -t (--t-sampler), --schedule, -S (--mask-schedule), -p (--split),\n"
           "-n (--max-seqs).\n",
           scp_progname());
    scp_cli_exit_stdout();
}

/* The mask id of checkpoint `model` (its config.json, or the file given), checked against the data. */
static int32_t mask_id_of_model(const char *model, const scp_shardset *set)
{
    char *cp = scp_is_dir(model) ? scp_path_join(model, "config.json") : scp_xstrdup(model);
    scp_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (scp_config_load(&cfg, cp)) scp_die_last();
    if (cfg.mask_token_id < 0) scp_die("%s: no mask_token_id (give --mask-id ID)", cp);
    if (cfg.mask_token_id >= cfg.vocab_size)
        scp_die("%s: mask_token_id %d is outside the embedding (vocab_size %d)", cp, cfg.mask_token_id, cfg.vocab_size);
    if (cfg.vocab_size < scp_shardset_vocab_size(set))
        scp_die("%s: vocab_size %d is smaller than the data's vocabulary (%d)", cp, cfg.vocab_size, scp_shardset_vocab_size(set));
    int32_t id = cfg.mask_token_id;
    scp_config_free(&cfg);
    free(cp);
    return id;
}

/* --show decodes with the checkpoint's tokenizer, which must be the data's; without one it shows ids. */
static scp_tokenizer *show_tokenizer(const char *model, const scp_shardset *set, const char *data)
{
    if (!model || !scp_is_dir(model)) return NULL;
    scp_tokenizer *tok = scp_tokenizer_load(model);
    if (!tok) scp_warn("%s; showing token ids", scp_last_error());
    else if (scp_tokenizer_check_data(tok, model, scp_shardset_tokenizer_hash(set), data)) scp_die_last();
    return tok;
}

static void print_stats(const scp_remask_opts *o, const scp_remask_stats *st, int L, double seconds)
{
    double frac = st->maskable ? (double)st->masked / (double)st->maskable : 0;
    double exp_t = st->maskable ? st->expect / (double)st->maskable : 0;
    double sd = st->maskable ? sqrt(st->var) / (double)st->maskable : 0;
    fprintf(stderr,
            "%s: %" PRId64 " examples of %d tokens in %.2f s (%.3g tokens/s)\n"
            "%s: masked fraction %.5f of %" PRIu64 " maskable tokens; expected %.5f for the t drawn (z = %.2f), "
            "%.5f for the %s schedule with t uniform on [%g, 1]\n",
            scp_progname(), st->examples, L, seconds, seconds > 0 ? (double)st->examples * L / seconds : 0.0,
            scp_progname(), frac, st->maskable, exp_t, sd > 0 ? (frac - exp_t) / sd : 0.0,
            scp_mask_mean_prob(o->schedule, o->eps), scp_mask_schedule_name(o->schedule), o->eps);
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    static const scp_opt_id ids[] = {
        SCP_OPT_DATA, SCP_OPT_SPLIT, SCP_OPT_MODEL, SCP_OPT_MASK_ID, SCP_OPT_SEED, SCP_OPT_T_EPS, SCP_OPT_T_SAMPLER,
        SCP_OPT_MASK_SCHEDULE, SCP_OPT_BATCH, SCP_OPT_PROMPT_LEN, SCP_OPT_PROMPT_END_ID, SCP_OPT_MAX_SEQS,
        SCP_OPT_THREADS, SCP_OPT_OUTPUT, SCP_OPT_WITH_TARGETS, SCP_OPT_SHOW, SCP_OPT_QUIET, SCP_OPT_HELP,
        SCP_OPT_VERSION, SCP_OPT_END};
    static const scp_cli_alias old[] = {
        {"eps", 0, SCP_OPT_T_EPS}, {NULL, 'e', SCP_OPT_T_EPS}, {NULL, 't', SCP_OPT_T_SAMPLER},
        {"schedule", 0, SCP_OPT_MASK_SCHEDULE}, {NULL, 'S', SCP_OPT_MASK_SCHEDULE}, {NULL, 'p', SCP_OPT_SPLIT},
        {NULL, 'n', SCP_OPT_MAX_SEQS}, {0}};
    const char *data = NULL, *split = "train", *model = NULL, *out = "-";
    int64_t mask_id = -1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    scp_remask_opts o = {.eps = 1e-3, .sampler = SCP_T_UNIFORM, .schedule = SCP_SCHED_LINEAR, .batch = 1, .prompt_end_id = -1,
                         .n_examples = -1, .threads = ncpu > 0 ? (int)ncpu : 1};
    int show = 0, quiet = 0, named;
    scp_cli c;
    scp_cli_begin(&c, ids, old);
    for (int id; (id = scp_cli_next(&c, argc, argv)) >= 0;) {
        switch (id) {
        case SCP_OPT_DATA: data = optarg; break;
        case SCP_OPT_SPLIT: split = optarg; break;
        case SCP_OPT_MODEL: model = optarg; break;
        case SCP_OPT_MASK_ID: mask_id = scp_opt_int("--mask-id", optarg, 0, INT32_MAX); break;
        case SCP_OPT_SEED: o.seed = (uint64_t)scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case SCP_OPT_T_EPS: o.eps = scp_opt_double("--t-eps", optarg, 0, 0.5); break;
        case SCP_OPT_T_SAMPLER:
            if ((named = scp_t_sampler_from_name(optarg)) < 0)
                scp_usage_error("--t-sampler: '%s' is not uniform, stratified or antithetic", optarg);
            o.sampler = (scp_t_sampler)named;
            break;
        case SCP_OPT_MASK_SCHEDULE:
            if ((named = scp_mask_schedule_from_name(optarg)) < 0)
                scp_usage_error("--mask-schedule: '%s' is not linear, cosine or poly2", optarg);
            o.schedule = (scp_mask_schedule)named;
            break;
        case SCP_OPT_BATCH: o.batch = (int)scp_opt_int("--batch", optarg, 1, 1 << 20); break;
        case SCP_OPT_PROMPT_LEN: o.prompt_len = (int)scp_opt_int("--prompt-len", optarg, 0, INT32_MAX); break;
        case SCP_OPT_PROMPT_END_ID: o.prompt_end_id = (int32_t)scp_opt_int("--prompt-end-id", optarg, 0, INT32_MAX); break;
        case SCP_OPT_MAX_SEQS: o.n_examples = scp_opt_count("--max-seqs", optarg, 0, INT64_MAX); break;
        case SCP_OPT_THREADS: o.threads = (int)scp_opt_int("--threads", optarg, 1, 1024); break;
        case SCP_OPT_OUTPUT: out = optarg; break;
        case SCP_OPT_WITH_TARGETS: o.targets = 1; break;
        case SCP_OPT_SHOW: show = 1; break;
        case SCP_OPT_QUIET: quiet = 1; break;
        case SCP_OPT_HELP: usage();
        case SCP_OPT_VERSION: scp_cli_version();
        }
    }
    scp_cli_end(&c);
    if (optind < argc) scp_usage_error("unexpected argument '%s'", argv[optind]);
    if (!data) scp_usage_error("no shard set (--data DIR)");
    if (strcmp(split, "train") && strcmp(split, "val")) scp_usage_error("--split: '%s' is not train or val", split);
    if (model && mask_id >= 0) scp_usage_error("give --model or --mask-id, not both");
    if (!model && mask_id < 0) scp_usage_error("no mask id: give --model DIR (config.json mask_token_id) or --mask-id ID");
    const char *inputs[] = {data, model};
    if (!show && scp_output_check(out, 0, inputs, 2)) scp_usage_error("%s", scp_last_error());

    scp_shardset *set = scp_shardset_open(data, split);
    if (!set) scp_die_last();
    o.data = data;
    o.val = strcmp(split, "val") == 0;
    o.mask_id = model ? mask_id_of_model(model, set) : (int32_t)mask_id;
    if (o.mask_id == scp_shardset_bos_id(set) || o.mask_id == scp_shardset_eos_id(set) || o.mask_id == scp_shardset_pad_id(set))
        scp_die("mask id %" PRId32 " is the data's bos, eos or pad token: choose an unused id", o.mask_id);
    if (show) {
        scp_tokenizer *tok = show_tokenizer(model, set, data);
        if (o.n_examples < 0) o.n_examples = 4;
        if (scp_remask_show(set, &o, tok, stdout)) scp_die_last();
        scp_tokenizer_free(tok);
        scp_shardset_close(set);
        scp_cli_exit_stdout();
    }

    scp_out *so = scp_out_open(out, 1);
    if (!so) scp_die_last();
    setvbuf(so->f, NULL, _IOFBF, 1 << 20);
    scp_remask_stats st;
    double t0 = scp_now();
    if (scp_remask_write(set, &o, so->f, strcmp(out, "-") ? out : "<stdout>", &st)) {
        scp_out_abort(so);
        scp_die_last();
    }
    if (scp_out_commit(so)) scp_die_last();
    if (!quiet) print_stats(&o, &st, scp_shardset_seq_len(set), scp_now() - t0);
    scp_shardset_close(set);
    return 0;
}
