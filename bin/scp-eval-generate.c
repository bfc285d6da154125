/* scp-eval generate: text from a checkpoint, by iterative unmasking (diffusion checkpoints) or next-token
 * decoding (causal ones); the sampler is lib/eval/sampler.c. Text (or JSONL) on stdout. */
#include "scp-eval.h"

#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "model/model.h"
#include "core/progress.h"
#include "eval/sampler.h"
#include "tok/tokenizer.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { O_PROMPTS = 256, O_SUFFIX, O_STEPS, O_BLOCK, O_ORDER, O_TEMP, O_TOP_K, O_TOP_P, O_EOS, O_JSONL, O_SHOW };

static const struct option longopts[] = {
    SCP_EVAL_MODEL_LONGOPTS, {"prompt", required_argument, 0, 'p'}, {"prompts", required_argument, 0, O_PROMPTS},
    {"suffix", required_argument, 0, O_SUFFIX}, {"length", required_argument, 0, 'n'}, {"steps", required_argument, 0, O_STEPS},
    {"block", required_argument, 0, O_BLOCK}, {"order", required_argument, 0, O_ORDER},
    {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOP_K},
    {"top-p", required_argument, 0, O_TOP_P}, {"seed", required_argument, 0, 's'}, {"eos", required_argument, 0, O_EOS},
    {"jsonl", no_argument, 0, O_JSONL}, {"show", no_argument, 0, O_SHOW},
    {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};

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
           "      --eos stop|fill|ignore  stop: text ends at the first EOS (default); fill: generated positions\n"
           "                          after a committed EOS become EOS (LLaDA); ignore: an ordinary token\n"
           "      --mode auto|ar|diffusion  (default auto: config.json is_causal decides)\n"
           "      --no-bos            do not put BOS before the prompt\n"
           "      --shift, --no-shift logit shift (default: config.json shift_logits)\n"
           "      --mask-id ID        mask token (default: config.json mask_token_id)\n"
           "      --jsonl             one JSON object per prompt (text, completion, ids, filled positions, steps,\n"
           "                          seconds)\n"
           "      --show              redraw the canvas on stderr as it fills in (a terminal only)\n"
           "  -t, --threads N         threads (default: all cores)\n"
           "      --backend NAME      compute backend: cpu (default), cpu-bf16, cuda (bf16), cuda-fp32\n"
           "  -h, --help              this help\n"
           "  -V, --version           version and features\n",
           scp_progname());
    exit(0);
}

typedef struct gen_ctx {
    const scp_tokenizer *tok;
    int32_t mask_id;
    int show;
} gen_ctx;

