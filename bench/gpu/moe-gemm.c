/* moe-gemm.c: the grouped expert GEMMs of the CUDA bf16 table ("cuda": moe_gemm_fwd, moe_gemm_bwd_inp,
 * moe_gemm_bwd_w of lib/model/backend_ops.def) on each path SCP_CUDA_MOE_GEMM picks (lib/model/cuda/moe_gemm_cublas.cu):
 *   own          moe_gemm.cu's WMMA kernels, the block offsets read on the device
 *   cublas       cublasGemmGroupedBatchedEx (bwd_w: a cublasGemmEx per expert), offsets copied to the host
 *   cublas-loop  a cublasGemmEx per expert, offsets copied to the host
 * at Qwen3-30B-A3B's expert shapes: hidden 2048, expert intermediate 768, 128 experts, the top-8 of 16384 tokens
 * (4096 x 4): 131072 rows. Each entry is timed over a layer's two expert GEMMs, gate|up (2048 -> 1536) and down
 * (768 -> 2048), as lib/model/moe.c calls them, under two routings: uniform (each token's 8 experts drawn without
 * repeats, all equally likely) and skewed (expert e drawn with weight 1 / (e + 1): a few experts take most rows).
 * Inputs are random bf16 (never zeros). Each measurement: 2 untimed calls, then 3 batches of 5 calls between device
 * synchronisations, the median batch. Prints, per routing and entry, each path's ms and TFLOP/s and its speed
 * relative to own; the host round trip the cuBLAS paths make at each call (offsets down, pointers up) timed alone;
 * and each cuBLAS path's relative difference from own on the first rows of every output (the same products, bf16
 * roundings apart).
 * usage: moe-gemm [--tiny]   (--tiny: a small shape, for a dry run; exits 77 without a GPU) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "core/error.h"
#include "model/backend.h"
#include "model/cuda_plugin.h"   /* the CUDA tables, or the emulated ones linked in (tests/gpu/emulated.sh) */

enum { OWN, CUBLAS, CUBLAS_LOOP, NPATH };
static const char *const path_env[NPATH] = {"own", "cublas", "cublas-loop"};
enum { FWD, BWD_INP, BWD_W, NENTRY };
static const char *const entry_name[NENTRY] = {"fwd", "bwd_inp", "bwd_w"};

static const scp_backend *be;
static float *sync_buf;
static int D = 2048, I = 768, E = 128, K = 8, M = 16384, reps = 5;

/* The layer's buffers in backend memory: R = M K rows sorted by expert (off), the two weight tables. */
static int R;
static scp_act *x, *h, *dy, *dgu;      /* inputs: x (R, D), h (R, I), dy (R, D), dgu (R, 2I) */
static scp_act *gu, *y, *dh, *dx;      /* outputs: gu (R, 2I), y (R, D), dh (R, I), dx (R, D) */
static scp_act *wgu, *wd;              /* gate|up (E, 2I, D), down (E, D, I) */
static float *dwgu, *dwd;              /* their fp32 gradients */
static int64_t *woff_gu, *woff_d;      /* (E) element offsets of each expert's weight */
static int32_t *off;                   /* (E + 1) the experts' row offsets */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* A 4-byte download: it waits for everything queued before it. */
static void sync_dev(void)
{
    float v;
    be->download(&v, sync_buf, sizeof v);
}

static uint64_t rng_state = 88172645463325252ull;
static double uniform01(void)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1p-53;
}

static scp_act *act_at(scp_act *p, size_t i) { return (scp_act *)((char *)p + i * be->act_size); }

/* n activations, uniform in (-scale / 2, scale / 2): one chunk of 2^24 random values, repeated (the timings do
 * not depend on the values, only on their being nonzero). */
static scp_act *random_act(size_t n, float scale)
{
    const size_t chunk = n < ((size_t)1 << 24) ? n : (size_t)1 << 24;
    scp_act *a = be->alloc(n * be->act_size);
    float *host = malloc(chunk * sizeof *host), *tmp = be->alloc(chunk * sizeof *tmp);
    if (!host) scp_die("out of memory");
    for (size_t i = 0; i < chunk; i++) host[i] = (float)(uniform01() - 0.5) * scale;
    be->upload(tmp, host, chunk * sizeof *host);
    for (size_t i0 = 0; i0 < n; i0 += chunk) be->to_act(act_at(a, i0), tmp, n - i0 < chunk ? n - i0 : chunk);
    free(host), be->free(tmp);
    return a;
}

static int64_t *weight_offsets(size_t per_expert)
{
    int64_t *h_woff = malloc((size_t)E * sizeof *h_woff), *d_woff = be->alloc((size_t)E * sizeof *d_woff);
    for (int e = 0; e < E; e++) h_woff[e] = (int64_t)e * (int64_t)per_expert;
    be->upload(d_woff, h_woff, (size_t)E * sizeof *h_woff);
    free(h_woff);
    return d_woff;
}

/* The routing: K distinct experts per token, expert e drawn with weight 1 (uniform) or 1 / (e + 1) (skewed),
 * sorted on the device by moe_permute into off. Prints the smallest and largest expert's rows. */
