/* grad-stats-cost.c: the C side of bench/grad-stats. Times, on the CPU backend, what the gradient statistics of a
 * training step (train/grad_stats.h) add to it, piece by piece and against the step's own work: one micro-batch's
 * forward and backward, AdamW, and the statistics' passes (the first micro-batch's group norms, the step's group
 * norms and estimates, the copy of the master and the update ratios). Each figure is the best of REPS runs of
 * the thread's CPU time, which other work on a busy machine disturbs least. Prints one JSON object on stdout.
 *
 * usage: grad-stats-cost CONFIG.json T MICRO PASSES REPS */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/error.h"
#include "model/model.h"
#include "train/grad_stats.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#define BEST(reps, out, body)                                                                                         \
    do {                                                                                                             \
        (out) = 1e30;                                                                                                \
        for (int r_ = 0; r_ < (reps); r_++) {                                                                        \
            double t0_ = cpu_now();                                                                                  \
            body;                                                                                                    \
            double t_ = cpu_now() - t0_;                                                                             \
            if (t_ < (out)) (out) = t_;                                                                              \
        }                                                                                                            \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: grad-stats-cost CONFIG.json T MICRO PASSES REPS\n");
        return 2;
    }
    int T = atoi(argv[2]), B = atoi(argv[3]), passes = atoi(argv[4]), reps = atoi(argv[5]);
    if (T < 2 || B < 1 || passes < 1 || reps < 1) {
        fprintf(stderr, "grad-stats-cost: T >= 2, MICRO, PASSES and REPS >= 1\n");
        return 2;
    }
    scp_set_threads(1);
    scp_model_config c;
    if (scp_config_load(&c, argv[1])) {
        fprintf(stderr, "grad-stats-cost: %s\n", scp_last_error());
        return 1;
    }
    scp_model *m = scp_model_new(&c, "cpu");
    if (!m) {
        fprintf(stderr, "grad-stats-cost: %s\n", scp_last_error());
        return 1;
    }
    scp_model_init_random(m, 1, 0.02f);
    scp_model_alloc_grads(m);
    /* A next-token batch (B, T) of arbitrary ids, every position weighted 1 / (B T). */
    int32_t *in = malloc(sizeof *in * (size_t)B * T), *tg = malloc(sizeof *tg * (size_t)B * T);
    float *w = malloc(sizeof *w * (size_t)B * T);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)((i * 7919) % c.vocab_size);
        tg[i] = (int32_t)((i * 7919 + 13) % c.vocab_size);
        w[i] = 1.0f / (float)(B * T);
    }
    scp_batch b = {.B = B, .T = T, .input = in, .target = tg, .weight = w, .attn = SCP_ATTN_CAUSAL};
    float *om = calloc((size_t)m->n_weights, sizeof *om), *ov = calloc((size_t)m->n_weights, sizeof *ov);
    float *lr = malloc(sizeof *lr * (size_t)m->n_params);
    for (int i = 0; i < m->n_params; i++) lr[i] = 1e-12f;   /* a rate that updates, moving the weights little */
    scp_noise noise;
    scp_noise_reset(&noise);
    scp_grad_stats s;
    scp_grad_stats_init(&s, m, 1, &noise);

    double t_fb, t_adamw, t_small, t_big, t_update;
    scp_model_zero_grad(m);
    scp_model_step(m, &b, 1, NULL);   /* warm-up: the workspace is allocated */
    BEST(reps, t_fb, scp_model_step(m, &b, 1, NULL));
    BEST(reps, t_adamw, scp_model_adamw(m, om, ov, lr, 0.9f, 0.95f, 1e-8f, 0.1f, 1));
    BEST(reps, t_small, (scp_grad_stats_begin(&s), scp_grad_stats_small(&s, m, 0.25)));
    BEST(reps, t_big, scp_grad_stats_big(&s, m, NULL, 4.0 * B * (T - 1)));
    scp_grad_stats_before_update(&s, m);   /* the copy's first allocation, out of the timing */
    scp_grad_stats_after_update(&s, m);
    BEST(reps, t_update, (scp_grad_stats_before_update(&s, m), scp_grad_stats_after_update(&s, m)));
    double step = passes * t_fb + t_adamw, stats = t_small + t_big + t_update;
    printf("{\"params\": %lld, \"micro_tokens\": %d, \"passes\": %d, \"forward_backward_s\": %.6f, "
           "\"adamw_s\": %.6f, \"step_s\": %.6f, \"small_s\": %.6f, \"big_s\": %.6f, \"update_ratio_s\": %.6f, "
           "\"stats_s\": %.6f, \"stats_fraction\": %.5f}\n",
           (long long)m->n_weights, B * T, passes, t_fb, t_adamw, step, t_small, t_big, t_update, stats,
           stats / step);
    scp_grad_stats_free(&s, m);
    scp_model_free(m);
    scp_config_free(&c);
    free(in), free(tg), free(w), free(om), free(ov), free(lr);
    return 0;
}
