/* scp-eval generate: text from a checkpoint, by iterative unmasking (diffusion checkpoints) or next-token
 * decoding (causal ones); one sample is lib/eval/generate.c, the sampler lib/eval/sampler.c. Text (or JSONL) on
 * stdout. */
#include "scp-eval.h"

#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "eval/generate.h"
#include "eval/sampler.h"
#include "tok/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn static void usage(void)
{
    printf("Usage: %s --model CKPT (--prompt TEXT | --prompts FILE.jsonl) [OPTIONS]\n"
           "Generate text: iterative unmasking for diffusion checkpoints, next-token decoding for causal ones.\n\n"
           "  -m, --model CKPT        checkpoint directory (with its tokenizer)\n"
           "  -p, --prompt TEXT       the prompt; '<|mask|>' in it marks positions to fill in (infill)\n"
           "      --prompts FILE      JSONL, one object per line with \"prompt\" (and optional \"suffix\"); '-' is stdin\n"
           "      --suffix TEXT       text after the generated span (infill between prompt and suffix)\n"
           "  -n, --length N          tokens to generate (default 64; 0 with infill masks only)\n"
           "      --steps N           diffusion: model calls (default: the length)\n"
           "      --block N           diffusion: semi-autoregressive blocks of N positions (default: one block)\n"
           "      --order NAME        diffusion: low-confidence (default), margin, entropy or random\n"
           "      --temperature T     0 (default) decodes greedily\n"
           "      --top-k K           sample among the K most likely tokens (default off)\n"
           "      --top-p P           nucleus sampling (default 1: off)\n"
           "  -s, --seed S            random seed (default 1)\n"
           "      --at-eos stop|fill|ignore  stop: text ends at the first EOS (default); fill: generated\n"
           "                          positions after a committed EOS become EOS (LLaDA); ignore: an ordinary token\n"
           "      --mode auto|ar|diffusion  (default auto: config.json is_causal decides)\n"
           "      --no-bos            do not put BOS before the prompt\n"
           "      --shift, --no-shift logit shift (default: config.json shift_logits)\n"
           "  -M, --mask-id ID        mask token (default: config.json mask_token_id)\n"
           "      --jsonl             one JSON object per prompt (text, completion, ids, filled positions, steps,\n"
           "                          seconds)\n"
           "      --show              redraw the canvas on stderr as it fills in (a terminal only)\n"
           "  -j, --threads N         threads (default: all cores)\n"
           "      --backend NAME      compute backend: cpu (default), cpu-bf16, cuda (bf16), cuda-fp32\n"
           "  -h, --help              this help\n"
           "  -V, --version           version and features\n",
           scp_progname());
    scp_cli_exit_stdout();
}

static const scp_opt_id opt_ids[] = {
    SCP_EVAL_MODEL_OPTS, SCP_OPT_PROMPT, SCP_OPT_PROMPTS, SCP_OPT_SUFFIX, SCP_OPT_LENGTH, SCP_OPT_STEPS, SCP_OPT_BLOCK,
    SCP_OPT_ORDER, SCP_OPT_TEMPERATURE, SCP_OPT_TOP_K, SCP_OPT_TOP_P, SCP_OPT_SEED, SCP_OPT_AT_EOS, SCP_OPT_JSONL,
    SCP_OPT_SHOW, SCP_OPT_HELP, SCP_OPT_VERSION, SCP_OPT_END};
static const scp_cli_alias old_spellings[] = {{"eos", 0, SCP_OPT_AT_EOS}, SCP_EVAL_OLD_THREADS, {NULL, 0, 0}};

typedef struct gen_args {
    const char *prompt, *prompts, *suffix;
    int length, steps, jsonl, show;
    scp_eval_model em;
    scp_gen_opts o;
} gen_args;