static void route(int skewed)
{
    int32_t *idx = malloc((size_t)R * sizeof *idx), *h_off = malloc(((size_t)E + 1) * sizeof *h_off);
    double *cum = malloc((size_t)E * sizeof *cum), total = 0;
    for (int e = 0; e < E; e++) cum[e] = total += skewed ? 1.0 / (e + 1) : 1.0;
    for (int t = 0; t < M; t++)
        for (int j = 0; j < K; j++) {
            int e, again;
            do {   /* draw until the expert is not one of this token's already */
                const double u = uniform01() * total;
                int lo = 0, hi = E - 1;
                while (lo < hi) {
                    const int mid = (lo + hi) / 2;
                    if (cum[mid] > u) hi = mid; else lo = mid + 1;
                }
                e = lo, again = 0;
                for (int i = 0; i < j; i++) again |= idx[(size_t)t * K + i] == e;
            } while (again);
            idx[(size_t)t * K + j] = e;
        }
    int32_t *d_idx = be->alloc((size_t)R * sizeof *d_idx), *pos = be->alloc((size_t)R * 4), *tok = be->alloc((size_t)R * 4);
    be->upload(d_idx, idx, (size_t)R * sizeof *idx);
    be->moe_permute(off, pos, tok, d_idx, M, K, E);
    be->download(h_off, off, ((size_t)E + 1) * sizeof *h_off);
    int lo = R, hi = 0;
    for (int e = 0; e < E; e++) {
        const int n = h_off[e + 1] - h_off[e];
        lo = n < lo ? n : lo, hi = n > hi ? n : hi;
    }
    printf("routing %s: rows per expert %d .. %d\n", skewed ? "skewed (1 / (e + 1))" : "uniform", lo, hi);
    be->free(d_idx), be->free(pos), be->free(tok);
    free(idx), free(h_off), free(cum);
}

/* One call of an entry over the layer's two expert GEMMs, as lib/model/moe.c makes them. */
static void run_entry(int entry)
{
    const int I2 = 2 * I;
    if (entry == FWD) {
        be->moe_gemm_fwd(gu, I2, x, D, wgu, woff_gu, E, off, E, R, D, I2, 0.0f);
        be->moe_gemm_fwd(y, D, h, I, wd, woff_d, E, off, E, R, I, D, 0.0f);
    } else if (entry == BWD_INP) {
        be->moe_gemm_bwd_inp(dh, I, dy, D, wd, woff_d, E, off, E, R, I, D, 0.0f);
        be->moe_gemm_bwd_inp(dx, D, dgu, I2, wgu, woff_gu, E, off, E, R, D, I2, 0.0f);
    } else {
        be->moe_gemm_bwd_w(dwd, dy, D, h, I, woff_d, E, off, E, R, I, D);
        be->moe_gemm_bwd_w(dwgu, dgu, I2, x, D, woff_gu, E, off, E, R, D, I2);
    }
}

static int cmp_double(const void *a, const void *b)
{
    const double u = *(const double *)a, v = *(const double *)b;
    return (u > v) - (u < v);
}

/* Seconds per call of the entry on the path: the median of 3 batches of reps calls. */
static double time_entry(int path, int entry)
{
    setenv("SCP_CUDA_MOE_GEMM", path_env[path], 1);
    run_entry(entry), run_entry(entry);
    sync_dev();
    double t[3];
    for (int b = 0; b < 3; b++) {
        const double t0 = now();
        for (int r = 0; r < reps; r++) run_entry(entry);
        sync_dev();
        t[b] = (now() - t0) / reps;
    }
    qsort(t, 3, sizeof *t, cmp_double);
    return t[1];
}

/* What the cuBLAS paths add to each call before their GEMMs, alone: off and woff down, the 3 E problem pointers up
 * (moe_gemm_cublas.cu), on an idle device. Microseconds per call. */
static double round_trip_us(void)
{
    int32_t *h_off = malloc(((size_t)E + 1) * sizeof *h_off);
    int64_t *h_woff = malloc((size_t)E * sizeof *h_woff);
    void **ptrs = calloc((size_t)3 * E, sizeof *ptrs), **d_ptrs = be->alloc((size_t)3 * E * sizeof *ptrs);
    sync_dev();
    const int n = 200;
    const double t0 = now();
    for (int i = 0; i < n; i++) {
        be->download(h_off, off, ((size_t)E + 1) * sizeof *h_off);
        be->download(h_woff, woff_gu, (size_t)E * sizeof *h_woff);
        be->upload(d_ptrs, ptrs, (size_t)3 * E * sizeof *ptrs);
    }
    const double us = (now() - t0) / n * 1e6;
    free(h_off), free(h_woff), free(ptrs), be->free(d_ptrs);
    return us;
}

/* The first rows of every output of one call of each entry on the path, as fp32 on the host: gu, y, dh, dx
 * (rows 0 .. S - 1) and the first S D elements of dwgu and S I of dwd (accumulated onto zeros). */
