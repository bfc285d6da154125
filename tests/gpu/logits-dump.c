/* logits-dump.c: the C side of tests/gpu/hf-logits.py and tests/convert/export-hf-modeling.py. Loads a
 * checkpoint on a backend and writes the logits (T, V) of one sequence of ids as raw little-endian float32: causal
 * attention, or every key visible with --bidirectional. No logit shift: row i is the network's output at i.
 *
 * usage: logits-dump [--bidirectional] CKPT BACKEND OUT.f32 ID... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"

int main(int argc, char **argv)
{
    scp_set_progname(argv[0]);
    scp_attn_mode attn = SCP_ATTN_CAUSAL;
    if (argc > 1 && !strcmp(argv[1], "--bidirectional")) {
        attn = SCP_ATTN_BIDIRECTIONAL;
        argv[1] = argv[0];
        argc--, argv++;
    }
    if (argc < 5) {
        fprintf(stderr, "usage: logits-dump [--bidirectional] CKPT BACKEND OUT.f32 ID...\n");
        return 2;
    }
    scp_model *m = scp_model_load(argv[1], argv[2]);
    if (!m) scp_die_last();
    int T = argc - 4, V = m->cfg.vocab_size;
    int32_t *ids = scp_xmalloc(sizeof(int32_t) * T), *tg = scp_xmalloc(sizeof(int32_t) * T);
    for (int i = 0; i < T; i++) ids[i] = atoi(argv[4 + i]), tg[i] = -1;
    float *logits = scp_xmalloc(sizeof(float) * T * V);
    scp_batch b = {.B = 1, .T = T, .input = ids, .target = tg, .attn = attn};
    if (scp_model_logits(m, &b, logits)) scp_die_last();
    FILE *f = fopen(argv[3], "wb");
    if (!f || fwrite(logits, sizeof(float), (size_t)T * V, f) != (size_t)T * V || fclose(f))
        scp_die("%s: cannot write the logits", argv[3]);
    printf("%d %d\n", T, V);
    scp_model_free(m);
    free(ids), free(tg), free(logits);
    return 0;
}
