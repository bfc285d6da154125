/* attention_cudnn.c: attention forward and backward through cuDNN's graph (backend) API, whose runtime fusion
 * recognises the operation graphs below as scaled dot-product attention and runs its fused flash-attention
 * engines on them. Plain C on purpose: tests/gpu/emulated.sh compiles the .cu files alone, without cuDNN.
 *
 * Loading. libcudnn.so.9 is opened with dlopen at the first call (SCP_CUDNN_LIB, a path, first: Python's
 * nvidia-cudnn package keeps it in site-packages/nvidia/cudnn/lib), and the few functions used are looked up by
 * name, so that the plugin loads and runs its other paths where cuDNN is missing. Compiled against cuDNN 9's
 * cudnn_graph.h for the enumerations only.
 *
 * Tensors, in cuDNN's (B, heads, rows, columns) order over our layouts without copies: q (B, H, T, hd) strides
 * (T ld, hd, ld, 1); k and v likewise with KV heads; out and dout (B, H, T, hd) strides (T H hd, hd, H hd, 1);
 * stats (B, H, T, 1) packed, fp32. GQA is matmul broadcasting over the head dimension (forward) and, backward, a
 * product over the H query heads reduced onto the KV heads. The graphs are those NVIDIA's cudnn-frontend builds
 * for its SDPA node without dropout, bias or padding (include/cudnn_frontend/node/
 * scaled_dot_product_flash_attention.h, softmax.h, diagonal_band_mask.h), written here from that description:
 *
 *   forward:  S = matmul(q, k^T) (k^T: k's tensor with its last two dimensions and strides swapped), S *= scale,
 *             [causal: row = gen_index(S, axis 2), col = gen_index(S, axis 3), keep = row >= col,
 *             S = binary_select(S, -inf, keep)], m = max over the keys, e = exp(S - m), z = sum e,
 *             stats = m + log z (the only fp32 output), P = e / z (bf16), out = matmul(P, v).
 *   backward: Dsum = sum_d dout * out (times a by-value 1, the frontend's place for dropout's scale; Dsum is a real
 *             (B, H, T, 1) fp32 tensor in the workspace), S = matmul(q, k^T) * scale - stats, [causal mask as
 *             above], P = exp S, dv = matmul(P^T, dout), dP = matmul(dout, v^T), dS = P (dP - Dsum) scale,
 *             dk = matmul(dS^T, q), dq = matmul(dS, k); ^T is a reshape operation that swaps strides, P^T and
 *             dS^T are bf16; with GQA dk and dv are products over the H query heads (bf16, virtual) reduced by a
 *             sum onto the KV heads. dq is the direct product, not the frontend's default fp32 accumulator: on
 *             Hopper that is the graph the frontend builds for its deterministic algorithm (a dP workspace of
 *             B H T^2 bf16 that the plan's workspace size includes), so that a backward repeats bit for bit, as
 *             every other path of this backend does.
 * Virtual tensors are fp32 unless said otherwise, the index tensors int32, the mask boolean; the scale, the 1 and
 * -inf are by-value fp32 scalars (-FLT_MAX before cuDNN 9.10, as the frontend does). Every non-virtual tensor is
 * declared 16-byte aligned (scp_cudnn_attn_serves checks it).
 *
 * Plans: engine heuristics (mode A, then the fallback list) give engine configurations; the first that finalizes
 * into an execution plan is kept with its descriptors in a small table keyed by the shape, the mask and ld, and
 * its workspace is asked of the caller's allocator at each call.
 *
 * Not verified here (written without a GPU): that every cuDNN version 9 accepts these graphs (the frontend's
 * pattern moved between versions: the int32 math precision of gen_index, the deterministic dq variant), which
 * engines the heuristics return on an H100/H200, and the workspace sizes. tests/gpu/cudnn-probe.c builds and
 * runs both graphs for one small shape and prints each stage's outcome, so that a first GPU run shows where it
 * stands; the messages here name the stage and the shape. */
#include "config.h"

#include "model/cuda/attention_cudnn.h"

#include <dlfcn.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cudnn_graph.h>

/* ---- the library, loaded at run time ---- */

