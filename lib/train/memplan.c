/* train/memplan.c: the bytes one rank of a training run holds and sends (train/memplan.h). */
#include "train/memplan.h"
#include "core/error.h"
#include "dist/dist.h"
#include "dist/shard_layout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The unit layout of config c over `world` ranks, seen from rank 0 (every rank's shard has the same length). */
static void layout_of(const scp_model_config *c, int world, scp_shard_layout *s)
{
    scp_param_desc *t;
    int n = scp_param_table(c, &t);
    int64_t *lo = scp_xmalloc(sizeof *lo * (size_t)(c->num_layers + 3));
    int units = scp_param_units(t, n, c->num_layers, lo);
    scp_shard_layout_init(s, lo, units, world, 0);
    free(lo);
    free(t);
}

/* Bytes a rank sends in a ring collective over w ranks of a vector of `bytes`: an all-gather or a reduce-scatter
 * forwards w - 1 of its w pieces, an all-reduce does both. */
static int64_t ring(int w, double pieces_per_rank, double bytes) { return (int64_t)llround(pieces_per_rank * (w - 1) / w * bytes); }

int scp_memplan_make(const scp_model_config *c, const scp_memplan_opts *o, scp_memplan *p)
{
    memset(p, 0, sizeof *p);
    if (o->zero < 0 || o->zero > 3) return scp_error("ZeRO stage %d: the stages are 0, 1, 2 and 3", o->zero);
    if (o->world < 1 || o->batch < 1 || o->micro < 1 || o->T < 1)
        return scp_error("plan: %d ranks, %d sequences per step, %d per pass, %d tokens each", o->world, o->batch,
                         o->micro, o->T);
    if (scp_backend_traits_find(o->backend, &p->be)) return -1;
    const int w = o->world, z = o->zero;
    const int64_t n = scp_param_count(c), f = sizeof(float), a = (int64_t)p->be.act_size;
    const int64_t c_copy = a == f ? 0 : a;   /* bytes per weight of the compute copy: none where it is the master */
    p->params = n;

    /* The sequences of rank 0 (scp_dist_split: the first batch % world ranks take one more), in passes of micro. */
    p->rows = (o->batch + w - 1) / w;
    p->rows_per_pass = o->micro < p->rows ? o->micro : p->rows;
    p->passes = (p->rows + o->micro - 1) / o->micro;
    scp_workspace_size(c, &p->be, p->rows_per_pass, o->T, o->recompute ? 1 : c->num_layers, 0, &p->ws);
    p->activations = (int64_t)p->ws.backend_bytes + (p->be.host_memory ? (int64_t)p->ws.host_bytes : 0);
    p->buffers = (int64_t)scp_backend_scratch_bytes(&p->be, p->rows_per_pass, o->T, c->num_heads, c->num_kv_heads,
                                                    c->head_dim);

    if (z <= 1) {
        int64_t *lo = scp_xmalloc(sizeof *lo * (size_t)(w + 1));
        scp_dist_shards(n, w, 16, lo);   /* ZeRO-1's cut (train/moments.c); rank 0's shard is the largest */
        p->shard = z == 1 ? lo[1] - lo[0] : n;
        free(lo);
        p->master = f * n;
        p->weights = c_copy * n;
        p->grads = f * n;
        p->optimizer = 2 * f * p->shard;
        p->comm_bytes = ring(w, 2, (double)(f * n)) + (z == 1 ? ring(w, 1, (double)(f * n)) : 0);
        /* CPU ranks all-reduce the gradients with MPI in host memory, which is then the backend's memory */
        if (p->be.host_memory) p->buffers += scp_dist_allreduce_temp_bytes(n, w);
        if (o->grad_stats) p->buffers += f * n;   /* the update ratios' copy of the master */
    } else {
        scp_shard_layout s;
        layout_of(c, w, &s);
        /* Held at once during a backward (model/model.c): the embeddings' unit throughout, with first the final
         * norm's and LM head's unit, then one layer's (the former is given back before the layers start). */
        int64_t tail = (int64_t)w * s.per[s.units - 1];
        int64_t S = s.shard_off[s.units], G = (int64_t)w * s.per[0] + (tail > s.max_layer ? tail : s.max_layer);
        int64_t piece = 0, outer;
        for (int u = 0; u < s.units; u++) piece = s.per[u] > piece ? s.per[u] : piece;
        outer = s.per[0] + s.per[s.units - 1];
        scp_shard_layout_free(&s);
        p->shard = S;
        p->gathered = G;
        p->master = f * (z == 2 ? n : S);
        /* zero 3 with keep_gathered: at the end of the forward every unit is gathered, w * S floats */
        p->weights = z == 2 ? c_copy * n : a * (o->keep_gathered ? (int64_t)w * S : G);
        p->grads = f * (S + G);
        p->optimizer = 2 * f * S;
        p->buffers += f * piece;   /* this rank's piece of one unit's gradient, out of the reduce-scatter */
        /* bf16 reduction: a bf16 copy of the unit gradients held (G) and its piece */
        if (o->reduce_bf16 && w > 1) p->buffers += 2 * (G + piece);
        /* Sharded collectives move whole gathered units, w pieces of per[u]: w - 1 pieces per rank. */
        int64_t rs = (int64_t)(w - 1) * (o->reduce_bf16 ? 2 : f) * S;
        if (z == 2)
            p->comm_bytes = p->passes * rs + (int64_t)(w - 1) * f * S;   /* + the weights' all-gather after AdamW */
        else   /* each layer gathered for the forward and again for the backward (once when kept), the outer
                  units once */
            p->comm_bytes = p->passes * (rs + (int64_t)(w - 1) * a * (o->keep_gathered ? S : 2 * S - outer));

    }
    p->total = p->weights + p->master + p->grads + p->optimizer + p->activations + p->buffers;
    return 0;
}

