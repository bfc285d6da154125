/* moe_gemm.c: the CPU backends' permutation by expert and grouped expert GEMMs (SCP_BACKEND_CAP_MOE_GROUPED,
 * model/backend_ops.def). Host memory holds the shapes, so a grouped GEMM is a table's own matmul entry, block
 * after block in block order: the calls, and so the bits, of the driver's per-expert loop without the capability
 * (lib/model/moe.c). A device backend does each in one launch (lib/model/cuda/moe_gemm.cu), which keeps the
 * experts' shapes off the host there. */
#include <stdlib.h>

#include "model/cpu/cpu.h"
#include "core/error.h"

/* The counting sort: counts per expert, their prefix sums, then each assignment in order to the next free place
 * of its expert's run. */
void scp_cpu_moe_permute(int32_t *off, int32_t *pos, int32_t *tok, const int32_t *idx, int M, int k, int E)
{
    const int N = M * k;
    int32_t *next = scp_xmalloc((size_t)(E > 0 ? E : 1) * sizeof *next);   /* (E) next free place of each run */
    for (int e = 0; e <= E; e++) off[e] = 0;
    for (int i = 0; i < N; i++) off[1 + ((unsigned)idx[i] < (unsigned)E ? idx[i] : 0)]++;
    for (int e = 0; e < E; e++) off[e + 1] += off[e], next[e] = off[e];
    for (int i = 0; i < N; i++) {
        int p = next[(unsigned)idx[i] < (unsigned)E ? idx[i] : 0]++;
        pos[i] = p;
        tok[p] = i / k;
    }
    free(next);
}

/* Element n of an array of act_size-byte elements. */
static scp_act *at(const scp_act *p, size_t act_size, size_t n)
{
    return (scp_act *)(void *)((char *)(void *)(uintptr_t)p + n * act_size);
}

void scp_cpu_moe_gemm_fwd(scp_cpu_matmul_fwd_fn *mm, size_t as, scp_act *out, int ldo, const scp_act *inp, int ldi,
                          const scp_act *w, const int64_t *woff, int nw, const int32_t *off, int nb, int K, int N,
                          float beta)
{
    for (int b = 0; b < nb; b++)
        if (off[b + 1] > off[b])
            mm(at(out, as, (size_t)off[b] * ldo), ldo, at(inp, as, (size_t)off[b] * ldi), ldi,
               at(w, as, (size_t)woff[b % nw]), NULL, off[b + 1] - off[b], K, N, beta);
}

void scp_cpu_moe_gemm_bwd_inp(scp_cpu_matmul_bwd_inp_fn *mm, size_t as, scp_act *dinp, int ldi, const scp_act *dout,
                              int ldo, const scp_act *w, const int64_t *woff, int nw, const int32_t *off, int nb, int K,
                              int N, float beta)
{
    for (int b = 0; b < nb; b++)
        if (off[b + 1] > off[b])
            mm(at(dinp, as, (size_t)off[b] * ldi), ldi, at(dout, as, (size_t)off[b] * ldo), ldo,
               at(w, as, (size_t)woff[b % nw]), off[b + 1] - off[b], K, N, beta);
}

void scp_cpu_moe_gemm_bwd_w(scp_cpu_matmul_bwd_w_fn *mm, size_t as, float *dw, const scp_act *dout, int ldo,
                            const scp_act *inp, int ldi, const int64_t *woff, int nw, const int32_t *off, int nb, int K,
                            int N)
{
    for (int b = 0; b < nb; b++)
        if (off[b + 1] > off[b])
            mm(dw + woff[b % nw], NULL, at(dout, as, (size_t)off[b] * ldo), ldo, at(inp, as, (size_t)off[b] * ldi), ldi,
               off[b + 1] - off[b], K, N);
}
