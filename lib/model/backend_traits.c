/* model/backend_traits.c: a backend's traits from its table, or from what the CUDA tables are known to be
 * (model/backend_traits.h). */
#include <string.h>

#include "model/backend_traits.h"
#include "core/error.h"

/* The flash-style CUDA attention keeps one statistic per query row, the log-sum-exp (B, H, T)
 * (lib/model/cuda/backend_cuda.cu attn_state_floats). */
static size_t per_query_row(int B, int H, int T) { return (size_t)B * H * T; }

/* What lib/model/cuda/backend_cuda.cu's cuda_table<T> sets: bf16 storage for "cuda" (alias "cuda-bf16"), fp32 for
 * "cuda-fp32", device memory for both. */
static const struct {
    const char *name, *table;
    size_t act_size;
} cuda_known[] = {{"cuda", "cuda", 2}, {"cuda-bf16", "cuda", 2}, {"cuda-fp32", "cuda-fp32", 4}};

void scp_backend_traits_of(const scp_backend *be, scp_backend_traits *t)
{
    t->name = be->name;
    t->act_size = be->act_size;
    t->host_memory = be->host_memory;
    t->attn_state_floats = be->attn_state_floats;
    t->from_table = 1;
}

int scp_backend_traits_known(const char *name, scp_backend_traits *t)
{
    for (size_t i = 0; i < sizeof cuda_known / sizeof *cuda_known; i++)
        if (strcmp(name, cuda_known[i].name) == 0) {
            t->name = cuda_known[i].table;
            t->act_size = cuda_known[i].act_size;
            t->host_memory = 0;
            t->attn_state_floats = per_query_row;
            t->from_table = 0;
            return 0;
        }
    return -1;
}

int scp_backend_traits_find(const char *name, scp_backend_traits *t)
{
    if (!name) name = "cpu";
    if (scp_backend_check_name(name)) return -1;
    const scp_backend *be = scp_backend_find(name);
    if (be) {
        scp_backend_traits_of(be, t);
        return 0;
    }
    /* A registered name without a table here: a CUDA backend that is not built or whose plugin cannot load. */
    if (scp_backend_traits_known(name, t) == 0) return 0;
    return -1;   /* scp_backend_find's message */
}

static size_t round256(size_t n) { return (n + 255) / 256 * 256; }

size_t scp_backend_scratch_bytes(const scp_backend_traits *t, int B, int T, int H, int KV, int hd)
{
    if (strncmp(t->name, "cuda", 4) != 0) return 0;
    const size_t rows = (size_t)B * T, nq = rows * H * hd * 2, nk = rows * KV * hd * 2, tt = (size_t)H * T * T;
    const int bf16 = t->act_size == 2;
    /* attention_gemm.cu scratch_bytes: bf16 copies of q, k, v, dout (fp32 storage only), the scores S and
     * probabilities P of one sequence, and where H != KV (bf16 storage) an fp32 dK or dV of one sequence. */
    size_t copies = round256(nq) + 2 * round256(nk) + round256(nq);
    size_t gemm_fp32 = copies + round256(tt * 4) + round256(tt * 2);
    int gemm = hd % 16 == 0 && hd <= 128 && T <= 6096 && gemm_fp32 <= ((size_t)2 << 30);
    size_t n;
    if (gemm)
        n = bf16 ? round256(tt * 4) + round256(tt * 2) + (H != KV ? round256((size_t)T * KV * hd * 4) : 0) : gemm_fp32;
    else   /* attention_tc.cu tc_operands: packed operands (fp32 storage) and D (B, H, T) fp32 */
        n = (bf16 ? 0 : copies) + round256(rows * H * 4);
    return ((size_t)32 << 20) + n + n / 4;
}
