/* formats/checkpoint.c: write a checkpoint directory atomically. */
#include "formats/checkpoint.h"
#include "core/error.h"
#include "core/io.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

const char *const scp_checkpoint_tokenizer_files[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
    "tokenizer.model", "tokenizer.bin", "generation_config.json", NULL,
};

const char *scp_torch_dtype_name(scp_dtype t)
{
    switch (t) {
    case SCP_F32: return "float32";
    case SCP_BF16: return "bfloat16";
    case SCP_F16: return "float16";
    default: return NULL;
    }
}

static int write_bytes(const char *path, const void *data, size_t len)
{
    scp_out *o = scp_out_open(path, 1);
    if (!o) return -1;
    if (scp_write_all(o->f, data, len, path)) {
        scp_out_abort(o);
        return -1;
    }
    return scp_out_commit(o);
}

int scp_checkpoint_fill(const char *dir, const scp_model_config *c, scp_st_writer *weights,
                        const scp_ckpt_file *files, int nfiles)
{
    char *p = scp_path_join(dir, "config.json");
    int rc = scp_config_save(c, p);
    free(p);
    if (rc) return -1;
    if (weights) {
        p = scp_path_join(dir, "model.safetensors");
        scp_st_set_metadata(weights, "format", "pt");
        rc = scp_st_write(weights, p);
        free(p);
        if (rc) return -1;
    }
    for (int i = 0; i < nfiles && !rc; i++) {
        const scp_ckpt_file *f = &files[i];
        if (strchr(f->name, '/') || strcmp(f->name, "config.json") == 0 || strcmp(f->name, "model.safetensors") == 0)
            return scp_error("%s: checkpoint file name '%s' is not allowed", dir, f->name);
        p = scp_path_join(dir, f->name);
        if (f->copy_from) rc = scp_copy_file(f->copy_from, p);
        else if (f->json) rc = scp_json_save(p, f->json);
        else rc = write_bytes(p, f->data, f->len);
        free(p);
    }
    return rc;
}

int scp_checkpoint_write(const char *dir, int replace, const scp_model_config *c, scp_st_writer *weights,
                         const scp_ckpt_file *files, int nfiles)
{
    if (scp_file_exists(dir) && !replace) return scp_error("%s: already exists (use --force to replace it)", dir);
    char *tmp = scp_dir_begin(dir);
    if (!tmp) return -1;
    int rc = scp_checkpoint_fill(tmp, c, weights, files, nfiles);
    if (!rc) rc = scp_dir_commit(tmp, dir, replace);
    if (rc) {
        scp_rm_rf(tmp);
        scp_cleanup_unregister(tmp);
    }
    free(tmp);
    return rc;
}

