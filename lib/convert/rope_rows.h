/* convert/rope_rows.h: the q/k row orders of RoPE. HF keeps the two members of each rotated pair half a head
 * apart (row j * head_dim/2 + i: pair i, member j, "half-split"); Meta's checkpoints, llama2.c and llama.cpp's
 * GGUF for the llama architecture keep them adjacent (row 2i + j, "interleaved"). Import converts to HF's
 * order, the GGUF export back. */
#ifndef SCP_ROPE_ROWS_H
#define SCP_ROPE_ROWS_H

#include <stddef.h>
#include <stdint.h>

/* HF's convert_llama_weights_to_hf permutation of q or k rows from interleaved pairs to half-split: w is
 * (n_heads * head_dim, cols) of elem_size bytes each; the result is freshly allocated:
 * w.view(n_heads, head_dim/2, 2, cols).transpose(1, 2).reshape(n_heads * head_dim, cols). */
void *scp_rope_unpermute(const void *w, size_t elem_size, int n_heads, int head_dim, int64_t cols);
/* The inverse (half-split -> interleaved, what llama.cpp's converter does for llama). */
void *scp_rope_permute(const void *w, size_t elem_size, int n_heads, int head_dim, int64_t cols);

#endif
