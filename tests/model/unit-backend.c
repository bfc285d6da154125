/* unit-backend.c: the backend registry and the table contract of model/backend.h: the registered names and
 * aliases, what a build without CUDA says, the check of a table (scp_backend_missing) on complete tables and on
 * broken copies, cpu-ref's choice of reference loops, capabilities asked by the driver and kept by the
 * profiling wrapper, the traits the memory planner sizes from (the CUDA ones known without the plugin). (The numbers of every entry: tests/model/backend-ops.) */
#include "../tap.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/error.h"
#include "core/json.h"
#include "model/backend.h"
#include "model/backend_profile.h"
#include "model/backend_traits.h"
#include "model/model.h"

static void test_registry(void)
{
    static const char *const want[] = {"cpu", "cpu-ref", "cpu-mirror", "cpu-bf16", "cuda", "cuda-fp32"};
    int n = 0, same = 1;
    for (const char *name; (name = scp_backend_registered(n)); n++) same &= n < 6 && strcmp(name, want[n]) == 0;
    tap_ok(n == 6 && same && !scp_backend_registered(-1),
           "registered: cpu, cpu-ref, cpu-mirror, cpu-bf16, cuda, cuda-fp32 (%d)", n);
    static const struct { const char *name; const scp_backend *table; } cpu[] = {
        {NULL, &scp_backend_cpu}, {"cpu", &scp_backend_cpu}, {"cpu-ref", &scp_backend_cpu_ref},
        {"cpu-mirror", &scp_backend_cpu_mirror}, {"cpu-bf16", &scp_backend_cpu_bf16}};
    for (int i = 0; i < 5; i++) {
        char why[64] = "x";
        tap_ok(scp_backend_find(cpu[i].name) == cpu[i].table &&
                   scp_backend_usable(cpu[i].table->name, why, sizeof why) && why[0] == 0,
               "%s: found, its table, usable", cpu[i].name ? cpu[i].name : "(no name: cpu)");
    }
    char why[128];
    const scp_backend *fast = scp_backend_find("cpu-fast");
    tap_ok(!fast && strstr(scp_last_error(), "unknown backend 'cpu-fast'") &&
               strstr(scp_last_error(), "available: cpu, cpu-ref, cpu-mirror, cpu-bf16"),
           "an unknown name refused, the built ones listed (%s)", scp_last_error());
    tap_ok(!scp_backend_usable("cpu-fast", why, sizeof why) && strstr(why, "not a registered"),
           "an unknown name is not usable (%s)", why);
#ifdef HAVE_CUDA
    tap_ok(scp_backend_find("cuda-bf16") == scp_backend_find("cuda") && scp_backend_find("cuda")->act_size == 2 &&
               scp_backend_find("cuda-fp32")->act_size == 4,
           "cuda-bf16 is cuda (bf16 storage); cuda-fp32 stores fp32");
    int usable = scp_backend_usable("cuda", why, sizeof why);
    tap_ok(usable || strstr(why, "no CUDA device"), "cuda: usable %d (%s)", usable, usable ? "a GPU" : why);
#else
    const char *names[3] = {"cuda", "cuda-bf16", "cuda-fp32"};
    for (int i = 0; i < 3; i++)
        tap_ok(!scp_backend_find(names[i]) && strstr(scp_last_error(), "no CUDA backend") &&
                   !scp_backend_usable(names[i], why, sizeof why) && strstr(why, "no CUDA backend"),
               "%s without CUDA: not found, not usable, says why (%s)", names[i], why);
#endif
}

