// attention_tc.cu: flash attention on the tensor cores (FA2's structure, WMMA 16x16x16 bf16 tiles with fp32
// accumulation), for head sizes HD = 16, 32, ..., 128. Same contract as the fp32 kernels of attention.cu, which
// remain the path for other head sizes: q (B, T, H, HD) and k, v (B, T, KV, HD) are fp32 rows ld apart (GQA:
// query head h reads kv head h / (H / KV)); out, dout (B, T, H, HD) packed; dq, dk, dv overwritten in q, k, v's
// layout; `att` holds lse (B, H, T), the natural log-sum-exp of each query's scaled scores, +inf for a query that
// sees no key (its output and gradients are 0). Visibility: model/attn_visibility.h's rule (causal or not,
// annealed, within documents), evaluated per (query, key) pair where a tile needs it.
//
// Storage: q, k, v, dout, out, dq, dk, dv are of the storage type T (fp32 or bf16, cuda_internal.h); the outputs
// are written as T (rounded to nearest even in bf16).
//
// Arithmetic: in fp32 storage q, k, v (and dout) are first rounded to bf16 into packed copies in the backend's
// scratch (a small pass over the inputs, which halves the bytes every tile then moves and makes staging plain
// 16-byte copies); in bf16 storage the kernels read them in place where every row starts 16-byte aligned (else
// they are copied, packed, the same way);
// scores S, dP, O, dq, dk, dv accumulate in fp32 on the tensor cores; softmax statistics (running max, sum, lse,
// D) are fp32, the exponentials exp2f of log2e-scaled scores. P and dS are rounded to bf16 for the second GEMM
// of each pair.
//
// Tiling (BQ = BK = 64, 4 warps per block, each warp owns 16 rows of the block's 64: one WMMA row of tiles):
//   forward   block = 64 queries of one (b, h); loops over key tiles of 64 (plain causal: only tiles with a key
//             <= the block's last query). Per tile: S = Q K^T (16 x 64 per warp) -> shared -> online softmax by the
//             warp's lanes (2 lanes per row, 32 columns each) -> P (bf16) -> O = O * corr + P V. O (16 x HD per
//             warp) stays in accumulator fragments; its per-row rescale needs the row of each fragment element,
//             which the kernel reads back from a fragment loaded from a 16x16 tile of row numbers (the element
//             layout of a fragment is undocumented; this asks the hardware instead of assuming it).
//   dq        block = 64 queries of one (b, h); two passes over the key tiles. Pass 1: P = exp(S - lse) and
//             dP = dO V^T give D_i = sum_j P_ij dP_ij (= rowsum(dO * O), which needs O, not passed to the
//             backward), stored in a (B, H, T) scratch for the dk/dv kernel. Pass 2: dS = P (dP - D) (bf16),
//             dq += dS K. dq = scale * dq. P, dP and dS are computed elementwise in the accumulator fragments
//             (their rows and columns read back the same way from tiles of row and column numbers); only dS goes
//             to shared memory, as the A operand of the next GEMM.
//   dk/dv     block = 64 keys of one (b, kv head g); loops over every head of g's group and, in it, over the
//             query tiles (plain causal: from the tile holding the block's first key). Per tile, with the warp's 16
//             keys as rows, 16 queries at a time: S^T = K Q^T, dP^T = V dO^T, then in registers P^T =
//             exp(S^T - lse) and dS^T = P^T (dP^T - D) to shared memory (bf16); then dv += P^T dO, dk += dS^T Q.
//             dk = scale * dk.
// Each output element is written by one thread from fragments that summed in a fixed order; no atomics, so the
// result is deterministic.
//
// Shared memory (bf16 tiles have row stride HD + 8 and score rows 64 + 4 / 64 + 8 elements, which keeps WMMA's
// 256-bit alignment and breaks the bank conflicts of power-of-two strides; sizes at HD = 128 / 64):
//   forward  Qs, Ks, Vs (64, HD + 8) bf16 | S (4 warps, 16, 68) f32 | P (4, 16, 72) bf16 | vis (64, 68) u8 |
//            corr (4, 16) f32 | row-number tile (16, 16) f32                                  = 82.5 / 58.5 KiB
//   dq       Qs, dOs, Ks, Vs (64, HD + 8) bf16 | S (4, 16, 68) f32 (the row sums of D) | dS (4, 16, 72) bf16 |
//            vis (64, 68) u8 | D (4, 16) f32 | row- and column-number tiles (2, 16, 16) f32   = 100.5 / 68.5 KiB
//   dk/dv    Ks, Vs, Qs, dOs (64, HD + 8) bf16 | lse, D (64) f32 | P, dS (4, 16, 72) bf16 |
//            vis (64 keys, 68) u8 | row- and column-number tiles (2, 16, 16) f32          = 92.8 / 60.8 KiB
// so two blocks (8 warps) fit on an SM (228 KiB). vis holds the visibility of the tile pair (the rule and the
// bounds), evaluated once by the whole block, and only for tiles that need it: without documents a tile that no
// diagonal or end of the sequence crosses skips it, and a tile with no visible pair (documents that do not meet)
// is skipped altogether; under plain causal attention the tiles above the diagonal are never visited. Rows past
// T are staged as zeros. The output goes out through shared memory (the K/V or Q/dO region, free by then) so
// that global writes are row-contiguous and rows past T are skipped.
#include "model/attn_visibility.h"
#include "model/cuda/attention_tc.h"
#include "model/cuda/attention_operands.h"

