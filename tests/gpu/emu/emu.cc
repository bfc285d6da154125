// emu.cc: the CUDA emulator's runtime (see cuda_runtime.h): memory, launches, barriers, shuffles, the PTX warp
// primitives of emu_mma.h, a reference GEMM in place of cuBLAS, the device-discovery calls of
// lib/model/cuda/cuda_device.h, and the streams and events that lib/dist/nccl.c orders NCCL's calls with (their
// completion is the emulated NCCL's, emu_nccl.cc).
#include "cuda_runtime.h"
#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "emu_mma.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <vector>

thread_local uint3e threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

// Fiber switching. On x86-64 a switch is emu_switch below: it pushes the callee-saved registers and the x87
// control word and MXCSR (which the ABI also has a callee preserve) on the stack it leaves, stores that stack
// pointer in *from, loads to's, and pops the same from there. Every other register is caller-saved: the code
// around the call keeps what it needs of them. swapcontext does the same and also saves and restores the signal mask, a system call on every switch,
// which would be most of the emulator's time. Elsewhere the fibers are ucontexts.
#if defined(__x86_64__)
struct fiber_ctx {
    void *sp;
};
extern "C" {
__attribute__((visibility("hidden"))) void emu_switch(fiber_ctx *from, const fiber_ctx *to);
__attribute__((visibility("hidden"))) void emu_fiber_entry(void);
__attribute__((visibility("hidden"))) void emu_fiber_main(void);
}
// emu_fiber_entry: where a fresh fiber's first switch returns to; its stack is 16-byte aligned there, as before a
// call, and it never returns (emu_fiber_main switches away for good), so the unwinder is told to stop here.
asm(".text\n"
    ".p2align 4\n"
    ".globl emu_switch\n"
    ".hidden emu_switch\n"
    ".type emu_switch, @function\n"
    "emu_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    subq $8, %rsp\n"
    "    stmxcsr (%rsp)\n"
    "    fnstcw 4(%rsp)\n"
    "    movq %rsp, (%rdi)\n"
    "    movq (%rsi), %rsp\n"
    "    ldmxcsr (%rsp)\n"
    "    fldcw 4(%rsp)\n"
    "    addq $8, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size emu_switch, .-emu_switch\n"
    ".p2align 4\n"
    ".globl emu_fiber_entry\n"
    ".hidden emu_fiber_entry\n"
    ".type emu_fiber_entry, @function\n"
    "emu_fiber_entry:\n"
    "    .cfi_startproc\n"
    "    .cfi_undefined rip\n"
    "    call emu_fiber_main\n"
    "    ud2\n"
    "    .cfi_endproc\n"
    ".size emu_fiber_entry, .-emu_fiber_entry\n");

static void ctx_switch(fiber_ctx *from, const fiber_ctx *to) { emu_switch(from, to); }
// A fresh fiber's stack (n bytes at base) holds what emu_switch pops, top of the stack last: the MXCSR and x87
// control word of the calling thread, r15 .. r12, rbx and rbp zero (the end of the frame-pointer chain), and the
// return address emu_fiber_entry, 16 bytes below the aligned top.
static void ctx_start(fiber_ctx *c, char *base, size_t n)
{
    uint64_t *top = (uint64_t *)((uintptr_t)(base + n) & ~(uintptr_t)15);
    uint64_t *sp = top - 10;
    unsigned mxcsr = __builtin_ia32_stmxcsr();
    unsigned short fpucw;
    asm volatile("fnstcw %0" : "=m"(fpucw));
    memset(sp, 0, 10 * sizeof *sp);
    memcpy(sp, &mxcsr, 4);
    memcpy((char *)sp + 4, &fpucw, 2);
    sp[7] = (uint64_t)(uintptr_t)emu_fiber_entry;
    c->sp = sp;
}
#else
#include <ucontext.h>
struct fiber_ctx {
    ucontext_t uc;
};
extern "C" void emu_fiber_main(void);
static void ctx_switch(fiber_ctx *from, const fiber_ctx *to) { swapcontext(&from->uc, &to->uc); }
static void ctx_start(fiber_ctx *c, char *base, size_t n)
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = base;
    c->uc.uc_stack.ss_size = n;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, emu_fiber_main, 0);
}
#endif

