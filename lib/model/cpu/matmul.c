/* matmul.c: the Linear layer y = x W^T + b and its two backward products, through CBLAS sgemm with the right
 * transposes (no copies) when configure found one, otherwise a blocked loop; plus the plain reference loops.
 * Shapes: inp (M, K) with row stride ldi, w (N, K) as HF stores Linear weights, out (M, N) with row stride ldo. */
#include "config.h"
#include "model/cpu/cpu.h"

#include "model/cpu/blas.h"

/* Start out as beta * out + bias (or leave it for sgemm's beta when there is no bias). Returns the beta that
 * sgemm must use afterwards. */
static float bias_init(float *out, int ldo, const float *bias, int M, int N, float beta)
{
    if (!bias) return beta;
#pragma omp parallel for schedule(static) if ((size_t)M * N > (1 << 20))
    for (int m = 0; m < M; m++) {
        float *o = out + (size_t)m * ldo;
        if (beta == 0.0f)
            for (int n = 0; n < N; n++) o[n] = bias[n];
        else
            for (int n = 0; n < N; n++) o[n] += bias[n];
    }
    return 1.0f;
}

/* dbias (N) += column sums of dout (M, N): parallel over columns, rows summed in order (deterministic). */
static void bias_grad(float *dbias, const float *dout, int ldo, int M, int N)
{
    if (!dbias) return;
    int nt = (size_t)M * N > (1 << 20) ? scp_cpu_threads() : 1;
#pragma omp parallel num_threads(nt)
    {
        int t = scp_cpu_thread_id(), per = (N + nt - 1) / nt, n0 = t * per, n1 = n0 + per < N ? n0 + per : N;
        for (int m = 0; m < M; m++) {
            const float *d = dout + (size_t)m * ldo;
#pragma omp simd
            for (int n = n0; n < n1; n++) dbias[n] += d[n];
        }
    }
}

/* ---- blocked fallback --------------------------------------------------------------------------------- */
#define NB 64   /* rows of W per block: 64 rows of a K <= 4096 weight stay in L2 while all x rows stream */

void scp_cpu_matmul_fwd_blocked(float *out, int ldo, const float *inp, int ldi, const float *w, const float *bias, int M,
                                int K, int N, float beta)
{
    beta = bias_init(out, ldo, bias, M, N, beta);
    for (int n0 = 0; n0 < N; n0 += NB) {
        int n1 = n0 + NB < N ? n0 + NB : N;
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * ldi;
            float *o = out + (size_t)m * ldo;
            for (int n = n0; n < n1; n++) {
                const float *wr = w + (size_t)n * K;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int k = 0; k < K; k++) s += x[k] * wr[k];
                o[n] = (beta == 0.0f ? 0.0f : o[n]) + s;
            }
        }
    }
}

void scp_cpu_matmul_bwd_inp_blocked(float *dinp, int ldi, const float *dout, int ldo, const float *w, int M, int K, int N,
                                    float beta)
{
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        float *dx = dinp + (size_t)m * ldi;
        const float *d = dout + (size_t)m * ldo;
        if (beta == 0.0f) memset(dx, 0, (size_t)K * sizeof *dx);
        for (int n = 0; n < N; n++) {
            const float *wr = w + (size_t)n * K;
            float g = d[n];
#pragma omp simd
            for (int k = 0; k < K; k++) dx[k] += g * wr[k];
        }
    }
}

void scp_cpu_matmul_bwd_w_blocked(float *dw, float *dbias, const float *dout, int ldo, const float *inp, int ldi, int M,
                                  int K, int N)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *g = dw + (size_t)n * K;
        for (int m = 0; m < M; m++) {
            float d = dout[(size_t)m * ldo + n];
            const float *x = inp + (size_t)m * ldi;
#pragma omp simd
            for (int k = 0; k < K; k++) g[k] += d * x[k];
        }
    }
    bias_grad(dbias, dout, ldo, M, N);
}

/* ---- the fast entries ------------------------------------------------------------------------------------ */
/* With CBLAS the work is split over OpenMP threads here, each running a one-threaded sgemm on its share of the
 * rows (blas.c loads OpenBLAS without threads of its own): OpenBLAS's own threads spin after each call and
 * fight the OpenMP threads of the next operation for the cores, which costs more than it saves on the small
 * matrices of a small model (and badly so on a loaded machine). Each output row is computed by one call, so the
 * result is the same for a fixed thread count. */
