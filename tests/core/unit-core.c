/* unit-core.c: libscp core: dtype conversions, safetensors round trip and validation, atomic output,
 * config parsing and the parameter table. */
#include "../tap.h"
#include "../capped.h"

#include "core/options.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"
#include "formats/model_config.h"
#include "formats/safetensors.h"
#include "formats/st_set.h"
#include "formats/tokstream.h"
#include "core/rng.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static void test_dtypes(void)
{
    /* Exact values: 1.0, -2.0, 65504 (f16 max), smallest subnormal, 1/3 rounding. */
    tap_ok(scp_f32_to_f16(1.0f) == 0x3c00, "f16(1.0) = 0x3c00");
    tap_ok(scp_f32_to_f16(-2.0f) == 0xc000, "f16(-2.0) = 0xc000");
    tap_ok(scp_f32_to_f16(65504.0f) == 0x7bff, "f16(65504) = 0x7bff");
    tap_ok(scp_f32_to_f16(70000.0f) == 0x7c00, "f16(70000) = inf");
    tap_ok(scp_f16_to_f32(0x0001) == 5.9604644775390625e-8f, "f16 smallest subnormal");
    tap_ok(scp_f32_to_f16(5.9604644775390625e-8f) == 0x0001, "f32 -> f16 smallest subnormal");
    tap_ok(scp_f32_to_f16(1.0f / 3.0f) == 0x3555, "f16(1/3) = 0x3555 (nearest)");
    tap_ok(scp_f32_to_bf16(1.0f) == 0x3f80, "bf16(1.0) = 0x3f80");
    /* 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even gives 1.0. */
    tap_ok(scp_f32_to_bf16(1.00390625f) == 0x3f80, "bf16 ties to even (down)");
    tap_ok(scp_f32_to_bf16(1.01171875f) == 0x3f82, "bf16 ties to even (up)");
    tap_ok(isnan(scp_bf16_to_f32(scp_f32_to_bf16(NAN))), "bf16 keeps NaN");
    int all = 1;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) continue;   /* NaNs */
        if (scp_f32_to_f16(scp_f16_to_f32((uint16_t)h)) != h) { all = 0; tap_diag("f16 0x%04x fails", h); break; }
    }
    tap_ok(all, "every non-NaN f16 survives f16 -> f32 -> f16");
    tap_ok(scp_dtype_from_name("BF16") == SCP_BF16 && scp_dtype_size(SCP_I64) == 8 &&
           scp_dtype_from_name("F8") == SCP_DTYPE_INVALID, "dtype table");
}

static char tmpdir[256];