static struct {
    int tried, ok;
    char path[512];
    size_t version;
    cudnnHandle_t handle;
    size_t (*GetVersion)(void);
    const char *(*GetErrorString)(cudnnStatus_t);
    void (*GetLastErrorString)(char *, size_t);   /* NULL where the library lacks it */
    cudnnStatus_t (*Create)(cudnnHandle_t *);
    cudnnStatus_t (*SetStream)(cudnnHandle_t, cudaStream_t);
    cudnnStatus_t (*CreateDescriptor)(cudnnBackendDescriptorType_t, cudnnBackendDescriptor_t *);
    cudnnStatus_t (*DestroyDescriptor)(cudnnBackendDescriptor_t);
    cudnnStatus_t (*SetAttribute)(cudnnBackendDescriptor_t, cudnnBackendAttributeName_t, cudnnBackendAttributeType_t,
                                  int64_t, const void *);
    cudnnStatus_t (*GetAttribute)(cudnnBackendDescriptor_t const, cudnnBackendAttributeName_t,
                                  cudnnBackendAttributeType_t, int64_t, int64_t *, void *);
    cudnnStatus_t (*Finalize)(cudnnBackendDescriptor_t);
    cudnnStatus_t (*Execute)(cudnnHandle_t, cudnnBackendDescriptor_t, cudnnBackendDescriptor_t);
} dnn;

static char error_text[1024];

const char *scp_cudnn_error(void) { return error_text; }

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_text, sizeof error_text, fmt, ap);
    va_end(ap);
    return -1;
}

/* cuDNN's name for status s and, where the library keeps one, its message about the last failure. */
static const char *status_words(cudnnStatus_t s)
{
    static char buf[640];
    char last[512] = "";
    if (dnn.GetLastErrorString) dnn.GetLastErrorString(last, sizeof last);
    snprintf(buf, sizeof buf, "%s%s%s", dnn.GetErrorString ? dnn.GetErrorString(s) : "?", last[0] ? ": " : "", last);
    return buf;
}

