/* cudnn-probe: cuDNN's attention graphs (lib/model/cuda/attention_cudnn.c) for one small shape, B=2 H=4 Hkv=2
 * T=128 hd=64 with q, k, v in one (B T, (H + 2 Hkv) hd) bf16 buffer as the backend lays them out, causal and
 * bidirectional: for each, the forward and the backward are built and run on random data, and each prints "ok"
 * with its largest error against a plain attention computed here in double precision on the same bf16-rounded
 * inputs, or the failing stage in cuDNN's words. What tests/gpu/device-check.sh runs first on a GPU machine.
 * Exit status: 0 when every part ran and agreed, 1 otherwise, 77 without a usable GPU.
 *
 * cudnn-probe --graphs: without a GPU, the graphs of several shapes (the one above, multi-head and grouped
 * heads, head sizes 16 and 128, the benchmark's shape) built and their operation graphs finalized by the library,
 * which checks every tensor and operation cuDNN is given; TAP, 77 where libcudnn cannot be loaded
 * (tests/gpu/cudnn-graphs.sh). Engines and plans need the GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "model/cuda/attention_cudnn.h"

enum { B = 2, H = 4, KV = 2, T = 128, HD = 64, LD = (H + 2 * KV) * HD };

/* bf16 by rounding to nearest even, and back */
static uint16_t to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float uniform(void)   /* in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * 0x1p-53 * 2 - 1);
}

static void *workspace(size_t bytes)
{
    static void *p;
    static size_t have;
    if (bytes > have) {
        if (p) cudaFree(p);
        p = NULL, have = 0;
        if (cudaMalloc(&p, bytes) != cudaSuccess) return NULL;
        have = bytes;
    }
    return p;
}

static void *upload(const void *host, size_t bytes)
{
    void *d = NULL;
    if (cudaMalloc(&d, bytes) != cudaSuccess || cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
        fprintf(stderr, "cudnn-probe: cudaMalloc/cudaMemcpy of %zu bytes failed\n", bytes);
        exit(1);
    }
    return d;
}

static void download(void *host, const void *d, size_t bytes)
{
    cudaError_t e = cudaMemcpy(host, d, bytes, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        printf("  device fault after the run: %s\n", cudaGetErrorString(e));
        exit(1);
    }
}

/* The reference, from the definition: for each (b, h) with kv head g = h / (H / KV), p = softmax(q k^T scale)
 * over the visible keys, out = p v, lse = log sum exp; dp = dout v^T, ds = p (dp - rowsum(p dp)), dq = ds k scale,
 * dk += ds^T q scale, dv += p^T dout. x (B T, LD) holds q, k, v; dx the same layout. */
static void reference(const float *x, const float *dout, int causal, double *out, double *lse, double *dx)
{
    const double scale = 1.0 / sqrt((double)HD);
    memset(dx, 0, sizeof(double) * B * T * LD);
    static double p[T][T], dp[T][T];
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / KV);
            const float *q = x + (size_t)b * T * LD + h * HD, *k = x + (size_t)b * T * LD + (H + g) * HD;
            const float *v = x + (size_t)b * T * LD + (H + KV + g) * HD;
            for (int i = 0; i < T; i++) {
                double m = -INFINITY, z = 0;
                int n = causal ? i + 1 : T;
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int c = 0; c < HD; c++) s += (double)q[i * LD + c] * k[j * LD + c];
                    p[i][j] = s * scale;
                    if (p[i][j] > m) m = p[i][j];
                }
                for (int j = 0; j < n; j++) z += exp(p[i][j] - m);
                for (int j = 0; j < T; j++) p[i][j] = j < n ? exp(p[i][j] - m) / z : 0;
                lse[((size_t)b * H + h) * T + i] = m + log(z);
                for (int c = 0; c < HD; c++) {
                    double o = 0;
                    for (int j = 0; j < n; j++) o += p[i][j] * v[j * LD + c];
                    out[((size_t)b * T + i) * H * HD + h * HD + c] = o;
                }
            }
            const float *d = dout + (size_t)b * T * H * HD + h * HD;
            double *dq = dx + (size_t)b * T * LD + h * HD, *dk = dx + (size_t)b * T * LD + (H + g) * HD;
            double *dv = dx + (size_t)b * T * LD + (H + KV + g) * HD;
            for (int i = 0; i < T; i++) {
                double rs = 0;
                for (int j = 0; j < T; j++) {
                    double s = 0;
                    for (int c = 0; c < HD; c++) s += (double)d[i * H * HD + c] * v[j * LD + c];
                    dp[i][j] = s;
                    rs += p[i][j] * s;
                }
                for (int j = 0; j < T; j++) dp[i][j] = p[i][j] * (dp[i][j] - rs);   /* ds */
            }
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++)
                    for (int c = 0; c < HD; c++) {
                        dq[i * LD + c] += dp[i][j] * k[j * LD + c] * scale;
                        dk[j * LD + c] += dp[i][j] * q[i * LD + c] * scale;
                        dv[j * LD + c] += p[i][j] * d[i * H * HD + c];
                    }
        }
}

