/* data/batch.c: data order, the MDM / AR rows of a training batch, and the names of the objectives and loss norms. */
#include "data/batch.h"
#include "core/error.h"
#include "core/rng.h"

#include <stdlib.h>
#include <string.h>

static const char *objective_names[] = {"mdm", "ar"};
static const char *loss_norm_names[] = {"length", "masked"};

static int lookup(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

const char *scp_objective_name(scp_objective x) { return objective_names[x]; }
const char *scp_loss_norm_name(scp_loss_norm x) { return loss_norm_names[x]; }
int scp_objective_parse(const char *s) { return lookup(objective_names, 2, s); }
int scp_loss_norm_parse(const char *s) { return lookup(loss_norm_names, 2, s); }

/* Seeds of the data order are derived apart from the masking streams (seed, index), which use the seed as is. */
#define ORDER_SALT 0x6f726465722d7631ull   /* "order-v1" */

void scp_data_order_init(scp_data_order *o, int64_t n, uint64_t seed, int shuffle)
{
    memset(o, 0, sizeof *o);
    o->n = n;
    o->seed = seed;
    o->shuffle = shuffle;
}

void scp_data_order_free(scp_data_order *o)
{
    (void)o;   /* nothing allocated: the permutation is computed */
}

/* A pseudo-random permutation of [0, n) without a table (a training set may hold 10^8 sequences): a 4-round
 * Feistel network over the smallest even number of bits covering n, keyed by (seed, epoch), with cycle walking
 * (re-apply until the value falls below n; the domain is less than 4n, so a few rounds on average). */
static uint64_t feistel(uint64_t x, int half_bits, uint64_t key)
{
    uint64_t mask = (1ull << half_bits) - 1, l = x >> half_bits, r = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
        uint64_t f = scp_mix3(key, round, r) & mask;
        uint64_t nl = r;
        r = l ^ f;
        l = nl;
    }
    return (l << half_bits) | r;
}

int64_t scp_data_order_at(scp_data_order *o, int64_t cursor)
{
    int64_t epoch = cursor / o->n, pos = cursor % o->n;
    if (!o->shuffle || o->n == 1) return pos;
    int half = 1;
    while ((1ull << (2 * half)) < (uint64_t)o->n) half++;
    uint64_t key = scp_mix3(o->seed, ORDER_SALT, (uint64_t)epoch), x = (uint64_t)pos;
    do x = feistel(x, half, key); while (x >= (uint64_t)o->n);
    return (int64_t)x;
}

void scp_batch_reserve(scp_train_batch *b, int B, int T)
{
    if (b->cap >= B && b->T == T) return;
    scp_batch_free(b);
    size_t n = (size_t)B * (size_t)T;
    b->tokens = scp_xmalloc(n * sizeof *b->tokens);
    b->doc = scp_xmalloc(n * sizeof *b->doc);
    b->pad_doc = scp_xmalloc(n * sizeof *b->pad_doc);
    b->input = scp_xmalloc(n * sizeof *b->input);
    b->target = scp_xmalloc(n * sizeof *b->target);
    b->weight = scp_xmalloc(n * sizeof *b->weight);
    b->mask = scp_xmalloc(n * sizeof *b->mask);
    b->t = scp_xcalloc((size_t)B, sizeof *b->t);
    b->n_scored = scp_xcalloc((size_t)B, sizeof *b->n_scored);
    b->n_len = scp_xcalloc((size_t)B, sizeof *b->n_len);
    b->cap = B;
    b->T = T;
    b->B = 0;
}

void scp_batch_free(scp_train_batch *b)
{
    free(b->tokens);
    free(b->doc);
    free(b->pad_doc);
    free(b->input);
    free(b->target);
    free(b->weight);
    free(b->mask);
    free(b->t);
    free(b->n_scored);
    free(b->n_len);
    memset(b, 0, sizeof *b);
}