#include <cmath>
#include <cuda_bf16.h>
#include <mma.h>

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

namespace {

constexpr int BQ = 64, BK = 64;  // queries per tile, keys per tile (equal: the causal tile bounds rely on it)
constexpr int TCW = 4;           // warps per block, 16 rows each
constexpr int SP = 8;            // bf16 row padding of the (64, HD) tiles
constexpr int LDS = BK + 4;      // fp32 score rows (per warp 16 rows)
constexpr int LDP = BK + 8;      // bf16 P / dS rows
constexpr int MLD = BK + 4;      // uint8 visibility rows
constexpr unsigned FULL = 0xffffffffu;
constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;
static_assert(BQ == BK && BQ == TCW * 16, "one 16-row strip per warp, square tiles");

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;   // B (k, n) = p[k * ld + n]
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBt;  // B (k, n) = p[n * ld + k]
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// Byte offsets of the shared buffers (see the top of the file). Every size is a multiple of 32 bytes.
constexpr size_t tile_bytes(int hd) { return (size_t)64 * (hd + SP) * 2; }
constexpr size_t S_BYTES = (size_t)TCW * 16 * LDS * 4, P_BYTES = (size_t)TCW * 16 * LDP * 2;
constexpr size_t M_BYTES = (size_t)64 * MLD;
template <int HD> struct fwd_smem {
    static constexpr size_t Q = 0, K = Q + tile_bytes(HD), V = K + tile_bytes(HD), S = V + tile_bytes(HD),
                            P = S + S_BYTES, M = P + P_BYTES, C = M + M_BYTES, R = C + TCW * 16 * 4, bytes = R + 256 * 4;
};
template <int HD> struct dq_smem {
    static constexpr size_t Q = 0, O = Q + tile_bytes(HD), K = O + tile_bytes(HD), V = K + tile_bytes(HD),
                            S = V + tile_bytes(HD), P = S + S_BYTES, M = P + P_BYTES, D = M + M_BYTES, R = D + TCW * 16 * 4,
                            bytes = R + 512 * 4;
};
template <int HD> struct dkdv_smem {
    static constexpr size_t K = 0, V = K + tile_bytes(HD), Q = V + tile_bytes(HD), O = Q + tile_bytes(HD),
                            L = O + tile_bytes(HD), D = L + 64 * 4, P = D + 64 * 4, dS = P + P_BYTES, M = dS + P_BYTES,
                            R = M + M_BYTES, bytes = R + 512 * 4;
};
// The sizes the comment at the top and bench/gpu/ptxas-report.sh quote.
static_assert(fwd_smem<128>::bytes == 84480 && dq_smem<128>::bytes == 102912 && dkdv_smem<128>::bytes == 94976,
              "shared memory sizes changed: update the comment at the top and bench/gpu/ptxas-report.sh");
// The output staging (4 warps, 16, HD + 4) f32, 256 (HD + 4) bytes, reuses two adjacent (64, HD + 8) bf16 tiles,
// 256 (HD + 8) bytes (write_rows).

// dst (64, HD + SP) = rows r0 .. r0 + 63 of src (bf16, row stride ld elements, HD wide, 16-byte aligned rows),
// zero past row T: 16-byte copies.
template <int HD>
__device__ __forceinline__ void stage_rows(bf16 *dst, const bf16 *src, size_t ld, int r0, int T)
{
    constexpr int CH = HD / 8;  // 16-byte chunks per row
    for (int e = threadIdx.x; e < 64 * CH; e += blockDim.x) {
        const int r = e / CH, c = e % CH * 8;
        uint4 x = make_uint4(0u, 0u, 0u, 0u);
        if (r0 + r < T) x = *(const uint4 *)(src + (size_t)(r0 + r) * ld + c);
        *(uint4 *)(dst + r * (HD + SP) + c) = x;
    }
}

// vis (64, MLD): vis[r][c] = key j0 + c visible to query i0 + r (scp_attn_visible_at, both < T); transposed
// (vis[c][r]) for the dk/dv kernel, whose rows are keys. Each thread takes 4 adjacent keys of one query. Returns
// whether this thread found a visible pair (for __syncthreads_or).
__device__ __forceinline__ int stage_vis(uint8_t *vis, const scp_attn_args &a, int b, int i0, int j0, bool transpose)
{
    const int T = a.T;
    int any = 0;
    for (int e = threadIdx.x * 4; e < 64 * 64; e += blockDim.x * 4) {
        const int r = e / 64, c = e % 64, i = i0 + r, j = j0 + c;
        uint32_t out = 0;
#pragma unroll
        for (int t = 0; t < 4; t++) {
            const uint32_t v = i < T && j + t < T && scp_attn_visible_at(&a, b, i, j + t);
            out |= v << (8 * t);
            if (transpose) vis[(c + t) * MLD + r] = (uint8_t)v;
        }
        if (!transpose) *(uint32_t *)(vis + r * MLD + c) = out;
        any |= out != 0;
    }
    return any;
}

// rows (16, HD) of a warp's output, held as HD / 16 fragments, written as scale * value to rows r0 .. r0 + 15 of
// dst (row stride ld), skipping rows >= T. stage: the warp's (16, HD + 4) f32 staging buffer.
template <int HD, typename OT>
__device__ __forceinline__ void write_rows(OT *dst, size_t ld, int r0, int T, FragC *f, float *stage, float scale)
{
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int n = 0; n < HD / 16; n++) {
#pragma unroll
        for (int e = 0; e < FragC::num_elements; e++) f[n].x[e] *= scale;
        wmma::store_matrix_sync(stage + n * 16, f[n], HD + 4, wmma::mem_row_major);
    }
    __syncwarp();
    for (int e = lane; e < 16 * HD; e += 32) {
        int r = e / HD, c = e % HD;
        if (r0 + r < T) act_st(dst + (size_t)(r0 + r) * ld + c, stage[r * (HD + 4) + c]);
    }
    __syncwarp();  // the staging buffer is free again
}

