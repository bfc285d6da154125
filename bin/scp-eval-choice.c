/* scp-eval choice: multiple-choice accuracy from continuation log-likelihoods (lm-eval-harness style JSONL
 * tasks); a line's layout is lib/eval/choice_doc.c, its context (template, few-shot examples)
 * lib/eval/choice_prompt.c, its scores lib/eval/choice_item.c, the likelihoods lib/eval/choice.c. JSON on stdout. */
#include "scp-eval.h"

#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "core/progress.h"
#include "eval/choice_doc.h"
#include "eval/choice_item.h"
#include "eval/choice_prompt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn static void usage(void)
{
    printf("Usage: %s --model CKPT --tasks FILE.jsonl [OPTIONS]\n"
           "Multiple-choice accuracy: the choice with the highest log-likelihood of its continuation wins. Exact\n"
           "causal log-probability for causal checkpoints, LLaDA's Monte-Carlo bound for diffusion ones. Task lines\n"
           "in any of these layouts, told apart per line (scp-eval(1) gives the rules):\n"
           "  native     {\"context\": TEXT, \"choices\": [TEXT, ...], \"gold\": INDEX}  (\"query\"/\"ctx\", \"label\"/\"answer\")\n"
           "  MMLU       {\"question\": TEXT, \"choices\": [TEXT, ...], \"answer\": INDEX or LETTER}\n"
           "  HellaSwag  {\"ctx\": TEXT, \"endings\": [TEXT, ...], \"label\": \"INDEX\"}\n"
           "  ARC        {\"question\": TEXT or {\"stem\": TEXT}, \"choices\": {\"text\": [...], \"label\": [...]},\n"
           "             \"answerKey\": LABEL}\n"
           "JSON with acc and acc_norm (log-likelihood / the choice's characters), their standard errors, and\n"
           "the accuracy of --norm.\n\n"
           "  -m, --model CKPT       checkpoint directory (with its tokenizer)\n"
           "      --tasks FILE       the JSONL tasks ('-' is stdin)\n"
           "      --template TEXT    the context of an item: TEXT with {question}, {context}, {choices} or {KEY}\n"
           "                         (any string field) filled in; \\n, \\t, \\\\, \\{, \\} escapes (default: per\n"
           "                         layout, \"Question: {question}\\nAnswer:\" for MMLU and ARC, else \"{context}\")\n"
           "      --shots FILE       few-shot examples (any layout), each its template + its gold answer, joined\n"
           "                         by blank lines before every item's context\n"
           "      --num-shots N      the first N items of --shots (default: all of them)\n"
           "      --mode auto|ar|diffusion  (default auto: config.json is_causal decides)\n"
           "      --samples N        diffusion: Monte-Carlo samples per continuation (default 32)\n"
           "  -s, --seed S           diffusion: masking seed (default 1)\n"
           "      --norm none|tokens|bytes|chars  what the accuracy's log-likelihoods are divided by (default none)\n"
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

static const scp_opt_id opt_ids[] = {SCP_EVAL_MODEL_OPTS, SCP_OPT_TASKS,     SCP_OPT_TEMPLATE, SCP_OPT_SHOTS,
                                     SCP_OPT_NUM_SHOTS,   SCP_OPT_SAMPLES,   SCP_OPT_SEED,     SCP_OPT_NORM,
                                     SCP_OPT_MAX_ITEMS,   SCP_OPT_DETAILS,   SCP_OPT_HELP,     SCP_OPT_VERSION,
                                     SCP_OPT_END};
static const scp_cli_alias old_spellings[] = {SCP_EVAL_OLD_THREADS, {NULL, 0, 0}};

typedef struct choice_args {
    const char *tasks, *template, *shots;
    int details;
    int64_t max_items, num_shots;   /* num_shots -1: every item of shots */
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
    a->num_shots = -1;
    scp_cli c;
    scp_cli_begin(&c, opt_ids, old_spellings);
    for (int id, v; (id = scp_cli_next(&c, argc, argv)) >= 0;) {
        switch (id) {
        case SCP_OPT_TASKS: a->tasks = optarg; break;
        case SCP_OPT_TEMPLATE: a->template = optarg; break;
        case SCP_OPT_SHOTS: a->shots = optarg; break;
        case SCP_OPT_NUM_SHOTS: a->num_shots = scp_opt_int("--num-shots", optarg, 0, 1 << 20); break;
        case SCP_OPT_SAMPLES: a->co.samples = (int)scp_opt_int("--samples", optarg, 1, 1 << 20); break;
        case SCP_OPT_SEED: a->co.seed = (uint64_t)scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case SCP_OPT_NORM:
            if ((v = scp_choice_norm_parse(optarg)) < 0)
                scp_usage_error("--norm: '%s' is not none, tokens, bytes or chars", optarg);
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
    if (a->num_shots >= 0 && !a->shots) scp_usage_error("--num-shots needs --shots FILE");
    if (a->shots && strcmp(a->shots, "-") == 0 && strcmp(a->tasks, "-") == 0)
        scp_usage_error("--shots and --tasks cannot both be standard input");
}

/* The running sums of the report: items, and the correct ones by --norm, by the raw log-likelihood (acc) and by
 * the log-likelihood per character (acc_norm). */
typedef struct choice_tally {
    int64_t items, correct, acc, acc_norm, shots, context_tokens;
    double chance;
} choice_tally;

/* The standard error of the mean of `hits` 0/1 outcomes of n: sqrt(sum (x - mean)^2 / (n - 1) / n), lm-eval's
 * mean_stderr (sample standard deviation over sqrt(n)); NAN below two items. */
static double mean_stderr(int64_t hits, int64_t n)
{
    if (n < 2) return NAN;
    double m = (double)hits / (double)n;
    double ss = (double)hits * (1 - m) * (1 - m) + (double)(n - hits) * m * m;
    return sqrt(ss / (double)(n - 1) / (double)n);
}

static json_t *real_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* The result: the accuracy by --norm with its standard error (se) and the chance level; acc and acc_norm as
 * lm-eval reports them. */
static void print_result(const choice_args *a, const choice_tally *t, double seconds, json_t *details)
{
    const double n = (double)t->items;
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
    if (a->template) json_object_set_new(out, "template", json_string(a->template));
    if (a->shots) {
        json_object_set_new(out, "shots", json_string(a->shots));
        json_object_set_new(out, "num_shots", json_integer(t->shots));
    }
    json_object_set_new(out, "items", json_integer(t->items));
    json_object_set_new(out, "correct", json_integer(t->correct));
    json_object_set_new(out, "accuracy", json_real((double)t->correct / n));
    json_object_set_new(out, "se", real_or_null(mean_stderr(t->correct, t->items)));
    json_object_set_new(out, "chance", json_real(t->chance / n));
    json_object_set_new(out, "n", json_integer(t->items));
    json_object_set_new(out, "acc", json_real((double)t->acc / n));
    json_object_set_new(out, "acc_stderr", real_or_null(mean_stderr(t->acc, t->items)));
    json_object_set_new(out, "acc_norm", json_real((double)t->acc_norm / n));
    json_object_set_new(out, "acc_norm_stderr", real_or_null(mean_stderr(t->acc_norm, t->items)));
    json_object_set_new(out, "context_tokens", json_integer(t->context_tokens));
    json_object_set_new(out, "seconds", json_real(seconds));
    if (details) json_object_set_new(out, "details", details);
    if (scp_json_print(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))) scp_die_last();
    json_decref(out);
}

/* One item's entry of --details. */
static json_t *item_details(long lineno, const scp_choice_doc *d, const scp_choice_item *it)
{
    json_t *scores = json_array(), *lls = json_array(), *chars = json_array();
    for (int k = 0; k < it->n_choices; k++) {
        json_array_append_new(scores, json_real(it->scores[k]));
        json_array_append_new(lls, json_real(it->logliks[k]));
        json_array_append_new(chars, json_integer(it->chars[k]));
    }
    return json_pack("{s:I, s:s, s:i, s:i, s:i, s:o, s:o, s:o, s:I}", "line", (json_int_t)lineno, "layout",
                     scp_choice_layout_name(d->layout), "gold", it->gold, "pred", it->pred, "pred_norm", it->pred_norm,
                     "scores", scores, "logliks", lls, "chars", chars, "context_tokens", (json_int_t)it->context_tokens);
}

int scp_eval_choice_main(int argc, char **argv)
{
    choice_args a;
    choice_parse(argc, argv, &a);
    scp_choice_prompt prompt;
    if (scp_choice_prompt_init(&prompt, a.template)) scp_usage_error("%s", scp_last_error());
    if (a.shots && scp_choice_prompt_load_shots(&prompt, a.shots, a.num_shots)) scp_die_last();
    if (scp_eval_model_open(&a.em)) scp_die_last();
    FILE *f = scp_fopen_in(a.tasks);
    if (!f) scp_die_last();
    char *line = NULL;
    size_t lcap = 0;
    long lineno = 0;
    choice_tally t = {.shots = prompt.n_shots};
    double t0 = scp_now();
    json_t *det = a.details ? json_array() : NULL;
    scp_progress pr;
    scp_progress_init(&pr, a.max_items);
    ssize_t r;
    while ((a.max_items == 0 || t.items < a.max_items) && (r = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)r) continue;
        char what[256];
        snprintf(what, sizeof what, "%s: line %ld", a.tasks, lineno);
        json_t *j = scp_json_parse(line, (size_t)r, what);
        scp_choice_doc d;
        if (!j || scp_choice_doc_read(j, what, &d)) scp_die_last();
        char *context = scp_choice_prompt_context(&prompt, &d, what);
        scp_choice_item it;
        if (!context || scp_choice_score_item(&a.em, &a.co, context, &d, (uint64_t)t.items, what, &it)) scp_die_last();
        t.correct += it.pred == it.gold;
        t.acc += scp_choice_argmax(it.logliks, it.n_choices) == it.gold;
        t.acc_norm += it.pred_norm == it.gold;
        t.chance += 1.0 / (double)it.n_choices;
        t.context_tokens += it.context_tokens;
        if (det) json_array_append_new(det, item_details(lineno, &d, &it));
        scp_choice_item_free(&it);
        free(context);
        scp_choice_doc_free(&d);
        json_decref(j);
        t.items++;
        scp_progress_update(&pr, t.items, "acc %.3f", (double)t.correct / (double)t.items);
    }
    scp_progress_end(&pr);
    if (ferror(f)) scp_die("%s: read error", a.tasks);
    free(line);
    scp_fclose_in(f);
    if (t.items == 0) scp_die("%s: no task items", a.tasks);
    print_result(&a, &t, scp_now() - t0, det);
    scp_choice_prompt_free(&prompt);
    scp_eval_model_close(&a.em);
    return 0;
}