static void gen_option(gen_args *a, int id, const char *arg)
{
    int v;
    switch (id) {
    case SCP_OPT_PROMPT: a->prompt = arg; break;
    case SCP_OPT_PROMPTS: a->prompts = arg; break;
    case SCP_OPT_SUFFIX: a->suffix = arg; break;
    case SCP_OPT_LENGTH: a->length = (int)scp_opt_int("--length", arg, 0, 1 << 20); break;
    case SCP_OPT_STEPS: a->steps = (int)scp_opt_int("--steps", arg, 1, 1 << 24); break;
    case SCP_OPT_BLOCK: a->o.block = (int)scp_opt_int("--block", arg, 1, 1 << 20); break;
    case SCP_OPT_ORDER:
        if ((v = scp_unmask_order_from_name(arg)) < 0)
            scp_usage_error("--order: '%s' is not low-confidence, margin, entropy or random", arg);
        a->o.order = (scp_unmask_order)v;
        break;
    case SCP_OPT_TEMPERATURE: a->o.temperature = (float)scp_opt_double("--temperature", arg, 0, 100); break;
    case SCP_OPT_TOP_K: a->o.top_k = (int)scp_opt_int("--top-k", arg, 0, INT32_MAX); break;
    case SCP_OPT_TOP_P: a->o.top_p = (float)scp_opt_double("--top-p", arg, 1e-6, 1); break;
    case SCP_OPT_SEED: a->o.seed = (uint64_t)scp_opt_int("--seed", arg, 0, INT64_MAX); break;
    case SCP_OPT_AT_EOS:
        if (!strcmp(arg, "stop")) a->o.eos = SCP_EOS_STOP;
        else if (!strcmp(arg, "fill")) a->o.eos = SCP_EOS_FILL;
        else if (!strcmp(arg, "ignore")) a->o.eos = SCP_EOS_IGNORE;
        else scp_usage_error("--at-eos: '%s' is not stop, fill or ignore", arg);
        break;
    case SCP_OPT_JSONL: a->jsonl = 1; break;
    case SCP_OPT_SHOW: a->show = 1; break;
    case SCP_OPT_HELP: usage();
    case SCP_OPT_VERSION: scp_cli_version();
    default:
        if (!scp_eval_model_option(&a->em, id, arg)) abort();   /* an id of opt_ids that nothing handles */
    }
}

static void gen_parse(int argc, char **argv, gen_args *a)
{
    memset(a, 0, sizeof *a);
    a->length = 64;
    scp_eval_model_defaults(&a->em);
    scp_gen_opts_default(&a->o);
    scp_cli c;
    scp_cli_begin(&c, opt_ids, old_spellings);
    for (int id; (id = scp_cli_next(&c, argc, argv)) >= 0;) gen_option(a, id, optarg);
    scp_cli_end(&c);
    if (optind < argc) scp_usage_error("unexpected argument '%s'", argv[optind]);
    if (!a->em.path) scp_usage_error("--model CKPT is required");
    if (!a->prompt == !a->prompts) scp_usage_error("give one of --prompt TEXT or --prompts FILE");
    if (a->prompts && a->suffix) scp_usage_error("--suffix goes with --prompt (put \"suffix\" in the JSONL lines)");
}

/* --show: decode runs of committed tokens, draw masks as a shaded block. */
typedef struct gen_show {
    const scp_tokenizer *tok;
    int32_t mask_id;
    int on;
} gen_show;

static void show_step(void *ud, const int32_t *canvas, int n, int step)
{
    gen_show *g = ud;
    if (!g->on) return;
    fprintf(stderr, "\033[H\033[2J[step %d]\n", step);
    for (int i = 0; i < n;) {
        if (canvas[i] == g->mask_id) {
            fputs("\xe2\x96\x91", stderr);
            i++;
            continue;
        }
        int j = i;
        while (j < n && canvas[j] != g->mask_id) j++;
        size_t len;
        char *s = scp_tokenizer_decode(g->tok, canvas + i, (size_t)(j - i), 1, &len);
        if (s) fwrite(s, 1, len, stderr);
        free(s);
        i = j;
    }
    fputc('\n', stderr);
    fflush(stderr);
}