// S (16 x 64) = A (16 x HD, rows of As) B^T where B is (64, HD) in Bs, into the warp's Sw; NB column tiles of
// 16 at a time (fewer live accumulators where the caller holds many: A's fragments are then loaded 4 / NB times).
template <int HD, int NB>
__device__ __forceinline__ void scores(float *Sw, const bf16 *As, const bf16 *Bs)
{
    constexpr int LDH = HD + SP;
#pragma unroll
    for (int n0 = 0; n0 < BK / 16; n0 += NB) {
        FragC sf[NB];
#pragma unroll
        for (int n = 0; n < NB; n++) wmma::fill_fragment(sf[n], 0.0f);
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            FragA af;
            wmma::load_matrix_sync(af, As + kk * 16, LDH);
#pragma unroll
            for (int n = 0; n < NB; n++) {
                FragBt bf;
                wmma::load_matrix_sync(bf, Bs + (n0 + n) * 16 * LDH + kk * 16, LDH);
                wmma::mma_sync(sf[n], af, bf, sf[n]);
            }
        }
#pragma unroll
        for (int n = 0; n < NB; n++) wmma::store_matrix_sync(Sw + (n0 + n) * 16, sf[n], LDS, wmma::mem_row_major);
    }
}

// acc[n] += A (16 x 64, bf16 in the warp's Aw) B where B is (64, HD) in Bs.
template <int HD>
__device__ __forceinline__ void accumulate(FragC *acc, const bf16 *Aw, const bf16 *Bs)
{
    constexpr int LDH = HD + SP;
#pragma unroll 1
    for (int kk = 0; kk < BK / 16; kk++) {
        FragA af;
        wmma::load_matrix_sync(af, Aw + kk * 16, LDP);
#pragma unroll
        for (int n = 0; n < HD / 16; n++) {
            FragB bf;
            wmma::load_matrix_sync(bf, Bs + kk * 16 * LDH + n * 16, LDH);
            wmma::mma_sync(acc[n], af, bf, acc[n]);
        }
    }
}