static void test_safetensors(void)
{
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3f80, 0x4000, 0x4040};
    int64_t sa[2] = {2, 3}, sb[1] = {3}, s0[1] = {0};
    char *path = scp_path_join(tmpdir, "t.safetensors");
    scp_st_writer *w = scp_st_writer_new();
    scp_st_add(w, "b.weight", SCP_BF16, 1, sb, b);
    scp_st_add(w, "a.weight", SCP_F32, 2, sa, a);
    scp_st_add(w, "empty", SCP_I32, 1, s0, NULL);
    scp_st_set_metadata(w, "format", "pt");
    tap_ok(scp_st_write(w, path) == 0, "write safetensors");
    scp_st_writer_free(w);
    scp_st_file f;
    tap_ok(scp_st_open(&f, path) == 0, "read it back: %s", f.n ? "ok" : scp_last_error());
    const scp_tensor_info *ta = scp_st_find(&f, "a.weight"), *tb = scp_st_find(&f, "b.weight");
    tap_ok(f.n == 3 && ta && tb && ta->ndim == 2 && ta->shape[0] == 2 && ta->shape[1] == 3 && ta->dtype == SCP_F32 &&
           memcmp(ta->data, a, sizeof a) == 0 && tb->dtype == SCP_BF16 && memcmp(tb->data, b, sizeof b) == 0,
           "tensors bit-exact with names, shapes, dtypes");
    tap_ok(((uintptr_t)ta->data % 8) == 0, "data section 8-byte aligned");
    tap_ok(f.metadata && strcmp(json_string_value(json_object_get(f.metadata, "format")), "pt") == 0, "metadata kept");
    scp_st_close(&f);
    free(path);

    /* A rank's piece of a tensor: elements [lo, hi) of the flat tensor, converted to fp32, checked as a whole read. */
    char *dir = scp_path_join(tmpdir, "set");
    scp_mkdir_p(dir);
    path = scp_path_join(dir, "model.safetensors");
    w = scp_st_writer_new();
    scp_st_add(w, "b.weight", SCP_BF16, 1, sb, b);
    scp_st_add(w, "a.weight", SCP_F32, 2, sa, a);
    tap_ok(scp_st_write(w, path) == 0, "write DIR/model.safetensors");
    scp_st_writer_free(w);
    scp_st_set set;
    float out[6] = {0}, whole[6] = {0};
    tap_ok(scp_st_set_open(&set, dir, "model") == 0, "open it as a set");
    tap_ok(scp_st_set_read_f32_range(&set, "a.weight", 2, sa, 2, 5, out) == 0 && out[0] == 3 && out[1] == 4 &&
           out[2] == 5 && scp_st_set_read_f32(&set, "a.weight", 2, sa, whole) == 0 && memcmp(whole, a, sizeof a) == 0,
           "elements [2, 5) of a (2, 3) f32 tensor are 3 4 5, and the whole read is the tensor");
    tap_ok(scp_st_set_read_f32_range(&set, "b.weight", 1, sb, 1, 3, out) == 0 && out[0] == 2 && out[1] == 3,
           "elements [1, 3) of a bf16 tensor, widened: 2 3");
    tap_ok(scp_st_set_read_f32_range(&set, "a.weight", 2, sa, 4, 4, out) == 0, "an empty range reads nothing");
    int rc = scp_st_set_read_f32_range(&set, "a.weight", 2, sa, 4, 7, out);
    tap_ok(rc == -1 && strstr(scp_last_error(), "[4, 7)") && strstr(scp_last_error(), "it has 6"),
           "a range past the tensor is refused: %s", scp_last_error());
    int64_t wrong[2] = {3, 2};
    rc = scp_st_set_read_f32_range(&set, "a.weight", 2, wrong, 0, 1, out);
    tap_ok(rc == -1 && strstr(scp_last_error(), "has shape"), "a piece of a tensor of another shape is refused: %s",
           scp_last_error());
    scp_st_set_close(&set);
    free(path);
    free(dir);

    /* An index that maps a tensor outside the directory is refused naming the tensor. The name is 34 MB, more than
     * glibc ever serves from the heap rather than a mapping of its own (32 MB at most), so it is unmapped when the
     * index is freed: a message made after that would fault. */
    dir = scp_path_join(tmpdir, "outside");
    scp_mkdir_p(dir);
    path = scp_path_join(dir, "model.safetensors.index.json");
    const size_t name_len = (size_t)34 << 20;
    char *index = malloc(name_len + 64);
    size_t n = (size_t)sprintf(index, "{\"weight_map\": {\"");
    memset(index + n, 'k', name_len);
    n += name_len;
    n += (size_t)sprintf(index + n, "\": \"../x.safetensors\"}}");
    FILE *index_file = fopen(path, "wb");
    fwrite(index, 1, n, index_file);
    fclose(index_file);
    rc = scp_st_set_open(&set, dir, "model");
    tap_ok(rc == -1 && strstr(scp_last_error(), "model.safetensors.index.json: weight_map entry 'kkkkkkkk"),
           "an index entry naming a file outside the directory is refused naming the entry");
    free(index);
    free(path);
    free(dir);

    /* Malformed headers: each must be refused with a message naming the fault. */
    struct { const char *header; const char *expect; size_t data; } bad[] = {
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", "invalid JSON", 8},
        {"[1,2]", "not a JSON object", 0},
        {"{\"x\":{\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype 'F99'", 8},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "needs 12 bytes", 8},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", "past the end", 8},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "not ordered", 8},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", "overlap", 16},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", "non-negative", 8},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", "overflow", 8},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", "data_offsets", 8},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t hl = strlen(bad[i].header), n = 8 + hl + bad[i].data;
        uint8_t *buf = calloc(1, n);
        for (int k = 0; k < 8; k++) buf[k] = (uint8_t)((uint64_t)hl >> (8 * k));
        memcpy(buf + 8, bad[i].header, hl);
        scp_st_file g = {0};
        int rc = scp_st_parse(&g, buf, n, "bad.safetensors");
        tap_ok(rc == -1 && strstr(scp_last_error(), bad[i].expect) && strstr(scp_last_error(), "bad.safetensors"),
               "malformed %zu refused: %s", i, scp_last_error());
        free(buf);
    }
    uint8_t shortbuf[4] = {0};
    scp_st_file g = {0};
    tap_ok(scp_st_parse(&g, shortbuf, 4, "s") == -1 && strstr(scp_last_error(), "truncated"), "4-byte file refused");
    uint8_t longhdr[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0};
    tap_ok(scp_st_parse(&g, longhdr, 16, "s") == -1 && strstr(scp_last_error(), "past the end"), "header length past end refused");
}

