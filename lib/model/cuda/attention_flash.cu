// attention_flash.cu: the attention forward in FlashAttention-2's structure on mma.m16n8k16 (warp_mma.h: bf16
// operands, fp32 accumulation), for head sizes HD = 16, 32, ..., 128. Same contract as attention.cu's kernels:
// q (B, T, H, HD) and k, v (B, T, KV, HD) rows ld apart (GQA: query head h reads kv head h / (H / KV)); out
// (B, T, H, HD) packed, of the storage type T (fp32 or bf16, rounded to nearest even); `att` holds lse (B, H, T),
// the natural log-sum-exp of each query's scaled scores, +inf for a query that sees no key (its output is 0), as
// the backward kernels of attention_tc.cu and attention.cu expect. Visibility: model/attn_visibility.h's rule from
// causal, doc and anneal.
//
// Operands: q, k, v as bf16 rows (attention_operands.h: packed copies of fp32 storage, bf16 storage in place
// where rows are 16-byte aligned). Scores and O accumulate in fp32 on the tensor cores; the softmax statistics
// (running max and sum, lse) are fp32, the exponentials exp2f of log2e-scaled scores; P is rounded to bf16 for
// the P V product, its row sums are taken before the rounding.
//
// Tiling: a block of 4 warps takes BQ = 64 queries of one (b, h), each warp 16 rows; it streams the keys in tiles
// of BK = 64 (causal without anneal: only tiles with a key <= the block's last query; the causal blocks run the
// longest first, so that the short ones fill the tail; with documents only the tiles where a query of the block
// sees a key, as the backward kernels do). Per warp and key tile:
//   S (16 x 64) = Q K^T   Q's fragments loaded once (ldmatrix.x4) and kept in registers for the whole loop; K
//                         by ldmatrix.x4 without .trans (K's rows are S's columns: the col-major B operand);
//                         8 n8 tiles of 4 fp32 per lane: lane (g = lane / 4, t = lane % 4) holds rows g and
//                         g + 8, columns 8 n + 2t, 2t + 1 of every tile;
//   online softmax        in those registers: row max and sum over the 4 lanes of a row (shfl_xor 1, 2),
//                         O's rows rescaled by exp2(m_old - m_new);
//   O (16 x HD) += P V    P packed to bf16 straight from S's registers (the accumulators of n8 tiles 2k and
//                         2k + 1 are, element for element, the A fragment of k16 step k); V by ldmatrix.x4.trans.
// Nothing of S or P goes through shared memory, and no fragment's layout is asked of the hardware: the PTX ISA
// documents them (warp_mma.h).
//
// Pipeline: K and V tiles are double-buffered: the copies of tile n + 1 (cp.async, 16 bytes each, rows past T
// zero-filled) are issued before the math of tile n and waited for after it, so that the loads overlap the
// tensor cores. Visibility: a tile that is wholly visible to a warp (no documents, keys all < T, and
// bidirectional or every key at or below the warp's first query) takes no per-element check; else each element
// is tested with the rule, the keys' document ids staged in shared memory beside the tile's K and V, those of a
// lane's two query rows in registers.
//
// Shared memory (bf16 rows of HD + 8 elements: 16-byte aligned for ldmatrix and cp.async, and the 8 rows an
// ldmatrix phase reads fall in distinct banks):
//   Q (64, HD + 8) | K 2 x (64, HD + 8) | V 2 x (64, HD + 8) bf16 | doc ids 2 x 64 int32  = 85.5 / 45.5 KiB
// at HD = 128 / 64, so two blocks (8 warps) fit on an SM (228 KiB). BQ = 64 over 4 warps rather than 128 over 8:
// a lane holds Q (32 registers at HD = 128), O (64) and S (32), 202 to 210 registers in all (no spills,
// bench/RESULTS.md), so the register file holds 8 warps per SM either way; 64-query blocks give the causal tail a
// finer grain. The output goes out through shared memory (the K buffers, free after the loop): each warp writes
// its rows from the accumulator layout, then copies them row-contiguously (16-byte stores where out is 16-byte
// aligned), skipping rows past T.
//
// Every output element and lse is written by one thread from sums in a fixed order; no atomics: deterministic.
#include "model/cuda/attention_flash.h"
#include "model/cuda/attention_operands.h"
#include "model/cuda/warp_mma.h"

#include <cmath>
#include <cuda_bf16.h>

#include "model/attn_visibility.h"

