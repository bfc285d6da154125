/* core/dtype.h: element types of stored tensors and conversions to and from fp32. */
#ifndef SCP_DTYPE_H
#define SCP_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum scp_dtype {
    SCP_F32, SCP_F16, SCP_BF16, SCP_F64,
    SCP_I8, SCP_I16, SCP_I32, SCP_I64,
    SCP_U8, SCP_U16, SCP_U32, SCP_U64, SCP_BOOL,
    SCP_DTYPE_COUNT,
    SCP_DTYPE_INVALID = -1
} scp_dtype;

/* Safetensors names: "F32", "BF16", ... */
const char *scp_dtype_name(scp_dtype t);
scp_dtype scp_dtype_from_name(const char *name);
size_t scp_dtype_size(scp_dtype t);
int scp_dtype_is_float(scp_dtype t);

float scp_f16_to_f32(uint16_t h);
uint16_t scp_f32_to_f16(float f);           /* round to nearest even */
float scp_bf16_to_f32(uint16_t h);
uint16_t scp_f32_to_bf16(float f);          /* round to nearest even, NaN kept quiet */

/* Convert n elements of a floating type to fp32 / from fp32 (F32, F16, BF16, F64). Returns -1 otherwise. */
int scp_convert_to_f32(float *dst, const void *src, scp_dtype t, size_t n);
int scp_convert_from_f32(void *dst, scp_dtype t, const float *src, size_t n);

#endif
