/* pointwise_kern.h: row kernels of pointwise.c, included once per instruction set (see SCP_KNAME in cpu.h). */

/* h (I) = silu(g) * u, silu(g) = g * sigmoid(g); gu is [gate | up] (2I). */
static void SCP_KNAME(swiglu_fwd_row)(float *h, const float *gu, int I)
{
    const float *g = gu, *u = gu + I;
#pragma omp simd
    for (int i = 0; i < I; i++) h[i] = g[i] / (1.0f + scp_expf(-g[i])) * u[i];
}

/* d silu(g) / dg = s (1 + g (1 - s)) with s = sigmoid(g). */
static void SCP_KNAME(swiglu_bwd_row)(float *dgu, const float *d, const float *gu, int I)
{
    const float *g = gu, *u = gu + I;
    float *dg = dgu, *du = dgu + I;
#pragma omp simd
    for (int i = 0; i < I; i++) {
        float s = 1.0f / (1.0f + scp_expf(-g[i]));
        dg[i] = d[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        du[i] = d[i] * g[i] * s;
    }
}

/* One row of cross-entropy: one pass for the maximum, one for exp (kept in place when a gradient is wanted, so
 * the softmax is stored once, in the logits buffer itself), one to scale it into the gradient. Returns the nll. */
static float SCP_KNAME(ce_row)(float *l, int t, float w, int V, int backward)
{
    float mx = scp_max(l, V), lt = l[t], sum;
    if (backward) {
        sum = scp_exp_sum(l, mx, V);
        float k = w / sum;
#pragma omp simd
        for (int v = 0; v < V; v++) l[v] *= k;
        l[t] -= w;
    } else {
        float acc[SCP_LANES] = {0};
        int v = 0;
        for (; v + SCP_LANES <= V; v += SCP_LANES)
#pragma omp simd
            for (int q = 0; q < SCP_LANES; q++) acc[q] += scp_expf(l[v + q] - mx);
        for (int q = 0; v < V; v++, q++) acc[q] += scp_expf(l[v] - mx);
        sum = scp_lanes_sum(acc);
    }
    return logf(sum) + mx - lt;
}