/* The library and its functions (no GPU needed); load() adds the handle. */
static int load_library(void)
{
    if (dnn.tried) return dnn.ok ? 0 : -1;
    dnn.tried = 1;
    const char *env = getenv("SCP_CUDNN_LIB");
    const char *name = env && *env ? env : "libcudnn.so.9";
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return fail("cudnn: load %s: %s (SCP_CUDNN_LIB names the library's path)", name, dlerror());
    snprintf(dnn.path, sizeof dnn.path, "%s", name);
#define SYM(field, sym, required)                                                                         \
    do {                                                                                                  \
        *(void **)&dnn.field = dlsym(lib, #sym);                                                          \
        if (!dnn.field && (required)) return fail("cudnn: %s has no %s: not cuDNN 9", name, #sym);        \
    } while (0)
    SYM(GetVersion, cudnnGetVersion, 1);
    SYM(GetErrorString, cudnnGetErrorString, 1);
    SYM(GetLastErrorString, cudnnGetLastErrorString, 0);
    SYM(Create, cudnnCreate, 1);
    SYM(SetStream, cudnnSetStream, 1);
    SYM(CreateDescriptor, cudnnBackendCreateDescriptor, 1);
    SYM(DestroyDescriptor, cudnnBackendDestroyDescriptor, 1);
    SYM(SetAttribute, cudnnBackendSetAttribute, 1);
    SYM(GetAttribute, cudnnBackendGetAttribute, 1);
    SYM(Finalize, cudnnBackendFinalize, 1);
    SYM(Execute, cudnnBackendExecute, 1);
#undef SYM
    dnn.version = dnn.GetVersion();
    if (dnn.version < 90000) return fail("cudnn: %s is version %zu; the graphs here need cuDNN 9", name, dnn.version);
    dnn.ok = 1;
    return 0;
}

static int load(void)
{
    static int handle_failed;
    if (load_library() != 0) return -1;
    if (dnn.handle) return 0;
    if (handle_failed) return fail("cudnn: cudnnCreate failed before");
    cudnnStatus_t s = dnn.Create(&dnn.handle);
    if (s == CUDNN_STATUS_SUCCESS)   /* the legacy default stream, where every kernel of this backend runs */
        s = dnn.SetStream(dnn.handle, NULL);
    if (s != CUDNN_STATUS_SUCCESS) {
        handle_failed = 1;
        dnn.handle = NULL;
        return fail("cudnn: cudnnCreate/cudnnSetStream: %s", status_words(s));
    }
    return 0;
}

int scp_cudnn_describe(char *buf, size_t n)
{
    if (load_library() != 0) {
        snprintf(buf, n, "%s", error_text);
        return -1;
    }
    snprintf(buf, n, "cuDNN %zu.%zu.%zu (%s)", dnn.version / 10000, dnn.version / 100 % 100, dnn.version % 100,
             dnn.path);
    return 0;
}

/* ---- building a graph ---- */

enum { MAX_DESC = 224, MAX_OPS = 32, MAX_CFG = 16 };

/* The descriptors of one graph (kept while its plan is in use), what it is for messages, and where the first
 * failure was. */
typedef struct {
    char what[160];
    cudnnBackendDescriptor_t desc[MAX_DESC];
    int ndesc;
    cudnnBackendDescriptor_t ops[MAX_OPS];
    int nops;
    int64_t next_uid;       /* of the virtual tensors */
    int failed;
} graph;

static void graph_free(graph *g)
{
    for (int i = g->ndesc - 1; i >= 0; i--) dnn.DestroyDescriptor(g->desc[i]);
    g->ndesc = g->nops = 0;
}

/* A cuDNN call of stage `stage` in graph g: records the first failure; later calls are skipped. */
static int check(graph *g, cudnnStatus_t s, const char *stage)
{
    if (g->failed) return -1;
    if (s == CUDNN_STATUS_SUCCESS) return 0;
    g->failed = 1;
    return fail("cudnn: %s (%s): %s", stage, g->what, status_words(s));
}

static cudnnBackendDescriptor_t create(graph *g, cudnnBackendDescriptorType_t type, const char *stage)
{
    cudnnBackendDescriptor_t d = NULL;
    if (g->failed) return NULL;
    if (g->ndesc == MAX_DESC) {
        g->failed = 1;
        fail("cudnn: %s (%s): more than %d descriptors", stage, g->what, MAX_DESC);
        return NULL;
    }
    if (check(g, dnn.CreateDescriptor(type, &d), stage) != 0) return NULL;
    g->desc[g->ndesc++] = d;
    return d;
}

static void set(graph *g, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                cudnnBackendAttributeType_t type, int64_t count, const void *value, const char *stage)
{
    if (!g->failed) check(g, dnn.SetAttribute(d, name, type, count, value), stage);
}

static void finalize(graph *g, cudnnBackendDescriptor_t d, const char *stage)
{
    if (!g->failed) check(g, dnn.Finalize(d), stage);
}

/* The uids of the real tensors (the variant pack's); virtual ones count up from VIRTUAL_UID. */
enum { UID_Q = 1, UID_K, UID_V, UID_O, UID_STATS, UID_DO, UID_DQ, UID_DK, UID_DV, UID_SCALE, UID_ONE, UID_NEG_INF,
       UID_DSUM, VIRTUAL_UID = 100 };

typedef struct {
    int64_t dim[4], stride[4];
} shape4;

static shape4 packed(int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    return (shape4){{d0, d1, d2, d3}, {d1 * d2 * d3, d2 * d3, d3, 1}};
}

/* The same tensor seen with its last two dimensions exchanged (k^T from k, P^T from P). */
static shape4 swap_last(shape4 s)
{
    shape4 t = s;
    t.dim[2] = s.dim[3], t.dim[3] = s.dim[2];
    t.stride[2] = s.stride[3], t.stride[3] = s.stride[2];
    return t;
}

static cudnnBackendDescriptor_t tensor_desc(graph *g, int64_t uid, cudnnDataType_t type, shape4 s, int is_virtual,
                                            int by_value)
{
    cudnnBackendDescriptor_t t = create(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR, "create tensor");
    int64_t align = 16;
    bool virt = is_virtual != 0, val = by_value != 0;
    set(g, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, "tensor data type");
    set(g, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, s.dim, "tensor dimensions");
    set(g, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, s.stride, "tensor strides");
    set(g, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor uid");
    set(g, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align, "tensor alignment");
    set(g, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt, "tensor is-virtual");
    if (by_value) set(g, t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &val, "tensor by-value");
    finalize(g, t, "finalize tensor");
    return t;
}

static cudnnBackendDescriptor_t real(graph *g, int64_t uid, cudnnDataType_t type, shape4 s)
{
    return tensor_desc(g, uid, type, s, 0, 0);
}
static cudnnBackendDescriptor_t virt(graph *g, cudnnDataType_t type, shape4 s)
{
    return tensor_desc(g, g->next_uid++, type, s, 1, 0);
}
static cudnnBackendDescriptor_t scalar(graph *g, int64_t uid)
{
    return tensor_desc(g, uid, CUDNN_DATA_FLOAT, packed(1, 1, 1, 1), 0, 1);
}

static void add_op(graph *g, cudnnBackendDescriptor_t op, const char *stage)
{
    finalize(g, op, stage);
    if (g->failed) return;
    if (g->nops == MAX_OPS) {
        g->failed = 1;
        fail("cudnn: %s (%s): more than %d operations", stage, g->what, MAX_OPS);
        return;
    }
    g->ops[g->nops++] = op;
}

/* y = mode(x[, b[, t]]) elementwise (broadcasting b and t), computed in `prec`; axis for gen_index (else < 0). */
static void pointwise(graph *g, cudnnPointwiseMode_t mode, cudnnDataType_t prec, int64_t axis,
                      cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t,
                      cudnnBackendDescriptor_t y)
{
    cudnnBackendDescriptor_t pw = create(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, "create pointwise");
    set(g, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, "pointwise mode");
    set(g, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec, "pointwise precision");
    if (axis >= 0) set(g, pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, "pointwise axis");
    finalize(g, pw, "finalize pointwise");
    cudnnBackendDescriptor_t op = create(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, "create pointwise op");
    set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw, "pointwise op");
    set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, "pointwise x");
    if (b) set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b, "pointwise b");
    if (t) set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t, "pointwise t");
    set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "pointwise y");
    add_op(g, op, "finalize pointwise op");
}

