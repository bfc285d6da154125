/* moe-unit.c: the MoE entries of the CPU backends (lib/model/cpu/moe.c) on hand-made inputs whose answers are known:
 * ties go to the lower index in order, renormalised weights sum to 1, k = E takes every expert in order of
 * probability, column sums and logsumexp as written out, the combine and its backward on a permutation; and the
 * model-level controls (model/moe.h) on a dense model (no experts, nothing counted). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "model/model.h"
#include "model/moe.h"
#include "../tap.h"

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol * (1 + fabs(b)); }

static void test_route(const scp_backend *be)
{
    /* row 0: all equal -> experts 0, 1 (ties in index order); row 1: 3 at 1, 2, 4 -> 1, 2; row 2: 5 largest at 4 */
    float logits[3 * 5] = {0, 0, 0, 0, 0, 1, 3, 3, 0, 3, 0, 1, 2, 3, 5};
    float probs[15], w[6], lse[3], psum[5];
    int32_t idx[6];
    be->moe_route(probs, idx, w, lse, psum, SCP_ACT(logits), 3, 5, 2, 1);
    tap_ok(idx[0] == 0 && idx[1] == 1 && idx[2] == 1 && idx[3] == 2 && idx[4] == 4 && idx[5] == 3,
           "%s: top-2 with ties in index order: [%d %d] [%d %d] [%d %d]", be->name, idx[0], idx[1], idx[2], idx[3], idx[4],
           idx[5]);
    tap_ok(close_to(w[0], 0.5, 1e-6) && close_to(w[1], 0.5, 1e-6) && close_to(w[2] + w[3], 1, 1e-6) &&
               close_to(w[4], 1 / (1 + exp(-2.0)), 1e-6),
           "%s: renormalised weights (%.6f %.6f, %.6f)", be->name, w[0], w[1], w[4]);
    double l2 = log(exp(0) + exp(1) + exp(2) + exp(3) + exp(5)), s = 0;
    for (int r = 0; r < 3; r++) s += probs[r * 5 + 3];
    tap_ok(close_to(lse[0], log(5.0), 1e-6) && close_to(lse[2], l2, 1e-6) && close_to(psum[3], s, 1e-6) &&
               close_to(probs[14], exp(5 - l2), 1e-6),
           "%s: logsumexp %.6f, probabilities and their column sums", be->name, lse[2]);
    be->moe_route(probs, idx, w, lse, psum, SCP_ACT(logits), 3, 5, 2, 0);
    tap_ok(close_to(w[4], exp(5 - l2), 1e-6) && close_to(w[0], 0.2, 1e-6), "%s: without norm_topk_prob the weights are the probabilities",
           be->name);
    be->moe_route(probs, idx, w, lse, psum, SCP_ACT(logits + 10), 1, 5, 5, 1);
    tap_ok(idx[0] == 4 && idx[1] == 3 && idx[2] == 2 && idx[3] == 1 && idx[4] == 0 && close_to(w[0], probs[4], 1e-6),
           "%s: k = E takes every expert by decreasing probability", be->name);
}

static void test_combine(const scp_backend *be)
{
    /* M 2 rows, k 2, D 3; y rows sorted by expert: pos maps (r, j) to a row of y */
    float y[4 * 3] = {1, 2, 3, 10, 20, 30, 100, 200, 300, 1000, 2000, 3000};
    int32_t pos[4] = {2, 0, 3, 1};
    float wt[4] = {0.25f, 0.75f, 0.5f, 0.5f}, out[6] = {1, 1, 1, 2, 2, 2};
    be->moe_combine(SCP_ACT(out), SCP_ACT(y), wt, pos, 2, 2, 3, 1.0f);
    tap_ok(out[0] == 1 + 25 + 0.75f && out[5] == 2 + 1500 + 15, "%s: weighted combine added to the residual (%g, %g)", be->name,
           out[0], out[5]);
    be->moe_combine(SCP_ACT(out), SCP_ACT(y), NULL, pos, 2, 2, 3, 0.0f);
    tap_ok(out[0] == 101 && out[4] == 2020, "%s: unweighted combine (the gather's backward) overwrites", be->name);
    float dout[6] = {1, 0, 0, 0, 1, 1}, dy[12], dw[4];
    memset(dy, 0xFF, sizeof dy);
    be->moe_combine_bwd(SCP_ACT(dy), dw, SCP_ACT(dout), SCP_ACT(y), wt, pos, 2, 2, 3);
    tap_ok(dy[6] == 0.25f && dy[7] == 0 && dy[0] == 0.75f && dy[10] == 0.5f && dy[4] == 0.5f && dw[0] == 100 &&
               dw[1] == 1 && dw[2] == 5000 && dw[3] == 50,
           "%s: combine backward: every row of dy written, d weight = dout . y", be->name);
}

