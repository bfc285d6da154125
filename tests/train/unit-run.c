/* unit-run.c: the set-up of a scp-train run in lib/train: command-line options applied and held to their ranges,
 * absolute input paths, batches per step, AdamW's moments under ZeRO-1, the model a run starts from and its
 * configuration for the objective; and the names --backend accepts. */
#include "../tap.h"

#include "core/error.h"
#include "core/io.h"
#include "dist/dist.h"
#include "model/backend.h"
#include "model/model.h"
#include "train/init.h"
#include "train/moments.h"
#include "train/opts_set.h"
#include "train/run.h"
#include "train/state.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static void test_opts_set(void)
{
    scp_train_opts o;
    scp_train_opts_default(&o);
    int rc = scp_train_opts_set(&o, SCP_OPT_LR, "0.5") | scp_train_opts_set(&o, SCP_OPT_LR_MLP, "0.25") |
             scp_train_opts_set(&o, SCP_OPT_BATCH_TOKENS, "64k") | scp_train_opts_set(&o, SCP_OPT_ATTENTION, "anneal:5") |
             scp_train_opts_set(&o, SCP_OPT_MICRO_BATCH, "3") | scp_train_opts_set(&o, SCP_OPT_SEED, "77") |
             scp_train_opts_set(&o, SCP_OPT_BACKEND, "cpu-bf16") | scp_train_opts_set(&o, SCP_OPT_NO_SHIFT, NULL);
    tap_ok(rc == 0 && o.lr == 0.5 && o.lr_mult[SCP_GROUP_MLP] == 0.25 && o.lr_mult[SCP_GROUP_EXPERT] == 0.25 &&
               o.lr_mult[SCP_GROUP_ATTN] == 1 && o.batch_tokens == 64000 && o.attn == SCP_ATTN_ANNEAL &&
               o.anneal_steps == 5 && o.attn_set && o.micro_batch == 3 && o.seed == 77 &&
               strcmp(o.backend, "cpu-bf16") == 0 && o.shift == 0,
           "values, counts with suffixes, enums, flags; --lr-mlp covers the experts");
    scp_train_opts_set(&o, SCP_OPT_STEPS, "10");
    scp_train_opts_set(&o, SCP_OPT_TOKENS, "1k");
    tap_ok(o.steps == 0 && o.tokens == 1000, "--tokens after --steps: the last one wins");
    scp_train_opts_set(&o, SCP_OPT_STEPS, "12");
    tap_ok(o.steps == 12 && o.tokens == 0, "--steps after --tokens");
    tap_ok(scp_train_opts_set(&o, SCP_OPT_OUTPUT, "run") == 1 && scp_train_opts_set(&o, SCP_OPT_QUIET, NULL) == 1,
           "the program's own options are not training options");

    tap_ok(scp_train_opts_check(&o, "state.json") == 0, "options within range pass the check");
    struct {
        double *field;
        double value;
        const char *want;
    } bad[] = {
        {&o.lr, 10.5, "'lr' is 10.5, outside [0, 10]"},
        {&o.t_eps, 0, "'t_eps' is 0"},
        {&o.beta1, NAN, "'beta1' is nan"},
        {&o.weight_decay, INFINITY, "'weight_decay' is inf"},
        {&o.lr_mult[SCP_GROUP_ROUTER], -0.5, "'lr_mult.router' is -0.5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        double keep = *bad[i].field;
        *bad[i].field = bad[i].value;
        int r = scp_train_opts_check(&o, "state.json");
        tap_ok(r == -1 && strstr(scp_last_error(), "state.json: option ") && strstr(scp_last_error(), bad[i].want),
               "refused: %s", scp_last_error());
        *bad[i].field = keep;
    }
    o.micro_batch = 0, o.batch_tokens = 0;
    tap_ok(scp_train_opts_check(&o, "state.json") == 0, "0 for micro_batch and batch_tokens: not given");
    o.keep = -1;
    tap_ok(scp_train_opts_check(&o, "state.json") == -1 && strstr(scp_last_error(), "'keep' is -1, outside [0, 1073741824]"),
           "a negative --keep refused: %s", scp_last_error());
    o.keep = 0;
    o.eval_seqs = 0;
    tap_ok(scp_train_opts_check(&o, "state.json") == -1 && strstr(scp_last_error(), "'eval_seqs' is 0"),
           "eval_seqs 0 refused (0 is not 'not given' there)");
    scp_train_opts_free(&o);
}

static void test_absolute(void)
{
    scp_train_opts o;
    scp_train_opts_default(&o);
    o.init = scp_xstrdup("random:cfg/config.json");
    o.data = scp_xstrdup("shards");
    char *cwd = getcwd(NULL, 0);
    scp_train_opts_absolute(&o);
    char *want_init = scp_xasprintf("random:%s/cfg/config.json", cwd), *want_data = scp_xasprintf("%s/shards", cwd);
    tap_ok(strcmp(o.init, want_init) == 0 && strcmp(o.data, want_data) == 0, "relative paths made absolute (%s, %s)",
           o.init, o.data);
    scp_train_opts_absolute(&o);
    tap_ok(strcmp(o.init, want_init) == 0 && strcmp(o.data, want_data) == 0, "absolute paths stay as they are");
    free(o.init);
    o.init = scp_xstrdup("ckpt/step-1");
    scp_train_opts_absolute(&o);
    free(want_init);
    want_init = scp_xasprintf("%s/ckpt/step-1", cwd);
    tap_ok(strcmp(o.init, want_init) == 0, "a checkpoint path: %s", o.init);
    free(want_init);
    free(want_data);
    free(cwd);
    scp_train_opts_free(&o);
}

static void test_batches(void)
{
    scp_train_opts o;
    scp_train_opts_default(&o);
    o.steps = 7;
    scp_train_batches b;
    tap_ok(scp_train_batches_plan(&o, 64, 1, &b) == 0 && b.B == 8 && b.micro == 8 && b.total == 7 && !b.rounded,
           "default: 8 sequences a step, no micro-batches, --steps");
    o.batch_tokens = 500, o.micro_batch = 3;
    tap_ok(scp_train_batches_plan(&o, 64, 1, &b) == 0 && b.B == 7 && b.micro == 3 && b.rounded,
           "500 tokens of 64-token sequences: 7 sequences, rounded; micro-batches of 3");
    o.micro_batch = 10;
    tap_ok(scp_train_batches_plan(&o, 64, 1, &b) == 0 && b.micro == 7, "a micro-batch larger than the step: the step");
    o.batch_tokens = 256, o.steps = 0, o.tokens = 1000, o.micro_batch = 0;
    tap_ok(scp_train_batches_plan(&o, 64, 1, &b) == 0 && b.B == 4 && b.total == 4, "--tokens 1000 at 256 a step: 4 steps");
    o.batch_tokens = 10;
    tap_ok(scp_train_batches_plan(&o, 64, 1, &b) == 0 && b.B == 1 && b.rounded && b.total == 16,
           "fewer tokens than a sequence: one sequence a step (%d steps)", (int)b.total);
    o.batch_tokens = 64 * (((int64_t)1 << 24) + 1);
    tap_ok(scp_train_batches_plan(&o, 64, 1, &b) == -1 && strstr(scp_last_error(), "more than 2^24 sequences"),
           "more than 2^24 sequences a step refused: %s", scp_last_error());
    o.batch_tokens = 512;
    tap_ok(scp_train_batches_plan(&o, 64, 8, &b) == 0 && b.B == 8, "8 sequences over 8 ranks");
    tap_ok(scp_train_batches_plan(&o, 64, 9, &b) == -1 && strstr(scp_last_error(), "cannot be shared by 9 ranks"),
           "8 sequences over 9 ranks refused: %s", scp_last_error());
    scp_train_opts_free(&o);
}

/* A model struct with just the parameter table: what the moments' files need. */
static void table_model(scp_model *m)
{
    memset(m, 0, sizeof *m);
    m->cfg.arch = SCP_ARCH_LLAMA;
    m->cfg.hidden_size = 8, m->cfg.intermediate_size = 12, m->cfg.num_layers = 2, m->cfg.num_heads = 2;
    m->cfg.num_kv_heads = 1, m->cfg.head_dim = 4, m->cfg.vocab_size = 9;
    m->n_params = scp_param_table(&m->cfg, &m->desc);
    m->offset = malloc(sizeof *m->offset * (size_t)m->n_params);
    for (int i = 0; i < m->n_params; i++) m->offset[i] = m->n_weights, m->n_weights += m->desc[i].numel;
}

static void test_moments(void)
{
    scp_model m;
    table_model(&m);
    int64_t n = m.n_weights;
    float *a = malloc(sizeof *a * (size_t)n), *b = malloc(sizeof *b * (size_t)n);
    for (int64_t i = 0; i < n; i++) a[i] = (float)i * 0.5f, b[i] = (float)(n - i) * 1e-3f;
    char *path = scp_path_join(tmpdir, "optimizer.safetensors");
    tap_ok(scp_optimizer_save(path, &m, a, b) == 0, "full moments written");

    scp_train_moments one;
    scp_train_moments_init(&one, &m);
    tap_ok(one.n == n && one.m[0] == 0 && one.v[n - 1] == 0, "every moment, zero");
    tap_ok(scp_train_moments_load(&one, &m, path) == 0 && memcmp(one.m, a, sizeof *a * (size_t)n) == 0 &&
               memcmp(one.v, b, sizeof *b * (size_t)n) == 0,
           "loaded whole, bit for bit");
    scp_train_moments_free(&one);
    m.desc[1].shape[0] += 1;
    scp_train_moments bad;
    scp_train_moments_init(&bad, &m);
    tap_ok(scp_train_moments_load(&bad, &m, path) == -1 && strstr(scp_last_error(), "optimizer.safetensors"),
           "moments of another shape refused: %s", scp_last_error());
    scp_train_moments_free(&bad);
    free(path);
    free(a), free(b), free(m.desc), free(m.offset);
}

static char *write_config(const char *dir, int mask_id, int shift)
{
    scp_mkdir_p(dir);
    char *path = scp_path_join(dir, "config.json");
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"model_type\": \"llama\", \"hidden_size\": 16, \"intermediate_size\": 32, \"num_hidden_layers\": 1, "
               "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 20, "
               "\"max_position_embeddings\": 32, \"shift_logits\": %s%s}",
            shift ? "true" : "false", mask_id >= 0 ? ", \"mask_token_id\": 19" : "");
    fclose(f);
    return path;
}