static void pw2(graph *g, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                cudnnBackendDescriptor_t y)
{
    pointwise(g, mode, CUDNN_DATA_FLOAT, -1, x, b, NULL, y);
}

/* c = a b over the last two dimensions, batched (and broadcast) over the first two, fp32 accumulation. */
static void matmul(graph *g, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c)
{
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t mm = create(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR, "create matmul");
    set(g, mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, "matmul compute type");
    finalize(g, mm, "finalize matmul");
    cudnnBackendDescriptor_t op = create(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, "create matmul op");
    set(g, op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a, "matmul a");
    set(g, op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b, "matmul b");
    set(g, op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c, "matmul c");
    set(g, op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm, "matmul descriptor");
    add_op(g, op, "finalize matmul op");
}

/* y = reduce(x) over the dimensions where y has extent 1 and x does not. */
static void reduction(graph *g, cudnnReduceTensorOp_t how, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y)
{
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t rd = create(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, "create reduction");
    set(g, rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &how, "reduction operator");
    set(g, rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, "reduction compute type");
    finalize(g, rd, "finalize reduction");
    cudnnBackendDescriptor_t op = create(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, "create reduction op");
    set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, "reduction x");
    set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "reduction y");
    set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd, "reduction descriptor");
    add_op(g, op, "finalize reduction op");
}

/* c (B, KV heads, ., .) = a b where a has the H query heads: under GQA the product over every query head, in
 * full (B, H, ., .), summed onto the kv heads; else straight into c. */
static void matmul_onto_kv(graph *g, int gqa, shape4 full, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b,
                           cudnnBackendDescriptor_t c)
{
    if (!gqa) {
        matmul(g, a, b, c);
        return;
    }
    cudnnBackendDescriptor_t per_head = virt(g, CUDNN_DATA_BFLOAT16, full);
    matmul(g, a, b, per_head);
    reduction(g, CUDNN_REDUCE_TENSOR_ADD, per_head, c);
}

/* y: x's elements under y's dimensions and strides (a transpose where the strides are exchanged). */
static void reshape(graph *g, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y)
{
    cudnnBackendDescriptor_t op = create(g, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, "create reshape op");
    set(g, op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, "reshape x");
    set(g, op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "reshape y");
    add_op(g, op, "finalize reshape op");
}

/* Top-left causal mask of the scores s (B, H, T, T): s where row >= column, else the by-value -inf. */
static cudnnBackendDescriptor_t causal_mask(graph *g, cudnnBackendDescriptor_t s, shape4 sh)
{
    cudnnBackendDescriptor_t row = virt(g, CUDNN_DATA_INT32, sh), col = virt(g, CUDNN_DATA_INT32, sh);
    cudnnBackendDescriptor_t keep = virt(g, CUDNN_DATA_BOOLEAN, sh), out = virt(g, CUDNN_DATA_FLOAT, sh);
    pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, 2, s, NULL, NULL, row);
    pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, 3, s, NULL, NULL, col);
    pointwise(g, CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, -1, row, col, NULL, keep);
    /* binary_select: y = t ? x : b */
    pointwise(g, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, -1, s, scalar(g, UID_NEG_INF), keep, out);
    return out;
}

/* The layouts of one call in cuDNN's terms (see the top of the file). */
typedef struct {
    shape4 q, k, o, stats, scores;
} layouts;

