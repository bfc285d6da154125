// warp-mma-test.cu: the warp primitives of lib/model/cuda/warp_mma.h against expectations computed here from the
// PTX ISA's definitions (fragment layouts of mma.m16n8k16 with .bf16 A/B and .f32 C/D, ldmatrix with and
// without .trans) and against plain matrix products summed in double. TAP on stdout. tests/gpu/emulated.sh runs
// it on the emulator (where the cp.async lines marked "emulator" hold: it defers a copy until its wait; on a GPU
// the copy may land earlier).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "model/cuda/warp_mma.h"

static int tap_n, tap_failed;
static void tap(bool ok, const char *what)
{
    printf("%sok %d - %s\n", ok ? "" : "not ", ++tap_n, what);
    tap_failed |= !ok;
}

static uint16_t bf16_bits(float f)  // round to nearest even (the test's values are exact in bf16 anyway)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float bf16_value(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t pair(uint16_t lo, uint16_t hi) { return (uint32_t)lo | (uint32_t)hi << 16; }

// ---- mma.m16n8k16 on fragments placed by the PTX ISA's formulas --------------------------------------------
// in (32 lanes, 10 words): a[4], b[2], c[4] (fp32 bits); out (32 lanes, 4): d
__global__ void mma_kernel(float *out, const uint32_t *in)
{
    const int lane = threadIdx.x & 31;
    const uint32_t *w = in + lane * 10;
    uint32_t a[4] = {w[0], w[1], w[2], w[3]}, b[2] = {w[4], w[5]};
    float d[4];
    memcpy(d, w + 6, 16);
    mma_m16n8k16_bf16(d, a, b);
    for (int i = 0; i < 4; i++) out[lane * 4 + i] = d[i];
}

// ---- ldmatrix on a 16x16 tile whose element (r, c) is r * 16 + c --------------------------------------------
// The tile sits in shared memory with row stride LDT elements (48 bytes: rows 16-byte aligned). Lane l passes
// row (l % 16), column 8 (l / 16): matrices 0..3 are the tile's quarters (rows 0-7 | 8-15) x (columns 0-7 | 8-15)
// in the order top-left, bottom-left, top-right, bottom-right. out (32 lanes, 4 registers).
constexpr int LDT = 24;
__global__ void ldmatrix_kernel(uint32_t *out, const uint16_t *tile, int variant)
{
    extern __shared__ float smem[];
    uint16_t *s = (uint16_t *)smem;
    const int lane = threadIdx.x & 31;
    for (int e = lane; e < 16 * LDT; e += 32) s[e] = tile[e];
    __syncthreads();
    const uint16_t *row = s + (lane % 16) * LDT + 8 * (lane / 16);
    uint32_t r[4] = {0, 0, 0, 0};
    if (variant == 0) ldmatrix_x4(r, row);
    if (variant == 1) ldmatrix_x4_trans(r, row);
    if (variant == 2) ldmatrix_x2(r, row);
    if (variant == 3) ldmatrix_x2_trans(r, row);
    for (int i = 0; i < 4; i++) out[lane * 4 + i] = r[i];
}