template <typename AT, int HD>
__global__ void __launch_bounds__(TCW * 32, 2) attn_tc_fwd_kernel(AT *out, float *lse, const bf16 *q, const bf16 *k,
                                                                  const bf16 *v, tc_ld lds, scp_attn_args a)
{
    typedef fwd_smem<HD> L;
    constexpr int LDH = HD + SP, NF = HD / 16;
    extern __shared__ float smem[];
    char *sm = (char *)smem;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, rr = lane >> 1, half = lane & 1, w0 = warp * 16;
    bf16 *Qs = (bf16 *)(sm + L::Q), *Ks = (bf16 *)(sm + L::K), *Vs = (bf16 *)(sm + L::V);
    float *Sw = (float *)(sm + L::S) + warp * 16 * LDS, *cw = (float *)(sm + L::C) + warp * 16;
    bf16 *Pw = (bf16 *)(sm + L::P) + warp * 16 * LDP;
    uint8_t *vis = (uint8_t *)(sm + L::M);
    float *rid = (float *)(sm + L::R);
    // Plain causal: the last query tiles have the most keys; they go first, so that the short ones fill the tail.
    const int qt = scp_attn_past_only(&a) ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int T = a.T, b = blockIdx.z, h = blockIdx.y, g = h / (a.H / a.KV), q0 = qt * BQ;
    const size_t ldq = (size_t)lds.q, ldk = (size_t)lds.k;
    const bf16 *kb = k + (size_t)b * T * ldk + (size_t)g * HD, *vb = v + (size_t)b * T * ldk + (size_t)g * HD;
    const float sl2 = a.scale * LOG2E;

    stage_rows<HD>(Qs, q + (size_t)b * T * ldq + (size_t)h * HD, ldq, q0, T);
    for (int e = threadIdx.x; e < 256; e += blockDim.x) rid[e] = (float)(e / 16);
    __syncthreads();
    int rowof[FragC::num_elements];  // the tile row of each accumulator element this thread holds
    {
        FragC rf;
        wmma::load_matrix_sync(rf, rid, 16, wmma::mem_row_major);
#pragma unroll
        for (int e = 0; e < FragC::num_elements; e++) rowof[e] = (int)rf.x[e];
    }
    FragC of[NF];
#pragma unroll
    for (int n = 0; n < NF; n++) wmma::fill_fragment(of[n], 0.0f);
    float m = -INFINITY, l = 0.0f;  // row rr's running max (log2 units) and sum, the same on both lanes of the row
    const int kend = scp_attn_past_only(&a) ? min(T, q0 + BQ) : T;
    for (int j0 = 0; j0 < kend; j0 += BK) {
        __syncthreads();  // the previous tile is consumed
        // full: every pair of the tile visible (no documents, below the diagonal, inside T): no visibility tile
        // needed (annealed attention is causal: its tiles above the diagonal are staged).
        // Otherwise stage it, and skip a tile where no pair is visible (it adds nothing).
        const bool full = !a.doc && j0 + BK <= T && !(a.causal && j0 + BK - 1 > q0);
        if (!full && !__syncthreads_or(stage_vis(vis, a, b, q0, j0, false))) continue;
        stage_rows<HD>(Ks, kb, ldk, j0, T);
        stage_rows<HD>(Vs, vb, ldk, j0, T);
        __syncthreads();
        scores<HD, 4>(Sw, Qs + w0 * LDH, Ks);
        __syncwarp();
        // Online softmax of row rr over columns half, half + 2, ...: fixed order, the pair combined by one xor.
        float s[BK / 2], mx = -INFINITY;
#pragma unroll
        for (int cc = 0; cc < BK / 2; cc++) {
            int c = half + 2 * cc;
            s[cc] = full || vis[(w0 + rr) * MLD + c] ? Sw[rr * LDS + c] * sl2 : -INFINITY;
            mx = fmaxf(mx, s[cc]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(FULL, mx, 1));
        const float mn = fmaxf(m, mx);
        float corr = 1.0f, sum = 0.0f;
        if (mn != -INFINITY) corr = exp2f(m - mn);  // 0 the first time a key is visible
#pragma unroll
        for (int cc = 0; cc < BK / 2; cc++) {
            float p = mn == -INFINITY ? 0.0f : exp2f(s[cc] - mn);
            Pw[rr * LDP + half + 2 * cc] = __float2bfloat16(p);
            sum += p;
        }
        sum += __shfl_xor_sync(FULL, sum, 1);
        l = l * corr + sum, m = mn;
        if (half == 0) cw[rr] = corr;
        __syncwarp();
#pragma unroll
        for (int e = 0; e < FragC::num_elements; e++) {  // the same layout in every fragment: one load per element
            const float c = cw[rowof[e]];
#pragma unroll
            for (int n = 0; n < NF; n++) of[n].x[e] *= c;
        }
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            FragA pf;
            wmma::load_matrix_sync(pf, Pw + kk * 16, LDP);
#pragma unroll
            for (int n = 0; n < NF; n++) {
                FragB vf;
                wmma::load_matrix_sync(vf, Vs + kk * 16 * LDH + n * 16, LDH);
                wmma::mma_sync(of[n], pf, vf, of[n]);
            }
        }
    }
    __syncwarp();  // every lane has read cw
    const int i = q0 + w0 + rr;
    if (half == 0) {
        cw[rr] = l > 0.0f ? 1.0f / l : 0.0f;
        if (i < T) lse[((size_t)b * a.H + h) * T + i] = l > 0.0f ? (m + log2f(l)) * LN2 : INFINITY;
    }
    __syncwarp();
#pragma unroll
    for (int e = 0; e < FragC::num_elements; e++) {
        const float c = cw[rowof[e]];
#pragma unroll
        for (int n = 0; n < NF; n++) of[n].x[e] *= c;
    }
    __syncthreads();  // K and V are consumed: their space stages the output
    write_rows<HD>(out + (size_t)b * T * a.H * HD + (size_t)h * HD, (size_t)a.H * HD, q0 + w0, T, of,
                   (float *)(sm + L::K) + warp * 16 * (HD + 4), 1.0f);
}