/* One sample on stdout: its text, or with --jsonl its JSON line. */
static void print_sample(const gen_args *a, const char *prompt, const scp_gen_sample *s)
{
    if (!a->jsonl) {
        fwrite(s->text, 1, s->text_len, stdout);
        putchar('\n');
        if (fflush(stdout) != 0 || ferror(stdout)) scp_die("<stdout>: write error");
        return;
    }
    json_t *ids = json_array(), *filled = json_array();
    for (int i = 0; i < s->n; i++) json_array_append_new(ids, json_integer(s->ids[i]));
    for (int i = 0; i < s->n_filled; i++) json_array_append_new(filled, json_integer(s->filled[i]));
    json_t *out = json_pack("{s:s, s:s%, s:s%, s:o, s:i, s:o, s:s, s:i, s:f}", "prompt", prompt, "text", s->text,
                            s->text_len, "completion", s->completion, s->completion_len, "ids", ids, "prompt_tokens",
                            s->prompt_tokens, "filled", filled, "mode", a->em.ar ? "ar" : "diffusion", "steps",
                            s->calls, "seconds", s->seconds);
    if (!out) scp_die("generate: the output is not valid UTF-8 (use the ids)");
    if (scp_json_print(out, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6))) scp_die_last();
    json_decref(out);
}

int scp_eval_generate_main(int argc, char **argv)
{
    gen_args a;
    gen_parse(argc, argv, &a);
    if (scp_eval_model_open(&a.em)) scp_die_last();
    const scp_model_config *cfg = &a.em.m->cfg;
    a.o.mask_id = a.em.mask_id;
    a.o.eos_id = cfg->eos_token_id >= 0 ? cfg->eos_token_id : scp_tokenizer_eos_id(a.em.tok);
    a.o.shift = a.em.shift;
    a.o.attn = SCP_ATTN_BIDIRECTIONAL;
    a.o.steps = a.steps ? a.steps : a.length > 0 ? a.length : 16;
    /* BOS and --length alone must fit the positions, before any prompt is read. */
    if (scp_eval_check_length(cfg, a.em.path, (int64_t)(a.em.bos >= 0) + a.length, a.em.ar, "--length")) scp_die_last();
    gen_show g = {a.em.tok, a.o.mask_id, a.show && isatty(2)};
    a.o.on_step = show_step;
    a.o.ud = &g;

    FILE *pf = a.prompts ? scp_fopen_in(a.prompts) : NULL;
    if (a.prompts && !pf) scp_die_last();
    char *line = NULL;
    size_t lcap = 0;
    long lineno = 0;
    for (;;) {
        const char *ptext = a.prompt, *stext = a.suffix;
        json_t *j = NULL;
        if (pf) {
            ssize_t r = getline(&line, &lcap, pf);
            if (r < 0) break;
            lineno++;
            if (strspn(line, " \t\r\n") == (size_t)r) continue;
            char what[64];
            snprintf(what, sizeof what, "line %ld", lineno);
            j = scp_json_parse(line, (size_t)r, what);
            if (!j || scp_json_get_str(j, "prompt", &ptext, a.prompts) < 0 ||
                scp_json_get_str(j, "suffix", &stext, a.prompts) < 0)
                scp_die("%s: %s", a.prompts, scp_last_error());
            if (!ptext) scp_die("%s: line %ld has no \"prompt\" string", a.prompts, lineno);
        }
        scp_gen_sample s;
        if (scp_gen_sample_make(&a.em, &a.o, ptext, stext, a.length, &s)) scp_die_last();
        if (g.on) fputs("\033[H\033[2J", stderr);
        print_sample(&a, ptext, &s);
        scp_gen_sample_free(&s);
        json_decref(j);
        if (!pf) break;
    }
    free(line);
    if (pf) scp_fclose_in(pf);
    scp_eval_model_close(&a.em);
    return 0;
}
