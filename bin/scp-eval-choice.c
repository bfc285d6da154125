/* scp-eval choice: multiple-choice accuracy from continuation log-likelihoods (lm-eval-harness style JSONL
 * tasks); the likelihoods are lib/eval/choice.c. JSON on stdout. */
#include "scp-eval.h"

#include "core/cli.h"
#include "core/error.h"
#include "eval/choice.h"
#include "core/io.h"
#include "core/json.h"
#include "model/model.h"
#include "core/progress.h"
#include "tok/tokenizer.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { O_TASKS = 256, O_SAMPLES, O_NORM, O_MAX_ITEMS, O_DETAILS };

static const struct option longopts[] = {
    SCP_EVAL_MODEL_LONGOPTS, {"tasks", required_argument, 0, O_TASKS}, {"samples", required_argument, 0, O_SAMPLES},
    {"seed", required_argument, 0, 's'}, {"norm", required_argument, 0, O_NORM},
    {"max-items", required_argument, 0, O_MAX_ITEMS}, {"details", no_argument, 0, O_DETAILS},
    {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};

_Noreturn static void usage(void)
{
    printf("Usage: %s --model CKPT --tasks FILE.jsonl [OPTIONS]\n"
           "Multiple-choice accuracy: each line {\"context\": TEXT, \"choices\": [TEXT, ...], \"gold\": INDEX} (also\n"
           "\"query\"/\"ctx\", \"endings\", \"label\"/\"answer\"); the choice with the highest log-likelihood of its\n"
           "continuation wins. Exact causal log-probability for causal checkpoints, LLaDA's Monte-Carlo bound for\n"
           "diffusion ones. JSON with the accuracy and its standard error.\n\n"
           "  -m, --model CKPT       checkpoint directory (with its tokenizer)\n"
           "      --tasks FILE       the JSONL tasks ('-' is stdin)\n"
           "      --mode auto|ar|diffusion  (default auto: config.json is_causal decides)\n"
           "      --samples N        diffusion: Monte-Carlo samples per continuation (default 32)\n"
           "  -s, --seed S           diffusion: masking seed (default 1)\n"
           "      --norm none|tokens|bytes  divide each log-likelihood by the continuation's length (default none)\n"
           "      --no-bos           do not put BOS before the context\n"
           "      --shift, --no-shift  logit shift in diffusion mode (default: config.json shift_logits)\n"
           "      --mask-id ID       mask token (default: config.json mask_token_id)\n"
           "      --max-items N      score the first N items\n"
           "      --details          add per-item scores to the JSON\n"
           "  -t, --threads N        threads (default: all cores)\n"
           "      --backend NAME     compute backend: cpu (default), cpu-bf16, cuda (bf16), cuda-fp32\n"
           "  -h, --help             this help\n"
           "  -V, --version          version and features\n",
           scp_progname());
    exit(0);
}

static const char *get_str(json_t *j, const char *const *keys)
{
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(j, keys[i]);
        if (json_is_string(v)) return json_string_value(v);
    }
    return NULL;
}

static int encode(const scp_tokenizer *t, const char *s, int32_t **ids, size_t *n)
{
    return scp_tokenizer_encode(t, s, strlen(s), 0, ids, n);
}

