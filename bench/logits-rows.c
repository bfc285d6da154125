/* logits-rows.c: what decoding saves by asking only for the rows it samples from (scp_model_logits_rows, used by
 * diffusion generation and choice scoring) and by caching keys and values (scp_model_decode_*, AR generation),
 * in the same run: greedy autoregressive decoding of a random model, each token from (a) scp_model_logits over
 * the whole sequence, the last row then read, as generation did before, (b) scp_model_logits_rows of the last
 * row, (c) scp_model_decode_next with the cache. Prints the milliseconds per generated token of each, best of
 * 3, the ratios to (a), and whether all three pick the same tokens.
 *
 *   bench/logits-rows [VOCAB [HIDDEN [LAYERS [PROMPT [TOKENS]]]]]   (default 151936 256 4 128 32: Qwen3's
 *   vocabulary on a small body, where the vocabulary projection is most of the work, as in a 0.6B model) */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "model/model.h"
#include "formats/model_config.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) b = x[i] > x[b] ? i : b;
    return b;
}

/* Greedy decoding of `tokens` tokens after a prompt of P by path (a), (b) or (c) (0, 1, 2). Returns seconds per
 * token. */
static double decode(scp_model *m, int P, int tokens, int path, int32_t *ids)
{
    const int V = m->cfg.vocab_size;
    float *lg = malloc((size_t)(P + tokens) * V * sizeof *lg);
    for (int i = 0; i < P; i++) ids[i] = (int32_t)((i * 7919) % V);
    double t0 = now();
    for (int n = P; n < P + tokens; n++) {
        scp_batch b = {.B = 1, .T = n, .input = ids, .attn = SCP_ATTN_CAUSAL};
        int32_t last = n - 1;
        const float *row = lg;
        if (path == 2) {
            if ((n == P ? scp_model_decode_start(m, ids, n, P + tokens, lg) : scp_model_decode_next(m, ids[n - 1], lg)) < 0)
                return -1;
        } else if (path == 1) {
            if (scp_model_logits_rows(m, &b, &last, 1, lg) < 0) return -1;
        } else {
            if (scp_model_logits(m, &b, lg) < 0) return -1;
            row = lg + (size_t)last * V;
        }
        ids[n] = argmax(row, V);
    }
    double dt = (now() - t0) / tokens;
    if (path == 2) scp_model_decode_end(m);
    free(lg);
    return dt;
}

int main(int argc, char **argv)
{
    int V = argc > 1 ? atoi(argv[1]) : 151936, D = argc > 2 ? atoi(argv[2]) : 256, L = argc > 3 ? atoi(argv[3]) : 4;
    int P = argc > 4 ? atoi(argv[4]) : 128, N = argc > 5 ? atoi(argv[5]) : 32;
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b}", "model_type", "qwen3", "hidden_size", D,
                          "intermediate_size", 3 * D, "num_hidden_layers", L, "num_attention_heads", D / 64,
                          "num_key_value_heads", D / 128 > 0 ? D / 128 : 1, "head_dim", 64, "vocab_size", V,
                          "tie_word_embeddings", 1);
    scp_model_config c;
    if (scp_config_from_json(&c, j, "bench") < 0) return 1;
    scp_set_threads(1);
    scp_model *m = scp_model_new(&c, "cpu");
    if (!m) return 1;
    scp_model_init_random(m, 1, 0.02f);
    int32_t *ids[3];
    double best[3] = {1e30, 1e30, 1e30};
    for (int k = 0; k < 3; k++) ids[k] = malloc((size_t)(P + N) * sizeof *ids[k]);
    for (int rep = 0; rep < 3; rep++)
        for (int k = 0; k < 3; k++) {
            double t = decode(m, P, N, k, ids[k]);
            if (t < 0) scp_die_last();
            if (t < best[k]) best[k] = t;
        }
    int same = memcmp(ids[0], ids[1], (size_t)(P + N) * sizeof *ids[0]) == 0 &&
               memcmp(ids[0], ids[2], (size_t)(P + N) * sizeof *ids[0]) == 0;
    printf("vocab %d, hidden %d, layers %d, prompt %d, %d tokens, 1 thread, ms/token: all rows %.2f, last row %.2f "
           "(%.2fx), cached %.2f (%.2fx); same tokens: %s\n", V, D, L, P, N, 1e3 * best[0], 1e3 * best[1],
           best[0] / best[1], 1e3 * best[2], best[0] / best[2], same ? "yes" : "NO");
    scp_model_free(m);
    json_decref(j);
    scp_config_free(&c);
    for (int k = 0; k < 3; k++) free(ids[k]);
    return same ? 0 : 1;
}