// Under AddressSanitizer (tests/gpu/emulated.sh in a sanitizer build: the emulator as a memory checker of the
// kernels, as compute-sanitizer's memcheck is on a GPU) every switch is announced to it, so that it knows which
// stack is running: the fiber's, or the scheduler's (the thread's own). A fiber's stack is unpoisoned before it is
// used again: the frame of the fiber that ended there never returned, and its red zones are still marked.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
static const void *sched_stack;  // the thread's stack, as the first switch into a fiber reports it
static size_t sched_stack_size;
static void asan_entered_fiber(void) { __sanitizer_finish_switch_fiber(nullptr, &sched_stack, &sched_stack_size); }
static void asan_leaving(void **save, const void *stack, size_t size) { __sanitizer_start_switch_fiber(save, stack, size); }
static void asan_back(void *save) { __sanitizer_finish_switch_fiber(save, nullptr, nullptr); }
static void asan_fresh_stack(char *base, size_t n) { ASAN_UNPOISON_MEMORY_REGION(base, n); }
static void asan_mark(const void *p, size_t n, bool usable)
{
    if (usable)
        ASAN_UNPOISON_MEMORY_REGION(p, n);
    else
        ASAN_POISON_MEMORY_REGION(p, n);
}
#else
static const void *sched_stack;
static size_t sched_stack_size;
static void asan_entered_fiber(void) {}
static void asan_leaving(void **, const void *, size_t) {}
static void asan_back(void *) {}
static void asan_fresh_stack(char *, size_t) {}
static void asan_mark(const void *, size_t, bool) {}
#endif

// A block runs as nt fibers on one OS thread, switched only at barriers: __syncthreads waits for every live thread
// of the block, a shuffle for every live lane of its warp (twice: once after writing its value, once after reading
// the other's, so that no lane overwrites a slot another has still to read). A barrier that can never open
// (threads of a block or warp waiting at different ones) aborts with a message: on a GPU it hangs.
// The scheduler runs the runnable fibers in index order, each until it waits or ends; then it opens __syncthreads
// if every live thread is there, else the barrier of the lowest-numbered warp whose live lanes have all arrived,
// and runs the fibers it released. The counts below (live threads, threads at __syncthreads, per warp its live
// lanes and those at its barrier) are kept as the fibers wait and end, so that finding the barrier to open does not
// scan every thread.
enum { RUN, WAIT_BLOCK, WAIT_WARP, DONE };
struct fiber {
    fiber_ctx ctx;
    std::vector<char> stack;
    int state;
    uint3e tid;  // its threadIdx
};
static std::vector<fiber> fib;
static fiber_ctx sched;
static int cur;
static unsigned n_live, n_at_block;
static std::vector<unsigned> warp_live, warp_waiting;  // per warp
static std::vector<int> runnable;                      // the fibers the scheduler runs next, in index order
static std::vector<double> slots;
static std::vector<float> dyn;
static const std::function<void()> *cur_body;

// Dynamic shared memory starts 128-byte aligned, as on the GPU (wmma needs 256-bit aligned tiles).
float *emu_dyn_smem(void) { return dyn.data() + (32 - (uintptr_t)dyn.data() / 4 % 32) % 32; }

static void wait_as(int st)
{
    fib[cur].state = st;
    if (st == WAIT_BLOCK)
        n_at_block++;
    else
        warp_waiting[cur >> 5]++;
    void *save;
    asan_leaving(&save, sched_stack, sched_stack_size);
    ctx_switch(&fib[cur].ctx, &sched);
    asan_back(save);
}
void __syncthreads(void) { wait_as(WAIT_BLOCK); }
// __syncthreads_or: every thread posts its predicate, all meet, all read the OR, and meet again before a
// later call may overwrite a predicate another thread has still to read.
static std::vector<int> preds;
int __syncthreads_or(int p)
{
    preds[cur] = p != 0;
    wait_as(WAIT_BLOCK);
    int r = 0;
    for (int x : preds) r |= x;
    wait_as(WAIT_BLOCK);
    return r;
}
// __syncwarp: a barrier of the live lanes of the warp, the same one the shuffles use.
void emu_syncwarp(void) { wait_as(WAIT_WARP); }

