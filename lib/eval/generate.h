/* eval/generate.h: one sample of scp-eval generate, from prompt text to decoded text.
 *
 * Diffusion: the canvas is BOS (unless none), the prompt's ids (the mask token's text in it is a mask), `length`
 * mask ids and the suffix's ids; the sampler (eval/sampler.h) fills every mask. AR: the canvas is BOS and the
 * prompt, continued by up to `length` tokens. With --at-eos stop the text ends at the first EOS after the prompt
 * (an infill keeps its suffix). */
#ifndef SCP_EVAL_GENERATE_H
#define SCP_EVAL_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "eval/sampler.h"
#include "eval/setup.h"

typedef struct scp_gen_sample {
    int32_t *ids;              /* (n) the canvas after generation */
    int n;
    int prompt_tokens;         /* BOS and the prompt's ids */
    int *filled;               /* (n_filled) the positions the model filled in */
    int n_filled;
    int calls;                 /* model calls */
    char *text;                /* (text_len) the canvas up to the cut, decoded without special tokens */
    size_t text_len;
    char *completion;          /* (completion_len) the generated span, decoded the same way */
    size_t completion_len;
    double seconds;            /* of the model calls */
} scp_gen_sample;

/* One sample from em's model (scp_eval_model_open) with the sampler's options o (o->mask_id, o->eos_id, o->shift
 * set from em). suffix may be NULL. 0, or -1 with a message: a prompt that cannot be encoded, masks in the prompt
 * or a suffix with AR decoding, a canvas beyond the model's positions (max_position_embeddings). */
int scp_gen_sample_make(const scp_eval_model *em, const scp_gen_opts *o, const char *prompt, const char *suffix,
                        int length, scp_gen_sample *s);
void scp_gen_sample_free(scp_gen_sample *s);

#endif
