/* convert/import_hf.c: a Hugging Face model directory: config.json, model.safetensors (or shards listed by
 * model.safetensors.index.json), tokenizer.json and its companions. Tensors are referenced in place. */
#include "convert/import.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

static int open_st(scp_import *im, const char *path)
{
    im->st = scp_xrealloc(im->st, sizeof *im->st * (size_t)(im->nst + 1));
    scp_st_file *f = &im->st[im->nst];
    if (scp_st_open(f, path)) return -1;
    im->nst++;
    for (int i = 0; i < f->n; i++) {
        const scp_tensor_info *t = &f->t[i];
        scp_import_add(im, t->name, f->map.path, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    return 0;
}

/* Shard names come from a file: they must be plain names inside the directory. */
static int plain_name(const char *s)
{
    return *s && *s != '.' && !strchr(s, '/');
}

static int open_sharded(scp_import *im, const char *dir, const char *index_path)
{
    json_t *idx = scp_json_load(index_path);
    if (!idx) return -1;
    int rc = 0;
    json_t *map = json_object_get(idx, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0) {
        json_decref(idx);
        return scp_error("%s: no weight_map object", index_path);
    }
    /* Open each distinct shard once, in the order first named. */
    json_t *opened = json_object();   /* shard name -> index into im->st */
    const char *name;
    json_t *v;
    json_object_foreach(map, name, v) {
        if (!json_is_string(v)) {
            rc = scp_error("%s: weight_map entry '%s' is not a file name", index_path, name);
            break;
        }
        const char *file = json_string_value(v);
        if (!plain_name(file)) {
            rc = scp_error("%s: weight_map names '%s', which is not a file in the model directory", index_path, file);
            break;
        }
        if (json_object_get(opened, file)) continue;
        char *p = scp_path_join(dir, file);
        if (!scp_file_exists(p)) rc = scp_error("%s: names shard '%s', which does not exist", index_path, file);
        else rc = open_st(im, p);
        free(p);
        if (rc) break;
        json_object_set_new(opened, file, json_integer(im->nst - 1));
    }
    /* Every tensor the index lists must be in the shard it names. */
    if (!rc) json_object_foreach(map, name, v) {
        int k = (int)json_integer_value(json_object_get(opened, json_string_value(v)));
        if (!scp_st_find(&im->st[k], name)) {
            rc = scp_error("%s: tensor '%s' is not there, but %s says it is", im->st[k].map.path, name, index_path);
            break;
        }
    }
    json_decref(opened);
    json_decref(idx);
    return rc;
}

/* The ids a tokenizer.json defines: its model's vocabulary and its added tokens. */
static int tokenizer_json_vocab(const json_t *tj, const char *what, int *out)
{
    int64_t top = -1;
    json_t *model = json_object_get(tj, "model");
    json_t *vocab = model ? json_object_get(model, "vocab") : NULL;
    if (json_is_object(vocab)) {
        const char *k;
        json_t *v;
        json_object_foreach(vocab, k, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX)
                return scp_error("%s: model.vocab entry '%s' is not a valid id", what, k);
            if (json_integer_value(v) > top) top = json_integer_value(v);
        }
    } else if (json_is_array(vocab)) {
        top = (int64_t)json_array_size(vocab) - 1;   /* Unigram: [[piece, score], ...] */
    } else {
        return scp_error("%s: no model.vocab", what);
    }
    json_t *added = json_object_get(tj, "added_tokens");
    size_t i;
    json_t *a;
    if (added && !json_is_array(added)) return scp_error("%s: added_tokens is not an array", what);
    json_array_foreach(added, i, a) {
        json_t *id = json_object_get(a, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX ||
            !json_is_string(json_object_get(a, "content")))
            return scp_error("%s: added_tokens[%zu] needs an integer id and a string content", what, i);
        if (json_integer_value(id) > top) top = json_integer_value(id);
    }
    *out = (int)(top + 1);
    return 0;
}

static int load_tokenizer(scp_import *im, const char *dir)
{
    char *p = scp_path_join(dir, "tokenizer.json");
    if (scp_file_exists(p)) {
        im->tok_json = scp_json_load(p);
        if (!im->tok_json) goto fail;
        if (!json_is_object(im->tok_json)) {
            scp_error("%s: not a JSON object", p);
            goto fail;
        }
        if (tokenizer_json_vocab(im->tok_json, p, &im->tok_vocab)) goto fail;
        im->tok_form = SCP_TOK_HF;
        im->tok_what = p;
        im->tok_json_path = scp_xstrdup(p);
    } else {
        /* A checkpoint that carries the llama2.c form (imported from llama2.c or GGUF). */
        free(p);
        p = scp_path_join(dir, "tokenizer.bin");
        if (scp_file_exists(p)) {
            if (scp_import_read_tokenizer_bin(im, p, -1)) goto fail;
        } else {
            scp_warn("%s: no tokenizer.json or tokenizer.bin; the checkpoint will carry no tokenizer", dir);
            im->tok_vocab = im->cfg.vocab_size;
        }
        free(p);
    }
    p = scp_path_join(dir, "tokenizer_config.json");
    if (scp_file_exists(p)) {
        im->tok_config = scp_json_load(p);
        if (!im->tok_config) goto fail;
        if (!json_is_object(im->tok_config)) {
            scp_error("%s: not a JSON object", p);
            goto fail;
        }
        json_t *dec = json_object_get(im->tok_config, "added_tokens_decoder");
        if (dec && !json_is_object(dec)) {
            scp_error("%s: added_tokens_decoder is not an object", p);
            goto fail;
        }
        im->tok_config_path = p;
        p = NULL;
    } else if (im->tok_form == SCP_TOK_HF) {
        im->tok_config = json_object();
        im->tok_config_dirty = 1;
    }
    free(p);
    static const char *others[] = {"special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json"};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        p = scp_path_join(dir, others[i]);
        if (scp_file_exists(p)) {
            im->copy_files = scp_xrealloc(im->copy_files, sizeof *im->copy_files * (size_t)(im->ncopy + 1));
            im->copy_files[im->ncopy++] = p;
        } else {
            free(p);
        }
    }
    return 0;
fail:
    if (p != im->tok_what) free(p);
    return -1;
}

int scp_import_hf(scp_import *im, const char *dir)
{
    im->source = scp_xstrdup(dir);
    im->kind = "hf";
    im->config_what = "config.json";
    char *p = scp_path_join(dir, "config.json");
    if (!scp_file_exists(p)) {
        free(p);
        return scp_error("%s: no config.json (not a Hugging Face model directory)", dir);
    }
    int rc = scp_config_load(&im->cfg, p);
    free(p);
    if (rc) return -1;
    p = scp_path_join(dir, "model.safetensors");
    char *idx = scp_path_join(dir, "model.safetensors.index.json");
    if (scp_file_exists(p)) rc = open_st(im, p);
    else if (scp_file_exists(idx)) rc = open_sharded(im, dir, idx);
    else
        rc = scp_error("%s: no model.safetensors or model.safetensors.index.json (scp reads safetensors weights)", dir);
    free(p);
    free(idx);
    if (rc) return -1;
    return load_tokenizer(im, dir);
}
