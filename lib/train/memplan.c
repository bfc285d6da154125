/* train/memplan.c: the bytes one rank of a training run holds and sends (train/memplan.h). */
#include "train/memplan.h"
#include "core/error.h"
#include "dist/dist.h"
#include "dist/shard_layout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The unit layout of config c over `world` ranks, seen from rank 0 (every rank's shard has the same length); under
 * expert parallelism over groups of E, its experts' units over the world / E ranks of each place. */
static void layout_of(const scp_model_config *c, int world, int E, scp_shard_layout *s)
{
    scp_param_desc *t;
    int n = scp_param_table(c, &t), split = E > 1;
    int64_t *lo = scp_xmalloc(sizeof *lo * (size_t)(2 * c->num_layers + 3));
    int units = scp_param_units_split(t, n, c->num_layers, split, lo);
    int *world_of = scp_xmalloc(sizeof *world_of * (size_t)units), *rank_of = scp_xcalloc((size_t)units, sizeof *rank_of);
    for (int u = 0; u < units; u++) world_of[u] = split && u > 0 && u < units - 1 && u % 2 == 0 ? world / E : world;
    scp_shard_layout_init_groups(s, lo, units, world, 0, world_of, rank_of);
    free(world_of);
    free(rank_of);
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
    const int w = o->world, z = o->zero, E = o->expert_parallel > 1 ? o->expert_parallel : 1;
    if (E > 1 && (z == 1 || w % E || c->num_experts == 0 || c->num_experts % E))
        return scp_error("expert parallelism over %d ranks: needs --zero 0, 2 or 3, a world it divides (%d ranks) "
                         "and a qwen3_moe model whose experts it divides (%d)", E, w, c->num_experts);
    scp_model_config held = *c;   /* the rank's own parameters: under expert parallelism, its place's experts */
    held.expert_ranks = E, held.expert_rank = 0;
    const int64_t n = scp_param_count(&held), f = sizeof(float), a = (int64_t)p->be.act_size;
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
    int64_t expert = 0, run = 0, longest = n;   /* floats of the held experts; the longest run (dist/expert.h) */
    if (E > 1) {
        scp_param_desc *t;
        int nt = scp_param_table(&held, &t);
        longest = 0;
        for (int i = 0; i < nt; i++) {
            expert += t[i].expert >= 0 ? t[i].numel : 0;
            /* the gradients are all-reduced in runs of experts and of the rest, one collective each */
            run = i > 0 && (t[i].expert >= 0) == (t[i - 1].expert >= 0) ? run + t[i].numel : t[i].numel;
            longest = run > longest ? run : longest;
        }
        free(t);
        /* the rows received per layer under balanced routing, kept per slot and as scratch (model/moe.c) */
        int64_t R = (int64_t)p->rows_per_pass * o->T * c->num_experts_per_tok;
        int64_t slots = o->recompute ? 1 : c->num_layers;
        p->activations += a * (c->hidden_size + 3 * (int64_t)c->moe_intermediate_size) * R * (slots + 1);
        /* per MoE layer and pass the rows leaving the rank (E - 1 of E): dispatch and combine forward, the outputs
         * again, the gradients out and back in the backward, and the dispatch again where the layer is rerun */
        p->all_to_all_bytes = (int64_t)p->passes * c->num_layers * (5 + (o->recompute ? 1 : 0)) * R * (E - 1) / E *
                              c->hidden_size * a;
    }
    p->expert_params = expert;

    if (z <= 1) {
        p->shard = n;
        int64_t gather_sent = 0;   /* floats a rank sends in ZeRO-1's weight all-gather */
        if (z == 1 && w > 1) {
            /* ZeRO-1 cuts as ZeRO-2/3 do (dist/zero.h); its moments are this rank's pieces, and the weights are
             * all-gathered unit by unit through a buffer of the largest gathered unit */
            scp_shard_layout s;
            layout_of(&held, w, 1, &s);
            p->shard = s.shard_off[s.units];
            p->buffers += f * s.max_unit;
            for (int u = 0; u < s.units; u++) gather_sent += (int64_t)(w - 1) * s.per[u];
            scp_shard_layout_free(&s);
        }
        p->master = f * n;
        p->weights = c_copy * n;
        p->grads = f * n;
        p->optimizer = 2 * f * p->shard;
        /* the gradients summed over all ranks; a held expert's over its world / E replicas */
        p->comm_bytes = ring(w, 2, (double)(f * (n - expert))) + ring(w / E, 2, (double)(f * expert)) +
                        f * gather_sent + p->all_to_all_bytes;
        /* CPU ranks all-reduce the gradients with MPI in host memory, which is then the backend's memory */
        if (p->be.host_memory) p->buffers += scp_dist_allreduce_temp_bytes(longest, w);
        if (o->grad_stats && E == 1) p->buffers += f * n;   /* the update ratios' copy of the master */
    } else {
        scp_shard_layout s;
        layout_of(&held, w, E, &s);
        /* Held at once during a backward (model/model.c): the embeddings' unit throughout, with first the final
         * norm's and LM head's unit, then one layer's units (the former is given back before the layers start),
         * in the buffers dist/fsdp.c keeps for them: one for the embeddings, one for the final norm and LM head
         * and each layer in turn, and under expert parallelism one for each layer's experts. */
        int U = s.units, lu = E > 1 ? 2 : 1;
        int64_t S = s.shard_off[U], piece = 0, gathered = 0, layer = 0, experts = 0, rs = 0, ag_outer = 0;
        for (int u = 0; u < U; u++) {
            int64_t g = s.per[u] * s.world_of[u], sent = (int64_t)(s.world_of[u] - 1) * s.per[u];
            piece = s.per[u] > piece ? s.per[u] : piece;
            gathered += g;
            rs += sent;   /* floats a rank sends reducing (or gathering) every unit once */
            if (u == 0 || u == U - 1) ag_outer += sent;
        }
        for (int l = 0; l < c->num_layers; l++) {
            int64_t g = s.per[1 + l * lu] * s.world_of[1 + l * lu];
            layer = g > layer ? g : layer;
            if (lu == 2) {
                g = s.per[2 + l * lu] * s.world_of[2 + l * lu];
                experts = g > experts ? g : experts;
            }
        }
        int64_t tail = s.per[U - 1] * s.world_of[U - 1], ahead = 0;
        /* Stage 3's prefetch (dist/fsdp.h) over several ranks, without expert groups and without keep: the even
         * units after the embeddings have a buffer of their own */
        if (z == 3 && w > 1 && E == 1 && !o->keep_gathered && !o->no_prefetch)
            for (int u = 2; u < U; u += 2) ahead = s.per[u] * s.world_of[u] > ahead ? s.per[u] * s.world_of[u] : ahead;
        int64_t G = s.per[0] * s.world_of[0] + (tail > layer ? tail : layer) + experts;
        scp_shard_layout_free(&s);
        p->shard = S;
        p->gathered = G;
        p->master = f * (z == 2 ? n : S);
        /* zero 3 with keep_gathered: at the end of the forward every unit is gathered */
        p->weights = z == 2 ? c_copy * n : a * (o->keep_gathered ? gathered : G + ahead);
        p->grads = f * (S + G);
        p->optimizer = 2 * f * S;
        p->buffers += f * piece;   /* this rank's piece of one unit's gradient, out of the reduce-scatter */
        /* bf16 reduction: a bf16 copy of the unit gradients held (G) and its piece */
        if (o->reduce_bf16 && w > 1) p->buffers += 2 * (G + piece);
        /* Sharded collectives move whole gathered units, world_of[u] pieces of per[u]: all but one per rank. */
        int64_t rsb = (o->reduce_bf16 ? 2 : f) * rs;
        if (z == 2)
            p->comm_bytes = p->passes * rsb + f * rs;   /* + the weights' all-gather after AdamW */
        else   /* each layer gathered for the forward and again for the backward (once when kept), the outer
                  units once */
            p->comm_bytes = p->passes * (rsb + a * (o->keep_gathered ? rs : 2 * rs - ag_outer));
        p->comm_bytes += p->all_to_all_bytes;
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
    if (o->expert_parallel > 1) {
        json_object_set_new(j, "expert_parallel", json_integer(o->expert_parallel));
        json_object_set_new(j, "expert_params", json_integer(p->expert_params));
        json_object_set_new(j, "all_to_all_bytes_per_step", json_integer(p->all_to_all_bytes));
    }
    if (gpu_memory > 0) {
        json_object_set_new(j, "gpu_memory", json_integer(gpu_memory));
        json_object_set_new(j, "fits", json_boolean(p->total <= gpu_memory));
    }
    return j;
}