static void test_atomic(void)
{
    char *path = scp_path_join(tmpdir, "out.txt");
    scp_out *o = scp_out_open(path, 0);
    fputs("half", o->f);
    fflush(o->f);
    tap_ok(!scp_file_exists(path), "final name absent while writing");
    scp_out_abort(o);
    tap_ok(!scp_file_exists(path), "abort leaves nothing");
    o = scp_out_open(path, 0);
    fputs("whole", o->f);
    tap_ok(scp_out_commit(o) == 0 && scp_file_exists(path), "commit renames into place");
    char *buf;
    size_t len;
    tap_ok(scp_read_file(path, &buf, &len) == 0 && len == 5 && strcmp(buf, "whole") == 0, "content intact");
    free(buf);
    free(path);
    tap_ok(scp_crc32(0, "123456789", 9) == 0xCBF43926u, "CRC32 check value");
}

/* A small llama config with `edit` (a JSON object) merged over it: parsed as "cfg/config.json". */
static int config_with(const char *edit, scp_model_config *c)
{
    const char *base = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                       "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":100}";
    json_t *j = scp_json_parse(base, strlen(base), "base"), *e = scp_json_parse(edit, strlen(edit), "edit");
    json_object_update(j, e);
    int rc = scp_config_from_json(c, j, "cfg/config.json");
    if (rc == 0) scp_config_free(c);
    json_decref(j);
    json_decref(e);
    return rc;
}

/* Running out of memory while parsing JSON is reported as that, not as a syntax error (jansson itself says
 * nothing, or "string or '}' expected"): a child process whose address space is capped 32 MB above what it
 * uses parses a 3 MB array of 400,000 small objects (well over 32 MB once parsed). */
#ifndef UNDER_ASAN
typedef struct big_json {
    const char *buf;
    size_t len;
} big_json;

static const char *parse_big(void *ctx)
{
    const big_json *b = ctx;
    json_t *k = scp_json_parse(b->buf, b->len, "big.json");
    return k ? "parsed" : scp_last_error();
}
#endif

static void test_json_oom(void)
{
#ifdef UNDER_ASAN
    tap_ok(1, "# SKIP out of memory while parsing JSON: AddressSanitizer reserves the address space a cap would limit");
#else
    const size_t n = 400000;
    char *buf = malloc(n * 10 + 2);
    size_t len = 0;
    buf[len++] = '[';
    for (size_t i = 0; i < n; i++) len += (size_t)sprintf(buf + len, "%s{\"a\":%d}", i ? "," : "", (int)(i % 10));
    buf[len++] = ']';
    char msg[512];
    big_json b = {buf, len};
    int rc = capped_run(32u << 20, parse_big, &b, msg, sizeof msg);
    tap_ok(rc == 0 && strstr(msg, "big.json: out of memory") && !strstr(msg, "invalid"),
           "%zu bytes of JSON with the address space capped: %s", len, rc ? "the child died" : msg);
    /* After the child: the memory of a parse freed here would be reused there without growing the address space. */
    json_t *j = scp_json_parse(buf, len, "big.json");
    tap_ok(j && json_array_size(j) == n, "and without the cap they parse");
    json_decref(j);
    free(buf);
#endif
}

