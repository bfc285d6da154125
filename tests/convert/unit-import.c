/* unit-import.c: the GGUF writer and reader round trip (metadata of every type, tensors, alignment), the
 * reader's refusals on corrupted copies (every truncation of a valid file must be refused, never crash), the
 * RoPE row permutation on a worked example, and the checkpoint writer (all or nothing). */
#include "../tap.h"

#include "formats/checkpoint.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "convert/import.h"
#include "convert/rope_rows.h"
#include "core/io.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static void test_gguf_roundtrip(void)
{
    char *path = scp_path_join(tmpdir, "t.gguf");
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[5] = {0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0};
    int32_t ints[3] = {-1, 0, 7};
    float fl[2] = {0.5f, -2.0f};
    const char *strs[3] = {"<unk>", "\xe2\x96\x81the", ""};
    scp_gguf_writer *w = scp_gguf_writer_new();
    scp_gguf_set_str(w, "general.architecture", "llama");
    scp_gguf_set_u32(w, "llama.block_count", 5);
    scp_gguf_set_i32(w, "some.negative", -42);
    scp_gguf_set_f32(w, "llama.rope.freq_base", 500000.0f);
    scp_gguf_set_bool(w, "some.flag", 1);
    scp_gguf_set_arr(w, "tokenizer.ggml.token_type", SCP_GGUF_I32, ints, 3);
    scp_gguf_set_arr(w, "tokenizer.ggml.scores", SCP_GGUF_F32, fl, 2);
    scp_gguf_set_str_arr(w, "tokenizer.ggml.tokens", strs, 3);
    uint64_t ne_a[2] = {3, 2}, ne_b[1] = {5};
    scp_gguf_add_tensor(w, "a.weight", SCP_GGML_F32, 2, ne_a, a);
    scp_gguf_add_tensor(w, "b.weight", SCP_GGML_BF16, 1, ne_b, b);
    tap_ok(scp_gguf_write(w, path) == 0, "write a GGUF file");
    scp_gguf_writer_free(w);

    scp_gguf g;
    int rc = scp_gguf_open(&g, path);
    tap_ok(rc == 0, "read it back: %s", rc ? scp_last_error() : "ok");
    if (rc) return;
    uint64_t u;
    double d;
    char *s = NULL;
    tap_ok(g.version == 3 && g.n_kv == 8 && g.n_tensors == 2 && g.alignment == 32, "version 3, 8 keys, 2 tensors, alignment 32");
    tap_ok(scp_gguf_get_str(&g, "general.architecture", &s, "t") == 0 && strcmp(s, "llama") == 0, "string value");
    free(s);
    tap_ok(scp_gguf_get_uint(&g, "llama.block_count", 100, &u, "t") == 0 && u == 5, "u32 value");
    tap_ok(scp_gguf_get_uint(&g, "llama.block_count", 4, &u, "t") == -1 && strstr(scp_last_error(), "out of range"), "range checked");
    tap_ok(scp_gguf_get_uint(&g, "some.negative", 100, &u, "t") == -1 && strstr(scp_last_error(), "negative"), "negative refused as a count");
    tap_ok(scp_gguf_get_real(&g, "some.negative", &d, "t") == 0 && d == -42, "i32 sign-extended");
    tap_ok(scp_gguf_get_real(&g, "llama.rope.freq_base", &d, "t") == 0 && d == 500000.0, "f32 value");
    tap_ok(scp_gguf_get_uint(&g, "general.architecture", 9, &u, "t") == -1 && strstr(scp_last_error(), "expected an integer"), "type checked");
    tap_ok(scp_gguf_get_uint(&g, "absent", 9, &u, "t") == 1, "absent key");
    tap_ok(scp_gguf_find(&g, "some.flag")->type == SCP_GGUF_BOOL && scp_gguf_find(&g, "some.flag")->v.u == 1, "bool value");
    const scp_gguf_kv *tt = scp_gguf_find(&g, "tokenizer.ggml.token_type"), *sc = scp_gguf_find(&g, "tokenizer.ggml.scores"),
                      *tk = scp_gguf_find(&g, "tokenizer.ggml.tokens");
    tap_ok(tt && tt->arr_n == 3 && scp_gguf_arr_num(tt, 0) == -1 && scp_gguf_arr_num(tt, 2) == 7, "i32 array");
    tap_ok(sc && sc->arr_n == 2 && scp_gguf_arr_num(sc, 0) == 0.5 && scp_gguf_arr_num(sc, 1) == -2.0, "f32 array");
    tap_ok(tk && tk->arr_n == 3 && tk->arr_str[1].len == 6 && memcmp(tk->arr_str[1].s, strs[1], 6) == 0 && tk->arr_str[2].len == 0,
           "string array (UTF-8 and empty strings)");
    const scp_gguf_tensor *ta = scp_gguf_find_tensor(&g, "a.weight"), *tb = scp_gguf_find_tensor(&g, "b.weight");
    tap_ok(ta && ta->ndim == 2 && ta->ne[0] == 3 && ta->ne[1] == 2 && ta->type == SCP_GGML_F32 && ta->nbytes == 24 &&
           memcmp(ta->data, a, 24) == 0, "F32 tensor bit-exact, ne order kept");
    tap_ok(tb && tb->type == SCP_GGML_BF16 && tb->nbytes == 10 && memcmp(tb->data, b, 10) == 0 && tb->offset % 32 == 0 &&
           ((uintptr_t)tb->data - (uintptr_t)g.map.data) % 32 == 0, "BF16 tensor bit-exact at an aligned offset");

    /* Every prefix of the file must be refused (the data ends where the last tensor ends), with a message. */
    size_t size = g.map.size;
    uint8_t *copy = malloc(size);
    memcpy(copy, g.map.data, size);
    int refused = 0, named = 0;
    for (size_t n = 0; n < size; n++) {
        scp_gguf h;
        memset(&h, 0, sizeof h);
        uint8_t *buf = malloc(n ? n : 1);
        memcpy(buf, copy, n);
        if (scp_gguf_parse(&h, buf, n, "cut.gguf") != 0) {
            refused++;
            named += strncmp(scp_last_error(), "cut.gguf: ", 10) == 0;
        } else {
            scp_gguf_close(&h);
        }
        free(buf);
    }
    /* The last tensor's padding is not needed: prefixes from its end on are whole files. */
    size_t whole = (size_t)(tb->data ? (const uint8_t *)tb->data - g.map.data : 0) + tb->nbytes;
    tap_ok(refused == (int)whole && named == refused, "each of the %d truncations before byte %zu refused with the file named (%d)",
           refused, whole, named);
    /* Flip each header byte in turn: the parser either accepts or refuses with a message; it never crashes. */
    int flips = 0;
    for (size_t i = 0; i < g.data_offset; i++) {
        uint8_t *buf = malloc(size);
        memcpy(buf, copy, size);
        buf[i] ^= 0xff;
        scp_gguf h;
        memset(&h, 0, sizeof h);
        if (scp_gguf_parse(&h, buf, size, "flip.gguf") == 0) scp_gguf_close(&h);
        else flips++;
        free(buf);
    }
    tap_ok(flips > 0, "%d of %zu single-byte corruptions of the header refused, none crashed", flips, g.data_offset);
    free(copy);
    scp_gguf_close(&g);
    free(path);
}

