/* dist/expert.h: expert parallelism for scp-train (--expert-parallel P), on top of data parallelism.
 *
 * The world's ranks form world / P expert groups of P consecutive ranks (ranks g P .. g P + P - 1). Rank g P + j
 * holds, of every MoE layer, the experts of place j (formats/model_config.h scp_expert_range: E / P of them);
 * attention, norms, router and embeddings are held by every rank, as under plain data parallelism. Every rank
 * reads its own share of the global batch as before. In each MoE layer the rows routed to an expert travel to its
 * holder in the group and back by all-to-all (model/moe.c, over the group's collectives, dist/coll.h), so an
 * expert's weights, gradients and moments live on the world / P ranks of its place only (its replicas, one per
 * group), whose gradients are summed among themselves; the rest of the gradient is summed over all ranks.
 *
 * The optimisation is that of one process with the same global batch and micro-batches: routing, the auxiliary
 * and z losses and the expert loads are computed where the tokens are, as in one process; only the order of the
 * gradient sums differs (fixed for a given world and P). Checkpoints are Hugging Face sharded checkpoints of
 * every expert (train/sharded.h), which any world size, P, or one process resumes from. */
#ifndef SCP_DIST_EXPERT_H
#define SCP_DIST_EXPERT_H

#include <stdint.h>

#include "dist/dist.h"
#include "model/model.h"

typedef struct scp_expert_par {
    int P;                  /* ranks per expert group (1: no expert parallelism) */
    int place;              /* this rank's place in its group */
    scp_dist *d;            /* all ranks */
    scp_dist group;         /* this rank's expert group: the all-to-alls */
    scp_dist replicas;      /* the ranks of the same place: the experts' gradient sums */
    scp_model *m;
    /* The parameter vector in runs of one kind, in order: held experts' (summed over the replicas) or the
     * rest (summed over all ranks). */
    int runs;
    int64_t *run_lo;        /* (runs + 1) */
    char *run_expert;       /* (runs) */
    /* The table of every expert (the checkpoint's), and where each of its entries is in this rank's model (-1:
     * another place's expert). */
    scp_param_desc *full;
    int n_full;
    int *local_of;          /* (n_full) */
} scp_expert_par;

/* The groups of P ranks over d (collective). A usage error (-1 with a message) unless P divides the world. */
int scp_expert_par_init(scp_expert_par *ep, scp_dist *d, int P);
/* Attach the model made with expert_ranks = P, expert_rank = place (P must divide its experts, checked by the
 * caller): install the exchange. */
void scp_expert_par_attach(scp_expert_par *ep, scp_model *m);
void scp_expert_par_free(scp_expert_par *ep);

/* The step's gradients summed where the backend keeps them (dist/coll.h's transport for that memory): held
 * experts' over the replicas, the rest over all ranks. Then the global norm (every expert once) into *norm. -1
 * with a message when a collective or an exchange failed. */
int scp_expert_par_reduce_grads(scp_expert_par *ep);
int scp_expert_par_grad_norm(scp_expert_par *ep, double *norm);
/* Entry i of the full table: the index of the corresponding entry in this rank's table (for an expert of another
 * place, the one in the same position: the places' tables are alike), and *place the place holding it (-1 when
 * every rank does). */
int scp_expert_par_locate(const scp_expert_par *ep, int i, int *place);
/* Entry i of the full table out of vector vec (n_weights floats of this rank's model: its weights or a
 * moment), whole on rank root (out read there only, and given on every rank). Collective. */
int scp_expert_par_gather_param(scp_expert_par *ep, const float *vec, int i, int root, float *out);
/* Whether every replica of this rank's place holds the same bits of vec (n floats). Collective. */
int scp_expert_par_same(scp_expert_par *ep, const float *vec, int64_t n, const char *what);

#endif