static layouts layouts_of(const scp_attn_args *a)
{
    const int64_t B = a->B, T = a->T, H = a->H, KV = a->KV, hd = a->hd, ld = a->ld_qkv;
    layouts l;
    l.q = (shape4){{B, H, T, hd}, {T * ld, hd, ld, 1}};
    l.k = (shape4){{B, KV, T, hd}, {T * ld, hd, ld, 1}};
    l.o = (shape4){{B, H, T, hd}, {T * H * hd, hd, H * hd, 1}};
    l.stats = packed(B, H, T, 1);
    l.scores = packed(B, H, T, T);
    return l;
}

static void build_forward(graph *g, const scp_attn_args *a)
{
    layouts l = layouts_of(a);
    cudnnBackendDescriptor_t q = real(g, UID_Q, CUDNN_DATA_BFLOAT16, l.q);
    cudnnBackendDescriptor_t kt = real(g, UID_K, CUDNN_DATA_BFLOAT16, swap_last(l.k));
    cudnnBackendDescriptor_t v = real(g, UID_V, CUDNN_DATA_BFLOAT16, l.k);
    cudnnBackendDescriptor_t o = real(g, UID_O, CUDNN_DATA_BFLOAT16, l.o);
    cudnnBackendDescriptor_t stats = real(g, UID_STATS, CUDNN_DATA_FLOAT, l.stats);
    cudnnBackendDescriptor_t s = virt(g, CUDNN_DATA_FLOAT, l.scores), ss = virt(g, CUDNN_DATA_FLOAT, l.scores);
    matmul(g, q, kt, s);
    pw2(g, CUDNN_POINTWISE_MUL, s, scalar(g, UID_SCALE), ss);
    if (a->causal) ss = causal_mask(g, ss, l.scores);
    cudnnBackendDescriptor_t m = virt(g, CUDNN_DATA_FLOAT, l.stats), z = virt(g, CUDNN_DATA_FLOAT, l.stats);
    cudnnBackendDescriptor_t logz = virt(g, CUDNN_DATA_FLOAT, l.stats);
    cudnnBackendDescriptor_t centred = virt(g, CUDNN_DATA_FLOAT, l.scores), e = virt(g, CUDNN_DATA_FLOAT, l.scores);
    cudnnBackendDescriptor_t p = virt(g, CUDNN_DATA_BFLOAT16, l.scores);
    reduction(g, CUDNN_REDUCE_TENSOR_MAX, ss, m);
    pw2(g, CUDNN_POINTWISE_SUB, ss, m, centred);
    pointwise(g, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, -1, centred, NULL, NULL, e);
    reduction(g, CUDNN_REDUCE_TENSOR_ADD, e, z);
    pointwise(g, CUDNN_POINTWISE_LOG, CUDNN_DATA_FLOAT, -1, z, NULL, NULL, logz);
    pw2(g, CUDNN_POINTWISE_ADD, m, logz, stats);
    pw2(g, CUDNN_POINTWISE_DIV, e, z, p);
    matmul(g, p, v, o);
}