double emu_shfl_d(double v, int src, int xor_mode)
{
    unsigned lane = cur & 31, w = cur >> 5;
    slots[w * 32 + lane] = v;
    wait_as(WAIT_WARP);
    unsigned from = xor_mode ? (lane ^ (unsigned)src) & 31 : (unsigned)src & 31;
    double r = slots[w * 32 + from];
    wait_as(WAIT_WARP);
    return r;
}
float emu_shfl(float v, int src, int xor_mode) { return (float)emu_shfl_d(v, src, xor_mode); }

// __match_any_sync: every lane posts its value and all meet (the shuffles' barrier); each then compares the
// values of the lanes its mask names and all meet again, as a shuffle does. A calling lane outside its mask, or a
// lane of the mask that has exited or does not exist, is undefined on the GPU: an abort here.
static std::vector<long long> match_vals;
unsigned emu_match_any(unsigned mask, long long v)
{
    unsigned lane = cur & 31, w = cur >> 5;
    if (!(mask >> lane & 1)) {
        fprintf(stderr, "emu: __match_any_sync called by lane %u of warp %u, outside its mask %08x\n", lane, w, mask);
        abort();
    }
    match_vals[w * 32 + lane] = v;
    wait_as(WAIT_WARP);
    unsigned r = 0;
    for (unsigned l = 0; l < 32; l++) {
        if (!(mask >> l & 1)) continue;
        unsigned t = w * 32 + l;
        if (t >= blockDim.x * blockDim.y * blockDim.z || fib[t].state == DONE) {
            fprintf(stderr, "emu: __match_any_sync's mask %08x names lane %u of warp %u, which is not running\n", mask,
                    l, w);
            abort();
        }
        if (match_vals[t] == v) r |= 1u << l;
    }
    wait_as(WAIT_WARP);
    return r;
}

// The per-warp exchange of the collective PTX primitives (emu_mma.h): a slot per lane holding the primitive it
// is at (0: none) and its operands.
enum { XCHG_NONE, XCHG_MMA, XCHG_LDMATRIX };
struct xchg_slot {
    int op;
    unsigned char data[40];
};
static std::vector<xchg_slot> xchg;

// Deposits this lane's n bytes for primitive op, waits for the warp, and returns the warp's 32 slots; aborts
// unless all 32 lanes arrived at the same primitive. xchg_done() ends the exchange.
static const xchg_slot *xchg_begin(int op, const void *mine, size_t n, const char *what)
{
    unsigned lane = cur & 31, w = cur >> 5, nt = blockDim.x * blockDim.y * blockDim.z;
    if (32 * w + 32 > nt) {
        fprintf(stderr, "emu: %s in a warp of %u threads: all 32 lanes must execute it\n", what, nt - 32 * w);
        abort();
    }
    xchg_slot &s = xchg[w * 32 + lane];
    s.op = op;
    memcpy(s.data, mine, n);
    wait_as(WAIT_WARP);
    for (unsigned l = 0; l < 32; l++)
        if (xchg[w * 32 + l].op != op) {
            fprintf(stderr, "emu: %s: lane %u of warp %u is not at it (exited, diverged, or at another warp "
                    "primitive): all 32 lanes must execute it together\n", what, l, w);
            abort();
        }
    return &xchg[w * 32];
}
static void xchg_done(void)
{
    wait_as(WAIT_WARP);  // every lane has read the slots
    xchg[cur].op = XCHG_NONE;
}

static float bf16_half(uint32_t reg, int hi) { return __bfloat162float(__nv_bfloat16{(uint16_t)(reg >> (16 * hi))}); }

