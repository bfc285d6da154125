// moe_gemm_cublas.cu: a layer's experts as cuBLAS GEMMs over the permuted token rows, the alternatives to
// moe_gemm.cu's WMMA kernels for the entries moe_gemm_fwd, moe_gemm_bwd_inp and moe_gemm_bwd_w of
// lib/model/backend_ops.def, picked by SCP_CUDA_MOE_GEMM (bench/gpu/moe-gemm.c times the three):
//   own (default)  moe_gemm.cu: one launch per entry, the block offsets read on the device.
//   cublas         fwd and bwd_inp as one cublasGemmGroupedBatchedEx each, a group per distinct row count
//                  (blocks of equal counts share their m, n, k), the empty blocks left out.
//   cublas-loop    one cublasGemmEx per nonempty block: what a plain implementation does.
// cuBLAS takes each group's m, n and k as host integers, so both cuBLAS paths copy off (nb + 1) and woff (nw) to
// the host at every call: a synchronisation with everything queued before it (the router, the permutation, the
// gather), which moe_gemm.cu's kernels do without. The grouped call reads its per-problem A, B and C pointers from
// device memory: they are built on the host from those offsets and go up in one copy into the backend's scratch.
// bench/gpu/moe-gemm.c reports the cost of that round trip beside the GEMMs.
//
// Only the bf16 table ("cuda") has these entries (cuda-fp32 runs its experts on the per-expert fp32 matmuls, see
// backend_cuda.cu), so only bf16 operands are taken: A, B, C bf16 with CUBLAS_COMPUTE_32F, as backend_cuda.cu's
// matmuls on that table.
//
// bwd_w runs one cublasGemmEx per nonempty block on both paths, in block order, each adding into its weight's dw
// with beta 1: the grouped call's type table has no bf16 A and B with an fp32 C (dw is fp32), and blocks b and
// b + nw add into the same dw, which one batched call may not do (its outputs must not overlap).
//
// Row-major to column-major as in backend_cuda.cu's matmuls, block b being rows r0 = off[b] .. off[b + 1] - 1
// (n_b of them) and w_b = w + woff[b % nw] (N, K):
//   fwd:     out_b^T (N, n_b) = w_b^T' (N, K) @ inp_b^T (K, n_b)      op(A) = T, lda K; B ldi; C ldo
//   bwd_inp: dinp_b^T (K, n_b) = w_b' (K, N) @ dout_b^T (N, n_b)      op(A) = N, lda K; B ldo; C ldi
//   bwd_w:   dw_b^T (K, N) += inp_b^T (K, n_b) @ dout_b (n_b, N)      op(B) = T; A ldi, B ldo, C K (fp32)
#include "model/cuda/moe_gemm_cublas.h"

#include <cstdlib>
#include <map>
#include <vector>

