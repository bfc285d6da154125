/* unit-train.c: the trainer's units that need no model: learning-rate schedules and parameter groups, the
 * options' JSON form, trainer_state.json and optimizer.safetensors round trips, the run directory (latest,
 * pruning, stale temporaries) and metrics.jsonl truncation. */
#include "../tap.h"

#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "model/model.h"
#include "formats/model_config.h"
#include "data/batch.h"
#include "train/metrics.h"
#include "data/mask.h"
#include "train/opts.h"
#include "train/schedule.h"
#include "train/state.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static int close_to(double a, double b) { return fabs(a - b) <= 1e-12 * (fabs(b) + 1e-30); }

static void test_schedules(void)
{
    scp_train_opts o;
    scp_train_opts_default(&o);
    o.lr = 1e-3;
    o.min_lr = 1e-4;
    o.warmup = 10;
    /* Warmup is linear from lr/warmup at the first update to lr at update warmup-1. */
    tap_ok(close_to(scp_lr_at(&o, 0, 100), 1e-4) && close_to(scp_lr_at(&o, 4, 100), 5e-4) &&
           close_to(scp_lr_at(&o, 9, 100), 1e-3), "warmup: lr * (step + 1) / warmup");
    o.schedule = SCP_LR_CONSTANT;
    tap_ok(close_to(scp_lr_at(&o, 10, 100), 1e-3) && close_to(scp_lr_at(&o, 99, 100), 1e-3), "constant after warmup");
    o.schedule = SCP_LR_COSINE;
    /* Half way through the 90 post-warmup updates (p = 0.5) the rate is the midpoint; the last one is min_lr. */
    tap_ok(close_to(scp_lr_at(&o, 54, 100), 5.5e-4), "cosine: midpoint at p = 1/2 (%.9g)", scp_lr_at(&o, 54, 100));
    tap_ok(close_to(scp_lr_at(&o, 99, 100), 1e-4), "cosine: min_lr at the last step");
    tap_ok(scp_lr_at(&o, 20, 100) > scp_lr_at(&o, 21, 100), "cosine decreases");
    o.schedule = SCP_LR_WSD;
    o.decay_frac = 0.2;
    /* 100 steps, 20 decay steps starting at update 80: stable before, linear to min_lr at update 99. */
    tap_ok(close_to(scp_lr_at(&o, 79, 100), 1e-3), "wsd: stable until the decay phase");
    tap_ok(close_to(scp_lr_at(&o, 80, 100), 1e-3 + (1e-4 - 1e-3) / 20) && close_to(scp_lr_at(&o, 89, 100), 5.5e-4) &&
           close_to(scp_lr_at(&o, 99, 100), 1e-4), "wsd: linear decay to min_lr");

    /* Groups: attention x2, mlp x0.5, norm frozen; every parameter gets its group's rate. */
    o.schedule = SCP_LR_CONSTANT;
    o.warmup = 0;
    o.lr_mult[SCP_GROUP_ATTN] = 2;
    o.lr_mult[SCP_GROUP_MLP] = 0.5;
    o.lr_mult[SCP_GROUP_NORM] = 0;
    scp_model_config c = {0};
    c.arch = SCP_ARCH_QWEN2;
    c.hidden_size = 8, c.intermediate_size = 16, c.num_layers = 2, c.num_heads = 2, c.num_kv_heads = 1, c.head_dim = 4;
    c.vocab_size = 11, c.qkv_bias = 1;
    scp_param_desc *d;
    int n = scp_param_table(&c, &d);
    double glr[SCP_GROUP_COUNT];
    scp_group_lr(&o, 5, 100, glr);
    float *lr = malloc(sizeof *lr * (size_t)n);
    scp_param_lr(d, n, glr, lr);
    int good = 1;
    for (int i = 0; i < n; i++) {
        float want = d[i].kind == SCP_P_Q || d[i].kind == SCP_P_K || d[i].kind == SCP_P_V || d[i].kind == SCP_P_O ||
                     d[i].kind == SCP_P_QB || d[i].kind == SCP_P_KB || d[i].kind == SCP_P_VB ? 2e-3f
                   : d[i].kind == SCP_P_GATE || d[i].kind == SCP_P_UP || d[i].kind == SCP_P_DOWN ? 5e-4f
                   : d[i].kind == SCP_P_EMBED || d[i].kind == SCP_P_LM_HEAD ? 1e-3f : 0.0f;
        if (lr[i] != want) {
            good = 0;
            tap_diag("%s: lr %g, wanted %g", d[i].name, lr[i], want);
        }
    }
    tap_ok(good, "per-parameter rates follow the groups (attn x2, mlp x0.5, norms frozen)");
    free(lr);
    free(d);
    scp_train_opts_free(&o);
}