// d += a b with the PTX ISA's fragments of mma.m16n8k16 (.bf16 A row-major, B column-major, .f32 C/D):
// groupID g = lane >> 2, threadID_in_group t = lane % 4;
//   A element a_i (i = 0..7, register i / 2, half i % 2): row g for i in 0..1 and 4..5, else g + 8;
//                                                         column 2t + (i & 1), + 8 for i >= 4;
//   B element b_i (i = 0..3): row 2t + (i & 1), + 8 for i >= 2; column g;
//   C/D element c_i (i = 0..3): row g for i < 2, else g + 8; column 2t + (i & 1).
void emu_mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2])
{
    uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
    const xchg_slot *s = xchg_begin(XCHG_MMA, mine, sizeof mine, "mma.m16n8k16");
    // This lane's outputs need only A's rows g and g + 8, which lanes 4g .. 4g + 3 hold, and B's columns 2t and
    // 2t + 1, which lanes 4 (2t) .. 4 (2t) + 3 and 4 (2t + 1) .. 4 (2t + 1) + 3 hold: A_rows is (2, 16), row g
    // then g + 8; B_cols is (2, 16), column 2t then 2t + 1, indexed by k.
    const int g = (cur & 31) >> 2, t = cur & 3;
    float A_rows[2][16], B_cols[2][16];
    for (int j = 0; j < 4; j++) {  // lane 4g + j, its threadID_in_group j
        uint32_t r[4];
        memcpy(r, s[4 * g + j].data, sizeof r);
        for (int i = 0; i < 8; i++) {
            int row = (i < 2 || (i >= 4 && i < 6)) ? 0 : 1, col = 2 * j + (i & 1) + (i >= 4 ? 8 : 0);
            A_rows[row][col] = bf16_half(r[i / 2], i & 1);
        }
    }
    for (int c = 0; c < 2; c++)
        for (int j = 0; j < 4; j++) {  // lane 4 (2t + c) + j: groupID 2t + c, threadID_in_group j
            uint32_t r[2];
            memcpy(r, s[4 * (2 * t + c) + j].data + 16, sizeof r);
            for (int i = 0; i < 4; i++) B_cols[c][2 * j + (i & 1) + (i >= 2 ? 8 : 0)] = bf16_half(r[i / 2], i & 1);
        }
    xchg_done();
    for (int i = 0; i < 4; i++) {
        const float *arow = A_rows[i < 2 ? 0 : 1], *bcol = B_cols[i & 1];
        float acc = d[i];
        for (int k = 0; k < 16; k++) acc += arow[k] * bcol[k];  // bf16 x bf16 is exact in fp32
        d[i] = acc;
    }
}

// ldmatrix .m8n8 .b16: lanes 8m .. 8m + 7 hold the addresses of rows 0..7 of matrix m. Register m of lane l gets
// matrix m's elements (l / 4, 2 (l % 4)) and (l / 4, 2 (l % 4) + 1); with .trans (2 (l % 4), l / 4) and
// (2 (l % 4) + 1, l / 4). The first element is the low half.
void emu_ldmatrix(uint32_t *r, int nmat, int trans, const void *row)
{
    const char *what = trans ? "ldmatrix .trans" : "ldmatrix";
    const xchg_slot *s = xchg_begin(XCHG_LDMATRIX, &row, sizeof row, what);
    const uint16_t *rows[32];
    for (int l = 0; l < 32; l++) memcpy(&rows[l], s[l].data, sizeof rows[l]);
    for (int l = 0; l < 8 * nmat; l++)
        if ((uintptr_t)rows[l] % 16) {
            fprintf(stderr, "emu: %s: lane %d's row address %p is not 16-byte aligned\n", what, l,
                    (const void *)rows[l]);
            abort();
        }
    const int lane = cur & 31, g = lane >> 2, t = lane & 3;
    for (int m = 0; m < nmat; m++) {
        const uint16_t *const *mr = rows + 8 * m;
        uint16_t lo = trans ? mr[2 * t][g] : mr[g][2 * t], hi = trans ? mr[2 * t + 1][g] : mr[g][2 * t + 1];
        r[m] = (uint32_t)lo | (uint32_t)hi << 16;
    }
    xchg_done();
}

// cp.async, per thread: the copies issued since the last commit, and the committed groups in flight.
struct async_copy {
    void *dst;
    unsigned char bytes[16];
};
struct async_state {
    std::vector<async_copy> open;
    std::deque<std::vector<async_copy>> inflight;
};
static std::vector<async_state> async_of;

void emu_cp_async_16(void *smem, const void *gmem, bool valid)
{
    if ((uintptr_t)smem % 16 || (uintptr_t)gmem % 16) {
        fprintf(stderr, "emu: cp.async of 16 bytes from %p to %p: both must be 16-byte aligned\n", gmem, smem);
        abort();
    }
    async_copy c;
    c.dst = smem;
    if (valid)
        memcpy(c.bytes, gmem, 16);
    else
        memset(c.bytes, 0, 16);
    async_of[cur].open.push_back(c);
}
void emu_cp_async_commit(void)
{
    async_state &a = async_of[cur];
    a.inflight.push_back(std::move(a.open));
    a.open.clear();
}
void emu_cp_async_wait(int n)
{
    async_state &a = async_of[cur];
    while (a.inflight.size() > (size_t)n) {
        for (const async_copy &c : a.inflight.front()) memcpy(c.dst, c.bytes, 16);
        a.inflight.pop_front();
    }
}