static void test_rope_unpermute(void)
{
    /* Two heads of head_dim 4 over one column: interleaved rows (h, i, j) = x0 y0 x1 y1 | X0 Y0 X1 Y1 become
     * half-split x0 x1 y0 y1 | X0 X1 Y0 Y1 (HF's convert_llama_weights_to_hf permute, inverted). */
    float w[8] = {10, 11, 20, 21, 30, 31, 40, 41}, want[8] = {10, 20, 11, 21, 30, 40, 31, 41};
    float *p = scp_rope_unpermute(w, sizeof(float), 2, 4, 1);
    tap_ok(memcmp(p, want, sizeof want) == 0, "RoPE rows: interleaved pairs -> half-split, per head");
    free(p);
    /* With two columns the rows move whole. */
    float w2[8] = {1, 2, 3, 4, 5, 6, 7, 8}, want2[8] = {1, 2, 5, 6, 3, 4, 7, 8};
    p = scp_rope_unpermute(w2, sizeof(float), 1, 4, 2);
    tap_ok(memcmp(p, want2, sizeof want2) == 0, "RoPE rows move whole (2 columns)");
    float *back = scp_rope_permute(p, sizeof(float), 1, 4, 2);
    tap_ok(memcmp(back, w2, sizeof w2) == 0, "scp_rope_permute inverts it");
    free(back);
    free(p);
}

static void test_checkpoint(void)
{
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i}", "model_type", "llama", "hidden_size", 4, "intermediate_size", 8,
                          "num_hidden_layers", 1, "num_attention_heads", 2, "vocab_size", 3);
    scp_model_config c;
    tap_ok(scp_config_from_json(&c, j, "t") == 0, "config");
    json_decref(j);
    c.mask_token_id = 2;
    float x[12] = {0};
    int64_t shape[2] = {3, 4};
    scp_st_writer *w = scp_st_writer_new();
    scp_st_add(w, "model.embed_tokens.weight", SCP_F32, 2, shape, x);
    char *dir = scp_path_join(tmpdir, "ckpt");
    const char tok[] = "hello";
    scp_ckpt_file files[1] = {{.name = "tokenizer.bin", .data = tok, .len = 5}};
    tap_ok(scp_checkpoint_write(dir, 0, &c, w, files, 1) == 0, "write a checkpoint directory");
    char *p = scp_path_join(dir, "config.json");
    scp_model_config back;
    tap_ok(scp_config_load(&back, p) == 0 && back.mask_token_id == 2 && back.causal == 1 && back.shift_logits == 1,
           "config.json has the SCP keys (mask_token_id, is_causal, shift_logits)");
    scp_config_free(&back);
    free(p);
    p = scp_path_join(dir, "model.safetensors");
    scp_st_file f;
    tap_ok(scp_st_open(&f, p) == 0 && f.n == 1 && f.metadata &&
           strcmp(json_string_value(json_object_get(f.metadata, "format")), "pt") == 0, "model.safetensors with format=pt");
    scp_st_close(&f);
    free(p);
    tap_ok(scp_checkpoint_write(dir, 0, &c, w, files, 1) == -1 && strstr(scp_last_error(), "already exists"),
           "an existing directory is not replaced without replace");
    /* A failing file (copy from a missing source) leaves neither the directory nor a temporary behind. */
    char *dir2 = scp_path_join(tmpdir, "ckpt2");
    scp_ckpt_file bad[1] = {{.name = "x.json", .copy_from = "/nonexistent/x.json"}};
    tap_ok(scp_checkpoint_write(dir2, 0, &c, w, bad, 1) == -1 && !scp_file_exists(dir2), "a failed write leaves nothing");
    char *tmp2 = scp_xasprintf("%s.tmp-%ld", dir2, (long)getpid());
    tap_ok(!scp_file_exists(tmp2), "no temporary directory left");
    free(tmp2);
    free(dir2);
    scp_st_writer_free(w);
    scp_config_free(&c);
    free(dir);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/scp-unit-import.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) tap_skip_all("cannot create a temporary directory");
    test_gguf_roundtrip();
    test_rope_unpermute();
    test_checkpoint();
    scp_rm_rf(tmpdir);
    return tap_done();
}