static void test_opts_json(void)
{
    scp_train_opts a, b;
    scp_train_opts_default(&a);
    a.init = scp_xstrdup("ckpt");
    a.data = scp_xstrdup("shards");
    a.lr = 1.0 / 3.0;
    a.beta2 = 0.98765432109876543;
    a.lr_mult[SCP_GROUP_MLP] = 0.1;
    a.attn = SCP_ATTN_ANNEAL;
    a.anneal_steps = 123;
    a.objective = SCP_OBJ_AR;
    a.schedule = SCP_LR_WSD;
    a.shift = 0;
    a.seed = 0xfedcba9876543210ull;
    a.steps = 77;
    json_t *j = scp_train_opts_to_json(&a);
    char *path = scp_path_join(tmpdir, "opts.json");
    tap_ok(scp_json_save_exact(path, j) == 0, "options saved");
    json_decref(j);
    j = scp_json_load(path);
    scp_train_opts_default(&b);
    tap_ok(j && scp_train_opts_from_json(&b, j, path) == 0, "options loaded");
    tap_ok(b.lr == a.lr && b.beta2 == a.beta2 && b.lr_mult[SCP_GROUP_MLP] == a.lr_mult[SCP_GROUP_MLP],
           "doubles come back bit for bit");
    tap_ok(b.attn == SCP_ATTN_ANNEAL && b.anneal_steps == 123 && b.objective == SCP_OBJ_AR && b.schedule == SCP_LR_WSD &&
           b.shift == 0 && b.seed == a.seed && b.steps == 77 && strcmp(b.init, "ckpt") == 0 && strcmp(b.data, "shards") == 0,
           "enums, seed, counts and paths round trip");
    json_object_set_new(j, "objective", json_string("gan"));
    int rc = scp_train_opts_from_json(&b, j, path);
    tap_ok(rc == -1 && strstr(scp_last_error(), "unknown value 'gan'"), "unknown objective refused: %s", scp_last_error());
    json_decref(j);
    int64_t st = 0;
    tap_ok(scp_attn_parse("anneal:0", &st) < 0 && scp_attn_parse("anneal:x", &st) < 0 &&
           scp_attn_parse("causal", &st) == SCP_ATTN_CAUSAL, "attention parser");
    free(path);
    scp_train_opts_free(&a);
    scp_train_opts_free(&b);
}

