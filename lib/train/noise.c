/* train/noise.c: the gradient noise scale estimator (train/noise.h). */
#include "train/noise.h"
#include "core/error.h"
#include "core/json.h"

#include <math.h>

int scp_noise_estimate(double small_sq, double b_small, double big_sq, double b_big, double *g2, double *s)
{
    if (!(b_small > 0 && b_small < b_big)) return -1;
    *g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small);
    *s = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big);
    return 0;
}

void scp_noise_reset(scp_noise *e)
{
    for (int g = 0; g <= SCP_NOISE_ALL; g++) e->ema_s[g] = e->ema_g2[g] = 0.0;
    e->n = 0;
}

static void fold1(scp_noise *e, int g, double g2, double s)
{
    e->ema_g2[g] = SCP_NOISE_EMA * e->ema_g2[g] + (1.0 - SCP_NOISE_EMA) * g2;
    e->ema_s[g] = SCP_NOISE_EMA * e->ema_s[g] + (1.0 - SCP_NOISE_EMA) * s;
}

void scp_noise_fold(scp_noise *e, double g2_all, double s_all, const double *g2, const double *s)
{
    fold1(e, SCP_NOISE_ALL, g2_all, s_all);
    for (int g = 0; g < SCP_GROUP_COUNT && g2; g++) fold1(e, g, g2[g], s[g]);
    e->n++;
}

double scp_noise_scale(const scp_noise *e, int g)
{
    double s = e->ema_s[g], g2 = e->ema_g2[g];
    return e->n > 0 && g2 > 0 && isfinite(s) ? s / g2 : NAN;
}

/* The name of slot g in trainer_state.json. */
static const char *slot_name(int g) { return g == SCP_NOISE_ALL ? "all" : scp_group_name((scp_group)g); }

json_t *scp_noise_to_json(const scp_noise *e)
{
    json_t *j = json_object(), *s = json_object(), *g2 = json_object();
    for (int g = 0; g <= SCP_NOISE_ALL; g++) {
        json_object_set_new(s, slot_name(g), json_real(e->ema_s[g]));
        json_object_set_new(g2, slot_name(g), json_real(e->ema_g2[g]));
    }
    json_object_set_new(j, "steps", json_integer(e->n));
    json_object_set_new(j, "tr_sigma", s);
    json_object_set_new(j, "grad_sq", g2);
    return j;
}

int scp_noise_from_json(scp_noise *e, const json_t *j, const char *what)
{
    scp_noise_reset(e);
    if (!json_is_object(j)) return scp_error("%s: 'noise_scale_ema' is not an object", what);
    if (scp_json_get_int(j, "steps", &e->n, what) != 0 || e->n < 0)
        return scp_error("%s: 'noise_scale_ema' needs a count 'steps' of at least 0", what);
    static const char *const keys[2] = {"tr_sigma", "grad_sq"};
    for (int k = 0; k < 2; k++) {
        const json_t *o = json_object_get(j, keys[k]);
        if (!json_is_object(o)) return scp_error("%s: 'noise_scale_ema' needs an object '%s'", what, keys[k]);
        for (int g = 0; g <= SCP_NOISE_ALL; g++) {
            double *x = k ? &e->ema_g2[g] : &e->ema_s[g];
            const char *name = slot_name(g);
            if (scp_json_get_real(o, name, x, what) != 0 || !isfinite(*x))
                return scp_error("%s: 'noise_scale_ema.%s.%s' must be a finite number", what, keys[k], name);
        }
    }
    /* No step folded yet: the averages start from zero, as the trainer's own do (a state saved then has none) */
    if (e->n == 0) scp_noise_reset(e);
    return 0;
}
