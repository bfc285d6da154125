/* coll-check: the collectives of dist/coll.h (the MPI transport) and the shard layout, run under mpirun -np N:
 * every rank checks what it received against the values each rank put in, and rank 0 prints one TAP line per
 * check with the number of ranks that found it wrong (tests/dist/coll-mpi.py runs it on 1 to 4 ranks). The
 * values are small integers, exact in floats, so the sums are exact whatever their order. */
#include "core/error.h"
#include "dist/coll.h"
#include "dist/dist.h"
#include "dist/shard_layout.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"

static scp_dist d;

/* One check: ok on every rank (rank 0 reports). */
static void check(int mine_ok, const char *what)
{
    double bad = mine_ok ? 0 : 1;
    scp_dist_allreduce_sum_f64(&d, &bad, 1, "check");
    if (d.rank == 0) tap_ok(bad == 0, "%s (%d ranks; %g found it wrong)", what, d.world, bad);
}

int main(int argc, char **argv)
{
    if (scp_dist_init(&d, &argc, &argv)) scp_die_last();
    const scp_coll *c = scp_coll_for(&d);
    int W = d.world, R = d.rank;

    /* all-gather of equal pieces (an odd size in bytes: 37 floats of 4 bytes) */
    int64_t per = 37;
    float *buf = calloc((size_t)(per * W), sizeof *buf);
    for (int64_t k = 0; k < per; k++) buf[R * per + k] = (float)(1000 * R + k);
    int rc = c->allgather_pieces(&d, buf, per * (int64_t)sizeof *buf, "test all-gather");
    int good = rc == 0;
    for (int r = 0; r < W; r++)
        for (int64_t k = 0; k < per; k++) good &= buf[r * per + k] == (float)(1000 * r + k);
    check(good, "all-gather of equal pieces: every rank holds every piece");

    /* reduce-scatter: rank r contributes (r + 1) * (k + 1) to element k of the whole vector */
    float *x = malloc(sizeof *x * (size_t)(per * W)), *out = malloc(sizeof *out * (size_t)per);
    for (int64_t k = 0; k < per * W; k++) x[k] = (float)((R + 1) * (k + 1));
    rc = c->reduce_scatter_f32(&d, x, out, per, "test reduce-scatter");
    good = rc == 0;
    float tri = (float)(W * (W + 1) / 2);
    for (int64_t k = 0; k < per; k++) good &= out[k] == tri * (float)(R * per + k + 1);
    check(good, "reduce-scatter: piece r is the sum over ranks");

    /* all-to-all with sizes: rank r sends r + q + 1 bytes of value 16 r + q to rank q */
    int64_t *sb = malloc(sizeof *sb * (size_t)W), *rb = malloc(sizeof *rb * (size_t)W), st = 0, rt = 0;
    for (int q = 0; q < W; q++) sb[q] = R + q + 1, rb[q] = q + R + 1, st += sb[q], rt += rb[q];
    unsigned char *send = malloc((size_t)st), *recv = calloc((size_t)rt, 1), *p = send;
    for (int q = 0; q < W; q++) memset(p, 16 * R + q, (size_t)sb[q]), p += sb[q];
    rc = c->alltoallv(&d, send, sb, recv, rb, "test all-to-all");
    good = rc == 0;
    p = recv;
    for (int q = 0; q < W; q++)
        for (int64_t k = 0; k < rb[q]; k++) good &= *p++ == (unsigned char)(16 * q + R);
    check(good, "all-to-all with sizes: block q from rank q, in order");

    /* all-reduce */
    float s[3] = {(float)R, 1.0f, (float)(2 * R)};
    rc = c->allreduce_f32(&d, s, 3, "test all-reduce");
    check(rc == 0 && s[0] == (float)(W * (W - 1) / 2) && s[1] == (float)W && s[2] == (float)(W * (W - 1)),
          "all-reduce: the sum over ranks");

    /* gather to the last rank: shares of 5 + r floats */
    int64_t *lo = malloc(sizeof *lo * (size_t)(W + 1));
    lo[0] = 0;
    for (int r = 0; r < W; r++) lo[r + 1] = lo[r] + 5 + r;
    float *part = malloc(sizeof *part * (size_t)(5 + R)), *full = calloc((size_t)lo[W], sizeof *full);
    for (int k = 0; k < 5 + R; k++) part[k] = (float)(100 * R + k);
    rc = scp_dist_gather_to(&d, W - 1, full, part, lo, "test gather");
    good = rc == 0;
    if (R == W - 1)
        for (int r = 0; r < W; r++)
            for (int64_t k = 0; k < lo[r + 1] - lo[r]; k++) good &= full[lo[r] + k] == (float)(100 * r + k);
    check(good, "gather to the last rank: every share in its place");

    /* the shard layout: the pieces of every unit cover it once, in rank order, and the shards are equal */
    int64_t ulo[4] = {0, 1000, 1001, 5003};
    scp_shard_layout L;
    scp_shard_layout_init(&L, ulo, 3, W, R);
    good = 1;
    for (int u = 0; u < 3; u++) {
        int64_t next = ulo[u];
        good &= L.per[u] % 16 == 0 && L.per[u] * W >= ulo[u + 1] - ulo[u];
        for (int r = 0; r < W; r++) {
            int64_t a, b;
            scp_shard_piece(&L, u, r, &a, &b);
            good &= a == next || (a == b && a == ulo[u + 1]);
            next = b;
        }
        good &= next == ulo[u + 1];
    }
    good &= L.shard_off[3] == L.per[0] + L.per[1] + L.per[2];
    check(good, "shard layout: 16-float pieces cover each unit once, in rank order");
    scp_shard_layout_free(&L);

    free(buf), free(x), free(out), free(sb), free(rb), free(send), free(recv), free(lo), free(part), free(full);
    int failed = tap_failed;
    if (R == 0) tap_done();
    scp_dist_finish(&d);
    return R == 0 ? (failed ? 1 : 0) : 0;
}