static void build_backward(graph *g, const scp_attn_args *a)
{
    layouts l = layouts_of(a);
    const int64_t B = a->B, T = a->T, H = a->H, hd = a->hd;
    const int gqa = a->KV != a->H;
    cudnnBackendDescriptor_t q = real(g, UID_Q, CUDNN_DATA_BFLOAT16, l.q);
    cudnnBackendDescriptor_t kt = real(g, UID_K, CUDNN_DATA_BFLOAT16, swap_last(l.k));
    cudnnBackendDescriptor_t vt = real(g, UID_V, CUDNN_DATA_BFLOAT16, swap_last(l.k));
    cudnnBackendDescriptor_t o = real(g, UID_O, CUDNN_DATA_BFLOAT16, l.o);
    cudnnBackendDescriptor_t dout = real(g, UID_DO, CUDNN_DATA_BFLOAT16, l.o);
    cudnnBackendDescriptor_t stats = real(g, UID_STATS, CUDNN_DATA_FLOAT, l.stats);
    cudnnBackendDescriptor_t dq = real(g, UID_DQ, CUDNN_DATA_BFLOAT16, l.q);
    cudnnBackendDescriptor_t dk = real(g, UID_DK, CUDNN_DATA_BFLOAT16, l.k);
    cudnnBackendDescriptor_t dv = real(g, UID_DV, CUDNN_DATA_BFLOAT16, l.k);
    cudnnBackendDescriptor_t scale = scalar(g, UID_SCALE);
    /* Dsum (B, H, T, 1) = rowsum(dout * out) */
    shape4 prod_shape = {{B, H, T, hd}, {H * T * hd, T * hd, H * hd, 1}};
    cudnnBackendDescriptor_t prod = virt(g, CUDNN_DATA_FLOAT, prod_shape), rowsum = virt(g, CUDNN_DATA_FLOAT, l.stats);
    cudnnBackendDescriptor_t dsum = real(g, UID_DSUM, CUDNN_DATA_FLOAT, l.stats);
    pw2(g, CUDNN_POINTWISE_MUL, dout, o, prod);
    reduction(g, CUDNN_REDUCE_TENSOR_ADD, prod, rowsum);
    pw2(g, CUDNN_POINTWISE_MUL, rowsum, scalar(g, UID_ONE), dsum);
    /* P = exp(q k^T scale - stats), masked */
    cudnnBackendDescriptor_t s = virt(g, CUDNN_DATA_FLOAT, l.scores), ss = virt(g, CUDNN_DATA_FLOAT, l.scores);
    cudnnBackendDescriptor_t centred = virt(g, CUDNN_DATA_FLOAT, l.scores), p = virt(g, CUDNN_DATA_FLOAT, l.scores);
    matmul(g, q, kt, s);
    pw2(g, CUDNN_POINTWISE_MUL, s, scale, ss);
    pw2(g, CUDNN_POINTWISE_SUB, ss, stats, centred);
    if (a->causal) centred = causal_mask(g, centred, l.scores);
    pointwise(g, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, -1, centred, NULL, NULL, p);
    /* dv = P^T dout (over the H query heads, summed onto the KV heads under GQA) */
    shape4 full = packed(B, H, T, hd);
    cudnnBackendDescriptor_t pt = virt(g, CUDNN_DATA_BFLOAT16, swap_last(l.scores));
    reshape(g, p, pt);
    matmul_onto_kv(g, gqa, full, pt, dout, dv);
    /* dS = P (dout v^T - Dsum) scale */
    cudnnBackendDescriptor_t dp = virt(g, CUDNN_DATA_FLOAT, l.scores), dpc = virt(g, CUDNN_DATA_FLOAT, l.scores);
    cudnnBackendDescriptor_t pdp = virt(g, CUDNN_DATA_FLOAT, l.scores), ds = virt(g, CUDNN_DATA_FLOAT, l.scores);
    matmul(g, dout, vt, dp);
    pw2(g, CUDNN_POINTWISE_SUB, dp, dsum, dpc);
    pw2(g, CUDNN_POINTWISE_MUL, dpc, p, pdp);
    pw2(g, CUDNN_POINTWISE_MUL, pdp, scale, ds);
    /* dk = dS^T q */
    cudnnBackendDescriptor_t dst = virt(g, CUDNN_DATA_BFLOAT16, swap_last(l.scores));
    reshape(g, ds, dst);
    matmul_onto_kv(g, gqa, full, dst, q, dk);
    /* dq = dS k, k seen again through a reshape of k^T */
    cudnnBackendDescriptor_t k = virt(g, CUDNN_DATA_BFLOAT16, l.k);
    reshape(g, kt, k);
    matmul(g, ds, k, dq);
}

/* The operations of the (backward or forward) graph of call a in g. */
static int build(graph *g, int backward, const scp_attn_args *a)
{
    g->next_uid = VIRTUAL_UID;
    snprintf(g->what, sizeof g->what, "%s, %s, B=%d H=%d Hkv=%d T=%d hd=%d ld=%d", backward ? "backward" : "forward",
             a->causal ? "causal" : "bidirectional", a->B, a->H, a->KV, a->T, a->hd, a->ld_qkv);
    if (backward) build_backward(g, a);
    else build_forward(g, a);
    return g->failed ? -1 : 0;
}

int scp_cudnn_graph_check(int backward, const scp_attn_args *a)
{
    if (load_library() != 0) return -1;
    graph g;
    memset(&g, 0, sizeof g);
    if (build(&g, backward, a) == 0) {
        cudnnBackendDescriptor_t og = create(&g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "create operation graph");
        set(&g, og, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g.nops, g.ops, "operation graph ops");
        finalize(&g, og, "finalize operation graph (without a handle)");
    }
    graph_free(&g);
    return g.failed ? -1 : 0;
}

