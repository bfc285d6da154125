/* scp-shard: pack token streams into a shard set (man 1 scp-shard, format in man 5 scp-shards); --info and
 * --verify inspect one. */
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "core/options.h"
#include "data/shard.h"
#include "data/shard_write.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn static void usage(void)
{
    printf("Usage: %s [OPTIONS] [STREAM...] -o DIR\n"
           "       %s --info DIR | --verify DIR\n"
           "Pack token streams (scp-tokenize's output; '-' or none: standard input) into a shard set of\n"
           "fixed-length sequences for scp-train (man 5 scp-shards).\n\n"
           "  -o, --output DIR          the shard set to create (written atomically)\n"
           "  -L, --seq-len N           tokens per sequence (default 2048)\n"
           "  -S, --shard-tokens N      tokens per shard file, suffixes k M G (default 16M: 32 MB of 16-bit tokens)\n"
           "  -s, --seed N              seed for the shuffle and the validation split (default 0)\n"
           "      --no-shuffle          keep the sequences in packing order\n"
           "  -v, --val-fraction F      hold out this fraction of the tokens, as whole documents, for validation\n"
           "      --val-tokens N        hold out at least N tokens, as whole documents (suffixes k M G)\n"
           "  -j, --threads N           shard writers (default: the number of CPUs; the bytes do not depend on it)\n"
           "  -f, --force               replace DIR if it exists\n"
           "      --info                print a JSON summary of the shard set DIR\n"
           "  -c, --verify              check every header and CRC32 of the shard set DIR; exit 1 naming the\n"
           "                            first bad shard\n"
           "  -q, --quiet               no summary line on stderr\n"
           "  -h, --help                show this help and exit\n"
           "  -V, --version             show the version and compiled-in features and exit\n"
           "Deprecated: -i (--info). -V is --version: --val-tokens has no short option.\n",
           scp_progname(), scp_progname());
    scp_cli_exit_stdout();
}