// ---- a product whose operands come through ldmatrix, laid out as the attention kernels keep them ------------
// A (16, 16) row-major (queries x head dims), Bt (8, 16): B^T row-major (keys x head dims: S = Q K^T takes B
// by ldmatrix without .trans), Bk (16, 8) row-major (keys x head dims: O = P V takes B by ldmatrix .trans).
// out (32 lanes, 8): d of A Bt^T, then d of A Bk.
__global__ void product_kernel(float *out, const uint16_t *A, const uint16_t *Bt, const uint16_t *Bk)
{
    extern __shared__ float smem[];
    uint16_t *sA = (uint16_t *)smem, *sBt = sA + 16 * LDT, *sBk = sBt + 8 * LDT;
    const int lane = threadIdx.x & 31;
    for (int e = lane; e < 16 * 16; e += 32) sA[e / 16 * LDT + e % 16] = A[e];
    for (int e = lane; e < 8 * 16; e += 32) sBt[e / 16 * LDT + e % 16] = Bt[e];
    for (int e = lane; e < 16 * 8; e += 32) sBk[e / 8 * LDT + e % 8] = Bk[e];
    __syncthreads();
    uint32_t a[4], b1[2], b2[2];
    ldmatrix_x4(a, sA + (lane % 16) * LDT + 8 * (lane / 16));
    ldmatrix_x2(b1, sBt + (lane % 8) * LDT + 8 * ((lane / 8) % 2));   // matrix 0: k 0-7, matrix 1: k 8-15
    ldmatrix_x2_trans(b2, sBk + (lane % 16) * LDT);                    // matrix 0: k rows 0-7, matrix 1: 8-15
    float d1[4] = {0, 0, 0, 0}, d2[4] = {0, 0, 0, 0};
    mma_m16n8k16_bf16(d1, a, b1);
    mma_m16n8k16_bf16(d2, a, b2);
    for (int i = 0; i < 4; i++) out[lane * 8 + i] = d1[i], out[lane * 8 + 4 + i] = d2[i];
}

// ---- cp.async groups ----------------------------------------------------------------------------------------
// Shared chunks 0..3 (16 bytes each) start as 0xee bytes. Group 1: chunk 0 <- src 0; group 2: chunk 1 <- src 1,
// chunk 2 <- zeros (zfill). out (4 snapshots, 4 chunks, 16 bytes): before any wait, after wait<1>, after
// wait<0>, and after wait<0> + __syncthreads as seen by lane 1 (the copies are lane 0's).
__global__ void cp_async_kernel(unsigned char *out, const unsigned char *src)
{
    extern __shared__ float smem[];
    unsigned char *s = (unsigned char *)smem;
    const int lane = threadIdx.x & 31;
    for (int e = lane; e < 64; e += 32) s[e] = 0xee;
    __syncthreads();
    if (lane == 0) {
        cp_async_16(s, src);
        cp_async_commit();
        cp_async_16(s + 16, src + 16);
        cp_async_zfill_16(s + 32, src + 32, false);
        cp_async_commit();
        memcpy(out, s, 64);
        cp_async_wait<1>();
        memcpy(out + 64, s, 64);
        cp_async_wait<0>();
        memcpy(out + 128, s, 64);
    }
    __syncthreads();
    if (lane == 1) memcpy(out + 192, s, 64);
}

static void *to_dev(const void *h, size_t n)
{
    void *d;
    if (cudaMalloc(&d, n) != cudaSuccess) abort();
    cudaMemcpy(d, h, n, cudaMemcpyHostToDevice);
    return d;
}
static void from_dev(void *h, const void *d, size_t n) { cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost); }

static float frand(void) { return (float)rand() / RAND_MAX * 4.0f - 2.0f; }

// The PTX ISA's fragment formulas, as written there: g = %laneid >> 2, t = %laneid % 4.
static void a_pos(int lane, int i, int *row, int *col)
{
    int g = lane >> 2, t = lane % 4;
    *row = (i < 2 || (4 <= i && i < 6)) ? g : g + 8;
    *col = i < 4 ? t * 2 + (i & 1) : t * 2 + (i & 1) + 8;
}
static void b_pos(int lane, int i, int *row, int *col)
{
    int g = lane >> 2, t = lane % 4;
    *row = i < 2 ? t * 2 + (i & 1) : t * 2 + (i & 1) + 8;
    *col = g;
}
static void c_pos(int lane, int i, int *row, int *col)
{
    int g = lane >> 2, t = lane % 4;
    *row = i < 2 ? g : g + 8;
    *col = t * 2 + (i & 1);
}

