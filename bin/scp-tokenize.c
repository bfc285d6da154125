/* scp-tokenize: text (plain, JSONL, gzip, archives) -> token stream (man 5 scp-tokens) or id lines; --decode
 * turns a token stream or id lines back into text. The engine is lib/data/tokenize.c: the output is the same
 * bytes for any -j. */
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "core/options.h"
#include "core/progress.h"
#include "data/tokenize.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn static void usage(void)
{
    printf("Usage: scp-tokenize (-m DIR | -t FILE) [OPTION]... [FILE]...\n"
           "Tokenize documents from FILEs (or standard input) into a token stream (man 5 scp-tokens).\n"
           "FILEs may be plain text or JSONL, compressed (gzip, zstd, xz, bzip2) or archives (tar, zip, ...).\n"
           "\n"
           "  -m, --model DIR          take the tokenizer from a checkpoint directory\n"
           "  -t, --tokenizer FILE     tokenizer.json, SentencePiece .model, llama2.c tokenizer.bin,\n"
           "                           or GPT-2 encoder.json (with vocab.bpe beside it)\n"
           "  -o, --output FILE        write here (default '-': standard output, refused on a terminal\n"
           "                           for the binary stream)\n"
           "      --format FMT         stream (default: binary token stream) or ids (a document per line,\n"
           "                           ids separated by spaces)\n"
           "      --doc MODE           a text document is a whole file, a line (default) or a paragraph\n"
           "                           (lines between blank lines)\n"
           "      --input-format FMT   auto (default: JSONL for *.jsonl, *.ndjson, *.json), text or jsonl\n"
           "  -k, --field NAME         JSONL key of the text (default 'text'); implies --input-format jsonl\n"
           "                           unless one is given\n"
           "  -b, --bos                add the tokenizer's BOS before each document\n"
           "  -e, --eos                add the tokenizer's EOS after each document\n"
           "  -N, --no-special         treat special tokens written in the text as plain text\n"
           "  -D, --decode             decode token streams or id lines (FILEs) back to text, a document\n"
           "                           per line\n"
           "      --skip-special       with --decode: leave special tokens out\n"
           "  -j, --threads N          encoding threads (default: all processors); output is the same for any N\n"
           "      --skip-bad           skip bad JSONL lines and unreadable members or files, counting them,\n"
           "                           instead of stopping\n"
           "  -q, --quiet              no summary line\n"
           "  -h, --help               show this help and exit\n"
           "  -V, --version            show the version and exit\n"
           "\n"
           "Progress is shown on standard error when it is a terminal; a summary line ends the run.\n"
           "Deprecated: -f (--format), -d (--doc), -i (--input-format), -S (--skip-special), -s (--skip-bad).\n");
    scp_cli_exit_stdout();
}

