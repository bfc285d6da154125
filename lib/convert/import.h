/* convert/import.h: bring a pretrained model in as a checkpoint directory (scp-import(1), scp-checkpoint(5)).
 *
 * A source reader (HF directory, llama2.c checkpoint, GGUF file) fills an scp_import: the model config and
 * the tensors under their HF names, in the HF layout (q/k rows half-split for RoPE), pointing into the
 * source's mapping where no conversion was needed; and the tokenizer in the form it will be carried. Then
 * the common steps: validate every tensor against scp_param_table(), choose the mask token, convert dtypes,
 * write the directory. */
#ifndef SCP_IMPORT_H
#define SCP_IMPORT_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "formats/gguf.h"
#include "formats/model_config.h"
#include "formats/safetensors.h"

typedef struct scp_imp_tensor {
    char name[128];           /* HF name */
    const char *file;         /* the source file, for messages */
    char src_name[128];       /* the name in the source (GGUF: blk.0.attn_q.weight) */
    scp_dtype dtype;          /* F32, F16 or BF16 */
    int ndim;
    int64_t shape[SCP_MAX_DIMS];
    int64_t numel;
    const void *data;
    void *owned;              /* data when it was converted or permuted (freed with the import) */
} scp_imp_tensor;

typedef enum scp_tok_form {
    SCP_TOK_NONE,             /* no tokenizer found (a warning) */
    SCP_TOK_HF,               /* tokenizer.json (+ tokenizer_config.json and friends) */
    SCP_TOK_LLAMA2C           /* tokenizer.bin (llama2.c) + tokenizer_config.json */
} scp_tok_form;

typedef struct scp_import {
    char *source;             /* the path given */
    const char *kind;         /* "hf", "llama2c", "gguf" */
    const char *config_what;  /* where the config came from, for messages: "config.json", "header", "metadata" */
    scp_model_config cfg;
    int n, cap;
    scp_imp_tensor *t;
    /* Sources kept open while their bytes are referenced. */
    scp_st_file *st;
    int nst;
    scp_gguf gguf;
    scp_map bin;
    /* The tokenizer. */
    scp_tok_form tok_form;
    json_t *tok_json;         /* HF tokenizer.json (the mask token is added here) */
    json_t *tok_config;       /* tokenizer_config.json (written for every form) */
    char *tok_json_path, *tok_config_path;   /* HF: the originals, copied unchanged unless modified */
    int tok_json_dirty, tok_config_dirty;
    char **copy_files;        /* other tokenizer files copied unchanged (full source paths) */
    int ncopy;
    uint8_t *tok_bin;         /* llama2.c tokenizer.bin bytes */
    size_t tok_bin_len;
    int tok_vocab;            /* the tokenizer defines ids [0, tok_vocab) */
    char *tok_what;           /* the tokenizer file, for messages */
} scp_import;

/* Source readers. Each validates what it reads; errors name the file and the fault. */
int scp_import_hf(scp_import *im, const char *dir);
int scp_import_llama2c(scp_import *im, const char *path, const char *tokenizer_bin);
int scp_import_gguf(scp_import *im, const char *path);
/* Pick the reader from what SOURCE is (a directory, GGUF magic, llama2.c header). */
int scp_import_open(scp_import *im, const char *source, const char *tokenizer_bin);

/* Check every tensor against the parameter table: present, shape as the config says, a float type; unknown
 * tensors are refused (HF's rotary inv_freq buffers and a tied model's lm_head are dropped). */
int scp_import_validate(scp_import *im);
/* mask_id < 0: auto (the config's mask_token_id, a "<|mask|>" already in the tokenizer, the first padded row
 * beyond the tokenizer's vocabulary, else a new row); otherwise that id (== vocab_size appends a row). */
int scp_import_set_mask(scp_import *im, int mask_id);
/* Convert every tensor to dt (SCP_DTYPE_INVALID: keep). */
int scp_import_convert(scp_import *im, scp_dtype dt);
int scp_import_write(scp_import *im, const char *dir, int replace);
/* The --info summary. New reference. */
json_t *scp_import_info(const scp_import *im);
void scp_import_free(scp_import *im);

/* ---- helpers shared by the readers ---- */
scp_imp_tensor *scp_import_add(scp_import *im, const char *name, const char *file, const char *src_name, scp_dtype dt,
                               int ndim, const int64_t *shape, const void *data);
/* Apply scp_rope_unpermute (convert/rope_rows.h) to the q and k weights (and biases) of every layer. */
void scp_import_unpermute_qk(scp_import *im);
/* Read and check a llama2.c tokenizer.bin of `vocab` tokens (-1: as many as the file holds) into im->tok_bin. */
int scp_import_read_tokenizer_bin(scp_import *im, const char *path, int vocab);
/* Tokenizer files: the llama2.c-form tokenizer_config.json. */
json_t *scp_import_llama2c_tok_config(const char *bos, int bos_id, const char *eos, int eos_id, const char *unk, int unk_id);

#endif