void emu_fiber_main(void)
{
    asan_entered_fiber();
    (*cur_body)();
    fib[cur].state = DONE;
    n_live--, warp_live[cur >> 5]--;
    asan_leaving(nullptr, sched_stack, sched_stack_size);  // for good: its fake frames may go
    ctx_switch(&fib[cur].ctx, &sched);
}

// Opens the barrier that every live participant has reached (see above), queueing the fibers it releases;
// false if there is none.
static bool open_barrier(unsigned nt, unsigned nw)
{
    if (n_at_block == n_live) {
        for (unsigned t = 0; t < nt; t++)
            if (fib[t].state == WAIT_BLOCK) fib[t].state = RUN, runnable.push_back((int)t);
        n_at_block = 0;
        return true;
    }
    for (unsigned w = 0; w < nw; w++)
        if (warp_waiting[w] && warp_waiting[w] == warp_live[w]) {
            for (unsigned t = 32 * w; t < nt && t < 32 * w + 32; t++)
                if (fib[t].state == WAIT_WARP) fib[t].state = RUN, runnable.push_back((int)t);
            warp_waiting[w] = 0;
            return true;
        }
    return false;
}

// The order in which the scheduler runs the fibers it released: index order, or with EMU_SCHEDULE=reverse the
// reverse. A fiber runs alone from one barrier to the next, so between two barriers every write of a lower-numbered
// thread lands before a higher-numbered one reads in index order, and after it in reverse: a missing barrier
// between a write and another thread's read shows in one of the two orders, whichever side of it the reader is.
static bool reverse_schedule(void)
{
    const char *e = getenv("EMU_SCHEDULE");
    if (!e || !*e || strcmp(e, "forward") == 0) return false;
    if (strcmp(e, "reverse") == 0) return true;
    fprintf(stderr, "emu: EMU_SCHEDULE=%s: expected forward or reverse\n", e);
    abort();
}

// EMU_COUNT=1: at exit, on standard error, what the process asked of the device: kernel launches, cuBLAS GEMM
// calls (a grouped call counts as its problems), cudaMemset calls, and cudaMemcpy calls by direction (each one to
// the host waits for the device: a host synchronisation). Counted without a GPU, the figures are what a step
// costs in launches and synchronisations.
static struct emu_counts {
    long launches, gemms, memsets, h2d, d2h, d2d, syncs;
    ~emu_counts()
    {
        if (getenv("EMU_COUNT"))
            fprintf(stderr, "emu: %ld kernel launches, %ld cuBLAS GEMM calls, %ld memsets, %ld copies host to device, "
                    "%ld device to host, %ld device to device, %ld device synchronisations\n", launches, gemms, memsets,
                    h2d, d2h, d2d, syncs);
    }
} counts;

