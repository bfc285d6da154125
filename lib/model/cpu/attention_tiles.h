/* attention_tiles.h: the per-(b, kv head) tiles of attention.c, included once per instruction set (see
 * SCP_KNAME in cpu.h); not a header for anything else. */
#define QB 4   /* queries per block: each key/value load feeds QB rows */

/* A product of 4 rows by a matrix: p_r[j] = sum_{d < hd} q_r[d] kt[d * T + j] for r < 4 and j < jn, the summed
 * index four at a time so that each pass over the output rows does 16 multiply-adds per 4 stores. Scores use it
 * with kt the transposed keys (d a head dim, j a key); P V and dS K with the summed index over keys (hd = number
 * of keys, T = jn = head dim, kt the (T, hd) rows of V or K). */
SCP_INLINE void SCP_KNAME(block_scores)(float *p0, float *p1, float *p2, float *p3, const float *q0, const float *q1,
                                           const float *q2, const float *q3, const float *kt, int T, int hd, int jn)
{
#pragma omp simd
    for (int j = 0; j < jn; j++) p0[j] = p1[j] = p2[j] = p3[j] = 0.0f;
    int d = 0;
    for (; d + 4 <= hd; d += 4) {
        const float *k0 = kt + (size_t)d * T, *k1 = k0 + T, *k2 = k1 + T, *k3 = k2 + T;
        float a0 = q0[d], a1 = q0[d + 1], a2 = q0[d + 2], a3 = q0[d + 3];
        float b0 = q1[d], b1 = q1[d + 1], b2 = q1[d + 2], b3 = q1[d + 3];
        float c0 = q2[d], c1 = q2[d + 1], c2 = q2[d + 2], c3 = q2[d + 3];
        float e0 = q3[d], e1 = q3[d + 1], e2 = q3[d + 2], e3 = q3[d + 3];
#pragma omp simd
        for (int j = 0; j < jn; j++) {
            float x0 = k0[j], x1 = k1[j], x2 = k2[j], x3 = k3[j];
            p0[j] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3;
            p1[j] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3;
            p2[j] += c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3;
            p3[j] += e0 * x0 + e1 * x1 + e2 * x2 + e3 * x3;
        }
    }
    for (; d < hd; d++) {
        const float *k0 = kt + (size_t)d * T;
        float a0 = q0[d], b0 = q1[d], c0 = q2[d], e0 = q3[d];
#pragma omp simd
        for (int j = 0; j < jn; j++) p0[j] += a0 * k0[j], p1[j] += b0 * k0[j], p2[j] += c0 * k0[j], p3[j] += e0 * k0[j];
    }
}

/* vis (T): 1 or 0 for each key j of query i of sequence b, by model/attn_visibility.h's parts: the keys up to i
 * (every key, bidirectional) by documents alone, the later ones (annealed) by their draw too; key is
 * scp_attn_anneal_key(seed, b). Written for the keys j0 <= j < end, the block's key range (fwd_tile). */
static void SCP_KNAME(vis_row)(float *vis, const scp_attn_args *a, int b, int i, uint64_t key, int j0, int end)
{
    const int past = a->causal ? (i + 1 < end ? i + 1 : end) : end;
#pragma omp simd
    for (int j = j0; j < past; j++) vis[j] = 1.0f;
    for (int j = past > j0 ? past : j0; j < end; j++) vis[j] = (float)scp_attn_anneal_visible_keyed(key, a->anneal_thresh, i, j);
    if (a->doc) {
        const int32_t *doc = a->doc + (size_t)b * a->T, di = doc[i];
        for (int j = j0; j < end; j++) vis[j] *= (float)scp_attn_doc_visible(di, doc[j], i, j);
    }
}

/* The keys [*j0, *jn) of the block of queries i0 .. i0 + nq - 1: 0 .. T, or up to the block's last query
 * (past_only), narrowed to the union of the rows' document spans where there are spans (lo, hi not NULL). */