static double stddev(const float *x, int64_t n)
{
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += x[i], s2 += (double)x[i] * x[i];
    return sqrt(s2 / (double)n - (s / (double)n) * (s / (double)n));
}

static void test_init_model(void)
{
    char *cdir = scp_path_join(tmpdir, "cfg"), *cfg = write_config(cdir, 19, 1);
    scp_train_opts o;
    scp_train_opts_default(&o);
    o.init = scp_xasprintf("random:%s", cfg);
    o.seed = 3;
    o.init_std = 0.05;
    char *tok_dir;
    scp_model *a = scp_train_load_model(&o, NULL, &tok_dir);
    tap_ok(a && a->n_weights > 0 && tok_dir == NULL, "random:CONFIG: a model, no tokenizer to carry");
    scp_model *b = scp_train_load_model(&o, NULL, &tok_dir);
    o.seed = 4;
    scp_model *c = scp_train_load_model(&o, NULL, &tok_dir);
    int e = scp_model_find(a, "model.embed_tokens.weight");
    float *ea = scp_model_param(a, e);
    int64_t ne = a->desc[e].numel;
    tap_ok(b && memcmp(a->weights, b->weights, sizeof *a->weights * (size_t)a->n_weights) == 0,
           "the same seed: the same weights");
    tap_ok(c && memcmp(a->weights, c->weights, sizeof *a->weights * (size_t)a->n_weights) != 0, "another seed: others");
    double sd = stddev(ea, ne);
    tap_ok(fabs(sd - 0.05) < 0.01, "the embedding's standard deviation is --init-std (%.4f of 0.05, %lld values)", sd,
           (long long)ne);

    /* A checkpoint of a, then --init-random from it: its shape, new weights; and the checkpoint itself. */
    char *ck = scp_path_join(tmpdir, "ck");
    scp_mkdir_p(ck);
    tap_ok(scp_model_save(a, ck, SCP_F32) == 0, "checkpoint saved");
    free(o.init);
    o.init = scp_xstrdup(ck);
    o.seed = 4;
    scp_model *d = scp_train_load_model(&o, NULL, &tok_dir);
    tap_ok(d && d->n_weights == a->n_weights && memcmp(d->weights, a->weights, sizeof *a->weights * (size_t)a->n_weights) == 0,
           "the checkpoint: its weights");
    o.init_random = 1;
    scp_model *r = scp_train_load_model(&o, NULL, &tok_dir);
    tap_ok(r && r->n_weights == a->n_weights && memcmp(r->weights, c->weights, sizeof *a->weights * (size_t)a->n_weights) == 0,
           "--init-random: the checkpoint's shape, the seed's weights");
    scp_model *res = scp_train_load_model(&o, ck, &tok_dir);
    tap_ok(res && memcmp(res->weights, a->weights, sizeof *a->weights * (size_t)a->n_weights) == 0,
           "resuming: the run's checkpoint, whatever the init");

    /* The objective's configuration. */
    o.objective = SCP_OBJ_MDM, o.attn = SCP_ATTN_BIDIRECTIONAL, o.shift = -1;
    tap_ok(scp_train_configure_model(a, &o, "ck") == 1 && a->cfg.causal == 0 && a->cfg.shift_logits == 1,
           "mdm: bidirectional, config.json's shift");
    o.shift = 0, o.attn = SCP_ATTN_CAUSAL;
    tap_ok(scp_train_configure_model(a, &o, "ck") == 0 && a->cfg.causal == 1 && a->cfg.shift_logits == 0,
           "mdm with --no-shift and causal attention");
    o.objective = SCP_OBJ_AR, o.shift = -1;
    a->cfg.causal = 0;
    tap_ok(scp_train_configure_model(a, &o, "ck") == 0 && a->cfg.causal == 1, "ar: causal");
    o.objective = SCP_OBJ_MDM;
    a->cfg.mask_token_id = -1;
    tap_ok(scp_train_configure_model(a, &o, "ck") == -1 && strstr(scp_last_error(), "ck: config.json has no mask_token_id"),
           "mdm without a mask token refused: %s", scp_last_error());

    free(o.init);
    o.init = scp_xasprintf("random:%s/nope.json", tmpdir);
    o.init_random = 0;
    tap_ok(scp_train_load_model(&o, NULL, &tok_dir) == NULL && strstr(scp_last_error(), "nope.json"),
           "a missing config refused naming it");
    scp_model *all[] = {a, b, c, d, r, res};
    for (int i = 0; i < 6; i++) scp_model_free(all[i]);
    free(ck);
    free(cfg);
    free(cdir);
    scp_train_opts_free(&o);
}

static void test_backend_names(void)
{
    const char *known[] = {"cpu", "cpu-ref", "cpu-mirror", "cpu-bf16", "cuda", "cuda-bf16", "cuda-fp32"};
    int all = 1;
    for (int i = 0; i < 7; i++) all &= scp_backend_check_name(known[i]) == 0;
    tap_ok(all, "every backend name is known, built here or not");
    tap_ok(scp_backend_check_name("nosuch") == -1 && strstr(scp_last_error(), "unknown backend 'nosuch'") &&
               strstr(scp_last_error(), "cpu, cpu-ref, cpu-mirror, cpu-bf16, cuda (also cuda-bf16), cuda-fp32"),
           "an unknown name is refused with the list: %s", scp_last_error());
    tap_ok(scp_backend_check_name("cudax") == -1 && scp_backend_check_name("CPU") == -1, "no prefixes, no other case");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/scp-unit-run.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;
    scp_set_threads(1);
    test_opts_set();
    test_absolute();
    test_batches();
    test_moments();
    test_init_model();
    test_backend_names();
    scp_rm_rf(tmpdir);
    return tap_done();
}