void emu_run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body)
{
    static const bool reverse = reverse_schedule();
    counts.launches++;
    unsigned nt = block.x * block.y * block.z, nw = (nt + 31) / 32;
    if (nt == 0 || nt > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "emu: bad launch geometry grid (%u, %u, %u) block %u\n", grid.x, grid.y, grid.z, nt);
        abort();
    }
    if (smem > 227 * 1024) {
        fprintf(stderr, "emu: %zu bytes of dynamic shared memory: more than a Hopper SM has\n", smem);
        abort();
    }
    slots.assign((size_t)nw * 32, 0.0);
    match_vals.assign((size_t)nw * 32, 0);
    preds.assign(nt, 0);
    xchg.assign((size_t)nw * 32, xchg_slot{XCHG_NONE, {}});
    asan_mark(dyn.data(), dyn.capacity() * sizeof(float), true);
    dyn.resize(smem / sizeof(float) + 33);   // room to align the start (emu_dyn_smem); filled block by block below
    {   // the bytes around the block's dynamic shared memory unreadable to the memory checker
        const char *lo = (const char *)dyn.data(), *b = (const char *)emu_dyn_smem(), *e = b + smem;
        asan_mark(lo, (size_t)(b - lo), false);
        asan_mark(e, (size_t)(lo + dyn.size() * sizeof(float) - e), false);
    }
    // fibers 0 .. nt - 1 run the block; these vectors never shrink, so that launches of other block sizes in turn
    // keep their stacks and copy queues rather than allocate them again
    if (fib.size() < nt) fib.resize(nt);
    if (async_of.size() < nt) async_of.resize(nt);
    warp_live.resize(nw), warp_waiting.resize(nw);
    runnable.reserve(nt);
    for (unsigned t = 0; t < nt; t++) {
        fib[t].stack.resize(256 * 1024);
        fib[t].tid = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    }
    cur_body = &body;
    blockDim = block, gridDim = grid;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                runnable.clear();
                for (unsigned t = 0; t < nt; t++) {
                    fiber &f = fib[t];
                    async_of[t].open.clear(), async_of[t].inflight.clear();  // copies a block left in flight die with it
                    asan_fresh_stack(f.stack.data(), f.stack.size());
                    ctx_start(&f.ctx, f.stack.data(), f.stack.size());
                    f.state = RUN;
                    runnable.push_back((int)t);
                }
                n_live = nt, n_at_block = 0;
                // NaN, so that shared memory read before written shows; also what the block before left, which is
                // not there on a GPU
                memset(emu_dyn_smem(), 0xff, smem);
                for (unsigned w = 0; w < nw; w++) warp_live[w] = std::min(32u, nt - 32 * w), warp_waiting[w] = 0;
                for (;;) {
                    for (size_t i = 0, nr = runnable.size(); i < nr; i++) {
                        const int t = runnable[reverse ? nr - 1 - i : i];
                        cur = t;
                        threadIdx = fib[t].tid;
                        void *save;
                        asan_leaving(&save, fib[t].stack.data(), fib[t].stack.size());
                        ctx_switch(&sched, &fib[t].ctx);
                        asan_back(save);
                    }
                    runnable.clear();
                    if (n_live == 0) break;
                    if (!open_barrier(nt, nw)) {
                        fprintf(stderr, "emu: deadlock in block (%u, %u, %u): %u live threads, %u at __syncthreads, "
                                "the rest at warp shuffles of partly exited or divergent warps\n", x, y, z, n_live,
                                n_at_block);
                        abort();
                    }
                }
            }
}

static std::map<const void *, int> optin;  // kernel -> the dynamic shared memory it opted in to
void emu_smem_optin(const void *kernel, int bytes) { optin[kernel] = bytes; }
void emu_smem_check(const void *kernel, size_t smem)
{
    if (smem <= 48 * 1024) return;
    auto it = optin.find(kernel);
    if (it == optin.end() || (size_t)it->second < smem) {
        fprintf(stderr, "emu: a launch with %zu bytes of dynamic shared memory, more than 48 KiB, without the kernel's "
                "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize) opt-in to that much: fails on a GPU\n",
                smem);
        abort();
    }
}