// The (row, column) within a 16x16 tile of each accumulator element this thread holds, read back from fragments
// loaded from tiles of row and column numbers (tiles: 512 floats the block filled with fill_index_tiles), so that
// elementwise work can stay in registers without assuming the fragment layout.
__device__ __forceinline__ void fill_index_tiles(float *tiles)
{
    for (int e = threadIdx.x; e < 256; e += blockDim.x) tiles[e] = (float)(e / 16), tiles[256 + e] = (float)(e % 16);
}
__device__ __forceinline__ void fragment_index(int *row, int *col, const float *tiles)
{
    FragC f;
    wmma::load_matrix_sync(f, tiles, 16, wmma::mem_row_major);
#pragma unroll
    for (int e = 0; e < FragC::num_elements; e++) row[e] = (int)f.x[e];
    wmma::load_matrix_sync(f, tiles + 256, 16, wmma::mem_row_major);
#pragma unroll
    for (int e = 0; e < FragC::num_elements; e++) col[e] = (int)f.x[e];
}

// acc[n] (n < BK / 16) = A (16 x HD, rows of As) B^T where B is (64, HD) in Bs: a 16 x 64 tile of scores.
template <int HD>
__device__ __forceinline__ void scores_regs(FragC *acc, const bf16 *As, const bf16 *Bs)
{
    constexpr int LDH = HD + SP;
#pragma unroll
    for (int n = 0; n < BK / 16; n++) wmma::fill_fragment(acc[n], 0.0f);
#pragma unroll 2
    for (int kk = 0; kk < HD / 16; kk++) {
        FragA af;
        wmma::load_matrix_sync(af, As + kk * 16, LDH);
#pragma unroll
        for (int n = 0; n < BK / 16; n++) {
            FragBt bf;
            wmma::load_matrix_sync(bf, Bs + n * 16 * LDH + kk * 16, LDH);
            wmma::mma_sync(acc[n], af, bf, acc[n]);
        }
    }
}

