/* scp-import: an HF model directory, a llama2.c checkpoint or a GGUF file -> a checkpoint directory
 * (scp-import(1), scp-checkpoint(5)). */
#include "core/cli.h"
#include "core/error.h"
#include "convert/import.h"
#include "core/io.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn static void usage(void)
{
    printf("Usage: %s [OPTIONS] SOURCE -o DIR\n"
           "       %s --info SOURCE|DIR\n"
           "Import a pretrained model as a checkpoint directory (Hugging Face layout plus the SCP keys).\n"
           "SOURCE is a Hugging Face model directory, a llama2.c checkpoint (with --tokenizer) or a GGUF file.\n"
           "\n"
           "  -o, --output DIR         write the checkpoint directory DIR (atomically)\n"
           "  -t, --tokenizer FILE     the llama2.c tokenizer.bin of a llama2.c checkpoint\n"
           "  -m, --mask-token auto|ID the mask token: auto (default) takes the first padded embedding row\n"
           "                           beyond the tokenizer's vocabulary, else appends a row; or an explicit id\n"
           "  -d, --dtype keep|f32|bf16  the stored weight type (default keep)\n"
           "  -i, --info               print a JSON summary of SOURCE or DIR and exit\n"
           "  -f, --force              replace DIR if it exists\n"
           "  -q, --quiet              no summary line on stderr\n"
           "  -h, --help               show this help and exit\n"
           "  -V, --version            show the version and the compiled-in features and exit\n",
           scp_progname(), scp_progname());
    exit(0);
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"tokenizer", required_argument, 0, 't'},
        {"mask-token", required_argument, 0, 'm'}, {"dtype", required_argument, 0, 'd'},
        {"info", no_argument, 0, 'i'}, {"force", no_argument, 0, 'f'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    const char *out = NULL, *tok = NULL;
    int mask = -1, info = 0, force = 0, quiet = 0, c;
    scp_dtype dt = SCP_DTYPE_INVALID;
    while ((c = getopt_long(argc, argv, "o:t:m:d:ifqhV", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 't': tok = optarg; break;
        case 'm': mask = strcmp(optarg, "auto") == 0 ? -1 : (int)scp_opt_int("--mask-token", optarg, 0, INT32_MAX - 1); break;
        case 'd':
            if (strcmp(optarg, "keep") == 0) dt = SCP_DTYPE_INVALID;
            else if (strcmp(optarg, "f32") == 0) dt = SCP_F32;
            else if (strcmp(optarg, "bf16") == 0) dt = SCP_BF16;
            else scp_usage_error("--dtype: '%s' is not one of keep, f32, bf16", optarg);
            break;
        case 'i': info = 1; break;
        case 'f': force = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage();
        case 'V': scp_cli_version();
        default: scp_usage_error("unknown option");
        }
    }
    if (optind + 1 != argc) scp_usage_error(optind == argc ? "missing SOURCE" : "one SOURCE at a time");
    const char *src = argv[optind];
    if (strcmp(src, "-") == 0) scp_usage_error("SOURCE must be a file or a directory (a model is not read from standard input)");
    if (!info && !out) scp_usage_error("missing -o DIR");
    if (info && out) scp_usage_error("--info prints a summary; it writes no DIR");
    if (out && !force && scp_file_exists(out)) scp_die("%s: already exists (use --force to replace it)", out);

    scp_import im;
    if (scp_import_open(&im, src, tok) || scp_import_validate(&im)) scp_die_last();
    if (info) {
        json_t *j = scp_import_info(&im);
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
        json_decref(j);
        scp_import_free(&im);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (im.tok_form == SCP_TOK_NONE && strcmp(im.kind, "llama2c") == 0)
        scp_die("%s: a llama2.c checkpoint needs its tokenizer: --tokenizer tokenizer.bin", src);
    if (scp_import_set_mask(&im, mask) || scp_import_convert(&im, dt) || scp_import_write(&im, out, force)) scp_die_last();
    if (!quiet)
        fprintf(stderr, "%s: %s -> %s: %s, %lld parameters, vocabulary %d, mask token %d\n", scp_progname(), src, out,
                scp_arch_name(im.cfg.arch), (long long)scp_param_count(&im.cfg), im.cfg.vocab_size, im.cfg.mask_token_id);
    scp_import_free(&im);
    return 0;
}