namespace {

struct block_rows {
    int r0, n;      // rows r0 .. r0 + n - 1 of the buffers, n > 0
    int64_t woff;   // its weight's element offset
};

// The nonempty blocks, in block order, from off (nb + 1) and woff (nw) in device memory: two synchronising copies.
std::vector<block_rows> blocks_on_host(const int32_t *off, int nb, const int64_t *woff, int nw)
{
    static std::vector<int32_t> h_off;
    static std::vector<int64_t> h_woff;
    h_off.resize((size_t)nb + 1), h_woff.resize((size_t)nw);
    SCP_CUDA(cudaMemcpy(h_off.data(), off, h_off.size() * sizeof(int32_t), cudaMemcpyDeviceToHost));
    SCP_CUDA(cudaMemcpy(h_woff.data(), woff, h_woff.size() * sizeof(int64_t), cudaMemcpyDeviceToHost));
    std::vector<block_rows> blocks;
    for (int b = 0; b < nb; b++)
        if (h_off[b + 1] > h_off[b]) blocks.push_back({h_off[b], h_off[b + 1] - h_off[b], h_woff[b % nw]});
    return blocks;
}

// C_b (m, n_b; ldc) = beta C_b + op(A_b) (m, k) @ B_b (k, n_b) column-major for every nonempty block b, where A_b
// = w_b (lda K), B_b = b_rows + r0 ldb, C_b = c_rows + r0 ldc: fwd and bwd_inp (see the top of the file).
void rows_gemm(scp_cuda_moe_gemm_path path, cublasOperation_t ta, int m, int k, const bf16 *w, int K, const bf16 *b_rows,
               int ldb, bf16 *c_rows, int ldc, const int64_t *woff, int nw, const int32_t *off, int nb, float beta)
{
    const std::vector<block_rows> blocks = blocks_on_host(off, nb, woff, nw);
    if (blocks.empty()) return;
    const float one = 1.0f;
    if (path == SCP_CUDA_MOE_CUBLAS_LOOP) {
        for (const block_rows &bl : blocks)
            SCP_CUBLAS(cublasGemmEx(scp_cuda_blas(), ta, CUBLAS_OP_N, m, bl.n, k, &one, w + bl.woff, CUDA_R_16BF, K,
                                    b_rows + (size_t)bl.r0 * ldb, CUDA_R_16BF, ldb, &beta,
                                    c_rows + (size_t)bl.r0 * ldc, CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
        return;
    }
#if CUBLAS_VERSION < 120500
    scp_die("SCP_CUDA_MOE_GEMM=cublas: cublasGemmGroupedBatchedEx needs cuBLAS 12.5 or later (this build has %d)",
            (int)CUBLAS_VERSION);
#else
    // One group per distinct row count; the problems laid out group after group (A pointers, then B, then C).
    std::map<int, std::vector<const block_rows *>> by_rows;
    for (const block_rows &bl : blocks) by_rows[bl.n].push_back(&bl);
    const int G = (int)by_rows.size(), P = (int)blocks.size();
    std::vector<cublasOperation_t> tas((size_t)G, ta), tbs((size_t)G, CUBLAS_OP_N);
    std::vector<int> ms((size_t)G, m), ns, ks((size_t)G, k), ldas((size_t)G, K), ldbs((size_t)G, ldb),
        ldcs((size_t)G, ldc), sizes;
    std::vector<float> alphas((size_t)G, 1.0f), betas((size_t)G, beta);
    std::vector<void *> ptrs((size_t)3 * P);
    int p = 0;
    for (const auto &group : by_rows) {
        ns.push_back(group.first), sizes.push_back((int)group.second.size());
        for (const block_rows *bl : group.second) {
            ptrs[(size_t)p] = (void *)(w + bl->woff);
            ptrs[(size_t)P + p] = (void *)(b_rows + (size_t)bl->r0 * ldb);
            ptrs[(size_t)2 * P + p] = (void *)(c_rows + (size_t)bl->r0 * ldc);
            p++;
        }
    }
    // (The copy waits for the GEMMs queued before it, which may still read the previous call's pointers there.)
    void **dptrs = (void **)scp_cuda_scratch(ptrs.size() * sizeof(void *));
    SCP_CUDA(cudaMemcpy(dptrs, ptrs.data(), ptrs.size() * sizeof(void *), cudaMemcpyHostToDevice));
    SCP_CUBLAS(cublasGemmGroupedBatchedEx(scp_cuda_blas(), tas.data(), tbs.data(), ms.data(), ns.data(), ks.data(),
                                          alphas.data(), (const void *const *)dptrs, CUDA_R_16BF, ldas.data(),
                                          (const void *const *)(dptrs + P), CUDA_R_16BF, ldbs.data(), betas.data(),
                                          dptrs + 2 * P, CUDA_R_16BF, ldcs.data(), G, sizes.data(),
                                          CUBLAS_COMPUTE_32F));
#endif
}

}  // namespace

scp_cuda_moe_gemm_path scp_cuda_moe_gemm_path_now(void)
{
    const char *e = getenv("SCP_CUDA_MOE_GEMM");
    if (!e || !*e || strcmp(e, "own") == 0) return SCP_CUDA_MOE_OWN;
    if (strcmp(e, "cublas") == 0) return SCP_CUDA_MOE_CUBLAS_GROUPED;
    if (strcmp(e, "cublas-loop") == 0) return SCP_CUDA_MOE_CUBLAS_LOOP;
    scp_die("SCP_CUDA_MOE_GEMM=%s: expected own, cublas or cublas-loop", e);
}

void scp_cuda_moe_gemm_fwd_cublas(scp_cuda_moe_gemm_path path, bf16 *out, int ldo, const bf16 *inp, int ldi,
                                  const bf16 *w, const int64_t *woff, int nw, const int32_t *off, int nb, int R, int K,
                                  int N, float beta)
{
    if (R < 1 || nb < 1 || nw < 1 || N < 1) return;
    rows_gemm(path, CUBLAS_OP_T, N, K, w, K, inp, ldi, out, ldo, woff, nw, off, nb, beta);
}

void scp_cuda_moe_gemm_bwd_inp_cublas(scp_cuda_moe_gemm_path path, bf16 *dinp, int ldi, const bf16 *dout, int ldo,
                                      const bf16 *w, const int64_t *woff, int nw, const int32_t *off, int nb, int R,
                                      int K, int N, float beta)
{
    if (R < 1 || nb < 1 || nw < 1 || K < 1) return;
    rows_gemm(path, CUBLAS_OP_N, K, N, w, K, dout, ldo, dinp, ldi, woff, nw, off, nb, beta);
}

void scp_cuda_moe_gemm_bwd_w_cublas(float *dw, const bf16 *dout, int ldo, const bf16 *inp, int ldi,
                                    const int64_t *woff, int nw, const int32_t *off, int nb, int R, int K, int N)
{
    if (R < 1 || nb < 1 || nw < 1 || N < 1 || K < 1) return;
    const float one = 1.0f;
    for (const block_rows &bl : blocks_on_host(off, nb, woff, nw))
        SCP_CUBLAS(cublasGemmEx(scp_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_T, K, N, bl.n, &one,
                                inp + (size_t)bl.r0 * ldi, CUDA_R_16BF, ldi, dout + (size_t)bl.r0 * ldo, CUDA_R_16BF,
                                ldo, &one, dw + bl.woff, CUDA_R_32F, K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
