/* scp-eval choice: multiple-choice accuracy from continuation log-likelihoods (lm-eval-harness style JSONL
 * tasks); an item's scores are lib/eval/choice_item.c, the likelihoods lib/eval/choice.c. JSON on stdout. */
#include "scp-eval.h"

#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "core/progress.h"
#include "eval/choice_item.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
           "  -M, --mask-id ID       mask token (default: config.json mask_token_id)\n"
           "      --max-items N      score the first N items\n"
           "      --details          add per-item scores to the JSON\n"
           "  -j, --threads N        threads (default: all cores)\n"
           "      --backend NAME     compute backend: cpu (default), cpu-bf16, cuda (bf16), cuda-fp32\n"
           "  -h, --help             this help\n"
           "  -V, --version          version and features\n",
           scp_progname());
    scp_cli_exit_stdout();
}

static const scp_opt_id opt_ids[] = {SCP_EVAL_MODEL_OPTS, SCP_OPT_TASKS,   SCP_OPT_SAMPLES, SCP_OPT_SEED,
                                     SCP_OPT_NORM,        SCP_OPT_MAX_ITEMS, SCP_OPT_DETAILS, SCP_OPT_HELP,
                                     SCP_OPT_VERSION,     SCP_OPT_END};
static const scp_cli_alias old_spellings[] = {SCP_EVAL_OLD_THREADS, {NULL, 0, 0}};

typedef struct choice_args {
    const char *tasks;
    int details;
    int64_t max_items;
    scp_eval_model em;
    scp_choice_opts co;
} choice_args;

static void choice_parse(int argc, char **argv, choice_args *a)
{
    memset(a, 0, sizeof *a);
    scp_eval_model_defaults(&a->em);
    a->co.samples = 32;
    a->co.seed = 1;
    a->co.norm = SCP_CHOICE_NORM_NONE;
    scp_cli c;
    scp_cli_begin(&c, opt_ids, old_spellings);
    for (int id, v; (id = scp_cli_next(&c, argc, argv)) >= 0;) {
        switch (id) {
        case SCP_OPT_TASKS: a->tasks = optarg; break;
        case SCP_OPT_SAMPLES: a->co.samples = (int)scp_opt_int("--samples", optarg, 1, 1 << 20); break;
        case SCP_OPT_SEED: a->co.seed = (uint64_t)scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case SCP_OPT_NORM:
            if ((v = scp_choice_norm_parse(optarg)) < 0)
                scp_usage_error("--norm: '%s' is not none, tokens or bytes", optarg);
            a->co.norm = (scp_choice_norm)v;
            break;
        case SCP_OPT_MAX_ITEMS: a->max_items = scp_opt_count("--max-items", optarg, 1, INT64_MAX / 2); break;
        case SCP_OPT_DETAILS: a->details = 1; break;
        case SCP_OPT_HELP: usage();
        case SCP_OPT_VERSION: scp_cli_version();
        default:
            if (!scp_eval_model_option(&a->em, id, optarg)) abort();   /* an id of opt_ids that nothing handles */
        }
    }
    scp_cli_end(&c);
    if (optind < argc) scp_usage_error("unexpected argument '%s'", argv[optind]);
    if (!a->em.path) scp_usage_error("--model CKPT is required");
    if (!a->tasks) scp_usage_error("--tasks FILE is required");
}

/* The result: accuracy with the standard error of the mean of 0/1 outcomes (sample standard deviation /
 * sqrt(n), as lm-eval reports it) and the chance level. */
static void print_result(const choice_args *a, int64_t items, int64_t correct, double chance, double seconds,
                         json_t *details)
{
    double acc = (double)correct / (double)items;
    double se = items > 1 ? sqrt(acc * (1 - acc) * (double)items / (double)(items - 1) / (double)items) : NAN;
    json_t *out = json_object();
    json_object_set_new(out, "metric", json_string("choice"));
    json_object_set_new(out, "model", json_string(a->em.path));
    json_object_set_new(out, "tasks", json_string(a->tasks));
    json_object_set_new(out, "mode", json_string(a->em.ar ? "ar" : "diffusion"));
    if (!a->em.ar) {
        json_object_set_new(out, "samples", json_integer(a->co.samples));
        json_object_set_new(out, "seed", json_integer((json_int_t)a->co.seed));
        json_object_set_new(out, "shift", json_boolean(a->em.shift));
    }
    json_object_set_new(out, "norm", json_string(scp_choice_norm_name(a->co.norm)));
    json_object_set_new(out, "items", json_integer(items));
    json_object_set_new(out, "correct", json_integer(correct));
    json_object_set_new(out, "accuracy", json_real(acc));
    json_object_set_new(out, "se", isfinite(se) ? json_real(se) : json_null());
    json_object_set_new(out, "chance", json_real(chance / (double)items));
    json_object_set_new(out, "seconds", json_real(seconds));
    if (details) json_object_set_new(out, "details", details);
    if (scp_json_print(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))) scp_die_last();
    json_decref(out);
}

int scp_eval_choice_main(int argc, char **argv)
{
    choice_args a;
    choice_parse(argc, argv, &a);
    if (scp_eval_model_open(&a.em)) scp_die_last();
    FILE *f = scp_fopen_in(a.tasks);
    if (!f) scp_die_last();
    char *line = NULL;
    size_t lcap = 0;
    long lineno = 0;
    int64_t items = 0, correct = 0;
    double chance = 0, t0 = scp_now();
    json_t *det = a.details ? json_array() : NULL;
    scp_progress pr;
    scp_progress_init(&pr, a.max_items);
    ssize_t r;
    while ((a.max_items == 0 || items < a.max_items) && (r = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)r) continue;
        char what[256];
        snprintf(what, sizeof what, "%s: line %ld", a.tasks, lineno);
        json_t *j = scp_json_parse(line, (size_t)r, what);
        scp_choice_item it;
        if (!j || scp_choice_score_item(&a.em, &a.co, j, (uint64_t)items, what, &it)) scp_die_last();
        correct += it.pred == it.gold;
        chance += 1.0 / (double)it.n_choices;
        if (det) {
            json_t *sa = json_array();
            for (int k = 0; k < it.n_choices; k++) json_array_append_new(sa, json_real(it.scores[k]));
            json_array_append_new(det, json_pack("{s:I, s:i, s:i, s:o}", "line", (json_int_t)lineno, "gold", it.gold,
                                                 "pred", it.pred, "scores", sa));
        }
        scp_choice_item_free(&it);
        json_decref(j);
        items++;
        scp_progress_update(&pr, items, "acc %.3f", (double)correct / (double)items);
    }
    scp_progress_end(&pr);
    if (ferror(f)) scp_die("%s: read error", a.tasks);
    free(line);
    scp_fclose_in(f);
    if (items == 0) scp_die("%s: no task items", a.tasks);
    print_result(&a, items, correct, chance, scp_now() - t0, det);
    scp_eval_model_close(&a.em);
    return 0;
}