static void SCP_KNAME(block_keys)(int *j0, int *jn, int i0, int nq, int T, int past_only, const int32_t *lo,
                                  const int32_t *hi)
{
    *j0 = 0, *jn = past_only ? i0 + nq : T;
    if (!lo) return;
    int s0 = T, s1 = 0;
    for (int r = 0; r < nq; r++) {
        if (lo[i0 + r] < s0) s0 = lo[i0 + r];
        if (hi[i0 + r] > s1) s1 = hi[i0 + r];
    }
    *j0 = s0;
    if (s1 < *jn) *jn = s1;
}

/* One (b, kv head) tile of the forward, QB queries at a time. kt (hd, T) holds this head's keys transposed, vr
 * (T, hd) and vt (hd, T) its values; qs and o (QB, hd) are scratch; dummy (T) absorbs the rows past T in the last
 * block; vis (QB, T) holds the block's visibility (1 or 0 per key) where the rule needs evaluating per pair,
 * once for the query heads of the kv head. lo, hi (T) are scratch for the document spans: a block of queries
 * works on the keys [j0, jn) of block_keys alone, and its rows of att are written there only (bwd_tile reads
 * the same range). */
static void SCP_KNAME(fwd_tile)(float *out, float *att, const float *q, const float *k, const float *v,
                                const scp_attn_args *a, int b, int kh, float *kt, float *vr, float *vt, float *qs,
                                float *o, float *dummy, float *vis, int32_t *lo, int32_t *hi)
{
    const int T = a->T, H = a->H, hd = a->hd, ld = a->ld_qkv, rep = H / a->KV, ldo = H * hd;
    /* past_only: query i's keys end at i (plain causal); ruled: documents, or annealed future keys, decide pair
     * by pair (vis_row); otherwise every key before jr is visible. */
    const int past_only = scp_attn_past_only(a), ruled = scp_attn_per_pair(a);
    const uint64_t key = scp_attn_anneal_key(a->anneal_seed, b);
    const int spans = a->doc && scp_attn_doc_spans(a->doc + (size_t)b * T, T, lo, hi);
    for (int j = 0; j < T; j++) {
        const float *kr = k + (size_t)(b * T + j) * ld + (size_t)kh * hd, *vv = v + (size_t)(b * T + j) * ld + (size_t)kh * hd;
        for (int d = 0; d < hd; d++) kt[(size_t)d * T + j] = kr[d], vt[(size_t)d * T + j] = vv[d];
        memcpy(vr + (size_t)j * hd, vv, (size_t)hd * sizeof(float));
    }
    for (int i0 = 0; i0 < T; i0 += QB) {
        const int nq = T - i0 < QB ? T - i0 : QB;
        int j0, jn;
        SCP_KNAME(block_keys)(&j0, &jn, i0, nq, T, past_only, spans ? lo : NULL, spans ? hi : NULL);
        if (ruled)
            for (int r = 0; r < nq; r++)
                SCP_KNAME(vis_row)(vis + (size_t)r * T, a, b, i0 + r, key, j0, past_only ? i0 + r + 1 : jn);
        for (int h = kh * rep; h < (kh + 1) * rep; h++) {
            float *p[QB];
            for (int r = 0; r < QB; r++) {
                int i = r < nq ? i0 + r : i0;
                const float *qr = q + (size_t)(b * T + i) * ld + (size_t)h * hd;
                for (int d = 0; d < hd; d++) qs[r * hd + d] = qr[d] * a->scale;
                p[r] = r < nq ? att + (((size_t)b * H + h) * T + i0 + r) * T : dummy;
            }
            float *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
            const float *q0 = qs, *q1 = qs + hd, *q2 = qs + 2 * hd, *q3 = qs + 3 * hd;
            SCP_KNAME(block_scores)(p0 + j0, p1 + j0, p2 + j0, p3 + j0, q0, q1, q2, q3, kt + j0, T, hd, jn - j0);
            for (int r = 0; r < nq; r++) {
                int i = i0 + r, jr = past_only ? i + 1 : jn;
                float *pr = p[r];
                float mx = -INFINITY, sum = 0.0f;
                if (ruled) {
                    const float *seen = vis + (size_t)r * T;
                    for (int j = j0; j < jr; j++)
                        if (seen[j] != 0.0f && pr[j] > mx) mx = pr[j];
                    if (mx == -INFINITY) {   /* no visible key: a zero row, as the reference gives (never NaN) */
                        for (int j = j0; j < jr; j++) pr[j] = 0.0f;
                        sum = 1.0f;
                    } else {
                        scp_exp_sum(pr + j0, mx, jr - j0);
                        for (int j = j0; j < jr; j++) {   /* hidden keys: exact zeros */
                            pr[j] *= seen[j];
                            sum += pr[j];
                        }
                    }
                } else {
                    mx = scp_max(pr + j0, jr - j0);
                    sum = scp_exp_sum(pr + j0, mx, jr - j0);
                }
                float inv = 1.0f / sum;
#pragma omp simd
                for (int j = j0; j < jr; j++) pr[j] *= inv;
                for (int j = jr; j < jn; j++) pr[j] = 0.0f;   /* causal: past this row's last key */
            }
            /* O = P V for the block's rows: for wide heads the same kernel with keys as the summed index (vr is
             * (T, hd)); for narrow ones (its vectors would be hd long) hd dot products over the keys of vt (hd, T). */
            if (hd >= 32) {
                SCP_KNAME(block_scores)(o, o + hd, o + 2 * hd, o + 3 * hd, p0 + j0, p1 + j0, p2 + j0, p3 + j0,
                                        vr + (size_t)j0 * hd, hd, jn - j0, hd);
            } else {
                for (int r = 0; r < nq; r++)
                    for (int d = 0; d < hd; d++) o[r * hd + d] = scp_dot(p[r] + j0, vt + (size_t)d * T + j0, jn - j0);
            }
            for (int r = 0; r < nq; r++)
                memcpy(out + (size_t)(b * T + i0 + r) * ldo + (size_t)h * hd, o + (size_t)r * hd, (size_t)hd * sizeof(float));
        }
    }
}

