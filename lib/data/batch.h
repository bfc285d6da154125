/* data/batch.h: batches for the model (scp_batch in model/model.h) built from fixed-length sequences.
 *
 * A sequence source hands out sequence i as tokens (T) and doc (T: document index within the sequence, -1 for
 * padding). The data order visits the n sequences epoch by epoch, each epoch in a permutation drawn from
 * (seed, epoch) and computed position by position (no table), so the sequence at any cursor position is known
 * without replaying the run (exact resume) and the order costs no memory.
 *
 * The masked-diffusion (MDM) row for a sequence x at noise level t:
 *   each position is masked with probability p(t) (scp_mask_sequence, stream (seed, mask_index)), except
 *   padding and, with logit shift, position 0 (no logits before it predict it) and, with shift and the
 *   document mask, the first token of each document (its predecessor cannot see it);
 *   input = x with mask_id at masked positions;
 *   without shift the logits at i are scored against x[i] for masked i; with shift the logits at i - 1 are;
 *   L = number of maskable positions (so the per-token bound is exact in expectation).
 * Weights (scp_batch_weights): w(t) / L per scored position (length norm) or w(t) / n_masked (masked norm),
 * times `scale` (1 / sequences in the global batch, so micro-batches add up to the batch mean). w(t) is the
 * ELBO weight of the masking schedule (1/t for linear).
 * The AR row: input = x, the logits at i scored against x[i + 1] where both are real tokens (and, with the
 * document mask, of the same document); weight = scale (1 / targets in the global batch). */
#ifndef SCP_DATA_BATCH_H
#define SCP_DATA_BATCH_H

#include <stdint.h>

#include "data/mask.h"
#include "model/model.h"

/* What the rows are built for: masked diffusion or next-token prediction. */
typedef enum scp_objective { SCP_OBJ_MDM, SCP_OBJ_AR } scp_objective;
/* How MDM rows are weighted: w(t) / L (length) or w(t) / n_masked (masked), see above. */
typedef enum scp_loss_norm { SCP_NORM_LENGTH, SCP_NORM_MASKED } scp_loss_norm;
/* Names on the command line and in JSON ("mdm", "ar"; "length", "masked"); -1 from the parsers when unknown. */
const char *scp_objective_name(scp_objective x);
const char *scp_loss_norm_name(scp_loss_norm x);
int scp_objective_parse(const char *s);
int scp_loss_norm_parse(const char *s);

typedef struct scp_seq_source {
    int64_t n;      /* sequences */
    int T;          /* tokens per sequence */
    int (*get)(void *ctx, int64_t i, int32_t *tokens, int32_t *doc);
    void *ctx;
} scp_seq_source;

typedef struct scp_data_order {
    int64_t n;
    uint64_t seed;
    int shuffle;
} scp_data_order;

void scp_data_order_init(scp_data_order *o, int64_t n, uint64_t seed, int shuffle);
void scp_data_order_free(scp_data_order *o);
/* Sequence index at a cursor position (cursor counts sequences consumed since the start of the run). */
int64_t scp_data_order_at(scp_data_order *o, int64_t cursor);

typedef struct scp_train_batch {
    int B, T, cap;          /* rows in use, positions, rows allocated */
    int32_t *tokens;        /* (B, T) original ids */
    int32_t *doc;           /* (B, T) document index, -1 padding */
    int32_t *pad_doc;       /* (B, T) 0 for real tokens, -1 for padding (attention without the doc mask) */
    int32_t *input;         /* (B, T) ids fed to the model */
    int32_t *target;        /* (B, T) id to predict at each position's logits, -1 none */
    float *weight;          /* (B, T) loss weight */
    uint8_t *mask;          /* (B, T) 1 where the input was masked (MDM) */
    double *t;              /* (B) noise level (MDM) */
    int *n_scored;          /* (B) positions with a target */
    int *n_len;             /* (B) L: maskable positions (MDM) or targets (AR) */
} scp_train_batch;

typedef struct scp_mdm_spec {
    uint64_t seed;
    int32_t mask_id;
    int shift;
    int doc_mask;
    scp_mask_schedule sched;
} scp_mdm_spec;

void scp_batch_reserve(scp_train_batch *b, int B, int T);
void scp_batch_free(scp_train_batch *b);
/* Rows 0..B-1 from the data order at cursor, cursor + 1, ... (b->B = B). Returns -1 on a source error. */
int scp_batch_fetch(scp_train_batch *b, const scp_seq_source *src, scp_data_order *order, int64_t cursor, int B);
/* Build row r (tokens/doc already there) for the MDM objective at noise t; mask_index picks the mask stream. */
void scp_batch_mdm_row(scp_train_batch *b, int r, double t, uint64_t mask_index, const scp_mdm_spec *s);
/* Build row r for next-token prediction. */
void scp_batch_ar_row(scp_train_batch *b, int r, int doc_mask);
/* Weights of every row: MDM (objective mdm) per the norm, or AR: weight `scale` per target. */
void scp_batch_weights(scp_train_batch *b, scp_objective obj, scp_loss_norm norm, scp_mask_schedule sched, double scale);
/* The model's view of rows [r0, r0 + nb). doc_mask: attention inside documents (doc as is); otherwise, when
 * the rows hold padding, every real token gets document 0 and padding -1, so that real tokens never attend to
 * padding (it attends to itself) while documents still see each other. */
scp_batch scp_batch_view(scp_train_batch *b, int r0, int nb, int doc_mask, scp_attn_mode attn, float anneal_p,
                         uint64_t anneal_seed);

#endif