int scp_batch_fetch(scp_train_batch *b, const scp_seq_source *src, scp_data_order *order, int64_t cursor, int B)
{
    scp_batch_reserve(b, B, src->T);
    b->B = B;
    for (int r = 0; r < B; r++) {
        int64_t i = scp_data_order_at(order, cursor + r);
        size_t off = (size_t)r * (size_t)src->T;
        if (src->get(src->ctx, i, b->tokens + off, b->doc + off)) return -1;
    }
    return 0;
}

void scp_batch_mdm_row(scp_train_batch *b, int r, double t, uint64_t mask_index, const scp_mdm_spec *s)
{
    int T = b->T;
    size_t off = (size_t)r * (size_t)T;
    const int32_t *x = b->tokens + off, *doc = b->doc + off;
    int32_t *in = b->input + off, *tg = b->target + off;
    uint8_t *mk = b->mask + off;
    scp_mask_sequence(s->seed, mask_index, t, s->sched, T, x, s->shift ? 1 : 0, s->mask_id, in, mk);
    int L = 0, scored = 0;
    for (int i = 0; i < T; i++) {
        int maskable = doc[i] >= 0 && !(s->shift && i == 0) && !(s->shift && s->doc_mask && i > 0 && doc[i] != doc[i - 1]);
        if (!maskable && mk[i]) {
            mk[i] = 0;
            in[i] = x[i];
        }
        L += maskable;
        tg[i] = -1;
    }
    for (int i = 0; i < T; i++)
        if (mk[i]) {
            tg[s->shift ? i - 1 : i] = x[i];
            scored++;
        }
    b->t[r] = t;
    b->n_len[r] = L;
    b->n_scored[r] = scored;
}

void scp_batch_ar_row(scp_train_batch *b, int r, int doc_mask)
{
    int T = b->T;
    size_t off = (size_t)r * (size_t)T;
    const int32_t *x = b->tokens + off, *doc = b->doc + off;
    int32_t *tg = b->target + off;
    memcpy(b->input + off, x, (size_t)T * sizeof *x);
    memset(b->mask + off, 0, (size_t)T);
    int n = 0;
    for (int i = 0; i < T; i++) {
        int ok = i + 1 < T && doc[i] >= 0 && doc[i + 1] >= 0 && (!doc_mask || doc[i] == doc[i + 1]);
        tg[i] = ok ? x[i + 1] : -1;
        n += ok;
    }
    b->t[r] = 0;
    b->n_len[r] = n;
    b->n_scored[r] = n;
}

void scp_batch_weights(scp_train_batch *b, scp_objective obj, scp_loss_norm norm, scp_mask_schedule sched, double scale)
{
    for (int r = 0; r < b->B; r++) {
        size_t off = (size_t)r * (size_t)b->T;
        double w = scale;
        if (obj == SCP_OBJ_MDM) {
            int denom = norm == SCP_NORM_LENGTH ? b->n_len[r] : b->n_scored[r];
            w = denom > 0 ? scp_mask_weight(sched, b->t[r]) * scale / denom : 0.0;
        }
        for (int i = 0; i < b->T; i++) b->weight[off + (size_t)i] = b->target[off + (size_t)i] >= 0 ? (float)w : 0.0f;
    }
}

scp_batch scp_batch_view(scp_train_batch *b, int r0, int nb, int doc_mask, scp_attn_mode attn, float anneal_p,
                         uint64_t anneal_seed)
{
    size_t off = (size_t)r0 * (size_t)b->T, n = (size_t)nb * (size_t)b->T;
    const int32_t *doc = NULL;
    if (doc_mask) {
        doc = b->doc + off;
    } else {
        int pad = 0;
        for (size_t i = 0; i < n && !pad; i++) pad = b->doc[off + i] < 0;
        if (pad) {
            for (size_t i = 0; i < n; i++) b->pad_doc[off + i] = b->doc[off + i] < 0 ? -1 : 0;
            doc = b->pad_doc + off;
        }
    }
    scp_batch v = {
        .B = nb, .T = b->T,
        .input = b->input + off, .target = b->target + off, .weight = b->weight + off, .doc = doc,
        .attn = attn, .anneal_p = anneal_p, .anneal_seed = anneal_seed,
    };
    return v;
}