#ifdef HAVE_CBLAS
static int chunk(int n, int nt, int t, int *lo)
{
    int per = (n + nt - 1) / nt;
    *lo = t * per;
    int hi = *lo + per < n ? *lo + per : n;
    return hi > *lo ? hi - *lo : 0;
}

/* Fewer threads for small products: about 64 rows each at least. */
static int threads_for(int rows) { int nt = scp_cpu_threads(), m = rows / 64; return m < 1 ? 1 : (m < nt ? m : nt); }
#endif

void scp_cpu_matmul_fwd(float *out, int ldo, const float *inp, int ldi, const float *w, const float *bias, int M, int K,
                        int N, float beta)
{
#ifdef HAVE_CBLAS
    scp_cpu_blas_ready(scp_cpu_threads());
    beta = bias_init(out, ldo, bias, M, N, beta);
    int nt = threads_for(M);
#pragma omp parallel num_threads(nt)
    {
        int lo, n = chunk(M, nt, scp_cpu_thread_id(), &lo);
        if (n > 0)
            scp_cpu_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, N, K, 1.0f, inp + (size_t)lo * ldi, ldi, w, K,
                          beta, out + (size_t)lo * ldo, ldo);
    }
#else
    scp_cpu_matmul_fwd_blocked(out, ldo, inp, ldi, w, bias, M, K, N, beta);
#endif
}

void scp_cpu_matmul_bwd_inp(float *dinp, int ldi, const float *dout, int ldo, const float *w, int M, int K, int N, float beta)
{
#ifdef HAVE_CBLAS
    scp_cpu_blas_ready(scp_cpu_threads());
    int nt = threads_for(M);
#pragma omp parallel num_threads(nt)
    {
        int lo, n = chunk(M, nt, scp_cpu_thread_id(), &lo);
        if (n > 0)
            scp_cpu_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, K, N, 1.0f, dout + (size_t)lo * ldo, ldo, w,
                          K, beta, dinp + (size_t)lo * ldi, ldi);
    }
#else
    scp_cpu_matmul_bwd_inp_blocked(dinp, ldi, dout, ldo, w, M, K, N, beta);
#endif
}

void scp_cpu_matmul_bwd_w(float *dw, float *dbias, const float *dout, int ldo, const float *inp, int ldi, int M, int K, int N)
{
#ifdef HAVE_CBLAS
    scp_cpu_blas_ready(scp_cpu_threads());
    /* split over the rows of dW, so that each sum over the M tokens stays inside one call */
    int nt = threads_for(N);
#pragma omp parallel num_threads(nt)
    {
        int lo, n = chunk(N, nt, scp_cpu_thread_id(), &lo);
        if (n > 0)
            scp_cpu_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, K, M, 1.0f, dout + lo, ldo, inp, ldi, 1.0f,
                          dw + (size_t)lo * K, K);
    }
    bias_grad(dbias, dout, ldo, M, N);
#else
    scp_cpu_matmul_bwd_w_blocked(dw, dbias, dout, ldo, inp, ldi, M, K, N);
#endif
}

/* ---- reference: the definition, accumulated in double --------------------------------------------------- */
void scp_cpu_matmul_fwd_ref(float *out, int ldo, const float *inp, int ldi, const float *w, const float *bias, int M, int K,
                            int N, float beta)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = bias ? bias[n] : 0.0;
            for (int k = 0; k < K; k++) s += (double)inp[(size_t)m * ldi + k] * w[(size_t)n * K + k];
            float *o = &out[(size_t)m * ldo + n];
            *o = (float)((beta == 0.0f ? 0.0 : *o) + s);
        }
}

void scp_cpu_matmul_bwd_inp_ref(float *dinp, int ldi, const float *dout, int ldo, const float *w, int M, int K, int N,
                                float beta)
{
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += (double)dout[(size_t)m * ldo + n] * w[(size_t)n * K + k];
            float *o = &dinp[(size_t)m * ldi + k];
            *o = (float)((beta == 0.0f ? 0.0 : *o) + s);
        }
}

void scp_cpu_matmul_bwd_w_ref(float *dw, float *dbias, const float *dout, int ldo, const float *inp, int ldi, int M, int K,
                              int N)
{
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int m = 0; m < M; m++) s += (double)dout[(size_t)m * ldo + n] * inp[(size_t)m * ldi + k];
            dw[(size_t)n * K + k] += (float)s;
        }
        if (dbias) {
            double s = 0;
            for (int m = 0; m < M; m++) s += dout[(size_t)m * ldo + n];
            dbias[n] += (float)s;
        }
    }
}