/* The typed getters: an integer written as an integral real (64.0) reads as that integer; a real past int64_t, or
 * with a fraction, is refused naming the file and the key (the conversion is not attempted out of range). */
static void test_json_getters(void)
{
    const char *text = "{\"a\": 64.0, \"b\": 9.2e24, \"c\": -9223372036854775808.0, \"d\": 9223372036854775808.0, \"e\": 1.5}";
    json_t *j = scp_json_parse(text, strlen(text), "getters.json");
    int64_t v = 0;
    tap_ok(j && scp_json_get_int(j, "a", &v, "getters.json") == 0 && v == 64, "64.0 reads as the integer 64");
    tap_ok(scp_json_get_int(j, "c", &v, "getters.json") == 0 && v == INT64_MIN, "-2^63 as a real reads as INT64_MIN");
    static const char *past[] = {"b", "d", "e"};
    for (int i = 0; i < 3; i++) {
        int rc = scp_json_get_int(j, past[i], &v, "getters.json");
        char want[64];
        snprintf(want, sizeof want, "getters.json: key '%s' must be an integer", past[i]);
        tap_ok(rc == -1 && strstr(scp_last_error(), want), "a real '%s' outside int64_t or with a fraction is refused: %s", past[i],
               scp_last_error());
    }
    json_decref(j);
}

/* Every size key: an integer within its documented range, or refused naming the key and the file; the products
 * that size the allocations checked before anything is allocated; real large models pass. */