/* One execution plan with the descriptors it was built from. */
typedef struct {
    int used, backward;
    scp_attn_args key;   /* B, T, H, KV, hd, ld_qkv, causal: the rest is not part of a plan */
    graph g;
    cudnnBackendDescriptor_t plan;
    int64_t workspace;
} plan_entry;

enum { PLAN_SLOTS = 8 };
static plan_entry plans[PLAN_SLOTS];
static int next_slot;

static int same_key(const scp_attn_args *x, const scp_attn_args *y)
{
    return x->B == y->B && x->T == y->T && x->H == y->H && x->KV == y->KV && x->hd == y->hd &&
           x->ld_qkv == y->ld_qkv && x->causal == y->causal;
}

/* The operation graph of g's operations, the heuristics' engine configurations and the first that finalizes into
 * a plan: e->plan and e->workspace. */
static int make_plan(plan_entry *e)
{
    graph *g = &e->g;
    cudnnBackendDescriptor_t og = create(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "create operation graph");
    set(g, og, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->nops, g->ops, "operation graph ops");
    set(g, og, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &dnn.handle, "operation graph handle");
    finalize(g, og, "finalize operation graph");
    static const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    int tried = 0;
    char first_refusal[640] = "";
    for (int mi = 0; mi < 2 && !g->failed; mi++) {
        cudnnBackendDescriptor_t heur = create(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "create engine heuristics");
        set(g, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &og, "heuristics graph");
        set(g, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &modes[mi], "heuristics mode");
        finalize(g, heur, mi == 0 ? "finalize engine heuristics (mode A)" : "finalize engine heuristics (fallback)");
        int64_t count = 0;
        if (g->failed ||
            check(g, dnn.GetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL),
                  "count engine configurations") != 0)
            return -1;
        if (count > MAX_CFG) count = MAX_CFG;
        cudnnBackendDescriptor_t cfg[MAX_CFG];
        for (int64_t i = 0; i < count; i++) cfg[i] = create(g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "create engine config");
        int64_t got = 0;
        if (count > 0 && !g->failed)
            check(g, dnn.GetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, cfg),
                  "get engine configurations");
        for (int64_t i = 0; i < got && !g->failed; i++) {
            cudnnBackendDescriptor_t plan = create(g, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "create execution plan");
            set(g, plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &dnn.handle, "plan handle");
            set(g, plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i],
                "plan engine config");
            if (g->failed) return -1;
            tried++;
            cudnnStatus_t s = dnn.Finalize(plan);
            if (s != CUDNN_STATUS_SUCCESS) {   /* this engine refuses the graph: try the next */
                if (!first_refusal[0]) snprintf(first_refusal, sizeof first_refusal, "%s", status_words(s));
                continue;
            }
            int64_t n = 0;
            if (check(g, dnn.GetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n,
                                          &e->workspace),
                      "plan workspace size") != 0)
                return -1;
            e->plan = plan;
            return 0;
        }
    }
    if (g->failed) return -1;
    return fail("cudnn: no engine takes the graph (%s): %d engine configurations tried%s%s", g->what, tried,
                first_refusal[0] ? ", the first refused with " : "", first_refusal);
}

/* The plan of (backward, a), built on first use. */
static plan_entry *plan_for(int backward, const scp_attn_args *a)
{
    if (load() != 0) return NULL;
    for (int i = 0; i < PLAN_SLOTS; i++)
        if (plans[i].used && plans[i].backward == backward && same_key(&plans[i].key, a)) return &plans[i];
    plan_entry *e = &plans[next_slot];
    next_slot = (next_slot + 1) % PLAN_SLOTS;
    if (e->used) graph_free(&e->g);
    memset(e, 0, sizeof *e);
    e->backward = backward;
    e->key = *a;
    graph *g = &e->g;
    if (build(g, backward, a) != 0 || make_plan(e) != 0) {
        graph_free(g);
        return NULL;
    }
    e->used = 1;
    return e;
}

int scp_cudnn_attn_serves(const scp_attn_args *a, const void *q, const void *k, const void *v)
{
    const void *p[3] = {q, k, v};
    for (int i = 0; i < 3; i++)
        if ((uintptr_t)p[i] % 16) return 0;
    return !a->doc && !(a->causal && a->anneal_thresh) && a->hd >= 16 && a->hd <= 128 && a->hd % 16 == 0 &&
           a->ld_qkv % 8 == 0 && a->KV >= 1 && a->H % a->KV == 0 && a->B >= 1 && a->T >= 1;
}