/* --show: decode runs of committed tokens, draw masks as a shaded block. */
static void show_step(void *ud, const int32_t *canvas, int n, int step)
{
    gen_ctx *g = ud;
    if (!g->show) return;
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

static void append(int32_t **v, int *n, int *cap, const int32_t *x, int k)
{
    if (*n + k > *cap) {
        *cap = (*n + k) * 2 + 16;
        *v = scp_xrealloc(*v, (size_t)*cap * sizeof **v);
    }
    memcpy(*v + *n, x, (size_t)k * sizeof **v);
    *n += k;
}

static void encode(const scp_tokenizer *t, const char *text, int32_t **v, int *n, int *cap)
{
    int32_t *ids;
    size_t k;
    if (scp_tokenizer_encode(t, text, strlen(text), 1, &ids, &k)) scp_die_last();
    append(v, n, cap, ids, (int)k);
    free(ids);
}

int scp_eval_generate_main(int argc, char **argv)
{
    const char *prompt = NULL, *prompts = NULL, *suffix = NULL;
    int length = 64, steps = 0, jsonl = 0, show = 0, c, v;
    scp_eval_model em;
    scp_eval_model_defaults(&em);
    scp_gen_opts o;
    scp_gen_opts_default(&o);
    optind = 0;
    while ((c = getopt_long(argc, argv, "m:p:n:s:t:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': prompt = optarg; break;
        case O_PROMPTS: prompts = optarg; break;
        case O_SUFFIX: suffix = optarg; break;
        case 'n': length = (int)scp_opt_int("--length", optarg, 0, 1 << 20); break;
        case O_STEPS: steps = (int)scp_opt_int("--steps", optarg, 1, 1 << 24); break;
        case O_BLOCK: o.block = (int)scp_opt_int("--block", optarg, 1, 1 << 20); break;
        case O_ORDER:
            if ((v = scp_unmask_order_from_name(optarg)) < 0)
                scp_usage_error("--order: '%s' is not low-confidence, margin, entropy or random", optarg);
            o.order = (scp_unmask_order)v;
            break;
        case O_TEMP: o.temperature = (float)scp_opt_double("--temperature", optarg, 0, 100); break;
        case O_TOP_K: o.top_k = (int)scp_opt_int("--top-k", optarg, 0, INT32_MAX); break;
        case O_TOP_P: o.top_p = (float)scp_opt_double("--top-p", optarg, 1e-6, 1); break;
        case 's': o.seed = (uint64_t)scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case O_EOS:
            if (!strcmp(optarg, "stop")) o.eos = SCP_EOS_STOP;
            else if (!strcmp(optarg, "fill")) o.eos = SCP_EOS_FILL;
            else if (!strcmp(optarg, "ignore")) o.eos = SCP_EOS_IGNORE;
            else scp_usage_error("--eos: '%s' is not stop, fill or ignore", optarg);
            break;
        case O_JSONL: jsonl = 1; break;
        case O_SHOW: show = 1; break;
        case 'h': usage();
        case 'V': scp_cli_version();
        default:
            if (!scp_eval_model_option(&em, c, optarg)) scp_usage_error("unknown option");
        }
    }
    if (optind < argc) scp_usage_error("unexpected argument '%s'", argv[optind]);
    if (!em.path) scp_usage_error("--model CKPT is required");
    if (!prompt == !prompts) scp_usage_error("give one of --prompt TEXT or --prompts FILE");
    if (prompts && suffix) scp_usage_error("--suffix goes with --prompt (put \"suffix\" in the JSONL lines)");

    scp_eval_model_open(&em);
    scp_model *m = em.m;
    const scp_tokenizer *tok = em.tok;
    int ar = em.ar, bos = em.bos;
    o.mask_id = em.mask_id;
    o.eos_id = m->cfg.eos_token_id >= 0 ? m->cfg.eos_token_id : scp_tokenizer_eos_id(tok);
    o.shift = em.shift;
    o.attn = SCP_ATTN_BIDIRECTIONAL;
    if (!steps) steps = length > 0 ? length : 16;
    o.steps = steps;
    gen_ctx g = {tok, o.mask_id, show && isatty(2)};
    o.on_step = show_step;
    o.ud = &g;

    FILE *pf = prompts ? scp_fopen_in(prompts) : NULL;
    if (prompts && !pf) scp_die_last();
    char *line = NULL;
    size_t lcap = 0;
    long lineno = 0;
    for (;;) {
        const char *ptext = prompt, *stext = suffix;
        json_t *j = NULL;
        if (pf) {
            ssize_t r = getline(&line, &lcap, pf);
            if (r < 0) break;
            lineno++;
            if (strspn(line, " \t\r\n") == (size_t)r) continue;
            char what[64];
            snprintf(what, sizeof what, "line %ld", lineno);
            j = scp_json_parse(line, (size_t)r, what);
            if (!j || scp_json_get_str(j, "prompt", &ptext, prompts) < 0 || scp_json_get_str(j, "suffix", &stext, prompts) < 0)
                scp_die("%s: %s", prompts, scp_last_error());
            if (!ptext) scp_die("%s: line %ld has no \"prompt\" string", prompts, lineno);
        }
        int32_t *ids = NULL;
        int n = 0, cap = 0;
        if (bos >= 0) append(&ids, &n, &cap, (int32_t *)&bos, 1);
        encode(tok, ptext, &ids, &n, &cap);
        int np = n, calls = 0;
        json_t *filled = json_array();   /* the positions the model filled in */
        double t0 = scp_now();
        if (ar) {
            for (int i = 0; i < n; i++)
                if (ids[i] == o.mask_id) scp_die("%s: the prompt holds mask tokens, which a causal model cannot fill (use --mode diffusion)", em.path);
            if (stext) scp_die("--suffix needs diffusion decoding (--mode diffusion)");
            ids = scp_xrealloc(ids, (size_t)(n + length + 1) * sizeof *ids);
            n = scp_generate_ar(m, &o, ids, n, length);
            if (n < 0) scp_die_last();
            calls = n - np;
            for (int i = np; i < n; i++) json_array_append_new(filled, json_integer(i));
        } else {
            for (int i = 0; i < length; i++) append(&ids, &n, &cap, &o.mask_id, 1);
            if (stext) encode(tok, stext, &ids, &n, &cap);
            for (int i = 0; i < n; i++)
                if (ids[i] == o.mask_id) json_array_append_new(filled, json_integer(i));
            calls = scp_generate_diffusion(m, &o, ids, n);
            if (calls < 0) scp_die_last();
        }
        double secs = scp_now() - t0;
        if (g.show) fputs("\033[H\033[2J", stderr);
        /* The text: stop cuts at the first EOS after the prompt. */
        int end = n;
        if (o.eos == SCP_EOS_STOP && o.eos_id >= 0)
            for (int i = np; i < n; i++)
                if (ids[i] == o.eos_id) {
                    end = i;
                    break;
                }
        if (!ar && stext && end < n) end = n;   /* infill keeps its suffix */
        int gen_end = ar ? end : (np + length < end ? np + length : end);
        size_t tl, cl;
        char *text = scp_tokenizer_decode(tok, ids, (size_t)end, 1, &tl);
        char *comp = scp_tokenizer_decode(tok, ids + np, (size_t)(gen_end > np ? gen_end - np : 0), 1, &cl);
        if (!text || !comp) scp_die_last();
        if (jsonl) {
            json_t *ja = json_array();
            for (int i = 0; i < n; i++) json_array_append_new(ja, json_integer(ids[i]));
            json_t *out = json_pack("{s:s, s:s%, s:s%, s:o, s:i, s:O, s:s, s:i, s:f}", "prompt", ptext, "text", text, tl, "completion", comp, cl,
                                    "ids", ja, "prompt_tokens", np, "filled", filled, "mode", ar ? "ar" : "diffusion", "steps", calls,
                                    "seconds", secs);
            if (!out) scp_die("generate: the output is not valid UTF-8 (use the ids)");
            char *s = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
            printf("%s\n", s);
            free(s);
            json_decref(out);
        } else {
            fwrite(text, 1, tl, stdout);
            putchar('\n');
        }
        if (fflush(stdout) != 0 || ferror(stdout)) scp_die("<stdout>: write error");
        free(text);
        free(comp);
        free(ids);
        json_decref(filled);
        json_decref(j);
        if (!pf) break;
    }
    free(line);
    if (pf) scp_fclose_in(pf);
    scp_eval_model_close(&em);
    return 0;
}