static void test_config_sizes(void)
{
    static const char *keys[] = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                 "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings"};
    static const struct { const char *value, *says; } kinds[] = {
        {"null", "not null"}, {"64.5", "not a number with a fraction or exponent (64.5)"},
        {"64.0", "not a number with a fraction or exponent (64)"}, {"1e9", "not a number with a fraction or exponent (1e+09)"},
        {"\"64\"", "not a string"}, {"true", "not a boolean"}, {"[64]", "not an array"}, {"{}", "not an object"},
        {"-1", "is -1, outside the supported"}, {"1000000000000", "is 1000000000000, outside the supported"},
    };
    int all = 1;
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
        for (size_t v = 0; v < sizeof kinds / sizeof *kinds; v++) {
            char edit[128], want[160];
            scp_model_config c;
            snprintf(edit, sizeof edit, "{\"%s\": %s}", keys[k], kinds[v].value);
            snprintf(want, sizeof want, "cfg/config.json: '%s' ", keys[k]);
            int refused = config_with(edit, &c) != 0;
            if (!refused || !strstr(scp_last_error(), want) || !strstr(scp_last_error(), kinds[v].says)) {
                all = 0;
                tap_diag("%s: %s", edit, refused ? scp_last_error() : "accepted");
            }
        }
    tap_ok(all, "each of %zu size keys as null, a float (64.5, 64.0, 1e9), a string, a boolean, an array, an object, -1 or 10^12: "
           "refused naming the key and the file", sizeof keys / sizeof *keys);
    scp_model_config c;
    tap_ok(config_with("{\"num_hidden_layers\": 1e9}", &c) != 0 &&
               strstr(scp_last_error(), "cfg/config.json: 'num_hidden_layers' must be an integer from 1 to 4096, not a number"),
           "num_hidden_layers 1e9 refused while reading: %s", scp_last_error());
    tap_ok(config_with("{\"hidden_size\": null}", &c) != 0 && strstr(scp_last_error(), "'hidden_size' must be an integer from 1 to 131072, not null"),
           "hidden_size null refused (not read as 0): %s", scp_last_error());
    tap_ok(config_with("{\"num_hidden_layers\": 4096, \"num_key_value_heads\": 4}", &c) == 0 &&
               config_with("{\"num_hidden_layers\": 4097}", &c) != 0 && strstr(scp_last_error(), "is 4097, outside the supported 1 to 4096"),
           "the bound itself is accepted, one past it refused: %s", scp_last_error());
    tap_ok(config_with("{\"rms_norm_eps\": null, \"max_position_embeddings\": 131072, \"pad_token_id\": null}", &c) == 0,
           "optional non-size keys may be null; a long context is fine");
    tap_ok(config_with("{\"model_type\": \"qwen3_moe\", \"num_experts\": 8, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 1.5}", &c) != 0 &&
               strstr(scp_last_error(), "'moe_intermediate_size' must be an integer"),
           "moe sizes too: %s", scp_last_error());
    tap_ok(config_with("{\"model_type\": \"qwen3_moe\", \"num_experts\": 8, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 16, "
                       "\"decoder_sparse_step\": null}", &c) != 0 && strstr(scp_last_error(), "'decoder_sparse_step' must be an integer"),
           "decoder_sparse_step: %s", scp_last_error());
    tap_ok(config_with("{\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, \"high_freq_factor\": 4}}", &c) != 0 &&
               strstr(scp_last_error(), "low_freq_factor < high_freq_factor"),
           "rope_scaling with equal frequency factors (a division by zero) refused: %s", scp_last_error());
    tap_ok(config_with("{\"rope_scaling\": {\"rope_type\": \"llama3\", \"original_max_position_embeddings\": 8192.5}}", &c) != 0 &&
               strstr(scp_last_error(), "'original_max_position_embeddings' must be an integer"),
           "rope_scaling.original_max_position_embeddings: %s", scp_last_error());
    tap_ok(config_with("{\"rope_theta\": \"1e4\"}", &c) != 0 && strstr(scp_last_error(), "'rope_theta' must be a number, not a string"),
           "rope_theta as a string: %s", scp_last_error());
    /* Products: every factor in range, the whole too large. */
    tap_ok(config_with("{\"hidden_size\": 131072, \"num_attention_heads\": 64, \"num_key_value_heads\": 64, \"intermediate_size\": 1048576, "
                       "\"num_hidden_layers\": 4096}", &c) != 0 &&
               strstr(scp_last_error(), "cfg/config.json: the sizes describe more than 4398046511104 parameters"),
           "each size in range, the parameter count past 2^42: %s", scp_last_error());
    tap_ok(config_with("{\"model_type\": \"qwen3_moe\", \"num_experts\": 4096, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 1, "
                       "\"hidden_size\": 4, \"num_attention_heads\": 2, \"num_key_value_heads\": 2, \"num_hidden_layers\": 4096}", &c) != 0 &&
               strstr(scp_last_error(), "more than the supported 4194304 tensors"),
           "tiny tensors but too many of them: %s", scp_last_error());
    tap_ok(config_with("{\"hidden_size\": 65536, \"num_attention_heads\": 8}", &c) != 0 && strstr(scp_last_error(), "head size"),
           "a head size past 4096 from hidden_size / heads: %s", scp_last_error());
    /* Llama 3.1 405B and a 1T-parameter mixture of experts (Kimi K2's sizes) read, with their parameter counts. */
    const char *big[2] = {
        "{\"hidden_size\": 16384, \"intermediate_size\": 53248, \"num_hidden_layers\": 126, \"num_attention_heads\": 128, "
        "\"num_key_value_heads\": 8, \"vocab_size\": 128256, \"max_position_embeddings\": 131072}",
        "{\"model_type\": \"qwen3_moe\", \"hidden_size\": 7168, \"num_hidden_layers\": 61, \"num_attention_heads\": 64, "
        "\"num_key_value_heads\": 64, \"head_dim\": 128, \"num_experts\": 384, \"num_experts_per_tok\": 8, "
        "\"moe_intermediate_size\": 2048, \"vocab_size\": 163840}"};
    const double lo[2] = {4.0e11, 1.0e12}, hi[2] = {4.1e11, 1.1e12};
    for (int b = 0; b < 2; b++) {
        const char *llama = "{\"model_type\":\"llama\"}";
        json_t *base = scp_json_parse(llama, strlen(llama), "base"), *e = scp_json_parse(big[b], strlen(big[b]), "edit");
        json_object_update(base, e);
        int rc = scp_config_from_json(&c, base, "cfg/config.json");
        double n = rc ? 0 : (double)scp_param_count(&c);
        tap_ok(rc == 0 && n > lo[b] && n < hi[b], "%s sizes read: %.4g parameters%s%s", b ? "a 1T mixture of experts'" : "Llama 3.1 405B's",
               n, rc ? ": " : "", rc ? scp_last_error() : "");
        if (!rc) scp_config_free(&c);
        json_decref(base);
        json_decref(e);
    }
}

