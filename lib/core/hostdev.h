/* core/hostdev.h: SCP_HD marks a small inline function that both the C library and the CUDA kernels call, so that
 * the two share one definition (the attention's visibility rule, model/attn_visibility.h, and the mixer behind it,
 * core/rng.h). Empty outside CUDA. */
#ifndef SCP_HOSTDEV_H
#define SCP_HOSTDEV_H

#if defined(__CUDACC__)
#define SCP_HD __host__ __device__
#else
#define SCP_HD
#endif

#endif