template <typename AT, int HD>
__global__ void __launch_bounds__(TCW * 32, 2) attn_tc_dq_kernel(AT *dq, float *Dbuf, const bf16 *dout, const float *lse,
                                                                 const bf16 *q, const bf16 *k, const bf16 *v, tc_ld lds,
                                                                 scp_attn_args a)
{
    typedef dq_smem<HD> L;
    constexpr int LDH = HD + SP, NF = HD / 16, NE = FragC::num_elements;
    extern __shared__ float smem[];
    char *sm = (char *)smem;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, rr = lane >> 1, half = lane & 1, w0 = warp * 16;
    bf16 *Qs = (bf16 *)(sm + L::Q), *dOs = (bf16 *)(sm + L::O), *Ks = (bf16 *)(sm + L::K), *Vs = (bf16 *)(sm + L::V);
    float *Sw = (float *)(sm + L::S) + warp * 16 * LDS, *Dw = (float *)(sm + L::D) + warp * 16;
    bf16 *dSw = (bf16 *)(sm + L::P) + warp * 16 * LDP;
    uint8_t *vis = (uint8_t *)(sm + L::M);
    // Plain causal: the last query tiles have the most keys; they go first, so that the short ones fill the tail.
    const int qt = scp_attn_past_only(&a) ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int T = a.T, b = blockIdx.z, h = blockIdx.y, g = h / (a.H / a.KV), q0 = qt * BQ;
    const size_t ld = (size_t)a.ld_qkv, ldq = (size_t)lds.q, ldk = (size_t)lds.k, ldo = (size_t)lds.o;
    const bf16 *kb = k + (size_t)b * T * ldk + (size_t)g * HD, *vb = v + (size_t)b * T * ldk + (size_t)g * HD;
    const float sl2 = a.scale * LOG2E;

    stage_rows<HD>(Qs, q + (size_t)b * T * ldq + (size_t)h * HD, ldq, q0, T);
    stage_rows<HD>(dOs, dout + (size_t)b * T * ldo + (size_t)h * HD, ldo, q0, T);
    fill_index_tiles((float *)(sm + L::R));
    __syncthreads();
    int row[NE], col[NE];
    fragment_index(row, col, (const float *)(sm + L::R));
    float L2[NE];  // log2e * lse of each element's query (+inf past T: P = 0 there)
#pragma unroll
    for (int e = 0; e < NE; e++) {
        const int i = q0 + w0 + row[e];
        L2[e] = i < T ? lse[((size_t)b * a.H + h) * T + i] * LOG2E : INFINITY;
    }
    const int kend = scp_attn_past_only(&a) ? min(T, q0 + BQ) : T;
    // P and dP of the tile at j0, elementwise in registers: sf[n] becomes P (0 where not visible).
#define DQ_TILE(sf, pf)                                                                                         \
    scores_regs<HD>(sf, Qs + w0 * LDH, Ks);                                                                     \
    _Pragma("unroll") for (int n = 0; n < BK / 16; n++)                                                         \
        _Pragma("unroll") for (int e = 0; e < NE; e++) {                                                        \
            const bool vs = full || vis[(w0 + row[e]) * MLD + n * 16 + col[e]];                                 \
            sf[n].x[e] = vs ? exp2f(sf[n].x[e] * sl2 - L2[e]) : 0.0f;                                           \
        }                                                                                                       \
    scores_regs<HD>(pf, dOs + w0 * LDH, Vs);

    // Pass 1: D_i = sum_j P_ij dP_ij, summed per element over the key tiles, then along the row in a fixed order.
    float De[NE];
    {
        FragC dpart[BK / 16];
#pragma unroll
        for (int n = 0; n < BK / 16; n++) wmma::fill_fragment(dpart[n], 0.0f);
        for (int j0 = 0; j0 < kend; j0 += BK) {
            __syncthreads();
            const bool full = !a.doc && j0 + BK <= T && !(a.causal && j0 + BK - 1 > q0);  // as in the forward
            if (!full && !__syncthreads_or(stage_vis(vis, a, b, q0, j0, false))) continue;
            stage_rows<HD>(Ks, kb, ldk, j0, T);
            stage_rows<HD>(Vs, vb, ldk, j0, T);
            __syncthreads();
            FragC sf[BK / 16], pf[BK / 16];
            DQ_TILE(sf, pf)
#pragma unroll
            for (int n = 0; n < BK / 16; n++)
#pragma unroll
                for (int e = 0; e < NE; e++) dpart[n].x[e] += sf[n].x[e] * pf[n].x[e];
        }
#pragma unroll
        for (int n = 0; n < BK / 16; n++) wmma::store_matrix_sync(Sw + n * 16, dpart[n], LDS, wmma::mem_row_major);
        __syncwarp();
        float d = 0.0f;
#pragma unroll
        for (int cc = 0; cc < BK / 2; cc++) d += Sw[rr * LDS + half + 2 * cc];
        d += __shfl_xor_sync(FULL, d, 1);
        const int i = q0 + w0 + rr;
        if (half == 0) {
            Dw[rr] = d;
            if (i < T) Dbuf[((size_t)b * a.H + h) * T + i] = d;
        }
        __syncwarp();
#pragma unroll
        for (int e = 0; e < NE; e++) De[e] = Dw[row[e]];
    }
    // Pass 2: dS = P (dP - D) to shared memory as bf16 (the next GEMM's A operand), dq += dS K.
    FragC dqf[NF];
#pragma unroll
    for (int n = 0; n < NF; n++) wmma::fill_fragment(dqf[n], 0.0f);
    for (int j0 = 0; j0 < kend; j0 += BK) {
        __syncthreads();
        const bool full = !a.doc && j0 + BK <= T && !(a.causal && j0 + BK - 1 > q0);
        if (!full && !__syncthreads_or(stage_vis(vis, a, b, q0, j0, false))) continue;
        stage_rows<HD>(Ks, kb, ldk, j0, T);
        stage_rows<HD>(Vs, vb, ldk, j0, T);
        __syncthreads();
        {
            FragC sf[BK / 16], pf[BK / 16];
            DQ_TILE(sf, pf)
#pragma unroll
            for (int n = 0; n < BK / 16; n++)
#pragma unroll
                for (int e = 0; e < NE; e++)
                    dSw[row[e] * LDP + n * 16 + col[e]] = __float2bfloat16(sf[n].x[e] * (pf[n].x[e] - De[e]));
        }
        __syncwarp();
        accumulate<HD>(dqf, dSw, Ks);
    }
#undef DQ_TILE
    __syncthreads();  // K and V are consumed: their space stages the output
    write_rows<HD>(dq + (size_t)b * T * ld + (size_t)h * HD, ld, q0 + w0, T, dqf,
                   (float *)(sm + L::K) + warp * 16 * (HD + 4), a.scale);
}