// Fresh device memory holds whatever was there before on a GPU: here all bits set (NaN as fp32 and bf16, -1 as
// int32), so that a kernel reading what nothing wrote shows it in its results. Every block is remembered (start ->
// size) until it is freed, for emu_device_range.
static std::map<uintptr_t, size_t> device_blocks;
static int progress(cudaStream_t s, long upto, int wait);   // the streams' calls (below)
cudaError_t cudaMalloc(void **p, size_t n)
{
    *p = malloc(n ? n : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, n);
    device_blocks[(uintptr_t)*p] = n;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p)
{
    if (p && !device_blocks.erase((uintptr_t)p)) {
        fprintf(stderr, "emulator: cudaFree of %p, which is not a block of device memory\n", p);
        abort();
    }
    free(p);
    return cudaSuccess;
}
int emu_device_range(const void *p, size_t n)
{
    auto it = device_blocks.upper_bound((uintptr_t)p);
    if (it == device_blocks.begin()) return 0;
    --it;
    return (uintptr_t)p + n <= it->first + it->second;
}
void emu_device_in_use(const void *p, size_t used, size_t held)
{
    asan_mark(p, used, true);
    asan_mark((const char *)p + used, held - used, false);
}
cudaError_t cudaMemset(void *p, int v, size_t n)
{
    counts.memsets++;
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k)
{
    (k == cudaMemcpyHostToDevice ? counts.h2d : k == cudaMemcpyDeviceToHost ? counts.d2h : counts.d2d)++;
    if (n) memmove(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void)
{
    counts.syncs++;
    progress(nullptr, -1, 1);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot) { *fr = *tot = 0; return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaSetDevice(int i) { return i == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
// Streams and events. Kernels and copies run on the legacy stream when they are launched, so that it is always
// idle; what a stream of NCCL's holds is the emulated NCCL's (emu_nccl.cc, where linked): its calls complete
// later, when something waits for them (a stream made to wait on an event recorded after them, a query, a
// device synchronisation), as on a GPU where the communicator's stream runs beside the compute. A handle not
// created, or used after it was destroyed, is an error, as on a GPU.
extern "C" {
// The number of calls queued on s so far, and their completion: up to call `upto` (-1: all; s NULL: every
// stream's), waiting for them (wait = 1) or only where they are done (0: returns whether they all are).
long emu_nccl_ticket(cudaStream_t s) __attribute__((weak));
int emu_nccl_progress(cudaStream_t s, long upto, int wait) __attribute__((weak));
}
static long ticket_of(cudaStream_t s) { return emu_nccl_ticket ? emu_nccl_ticket(s) : 0; }
static int progress(cudaStream_t s, long upto, int wait)
{
    return emu_nccl_progress ? emu_nccl_progress(s, upto, wait) : 1;
}
struct emu_stream { unsigned flags; };
struct emu_event {
    unsigned flags;
    cudaStream_t stream;  // where it was last recorded, and how many calls that stream held then
    long ticket;
};
static std::set<const void *> live_handles;
static bool live(const void *h) { return live_handles.count(h) != 0; }
static bool stream_ok(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy || live(s); }
int emu_stream_live(cudaStream_t s) { return stream_ok(s); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
    *s = new emu_stream{flags};
    live_handles.insert(*s);
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    if (!live(s)) return cudaErrorInvalidResourceHandle;
    progress(s, -1, 1);
    live_handles.erase(s);
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t s)
{
    if (!stream_ok(s)) return cudaErrorInvalidResourceHandle;
    return progress(s, -1, 0) ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags)
{
    *e = new emu_event{flags, nullptr, 0};
    live_handles.insert(*e);
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    if (!live_handles.erase(e)) return cudaErrorInvalidResourceHandle;
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    if (!live(e) || !stream_ok(s)) return cudaErrorInvalidResourceHandle;
    e->stream = s, e->ticket = ticket_of(s);
    return cudaSuccess;
}
// What runs on s after this call needs what e's stream held when e was recorded: that completes now.
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags)
{
    if (!live(e) || !stream_ok(s) || flags != 0) return cudaErrorInvalidResourceHandle;
    if (e->stream != s && e->stream != nullptr && e->stream != cudaStreamLegacy) progress(e->stream, e->ticket, 1);
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int i)
{
    if (i) return cudaErrorInvalidValue;
    snprintf(p->name, sizeof p->name, "CUDA emulator on the CPU");
    p->major = 9, p->minor = 0, p->totalGlobalMem = (size_t)1 << 30;
    return cudaSuccess;
}
const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidDevice: return "invalid device ordinal (emulated)";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle (emulated)";
    case cudaErrorNotReady: return "device not ready (emulated)";
    default: return "emulated error";
    }
}

struct emu_blas { int x; };
cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = new emu_blas; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void *, size_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t s) { return s ? "emulated cuBLAS error" : "success"; }

// Element i of an operand of type t, as float (bf16 exactly widened, as the tensor cores read it).
static float emu_elem(const void *p, cudaDataType t, size_t i)
{
    return t == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}

