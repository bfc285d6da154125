/* model-nll.c: the C side of tests/model/model-real.py. Causal next-token NLL of a checkpoint on the reference
 * protocol (int32 ids; windows of 513 tokens every 512, each predicting 512 tokens from its own prefix), then a
 * greedy continuation of the prompt ids given after the window count. Prints JSON on stdout. */
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/io.h"
#include "model/model.h"

int main(int argc, char **argv)
{
    scp_set_progname(argv[0]);
    if (argc < 5) {
        fprintf(stderr, "usage: model-nll CKPT IDS.i32 WINDOWS PROMPT_ID...\n");
        return 2;
    }
    scp_set_threads(0);
    scp_model *m = scp_model_load(argv[1], "cpu");
    if (!m) scp_die_last();
    int W = atoi(argv[3]), T = 512, V = m->cfg.vocab_size;
    scp_map map;
    if (scp_map_file(&map, argv[2]) < 0) scp_die_last();
    if (W < 1 || map.size < sizeof(int32_t) * ((size_t)W * T + 1)) scp_die("%s: fewer than %d windows of ids", argv[2], W);
    const int32_t *ids = (const int32_t *)map.data;
    int32_t *in = scp_xmalloc(sizeof(int32_t) * W * T), *tg = scp_xmalloc(sizeof(int32_t) * W * T);
    for (int w = 0; w < W; w++)
        for (int i = 0; i < T; i++) in[w * T + i] = ids[w * T + i], tg[w * T + i] = ids[w * T + i + 1];
    scp_batch b = {.B = W, .T = T, .input = in, .target = tg, .attn = SCP_ATTN_CAUSAL};
    double loss = scp_model_step(m, &b, 0, NULL);
    if (loss != loss) scp_die_last();
    int n = argc - 4, cap = n + 32;
    int32_t *seq = scp_xmalloc(sizeof(int32_t) * cap);
    for (int i = 0; i < n; i++) seq[i] = atoi(argv[4 + i]);
    float *lg = scp_xmalloc(sizeof(float) * (size_t)cap * V);
    while (n < cap) {
        scp_batch g = {.B = 1, .T = n, .input = seq, .attn = SCP_ATTN_CAUSAL};
        if (scp_model_logits(m, &g, lg) < 0) scp_die_last();
        const float *l = lg + (size_t)(n - 1) * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (l[v] > l[best]) best = v;
        seq[n++] = best;
    }
    printf("{\"nll\": %.6f, \"tokens\": %d, \"greedy\": [", loss / ((double)W * T), W * T);
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", seq[i]);
    printf("]}\n");
    scp_unmap(&map);
    scp_model_free(m);
    free(in), free(tg), free(seq), free(lg);
    return 0;
}