static void test_route_bwd(const scp_backend *be)
{
    /* Finite differences of L = sum_j c_j w_j + sum_e a_e p_e + zc / 2 * lse^2 through the routing (norm on). */
    float z[6] = {0.3f, -1.2f, 0.8f, 0.1f, 1.5f, -0.4f}, c[2] = {0.7f, -1.3f}, a[6] = {0.1f, 0.2f, -0.3f, 0.05f, 0, 0.4f};
    const float zc = 0.3f;
    float p[6], w[2], lse[1], ps[6], dz[6];
    int32_t ix[2];
    be->moe_route(p, ix, w, lse, ps, SCP_ACT(z), 1, 6, 2, 1);
    be->moe_route_bwd(SCP_ACT(dz), c, p, lse, ix, w, a, zc, 1, 6, 2, 1);
    double worst = 0;
    for (int e = 0; e < 6; e++) {
        double f[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            double zz[6], mx = -1e30, sum = 0, pp[6];
            for (int i = 0; i < 6; i++) zz[i] = z[i] + (i == e ? (sgn ? -1e-4 : 1e-4) : 0), mx = zz[i] > mx ? zz[i] : mx;
            for (int i = 0; i < 6; i++) sum += exp(zz[i] - mx);
            for (int i = 0; i < 6; i++) pp[i] = exp(zz[i] - mx) / sum;
            double s2 = pp[ix[0]] + pp[ix[1]], L = c[0] * pp[ix[0]] / s2 + c[1] * pp[ix[1]] / s2 + zc / 2 * pow(mx + log(sum), 2);
            for (int i = 0; i < 6; i++) L += a[i] * pp[i];
            f[sgn] = L;
        }
        double fd = (f[0] - f[1]) / 2e-4, err = fabs(fd - dz[e]);
        worst = err > worst ? err : worst;
    }
    tap_ok(worst < 1e-4, "%s: routing backward matches finite differences (the choice held fixed): worst %.2g", be->name, worst);
}

int main(void)
{
    const char *names[] = {"cpu", "cpu-ref", "cpu-mirror"};
    for (int i = 0; i < 3; i++) {
        const scp_backend *be = scp_backend_find(names[i]);
        if (!tap_ok(be && be->moe_route && be->moe_route_bwd && be->moe_combine && be->moe_combine_bwd,
                    "%s has the MoE entries", names[i]))
            continue;
        test_route(be);
        test_combine(be);
        test_route_bwd(be);
    }
    /* The controls on a dense model: no experts, nothing counted. */
    scp_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = SCP_ARCH_LLAMA, c.hidden_size = 8, c.intermediate_size = 8, c.num_layers = 1, c.num_heads = 2;
    c.num_kv_heads = 2, c.head_dim = 4, c.vocab_size = 11, c.rms_norm_eps = 1e-5, c.rope_theta = 1e4;
    scp_model *m = scp_model_new(&c, "cpu");
    double aux = -1, z = -1;
    scp_model_moe_set_losses(m, 1, 1);
    scp_model_moe_set_share(m, 0.5);
    scp_model_moe_reset_stats(m);
    tap_ok(m && scp_model_moe_stats(m, NULL, &aux, &z) == 0 && aux == -1, "a dense model has no experts and ignores the MoE controls");
    scp_model_free(m);
    return tap_done();
}