static void test_config(void)
{
    const char *js = "{\"model_type\":\"qwen3\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                     "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":32,\"vocab_size\":100,"
                     "\"rms_norm_eps\":1e-6,\"rope_theta\":1000000,\"tie_word_embeddings\":true,\"custom\":7}";
    json_t *j = scp_json_parse(js, strlen(js), "config.json");
    scp_model_config c;
    tap_ok(scp_config_from_json(&c, j, "config.json") == 0, "qwen3 config parses");
    tap_ok(c.arch == SCP_ARCH_QWEN3 && c.qk_norm && !c.qkv_bias && c.head_dim == 32 && c.num_kv_heads == 2 && c.tie_word_embeddings,
           "qwen3 switches: q/k norm, explicit head_dim, GQA, tied");
    scp_param_desc *t;
    int n = scp_param_table(&c, &t);
    /* embed + 2 * (2 norms + q,k,v,o + q_norm,k_norm + gate,up,down) + final norm (tied: no lm_head) */
    tap_ok(n == 1 + 2 * 11 + 1, "parameter table has %d entries", n);
    tap_ok(strcmp(t[2].name, "model.layers.0.self_attn.q_proj.weight") == 0 && t[2].shape[0] == 128 && t[2].shape[1] == 64,
           "q_proj is (H*hd, D) = (128, 64)");
    int64_t expect = 100 * 64 + 2 * (64 + 64 + 128 * 64 + 2 * 64 * 64 + 64 * 128 + 32 + 32 + 3 * 128 * 64) + 64;
    tap_ok(scp_param_count(&c) == expect, "parameter count %lld", (long long)scp_param_count(&c));
    free(t);
    json_t *out = scp_config_to_json(&c);
    tap_ok(json_integer_value(json_object_get(out, "custom")) == 7 && json_is_true(json_object_get(out, "is_causal")),
           "unknown keys survive; SCP keys written");
    json_decref(out);
    scp_config_free(&c);
    json_decref(j);

    const char *bad[][2] = {
        {"{\"model_type\":\"gpt2\",\"hidden_size\":8}", "model_type 'gpt2' is not supported"},
        {"{\"model_type\":\"llama\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":3,\"vocab_size\":5,\"intermediate_size\":4}", "not divisible"},
        {"{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":5}", "missing required key 'hidden_size'"},
        {"{\"model_type\":\"llama\",\"hidden_size\":\"8\",\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":5}", "must be an integer"},
        {"{\"model_type\":\"qwen3_moe\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":5}", "num_experts"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = scp_json_parse(bad[i][0], strlen(bad[i][0]), "config.json");
        tap_ok(scp_config_from_json(&c, j, "config.json") == -1 && strstr(scp_last_error(), bad[i][1]),
               "bad config %zu refused: %s", i, scp_last_error());
        json_decref(j);
    }
    test_config_sizes();
}

/* A document length is a claim until its tokens arrive: a stream of 72 bytes whose one document says it has
 * 2^32 - 2 four-byte tokens (16 GiB) is refused as truncated with the address space capped 256 MB above what the
 * process uses, rather than ending in "out of memory" (or, uncapped, in allocating 16 GiB). */
#ifndef UNDER_ASAN
static const char *read_long_claim(void *ctx)
{
    (void)ctx;
    uint8_t s[72] = "SCPTOKS";
    const uint8_t head[12] = {1, 0, 0, 0, 4, 0, 0, 0, 0xE8, 0x03, 0, 0};   /* version 1, 4-byte tokens, vocabulary 1000 */
    const uint8_t doc[8] = {0xFE, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0};            /* 2^32 - 2 tokens claimed, one there */
    memcpy(s + 8, head, sizeof head);
    memcpy(s + 64, doc, sizeof doc);
    FILE *g = fmemopen(s, sizeof s, "rb");
    scp_tokstream_reader r;
    int32_t *ids = NULL;
    size_t cap = 0;
    uint32_t n;
    int rc = scp_tokstream_read_begin(&r, g, "claim.tok");
    if (rc == 0) rc = scp_tokstream_read_doc(&r, &ids, &cap, &n);
    return rc == -1 ? scp_last_error() : "read";
}
#endif

