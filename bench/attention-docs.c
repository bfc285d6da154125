/* attention-docs.c: what document-masked attention costs on the CPU backend when each block of queries works on
 * the keys of its own documents (model/attn_visibility.h scp_attn_doc_spans) against every key of the sequence,
 * in the same run on the same documents. The documents are packed one after another with lengths drawn
 * uniformly from [L/2, 3L/2]; "spans" numbers them in order, "every key" numbers the same documents backwards,
 * so that their ids decrease and the kernels find no spans: the same visible pairs, the same results (the
 * program prints the largest difference), the work of the whole (T, T) square. Prints the process CPU seconds
 * (all threads) of the forward and the backward, best of REPS, and the ratio.
 *
 *   bench/attention-docs [T [L [H [KV [HD [REPS [CAUSAL]]]]]]]   (default 8192 500 8 1 32 3 0) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/backend.h"
#include "model/model.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* The cpu table's activations are floats (act_size 4). */
#define A(p) ((scp_act *)(p))

static int arg(int argc, char **argv, int i, int def) { return argc > i ? atoi(argv[i]) : def; }

int main(int argc, char **argv)
{
    const int T = arg(argc, argv, 1, 8192), L = arg(argc, argv, 2, 500), H = arg(argc, argv, 3, 8);
    const int KV = arg(argc, argv, 4, 1), hd = arg(argc, argv, 5, 32), reps = arg(argc, argv, 6, 3);
    const int causal = arg(argc, argv, 7, 0);
    if (T < 1 || L < 2 || H < 1 || KV < 1 || H % KV || hd < 1 || reps < 1)
        scp_die("usage: attention-docs [T [L [H [KV [HD [REPS [CAUSAL]]]]]]] (H a multiple of KV)");
    scp_set_threads(0);
    const scp_backend *be = &scp_backend_cpu;
    const int ld = (H + 2 * KV) * hd;
    float *qkv = scp_xmalloc((size_t)T * ld * sizeof *qkv), *dout = scp_xmalloc((size_t)T * H * hd * sizeof *dout);
    uint64_t st = 1;
    for (size_t i = 0; i < (size_t)T * ld; i++) qkv[i] = (float)(scp_mix64(st++) >> 40) * 0x1p-24f * 2 - 1;
    for (size_t i = 0; i < (size_t)T * H * hd; i++) dout[i] = (float)(scp_mix64(st++) >> 40) * 0x1p-24f * 2 - 1;
    int32_t *sorted = scp_xmalloc((size_t)T * sizeof *sorted), *reversed = scp_xmalloc((size_t)T * sizeof *reversed);
    int ndocs = 0;
    for (int i = 0; i < T; ndocs++) {
        int len = L / 2 + (int)(scp_mix64(st++) % (uint64_t)(L + 1));
        for (int j = 0; j < len && i < T; j++) sorted[i++] = ndocs;
    }
    for (int i = 0; i < T; i++) reversed[i] = ndocs - 1 - sorted[i];
    const size_t na = be->attn_state_floats(1, H, T), no = (size_t)T * H * hd, nk = (size_t)T * ld;
    float *out[2], *att = scp_xmalloc(na * sizeof *att), *dqkv[2];
    double t_fwd[2], t_bwd[2];
    const char *name[2] = {"spans", "every key"};
    for (int m = 0; m < 2; m++) {
        out[m] = scp_xmalloc(no * sizeof(float)), dqkv[m] = scp_xcalloc(nk, sizeof(float));
        scp_attn_args a = {.B = 1, .T = T, .H = H, .KV = KV, .hd = hd, .ld_qkv = ld, .causal = causal,
                           .scale = 1.0f / sqrtf((float)hd), .doc = m ? reversed : sorted};
        t_fwd[m] = t_bwd[m] = INFINITY;
        for (int r = 0; r < reps; r++) {
            double t0 = cpu_now();
            be->attention_fwd(A(out[m]), att, A(qkv), A(qkv + H * hd), A(qkv + (H + KV) * hd), &a);
            double t1 = cpu_now();
            be->attention_bwd(A(dqkv[m]), A(dqkv[m] + H * hd), A(dqkv[m] + (H + KV) * hd), A(dout), A(out[m]), att,
                              A(qkv), A(qkv + H * hd), A(qkv + (H + KV) * hd), &a);
            double t2 = cpu_now();
            if (t1 - t0 < t_fwd[m]) t_fwd[m] = t1 - t0;
            if (t2 - t1 < t_bwd[m]) t_bwd[m] = t2 - t1;
        }
    }
    double diff = 0;
    for (size_t i = 0; i < no; i++) diff = fmax(diff, fabs(out[0][i] - out[1][i]));
    for (size_t i = 0; i < nk; i++) diff = fmax(diff, fabs(dqkv[0][i] - dqkv[1][i]));
    printf("T %d, %d documents (lengths %d..%d), H %d, KV %d, hd %d, %s, best of %d, CPU s (all threads):\n", T, ndocs,
           L / 2, L / 2 + L, H, KV, hd, causal ? "causal" : "bidirectional", reps);
    for (int m = 0; m < 2; m++) printf("  %-9s  forward %.3f  backward %.3f\n", name[m], t_fwd[m], t_bwd[m]);
    printf("  ratio      forward %.1fx  backward %.1fx; largest difference of outputs and gradients %.2g\n",
           t_fwd[1] / t_fwd[0], t_bwd[1] / t_bwd[0], diff);
    for (int m = 0; m < 2; m++) free(out[m]), free(dqkv[m]);
    free(qkv), free(dout), free(sorted), free(reversed), free(att);
    return 0;
}