static float *outputs(int path, int S, size_t *n_out)
{
    const size_t parts[6] = {(size_t)S * 2 * I, (size_t)S * D, (size_t)S * I, (size_t)S * D, (size_t)S * D, (size_t)S * I};
    size_t n = 0;
    for (int i = 0; i < 6; i++) n += parts[i];
    float *host = malloc(n * sizeof *host), *tmp = be->alloc((size_t)S * (2 * I > D ? 2 * I : D) * sizeof *tmp);
    setenv("SCP_CUDA_MOE_GEMM", path_env[path], 1);
    be->zero_bytes(dwgu, (size_t)E * 2 * I * D * sizeof *dwgu), be->zero_bytes(dwd, (size_t)E * D * I * sizeof *dwd);
    for (int e = 0; e < NENTRY; e++) run_entry(e);
    const scp_act *acts[4] = {gu, y, dh, dx};
    size_t at = 0;
    for (int i = 0; i < 4; i++) {
        be->from_act(tmp, acts[i], parts[i]);
        be->download(host + at, tmp, parts[i] * sizeof *host);
        at += parts[i];
    }
    be->download(host + at, dwgu, parts[4] * sizeof *host), at += parts[4];
    be->download(host + at, dwd, parts[5] * sizeof *host), at += parts[5];
    be->free(tmp);
    *n_out = n;
    return host;
}

static double rel_diff(const float *a, const float *ref, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]), r += (double)ref[i] * ref[i];
    return sqrt(d / (r > 0 ? r : 1));
}

static void bench_routing(int skewed)
{
    route(skewed);
    const double flops = 2.0 * R * 3.0 * D * I;   /* per entry: (D x 2I) + (I x D) per row */
    for (int e = 0; e < NENTRY; e++) {
        double t[NPATH];
        printf("  %-8s", entry_name[e]);
        for (int p = 0; p < NPATH; p++) {
            t[p] = time_entry(p, e);
            printf(" | %-11s %8.3f ms %6.1f TFLOP/s", path_env[p], t[p] * 1e3, flops / t[p] * 1e-12);
            if (p != OWN) printf(" (%.2fx own)", t[OWN] / t[p]);
        }
        printf("\n");
    }
    const int S = R < 1024 ? R : 1024;
    size_t n;
    float *ref = outputs(OWN, S, &n);
    for (int p = CUBLAS; p < NPATH; p++) {
        float *got = outputs(p, S, &n);
        printf("  %s against own on the first %d rows of every output: relative difference %.2e\n", path_env[p], S,
               rel_diff(got, ref, n));
        free(got);
    }
    free(ref);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tiny") == 0)
            D = 64, I = 48, E = 8, K = 2, M = 200, reps = 1;
        else {
            fprintf(stderr, "usage: moe-gemm [--tiny]\n");
            return 2;
        }
    }
    const scp_cuda_plugin *cuda = scp_cuda_plugin_load();
    if (!cuda || cuda->device_count() < 1) {
        printf("moe-gemm: %s\n", cuda ? "no CUDA device" : scp_last_error());
        return 77;
    }
    if (!(be = cuda->backend_named("cuda"))) scp_die("the CUDA plugin has no table \"cuda\"");
    char dev[256] = "?";
    cuda->device_describe(0, dev, sizeof dev);
    R = M * K;
    printf("moe-gemm: experts of hidden %d, intermediate %d, %d experts, top-%d of %d tokens (%d rows), table %s, %s\n",
           D, I, E, K, M, R, be->name, dev);
    sync_buf = be->alloc(sizeof(float));
    x = random_act((size_t)R * D, 1), h = random_act((size_t)R * I, 1), dy = random_act((size_t)R * D, 1);
    dgu = random_act((size_t)R * 2 * I, 1);
    gu = be->alloc((size_t)R * 2 * I * be->act_size), y = be->alloc((size_t)R * D * be->act_size);
    dh = be->alloc((size_t)R * I * be->act_size), dx = be->alloc((size_t)R * D * be->act_size);
    wgu = random_act((size_t)E * 2 * I * D, 0.05f), wd = random_act((size_t)E * D * I, 0.05f);
    dwgu = be->alloc((size_t)E * 2 * I * D * sizeof(float)), dwd = be->alloc((size_t)E * D * I * sizeof(float));
    woff_gu = weight_offsets((size_t)2 * I * D), woff_d = weight_offsets((size_t)D * I);
    off = be->alloc(((size_t)E + 1) * sizeof *off);
    bench_routing(0);
    bench_routing(1);
    printf("host round trip of a cuBLAS path's call (off and woff down, %d pointers up), alone: %.1f us "
           "(each entry above makes 2 calls)\n", 3 * E, round_trip_us());
    unsetenv("SCP_CUDA_MOE_GEMM");
    scp_act *bufs[] = {x, h, dy, dgu, gu, y, dh, dx, wgu, wd};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) be->free(bufs[i]);
    be->free(dwgu), be->free(dwd), be->free(woff_gu), be->free(woff_d), be->free(off), be->free(sync_buf);
    return 0;
}
