/* scp-shard: pack token streams into a shard set (man 1 scp-shard, format in man 5 scp-shards); --info and
 * --verify inspect one. */
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "data/shard.h"
#include "data/shard_write.h"

#include <getopt.h>
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
           "  -V, --val-tokens N        hold out at least N tokens, as whole documents (suffixes k M G)\n"
           "  -j, --threads N           shard writers (default: the number of CPUs; the bytes do not depend on it)\n"
           "  -f, --force               replace DIR if it exists\n"
           "  -i, --info DIR            print a JSON summary of a shard set\n"
           "  -c, --verify DIR          check every header and CRC32; exit 1 naming the first bad shard\n"
           "  -q, --quiet               no summary line on stderr\n"
           "  -h, --help                show this help\n"
           "      --version             show the version and compiled-in features\n",
           scp_progname(), scp_progname());
    exit(0);
}

/* --info: the manifest's figures, after checking every header against it. */
static int info(const char *dir)
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
    char *s = json_dumps(out, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    printf("%s\n", s);
    free(s);
    json_decref(out);
    json_decref(m);
    return fflush(stdout) ? scp_error("<stdout>: write error") : 0;
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    enum { OPT_VERSION = 256, OPT_NO_SHUFFLE };
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},   {"seq-len", required_argument, 0, 'L'},
        {"shard-tokens", required_argument, 0, 'S'}, {"seed", required_argument, 0, 's'},
        {"no-shuffle", no_argument, 0, OPT_NO_SHUFFLE}, {"val-fraction", required_argument, 0, 'v'},
        {"val-tokens", required_argument, 0, 'V'}, {"threads", required_argument, 0, 'j'},
        {"force", no_argument, 0, 'f'},           {"info", required_argument, 0, 'i'},
        {"verify", required_argument, 0, 'c'},    {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},            {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0}};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    scp_shard_opts o = {.seq_len = 2048, .shard_tokens = 16000000, .seed = 0, .shuffle = 1,
                        .threads = ncpu > 0 ? (int)ncpu : 1, .progress = 1};
    const char *out = NULL, *info_dir = NULL, *verify_dir = NULL;
    int force = 0, quiet = 0, c;
    while ((c = getopt_long(argc, argv, "o:L:S:s:v:V:j:fi:c:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'L': o.seq_len = (int)scp_opt_int("--seq-len", optarg, 1, 1 << 24); break;
        case 'S': o.shard_tokens = scp_opt_count("--shard-tokens", optarg, 1, (int64_t)1 << 40); break;
        case 's': o.seed = (uint64_t)scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case OPT_NO_SHUFFLE: o.shuffle = 0; break;
        case 'v': o.val_fraction = scp_opt_double("--val-fraction", optarg, 0, 0.99); break;
        case 'V': o.val_tokens = scp_opt_count("--val-tokens", optarg, 0, INT64_MAX); break;
        case 'j': o.threads = (int)scp_opt_int("--threads", optarg, 1, 1024); break;
        case 'f': force = 1; break;
        case 'i': info_dir = optarg; break;
        case 'c': verify_dir = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage();
        case OPT_VERSION: scp_cli_version();
        default: scp_usage_error("unknown option");
        }
    }
    if (info_dir || verify_dir) {
        if (info_dir && verify_dir) scp_usage_error("--info and --verify are separate commands");
        if (out || optind < argc) scp_usage_error("--info and --verify take only a shard set directory");
        if (info_dir) {
            if (info(info_dir)) scp_die_last();
            return 0;
        }
        if (scp_shardset_verify(verify_dir)) scp_die_last();
        if (!quiet) fprintf(stderr, "%s: %s: every shard header and CRC32 is good\n", scp_progname(), verify_dir);
        return 0;
    }
    if (!out) scp_usage_error("no output directory (-o DIR)");
    if (o.val_fraction > 0 && o.val_tokens > 0) scp_usage_error("give --val-fraction or --val-tokens, not both");
    if (strcmp(out, "-") == 0) scp_usage_error("a shard set is a directory: -o - is not possible");
    if (scp_file_exists(out) && !force) scp_die("%s: already exists (use --force to replace it)", out);

    char *tmp = scp_dir_begin(out);
    if (!tmp) scp_die_last();
    scp_shard_builder *b = scp_shard_builder_new(tmp, &o);
    if (!b) scp_die_last();
    int nin = argc - optind, used_stdin = 0;
    for (int i = 0; i < (nin ? nin : 1); i++) {
        const char *in = nin ? argv[optind + i] : "-";
        if (strcmp(in, "-") == 0) {
            if (used_stdin++) scp_usage_error("standard input ('-') given twice");
            if (isatty(STDIN_FILENO)) scp_die("refusing to read a binary token stream from a terminal (give STREAM or a pipe)");
        }
        FILE *f = scp_fopen_in(in);
        if (!f) scp_die_last();
        setvbuf(f, NULL, _IOFBF, 1 << 20);
        int rc = scp_shard_builder_add(b, f, strcmp(in, "-") ? in : "<stdin>");
        scp_fclose_in(f);
        if (rc) scp_die_last();
    }
    if (scp_shard_builder_finish(b)) scp_die_last();
    scp_shard_builder_free(b);
    if (scp_dir_commit(tmp, out, force)) scp_die_last();
    free(tmp);
    if (!quiet) {
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
                    o.seq_len, json_integer_value(json_object_get(x, "shards")));
        }
        json_decref(m);
    }
    return 0;
}
