/* attention_operands.h: the bf16 operands of the tensor-core attention kernels (attention_tc.cu, attention_flash.cu,
 * attention_flash_bwd.cu):
 * q, k, v (and dout) as bf16 rows the kernels stage with 16-byte copies, packed into the backend's scratch where
 * the storage is fp32 or a bf16 row is not 16-byte aligned, the buffers themselves otherwise. */
#ifndef SCP_CUDA_ATTENTION_OPERANDS_H
#define SCP_CUDA_ATTENTION_OPERANDS_H

#include "model/cuda/cuda_internal.h"
#include "model/cuda/warp_mma.h"

#include "model/attn_visibility.h"

namespace {

// dst (64, LDS) = rows r0 .. r0 + 63 of src (bf16, row stride ld elements, HD wide, 16-byte aligned rows), zeros
// past row T: cp.async 16-byte copies in the calling thread's current group, the block's threads in turn. The
// flash kernels' tiles (LDS = HD + padding) are staged this way.
template <int HD, int LDS>
__device__ __forceinline__ void stage_rows_async(bf16 *dst, const bf16 *src, size_t ld, int r0, int T)
{
    constexpr int CH = HD / 8;  // 16-byte chunks per row
    for (int e = threadIdx.x; e < 64 * CH; e += blockDim.x) {
        const int r = e / CH, c = e % CH * 8;
        const bool in = r0 + r < T;
        cp_async_zfill_16(dst + r * LDS + c, src + (size_t)(in ? r0 + r : 0) * ld + c, in);
    }
}

// Whether any pair of queries [i0, i0 + 64) and keys [j0, j0 + 64) is visible under the rule (documents:
// the flash kernels skip a tile of keys, or of queries, that has none): this thread's share of the 64 x 64 pairs,
// for __syncthreads_or. Without documents the kernels' loop bounds already leave out every empty tile.
__device__ __forceinline__ int tile_has_pair(const scp_attn_args &a, int b, int i0, int j0)
{
    int any = 0;
    for (int e = threadIdx.x; e < 64 * 64 && !any; e += blockDim.x) {
        const int i = i0 + e / 64, j = j0 + e % 64;
        any = i < a.T && j < a.T && scp_attn_visible_at(&a, b, i, j);
    }
    return any;
}

// Row strides (elements) of the bf16 operands: q, k and v (the same for k and v), dout.
struct tc_ld {
    int q, k, o;
};

// The bf16 operands the kernels read: q (B T, H hd) and k, v (B T, KV hd) and for the backward dout (B T, H hd),
// packed copies in the backend's scratch (fp32 storage, or bf16 rows not 16-byte aligned) or the buffers
// themselves; and for the backward D (B, H, T) fp32 in the scratch (256-byte aligned pieces).
struct tc_bufs {
    const bf16 *q, *k, *v, *o;
    tc_ld ld;
    float *D;
};
inline size_t round256(size_t n) { return (n + 255) / 256 * 256; }

// Whether bf16 rows (row stride ld elements) at p can be staged in place: 16-byte copies need 16-byte aligned rows.
template <typename T> bool in_place(const T *p, size_t ld)
{
    return sizeof(T) == 2 && (uintptr_t)p % 16 == 0 && ld % 8 == 0;
}

template <typename T>
tc_bufs tc_operands(const T *q, const T *k, const T *v, const T *dout, const scp_attn_args *a)
{
    const size_t rows = (size_t)a->B * a->T, ld = (size_t)a->ld_qkv, qd = (size_t)a->H * a->hd, kd = (size_t)a->KV * a->hd;
    const bool pq = !in_place(q, ld), pk = !in_place(k, ld), pv = !in_place(v, ld), po = dout && !in_place(dout, qd);
    const size_t nD = dout ? (size_t)a->B * a->H * a->T * 4 : 0;
    char *p = (char *)scp_cuda_scratch(round256(pq ? rows * qd * 2 : 0) + round256(pk ? rows * kd * 2 : 0) +
                                       round256(pv ? rows * kd * 2 : 0) + round256(po ? rows * qd * 2 : 0) + round256(nD));
    tc_bufs t;
    bf16 *b;
    // Each operand: packed into the next piece of scratch (row stride its width), or in place (row stride ld).
#define OPERAND(dst, src, pack, width, stride)                                                                 \
    if (pack) {                                                                                                 \
        b = (bf16 *)p, p += round256(rows * (width) * 2);                                                       \
        scp_cuda_pack_bf16<T>(b, src, rows, (int)(width), stride);                                              \
        dst = b;                                                                                                \
    } else                                                                                                      \
        dst = (const bf16 *)(const void *)(src);
    OPERAND(t.q, q, pq, qd, ld)
    OPERAND(t.k, k, pk, kd, ld)
    OPERAND(t.v, v, pv, kd, ld)
    t.o = nullptr;
    if (dout) {
        OPERAND(t.o, dout, po, qd, qd)
    }
#undef OPERAND
    // k and v share one stride in the kernels: both packed or both in place (k and v of one buffer always are).
    if (pk != pv) scp_die("CUDA attention: k and v with different alignments");
    t.ld = tc_ld{pq ? (int)qd : (int)ld, pk ? (int)kd : (int)ld, (int)qd};
    t.D = dout ? (float *)p : nullptr;
    return t;
}

}  // namespace

#endif
