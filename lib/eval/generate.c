/* eval/generate.c: one sample of scp-eval generate: canvas, sampler, cut at EOS, decoded text. */
#include "eval/generate.h"
#include "core/error.h"
#include "core/progress.h"

#include <stdlib.h>
#include <string.h>

static void append(int32_t **v, int *n, int *cap, const int32_t *x, int k)
{
    if (*n + k > *cap) {
        *cap = (*n + k) * 2 + 16;
        *v = scp_xrealloc(*v, (size_t)*cap * sizeof **v);
    }
    memcpy(*v + *n, x, (size_t)k * sizeof **v);
    *n += k;
}

static int encode(const scp_tokenizer *t, const char *text, int32_t **v, int *n, int *cap)
{
    int32_t *ids;
    size_t k;
    if (scp_tokenizer_encode(t, text, strlen(text), 1, &ids, &k)) return -1;
    append(v, n, cap, ids, (int)k);
    free(ids);
    return 0;
}

/* The canvas before generation: BOS, prompt, and for diffusion the masks and the suffix. */
static int make_canvas(const scp_eval_model *em, const scp_gen_opts *o, const char *prompt, const char *suffix,
                       int length, scp_gen_sample *s, int *cap)
{
    if (em->bos >= 0) append(&s->ids, &s->n, cap, (const int32_t *)&em->bos, 1);
    if (encode(em->tok, prompt, &s->ids, &s->n, cap)) return -1;
    s->prompt_tokens = s->n;
    if (em->ar) {
        for (int i = 0; i < s->n; i++)
            if (s->ids[i] == o->mask_id)
                return scp_error("%s: the prompt holds mask tokens, which a causal model cannot fill (use --mode "
                                 "diffusion)", em->path);
        if (suffix) return scp_error("--suffix needs diffusion decoding (--mode diffusion)");
        return scp_eval_check_length(&em->m->cfg, em->path, (int64_t)s->n + length, 1, "the prompt and --length");
    }
    for (int i = 0; i < length; i++) append(&s->ids, &s->n, cap, &o->mask_id, 1);
    if (suffix && encode(em->tok, suffix, &s->ids, &s->n, cap)) return -1;
    return scp_eval_check_length(&em->m->cfg, em->path, s->n, 0,
                                 suffix ? "the prompt, --length and the suffix" : "the prompt and --length");
}

int scp_gen_sample_make(const scp_eval_model *em, const scp_gen_opts *o, const char *prompt, const char *suffix,
                        int length, scp_gen_sample *s)
{
    memset(s, 0, sizeof *s);
    int cap = 0, np;
    if (make_canvas(em, o, prompt, suffix, length, s, &cap)) goto fail;
    np = s->prompt_tokens;
    double t0 = scp_now();
    if (em->ar) {
        s->ids = scp_xrealloc(s->ids, (size_t)(s->n + length + 1) * sizeof *s->ids);
        int n = scp_generate_ar(em->m, o, s->ids, s->n, length);
        if (n < 0) goto fail;
        s->n = n;
        s->calls = n - np;
        s->filled = scp_xmalloc(sizeof *s->filled * (size_t)(n - np + 1));
        for (int i = np; i < n; i++) s->filled[s->n_filled++] = i;
    } else {
        s->filled = scp_xmalloc(sizeof *s->filled * (size_t)(s->n + 1));
        for (int i = 0; i < s->n; i++)
            if (s->ids[i] == o->mask_id) s->filled[s->n_filled++] = i;
        s->calls = scp_generate_diffusion(em->m, o, s->ids, s->n);
        if (s->calls < 0) goto fail;
    }
    s->seconds = scp_now() - t0;
    /* The text: stop cuts at the first EOS after the prompt; an infill keeps its suffix. */
    int end = s->n;
    if (o->eos == SCP_EOS_STOP && o->eos_id >= 0)
        for (int i = np; i < s->n; i++)
            if (s->ids[i] == o->eos_id) {
                end = i;
                break;
            }
    if (!em->ar && suffix && end < s->n) end = s->n;
    int gen_end = em->ar ? end : (np + length < end ? np + length : end);
    s->text = scp_tokenizer_decode(em->tok, s->ids, (size_t)end, 1, &s->text_len);
    s->completion = scp_tokenizer_decode(em->tok, s->ids + np, (size_t)(gen_end > np ? gen_end - np : 0), 1,
                                         &s->completion_len);
    if (!s->text || !s->completion) goto fail;
    return 0;
fail:
    scp_gen_sample_free(s);
    return -1;
}

void scp_gen_sample_free(scp_gen_sample *s)
{
    free(s->ids);
    free(s->filled);
    free(s->text);
    free(s->completion);
    memset(s, 0, sizeof *s);
}
