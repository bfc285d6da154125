// attention_flash_bwd.cu: the attention backward in FlashAttention-2's structure on mma.sync m16n8k16 tensor-core
// instructions (bf16 operands, fp32 accumulation; warp_mma.h), for head sizes HD = 16, 32, ..., 128. Contract of
// scp_cuda_attention_bwd: q (B, T, H, HD) and k, v (B, T, KV, HD) rows ld_qkv apart (GQA: query head h reads kv
// head h / (H / KV)); out, dout (B, T, H, HD) packed; dq, dk, dv overwritten in q, k, v's layout; `att` holds the
// forward's lse (B, H, T), natural log, +inf for a query that sees no key (its P row is 0: it adds nothing and
// its gradients are 0). Visibility: causal, documents and annealing (model/attn_visibility.h's rule, evaluated
// per element where a tile needs it).
//
// Arithmetic: the operands are bf16 (attention_operands.h: packed copies in fp32 storage, the buffers in place
// in bf16 storage where rows are 16-byte aligned). D_i = rowsum(dout_i * out_i)
// comes from the forward's output (one warp per row, fp32), not from a recomputation of P. Per tile,
// P = exp2(S scale log2e - lse log2e) and dS = P (dP - D) in fp32, rounded to bf16 as the A operand of the next
// product; dq, dk, dv accumulate in fp32 registers and are scaled by `scale` (dq, dk) once at the end.
//
// Register layouts (warp_mma.h): a warp's 16 x 16 score tile is two m16n8 accumulators s[0], s[1] (columns 0-7
// and 8-15); thread (g = lane / 4, t = lane % 4) holds rows g and g + 8, columns 2t, 2t + 1 of each. That is the
// A-operand layout of one k16 step: a = {pack(s[0][0..1]), pack(s[0][2..3]), pack(s[1][0..1]), pack(s[1][2..3])},
// so P and dS go from the accumulators to the next mma without shared memory, and every element's row and
// column are known, which the visibility rule and lse / D lookups need.
//
// Tiling (4 warps per block, each owns 16 of the block's 64 rows; streamed tiles of 64 rows, taken 16 at a time):
//   dk/dv  block = 64 keys of one (b, kv head g); loops over the heads of g's group and, in each, over the query
//          tiles (causal without annealing: from the tile holding the block's first key). Per 16 queries:
//          S^T = K Q^T and dP^T = V dO^T (16 keys x 16 queries per warp, k over HD), P^T and dS^T in registers,
//          dv += P^T dO and dk += dS^T Q (dO, Q read as B operands by ldmatrix.trans). dk, dv: 2 (16 x HD) fp32
//          per warp, 2 HD / 8 x 4 registers per thread (128 at HD = 128).
//   dq     block = 64 queries of one (b, h); loops over the key tiles (causal without annealing: up to the
//          block's last query). Per 16 keys: S = Q K^T, dP = dO V^T, dS in registers, dq += dS K. FA2 adds dq
//          with atomics from the dk/dv kernel; here it is a kernel of its own, which recomputes S and dP (7
//          (T, T, HD) products in all where FA2 has 5) and keeps every sum in a fixed order.
// The owned rows' fragments (K, V; Q, dO) are read again from shared memory by ldmatrix for every 16 streamed
// rows rather than held in registers: at HD = 128 they would take 64 more registers beside the 128 of dk, dv.
// Each output element is written once, by the thread that summed it in a fixed order: no atomics,
// deterministic, bitwise repeatable.
//
// Pipeline: the streamed tiles (Q, dO, lse, D, document ids; or K, V, document ids) are double-buffered: the
// next visited tile's cp.async copies are issued before the current one is computed on. A tile with no visible
// pair is skipped before it is loaded: under causal attention without annealing by the loop bounds, with
// documents by a block-wide test of the tile's pairs (__syncthreads_or). A tile that is wholly visible (no
// documents, and bidirectional or wholly at or below the diagonal, and for dq all keys < T) skips the
// per-element rule; rows past T are staged as zeros, and their lse = +inf makes their P 0.
//
// Shared memory per block: bf16 tiles (64, HD + 8) (row stride 2 HD + 16 bytes: the 8 rows of an ldmatrix fall
// in 8 distinct 16-byte bank groups, and every row is 16-byte aligned for cp.async):
//   dk/dv  K, V, 2 x (Q, dO) | 2 x (lse, D, document id) (64) fp32 / int32   = 6 tiles + 1.5 KiB = 103.5 / 55.5 KiB
//   dq     Q, dO, 2 x (K, V) | 2 x document id (64) int32                     = 6 tiles + 0.5 KiB = 102.5 / 54.5 KiB
// at HD = 128 / 64, so two blocks (8 warps) fit on an SM (228 KiB).
#include "model/cuda/attention_flash_bwd.h"

