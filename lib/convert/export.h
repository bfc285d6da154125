/* convert/export.h: take a checkpoint directory elsewhere (scp-export(1)).
 *
 * A checkpoint (config.json + model.safetensors + tokenizer files, scp-checkpoint(5)) is opened and checked
 * against the parameter table, then written as
 *   - a Hugging Face directory: config.json with the SCP diffusion keys (mask_token_id, is_causal,
 *     shift_logits), model.safetensors in F32 or BF16 (tensors already in that type are copied bit for bit),
 *     the tokenizer files as the checkpoint carries them, and modeling_scp.py (convert/hf_modeling.h), which
 *     config.json's auto_map names so that transformers loads the model with trust_remote_code;
 *   - a GGUF v3 file for llama.cpp: the architecture its diffusion runner expects (llada for Llama, dream for
 *     Qwen2, rnd1 for Qwen3-MoE; the plain llama/qwen2/qwen3/qwen3moe for causal checkpoints), the metadata
 *     keys {arch}.attention.causal, diffusion.shift_logits, tokenizer.ggml.mask_token_id, F32/F16/BF16
 *     matrices (norms and biases stay F32 as llama.cpp's converter keeps them), the tokenizer vocabulary. */
#ifndef SCP_EXPORT_H
#define SCP_EXPORT_H

#include "core/dtype.h"
#include "formats/model_config.h"
#include "formats/safetensors.h"

typedef struct scp_export_src {
    char *dir;
    scp_model_config cfg;
    scp_st_file st;
    int n;                     /* parameters */
    scp_param_desc *desc;      /* the parameter table */
    const scp_tensor_info **t; /* (n) the checkpoint's tensor for each parameter */
} scp_export_src;

/* Open and check a checkpoint directory: every tensor of the parameter table present with its shape and a
 * float type (F32, F16, BF16); unknown tensors refused. */
int scp_export_open(scp_export_src *s, const char *dir);
void scp_export_close(scp_export_src *s);

/* Attention and shift overrides applied to the exported config (-1: keep the checkpoint's). */
typedef struct scp_export_opts {
    scp_dtype dtype;           /* F32, BF16 (HF); F32, F16, BF16 (GGUF); SCP_DTYPE_INVALID: F32 */
    int causal;                /* -1 keep */
    int shift;                 /* -1 keep */
    const char *arch;          /* GGUF: general.architecture override, NULL: chosen from the config */
    const char *name;          /* GGUF: general.name, NULL: the directory's base name */
    int replace;               /* HF: replace an existing directory */
} scp_export_opts;

int scp_export_hf(const scp_export_src *s, const scp_export_opts *o, const char *out_dir);
int scp_export_gguf(const scp_export_src *s, const scp_export_opts *o, const char *out_path);

/* The GGUF architecture name for a config (see above); *diffusion_runner tells whether llama.cpp's diffusion
 * runner accepts that architecture. */
const char *scp_export_gguf_arch(const scp_model_config *c, int *diffusion_runner);

#endif
