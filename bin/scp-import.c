/* scp-import: an HF model directory, a llama2.c checkpoint or a GGUF file -> a checkpoint directory
 * (scp-import(1), scp-checkpoint(5)). */
#include "core/cli.h"
#include "core/error.h"
#include "convert/import.h"
#include "core/io.h"
#include "core/json.h"
#include "core/options.h"

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
           "      --mask-token auto|ID the mask token: auto (default) takes the first padded embedding row\n"
           "                           beyond the tokenizer's vocabulary, else appends a row; or an explicit id\n"
           "      --dtype keep|f32|bf16  the stored weight type (default keep)\n"
           "      --info               print a JSON summary of SOURCE or DIR and exit\n"
           "  -f, --force              replace DIR if it exists\n"
           "  -q, --quiet              no summary line on stderr\n"
           "  -h, --help               show this help and exit\n"
           "  -V, --version            show the version and the compiled-in features and exit\n"
           "Deprecated: -m (--mask-token), -d (--dtype), -i (--info).\n",
           scp_progname(), scp_progname());
    scp_cli_exit_stdout();
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    static const scp_opt_id ids[] = {SCP_OPT_OUTPUT, SCP_OPT_TOKENIZER, SCP_OPT_MASK_TOKEN, SCP_OPT_DTYPE, SCP_OPT_INFO,
                                     SCP_OPT_FORCE, SCP_OPT_QUIET, SCP_OPT_HELP, SCP_OPT_VERSION, SCP_OPT_END};
    static const scp_cli_alias old[] = {
        {NULL, 'm', SCP_OPT_MASK_TOKEN}, {NULL, 'd', SCP_OPT_DTYPE}, {NULL, 'i', SCP_OPT_INFO}, {0}};
    const char *out = NULL, *tok = NULL;
    int mask = -1, info = 0, force = 0, quiet = 0;
    scp_dtype dt = SCP_DTYPE_INVALID;
    scp_cli c;
    scp_cli_begin(&c, ids, old);
    static const scp_cli_instead instead[] = {{SCP_OPT_MODEL, "the model to import is the operand: scp-import -o DIR SOURCE"}, {0}};
    c.instead = instead;
    for (int id; (id = scp_cli_next(&c, argc, argv)) >= 0;) {
        switch (id) {
        case SCP_OPT_OUTPUT: out = optarg; break;
        case SCP_OPT_TOKENIZER: tok = optarg; break;
        case SCP_OPT_MASK_TOKEN:
            mask = strcmp(optarg, "auto") == 0 ? -1 : (int)scp_opt_int("--mask-token", optarg, 0, INT32_MAX - 1);
            break;
        case SCP_OPT_DTYPE:
            if (strcmp(optarg, "keep") == 0) dt = SCP_DTYPE_INVALID;
            else if (strcmp(optarg, "f32") == 0) dt = SCP_F32;
            else if (strcmp(optarg, "bf16") == 0) dt = SCP_BF16;
            else scp_usage_error("--dtype: '%s' is not one of keep, f32, bf16", optarg);
            break;
        case SCP_OPT_INFO: info = 1; break;
        case SCP_OPT_FORCE: force = 1; break;
        case SCP_OPT_QUIET: quiet = 1; break;
        case SCP_OPT_HELP: usage();
        case SCP_OPT_VERSION: scp_cli_version();
        }
    }
    scp_cli_end(&c);
    if (optind + 1 != argc) scp_usage_error(optind == argc ? "missing SOURCE" : "one SOURCE at a time");
    const char *src = argv[optind];
    if (strcmp(src, "-") == 0) scp_usage_error("SOURCE must be a file or a directory (a model is not read from standard input)");
    if (!info && !out) scp_usage_error("missing -o DIR");
    if (info && out) scp_usage_error("--info prints a summary; it writes no DIR");
    const char *inputs[] = {src, tok};
    if (out && scp_output_check(out, 1, inputs, 2)) scp_usage_error("%s", scp_last_error());
    if (out && scp_output_replaceable(out, 1, "config.json", "checkpoint")) scp_usage_error("%s", scp_last_error());
    if (out && !force && scp_file_exists(out)) scp_die("%s: already exists (use --force to replace it)", out);

    scp_import im;
    if (scp_import_open(&im, src, tok) || scp_import_validate(&im)) scp_die_last();
    if (info) {
        json_t *j = scp_import_info(&im);
        int rc = scp_json_print(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(j);
        scp_import_free(&im);
        if (rc) scp_die_last();
        return 0;
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