int scp_eval_choice_main(int argc, char **argv)
{
    const char *tasks = NULL;
    int samples = 32, norm = 0, details = 0, c;
    scp_eval_model em;
    scp_eval_model_defaults(&em);
    int64_t max_items = 0;
    uint64_t seed = 1;
    optind = 0;
    while ((c = getopt_long(argc, argv, "m:s:t:hV", longopts, NULL)) != -1) {
        switch (c) {
        case O_TASKS: tasks = optarg; break;
        case O_SAMPLES: samples = (int)scp_opt_int("--samples", optarg, 1, 1 << 20); break;
        case 's': seed = (uint64_t)scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case O_NORM:
            if (!strcmp(optarg, "none")) norm = 0;
            else if (!strcmp(optarg, "tokens")) norm = 1;
            else if (!strcmp(optarg, "bytes")) norm = 2;
            else scp_usage_error("--norm: '%s' is not none, tokens or bytes", optarg);
            break;
        case O_MAX_ITEMS: max_items = scp_opt_count("--max-items", optarg, 1, INT64_MAX / 2); break;
        case O_DETAILS: details = 1; break;
        case 'h': usage();
        case 'V': scp_cli_version();
        default:
            if (!scp_eval_model_option(&em, c, optarg)) scp_usage_error("unknown option");
        }
    }
    if (optind < argc) scp_usage_error("unexpected argument '%s'", argv[optind]);
    if (!em.path) scp_usage_error("--model CKPT is required");
    if (!tasks) scp_usage_error("--tasks FILE is required");

    scp_eval_model_open(&em);
    scp_model *m = em.m;
    const scp_tokenizer *tok = em.tok;
    const char *model = em.path;
    int ar = em.ar, sh = em.shift, bos = em.bos;
    int32_t mid = em.mask_id;

    FILE *f = scp_fopen_in(tasks);
    if (!f) scp_die_last();
    static const char *const ctx_keys[] = {"context", "query", "ctx", NULL}, *const ch_keys[] = {"choices", "endings", NULL},
                              *const gold_keys[] = {"gold", "label", "answer", NULL};
    char *line = NULL;
    size_t lcap = 0;
    long lineno = 0;
    int64_t items = 0, correct = 0;
    double chance = 0, t0 = scp_now();
    json_t *det = details ? json_array() : NULL;
    scp_progress pr;
    scp_progress_init(&pr, max_items);
    ssize_t r;
    while ((max_items == 0 || items < max_items) && (r = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)r) continue;
        char what[256];
        snprintf(what, sizeof what, "%s: line %ld", tasks, lineno);
        json_t *j = scp_json_parse(line, (size_t)r, what);
        if (!j) scp_die_last();
        const char *ctx = get_str(j, ctx_keys);
        json_t *ch = NULL, *g = NULL;
        for (int i = 0; ch_keys[i] && !ch; i++) ch = json_object_get(j, ch_keys[i]);
        for (int i = 0; gold_keys[i] && !g; i++) g = json_object_get(j, gold_keys[i]);
        size_t nch = json_array_size(ch);
        if (!ctx) scp_die("%s: no \"context\" string", what);
        if (!json_is_array(ch) || nch < 2) scp_die("%s: \"choices\" must be a list of at least two strings", what);
        if (!json_is_integer(g) || json_integer_value(g) < 0 || (size_t)json_integer_value(g) >= nch)
            scp_die("%s: \"gold\" must be an index into the %zu choices", what, nch);
        int gold = (int)json_integer_value(g);
        int32_t *cids;
        size_t nc;
        if (encode(tok, ctx, &cids, &nc)) scp_die_last();
        double *score = scp_xmalloc(nch * sizeof *score);
        for (size_t k = 0; k < nch; k++) {
            const char *cont = json_string_value(json_array_get(ch, k));
            if (!cont || !*cont) scp_die("%s: choice %zu is not a non-empty string", what, k);
            /* Encode context + choice together and take what follows the context's own ids (the usual
             * harness rule); where the context's ids are not a prefix, encode the choice on its own. */
            char *whole = scp_xasprintf("%s%s", ctx, cont);
            int32_t *wids, *kids = NULL;
            size_t nw, nk = 0;
            if (encode(tok, whole, &wids, &nw)) scp_die_last();
            const int32_t *cont_ids;
            size_t ncont;
            if (nw > nc && memcmp(wids, cids, nc * sizeof *cids) == 0) {
                cont_ids = wids + nc;
                ncont = nw - nc;
            } else {
                if (encode(tok, cont, &kids, &nk)) scp_die_last();
                cont_ids = kids;
                ncont = nk;
            }
            if (ncont == 0) scp_die("%s: choice %zu encodes to no tokens", what, k);
            size_t nctx = nc + (bos >= 0);
            if (nctx == 0) scp_die("%s: empty context and no BOS: nothing to condition on", what);
            int32_t *seq = scp_xmalloc((nctx + ncont) * sizeof *seq);
            if (bos >= 0) seq[0] = bos;
            memcpy(seq + (bos >= 0), cids, nc * sizeof *cids);
            memcpy(seq + nctx, cont_ids, ncont * sizeof *seq);
            double ll;
            int rc = ar ? scp_loglik_ar(m, seq, (int)nctx, (int)ncont, &ll)
                        : scp_loglik_diffusion(m, seq, (int)nctx, (int)ncont, samples, seed, (uint64_t)items, mid, sh, &ll);
            if (rc) scp_die_last();
            score[k] = norm == 1 ? ll / (double)ncont : norm == 2 ? ll / (double)strlen(cont) : ll;
            free(seq);
            free(whole);
            free(wids);
            free(kids);
        }
        int pred = 0;
        for (size_t k = 1; k < nch; k++)
            if (score[k] > score[pred]) pred = (int)k;
        correct += pred == gold;
        chance += 1.0 / (double)nch;
        if (det) {
            json_t *sa = json_array();
            for (size_t k = 0; k < nch; k++) json_array_append_new(sa, json_real(score[k]));
            json_array_append_new(det, json_pack("{s:I, s:i, s:i, s:o}", "line", (json_int_t)lineno, "gold", gold, "pred", pred, "scores", sa));
        }
        free(score);
        free(cids);
        json_decref(j);
        items++;
        scp_progress_update(&pr, items, "acc %.3f", (double)correct / (double)items);
    }
    scp_progress_end(&pr);
    if (ferror(f)) scp_die("%s: read error", tasks);
    free(line);
    scp_fclose_in(f);
    if (items == 0) scp_die("%s: no task items", tasks);
    double acc = (double)correct / (double)items;
    /* standard error of the mean of 0/1 outcomes (sample standard deviation / sqrt(n), as lm-eval reports) */
    double se = items > 1 ? sqrt(acc * (1 - acc) * (double)items / (double)(items - 1) / (double)items) : NAN;
    json_t *out = json_object();
    json_object_set_new(out, "metric", json_string("choice"));
    json_object_set_new(out, "model", json_string(model));
    json_object_set_new(out, "tasks", json_string(tasks));
    json_object_set_new(out, "mode", json_string(ar ? "ar" : "diffusion"));
    if (!ar) {
        json_object_set_new(out, "samples", json_integer(samples));
        json_object_set_new(out, "seed", json_integer((json_int_t)seed));
        json_object_set_new(out, "shift", json_boolean(sh));
    }
    json_object_set_new(out, "norm", json_string(norm == 1 ? "tokens" : norm == 2 ? "bytes" : "none"));
    json_object_set_new(out, "items", json_integer(items));
    json_object_set_new(out, "correct", json_integer(correct));
    json_object_set_new(out, "accuracy", json_real(acc));
    json_object_set_new(out, "se", isfinite(se) ? json_real(se) : json_null());
    json_object_set_new(out, "chance", json_real(chance / (double)items));
    json_object_set_new(out, "seconds", json_real(scp_now() - t0));
    if (det) json_object_set_new(out, "details", det);
    char *s = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(out);
    if (!s || printf("%s\n", s) < 0 || fflush(stdout) != 0) scp_die("<stdout>: write error");
    free(s);
    scp_eval_model_close(&em);
    return 0;
}
