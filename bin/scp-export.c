/* scp-export: a checkpoint directory -> a Hugging Face directory or a GGUF file (lib/convert/export*.c). */
#include "core/cli.h"
#include "core/error.h"
#include "convert/export.h"
#include "core/io.h"
#include "core/options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn static void usage(void)
{
    printf("Usage: %s --format hf|gguf -o OUT [OPTIONS] CHECKPOINT\n"
           "Write a checkpoint directory as a Hugging Face model directory or a GGUF file for llama.cpp.\n\n"
           "      --format hf|gguf   output form (default: gguf when OUT ends in .gguf, else hf)\n"
           "  -o, --output OUT       the directory (hf) or file (gguf) to write\n"
           "      --dtype TYPE       f32 (default) or bf16 for hf; f32, f16 or bf16 for gguf matrices\n"
           "      --arch NAME        GGUF general.architecture (default: llada for Llama, dream for Qwen2, rnd1\n"
           "                         for Qwen3-MoE diffusion checkpoints; llama, qwen2, qwen3, qwen3moe otherwise)\n"
           "      --name NAME        GGUF general.name (default: the checkpoint's directory name)\n"
           "      --causal, --bidirectional  mark the export causal or not (default: config.json is_causal)\n"
           "      --shift, --no-shift  logit shift in the export (default: config.json shift_logits)\n"
           "  -f, --force            replace an existing output\n"
           "  -q, --quiet            no summary line on stderr\n"
           "  -h, --help             show this help and exit\n"
           "  -V, --version          show the version and the compiled-in features and exit\n"
           "Deprecated: -d (--dtype), -F (-f, --force). -f is --force: --format has no short option.\n",
           scp_progname());
    scp_cli_exit_stdout();
}

static scp_dtype parse_dtype(const char *s)
{
    if (!strcmp(s, "f32") || !strcmp(s, "F32") || !strcmp(s, "float32")) return SCP_F32;
    if (!strcmp(s, "f16") || !strcmp(s, "F16") || !strcmp(s, "float16")) return SCP_F16;
    if (!strcmp(s, "bf16") || !strcmp(s, "BF16") || !strcmp(s, "bfloat16")) return SCP_BF16;
    scp_usage_error("--dtype: '%s' is not f32, f16 or bf16", s);
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    scp_cleanup_on_signals();
    static const scp_opt_id ids[] = {SCP_OPT_FORMAT, SCP_OPT_OUTPUT, SCP_OPT_DTYPE, SCP_OPT_ARCH, SCP_OPT_NAME,
                                     SCP_OPT_CAUSAL, SCP_OPT_BIDIRECTIONAL, SCP_OPT_SHIFT, SCP_OPT_NO_SHIFT, SCP_OPT_FORCE,
                                     SCP_OPT_QUIET, SCP_OPT_HELP, SCP_OPT_VERSION, SCP_OPT_END};
    static const scp_cli_alias old[] = {{NULL, 'd', SCP_OPT_DTYPE}, {NULL, 'F', SCP_OPT_FORCE}, {0}};
    const char *format = NULL, *out = NULL;
    int quiet = 0;
    scp_export_opts o = {.dtype = SCP_DTYPE_INVALID, .causal = -1, .shift = -1};
    scp_cli c;
    scp_cli_begin(&c, ids, old);
    static const scp_cli_instead instead[] = {{SCP_OPT_MODEL, "the checkpoint is the operand: scp-export -o OUT CHECKPOINT"}, {0}};
    c.instead = instead;
    for (int id; (id = scp_cli_next(&c, argc, argv)) >= 0;) {
        switch (id) {
        case SCP_OPT_FORMAT:
            if (strcmp(optarg, "hf") && strcmp(optarg, "gguf")) scp_usage_error("--format: '%s' is not hf or gguf", optarg);
            format = optarg;
            break;
        case SCP_OPT_OUTPUT: out = optarg; break;
        case SCP_OPT_DTYPE: o.dtype = parse_dtype(optarg); break;
        case SCP_OPT_ARCH: o.arch = optarg; break;
        case SCP_OPT_NAME: o.name = optarg; break;
        case SCP_OPT_CAUSAL: o.causal = 1; break;
        case SCP_OPT_BIDIRECTIONAL: o.causal = 0; break;
        case SCP_OPT_SHIFT: o.shift = 1; break;
        case SCP_OPT_NO_SHIFT: o.shift = 0; break;
        case SCP_OPT_FORCE: o.replace = 1; break;
        case SCP_OPT_QUIET: quiet = 1; break;
        case SCP_OPT_HELP: usage();
        case SCP_OPT_VERSION: scp_cli_version();
        }
    }
    scp_cli_end(&c);
    if (optind != argc - 1) scp_usage_error(optind < argc ? "give exactly one CHECKPOINT" : "a CHECKPOINT directory is required");
    if (!out) scp_usage_error("-o OUT is required");
    if (!strcmp(out, "-")) scp_usage_error("-o -: the output is a directory or a GGUF file, not standard output");
    if (!format) {
        size_t n = strlen(out);
        format = n > 5 && !strcmp(out + n - 5, ".gguf") ? "gguf" : "hf";
    }
    int gguf = !strcmp(format, "gguf");
    if (!gguf && o.arch) scp_usage_error("--arch goes with --format gguf");
    if (!gguf && o.dtype == SCP_F16) scp_usage_error("--dtype f16: the hf form is f32 or bf16");

    const char *inputs[] = {argv[optind]};
    if (scp_output_check(out, !gguf, inputs, 1)) scp_usage_error("%s", scp_last_error());
    if (scp_output_replaceable(out, !gguf, "config.json", gguf ? "GGUF" : "model directory"))
        scp_usage_error("%s", scp_last_error());

    scp_export_src s;
    if (scp_export_open(&s, argv[optind])) scp_die_last();
    if (gguf && !o.replace && scp_file_exists(out)) scp_die("%s: already exists (use --force to replace it)", out);
    if ((gguf ? scp_export_gguf(&s, &o, out) : scp_export_hf(&s, &o, out))) scp_die_last();
    if (!quiet) {
        int dr = 0;
        scp_model_config cc = s.cfg;
        if (o.causal >= 0) cc.causal = o.causal;
        const char *arch = gguf ? (o.arch ? o.arch : scp_export_gguf_arch(&cc, &dr)) : scp_arch_name(s.cfg.arch);
        fprintf(stderr, "%s: %s -> %s: %s %s, %d tensors, %s%s\n", scp_progname(), argv[optind], out, gguf ? "GGUF" : "HF", arch, s.n,
                cc.causal ? "causal" : "bidirectional",
                gguf && !cc.causal && !dr ? " (llama.cpp's diffusion runner does not know this architecture)" : "");
    }
    scp_export_close(&s);
    return 0;
}