static void test_mma(int trial)
{
    uint16_t A[16][16], B[16][8];
    float C[16][8];
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) A[r][c] = bf16_bits(frand());
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 8; c++) B[r][c] = bf16_bits(frand()), C[r][c] = trial == 0 ? 0.0f : frand();
    uint32_t in[32 * 10];
    for (int l = 0; l < 32; l++) {
        uint16_t ah[8], bh[4];
        int r, c;
        for (int i = 0; i < 8; i++) a_pos(l, i, &r, &c), ah[i] = A[r][c];
        for (int i = 0; i < 4; i++) b_pos(l, i, &r, &c), bh[i] = B[r][c];
        for (int i = 0; i < 4; i++) in[l * 10 + i] = pair(ah[2 * i], ah[2 * i + 1]);
        in[l * 10 + 4] = pair(bh[0], bh[1]), in[l * 10 + 5] = pair(bh[2], bh[3]);
        for (int i = 0; i < 4; i++) c_pos(l, i, &r, &c), memcpy(&in[l * 10 + 6 + i], &C[r][c], 4);
    }
    void *din = to_dev(in, sizeof in), *dout;
    cudaMalloc(&dout, 32 * 4 * 4);
    mma_kernel<<<1, 32, 0>>>((float *)dout, (const uint32_t *)din);
    float out[32 * 4];
    from_dev(out, dout, sizeof out);
    double worst = 0;
    int covered[16][8] = {{0}};
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < 4; i++) {
            int r, c;
            c_pos(l, i, &r, &c);
            covered[r][c]++;
            double ref = C[r][c], mag = fabs(C[r][c]);
            for (int k = 0; k < 16; k++) {
                double p = (double)bf16_value(A[r][k]) * bf16_value(B[k][c]);
                ref += p, mag += fabs(p);
            }
            worst = fmax(worst, fabs(out[l * 4 + i] - ref) / mag);
        }
    int once = 1;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 8; c++) once &= covered[r][c] == 1;
    char what[160];
    snprintf(what, sizeof what, "mma.m16n8k16 random product %d (%s C): D = C + A B to %.1e of sum |terms| (fp32 sums)",
             trial, trial ? "random" : "zero", worst);
    tap(once && worst < 2e-6, what);
    cudaFree(din), cudaFree(dout);
}

static void test_ldmatrix(int variant)
{
    static const char *name[] = {"ldmatrix .x4", "ldmatrix .x4 .trans", "ldmatrix .x2", "ldmatrix .x2 .trans"};
    uint16_t tile[16 * LDT];
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < LDT; c++) tile[r * LDT + c] = bf16_bits(c < 16 ? (float)(r * 16 + c) : -1.0f);
    void *dt = to_dev(tile, sizeof tile), *dout;
    cudaMalloc(&dout, 32 * 4 * 4);
    ldmatrix_kernel<<<1, 32, 16 * LDT * 2>>>((uint32_t *)dout, (const uint16_t *)dt, variant);
    uint32_t out[32 * 4];
    from_dev(out, dout, sizeof out);
    const int nmat = variant < 2 ? 4 : 2, trans = variant % 2;
    int ok = 1;
    for (int l = 0; l < 32; l++)
        for (int m = 0; m < nmat; m++) {
            // PTX: register m of lane l holds row l / 4, columns 2 (l % 4) and + 1 of matrix m; .trans: the
            // element at (2 (l % 4) + e, l / 4). Matrix m is the quarter (rows 8 (m % 2), columns 8 (m / 2)).
            uint16_t e[2];
            for (int h = 0; h < 2; h++) {
                int r = trans ? 2 * (l % 4) + h : l / 4, c = trans ? l / 4 : 2 * (l % 4) + h;
                e[h] = bf16_bits((float)((8 * (m % 2) + r) * 16 + 8 * (m / 2) + c));
            }
            ok &= out[l * 4 + m] == pair(e[0], e[1]);
        }
    char what[160];
    snprintf(what, sizeof what, "%s: every lane's registers as the PTX ISA places a known 16x16 tile", name[variant]);
    tap(ok, what);
    cudaFree(dt), cudaFree(dout);
}

