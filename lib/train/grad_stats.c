/* train/grad_stats.c: per-group gradient norms, update ratios and the noise scale of a step (train/grad_stats.h). */
#include "train/grad_stats.h"
#include "model/backend.h"

#include <math.h>
#include <string.h>

void scp_grad_stats_init(scp_grad_stats *s, const scp_model *m, int on, scp_noise *noise)
{
    memset(s, 0, sizeof *s);
    s->on = on;
    s->noise = noise;
    for (int i = 0; i < m->n_params; i++) s->present[m->desc[i].group] = 1;
}

void scp_grad_stats_free(scp_grad_stats *s, scp_model *m)
{
    if (s->prev) m->backend->free(s->prev);
    s->prev = NULL;
}

void scp_grad_stats_begin(scp_grad_stats *s)
{
    s->have_small = s->measured = s->have_estimate = s->updated = 0;
}

void scp_grad_stats_small(scp_grad_stats *s, const scp_model *m, double share)
{
    if (!s->on || s->sharded || !(share > 0 && share < 1)) return;
    scp_model_grad_sumsq_groups(m, s->small_raw);
    s->share = share;
    s->have_small = 1;
}

int scp_grad_stats_big(scp_grad_stats *s, const scp_model *m, scp_dist *d, double b_big)
{
    if (!s->on || s->sharded) return 0;
    scp_model_grad_sumsq_groups(m, s->big_sq);
    s->measured = 1;
    s->b_big = b_big;
    /* This rank's estimates, then their sum over the ranks: (g2, s) per group, |G_small|^2, B_small, samples. */
    enum { G = SCP_GROUP_COUNT };
    double v[2 * G + 3] = {0};
    if (s->have_small) {
        /* G_small = accumulated / share, so its squared norm divides by share^2. */
        double small_sq = 0, big_sq = 0, b_small = s->share * b_big;
        int ok = 1;
        for (int g = 0; g < G && ok; g++) {
            double sq = s->small_raw[g] / (s->share * s->share);
            small_sq += sq;
            big_sq += s->big_sq[g];
            ok = scp_noise_estimate(sq, b_small, s->big_sq[g], b_big, &v[g], &v[G + g]) == 0;
        }
        if (ok && isfinite(small_sq) && isfinite(big_sq)) {
            v[2 * G] = small_sq;
            v[2 * G + 1] = b_small;
            v[2 * G + 2] = 1;
        } else {
            memset(v, 0, sizeof v);
        }
    }
    if (d && scp_dist_allreduce_sum_f64(d, v, 2 * G + 3, "noise scale all-reduce")) return -1;
    double n = v[2 * G + 2];
    if (n < 1) return 0;
    double g2_all = 0, s_all = 0;
    for (int g = 0; g < G; g++) {
        s->est_g2[g] = v[g] / n, s->est_s[g] = v[G + g] / n;
        g2_all += s->est_g2[g], s_all += s->est_s[g];
    }
    s->small_sq = v[2 * G] / n;
    s->b_small = v[2 * G + 1] / n;
    s->big_sq_all = 0;
    for (int g = 0; g < G; g++) s->big_sq_all += s->big_sq[g];
    s->have_estimate = 1;
    scp_noise_fold(s->noise, g2_all, s_all, s->est_g2, s->est_s);
    return 0;
}

int scp_grad_stats_small_shards(scp_grad_stats *s, scp_dist *d, double sq, double share)
{
    if (!s->on || !s->sharded) return 0;
    double v = share;   /* the ranks' first micro-batches together weigh the sum of their shares */
    if (d && scp_dist_allreduce_sum_f64(d, &v, 1, "noise scale all-reduce")) return -1;
    if (!(v > 0 && v < 1)) return 0;
    s->share = v;
    s->small_sq = sq / (v * v);
    s->have_small = 1;
    return 0;
}

void scp_grad_stats_big_shards(scp_grad_stats *s, double sq, double b_big)
{
    if (!s->on || !s->sharded || !s->have_small) return;
    double g2, tr, b_small = s->share * b_big;
    if (!isfinite(sq) || !isfinite(s->small_sq) || scp_noise_estimate(s->small_sq, b_small, sq, b_big, &g2, &tr))
        return;
    s->big_sq_all = sq;
    s->b_small = b_small;
    s->b_big = b_big;
    s->have_estimate = 1;
    scp_noise_fold(s->noise, g2, tr, NULL, NULL);
}

void scp_grad_stats_before_update(scp_grad_stats *s, scp_model *m)
{
    if (!s->on || s->sharded) return;
    const scp_backend *be = m->backend;
    size_t bytes = (size_t)m->n_weights * sizeof(float);
    const float *w = scp_model_master(m);
    if (!s->prev) s->prev = be->alloc(bytes);
    be->copy_bytes(s->prev, w, bytes);
    scp_model_sumsq_groups(m, w, s->w_sq);
}

void scp_grad_stats_after_update(scp_grad_stats *s, scp_model *m)
{
    if (!s->on || s->sharded) return;
    const scp_backend *be = m->backend;
    size_t n = (size_t)m->n_weights;
    /* prev becomes W_after - W_before: -W_before + W_after */
    be->scale(s->prev, n, -1.0f);
    be->add(s->prev, scp_model_master(m), n);
    scp_model_sumsq_groups(m, s->prev, s->dw_sq);
    s->updated = 1;
}

static json_t *real_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* {"GROUP": f(g)} over the groups the model has. */
static json_t *groups_json(const scp_grad_stats *s, double (*f)(const scp_grad_stats *, int))
{
    json_t *j = json_object();
    for (int g = 0; g < SCP_GROUP_COUNT; g++)
        if (s->present[g]) json_object_set_new(j, scp_group_name((scp_group)g), real_or_null(f(s, g)));
    return j;
}

static double group_noise(const scp_grad_stats *s, int g) { return scp_noise_scale(s->noise, g); }
static double group_norm(const scp_grad_stats *s, int g) { return sqrt(s->big_sq[g]); }
/* A skipped step made no update: its ratios are 0. */
static double group_ratio(const scp_grad_stats *s, int g)
{
    if (!s->updated) return 0.0;
    return s->w_sq[g] > 0 ? sqrt(s->dw_sq[g] / s->w_sq[g]) : NAN;
}

void scp_grad_stats_json(const scp_grad_stats *s, json_t *line)
{
    if (!s->on) return;
    json_object_set_new(line, "noise_scale", real_or_null(scp_noise_scale(s->noise, SCP_NOISE_ALL)));
    if (!s->sharded) json_object_set_new(line, "noise_scale_groups", groups_json(s, group_noise));
    int e = s->have_estimate;
    json_object_set_new(line, "grad_sq_small", e ? real_or_null(s->small_sq) : json_null());
    json_object_set_new(line, "grad_sq_big", e ? real_or_null(s->big_sq_all) : json_null());
    json_object_set_new(line, "batch_small", e ? json_real(s->b_small) : json_null());
    json_object_set_new(line, "batch_big", e ? json_real(s->b_big) : json_null());
    if (s->measured) json_object_set_new(line, "grad_norm_groups", groups_json(s, group_norm));
    if (s->measured) json_object_set_new(line, "update_ratio_groups", groups_json(s, group_ratio));
}