static void test_state(void)
{
    scp_train_opts o, o2;
    scp_train_opts_default(&o);
    o.lr = 0.1 + 0.2;
    scp_train_state s = {.step = 12, .adam_step = 11, .skipped = 1, .tokens = 12 * 4096, .cursor = 96,
                         .total_steps = 500, .data_hash = 0x8000000000000001ull};
    scp_rng_init(&s.rng, 42, 7);
    scp_rng_u64(&s.rng);
    char *path = scp_path_join(tmpdir, "trainer_state.json");
    tap_ok(scp_train_state_save(path, &s, &o) == 0, "trainer_state.json written");
    scp_train_state s2;
    scp_train_opts_default(&o2);
    int rc = scp_train_state_load(path, &s2, &o2);
    tap_ok(rc == 0, "trainer_state.json read%s%s", rc ? ": " : "", rc ? scp_last_error() : "");
    tap_ok(memcmp(&s, &s2, sizeof s) == 0 && o2.lr == o.lr, "state and options identical after the round trip");
    /* A damaged state is refused with the file and the key. */
    FILE *f = fopen(path, "w");
    fputs("{\"format\": \"scp-trainer-state\", \"step\": -3}", f);
    fclose(f);
    rc = scp_train_state_load(path, &s2, NULL);
    tap_ok(rc == -1 && strstr(scp_last_error(), "trainer_state.json"), "damaged state refused: %s", scp_last_error());
    f = fopen(path, "w");
    fputs("{\"step\": 3", f);
    fclose(f);
    rc = scp_train_state_load(path, &s2, NULL);
    tap_ok(rc == -1, "truncated JSON refused: %s", scp_last_error());
    /* Noise-scale averages with no step folded into them start from zero, as the trainer's own (it saves none
     * then): the state reads the same as the one it saves. */
    static const char *groups = "{\"embed\": 0.5, \"attn\": 0.5, \"mlp\": 0.5, \"expert\": 0.5, \"router\": 0.5, \"norm\": 0.5, \"all\": 0.5}";
    for (int steps = 0; steps < 2; steps++) {
        f = fopen(path, "w");
        fprintf(f, "{\"format\": \"scp-trainer-state\", \"step\": 12, \"adam_step\": 11, \"skipped\": 1, \"tokens\": 4096, "
                   "\"cursor\": 96, \"total_steps\": 500, \"rng\": [\"1\", \"2\", \"3\", \"4\"], "
                   "\"noise_scale_ema\": {\"steps\": %d, \"tr_sigma\": %s, \"grad_sq\": %s}}", steps, groups, groups);
        fclose(f);
        rc = scp_train_state_load(path, &s2, NULL);
        scp_noise none;
        scp_noise_reset(&none);
        int as_none = rc == 0 && memcmp(&s2.noise, &none, sizeof none) == 0;
        tap_ok(rc == 0 && as_none == !steps && (steps == 0 || s2.noise.ema_s[SCP_NOISE_ALL] == 0.5),
               "noise averages over %d steps read %s", steps, steps ? "as written" : "as none yet");
    }
    free(path);
    scp_train_opts_free(&o);
    scp_train_opts_free(&o2);
}

/* Save s (and o) and load them back: the load's return code, its message in *msg. */
static int state_round_trip(const scp_train_state *s, const scp_train_opts *o, const char **msg)
{
    char *path = scp_path_join(tmpdir, "trainer_state.json");
    scp_train_opts o2;
    scp_train_opts_default(&o2);
    scp_train_state s2;
    int rc = scp_train_state_save(path, s, o) ? -2 : scp_train_state_load(path, &s2, &o2);
    *msg = scp_last_error();
    scp_train_opts_free(&o2);
    free(path);
    return rc;
}