static void test_tokstream_long_claim(void)
{
#ifdef UNDER_ASAN
    tap_ok(1, "# SKIP a document length past the data: AddressSanitizer reserves the address space a cap would limit");
#else
    char msg[512];
    int rc = capped_run(256u << 20, read_long_claim, NULL, msg, sizeof msg);
    tap_ok(rc == 0 && strstr(msg, "claim.tok: truncated token stream"),
           "a document length of 2^32 - 2 tokens with one there, the address space capped: %s", rc ? "out of memory" : msg);
#endif
}

static void test_tokstream(void)
{
    char *path = scp_path_join(tmpdir, "s.tok");
    FILE *f = fopen(path, "wb");
    scp_tokstream_writer w;
    scp_tokstream_header h = {.vocab_size = 70000, .bos_id = 1, .eos_id = 2, .pad_id = -1, .mask_id = 69999, .tokenizer_hash = 0x1234abcdULL};
    int32_t d0[3] = {1, 69999, 5}, d1[1] = {7};
    tap_ok(scp_tokstream_write_begin(&w, f, "s.tok", &h) == 0 && w.h.token_bytes == 4, "70000-token vocabulary gets 4-byte tokens");
    scp_tokstream_write_doc(&w, d0, 3);
    scp_tokstream_write_doc(&w, NULL, 0);
    scp_tokstream_write_doc(&w, d1, 1);
    int32_t badid = 70000;
    tap_ok(scp_tokstream_write_doc(&w, &badid, 1) == -1, "writer refuses an id outside the vocabulary");
    scp_tokstream_write_end(&w);
    fclose(f);
    f = fopen(path, "rb");
    scp_tokstream_reader r;
    int32_t *ids = NULL;
    size_t cap = 0;
    uint32_t n;
    int ok = scp_tokstream_read_begin(&r, f, "s.tok") == 0 && r.h.mask_id == 69999 && r.h.tokenizer_hash == 0x1234abcdULL;
    ok = ok && scp_tokstream_read_doc(&r, &ids, &cap, &n) == 1 && n == 3 && ids[1] == 69999;
    ok = ok && scp_tokstream_read_doc(&r, &ids, &cap, &n) == 1 && n == 0;
    ok = ok && scp_tokstream_read_doc(&r, &ids, &cap, &n) == 1 && n == 1 && ids[0] == 7;
    ok = ok && scp_tokstream_read_doc(&r, &ids, &cap, &n) == 0;
    tap_ok(ok, "token stream round trip: header, documents, empty document, verified end");
    scp_tokstream_read_close(&r);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    /* Truncations at every length and a flipped byte are errors, never crashes or silent success. */
    char *buf;
    size_t len;
    scp_read_file(path, &buf, &len);
    int all = 1;
    for (long cut = 0; cut < size; cut++) {
        FILE *g = fmemopen(buf, (size_t)cut ? (size_t)cut : 1, "rb");
        if (!cut) fgetc(g);
        int rc = scp_tokstream_read_begin(&r, g, "cut.tok");
        while (rc == 0 && (rc = scp_tokstream_read_doc(&r, &ids, &cap, &n)) == 1) rc = 0;
        if (rc != -1) all = 0;
        scp_tokstream_read_close(&r);
        fclose(g);
    }
    tap_ok(all, "every truncation of the stream is refused");
    buf[64 + 4 + 2] ^= 0x01;
    FILE *g = fmemopen(buf, len, "rb");
    int rc = scp_tokstream_read_begin(&r, g, "flip.tok");
    while (rc == 0 && (rc = scp_tokstream_read_doc(&r, &ids, &cap, &n)) == 1) rc = 0;
    tap_ok(rc == -1 && strstr(scp_last_error(), "checksum"), "a flipped byte fails the checksum: %s", scp_last_error());
    scp_tokstream_read_close(&r);
    fclose(g);
    /* a vocabulary past INT32_MAX: its ids would read as negative int32_t */
    uint8_t big[64] = "SCPTOKS";
    const uint8_t ver_tb_vocab[12] = {1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0x80};
    memcpy(big + 8, ver_tb_vocab, sizeof ver_tb_vocab);
    g = fmemopen(big, sizeof big, "rb");
    rc = scp_tokstream_read_begin(&r, g, "big.tok");
    tap_ok(rc == -1 && strstr(scp_last_error(), "big.tok: vocabulary size 2147483648 is invalid"),
           "a vocabulary of 2^31 tokens is refused: %s", scp_last_error());
    scp_tokstream_read_close(&r);
    fclose(g);
    free(buf);
    free(ids);
    free(path);
}