// cuBLAS's argument checks (a negative size, a leading dimension shorter than the stored rows) and the type
// combinations it supports for these compute types (cublasGemmEx's table): COMPUTE_32F takes A and B of one type
// with C fp32 or of A's type; COMPUTE_32F_FAST_16BF takes fp32 only.
static cublasStatus_t emu_gemm_check(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, cudaDataType at,
                                     int lda, cudaDataType bt, int ldb, cudaDataType ct, int ldc, cublasComputeType_t comp)
{
    int arows = ta == CUBLAS_OP_N ? m : k, brows = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < std::max(1, arows) || ldb < std::max(1, brows) || ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (comp == CUBLAS_COMPUTE_32F_FAST_16BF && (at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (comp == CUBLAS_COMPUTE_32F && (at != bt || (ct != CUDA_R_32F && ct != at))) return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}

// C (m, n; ldc) = alpha op(A) (m, k) op(B) (k, n) + beta C, column-major, summed in double; beta 0 never reads C
// (it may hold NaN poison, as on the GPU).
static void emu_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al, const void *A,
                     cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb, float be, void *C,
                     cudaDataType ct, int ldc)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int l = 0; l < k; l++) {
                float x = emu_elem(A, at, ta == CUBLAS_OP_N ? i + (size_t)l * lda : l + (size_t)i * lda);
                float y = emu_elem(B, bt, tb == CUBLAS_OP_N ? l + (size_t)j * ldb : j + (size_t)l * ldb);
                s += (double)x * y;
            }
            size_t o = i + (size_t)j * ldc;
            float r = (float)(al * s + (be == 0.0f ? 0.0 : (double)be * emu_elem(C, ct, o)));
            if (ct == CUDA_R_16BF)
                ((__nv_bfloat16 *)C)[o] = __float2bfloat16(r);
            else
                ((float *)C)[o] = r;
        }
}

cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t)
{
    cublasStatus_t st = emu_gemm_check(ta, tb, m, n, k, at, lda, bt, ldb, ct, ldc, comp);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    counts.gemms++;
    emu_gemm(ta, tb, m, n, k, *(const float *)alpha, A, at, lda, B, bt, ldb, *(const float *)beta, C, ct, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

static size_t emu_type_bytes(cudaDataType t) { return t == CUDA_R_16BF ? 2 : 4; }

// count GEMMs, item x on A + x sA, B + x sB, C + x sC (strides in elements). Besides the checks above
// (batchCount < 0 is invalid): output items that share an element, or an output that overlaps an input's
// address range, are undefined in cuBLAS; the emulator aborts on them.
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          long long sA, const void *B, cudaDataType bt, int ldb, long long sB,
                                          const void *beta, void *C, cudaDataType ct, int ldc, long long sC,
                                          int count, cublasComputeType_t comp, cublasGemmAlgo_t)
{
    cublasStatus_t st = emu_gemm_check(ta, tb, m, n, k, at, lda, bt, ldb, ct, ldc, comp);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (count < 0) return CUBLAS_STATUS_INVALID_VALUE;
    counts.gemms++;
    if (count == 0 || m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const size_t ea = emu_type_bytes(at), eb = emu_type_bytes(bt), ec = emu_type_bytes(ct);
    std::vector<uintptr_t> cel;
    cel.reserve((size_t)m * n * count);
    for (int x = 0; x < count; x++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) cel.push_back((uintptr_t)C + ((size_t)x * sC + i + (size_t)j * ldc) * ec);
    std::sort(cel.begin(), cel.end());
    if (std::adjacent_find(cel.begin(), cel.end()) != cel.end()) {
        fprintf(stderr, "emu: cublasGemmStridedBatchedEx: output items overlap (m %d n %d ldc %d strideC %lld count %d)\n",
                m, n, ldc, sC, count);
        abort();
    }
    // the address range of each operand over all items
    auto range = [&](const void *p, size_t esz, long long stride, int rows, int cols, int ld, uintptr_t *lo, uintptr_t *hi) {
        size_t last = (size_t)(rows - 1) + (size_t)(cols - 1) * ld + (size_t)(count - 1) * stride;
        *lo = (uintptr_t)p, *hi = (uintptr_t)p + (last + 1) * esz;
    };
    uintptr_t clo, chi, lo, hi;
    range(C, ec, sC, m, n, ldc, &clo, &chi);
    if (k > 0) {
        range(A, ea, sA, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda, &lo, &hi);
        bool bad = lo < chi && clo < hi;
        range(B, eb, sB, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb, &lo, &hi);
        bad = bad || (lo < chi && clo < hi);
        if (bad) {
            fprintf(stderr, "emu: cublasGemmStridedBatchedEx: the output overlaps an input\n");
            abort();
        }
    }
    const float al = *(const float *)alpha, be = *(const float *)beta;
    for (int x = 0; x < count; x++)
        emu_gemm(ta, tb, m, n, k, al, (const char *)A + (size_t)x * sA * ea, at, lda, (const char *)B + (size_t)x * sB * eb,
                 bt, ldb, be, (char *)C + (size_t)x * sC * ec, ct, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