static void test_product(void)
{
    uint16_t A[16 * 16], Bt[8 * 16], Bk[16 * 8];
    for (int e = 0; e < 256; e++) A[e] = bf16_bits(frand());
    for (int e = 0; e < 128; e++) Bt[e] = bf16_bits(frand()), Bk[e] = bf16_bits(frand());
    void *da = to_dev(A, sizeof A), *db = to_dev(Bt, sizeof Bt), *dk = to_dev(Bk, sizeof Bk), *dout;
    cudaMalloc(&dout, 32 * 8 * 4);
    product_kernel<<<1, 32, (16 + 8 + 16) * LDT * 2>>>((float *)dout, (const uint16_t *)da, (const uint16_t *)db,
                                                       (const uint16_t *)dk);
    float out[32 * 8];
    from_dev(out, dout, sizeof out);
    double w1 = 0, w2 = 0;
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < 4; i++) {
            int r, c;
            c_pos(l, i, &r, &c);
            double s1 = 0, m1 = 0, s2 = 0, m2 = 0;
            for (int k = 0; k < 16; k++) {
                double p1 = (double)bf16_value(A[r * 16 + k]) * bf16_value(Bt[c * 16 + k]);
                double p2 = (double)bf16_value(A[r * 16 + k]) * bf16_value(Bk[k * 8 + c]);
                s1 += p1, m1 += fabs(p1), s2 += p2, m2 += fabs(p2);
            }
            w1 = fmax(w1, fabs(out[l * 8 + i] - s1) / m1), w2 = fmax(w2, fabs(out[l * 8 + 4 + i] - s2) / m2);
        }
    char what[160];
    snprintf(what, sizeof what, "ldmatrix .x4 A with ldmatrix .x2 B^T rows: mma = A B to %.1e", w1);
    tap(w1 < 2e-6, what);
    snprintf(what, sizeof what, "ldmatrix .x4 A with ldmatrix .x2 .trans B rows: mma = A B to %.1e", w2);
    tap(w2 < 2e-6, what);
    cudaFree(da), cudaFree(db), cudaFree(dk), cudaFree(dout);
}

static void test_cp_async(void)
{
    unsigned char src[64], out[256];
    for (int e = 0; e < 64; e++) src[e] = (unsigned char)(e * 7 + 1);
    void *ds = to_dev(src, sizeof src), *dout;
    cudaMalloc(&dout, sizeof out);
    cp_async_kernel<<<1, 32, 64>>>((unsigned char *)dout, (const unsigned char *)ds);
    from_dev(out, dout, sizeof out);
    auto is = [&](const unsigned char *chunk, int what) {  // what: -1 the 0xee fill, 0 zeros, 1 source chunk
        for (int e = 0; e < 16; e++)
            if (chunk[e] != (what < 0 ? 0xee : what == 0 ? 0 : src[(chunk - out) % 64 + e])) return false;
        return true;
    };
    bool done = true;
    for (int snap = 2; snap < 4; snap++)
        done = done && is(out + 64 * snap, 1) && is(out + 64 * snap + 16, 1) && is(out + 64 * snap + 32, 0) &&
               is(out + 64 * snap + 48, -1);
    tap(done, "cp.async: after wait<0> (and, for the other lanes, __syncthreads) the copies and the zero fill landed");
#ifdef SCP_CUDA_EMULATOR
    tap(is(out, -1) && is(out + 16, -1) && is(out + 32, -1),
        "cp.async (emulator): nothing lands before the wait that completes its group");
    tap(is(out + 64, 1) && is(out + 80, -1) && is(out + 96, -1),
        "cp.async (emulator): wait<1> completes the older group only");
#endif
    cudaFree(ds), cudaFree(dout);
}

int main(void)
{
    srand(12345);
    for (int t = 0; t < 4; t++) test_mma(t);
    for (int v = 0; v < 4; v++) test_ldmatrix(v);
    test_product();
    test_cp_async();
    printf("1..%d\n", tap_n);
    return tap_failed;
}
