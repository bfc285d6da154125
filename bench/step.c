/* step.c: the C side of bench/train. Times full training steps (forward, backward, AdamW) of a
 * checkpoint on one batch, with every backend operation timed through a wrapping operation table (the driver is
 * unchanged), and measures the machine's sgemm peak for MFU. Prints one JSON object on stdout.
 *
 * usage: bench-step CKPT BATCH.safetensors STEPS THREADS
 * BATCH holds input, target (I32) and weight (F32), each (B, T); attention is bidirectional. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "config.h"
#include "model/backend.h"
#include "model/backend_profile.h"
#include "core/error.h"
#include "model/model.h"
#include "formats/safetensors.h"
#ifdef HAVE_CBLAS
#include <cblas.h>
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* CPU time of the whole process (all threads): on a shared machine, what the work cost without the waits. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double op_t[SCP_PROF_N];
static const scp_backend *base;

/* Best of a few 2048 x 1024 x 1024 sgemm on `threads` OpenBLAS threads, in GFLOP/s: the machine's matmul peak. */
extern void openblas_set_num_threads(int) __attribute__((weak));
static double sgemm_peak(int threads)
{
#ifdef HAVE_CBLAS
    if (openblas_set_num_threads) openblas_set_num_threads(threads);
    int n = 1024;
    float *a = malloc(sizeof(float) * n * n * 2), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n * 2);
    for (int i = 0; i < 2 * n * n; i++) a[i] = (float)(i % 7) * 0.1f, c[i] = 0;
    for (int i = 0; i < n * n; i++) b[i] = (float)(i % 5) * 0.1f;
    double best = 0;
    for (int r = 0; r < 15; r++) {   /* best of 15: on a shared machine some run gets the cores */
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 2 * n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * 2 * n * n * n / (now() - t0) / 1e9;
        if (g > best) best = g;
    }
    free(a), free(b), free(c);
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    return best;
#else
    (void)threads;
    return 0;
#endif
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    scp_set_progname(argv[0]);
    if (argc != 5) {
        fprintf(stderr, "usage: bench-step CKPT BATCH.safetensors STEPS THREADS\n");
        return 2;
    }
    int steps = atoi(argv[3]), threads = atoi(argv[4]);
    scp_set_threads(threads);
    scp_model *m = scp_model_load(argv[1], "cpu");
    if (!m) scp_die_last();
    base = m->backend;
    m->backend = scp_backend_profiled(base, NULL, op_t);

    scp_st_file bf;
    if (scp_st_open(&bf, argv[2]) < 0) scp_die_last();
    const scp_tensor_info *in = scp_st_find(&bf, "input"), *tg = scp_st_find(&bf, "target"), *wt = scp_st_find(&bf, "weight");
    if (!in || !tg || !wt || in->ndim != 2) scp_die("%s: needs input, target, weight (B, T)", argv[2]);
    int32_t *input = malloc(in->nbytes), *target = malloc(tg->nbytes);
    float *weight = malloc(wt->nbytes);
    memcpy(input, in->data, in->nbytes), memcpy(target, tg->data, tg->nbytes), memcpy(weight, wt->data, wt->nbytes);
    scp_batch b = {.B = (int)in->shape[0], .T = (int)in->shape[1], .input = input, .target = target, .weight = weight,
                   .attn = SCP_ATTN_BIDIRECTIONAL};
    float *om = calloc(m->n_weights, sizeof(float)), *ov = calloc(m->n_weights, sizeof(float));
    float *lr = malloc(sizeof(float) * m->n_params);
    for (int i = 0; i < m->n_params; i++) lr[i] = 1e-4f;
    double *t = malloc(sizeof(double) * (steps + 1)), *ct = malloc(sizeof(double) * (steps + 1)), loss0 = 0, loss = 0;
    for (int s = 0; s <= steps; s++) {   /* step 0 warms up (workspace allocation, page faults) */
        if (s == 1) memset(op_t, 0, sizeof op_t);
        double t0 = now(), c0 = cpu_now();
        scp_model_zero_grad(m);
        loss = scp_model_step(m, &b, 1, NULL);
        scp_model_adamw(m, om, ov, lr, 0.9f, 0.95f, 1e-8f, 0.1f, s + 1);
        t[s] = now() - t0;
        ct[s] = cpu_now() - c0;
        if (s == 0) loss0 = loss;
    }
    qsort(t + 1, steps, sizeof *t, cmp);
    qsort(ct + 1, steps, sizeof *ct, cmp);
    double med = t[1 + steps / 2], tokens = (double)b.B * b.T;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak = sgemm_peak(threads);
    printf("{\"step_s\": %.6f, \"best_s\": %.6f, \"cpu_s\": %.6f, \"tok_s\": %.1f, \"loss0\": %.6f, \"loss\": %.6f, \"params\": %lld, "
           "\"workspace_mb\": %.1f, \"rss_mb\": %.1f, \"sgemm_gflops\": %.2f, \"ops_ms\": {",
           med, t[1], ct[1], tokens / med, loss0, loss, (long long)m->n_weights, scp_model_workspace_bytes(m) / 1048576.0,
           ru.ru_maxrss / 1024.0, peak);
    for (int o = 0; o < SCP_PROF_N; o++) printf("%s\"%s\": %.3f", o ? ", " : "", scp_prof_op_name[o], 1e3 * op_t[o] / steps);
    printf("}}\n");
    m->backend = base;
    scp_model_free(m);
    scp_st_close(&bf);
    free(input), free(target), free(weight), free(om), free(ov), free(lr), free(t), free(ct);
    return 0;
}