#include "model/attn_visibility.h"
#include "model/cuda/attention_operands.h"
#include "model/cuda/warp_mma.h"

#include <cmath>

namespace {

constexpr int BR = 64;  // rows a block owns (keys in dk/dv, queries in dq)
constexpr int BC = 64;  // rows of a streamed tile (equal to BR: the causal tile bounds rely on it)
constexpr int NW = 4;   // warps per block, 16 owned rows each
constexpr int PAD = 8;  // bf16 padding of the (64, HD) tiles' rows
constexpr unsigned FULL = 0xffffffffu;
constexpr float LOG2E = 1.4426950408889634f;
static_assert(BR == BC && BR == NW * 16 && BR == 64, "one 16-row strip per warp, square tiles of tile_has_pair's size");

constexpr size_t tile_bytes(int hd) { return (size_t)BR * (hd + PAD) * 2; }
template <int HD> struct dkdv_smem {
    static constexpr size_t K = 0, V = K + tile_bytes(HD), Q = V + tile_bytes(HD), O = Q + 2 * tile_bytes(HD),
                            L = O + 2 * tile_bytes(HD), D = L + 2 * BC * 4, DOC = D + 2 * BC * 4,
                            bytes = DOC + 2 * BC * 4;
};
template <int HD> struct dq_smem {
    static constexpr size_t Q = 0, O = Q + tile_bytes(HD), K = O + tile_bytes(HD), V = K + 2 * tile_bytes(HD),
                            DOC = V + 2 * tile_bytes(HD), bytes = DOC + 2 * BC * 4;
};
// The sizes the comment at the top quotes.
static_assert(dkdv_smem<128>::bytes == 105984 && dq_smem<128>::bytes == 104960 && dkdv_smem<64>::bytes == 56832,
              "shared memory sizes changed: update the comment at the top");

// Key j visible to query i (both < T), with their document ids at hand (read only with a.doc) and the sequence's
// annealing key (scp_attn_anneal_key(a.anneal_seed, b), computed once per block).
__device__ __forceinline__ bool pair_visible(const scp_attn_args &a, uint64_t anneal_key, int i, int j, int32_t doc_i,
                                             int32_t doc_j)
{
    if (i >= a.T || j >= a.T) return false;
    if (a.doc && !scp_attn_doc_visible(doc_i, doc_j, i, j)) return false;
    return !a.causal || j <= i || (a.anneal_thresh && scp_attn_anneal_visible_keyed(anneal_key, a.anneal_thresh, i, j));
}

// s (16 x 16 as two m16n8 accumulators) = A B^T, A the warp's 16 rows at As and B 16 rows at Bs, both (., HD)
// bf16 rows HD + PAD apart: the HD / 16 k-steps in order. B's rows are the B operand's columns (".col"), so both
// are read by plain ldmatrix: A's four 8x8 matrices are (rows 0-7, 8-15) x (k 0-7, 8-15) in a[0..3]'s order;
// B's are (columns 0-7: k 0-7, k 8-15), (columns 8-15: k 0-7, k 8-15), the b pairs of s[0] and s[1].
template <int HD>
__device__ __forceinline__ void warp_scores(float s[2][4], const bf16 *As, const bf16 *Bs, int lane)
{
    constexpr int LDH = HD + PAD;
    const bf16 *ap = As + (lane % 16) * LDH + lane / 16 * 8;
    const bf16 *bp = Bs + (lane / 16 * 8 + lane % 8) * LDH + lane / 8 % 2 * 8;
#pragma unroll
    for (int n = 0; n < 2; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) s[n][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t af[4], bf[4];
        ldmatrix_x4(af, ap + kk * 16);
        ldmatrix_x4(bf, bp + kk * 16);
        mma_m16n8k16_bf16(s[0], af, bf);
        mma_m16n8k16_bf16(s[1], af, bf + 2);
    }
}

// acc (16 x HD as HD / 8 m16n8 accumulators) += A B, A (16 x 16) in registers (a: the A-operand layout) and B
// the 16 rows (k) x HD at Bs, rows HD + PAD apart. B (k, n) is row-major in shared memory, the transpose of what
// the ".col" operand wants: ldmatrix.trans, four 8x8 matrices (k 0-7, 8-15) x (n 0-7, 8-15) per 16 columns.
template <int HD>
__device__ __forceinline__ void warp_accumulate(float acc[HD / 8][4], const uint32_t a[4], const bf16 *Bs, int lane)
{
    constexpr int LDH = HD + PAD;
    const bf16 *bp = Bs + (lane % 16) * LDH + lane / 16 * 8;
#pragma unroll
    for (int np = 0; np < HD / 16; np++) {
        uint32_t bf[4];
        ldmatrix_x4_trans(bf, bp + np * 16);
        mma_m16n8k16_bf16(acc[2 * np], a, bf);
        mma_m16n8k16_bf16(acc[2 * np + 1], a, bf + 2);
    }
}

// rows r0 + g and r0 + g + 8 of dst (row stride ld, HD columns from dst's start) = scale * acc, the thread's
// elements (columns 8n + 2t, 8n + 2t + 1), skipping rows >= T.
template <int HD, typename AT>
__device__ __forceinline__ void write_rows(AT *dst, size_t ld, int r0, int T, const float acc[HD / 8][4], float scale,
                                           int lane)
{
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int r = r0 + g + 8 * hr;
        if (r >= T) continue;
        AT *row = dst + (size_t)r * ld + 2 * t;
#pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            act_st(row + 8 * n, scale * acc[n][2 * hr]);
            act_st(row + 8 * n + 1, scale * acc[n][2 * hr + 1]);
        }
    }
}

