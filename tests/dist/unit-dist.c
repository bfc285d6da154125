/* unit-dist.c: the pieces of data parallelism that need no second process: how rows and shards are cut, the
 * one-rank identities, and ZeRO-1's sharded AdamW against the whole-vector update (scp_model_adamw), shard by
 * shard with boundaries inside parameters. The multi-process behaviour is tests/dist/train-mpi*.py. */
#include "../tap.h"

#include "dist/dist.h"
#include "dist/zero.h"
#include "core/error.h"
#include "core/json.h"
#include "model/model.h"
#include "formats/model_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static scp_model *tiny_model(void)
{
    const char *js = "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 12, "
                     "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
                     "\"vocab_size\": 11, \"rms_norm_eps\": 1e-5, \"max_position_embeddings\": 32}";
    json_error_t err;
    json_t *j = json_loads(js, 0, &err);
    scp_model_config cfg;
    if (!j || scp_config_from_json(&cfg, j, "test")) return NULL;
    json_decref(j);
    scp_model *m = scp_model_new(&cfg, "cpu");
    scp_config_free(&cfg);
    return m;
}

int main(void)
{
    /* ---- rows of a global batch: contiguous, disjoint, covering, sizes differ by at most one ---- */
    int split_ok = 1;
    for (int n = 1; n <= 40; n++)
        for (int w = 1; w <= n && w <= 9; w++) {
            int64_t prev = 0, mn = n, mx = 0;
            for (int r = 0; r < w; r++) {
                int64_t lo, hi;
                scp_dist_split(n, w, r, &lo, &hi);
                if (lo != prev || hi < lo) split_ok = 0;
                if (hi - lo < mn) mn = hi - lo;
                if (hi - lo > mx) mx = hi - lo;
                prev = hi;
            }
            if (prev != n || mx - mn > 1) split_ok = 0;
        }
    tap_ok(split_ok, "scp_dist_split: contiguous blocks covering 0..n, sizes within one (n <= 40, w <= 9)");
    int64_t lo[4];
    scp_dist_split(10, 3, 0, &lo[0], &lo[1]);
    scp_dist_split(10, 3, 2, &lo[2], &lo[3]);
    tap_ok(lo[0] == 0 && lo[1] == 4 && lo[2] == 7 && lo[3] == 10, "10 rows over 3 ranks: [0,4) [4,7) [7,10)");

    /* ---- one rank: collectives are identities ---- */
    scp_dist d;
    scp_dist_single(&d);
    float x[3] = {1, 2, 3};
    double s[2] = {4, 5};
    scp_dist_allreduce_sum_f32(&d, x, 3, "t");
    scp_dist_allreduce_sum_f64(&d, s, 2, "t");
    scp_dist_step_sync(&d, 7);
    tap_ok(x[0] == 1 && x[2] == 3 && s[1] == 5 && d.world == 1 && d.rank == 0 && d.step == 7,
           "one rank: all-reduce, step sync are identities");
    tap_ok(scp_dist_any(&d, 15, "t") == 15 && scp_dist_any(&d, 0, "t") == 0, "one rank: scp_dist_any is the flag");
    int nrc = scp_dist_nccl_allreduce_f32(&d, x, 3, NULL);
    tap_ok(nrc == -1 && strstr(scp_last_error(), "NCCL") != NULL,
           "NCCL all-reduce without a communicator (or without NCCL) fails with a message: %s", scp_last_error());

    /* ---- ZeRO-1: AdamW shard by shard equals the whole-vector update ---- */
    scp_model *m = tiny_model();
    if (!tap_ok(m != NULL, "tiny model")) return tap_done();
    scp_model_init_random(m, 3, 0.1f);
    scp_model_alloc_grads(m);
    int64_t n = m->n_weights;
    float *w0 = malloc(sizeof *w0 * (size_t)n), *g = malloc(sizeof *g * (size_t)n);
    float *m1 = calloc((size_t)n, sizeof *m1), *v1 = calloc((size_t)n, sizeof *v1);
    float *m2 = calloc((size_t)n, sizeof *m2), *v2 = calloc((size_t)n, sizeof *v2);
    float *lr = malloc(sizeof *lr * (size_t)m->n_params);
    memcpy(w0, m->weights, sizeof *w0 * (size_t)n);
    for (int64_t i = 0; i < n; i++) g[i] = (float)((i * 7919 % 201) - 100) * 1e-3f;
    for (int i = 0; i < m->n_params; i++) lr[i] = i % 5 == 3 ? 0.0f : 1e-2f * (float)(1 + i % 3);   /* some frozen */
    /* reference: three steps over the whole vector */
    float *wref = malloc(sizeof *wref * (size_t)n);
    for (int k = 1; k <= 3; k++) {
        memcpy(m->grads, g, sizeof *g * (size_t)n);
        scp_model_adamw(m, m1, v1, lr, 0.9f, 0.95f, 1e-8f, 0.1f, k);
    }
    memcpy(wref, m->weights, sizeof *wref * (size_t)n);
    /* sharded: the pieces of 3 ranks (dist/shard_layout.h: unit by unit, piece boundaries inside parameters),
     * each rank with its own moments, updating its pieces of the same weights in turn (what the all-gather
     * then hands every rank) */
    memcpy(m->weights, w0, sizeof *w0 * (size_t)n);
    scp_zero1 z[3];
    scp_dist dr[3];
    for (int r = 0; r < 3; r++) {
        dr[r] = d;
        dr[r].world = 3, dr[r].rank = r;
        scp_zero1_init(&z[r], m, &dr[r]);
    }
    for (int k = 1; k <= 3; k++) {
        memcpy(m->grads, g, sizeof *g * (size_t)n);
        for (int r = 0; r < 3; r++) scp_zero1_update(&z[r], lr, 0.9f, 0.95f, 1e-8f, 0.1f, k);
    }
    /* the moments back in parameter order from each rank's pieces */
    int64_t covered = 0;
    for (int r = 0; r < 3; r++) {
        const scp_shard_layout *L = &z[r].lay;
        for (int u = 0; u < L->units; u++) {
            int64_t a, b;
            scp_shard_piece(L, u, r, &a, &b);
            if (b <= a) continue;
            memcpy(m2 + a, z[r].mom_m + L->shard_off[u], sizeof *m2 * (size_t)(b - a));
            memcpy(v2 + a, z[r].mom_v + L->shard_off[u], sizeof *v2 * (size_t)(b - a));
            covered += b - a;
        }
    }
    tap_ok(covered == n && z[0].lay.units == 4, "3 ranks' pieces of the %d units tile the %lld weights",
           z[0].lay.units, (long long)n);
    tap_ok(memcmp(m->weights, wref, sizeof *wref * (size_t)n) == 0 && memcmp(m1, m2, sizeof *m1 * (size_t)n) == 0 &&
               memcmp(v1, v2, sizeof *v1 * (size_t)n) == 0,
           "ZeRO-1 AdamW over 3 ranks' pieces (%lld floats each) bit-identical to scp_model_adamw, frozen groups kept",
           (long long)z[0].lay.shard_off[z[0].lay.units]);
    /* moments handed in piece by piece (what loading a checkpoint reads) land in each rank's pieces, and the
     * ranks' pieces of every parameter tile it */
    for (int64_t i = 0; i < n; i++) m1[i] = (float)i, v1[i] = (float)-i;
    int placed = 1;
    int64_t pieces = 0;
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < m->n_params; i++) {
            int64_t lo, hi;
            if (!scp_zero1_param_piece(&z[r], i, &lo, &hi)) continue;
            placed &= 0 <= lo && lo < hi && hi <= m->desc[i].numel;
            scp_zero1_set_moment_piece(&z[r], 0, i, m1 + m->offset[i] + lo);
            scp_zero1_set_moment_piece(&z[r], 1, i, v1 + m->offset[i] + lo);
            pieces += hi - lo;
        }
        const scp_shard_layout *L = &z[r].lay;
        for (int u = 0; u < L->units; u++) {
            int64_t a, b;
            scp_shard_piece(L, u, r, &a, &b);
            for (int64_t x = a; x < b; x++)
                placed &= z[r].mom_m[L->shard_off[u] + x - a] == (float)x && z[r].mom_v[L->shard_off[u] + x - a] == (float)-x;
        }
        scp_zero1_free(&z[r]);
    }
    tap_ok(placed && pieces == n, "moments loaded piece by piece into each rank's pieces at their parameter positions "
           "(%lld of %lld elements)", (long long)pieces, (long long)n);
    int frozen_same = 1;
    for (int i = 0; i < m->n_params; i++)
        if (lr[i] == 0.0f)
            frozen_same &= memcmp(m->weights + m->offset[i], w0 + m->offset[i], sizeof *w0 * (size_t)m->desc[i].numel) == 0;
    tap_ok(frozen_same, "frozen parameters untouched by the sharded update");
    free(w0), free(g), free(m1), free(v1), free(m2), free(v2), free(lr), free(wref);
    scp_model_free(m);
    return tap_done();
}
