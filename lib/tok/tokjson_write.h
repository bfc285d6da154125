/* tok/tokjson_write.h: a Hugging Face tokenizer.json for a llama2.c tokenizer.bin (what scp-export --format hf writes
 * beside the weights, so that Hugging Face libraries can load the directory). */
#ifndef SCP_TOK_EXPORT_H
#define SCP_TOK_EXPORT_H

#include <jansson.h>

/* For a checkpoint directory whose tokenizer is a tokenizer.bin (no tokenizer.json, no tokenizer.model):
 * *tok_json gets the text of a tokenizer.json (malloc'ed) that Hugging Face tokenizers load and that encodes
 * exactly as scp_tokenizer_load(dir) does, and *tok_config a tokenizer_config.json (the directory's own,
 * completed with the Llama fields). Returns 1 when made, 0 when the directory has no such tokenizer (nothing
 * set), -1 on error (scp_error names the file). */
int scp_tok_export_hf(const char *dir, char **tok_json, json_t **tok_config);

#endif