static void test_rng(void)
{
    scp_rng a, b;
    scp_rng_init(&a, 42, 7);
    scp_rng_init(&b, 42, 7);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= scp_rng_u64(&a) == scp_rng_u64(&b);
    scp_rng_init(&b, 42, 8);
    tap_ok(same && scp_rng_u64(&a) != scp_rng_u64(&b), "streams reproducible and distinct");
    double s = 0, s2 = 0;
    int N = 200000;
    for (int i = 0; i < N; i++) { double u = scp_rng_uniform(&a); s += u; s2 += u * u; }
    double mean = s / N, var = s2 / N - mean * mean;
    /* mean of U(0,1): sd of the estimate is 1/sqrt(12 N) = 6.5e-4; 5 sd bound */
    tap_ok(fabs(mean - 0.5) < 5 * 6.5e-4 && fabs(var - 1.0 / 12) < 2e-3, "uniform mean %.5f var %.5f", mean, var);
}

/* The option vocabulary: each letter and each long name means one thing; getopt driven by it maps letters, long
 * names and deprecated aliases to their ids. */
static void test_options(void)
{
    int letters_unique = 1, names_unique = 1;
    for (int i = 0; i < SCP_OPT_COUNT; i++)
        for (int j = i + 1; j < SCP_OPT_COUNT; j++) {
            if (scp_options[i].letter && scp_options[i].letter == scp_options[j].letter) letters_unique = 0;
            if (strcmp(scp_options[i].name, scp_options[j].name) == 0) names_unique = 0;
        }
    tap_ok(letters_unique, "options.def: no letter means two options");
    tap_ok(names_unique, "options.def: no long name is defined twice");
    static const scp_opt_id ids[] = {SCP_OPT_THREADS, SCP_OPT_OUTPUT, SCP_OPT_T_EPS, SCP_OPT_QUIET, SCP_OPT_END};
    static const scp_cli_alias old[] = {{"eps", 0, SCP_OPT_T_EPS}, {NULL, 't', SCP_OPT_THREADS}, {NULL, 0, 0}};
    char *argv[] = {"prog", "-j", "3", "--output=x", "--t-eps", "0.1", "--eps", "0.2", "-t4", "-q", "in", NULL};
    int argc = 11, got[8], n = 0;
    const char *vals[8];
    scp_cli c;
    scp_cli_begin(&c, ids, old);
    for (int id; n < 8 && (id = scp_cli_next(&c, argc, argv)) >= 0; n++) got[n] = id, vals[n] = optarg;
    int operand = optind;
    scp_cli_end(&c);
    tap_ok(n == 6 && got[0] == SCP_OPT_THREADS && strcmp(vals[0], "3") == 0 && got[1] == SCP_OPT_OUTPUT &&
               strcmp(vals[1], "x") == 0 && got[2] == SCP_OPT_T_EPS && got[3] == SCP_OPT_T_EPS &&
               strcmp(vals[3], "0.2") == 0 && got[4] == SCP_OPT_THREADS && strcmp(vals[4], "4") == 0 &&
               got[5] == SCP_OPT_QUIET && operand == 10,
           "getopt from the vocabulary: letters, long names, deprecated aliases (%d options, operand at %d)", n, operand);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/scp-unit-core-%ld", (long)getpid());
    scp_mkdir_p(tmpdir);
    test_dtypes();
    test_safetensors();
    test_atomic();
    test_json_oom();
    test_config();
    test_json_getters();
    test_tokstream();
    test_tokstream_long_claim();
    test_rng();
    test_options();
    scp_rm_rf(tmpdir);
    return tap_done();
}