json_t *scp_memplan_json(const scp_memplan *p, const scp_memplan_opts *o, const char *config, int64_t gpu_memory)
{
    json_t *j = json_object(), *r = json_object();
    json_object_set_new(j, "config", json_string(config));
    json_object_set_new(j, "backend", json_string(p->be.name));
    json_object_set_new(j, "memory", json_string(p->be.host_memory ? "host" : "device"));
    json_object_set_new(j, "params", json_integer(p->params));
    json_object_set_new(j, "world", json_integer(o->world));
    json_object_set_new(j, "zero", json_integer(o->zero));
    json_object_set_new(j, "seq_len", json_integer(o->T));
    json_object_set_new(j, "batch_sequences", json_integer(o->batch));
    json_object_set_new(j, "rank_sequences", json_integer(p->rows));
    json_object_set_new(j, "micro_batch", json_integer(p->rows_per_pass));
    json_object_set_new(j, "micro_batches", json_integer(p->passes));
    json_object_set_new(j, "recompute", json_boolean(o->recompute));
    if (o->zero >= 2) json_object_set_new(j, "reduce_dtype", json_string(o->reduce_bf16 ? "bf16" : "f32"));
    json_object_set_new(j, "shard_floats", json_integer(p->shard));
    json_object_set_new(r, "weights", json_integer(p->weights));
    json_object_set_new(r, "master", json_integer(p->master));
    json_object_set_new(r, "grads", json_integer(p->grads));
    json_object_set_new(r, "optimizer", json_integer(p->optimizer));
    json_object_set_new(r, "activations", json_integer(p->activations));
    json_object_set_new(r, "buffers", json_integer(p->buffers));
    json_object_set_new(r, "total", json_integer(p->total));
    json_object_set_new(j, "per_rank", r);
    json_object_set_new(j, "comm_bytes_per_step", json_integer(p->comm_bytes));
    if (gpu_memory > 0) {
        json_object_set_new(j, "gpu_memory", json_integer(gpu_memory));
        json_object_set_new(j, "fits", json_boolean(p->total <= gpu_memory));
    }
    return j;
}