/* max |got - want| / (max |want|) over n values, got in bf16 or fp32 with row stride ld_got, width w per row */
static double rel_err(const void *got, int bf, int ld_got, const double *want, int ld_want, int rows, int w)
{
    double e = 0, mx = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < w; c++) {
            double gv = bf ? from_bf16(((const uint16_t *)got)[(size_t)r * ld_got + c]) : ((const float *)got)[(size_t)r * ld_got + c];
            double wv = want[(size_t)r * ld_want + c];
            if (!(fabs(gv - wv) <= e)) e = isnan(gv) ? INFINITY : fabs(gv - wv);
            if (fabs(wv) > mx) mx = fabs(wv);
        }
    return e / (mx > 0 ? mx : 1);
}

static int graphs(void)
{
    char what[640];
    if (scp_cudnn_describe(what, sizeof what) != 0) {
        printf("1..0 # SKIP %s\n", what);
        return 77;
    }
    printf("# %s\n", what);
    static const struct { int B, T, H, KV, hd; } shapes[] = {
        {B, T, H, KV, HD}, {1, 64, 4, 4, 64}, {2, 100, 6, 2, 16}, {1, 256, 8, 1, 128}, {4, 2048, 16, 8, 128},
    };
    int n = 0, bad = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int causal = 0; causal < 2; causal++)
            for (int backward = 0; backward < 2; backward++) {
                scp_attn_args a = {.B = shapes[i].B, .T = shapes[i].T, .H = shapes[i].H, .KV = shapes[i].KV,
                                   .hd = shapes[i].hd, .ld_qkv = (shapes[i].H + 2 * shapes[i].KV) * shapes[i].hd,
                                   .causal = causal, .scale = 0.125f};
                int rc = scp_cudnn_graph_check(backward, &a);
                bad |= rc != 0;
                printf("%s %d - %s graph B=%d T=%d H=%d KV=%d hd=%d %s finalizes%s%s\n", rc ? "not ok" : "ok", ++n,
                       backward ? "backward" : "forward", a.B, a.T, a.H, a.KV, a.hd, causal ? "causal" : "bidirectional",
                       rc ? ": " : "", rc ? scp_cudnn_error() : "");
            }
    printf("1..%d\n", n);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--graphs") == 0) return graphs();
    if (argc != 1) {
        fprintf(stderr, "usage: cudnn-probe [--graphs]\n");
        return 2;
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("1..0 # SKIP no usable GPU\n");
        return 77;
    }
    char what[640];
    if (scp_cudnn_describe(what, sizeof what) != 0) {
        printf("not ok 1 - load: %s\n1..1\n", what);
        return 1;
    }
    int n = 1;
    printf("ok 1 - load: %s\n", what);
    const size_t nx = (size_t)B * T * LD, no = (size_t)B * T * H * HD, ns = (size_t)B * H * T;
    float *x = malloc(nx * 4), *dout = malloc(no * 4);
    uint16_t *xb = malloc(nx * 2), *dob = malloc(no * 2), *ob = malloc(no * 2), *gb = malloc(nx * 2);
    float *stats = malloc(ns * 4);
    double *rout = malloc(no * 8), *rlse = malloc(ns * 8), *rdx = malloc(nx * 8);
    for (size_t i = 0; i < nx; i++) xb[i] = to_bf16(uniform() * 1.5f), x[i] = from_bf16(xb[i]);
    for (size_t i = 0; i < no; i++) dob[i] = to_bf16(uniform()), dout[i] = from_bf16(dob[i]);
    uint16_t *dx = upload(xb, nx * 2), *ddo = upload(dob, no * 2), *dO = upload(ob, no * 2), *dg = upload(xb, nx * 2);
    float *dstats = upload(stats, ns * 4);
    int bad = 0;
    for (int causal = 1; causal >= 0; causal--) {
        const char *mask = causal ? "causal" : "bidirectional";
        scp_attn_args a = {.B = B, .T = T, .H = H, .KV = KV, .hd = HD, .ld_qkv = LD, .causal = causal,
                           .scale = 1.0f / sqrtf((float)HD)};
        reference(x, dout, causal, rout, rlse, rdx);
        if (!scp_cudnn_attn_serves(&a, dx, dx + H * HD, dx + (H + KV) * HD)) {
            printf("not ok %d - %s: scp_cudnn_attn_serves says no\n", ++n, mask);
            bad = 1;
            continue;
        }
        if (scp_cudnn_attn_fwd(dO, dstats, dx, dx + H * HD, dx + (H + KV) * HD, &a, workspace) != 0) {
            printf("not ok %d - forward %s: %s\n", ++n, mask, scp_cudnn_error());
            bad = 1;
            continue;
        }
        cudaError_t e = cudaDeviceSynchronize();
        download(ob, dO, no * 2);
        download(stats, dstats, ns * 4);
        double eo = rel_err(ob, 1, H * HD, rout, H * HD, B * T, H * HD), el = 0;
        for (size_t i = 0; i < ns; i++) el = fmax(el, fabs(stats[i] - rlse[i]));
        /* bf16 output: half an ulp of 2^-8 relative, with fp32 accumulation */
        int ok = e == cudaSuccess && eo < 1e-2 && el < 1e-3;
        printf("%s %d - forward %s: out rel err %.2e (< 1e-2), stats abs err %.2e (< 1e-3)%s%s\n", ok ? "ok" : "not ok",
               ++n, mask, eo, el, e == cudaSuccess ? "" : ", ", e == cudaSuccess ? "" : cudaGetErrorString(e));
        bad |= !ok;
        /* the backward from the forward's own out and stats, as the backend runs it */
        cudaMemset(dg, 0xff, nx * 2);   /* NaN in bf16: a gradient left unwritten shows */
        if (scp_cudnn_attn_bwd(dg, dg + H * HD, dg + (H + KV) * HD, ddo, dO, dstats, dx, dx + H * HD,
                               dx + (H + KV) * HD, &a, workspace) != 0) {
            printf("not ok %d - backward %s: %s\n", ++n, mask, scp_cudnn_error());
            bad = 1;
            continue;
        }
        e = cudaDeviceSynchronize();
        download(gb, dg, nx * 2);
        double eq = rel_err(gb, 1, LD, rdx, LD, B * T, H * HD);
        double ek = rel_err(gb + H * HD, 1, LD, rdx + H * HD, LD, B * T, KV * HD);
        double ev = rel_err(gb + (H + KV) * HD, 1, LD, rdx + (H + KV) * HD, LD, B * T, KV * HD);
        ok = e == cudaSuccess && eq < 3e-2 && ek < 3e-2 && ev < 3e-2;
        printf("%s %d - backward %s: rel err dq %.2e dk %.2e dv %.2e (< 3e-2)%s%s\n", ok ? "ok" : "not ok", ++n, mask,
               eq, ek, ev, e == cudaSuccess ? "" : ", ", e == cudaSuccess ? "" : cudaGetErrorString(e));
        bad |= !ok;
    }
    printf("1..%d\n", n);
    return bad;
}
