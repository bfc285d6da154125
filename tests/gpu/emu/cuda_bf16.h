/* cuda_bf16.h (emulator): __nv_bfloat16 as its 16 bits, with the conversions lib/model/cuda/ uses. float -> bf16
 * rounds to nearest, ties to even (as __float2bfloat16 does on the GPU); NaN stays a (quiet) NaN; bf16 -> float
 * is exact. So the emulator sees the same rounding of the tensor-core operands as the GPU. */
#ifndef SCP_EMU_CUDA_BF16_H
#define SCP_EMU_CUDA_BF16_H
#include <cstdint>
#include <cstring>

struct alignas(2) __nv_bfloat16 {
    uint16_t x;
};
struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

static inline __nv_bfloat16 __float2bfloat16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u)
        r.x = (uint16_t)((u >> 16) | 0x40);  /* NaN: keep it a NaN */
    else
        r.x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return r;
}
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
static inline float __bfloat162float(__nv_bfloat16 h)
{
    uint32_t u = (uint32_t)h.x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b)
{
    return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)};
}
#endif