/* One (b, kv head) tile of the backward, QB queries at a time so that each pass over dK and dV (hd, T) adds QB
 * rows' contributions. With P the probabilities and dO the output gradient of one (b, h):
 *   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(P * dP)) * scale,  dQ = dS K,  dK += dS^T Q.
 * kt is (T, hd) (keys as rows), vt, dkt, dvt (hd, T); ps, ds are (QB, T) scratch (rows past a causal query's last
 * key are zero), qb, gb, dqb (QB, hd); lo, hi (T) scratch for the document spans, which give each block of
 * queries the key range fwd_tile used. */
static void SCP_KNAME(bwd_tile)(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                                const float *k, const float *v, const scp_attn_args *a, int b, int kh, float *kt, float *vt,
                                float *dkt, float *dvt, float *ps, float *ds, float *qb, float *gb, float *dqb,
                                int32_t *lo, int32_t *hi)
{
    const int T = a->T, H = a->H, hd = a->hd, ld = a->ld_qkv, rep = H / a->KV, ldo = H * hd;
    /* Hidden keys have probability 0 in att, hence dS = 0: the backward needs no rule, only the block's key
     * range. */
    const int past_only = scp_attn_past_only(a);
    const int spans = a->doc && scp_attn_doc_spans(a->doc + (size_t)b * T, T, lo, hi);
    for (int j = 0; j < T; j++) {   /* keys as rows (T, hd), values transposed (hd, T) */
        const float *kr = k + (size_t)(b * T + j) * ld + (size_t)kh * hd, *vv = v + (size_t)(b * T + j) * ld + (size_t)kh * hd;
        memcpy(kt + (size_t)j * hd, kr, (size_t)hd * sizeof(float));
        for (int d = 0; d < hd; d++) vt[(size_t)d * T + j] = vv[d];
    }
    memset(dkt, 0, (size_t)2 * hd * T * sizeof(float));
    for (int h = kh * rep; h < (kh + 1) * rep; h++)
        for (int i0 = 0; i0 < T; i0 += QB) {
            const int nq = T - i0 < QB ? T - i0 : QB;
            int j0, jn;
            SCP_KNAME(block_keys)(&j0, &jn, i0, nq, T, past_only, spans ? lo : NULL, spans ? hi : NULL);
            for (int r = 0; r < QB; r++) {
                float *pr = ps + (size_t)r * T, *dr = ds + (size_t)r * T;
                if (r >= nq) {
                    memset(pr + j0, 0, (size_t)(jn - j0) * sizeof(float));
                    memset(dr + j0, 0, (size_t)(jn - j0) * sizeof(float));
                    memset(qb + r * hd, 0, (size_t)hd * sizeof(float));
                    memset(gb + r * hd, 0, (size_t)hd * sizeof(float));
                    continue;
                }
                int i = i0 + r, jr = past_only ? i + 1 : jn;
                const float *p = att + (((size_t)b * H + h) * T + i) * T;
                const float *dor = dout + (size_t)(b * T + i) * ldo + (size_t)h * hd;
                memcpy(qb + r * hd, q + (size_t)(b * T + i) * ld + (size_t)h * hd, (size_t)hd * sizeof(float));
                memcpy(gb + r * hd, dor, (size_t)hd * sizeof(float));
                memcpy(pr + j0, p + j0, (size_t)(jr - j0) * sizeof(float));
                for (int j = jr; j < jn; j++) pr[j] = 0.0f;
            }
            /* dP for the block's rows, then dS in place, and dQ = dS K */
            SCP_KNAME(block_scores)(ds + j0, ds + T + j0, ds + 2 * T + j0, ds + 3 * T + j0, gb, gb + hd, gb + 2 * hd,
                                    gb + 3 * hd, vt + j0, T, hd, jn - j0);
            for (int r = 0; r < nq; r++) {
                float *pr = ps + (size_t)r * T, *dr = ds + (size_t)r * T;
                float dd = scp_dot(pr + j0, dr + j0, jn - j0);
#pragma omp simd
                for (int j = j0; j < jn; j++) dr[j] = pr[j] * (dr[j] - dd) * a->scale;
            }
            SCP_KNAME(block_scores)(dqb, dqb + hd, dqb + 2 * hd, dqb + 3 * hd, ds + j0, ds + T + j0, ds + 2 * T + j0,
                                    ds + 3 * T + j0, kt + (size_t)j0 * hd, hd, jn - j0, hd);
            for (int r = 0; r < nq; r++)
                memcpy(dq + (size_t)(b * T + i0 + r) * ld + (size_t)h * hd, dqb + (size_t)r * hd, (size_t)hd * sizeof(float));
            const float *p0 = ps, *p1 = ps + T, *p2 = ps + 2 * T, *p3 = ps + 3 * T;
            const float *d0 = ds, *d1 = ds + T, *d2 = ds + 2 * T, *d3 = ds + 3 * T;
            for (int d = 0; d < hd; d++) {
                float *dkd = dkt + (size_t)d * T, *dvd = dvt + (size_t)d * T;
                float qa = qb[d], qb1 = qb[hd + d], qc = qb[2 * hd + d], qd = qb[3 * hd + d];
                float ga = gb[d], gb1 = gb[hd + d], gc = gb[2 * hd + d], gd = gb[3 * hd + d];
#pragma omp simd
                for (int j = j0; j < jn; j++) {
                    dkd[j] += qa * d0[j] + qb1 * d1[j] + qc * d2[j] + qd * d3[j];
                    dvd[j] += ga * p0[j] + gb1 * p1[j] + gc * p2[j] + gd * p3[j];
                }
            }
        }
    for (int j = 0; j < T; j++) {
        float *dkr = dk + (size_t)(b * T + j) * ld + (size_t)kh * hd, *dvr = dv + (size_t)(b * T + j) * ld + (size_t)kh * hd;
        for (int d = 0; d < hd; d++) dkr[d] = dkt[(size_t)d * T + j], dvr[d] = dvt[(size_t)d * T + j];
    }
}

