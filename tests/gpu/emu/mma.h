/* mma.h (emulator): the WMMA API (nvcuda::wmma) for 16x16x16 tiles, bf16 or fp32 elements. Every thread of the
 * warp holds the whole 16x16 tile (num_elements = 256, x[r * 16 + c] is element (r, c)), so code that touches
 * fragment elements only uniformly, or through indices it read back from a fragment it loaded itself (such as
 * a tile of row numbers), behaves as on the GPU, where a thread holds 8 elements in an undocumented layout.
 * load_matrix_sync reads the whole tile; store_matrix_sync writes only the elements e with e % 32 == lane, so
 * a warp that reads what it stored without a __syncwarp in between sees stale data (fibers switch only at
 * barriers), as it could on the GPU. Pointers must be 256-bit aligned and ldm a multiple of 16 bytes, as the
 * CUDA programming guide requires; a violation aborts. mma_sync sums in fp32 in k order. */
#ifndef SCP_EMU_MMA_H
#define SCP_EMU_MMA_H
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include "cuda_runtime.h"
#include "cuda_bf16.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void> class fragment {
  public:
    static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16x16x16 fragments only");
    enum { num_elements = 256 };
    typedef T element_type;
    T x[256];
};

static inline float emu_wmma_f(float v) { return v; }
static inline float emu_wmma_f(__nv_bfloat16 v) { return __bfloat162float(v); }
static inline void emu_wmma_set(float &d, float v) { d = v; }
static inline void emu_wmma_set(__nv_bfloat16 &d, float v) { d = __float2bfloat16(v); }

template <typename T> static inline void emu_wmma_check(const T *p, unsigned ldm, const char *what)
{
    if ((uintptr_t)p % 32 != 0 || (ldm * sizeof(T)) % 16 != 0) {
        fprintf(stderr, "emu: wmma::%s with a pointer %p not 256-bit aligned or ldm %u not a multiple of 16 bytes\n",
                what, (const void *)p, ldm);
        abort();
    }
}
static inline unsigned emu_wmma_lane(void)
{
    return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31;
}

/* matrix_a / matrix_b: the layout is the fragment's; element (r, c) of the tile */
template <typename Use, typename T, typename Layout>
static inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout> &f, const T *p, unsigned ldm)
{
    emu_wmma_check(p, ldm, "load_matrix_sync");
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            f.x[r * 16 + c] = std::is_same<Layout, col_major>::value ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}
template <typename T>
static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, T> &f, const T *p, unsigned ldm, layout_t l)
{
    emu_wmma_check(p, ldm, "load_matrix_sync");
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) f.x[r * 16 + c] = l == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}
template <typename T>
static inline void store_matrix_sync(T *p, const fragment<accumulator, 16, 16, 16, T> &f, unsigned ldm, layout_t l)
{
    emu_wmma_check(p, ldm, "store_matrix_sync");
    for (unsigned e = emu_wmma_lane(); e < 256; e += 32) {
        unsigned r = e / 16, c = e % 16;
        (l == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c]) = f.x[e];
    }
}
template <typename Use, typename T, typename Layout, typename V>
static inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout> &f, const V &v)
{
    for (int e = 0; e < 256; e++) emu_wmma_set(f.x[e], (float)v);
}
template <typename TA, typename LA, typename LB, typename TC>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, TC> &d, const fragment<matrix_a, 16, 16, 16, TA, LA> &a,
                            const fragment<matrix_b, 16, 16, 16, TA, LB> &b, const fragment<accumulator, 16, 16, 16, TC> &c)
{
    float av[256], bv[256], out[256];
    for (int e = 0; e < 256; e++) av[e] = emu_wmma_f(a.x[e]), bv[e] = emu_wmma_f(b.x[e]);
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float s = emu_wmma_f(c.x[m * 16 + n]);
            for (int k = 0; k < 16; k++) s += av[m * 16 + k] * bv[k * 16 + n];
            out[m * 16 + n] = s;
        }
    for (int e = 0; e < 256; e++) emu_wmma_set(d.x[e], out[e]);
}
}  // namespace wmma
}  // namespace nvcuda
#endif