// D (B, H, T) = rowsum(dout * out) over each (b, i, h) row of HD elements; one warp per row, a fixed order of
// sums (lane-strided, then a butterfly whose lane-0 result is the one stored).
template <typename AT>
__global__ void __launch_bounds__(NW * 32) flash_rowdot_kernel(float *D, const AT *dout, const AT *out, int B, int T,
                                                              int H, int hd)
{
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t rows = (size_t)B * T * H;
    for (size_t r = (size_t)blockIdx.x * NW + warp; r < rows; r += (size_t)gridDim.x * NW) {
        const AT *o = out + r * hd, *d = dout + r * hd;
        float s = 0.0f;
        for (int c = lane; c < hd; c += 32) s += act_ld(o + c) * act_ld(d + c);
#pragma unroll
        for (int m = 16; m; m >>= 1) s += __shfl_xor_sync(FULL, s, m);
        if (lane == 0) {
            const size_t bi = r / H, h = r % H, b = bi / T, i = bi % T;
            D[(b * H + h) * T + i] = s;
        }
    }
}

template <typename AT, int HD>
__global__ void __launch_bounds__(NW * 32, 2) flash_dkdv_kernel(AT *dk, AT *dv, const bf16 *q, const bf16 *k,
                                                                const bf16 *v, const bf16 *dout, const float *lse,
                                                                const float *Dbuf, tc_ld lds, scp_attn_args a)
{
    typedef dkdv_smem<HD> L;
    constexpr int LDH = HD + PAD, NT = HD / 8;
    extern __shared__ float smem[];
    char *sm = (char *)smem;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane / 4, t = lane % 4;
    const int T = a.T, b = blockIdx.z, kvh = blockIdx.y, rep = a.H / a.KV, k0 = blockIdx.x * BR;
    const size_t ld = (size_t)a.ld_qkv, ldq = (size_t)lds.q, ldk = (size_t)lds.k, ldo = (size_t)lds.o;
    const float sl2 = a.scale * LOG2E;
    const uint64_t akey = scp_attn_anneal_key(a.anneal_seed, b);
    const bf16 *Ks = (const bf16 *)(sm + L::K) + warp * 16 * LDH, *Vs = (const bf16 *)(sm + L::V) + warp * 16 * LDH;
    const int kr = k0 + warp * 16 + g;  // the key of the thread's rows g (and kr + 8: g + 8)

    stage_rows_async<HD, LDH>((bf16 *)(sm + L::K), k + (size_t)b * T * ldk + (size_t)kvh * HD, ldk, k0, T);
    stage_rows_async<HD, LDH>((bf16 *)(sm + L::V), v + (size_t)b * T * ldk + (size_t)kvh * HD, ldk, k0, T);
    int32_t kdoc[2] = {0, 0};
    if (a.doc)
        for (int hr = 0; hr < 2; hr++) kdoc[hr] = kr + 8 * hr < T ? a.doc[(size_t)b * T + kr + 8 * hr] : -1;
    // Under causal attention without annealing no query before k0 sees these keys: start at the query tile
    // holding k0 (BQ == BK). Visit index x: head kvh * rep + x / ntiles, query tile istart + x % ntiles * BC.
    const int istart = scp_attn_past_only(&a) ? k0 : 0, ntiles = (T - istart + BC - 1) / BC, end = rep * ntiles;
    auto visited = [&](int x) {  // the first visit index >= x whose tile has a visible pair (block-uniform)
        for (; x < end; x++)
            if (!a.doc || __syncthreads_or(tile_has_pair(a, b, istart + x % ntiles * BC, k0))) break;
        return x;
    };
    auto issue = [&](int x, int buf) {  // the copies of visit x into buffer buf
        const int h = kvh * rep + x / ntiles, i0 = istart + x % ntiles * BC;
        stage_rows_async<HD, LDH>((bf16 *)(sm + L::Q) + buf * BR * LDH,
                                  q + (size_t)b * T * ldq + (size_t)h * HD, ldq, i0, T);
        stage_rows_async<HD, LDH>((bf16 *)(sm + L::O) + buf * BR * LDH,
                                  dout + (size_t)b * T * ldo + (size_t)h * HD, ldo, i0, T);
        if ((int)threadIdx.x < BC) {
            const int c = threadIdx.x, i = i0 + c;
            const size_t o = ((size_t)b * a.H + h) * T + i;
            ((float *)(sm + L::L))[buf * BC + c] = i < T ? lse[o] * LOG2E : INFINITY;
            ((float *)(sm + L::D))[buf * BC + c] = i < T ? Dbuf[o] : 0.0f;
            if (a.doc) ((int32_t *)(sm + L::DOC))[buf * BC + c] = i < T ? a.doc[(size_t)b * T + i] : -1;
        }
    };

    float dka[NT][4], dva[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[n][e] = dva[n][e] = 0.0f;
    int x = visited(0), buf = 0;
    if (x < end) issue(x, 0);
    cp_async_commit();  // K, V and the first tile
    while (x < end) {
        const int nx = visited(x + 1);
        if (nx < end) issue(nx, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();  // every group but the one just committed: tile x is here
        __syncthreads();
        const int i0 = istart + x % ntiles * BC;
        const bf16 *Qs = (const bf16 *)(sm + L::Q) + buf * BR * LDH, *Os = (const bf16 *)(sm + L::O) + buf * BR * LDH;
        const float *Ls = (const float *)(sm + L::L) + buf * BC, *Ds = (const float *)(sm + L::D) + buf * BC;
        const int32_t *qdoc = (const int32_t *)(sm + L::DOC) + buf * BC;
        // Every pair visible: no documents, and bidirectional or every query at or after every key.
        const bool full = !a.doc && (!a.causal || i0 >= k0 + BR - 1);
#pragma unroll 1
        for (int qs = 0; qs < BC / 16; qs++) {
            float st[2][4], dpt[2][4];  // S^T and dP^T: rows the warp's keys, columns queries qs * 16 ..
            warp_scores<HD>(st, Ks, Qs + qs * 16 * LDH, lane);
            warp_scores<HD>(dpt, Vs, Os + qs * 16 * LDH, lane);
            uint32_t pa[4], dsa[4];  // P^T, dS^T as A operands (the layout at the top)
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int hr = 0; hr < 2; hr++) {
                    float p[2], ds[2];
#pragma unroll
                    for (int c2 = 0; c2 < 2; c2++) {
                        const int e = 2 * hr + c2, c = qs * 16 + 8 * n + 2 * t + c2;
                        const bool vis =
                            full || pair_visible(a, akey, i0 + c, kr + 8 * hr, a.doc ? qdoc[c] : 0, kdoc[hr]);
                        p[c2] = vis ? exp2f(st[n][e] * sl2 - Ls[c]) : 0.0f;
                        ds[c2] = p[c2] * (dpt[n][e] - Ds[c]);
                    }
                    pa[2 * n + hr] = pack_bf16x2(p[0], p[1]);
                    dsa[2 * n + hr] = pack_bf16x2(ds[0], ds[1]);
                }
            warp_accumulate<HD>(dva, pa, Os + qs * 16 * LDH, lane);
            warp_accumulate<HD>(dka, dsa, Qs + qs * 16 * LDH, lane);
        }
        __syncthreads();  // buffer buf is consumed: the next iteration's copies may overwrite it
        x = nx, buf ^= 1;
    }
    cp_async_wait<0>();  // no copy in flight at exit (K and V when no tile was visited)
    const size_t base = (size_t)b * T * ld + (size_t)kvh * HD;
    write_rows<HD>(dk + base, ld, k0 + warp * 16, T, dka, a.scale, lane);
    write_rows<HD>(dv + base, ld, k0 + warp * 16, T, dva, 1.0f, lane);
}

template <typename AT, int HD>
__global__ void __launch_bounds__(NW * 32, 2) flash_dq_kernel(AT *dq, const bf16 *q, const bf16 *k, const bf16 *v,
                                                              const bf16 *dout, const float *lse, const float *Dbuf,
                                                              tc_ld lds, scp_attn_args a)
{
    typedef dq_smem<HD> L;
    constexpr int LDH = HD + PAD, NT = HD / 8;
    extern __shared__ float smem[];
    char *sm = (char *)smem;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane / 4, t = lane % 4;
    // Causal: the last query tiles have the most keys; they go first, so that the short ones fill the tail.
    const int qt = a.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int T = a.T, b = blockIdx.z, h = blockIdx.y, kvh = h / (a.H / a.KV), q0 = qt * BR;
    const size_t ld = (size_t)a.ld_qkv, ldq = (size_t)lds.q, ldk = (size_t)lds.k, ldo = (size_t)lds.o;
    const float sl2 = a.scale * LOG2E;
    const uint64_t akey = scp_attn_anneal_key(a.anneal_seed, b);
    const bf16 *Qs = (const bf16 *)(sm + L::Q) + warp * 16 * LDH, *Os = (const bf16 *)(sm + L::O) + warp * 16 * LDH;
    const int qr = q0 + warp * 16 + g;  // the query of the thread's rows g (and qr + 8: g + 8)

    stage_rows_async<HD, LDH>((bf16 *)(sm + L::Q), q + (size_t)b * T * ldq + (size_t)h * HD, ldq, q0, T);
    stage_rows_async<HD, LDH>((bf16 *)(sm + L::O), dout + (size_t)b * T * ldo + (size_t)h * HD, ldo, q0, T);
    float L2[2], Dr[2];  // log2e lse (+inf past T: P = 0 there) and D of the thread's two rows
    int32_t qdoc[2] = {0, 0};
    for (int hr = 0; hr < 2; hr++) {
        const int i = qr + 8 * hr;
        const size_t o = ((size_t)b * a.H + h) * T + i;
        L2[hr] = i < T ? lse[o] * LOG2E : INFINITY;
        Dr[hr] = i < T ? Dbuf[o] : 0.0f;
        if (a.doc) qdoc[hr] = i < T ? a.doc[(size_t)b * T + i] : -1;
    }
    // Causal without annealing: no key after the block's last query is visible.
    const int kend = scp_attn_past_only(&a) ? min(T, q0 + BR) : T, end = (kend + BC - 1) / BC;
    auto visited = [&](int x) {  // the first key tile >= x with a visible pair (block-uniform)
        for (; x < end; x++)
            if (!a.doc || __syncthreads_or(tile_has_pair(a, b, q0, x * BC))) break;
        return x;
    };
    auto issue = [&](int x, int buf) {
        const int j0 = x * BC;
        stage_rows_async<HD, LDH>((bf16 *)(sm + L::K) + buf * BC * LDH,
                                  k + (size_t)b * T * ldk + (size_t)kvh * HD, ldk, j0, T);
        stage_rows_async<HD, LDH>((bf16 *)(sm + L::V) + buf * BC * LDH,
                                  v + (size_t)b * T * ldk + (size_t)kvh * HD, ldk, j0, T);
        if (a.doc && (int)threadIdx.x < BC) {
            const int j = j0 + threadIdx.x;
            ((int32_t *)(sm + L::DOC))[buf * BC + threadIdx.x] = j < T ? a.doc[(size_t)b * T + j] : -1;
        }
    };

    float dqa[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dqa[n][e] = 0.0f;
    int x = visited(0), buf = 0;
    if (x < end) issue(x, 0);
    cp_async_commit();  // Q, dO and the first tile
    while (x < end) {
        const int nx = visited(x + 1);
        if (nx < end) issue(nx, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const int j0 = x * BC;
        const bf16 *Ks = (const bf16 *)(sm + L::K) + buf * BC * LDH, *Vs = (const bf16 *)(sm + L::V) + buf * BC * LDH;
        const int32_t *kdoc = (const int32_t *)(sm + L::DOC) + buf * BC;
        // Every pair visible: no documents, every key < T, and bidirectional or every key at or before every query.
        const bool full = !a.doc && j0 + BC <= T && (!a.causal || j0 + BC - 1 <= q0);
#pragma unroll 1
        for (int ks = 0; ks < BC / 16; ks++) {
            float s[2][4], dp[2][4];  // S and dP: rows the warp's queries, columns keys ks * 16 ..
            warp_scores<HD>(s, Qs, Ks + ks * 16 * LDH, lane);
            warp_scores<HD>(dp, Os, Vs + ks * 16 * LDH, lane);
            uint32_t dsa[4];
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int hr = 0; hr < 2; hr++) {
                    float ds[2];
#pragma unroll
                    for (int c2 = 0; c2 < 2; c2++) {
                        const int e = 2 * hr + c2, c = ks * 16 + 8 * n + 2 * t + c2;
                        const bool vis =
                            full || pair_visible(a, akey, qr + 8 * hr, j0 + c, qdoc[hr], a.doc ? kdoc[c] : 0);
                        const float p = vis ? exp2f(s[n][e] * sl2 - L2[hr]) : 0.0f;
                        ds[c2] = p * (dp[n][e] - Dr[hr]);
                    }
                    dsa[2 * n + hr] = pack_bf16x2(ds[0], ds[1]);
                }
            warp_accumulate<HD>(dqa, dsa, Ks + ks * 16 * LDH, lane);
        }
        __syncthreads();
        x = nx, buf ^= 1;
    }
    cp_async_wait<0>();
    write_rows<HD>(dq + (size_t)b * T * ld + (size_t)h * HD, ld, q0 + warp * 16, T, dqa, a.scale, lane);
}

template <typename T, int HD>
void bwd(T *dq, T *dk, T *dv, const T *dout, const T *out, const float *lse, const T *q, const T *k, const T *v,
         const scp_attn_args *a)
{
    const tc_bufs o = tc_operands<T>(q, k, v, dout, a);
    const size_t rows = (size_t)a->B * a->T * a->H;
    {
        auto kern = flash_rowdot_kernel<T>;
        kern<<<scp_cuda_blocks(rows, NW), NW * 32>>>(o.D, dout, out, a->B, a->T, a->H, HD);
        SCP_LAUNCHED();
    }
    {
        const size_t sm = dkdv_smem<HD>::bytes;
        dim3 grid((unsigned)((a->T + BR - 1) / BR), (unsigned)a->KV, (unsigned)a->B);
        auto kern = flash_dkdv_kernel<T, HD>;
        smem_optin(kern, sm);
        kern<<<grid, NW * 32, sm>>>(dk, dv, o.q, o.k, o.v, o.o, lse, o.D, o.ld, *a);
        SCP_LAUNCHED();
    }
    {
        const size_t sm = dq_smem<HD>::bytes;
        dim3 grid((unsigned)((a->T + BR - 1) / BR), (unsigned)a->H, (unsigned)a->B);
        auto kern = flash_dq_kernel<T, HD>;
        smem_optin(kern, sm);
        kern<<<grid, NW * 32, sm>>>(dq, o.q, o.k, o.v, o.o, lse, o.D, o.ld, *a);
        SCP_LAUNCHED();
    }
}

}  // namespace

template <typename T>
void scp_cuda_attn_flash_bwd(T *dq, T *dk, T *dv, const T *dout, const T *out, const float *lse, const T *q,
                             const T *k, const T *v, const scp_attn_args *a)
{
    if (a->B == 0 || a->T == 0) return;
    switch (a->hd) {
    case 16: bwd<T, 16>(dq, dk, dv, dout, out, lse, q, k, v, a); break;
    case 32: bwd<T, 32>(dq, dk, dv, dout, out, lse, q, k, v, a); break;
    case 48: bwd<T, 48>(dq, dk, dv, dout, out, lse, q, k, v, a); break;
    case 64: bwd<T, 64>(dq, dk, dv, dout, out, lse, q, k, v, a); break;
    case 80: bwd<T, 80>(dq, dk, dv, dout, out, lse, q, k, v, a); break;
    case 96: bwd<T, 96>(dq, dk, dv, dout, out, lse, q, k, v, a); break;
    case 112: bwd<T, 112>(dq, dk, dv, dout, out, lse, q, k, v, a); break;
    case 128: bwd<T, 128>(dq, dk, dv, dout, out, lse, q, k, v, a); break;
    default: scp_die("CUDA attention: no flash backward for head size %d", a->hd);
    }
}

template void scp_cuda_attn_flash_bwd<float>(float *, float *, float *, const float *, const float *, const float *,
                                             const float *, const float *, const float *, const scp_attn_args *);
template void scp_cuda_attn_flash_bwd<bf16>(bf16 *, bf16 *, bf16 *, const bf16 *, const bf16 *, const float *,
                                            const bf16 *, const bf16 *, const bf16 *, const scp_attn_args *);