/* The workspace: the plan's, then (backward) Dsum's (B, H, T) floats at a 256-byte boundary. */
static int run(plan_entry *e, int64_t n, const int64_t *uids, void *const *ptrs, int64_t extra, void **extra_at,
               scp_cudnn_workspace_fn workspace)
{
    graph *g = &e->g;
    int64_t off = (e->workspace + 255) / 256 * 256;
    char *ws = NULL;
    if (off + extra > 0 && !(ws = workspace((size_t)(off + extra))))
        return fail("cudnn: workspace of %lld bytes (%s): allocation failed", (long long)(off + extra), g->what);
    if (extra_at) *extra_at = ws + off;
    /* the variant pack is made per call (its pointers change); destroyed here */
    cudnnBackendDescriptor_t vp = NULL;
    cudnnStatus_t s = dnn.CreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp);
    if (s != CUDNN_STATUS_SUCCESS) return fail("cudnn: create variant pack (%s): %s", g->what, status_words(s));
    void *ptr_list[16];
    memcpy(ptr_list, ptrs, (size_t)n * sizeof *ptrs);
    if (extra_at) ptr_list[n - 1] = *extra_at;   /* Dsum is the last entry */
    const char *stage = "variant pack uids";
    s = dnn.SetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    if (s == CUDNN_STATUS_SUCCESS)
        stage = "variant pack pointers",
        s = dnn.SetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptr_list);
    if (s == CUDNN_STATUS_SUCCESS)
        stage = "variant pack workspace",
        s = dnn.SetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    if (s == CUDNN_STATUS_SUCCESS) stage = "finalize variant pack", s = dnn.Finalize(vp);
    if (s == CUDNN_STATUS_SUCCESS) stage = "execute", s = dnn.Execute(dnn.handle, e->plan, vp);
    int rc = s == CUDNN_STATUS_SUCCESS ? 0 : fail("cudnn: %s (%s): %s", stage, g->what, status_words(s));
    dnn.DestroyDescriptor(vp);
    return rc;
}

/* The by-value scalars: the values live in the caller's frame until the execution is enqueued. */
static float neg_inf_value(void) { return dnn.version < 91000 ? -FLT_MAX : -INFINITY; }

int scp_cudnn_attn_fwd(void *out, float *stats, const void *q, const void *k, const void *v, const scp_attn_args *a,
                       scp_cudnn_workspace_fn workspace)
{
    plan_entry *e = plan_for(0, a);
    if (!e) return -1;
    float scale = a->scale, neg_inf = neg_inf_value();
    int64_t uids[] = {UID_Q, UID_K, UID_V, UID_O, UID_STATS, UID_SCALE, UID_NEG_INF};
    void *ptrs[] = {(void *)q, (void *)k, (void *)v, out, stats, &scale, &neg_inf};
    int64_t n = a->causal ? 7 : 6;
    return run(e, n, uids, ptrs, 0, NULL, workspace);
}

int scp_cudnn_attn_bwd(void *dq, void *dk, void *dv, const void *dout, const void *out, const float *stats,
                       const void *q, const void *k, const void *v, const scp_attn_args *a,
                       scp_cudnn_workspace_fn workspace)
{
    plan_entry *e = plan_for(1, a);
    if (!e) return -1;
    float scale = a->scale, one = 1.0f, neg_inf = neg_inf_value();
    void *dsum = NULL;
    /* Dsum last: run() points it into the workspace */
    int64_t causal_uids[] = {UID_Q, UID_K, UID_V, UID_O, UID_DO, UID_STATS, UID_DQ, UID_DK, UID_DV,
                             UID_SCALE, UID_ONE, UID_NEG_INF, UID_DSUM};
    int64_t plain_uids[] = {UID_Q, UID_K, UID_V, UID_O, UID_DO, UID_STATS, UID_DQ, UID_DK, UID_DV,
                            UID_SCALE, UID_ONE, UID_DSUM};
    void *causal_ptrs[] = {(void *)q, (void *)k, (void *)v, (void *)out, (void *)dout, (void *)stats, dq, dk, dv,
                           &scale, &one, &neg_inf, NULL};
    void *plain_ptrs[] = {(void *)q, (void *)k, (void *)v, (void *)out, (void *)dout, (void *)stats, dq, dk, dv,
                          &scale, &one, NULL};
    int64_t extra = (int64_t)a->B * a->H * a->T * (int64_t)sizeof(float);
    if (a->causal) return run(e, 13, causal_uids, causal_ptrs, extra, &dsum, workspace);
    return run(e, 12, plain_uids, plain_ptrs, extra, &dsum, workspace);
}
