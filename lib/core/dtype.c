/* core/dtype.c: dtype table and half-precision conversions. */
#include "core/dtype.h"
#include "core/error.h"

#include <math.h>
#include <string.h>

static const struct { const char *name; size_t size; int is_float; } table[SCP_DTYPE_COUNT] = {
    [SCP_F32] = {"F32", 4, 1},  [SCP_F16] = {"F16", 2, 1},  [SCP_BF16] = {"BF16", 2, 1}, [SCP_F64] = {"F64", 8, 1},
    [SCP_I8] = {"I8", 1, 0},    [SCP_I16] = {"I16", 2, 0},  [SCP_I32] = {"I32", 4, 0},   [SCP_I64] = {"I64", 8, 0},
    [SCP_U8] = {"U8", 1, 0},    [SCP_U16] = {"U16", 2, 0},  [SCP_U32] = {"U32", 4, 0},   [SCP_U64] = {"U64", 8, 0},
    [SCP_BOOL] = {"BOOL", 1, 0},
};

const char *scp_dtype_name(scp_dtype t)
{
    return (t >= 0 && t < SCP_DTYPE_COUNT) ? table[t].name : "?";
}

scp_dtype scp_dtype_from_name(const char *name)
{
    for (int i = 0; i < SCP_DTYPE_COUNT; i++)
        if (strcmp(name, table[i].name) == 0) return (scp_dtype)i;
    return SCP_DTYPE_INVALID;
}

size_t scp_dtype_size(scp_dtype t) { return (t >= 0 && t < SCP_DTYPE_COUNT) ? table[t].size : 0; }
int scp_dtype_is_float(scp_dtype t) { return (t >= 0 && t < SCP_DTYPE_COUNT) ? table[t].is_float : 0; }

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float scp_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t scp_f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float scp_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        if (mant == 0) return u2f(sign);
        /* subnormal: value = mant * 2^-24 */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (mant << 13));
    return u2f(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t scp_f32_to_f16(float f)
{
    uint32_t u = f2u(f), sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00);              /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);             /* overflow (rounds to) inf */
    if (a < 0x38800000u) {                                               /* subnormal or zero in f16 */
        float v = u2f(a) * 16777216.0f;                                  /* scale by 2^24 */
        uint32_t m = (uint32_t)lrintf(v);                                /* nearest even (default mode) */
        return (uint16_t)(sign | m);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1);                           /* round mantissa to 10 bits */
    return (uint16_t)(sign | (((r >> 23) - 112) << 10) | ((r >> 13) & 0x3ff));
}

int scp_convert_to_f32(float *dst, const void *src, scp_dtype t, size_t n)
{
    const uint8_t *s = src;
    switch (t) {
    case SCP_F32: memcpy(dst, src, n * 4); return 0;
    case SCP_F16: for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = scp_f16_to_f32(h); } return 0;
    case SCP_BF16: for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = scp_bf16_to_f32(h); } return 0;
    case SCP_F64: for (size_t i = 0; i < n; i++) { double d; memcpy(&d, s + 8 * i, 8); dst[i] = (float)d; } return 0;
    default: return scp_error("cannot convert %s to F32", scp_dtype_name(t));
    }
}

int scp_convert_from_f32(void *dst, scp_dtype t, const float *src, size_t n)
{
    uint8_t *d = dst;
    switch (t) {
    case SCP_F32: memcpy(dst, src, n * 4); return 0;
    case SCP_F16: for (size_t i = 0; i < n; i++) { uint16_t h = scp_f32_to_f16(src[i]); memcpy(d + 2 * i, &h, 2); } return 0;
    case SCP_BF16: for (size_t i = 0; i < n; i++) { uint16_t h = scp_f32_to_bf16(src[i]); memcpy(d + 2 * i, &h, 2); } return 0;
    case SCP_F64: for (size_t i = 0; i < n; i++) { double v = src[i]; memcpy(d + 8 * i, &v, 8); } return 0;
    default: return scp_error("cannot convert F32 to %s", scp_dtype_name(t));
    }
}