/* --info: the manifest's figures, after checking every header against it. */
static int info_json(const char *dir)
{
    scp_shardset *tr = scp_shardset_open(dir, "train");
    if (!tr) return -1;
    scp_shardset_close(tr);
    char *mp = scp_path_join(dir, "manifest.json");
    json_t *m = scp_json_load(mp);
    free(mp);
    if (!m) return -1;
    /* The val split's headers too, when there is one. */
    if (json_integer_value(json_object_get(json_object_get(json_object_get(m, "splits"), "val"), "sequences")) > 0) {
        scp_shardset *va = scp_shardset_open(dir, "val");
        if (!va) {
            json_decref(m);
            return -1;
        }
        scp_shardset_close(va);
    }
    json_t *out = json_object();
    json_object_set_new(out, "dir", json_string(dir));
    static const char *keys[] = {"seq_len", "token_bytes", "vocab_size", "tokenizer_hash", "bos_id", "eos_id", "pad_id",
                                 "mask_id", "pad_value", "options", "inputs", "splits", "totals"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        json_t *v = json_object_get(m, keys[i]);
        if (v) json_object_set(out, keys[i], v);
    }
    int rc = scp_json_print(out, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(out);
    json_decref(m);
    return rc;
}

/* Pack one token stream (a path or '-') into the set being built. */
static int add_stream(scp_shard_builder *b, const char *in)
{
    int is_stdin = strcmp(in, "-") == 0;
    if (is_stdin && isatty(STDIN_FILENO))
        return scp_error("refusing to read a binary token stream from a terminal (give STREAM or a pipe)");
    FILE *f = scp_fopen_in(in);
    if (!f) return -1;
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    int rc = scp_shard_builder_add(b, f, is_stdin ? "<stdin>" : in);
    scp_fclose_in(f);
    return rc;
}

/* The summary on stderr: documents, tokens, sequences and shards of each split, from the manifest. */
static void print_summary(const char *out, int seq_len)
{
    char *mp = scp_path_join(out, "manifest.json");
    json_t *m = scp_json_load(mp);
    free(mp);
    json_t *sp = json_object_get(m, "splits");
    for (int s = 0; s < 2; s++) {
        json_t *x = json_object_get(sp, s ? "val" : "train");
        json_int_t seqs = json_integer_value(json_object_get(x, "sequences"));
        if (s && !seqs) break;
        fprintf(stderr, "%s: %s: %s %" JSON_INTEGER_FORMAT " documents, %" JSON_INTEGER_FORMAT " tokens, %" JSON_INTEGER_FORMAT
                        " sequences of %d, %" JSON_INTEGER_FORMAT " shards\n", scp_progname(), out, s ? "val  " : "train",
                json_integer_value(json_object_get(x, "documents")), json_integer_value(json_object_get(x, "tokens")), seqs,
                seq_len, json_integer_value(json_object_get(x, "shards")));
    }
    json_decref(m);
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    static const scp_opt_id ids[] = {
        SCP_OPT_OUTPUT, SCP_OPT_SEQ_LEN, SCP_OPT_SHARD_TOKENS, SCP_OPT_SEED, SCP_OPT_NO_SHUFFLE, SCP_OPT_VAL_FRACTION,
        SCP_OPT_VAL_TOKENS, SCP_OPT_THREADS, SCP_OPT_FORCE, SCP_OPT_INFO, SCP_OPT_VERIFY, SCP_OPT_QUIET, SCP_OPT_HELP,
        SCP_OPT_VERSION, SCP_OPT_END};
    static const scp_cli_alias old[] = {{NULL, 'i', SCP_OPT_INFO}, {0}};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    scp_shard_opts o = {.seq_len = 2048, .shard_tokens = 16000000, .seed = 0, .shuffle = 1,
                        .threads = ncpu > 0 ? (int)ncpu : 1, .progress = 1};
    const char *out = NULL;
    int force = 0, quiet = 0, info = 0, verify = 0;
    scp_cli c;
    scp_cli_begin(&c, ids, old);
    for (int id; (id = scp_cli_next(&c, argc, argv)) >= 0;) {
        switch (id) {
        case SCP_OPT_OUTPUT: out = optarg; break;
        case SCP_OPT_SEQ_LEN: o.seq_len = (int)scp_opt_int("--seq-len", optarg, 1, 1 << 24); break;
        case SCP_OPT_SHARD_TOKENS: o.shard_tokens = scp_opt_count("--shard-tokens", optarg, 1, (int64_t)1 << 40); break;
        case SCP_OPT_SEED: o.seed = (uint64_t)scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case SCP_OPT_NO_SHUFFLE: o.shuffle = 0; break;
        case SCP_OPT_VAL_FRACTION: o.val_fraction = scp_opt_double("--val-fraction", optarg, 0, 0.99); break;
        case SCP_OPT_VAL_TOKENS: o.val_tokens = scp_opt_count("--val-tokens", optarg, 0, INT64_MAX); break;
        case SCP_OPT_THREADS: o.threads = (int)scp_opt_int("--threads", optarg, 1, 1024); break;
        case SCP_OPT_FORCE: force = 1; break;
        case SCP_OPT_INFO: info = 1; break;
        case SCP_OPT_VERIFY: verify = 1; break;
        case SCP_OPT_QUIET: quiet = 1; break;
        case SCP_OPT_HELP: usage();
        case SCP_OPT_VERSION:
            /* -V was --val-tokens' letter: "-V 1M" must not silently print the version and succeed. */
            if (argc != 2) scp_usage_error("--version takes nothing else (-V is --version; --val-tokens has no short option)");
            scp_cli_version();
        }
    }
    scp_cli_end(&c);
    if (info || verify) {
        if (info && verify) scp_usage_error("--info and --verify are separate commands");
        if (out || optind + 1 != argc) scp_usage_error("--info and --verify take one shard set directory and no -o");
        const char *dir = argv[optind];
        if (info) {
            if (info_json(dir)) scp_die_last();
            return 0;
        }
        if (scp_shardset_verify(dir)) scp_die_last();
        if (!quiet) fprintf(stderr, "%s: %s: every shard header and CRC32 is good\n", scp_progname(), dir);
        return 0;
    }
    if (!out) scp_usage_error("no output directory (-o DIR)");
    if (o.val_fraction > 0 && o.val_tokens > 0) scp_usage_error("give --val-fraction or --val-tokens, not both");
    if (strcmp(out, "-") == 0) scp_usage_error("a shard set is a directory: -o - is not possible");
    int nin = argc - optind;
    const char *stdin_only[] = {"-"};
    const char *const *inputs = nin ? (const char *const *)argv + optind : stdin_only;
    if (!nin) nin = 1;
    for (int i = 0, used_stdin = 0; i < nin; i++)
        if (strcmp(inputs[i], "-") == 0 && used_stdin++) scp_usage_error("standard input ('-') given twice");
    if (scp_output_check(out, 1, inputs, nin)) scp_usage_error("%s", scp_last_error());
    if (scp_output_replaceable(out, 1, "manifest.json", "shard set")) scp_usage_error("%s", scp_last_error());
    if (scp_file_exists(out) && !force) scp_die("%s: already exists (use --force to replace it)", out);

    char *tmp = scp_dir_begin(out);
    if (!tmp) scp_die_last();
    scp_shard_builder *b = scp_shard_builder_new(tmp, &o);
    if (!b) scp_die_last();
    for (int i = 0; i < nin; i++)
        if (add_stream(b, inputs[i])) scp_die_last();
    if (scp_shard_builder_finish(b)) scp_die_last();
    scp_shard_builder_free(b);
    if (scp_dir_commit(tmp, out, force)) scp_die_last();
    free(tmp);
    if (!quiet) print_summary(out, o.seq_len);
    return 0;
}