template <typename AT, int HD>
__global__ void __launch_bounds__(TCW * 32, 2) attn_tc_dkdv_kernel(AT *dk, AT *dv, const bf16 *dout, const float *lse,
                                                                   const float *Dbuf, const bf16 *q, const bf16 *k,
                                                                   const bf16 *v, tc_ld lds, scp_attn_args a)
{
    typedef dkdv_smem<HD> L;
    constexpr int LDH = HD + SP, NF = HD / 16, NE = FragC::num_elements;
    extern __shared__ float smem[];
    char *sm = (char *)smem;
    const int warp = threadIdx.x >> 5, w0 = warp * 16;
    bf16 *Ks = (bf16 *)(sm + L::K), *Vs = (bf16 *)(sm + L::V), *Qs = (bf16 *)(sm + L::Q), *dOs = (bf16 *)(sm + L::O);
    float *Ls = (float *)(sm + L::L), *Ds = (float *)(sm + L::D);
    bf16 *Pw = (bf16 *)(sm + L::P) + warp * 16 * LDP, *dSw = (bf16 *)(sm + L::dS) + warp * 16 * LDP;
    uint8_t *vis = (uint8_t *)(sm + L::M);
    const int T = a.T, b = blockIdx.z, g = blockIdx.y, rep = a.H / a.KV, k0 = blockIdx.x * BK;
    const size_t ld = (size_t)a.ld_qkv, ldq = (size_t)lds.q, ldk = (size_t)lds.k, ldo = (size_t)lds.o;
    const float sl2 = a.scale * LOG2E;

    stage_rows<HD>(Ks, k + (size_t)b * T * ldk + (size_t)g * HD, ldk, k0, T);
    stage_rows<HD>(Vs, v + (size_t)b * T * ldk + (size_t)g * HD, ldk, k0, T);
    fill_index_tiles((float *)(sm + L::R));
    __syncthreads();
    int row[NE], col[NE];
    fragment_index(row, col, (const float *)(sm + L::R));
    FragC dkf[NF], dvf[NF];
#pragma unroll
    for (int n = 0; n < NF; n++) wmma::fill_fragment(dkf[n], 0.0f), wmma::fill_fragment(dvf[n], 0.0f);
    // Under plain causal attention no query before k0 sees these keys: start at the query tile holding k0 (BQ == BK).
    const int istart = scp_attn_past_only(&a) ? k0 : 0;
    for (int hh = 0; hh < rep; hh++) {
        const int h = g * rep + hh;
        for (int i0 = istart; i0 < T; i0 += BQ) {
            __syncthreads();
            // full: no documents and every query of the tile at or after every key (queries past T have lse = +inf,
            // hence P = 0; keys past T only reach dk, dv rows that are not written).
            const bool full = !a.doc && !(a.causal && k0 + BK - 1 > i0);
            if (!full && !__syncthreads_or(stage_vis(vis, a, b, i0, k0, true))) continue;
            stage_rows<HD>(Qs, q + (size_t)b * T * ldq + (size_t)h * HD, ldq, i0, T);
            stage_rows<HD>(dOs, dout + (size_t)b * T * ldo + (size_t)h * HD, ldo, i0, T);
            if ((int)threadIdx.x < BQ) {
                int i = i0 + threadIdx.x;
                size_t o = ((size_t)b * a.H + h) * T + i;
                Ls[threadIdx.x] = i < T ? lse[o] * LOG2E : INFINITY;
                Ds[threadIdx.x] = i < T ? Dbuf[o] : 0.0f;
            }
            __syncthreads();
            // 16 queries at a time: S^T = K Q^T and dP^T = V dO^T (rows: the warp's keys), then elementwise in
            // registers P^T = exp(S^T - lse) and dS^T = P^T (dP^T - D), both to shared memory as bf16.
#pragma unroll 1
            for (int n = 0; n < BQ / 16; n++) {
                FragC sf, pf;
                wmma::fill_fragment(sf, 0.0f);
                wmma::fill_fragment(pf, 0.0f);
#pragma unroll
                for (int kk = 0; kk < NF; kk++) {
                    FragA ka, va;
                    FragBt qb, ob;
                    wmma::load_matrix_sync(ka, Ks + w0 * LDH + kk * 16, LDH);
                    wmma::load_matrix_sync(qb, Qs + n * 16 * LDH + kk * 16, LDH);
                    wmma::mma_sync(sf, ka, qb, sf);
                    wmma::load_matrix_sync(va, Vs + w0 * LDH + kk * 16, LDH);
                    wmma::load_matrix_sync(ob, dOs + n * 16 * LDH + kk * 16, LDH);
                    wmma::mma_sync(pf, va, ob, pf);
                }
#pragma unroll
                for (int e = 0; e < NE; e++) {
                    const int c = n * 16 + col[e], o = row[e] * LDP + c;
                    const bool vs = full || vis[(w0 + row[e]) * MLD + c];
                    const float p = vs ? exp2f(sf.x[e] * sl2 - Ls[c]) : 0.0f;
                    Pw[o] = __float2bfloat16(p);
                    dSw[o] = __float2bfloat16(p * (pf.x[e] - Ds[c]));
                }
            }
            __syncwarp();
            accumulate<HD>(dvf, Pw, dOs);
            accumulate<HD>(dkf, dSw, Qs);
        }
    }
    __syncthreads();  // Q and dO are consumed: their space stages the output
    float *stage = (float *)(sm + L::Q) + warp * 16 * (HD + 4);
    write_rows<HD>(dk + (size_t)b * T * ld + (size_t)g * HD, ld, k0 + w0, T, dkf, stage, a.scale);
    write_rows<HD>(dv + (size_t)b * T * ld + (size_t)g * HD, ld, k0 + w0, T, dvf, stage, 1.0f);
}



