// attention_decode.cu: attention of one new query against the first n rows of a key/value cache (incremental
// causal decoding, lib/model/backend.h attention_decode). One warp per query head: the scores of the n keys into fp32
// scratch (H, n), their max and sum by the warp's butterfly (a fixed order), then each lane sums its output
// columns over the keys in key order. Latency-bound by nature (H warps for one token), and deterministic.
#include "model/cuda/cuda_internal.h"

// q (H hd); key j of kv head g at k + j ld + g hd, its value at v + j ld + g hd; out (H hd); s (H, n) scratch.
template <typename T>
__global__ void attn_decode_kernel(T *out, const T *q, const T *k, const T *v, float *s, int n, int H, int KV, int hd,
                                   int ld, float scale)
{
    const int h = blockIdx.x, lane = threadIdx.x;
    const T *qh = q + (size_t)h * hd;
    const size_t kh = (size_t)(h / (H / KV)) * hd;
    float *sh = s + (size_t)h * n;
    float mx = -INFINITY;
    for (int j = lane; j < n; j += 32) {
        const T *kr = k + (size_t)j * ld + kh;
        float d = 0.0f;
        for (int c = 0; c < hd; c++) d += act_ld(qh + c) * act_ld(kr + c);
        sh[j] = d * scale;
        mx = fmaxf(mx, sh[j]);
    }
    mx = scp_warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < n; j += 32) {
        const float e = expf(sh[j] - mx);
        sh[j] = e;
        sum += e;
    }
    sum = scp_warp_sum(sum);
    __syncwarp();   // every lane's exponentials in s before any lane reads them all
    for (int c = lane; c < hd; c += 32) {
        float o = 0.0f;
        for (int j = 0; j < n; j++) o += sh[j] * act_ld(v + (size_t)j * ld + kh + c);
        act_st(out + (size_t)h * hd + c, o / sum);
    }
}

template <typename T>
void scp_cuda_attention_decode(T *out, const T *q, const T *k, const T *v, int n, int H, int KV, int hd, int ld,
                               float scale)
{
    if (H == 0 || n == 0) return;
    float *s = (float *)scp_cuda_scratch((size_t)H * n * sizeof(float));
    auto kern = attn_decode_kernel<T>;
    kern<<<(unsigned)H, 32>>>(out, q, k, v, s, n, H, KV, hd, ld, scale);
    SCP_LAUNCHED();
}

template void scp_cuda_attention_decode<float>(float *, const float *, const float *, const float *, int, int, int, int,
                                               int, float);
template void scp_cuda_attention_decode<bf16>(bf16 *, const bf16 *, const bf16 *, const bf16 *, int, int, int, int,
                                              int, float);