/* The value of --NAME among `names` (its index), or a usage error listing them. */
static int choice(const char *opt, const char *arg, const char *const *names, int n, const char *list)
{
    for (int i = 0; i < n; i++)
        if (strcmp(arg, names[i]) == 0) return i;
    scp_usage_error("%s must be %s, not '%s'", opt, list, arg);
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    static const scp_opt_id ids[] = {
        SCP_OPT_MODEL, SCP_OPT_TOKENIZER, SCP_OPT_OUTPUT, SCP_OPT_FORMAT, SCP_OPT_DOC, SCP_OPT_INPUT_FORMAT, SCP_OPT_FIELD,
        SCP_OPT_BOS, SCP_OPT_EOS, SCP_OPT_NO_SPECIAL, SCP_OPT_DECODE, SCP_OPT_SKIP_SPECIAL, SCP_OPT_THREADS,
        SCP_OPT_SKIP_BAD, SCP_OPT_QUIET, SCP_OPT_HELP, SCP_OPT_VERSION, SCP_OPT_END};
    static const scp_cli_alias old[] = {
        {NULL, 'f', SCP_OPT_FORMAT}, {NULL, 'd', SCP_OPT_DOC}, {NULL, 'i', SCP_OPT_INPUT_FORMAT},
        {NULL, 'S', SCP_OPT_SKIP_SPECIAL}, {NULL, 's', SCP_OPT_SKIP_BAD}, {0}};
    static const char *const formats[] = {"stream", "ids"}, *const docs[] = {"file", "line", "paragraph"},
                             *const input_formats[] = {"auto", "text", "jsonl"};
    const char *model = NULL, *tokpath = NULL, *output = "-";
    int decode = 0, skip_special = 0, quiet = 0, input_format_given = 0;
    scp_tokenize_opts o = {.input = {SCP_DOC_LINE, SCP_IN_AUTO, "text", 0}, .special = 1,
                           .threads = (int)sysconf(_SC_NPROCESSORS_ONLN)};
    scp_cli c;
    scp_cli_begin(&c, ids, old);
    for (int id; (id = scp_cli_next(&c, argc, argv)) >= 0;) {
        switch (id) {
        case SCP_OPT_MODEL: model = optarg; break;
        case SCP_OPT_TOKENIZER: tokpath = optarg; break;
        case SCP_OPT_OUTPUT: output = optarg; break;
        case SCP_OPT_FORMAT: o.ids = choice("--format", optarg, formats, 2, "'stream' or 'ids'"); break;
        case SCP_OPT_DOC: o.input.doc = choice("--doc", optarg, docs, 3, "'file', 'line' or 'paragraph'"); break;
        case SCP_OPT_INPUT_FORMAT:
            input_format_given = 1;
            o.input.format = choice("--input-format", optarg, input_formats, 3, "'auto', 'text' or 'jsonl'");
            break;
        case SCP_OPT_FIELD:
            if (!*optarg) scp_usage_error("--field needs a name");
            o.input.field = optarg;
            if (!input_format_given) o.input.format = SCP_IN_JSONL;
            break;
        case SCP_OPT_BOS: o.bos = 1; break;
        case SCP_OPT_EOS: o.eos = 1; break;
        case SCP_OPT_NO_SPECIAL: o.special = 0; break;
        case SCP_OPT_DECODE: decode = 1; break;
        case SCP_OPT_SKIP_SPECIAL: skip_special = 1; break;
        case SCP_OPT_THREADS: o.threads = (int)scp_opt_int("--threads", optarg, 0, 1024); break;
        case SCP_OPT_SKIP_BAD: o.input.skip_bad = 1; break;
        case SCP_OPT_QUIET: quiet = 1; break;
        case SCP_OPT_HELP: usage();
        case SCP_OPT_VERSION: scp_cli_version();
        }
    }
    scp_cli_end(&c);
    if (!!model + !!tokpath != 1) scp_usage_error("give exactly one of --model DIR or --tokenizer FILE");
    if (o.threads <= 0) o.threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (o.threads <= 0) o.threads = 1;
    o.tok_name = model ? model : tokpath;
    int nin = argc - optind;
    const char *stdin_only[] = {"-"};
    const char *const *inputs = nin ? (const char *const *)argv + optind : stdin_only;
    if (!nin) nin = 1;
    /* The output must not be one of the inputs, nor the tokenizer. */
    const char **all = scp_xmalloc(sizeof *all * (size_t)(nin + 1));
    memcpy(all, inputs, sizeof *all * (size_t)nin);
    all[nin] = o.tok_name;
    if (scp_output_check(output, 0, all, nin + 1)) scp_usage_error("%s", scp_last_error());
    free(all);

    scp_tokenizer *tok = scp_tokenizer_load(o.tok_name);
    if (!tok) scp_die_last();
    scp_out *so = scp_out_open(output, !decode && !o.ids);
    if (!so) scp_die_last();
    const char *oname = strcmp(output, "-") == 0 ? "<stdout>" : output;
    scp_tokenize_stats st = {0};
    double t0 = scp_now();
    int rc = 0;
    if (decode)
        for (int i = 0; i < nin && rc == 0; i++) rc = scp_detokenize(tok, o.tok_name, inputs[i], skip_special, so->f, oname, &st);
    else
        rc = scp_tokenize(tok, inputs, nin, &o, so->f, oname, &st);
    if (rc) {
        scp_out_abort(so);
        scp_die_last();
    }
    if (scp_out_commit(so)) scp_die_last();
    double el = scp_now() - t0;
    if (!quiet && decode)
        fprintf(stderr, "%s: decoded %" PRIu64 " documents, %" PRIu64 " tokens\n", scp_progname(), st.docs, st.tokens);
    else if (!quiet) {
        char skipped[64] = "";
        if (st.bad) snprintf(skipped, sizeof skipped, ", skipped %" PRIu64 " bad record%s", st.bad, st.bad == 1 ? "" : "s");
        fprintf(stderr, "%s: %" PRIu64 " documents, %" PRIu64 " tokens from %" PRIu64 " bytes of text in %.2f s (%.1f MB/s, %d thread%s)%s\n",
                scp_progname(), st.docs, st.tokens, st.bytes, el, (double)st.bytes / 1e6 / (el > 0 ? el : 1e-9), o.threads,
                o.threads == 1 ? "" : "s", skipped);
    }
    scp_tokenizer_free(tok);
    return 0;
}