template <typename T, int HD>
void fwd(T *out, float *lse, const T *q, const T *k, const T *v, const scp_attn_args *a)
{
    const tc_bufs t = tc_operands<T>(q, k, v, nullptr, a);
    const size_t sm = fwd_smem<HD>::bytes;
    dim3 grid((unsigned)((a->T + BQ - 1) / BQ), (unsigned)a->H, (unsigned)a->B);
    auto kern = attn_tc_fwd_kernel<T, HD>;
    smem_optin(kern, sm);
    kern<<<grid, TCW * 32, sm>>>(out, lse, t.q, t.k, t.v, t.ld, *a);
    SCP_LAUNCHED();
}

template <typename T, int HD>
void bwd(T *dq, T *dk, T *dv, const T *dout, const float *lse, const T *q, const T *k, const T *v, const scp_attn_args *a)
{
    const tc_bufs t = tc_operands<T>(q, k, v, dout, a);
    const size_t sq = dq_smem<HD>::bytes, sk = dkdv_smem<HD>::bytes;
    dim3 gq((unsigned)((a->T + BQ - 1) / BQ), (unsigned)a->H, (unsigned)a->B);
    auto kq = attn_tc_dq_kernel<T, HD>;
    smem_optin(kq, sq);
    kq<<<gq, TCW * 32, sq>>>(dq, t.D, t.o, lse, t.q, t.k, t.v, t.ld, *a);
    SCP_LAUNCHED();
    dim3 gk((unsigned)((a->T + BK - 1) / BK), (unsigned)a->KV, (unsigned)a->B);
    auto kkv = attn_tc_dkdv_kernel<T, HD>;
    smem_optin(kkv, sk);
    kkv<<<gk, TCW * 32, sk>>>(dk, dv, t.o, lse, t.D, t.q, t.k, t.v, t.ld, *a);
    SCP_LAUNCHED();
}

}  // namespace

#define TC_DISPATCH(F, hd, ...)                                                                                 \
    switch (hd) {                                                                                               \
    case 16: F<T, 16>(__VA_ARGS__); break;                                                                      \
    case 32: F<T, 32>(__VA_ARGS__); break;                                                                      \
    case 48: F<T, 48>(__VA_ARGS__); break;                                                                      \
    case 64: F<T, 64>(__VA_ARGS__); break;                                                                      \
    case 80: F<T, 80>(__VA_ARGS__); break;                                                                      \
    case 96: F<T, 96>(__VA_ARGS__); break;                                                                      \
    case 112: F<T, 112>(__VA_ARGS__); break;                                                                    \
    case 128: F<T, 128>(__VA_ARGS__); break;                                                                    \
    default: scp_die("CUDA attention: no tensor-core kernel for head size %d", hd);                             \
    }

template <typename T>
void scp_cuda_attn_tc_fwd(T *out, float *lse, const T *q, const T *k, const T *v, const scp_attn_args *a)
{
    if (a->B == 0 || a->T == 0) return;
    TC_DISPATCH(fwd, a->hd, out, lse, q, k, v, a);
}

template <typename T>
void scp_cuda_attn_tc_bwd(T *dq, T *dk, T *dv, const T *dout, const float *lse, const T *q, const T *k, const T *v,
                          const scp_attn_args *a)
{
    if (a->B == 0 || a->T == 0) return;
    TC_DISPATCH(bwd, a->hd, dq, dk, dv, dout, lse, q, k, v, a);
}

template void scp_cuda_attn_tc_fwd<float>(float *, float *, const float *, const float *, const float *,
                                          const scp_attn_args *);
template void scp_cuda_attn_tc_fwd<bf16>(bf16 *, float *, const bf16 *, const bf16 *, const bf16 *, const scp_attn_args *);
template void scp_cuda_attn_tc_bwd<float>(float *, float *, float *, const float *, const float *, const float *,
                                          const float *, const float *, const scp_attn_args *);
template void scp_cuda_attn_tc_bwd<bf16>(bf16 *, bf16 *, bf16 *, const bf16 *, const float *, const bf16 *, const bf16 *,
                                         const bf16 *, const scp_attn_args *);