/* cpu-ref runs the reference loops for matmul, attention and cross-entropy, the fast kernels elsewhere. */
static void test_reference_table(void)
{
    char differ[256] = "";
    size_t n = 0;
#define SCP_BACKEND_OP(cap, ret, op, params)                                                                    \
    if (scp_backend_cpu_ref.op != scp_backend_cpu.op) n += (size_t)snprintf(differ + n, sizeof differ - n, " %s", #op);
#include "model/backend_ops.def"
    tap_ok(strcmp(differ, " matmul_fwd matmul_bwd_inp matmul_bwd_w attention_fwd attention_bwd crossentropy") == 0,
           "cpu-ref differs from cpu in:%s", differ);
}

static void test_missing(void)
{
    const scp_backend *all[4] = {&scp_backend_cpu, &scp_backend_cpu_ref, &scp_backend_cpu_mirror,
                                 &scp_backend_cpu_bf16};
    /* cpu-ref runs the experts one matmul each (its driver path is the reference of the grouped one) */
    for (int i = 0; i < 4; i++) {
        unsigned want = all[i] == &scp_backend_cpu_ref ? SCP_BACKEND_CAP_ALL & ~(unsigned)SCP_BACKEND_CAP_MOE_GROUPED
                                                       : SCP_BACKEND_CAP_ALL;
        tap_ok(!scp_backend_missing(all[i]) && all[i]->caps == want, "%s: complete, the capabilities %#x", all[i]->name,
               want);
    }
    scp_backend t = scp_backend_cpu;
    t.matmul_fwd = NULL;
    const char *m1 = scp_backend_missing(&t);
    t = scp_backend_cpu, t.attention_decode = NULL;
    const char *m2 = scp_backend_missing(&t);
    t.caps &= ~(unsigned)SCP_BACKEND_CAP_DECODE;
    const char *m3 = scp_backend_missing(&t);
    tap_ok(m1 && strcmp(m1, "matmul_fwd") == 0 && m2 && strcmp(m2, "attention_decode") == 0 && !m3,
           "a NULL core entry is missing (%s); so is one of a claimed capability (%s), not one of another", m1, m2);
    t = scp_backend_cpu, t.moe_combine_bwd = NULL, t.caps = SCP_BACKEND_CAP_DECODE;
    tap_ok(!scp_backend_missing(&t) && !scp_backend_has(&t, SCP_BACKEND_CAP_MOE) &&
               scp_backend_has(&t, SCP_BACKEND_CAP_DECODE) && scp_backend_has(&t, SCP_BACKEND_CAP_CORE),
           "a table without MoE: complete; has DECODE and CORE, not MOE");
    t = scp_backend_cpu, t.act_size = 3;
    const char *a = scp_backend_missing(&t);
    t = scp_backend_cpu, t.act_size = 2;   /* bf16 storage must not claim host memory */
    const char *h = scp_backend_missing(&t);
    t = scp_backend_cpu, t.caps |= 1u << 7;
    const char *c = scp_backend_missing(&t);
    tap_ok(a && strcmp(a, "act_size") == 0 && h && strcmp(h, "host_memory") == 0 && c && strcmp(c, "caps") == 0,
           "act_size 3 (%s), bf16 in host memory (%s), an unknown capability (%s) refused", a, h, c);
}

/* The driver asks the capability: a table without DECODE decodes nothing (callers then run full forwards), and
 * the profiling wrapper keeps the capabilities and the entries of its base. */
static void test_capabilities(void)
{
    json_t *j = json_object();
    json_object_set_new(j, "model_type", json_string("qwen3"));
    json_object_set_new(j, "hidden_size", json_integer(16));
    json_object_set_new(j, "intermediate_size", json_integer(24));
    json_object_set_new(j, "num_hidden_layers", json_integer(1));
    json_object_set_new(j, "num_attention_heads", json_integer(2));
    json_object_set_new(j, "num_key_value_heads", json_integer(1));
    json_object_set_new(j, "head_dim", json_integer(8));
    json_object_set_new(j, "vocab_size", json_integer(31));
    scp_model_config cfg;
    scp_model *m = scp_config_from_json(&cfg, j, "test config") == 0 ? scp_model_new(&cfg, "cpu") : NULL;
    json_decref(j);
    if (!tap_ok(m != NULL, "a small qwen3 model on cpu")) return;
    scp_model_init_random(m, 3, 0.2f);
    scp_backend no_decode = scp_backend_cpu;
    no_decode.caps &= ~(unsigned)SCP_BACKEND_CAP_DECODE;
    no_decode.attention_decode = NULL;
    int32_t ids[4] = {1, 2, 3, 4};
    float *logits = malloc(sizeof(float) * 31);
    int can = scp_model_can_decode(m);
    m->backend = &no_decode;
    int cannot = !scp_model_can_decode(m) && scp_model_decode_start(m, ids, 4, 8, logits) < 0 &&
                 strstr(scp_last_error(), "no incremental decoding");
    tap_ok(can && cannot, "decoding follows SCP_BACKEND_CAP_DECODE: on cpu, and refused without it (%s)",
           scp_last_error());
    double t[SCP_PROF_N] = {0};
    const scp_backend *p = scp_backend_profiled(&no_decode, NULL, t);
    int ok_nodec = p->caps == no_decode.caps && !scp_backend_missing(p) && !p->attention_decode;
    p = scp_backend_profiled(&scp_backend_cpu_bf16, NULL, t);
    tap_ok(ok_nodec && p->caps == scp_backend_cpu_bf16.caps && !scp_backend_missing(p) && p->act_size == 2,
           "the profiling wrapper keeps its base's capabilities, storage and a complete table");
    m->backend = &scp_backend_cpu;
    free(logits);
    scp_config_free(&cfg);
    scp_model_free(m);
}

/* The traits of every registered name: its table's where it loads here; for a CUDA name the known ones, which
 * must equal the table's wherever the plugin loads (a CUDA build), and stand in for it where it does not. */
static void test_traits(void)
{
    for (int i = 0; scp_backend_registered(i); i++) {
        const char *name = scp_backend_registered(i);
        scp_backend_traits t, k;
        int found = scp_backend_traits_find(name, &t) == 0, known = scp_backend_traits_known(name, &k) == 0;
        const scp_backend *be = scp_backend_find(name);
        if (be) {
            int same = found && t.from_table && t.act_size == be->act_size && t.host_memory == be->host_memory &&
                       t.attn_state_floats(2, 3, 5) == be->attn_state_floats(2, 3, 5) && strcmp(t.name, be->name) == 0;
            int known_same = !known || (k.act_size == be->act_size && k.host_memory == be->host_memory &&
                                        k.attn_state_floats(2, 3, 5) == be->attn_state_floats(2, 3, 5) &&
                                        k.attn_state_floats(1, 16, 4096) == be->attn_state_floats(1, 16, 4096) &&
                                        strcmp(k.name, be->name) == 0);
            tap_ok(same && known_same, "%s: traits from its table (act_size %zu, host memory %d)%s", name,
                   be->act_size, be->host_memory, known ? ", equal to the known CUDA traits" : "");
        } else {
            tap_ok(found && known && !t.from_table && t.host_memory == 0 && t.act_size == k.act_size &&
                       t.attn_state_floats(2, 3, 5) == 30,
                   "%s: no table here, the known traits (act_size %zu, device memory, (B, H, T) attention state)",
                   name, t.act_size);
        }
    }
    scp_backend_traits t;
    int alias = scp_backend_traits_find("cuda-bf16", &t) == 0 && t.act_size == 2 && strcmp(t.name, "cuda") == 0;
    tap_ok(alias && scp_backend_traits_find("cpu-fast", &t) < 0 && strstr(scp_last_error(), "unknown backend") &&
               scp_backend_traits_known("cpu", &t) < 0,
           "cuda-bf16 has cuda's traits; an unknown name is refused (%s); cpu has no known traits but its table",
           scp_last_error());
}

int main(void)
{
    test_registry();
    test_reference_table();
    test_missing();
    test_capabilities();
    test_traits();
    return tap_done();
}