namespace {

constexpr int FW = 4;          // warps per block
constexpr int BQ = 16 * FW;    // queries per block: 16 rows per warp
constexpr int BK = 64;         // keys per tile
constexpr int PAD = 8;         // bf16 elements of row padding
constexpr unsigned FULL = 0xffffffffu;
constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;

// Byte offsets of the shared buffers (see the top of the file); every piece a multiple of 16 bytes.
template <int HD> struct flash_smem {
    static constexpr size_t tile = (size_t)BK * (HD + PAD) * 2;
    static constexpr size_t Q = 0, K = Q + (size_t)BQ * (HD + PAD) * 2, V = K + 2 * tile, DOC = V + 2 * tile,
                            bytes = DOC + 2 * BK * 4;
};
static_assert(flash_smem<128>::bytes == 87552 && flash_smem<64>::bytes == 46592,
              "shared memory sizes changed: update the comment at the top");

// Whether query i sees key j (model/attn_visibility.h's rule): doc_i is the query's document id, doc_j the
// key's (both unread without documents); anneal_key the sequence's scp_attn_anneal_key.
__device__ __forceinline__ bool visible(const scp_attn_args &a, uint64_t anneal_key, int i, int j, int32_t doc_i,
                                        int32_t doc_j)
{
    if (j >= a.T) return false;
    if (a.doc && !scp_attn_doc_visible(doc_i, doc_j, i, j)) return false;
    if (!a.causal || j <= i) return true;
    return a.anneal_thresh && scp_attn_anneal_visible_keyed(anneal_key, a.anneal_thresh, i, j);
}

template <typename AT, int HD>
__global__ void __launch_bounds__(FW * 32, 2) attn_flash_fwd_kernel(AT *out, float *lse, const bf16 *q, const bf16 *k,
                                                                    const bf16 *v, tc_ld lds, int vec_out,
                                                                    scp_attn_args a)
{
    typedef flash_smem<HD> L;
    constexpr int LDH = HD + PAD, KS = HD / 16, NO = HD / 8;  // k16 steps of Q K^T, n8 tiles of O
    extern __shared__ float smem[];
    char *sm = (char *)smem;
    bf16 *Qs = (bf16 *)(sm + L::Q), *Ks = (bf16 *)(sm + L::K), *Vs = (bf16 *)(sm + L::V);
    int32_t *docs = (int32_t *)(sm + L::DOC);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int qt = a.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int T = a.T, b = blockIdx.z, h = blockIdx.y, kvh = h / (a.H / a.KV), q0 = qt * BQ, wq = q0 + warp * 16;
    const size_t ldq = (size_t)lds.q, ldk = (size_t)lds.k;
    const bf16 *kb = k + (size_t)b * T * ldk + (size_t)kvh * HD, *vb = v + (size_t)b * T * ldk + (size_t)kvh * HD;
    const float sl2 = a.scale * LOG2E;
    const int kend = scp_attn_past_only(&a) ? min(T, q0 + BQ) : T, ntiles = (kend + BK - 1) / BK;
    const uint64_t akey = scp_attn_anneal_key(a.anneal_seed, b);
    const int32_t *docb = a.doc ? a.doc + (size_t)b * T : nullptr;
    // this lane's two query rows, wq + g and wq + g + 8, and their document ids
    const int qi[2] = {wq + g, wq + g + 8};
    int32_t qdoc[2] = {0, 0};
    if (docb)
        for (int r = 0; r < 2; r++) qdoc[r] = qi[r] < T ? docb[qi[r]] : -1;

    // Key tile n into buffer st: K, V and the keys' document ids (-1 past T).
    auto load_tile = [&](int n, int st) {
        const int j0 = n * BK;
        stage_rows_async<HD, LDH>(Ks + st * BK * LDH, kb, ldk, j0, T);
        stage_rows_async<HD, LDH>(Vs + st * BK * LDH, vb, ldk, j0, T);
        if (docb)
            for (int e = threadIdx.x; e < BK; e += blockDim.x) docs[st * BK + e] = j0 + e < T ? docb[j0 + e] : -1;
    };
    // The first key tile >= n that holds a pair the block's queries see (block-uniform): with documents the
    // tiles of other documents are skipped, every tile otherwise.
    auto visited = [&](int n) {
        for (; n < ntiles; n++)
            if (!docb || __syncthreads_or(tile_has_pair(a, b, q0, n * BK))) break;
        return n;
    };
    stage_rows_async<HD, LDH>(Qs, q + (size_t)b * T * ldq + (size_t)h * HD, ldq, q0, T);
    int n = visited(0), st = 0;
    if (n < ntiles) load_tile(n, 0);
    cp_async_commit();

    uint32_t qf[KS][4];
    float o[NO][4];
#pragma unroll
    for (int n = 0; n < NO; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    // per row (g, g + 8): running max (log2 units; the same on the row's 4 lanes) and this lane's part of the sum
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const bool active = wq < T;  // warp-uniform: a warp whose rows all lie past T only keeps the barriers

    for (bool first = true; n < ntiles; first = false) {
        const int j0 = n * BK, next = visited(n + 1);
        if (next < ntiles) {
            load_tile(next, st ^ 1);  // into the other buffer, free since the __syncthreads that ended the last tile
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();  // tile n (and, the first time, Q) has landed for every thread
        if (active) {
            const bf16 *Kt = Ks + st * BK * LDH, *Vt = Vs + st * BK * LDH;
            if (first) {
#pragma unroll
                for (int kk = 0; kk < KS; kk++)
                    ldmatrix_x4(qf[kk], Qs + (warp * 16 + lane % 16) * LDH + kk * 16 + lane / 16 * 8);
            }
            // S = Q K^T: per k16 step, pairs of n8 tiles (keys 16 p .. 16 p + 15) from one ldmatrix.x4 of K:
            // matrices (keys 0-7, dims 0-7), (keys 0-7, dims 8-15), (keys 8-15, dims 0-7), (keys 8-15, dims 8-15).
            float s[BK / 8][4];
#pragma unroll
            for (int c = 0; c < BK / 8; c++) s[c][0] = s[c][1] = s[c][2] = s[c][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KS; kk++)
#pragma unroll
                for (int p = 0; p < BK / 16; p++) {
                    uint32_t kf[4];
                    ldmatrix_x4(kf, Kt + (p * 16 + lane / 16 * 8 + lane % 8) * LDH + kk * 16 + (lane / 8) % 2 * 8);
                    const uint32_t b0[2] = {kf[0], kf[1]}, b1[2] = {kf[2], kf[3]};
                    mma_m16n8k16_bf16(s[2 * p], qf[kk], b0);
                    mma_m16n8k16_bf16(s[2 * p + 1], qf[kk], b1);
                }
            // Scale to log2 units; hide what this warp's rows do not see, unless the whole tile is visible to them.
            const bool full = !docb && j0 + BK <= T && (!a.causal || j0 + BK - 1 <= wq);
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int c = 0; c < BK / 8; c++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int r = e >> 1, j = j0 + c * 8 + 2 * t + (e & 1);
                    float x = s[c][e] * sl2;
                    const int32_t kdoc = docb ? docs[st * BK + (j - j0)] : 0;
                    if (!full && !visible(a, akey, qi[r], j, qdoc[r], kdoc)) x = -INFINITY;
                    s[c][e] = x;
                    mx[r] = fmaxf(mx[r], x);
                }
            float corr[2], mref[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(FULL, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(FULL, mx[r], 2));
                const float mn = fmaxf(m[r], mx[r]);
                // Nothing visible yet: the exponentials below are all 0 and nothing is rescaled.
                corr[r] = mn == -INFINITY ? 1.0f : exp2f(m[r] - mn);  // 0 the first time a key is visible
                mref[r] = mn == -INFINITY ? 0.0f : mn;
                m[r] = mn;
            }
            float sum[2] = {0.0f, 0.0f};
#pragma unroll
            for (int c = 0; c < BK / 8; c++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float p = exp2f(s[c][e] - mref[e >> 1]);
                    s[c][e] = p;
                    sum[e >> 1] += p;
                }
#pragma unroll
            for (int r = 0; r < 2; r++) l[r] = l[r] * corr[r] + sum[r];
#pragma unroll
            for (int d = 0; d < NO; d++) o[d][0] *= corr[0], o[d][1] *= corr[0], o[d][2] *= corr[1], o[d][3] *= corr[1];
            // O += P V: k16 step kk is S's n8 tiles 2 kk and 2 kk + 1; V by ldmatrix.x4.trans, matrices (keys 0-7,
            // dims 0-7), (keys 8-15, dims 0-7), (keys 0-7, dims 8-15), (keys 8-15, dims 8-15): two n8 tiles of O.
#pragma unroll
            for (int kk = 0; kk < BK / 16; kk++) {
                const int c0 = 2 * kk, c1 = 2 * kk + 1;
                const uint32_t pf[4] = {pack_bf16x2(s[c0][0], s[c0][1]), pack_bf16x2(s[c0][2], s[c0][3]),
                                        pack_bf16x2(s[c1][0], s[c1][1]), pack_bf16x2(s[c1][2], s[c1][3])};
#pragma unroll
                for (int dp = 0; dp < HD / 16; dp++) {
                    uint32_t vf[4];
                    const int key = kk * 16 + (lane / 8) % 2 * 8 + lane % 8;
                    ldmatrix_x4_trans(vf, Vt + key * LDH + dp * 16 + lane / 16 * 8);
                    const uint32_t b0[2] = {vf[0], vf[1]}, b1[2] = {vf[2], vf[3]};
                    mma_m16n8k16_bf16(o[2 * dp], pf, b0);
                    mma_m16n8k16_bf16(o[2 * dp + 1], pf, b1);
                }
            }
        }
        __syncthreads();  // every warp is done with buffer st before the copies of the tile after next overwrite it
        n = next, st ^= 1;
    }
    cp_async_wait<0>();  // Q, where no tile was visited

    // The row sums over the row's 4 lanes (a fixed butterfly), then lse and 1 / l.
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(FULL, l[r], 1);
        l[r] += __shfl_xor_sync(FULL, l[r], 2);
        inv[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        if (t == 0 && qi[r] < T)
            lse[((size_t)b * a.H + h) * T + qi[r]] = l[r] > 0.0f ? (m[r] + log2f(l[r])) * LN2 : INFINITY;
    }
    if (!active) return;  // no barrier follows
    // The warp's 16 rows through its part of the K buffers (free: the loop ended with a __syncthreads):
    // (16, HD + 16 / sizeof(AT)) elements of AT, rows 16-byte aligned.
    constexpr int LDO = HD + 16 / (int)sizeof(AT);
    static_assert((size_t)BQ * LDO * sizeof(AT) <= 2 * flash_smem<HD>::tile, "the output staging fits the K buffers");
    AT *stage = (AT *)(sm + L::K) + (size_t)warp * 16 * LDO;
#pragma unroll
    for (int d = 0; d < NO; d++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = e >> 1;
            act_st(stage + (g + 8 * r) * LDO + d * 8 + 2 * t + (e & 1), o[d][e] * inv[r]);
        }
    __syncwarp();
    AT *ob = out + ((size_t)b * T * a.H + h) * HD;
    const size_t ldo = (size_t)a.H * HD;
    if (vec_out) {
        constexpr int CH = HD * (int)sizeof(AT) / 16, PER = 16 / (int)sizeof(AT);  // 16-byte chunks per row
        for (int e = lane; e < 16 * CH; e += 32) {
            const int r = e / CH, c = e % CH * PER;
            if (wq + r < T) *(uint4 *)(ob + (size_t)(wq + r) * ldo + c) = *(const uint4 *)(stage + r * LDO + c);
        }
    } else {
        for (int e = lane; e < 16 * HD; e += 32) {
            const int r = e / HD, c = e % HD;
            if (wq + r < T) ob[(size_t)(wq + r) * ldo + c] = stage[r * LDO + c];
        }
    }
}

template <typename T, int HD>
void fwd(T *out, float *lse, const T *q, const T *k, const T *v, const scp_attn_args *a)
{
    const tc_bufs t = tc_operands<T>(q, k, v, nullptr, a);
    const size_t sm = flash_smem<HD>::bytes;
    dim3 grid((unsigned)((a->T + BQ - 1) / BQ), (unsigned)a->H, (unsigned)a->B);
    auto kern = attn_flash_fwd_kernel<T, HD>;
    smem_optin(kern, sm);
    kern<<<grid, FW * 32, sm>>>(out, lse, t.q, t.k, t.v, t.ld, (uintptr_t)out % 16 == 0, *a);
    SCP_LAUNCHED();
}

}  // namespace

template <typename T>
void scp_cuda_attn_flash_fwd(T *out, float *lse, const T *q, const T *k, const T *v, const scp_attn_args *a)
{
    if (a->B == 0 || a->T == 0) return;
    switch (a->hd) {
    case 16: fwd<T, 16>(out, lse, q, k, v, a); break;
    case 32: fwd<T, 32>(out, lse, q, k, v, a); break;
    case 48: fwd<T, 48>(out, lse, q, k, v, a); break;
    case 64: fwd<T, 64>(out, lse, q, k, v, a); break;
    case 80: fwd<T, 80>(out, lse, q, k, v, a); break;
    case 96: fwd<T, 96>(out, lse, q, k, v, a); break;
    case 112: fwd<T, 112>(out, lse, q, k, v, a); break;
    case 128: fwd<T, 128>(out, lse, q, k, v, a); break;
    default: scp_die("CUDA flash attention: no kernel for head size %d", a->hd);
    }
}

template void scp_cuda_attn_flash_fwd<float>(float *, float *, const float *, const float *, const float *,
                                             const scp_attn_args *);
template void scp_cuda_attn_flash_fwd<bf16>(bf16 *, float *, const bf16 *, const bf16 *, const bf16 *,
                                            const scp_attn_args *);
