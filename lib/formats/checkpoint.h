/* formats/checkpoint.h: write a checkpoint directory (scp-checkpoint(5)): a Hugging Face model directory,
 * config.json (HF keys plus the SCP keys) + model.safetensors + the tokenizer files, written all or nothing
 * (a temporary directory renamed into place). Used by scp-import, scp-train and scp-export. */
#ifndef SCP_CHECKPOINT_H
#define SCP_CHECKPOINT_H

#include <stddef.h>
#include <jansson.h>

#include "formats/model_config.h"
#include "formats/safetensors.h"

/* The file names scp-import carries as the tokenizer (the first that exist in a source are copied). */
extern const char *const scp_checkpoint_tokenizer_files[];

/* One more file in the checkpoint: exactly one of copy_from (a path), json (saved pretty-printed, sorted) or
 * data/len (bytes). */
typedef struct scp_ckpt_file {
    const char *name;          /* plain file name inside the directory */
    const char *copy_from;
    const json_t *json;
    const void *data;
    size_t len;
} scp_ckpt_file;

/* Write config.json, model.safetensors (weights; the safetensors metadata gets format=pt) and the extra files
 * into an existing directory, e.g. the temporary one from scp_dir_begin(). */
int scp_checkpoint_fill(const char *dir, const scp_model_config *c, scp_st_writer *weights,
                        const scp_ckpt_file *files, int nfiles);

/* The whole thing, atomically: DIR.tmp-PID is filled and renamed to dir (an existing dir is replaced only if
 * replace != 0). On failure nothing is left behind. */
int scp_checkpoint_write(const char *dir, int replace, const scp_model_config *c, scp_st_writer *weights,
                         const scp_ckpt_file *files, int nfiles);

/* The HF torch_dtype name of a dtype ("float32", "bfloat16", "float16"), NULL for others. */
const char *scp_torch_dtype_name(scp_dtype t);

#endif