/* A state training cannot reach is refused naming the file and what is wrong with it. */
static void test_state_plausible(void)
{
    scp_train_opts o;
    scp_train_opts_default(&o);
    scp_train_state good = {.step = 10, .adam_step = 9, .skipped = 1, .tokens = 40 * 64, .cursor = 40,
                            .total_steps = 100, .world = 1};
    scp_rng_init(&good.rng, 5, 1);
    const char *msg;
    tap_ok(state_round_trip(&good, &o, &msg) == 0, "a reachable state loads");
    struct {
        const char *what, *want;
        int64_t step, adam_step, skipped, tokens, cursor, total;
        int zero_rng;
    } bad[] = {
        {"step beyond 2^53", "'step' 9007199254740993 is beyond 2^53", ((int64_t)1 << 53) + 1, ((int64_t)1 << 53) + 1, 0,
         INT64_MAX, (int64_t)1 << 60, 100, 0},
        {"total_steps beyond 2^53", "'total_steps'", 10, 9, 1, 2560, 40, ((int64_t)1 << 53) + 1, 0},
        {"steps neither applied nor skipped", "do not add up to 'step' 10", 10, 7, 1, 2560, 40, 100, 0},
        {"applied and skipped steps past INT64_MAX together", "do not add up to 'step' 10", 10, INT64_MAX, 1, 2560, 40, 100, 0},
        {"cursor behind the steps", "data cursor 9 is out of range for 10 steps", 10, 9, 1, 2560, 9, 100, 0},
        {"cursor beyond 2^24 sequences a step", "data cursor 167772161 is out of range", 10, 9, 1, INT64_MAX / 2,
         10 * ((int64_t)1 << 24) + 1, 100, 0},
        {"fewer tokens than sequences", "'tokens' 39 is fewer than the 40 sequences", 10, 9, 1, 39, 40, 100, 0},
        {"an all-zero RNG state", "'rng' is all zero", 10, 9, 1, 2560, 40, 100, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        scp_train_state s = good;
        s.step = bad[i].step, s.adam_step = bad[i].adam_step, s.skipped = bad[i].skipped, s.tokens = bad[i].tokens;
        s.cursor = bad[i].cursor, s.total_steps = bad[i].total;
        if (bad[i].zero_rng) memset(&s.rng, 0, sizeof s.rng);
        int rc = state_round_trip(&s, &o, &msg);
        tap_ok(rc == -1 && strstr(msg, "trainer_state.json") && strstr(msg, bad[i].want), "%s refused: %s", bad[i].what,
               msg);
    }
    /* Saved options are held to the command line's ranges. */
    o.lr = 20;
    tap_ok(state_round_trip(&good, &o, &msg) == -1 && strstr(msg, "trainer_state.json") && strstr(msg, "'lr' is 20"),
           "an lr beyond the command line's range refused: %s", msg);
    o.lr = 3e-4;
    o.t_eps = 0;
    tap_ok(state_round_trip(&good, &o, &msg) == -1 && strstr(msg, "'t_eps' is 0"), "t_eps 0 refused: %s", msg);
    o.t_eps = 1e-3;
    o.lr_mult[SCP_GROUP_EXPERT] = -1;
    tap_ok(state_round_trip(&good, &o, &msg) == -1 && strstr(msg, "'lr_mult.expert'"), "a negative multiplier refused: %s",
           msg);
    o.lr_mult[SCP_GROUP_EXPERT] = 1;
    free(o.backend);
    o.backend = scp_xstrdup("tpu");
    tap_ok(state_round_trip(&good, &o, &msg) == -1 && strstr(msg, "'backend'") && strstr(msg, "unknown backend 'tpu'"),
           "an unknown backend refused: %s", msg);
    /* JSON has no NaN or infinity: an overflowing number is refused by the reader, naming the file. */
    char *path = scp_path_join(tmpdir, "trainer_state.json");
    FILE *f = fopen(path, "w");
    fputs("{\"format\": \"scp-trainer-state\", \"step\": 1, \"adam_step\": 1, \"skipped\": 0, \"tokens\": 64, "
          "\"cursor\": 1, \"total_steps\": 5, \"rng\": [\"1\", \"2\", \"3\", \"4\"], \"options\": {\"lr\": 1e999}}",
          f);
    fclose(f);
    scp_train_state s2;
    scp_train_opts o2;
    scp_train_opts_default(&o2);
    int rc = scp_train_state_load(path, &s2, &o2);
    tap_ok(rc == -1 && strstr(scp_last_error(), "trainer_state.json"), "an infinite lr refused: %s", scp_last_error());
    free(path);
    scp_train_opts_free(&o2);
    scp_train_opts_free(&o);
}

/* Moments handed over one tensor at a time; call number fail_at fails. */
struct stream_ctx {
    const scp_model *m;
    const float *opt[2];
    int calls, fail_at;
};

static int stream_gather(void *ctx, int k, int i, float *out)
{
    struct stream_ctx *c = ctx;
    memcpy(out, c->opt[k] + c->m->offset[i], (size_t)c->m->desc[i].numel * sizeof *out);
    return c->calls++ == c->fail_at ? scp_error("gather %d failed", c->fail_at) : 0;
}

static int same_bytes(const char *p, const char *q)
{
    size_t n1 = 0, n2 = 0;
    char *x = NULL, *y = NULL;
    int same = scp_read_file(p, &x, &n1) == 0 && scp_read_file(q, &y, &n2) == 0 && n1 == n2 && memcmp(x, y, n1) == 0;
    free(x);
    free(y);
    return same;
}

static void test_optimizer(void)
{
    /* A model struct with just the parameter table (no backend needed for the moments' file). */
    scp_model m;
    memset(&m, 0, sizeof m);
    m.cfg.arch = SCP_ARCH_LLAMA;
    m.cfg.hidden_size = 4, m.cfg.intermediate_size = 6, m.cfg.num_layers = 1, m.cfg.num_heads = 2;
    m.cfg.num_kv_heads = 2, m.cfg.head_dim = 2, m.cfg.vocab_size = 5;
    m.n_params = scp_param_table(&m.cfg, &m.desc);
    m.offset = malloc(sizeof *m.offset * (size_t)m.n_params);
    for (int i = 0; i < m.n_params; i++) m.offset[i] = m.n_weights, m.n_weights += m.desc[i].numel;
    float *a = malloc(sizeof *a * (size_t)m.n_weights), *b = malloc(sizeof *b * (size_t)m.n_weights);
    float *a2 = calloc((size_t)m.n_weights, sizeof *a2), *b2 = calloc((size_t)m.n_weights, sizeof *b2);
    for (int64_t i = 0; i < m.n_weights; i++) a[i] = (float)i / 7.0f, b[i] = (float)(i * i) * 1e-9f;
    char *path = scp_path_join(tmpdir, "optimizer.safetensors");
    tap_ok(scp_optimizer_save(path, &m, a, b) == 0, "optimizer.safetensors written");
    tap_ok(scp_optimizer_load(path, &m, a2, b2) == 0 && memcmp(a, a2, sizeof *a * (size_t)m.n_weights) == 0 &&
           memcmp(b, b2, sizeof *b * (size_t)m.n_weights) == 0, "moments bit-exact after the round trip");
    /* The same file streamed one tensor at a time (what ZeRO-1's rank 0 writes as the ranks gather): the same
     * bytes, each tensor asked for once; a failed gather leaves no file. */
    struct stream_ctx sc = {&m, {a, b}, 0, -1};
    char *spath = scp_path_join(tmpdir, "streamed.safetensors");
    int rc = scp_optimizer_save_stream(spath, &m, stream_gather, &sc);
    tap_ok(rc == 0 && same_bytes(path, spath) && sc.calls == 2 * m.n_params,
           "streamed: the bytes of scp_optimizer_save, %d tensors asked for once each", sc.calls);
    struct stream_ctx none = {&m, {a, b}, 0, -1};
    tap_ok(scp_optimizer_save_stream(NULL, &m, stream_gather, &none) == 0 && none.calls == 2 * m.n_params,
           "a rank that does not write still runs every gather");
    char *fpath = scp_path_join(tmpdir, "failed.safetensors");
    struct stream_ctx bad = {&m, {a, b}, 0, 3};
    tap_ok(scp_optimizer_save_stream(fpath, &m, stream_gather, &bad) == -1 && bad.calls == 4 &&
           !scp_file_exists(fpath), "a failed gather: -1, no gather after it, no file left");
    char *dpath = scp_path_join(tmpdir, "no-such-dir/optimizer.safetensors");
    struct stream_ctx nodir = {&m, {a, b}, 0, -1};
    tap_ok(scp_optimizer_save_stream(dpath, &m, stream_gather, &nodir) == -1 && nodir.calls == 2 * m.n_params,
           "a file that cannot be made: -1, every gather still runs (the other ranks wait on them)");
    free(dpath);
    free(spath);
    free(fpath);
    /* A model of another shape is refused naming the tensor. */
    m.desc[0].shape[0] = 6;
    rc = scp_optimizer_load(path, &m, a2, b2);
    tap_ok(rc == -1 && strstr(scp_last_error(), "exp_avg.model.embed_tokens.weight"), "shape mismatch refused: %s",
           scp_last_error());
    free(path);
    free(a), free(b), free(a2), free(b2), free(m.desc), free(m.offset);
}

static void mkckpt(const char *run, int64_t step, int complete)
{
    char *name = scp_run_ckpt_name(step), *dir = scp_path_join(run, name);
    scp_mkdir_p(dir);
    if (complete) {
        char *st = scp_path_join(dir, "trainer_state.json");
        FILE *f = fopen(st, "w");
        fputs("{}\n", f);
        fclose(f);
        free(st);
    }
    free(name);
    free(dir);
}

static void test_rundir(void)
{
    char *run = scp_path_join(tmpdir, "run");
    scp_mkdir_p(run);
    char *name = scp_run_ckpt_name(42);
    tap_ok(strcmp(name, "step-0000042") == 0, "checkpoint name step-0000042");
    free(name);
    tap_ok(scp_run_latest(run) == NULL && strstr(scp_last_error(), "no checkpoint"), "empty run: nothing to resume");
    mkckpt(run, 10, 1);
    mkckpt(run, 20, 1);
    mkckpt(run, 30, 0);   /* a directory without its state is not a checkpoint to resume */
    char *l = scp_run_latest(run);
    tap_ok(l && strstr(l, "step-0000020"), "no link: newest complete checkpoint (%s)", l ? l : scp_last_error());
    free(l);
    tap_ok(scp_run_set_latest(run, "step-0000010") == 0, "latest link set");
    l = scp_run_latest(run);
    tap_ok(l && strstr(l, "/latest"), "latest link followed");
    free(l);
    char buf[64] = {0};
    char *lp = scp_path_join(run, "latest");
    tap_ok(readlink(lp, buf, sizeof buf - 1) > 0 && strcmp(buf, "step-0000010") == 0, "latest is a relative link");
    free(lp);
    /* Stale temporaries go, real checkpoints stay. */
    char *stale = scp_path_join(run, "step-0000040.tmp-12345"), *old = scp_path_join(run, "step-0000020.old-12345");
    scp_mkdir_p(stale);
    scp_mkdir_p(old);
    scp_run_clean_stale(run);
    tap_ok(!scp_file_exists(stale) && !scp_file_exists(old), "stale temporary and moved-aside checkpoints removed");
    free(stale);
    free(old);
    mkckpt(run, 40, 1);
    tap_ok(scp_run_prune(run, 2) == 0, "prune to 2");
    char *p10 = scp_path_join(run, "step-0000010"), *p20 = scp_path_join(run, "step-0000020"),
         *p30 = scp_path_join(run, "step-0000030"), *p40 = scp_path_join(run, "step-0000040");
    tap_ok(!scp_file_exists(p10) && !scp_file_exists(p20) && scp_file_exists(p30) && scp_file_exists(p40),
           "the two newest checkpoints are kept");
    free(p10), free(p20), free(p30), free(p40);

    /* metrics.jsonl: cut back to the checkpoint's step; a cut-off last line is dropped. */
    scp_metrics mt;
    tap_ok(scp_metrics_open(&mt, run) == 0, "metrics.jsonl opened");
    for (int s = 1; s <= 5; s++) {
        json_t *j = json_object();
        json_object_set_new(j, "step", json_integer(s));
        json_object_set_new(j, "loss", json_real(1.0 / s));
        scp_metrics_write(&mt, j);
    }
    fputs("{\"step\": 6, \"lo", mt.f);
    scp_metrics_close(&mt);
    tap_ok(scp_metrics_truncate(run, 3) == 0, "metrics truncated");
    char *mp = scp_path_join(run, "metrics.jsonl"), *text;
    size_t len;
    scp_read_file(mp, &text, &len);
    tap_ok(strcmp(text, "{\"step\":1,\"loss\":1.0}\n{\"step\":2,\"loss\":0.5}\n{\"step\":3,\"loss\":0.33333333333333331}\n") == 0,
           "lines up to step 3 kept, in order, reals exact");
    if (strncmp(text, "{\"step\":1", 9)) tap_diag("%s", text);
    free(text);
    free(mp);
    scp_rm_rf(run);
    free(run);
}


/* A source of 6 sequences of 10 tokens: sequence i holds 100 i + position; two documents (0..3, 4..9), and in
 * sequence 5 the last three positions are padding. */
static int fake_get(void *ctx, int64_t i, int32_t *tokens, int32_t *doc)
{
    (void)ctx;
    for (int k = 0; k < 10; k++) {
        tokens[k] = (int32_t)(100 * i + k);
        doc[k] = i == 5 && k >= 7 ? -1 : k < 4 ? 0 : 1;
    }
    return 0;
}

static void test_batch(void)
{
    scp_data_order o;
    scp_data_order_init(&o, 6, 9, 1);
    int seen[6] = {0}, same = 1, differs = 0;
    int64_t first[6];
    for (int c = 0; c < 6; c++) seen[first[c] = scp_data_order_at(&o, c)]++;
    for (int c = 0; c < 6; c++) {
        if (seen[c] != 1) same = 0;
        if (scp_data_order_at(&o, 6 + c) != first[c]) differs = 1;
    }
    tap_ok(same, "an epoch visits every sequence once");
    tap_ok(differs, "the next epoch is another permutation");
    scp_data_order o2;
    scp_data_order_init(&o2, 6, 9, 1);
    tap_ok(scp_data_order_at(&o2, 8) == scp_data_order_at(&o, 8) && scp_data_order_at(&o2, 3) == first[3],
           "the sequence at a cursor depends on (seed, cursor) alone");
    scp_data_order_free(&o2);
    scp_data_order_free(&o);
    /* A larger set: each of 3 epochs a permutation, epochs differ, far from the identity. */
    scp_data_order_init(&o, 1000, 5, 1);
    int perm_ok = 1, fixed = 0, same01 = 0;
    for (int e = 0; e < 3; e++) {
        char hit[1000] = {0};
        for (int c = 0; c < 1000; c++) {
            int64_t i = scp_data_order_at(&o, e * 1000 + c);
            if (i < 0 || i >= 1000 || hit[i]++) perm_ok = 0;
            if (e == 0) fixed += i == c, same01 += i == scp_data_order_at(&o, 1000 + c);
        }
    }
    tap_ok(perm_ok, "1000 sequences: every epoch is a permutation");
    tap_ok(fixed < 10 && same01 < 10, "shuffled: %d fixed points, %d positions equal between epochs 0 and 1", fixed, same01);
    scp_data_order_free(&o);
    scp_data_order_init(&o, 6, 9, 0);
    tap_ok(scp_data_order_at(&o, 7) == 1, "no shuffle: in order, wrapping");

    scp_seq_source src = {.n = 6, .T = 10, .get = fake_get};
    scp_train_batch b = {0};
    tap_ok(scp_batch_fetch(&b, &src, &o, 4, 2) == 0 && b.B == 2 && b.tokens[0] == 400 && b.tokens[10] == 500,
           "fetch rows at the cursor");
    scp_data_order_free(&o);

    /* MDM at t = 1 (linear: every maskable position masked), shift on, doc mask on. */
    scp_mdm_spec sp = {.seed = 3, .mask_id = 99, .shift = 1, .doc_mask = 1, .sched = SCP_SCHED_LINEAR};
    scp_batch_mdm_row(&b, 0, 1.0, 0, &sp);
    int good = b.input[0] == 400 && b.input[4] == 404;   /* position 0 and a document's first token kept */
    for (int k = 1; k < 10; k++)
        if (k != 4) good &= b.input[k] == 99 && b.target[k - 1] == 400 + k;
    good &= b.target[3] == -1 && b.target[9] == -1 && b.n_len[0] == 8 && b.n_scored[0] == 8;
    tap_ok(good, "mdm, shift + doc mask, t = 1: all masked but position 0 and document starts; logits i-1 -> x_i");
    scp_batch_mdm_row(&b, 1, 1.0, 1, &sp);
    good = b.input[10 + 7] == 507 && b.input[10 + 9] == 509 && b.n_len[1] == 5 && b.target[10 + 6] == -1;
    tap_ok(good, "padding is never masked nor counted in L");
    sp.shift = 0;
    sp.doc_mask = 0;
    scp_batch_mdm_row(&b, 0, 1.0, 0, &sp);
    good = b.n_len[0] == 10 && b.n_scored[0] == 10;
    for (int k = 0; k < 10; k++) good &= b.input[k] == 99 && b.target[k] == 400 + k;
    tap_ok(good, "mdm without shift: logits i -> x_i, position 0 maskable");
    /* t = 0.3: the row's mask is the one scp_mask_sequence draws for (seed, index). */
    uint8_t mk[10];
    scp_mask_sequence(3, 7, 0.3, SCP_SCHED_LINEAR, 10, b.tokens, 0, 99, NULL, mk);
    scp_batch_mdm_row(&b, 0, 0.3, 7, &sp);
    tap_ok(memcmp(mk, b.mask, 10) == 0, "mask stream (seed, index) as scp_mask_sequence");
    int nm = b.n_scored[0];
    scp_batch_weights(&b, SCP_OBJ_MDM, SCP_NORM_LENGTH, SCP_SCHED_LINEAR, 0.5);
    good = 1;
    for (int k = 0; k < 10; k++)
        good &= fabsf(b.weight[k] - (b.mask[k] ? (float)(0.5 / (0.3 * 10)) : 0.0f)) < 1e-7f;
    tap_ok(good, "length norm: weight = scale / (t L) on masked positions (%d masked)", nm);
    scp_batch_weights(&b, SCP_OBJ_MDM, SCP_NORM_MASKED, SCP_SCHED_LINEAR, 0.5);
    good = 1;
    for (int k = 0; k < 10; k++)
        good &= nm == 0 || fabsf(b.weight[k] - (b.mask[k] ? (float)(0.5 / (0.3 * nm)) : 0.0f)) < 1e-7f;
    tap_ok(good, "masked norm: weight = scale / (t n_masked)");

    /* AR: next token within real tokens; with the doc mask not across documents. */
    scp_batch_ar_row(&b, 1, 0);
    good = b.input[10] == 500 && b.target[10] == 501 && b.target[10 + 5] == 506 && b.target[10 + 6] == -1 &&
           b.target[10 + 9] == -1 && b.n_scored[1] == 6;
    tap_ok(good, "ar: target x[i+1], none into padding");
    scp_batch_ar_row(&b, 1, 1);
    tap_ok(b.target[10 + 3] == -1 && b.n_scored[1] == 5, "ar with doc mask: no target across a document boundary");
    /* The view: with the doc mask the documents; without it, padding kept apart only when present. */
    scp_batch v = scp_batch_view(&b, 1, 1, 1, SCP_ATTN_BIDIRECTIONAL, 0, 0);
    tap_ok(v.doc == b.doc + 10 && v.input == b.input + 10 && v.B == 1, "view with the doc mask: the documents");
    v = scp_batch_view(&b, 1, 1, 0, SCP_ATTN_BIDIRECTIONAL, 0, 0);
    tap_ok(v.doc && v.doc[0] == 0 && v.doc[4] == 0 && v.doc[6] == 0 && v.doc[7] == -1 && v.doc[9] == -1,
           "view without the doc mask, padding present: real tokens 0, padding -1");
    v = scp_batch_view(&b, 0, 1, 0, SCP_ATTN_BIDIRECTIONAL, 0, 0);
    tap_ok(v.doc == NULL, "view without the doc mask and no padding: no doc array");
    scp_batch_free(&b);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/scp-unit-train.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;
    test_schedules();
    test_opts_json();
    test_state();
    test_state_plausible();
    test_optimizer();
    test_rundir();
    test_batch();
    scp_rm_rf(tmpdir);
    return tap_done();
}
