/* convert/hf_modeling.h: the text of share/scp/hf/modeling_scp.py, the PyTorch / transformers modeling code that
 * scp-export --format hf writes beside the weights (config.json's auto_map names its classes). The build makes
 * hf_modeling_py.c from the .py file (lib/convert/convert.am), so that an installed scp-export and one run from the
 * build tree write the same file and need no data directory. */
#ifndef SCP_HF_MODELING_H
#define SCP_HF_MODELING_H

#include <stddef.h>

/* The file's bytes (scp_hf_modeling_py_len of them, no terminating NUL). */
extern const unsigned char scp_hf_modeling_py[];
extern const size_t scp_hf_modeling_py_len;

/* The name it is written under, and the classes config.json's auto_map points to. */
#define SCP_HF_MODELING_FILE "modeling_scp.py"

#endif
