/* eval/loss.h: loss figures of a checkpoint on a sequence source (scp-eval ppl and elbo, and the trainer's
 * evaluation lines).
 *
 * ppl: causal next-token NLL, each sequence scored on its own from its own prefix: the logits at i are
 *   scored against x[i + 1] (data/batch.h, AR row); nll = sum of -log p / number of predicted tokens.
 * elbo: the masked-diffusion NLL upper bound per token. For sequence s, N noise levels t_1..t_N stratified
 *   over [eps, 1] (one in each of N equal strata, from (seed, s)); for each, mask (data/batch.h, MDM row,
 *   mask stream (seed, s * N + k)) and take Y_sk = w(t_k) * sum over masked positions of -log p(x_i | x_t);
 *   Y_s = mean_k Y_sk is an unbiased estimate of the sequence's bound in nats; the figure is
 *   sum_s Y_s / sum_s L_s (L: maskable positions).
 * se: the standard error over sequences of the ratio estimate (sequences are the independent units):
 *   sqrt(sum_s (Y_s - r L_s)^2 / (n (n - 1))) / mean L; NaN with fewer than 2 sequences. */
#ifndef SCP_EVAL_LOSS_H
#define SCP_EVAL_LOSS_H

#include <stdint.h>

#include "data/mask.h"
#include "model/model.h"
#include "data/batch.h"

typedef struct scp_eval_opts {
    int64_t max_seqs;       /* 0: every sequence of the source */
    int batch;              /* rows per forward pass */
    int doc_mask;           /* keep attention inside documents */
    /* elbo */
    int samples;            /* N noise levels per sequence */
    uint64_t seed;
    double eps;
    scp_mask_schedule sched;
    int32_t mask_id;
    int shift;
    scp_attn_mode attn;
    int progress;           /* draw a progress line (on a terminal) */
} scp_eval_opts;

typedef struct scp_eval_result {
    int64_t seqs;           /* sequences scored */
    int64_t tokens;         /* predicted tokens (ppl) or maskable positions (elbo) */
    double nll;             /* nats per token */
    double se;              /* standard error of nll */
    double masked_fraction; /* elbo: masked / maskable over all samples */
    double seconds;
} scp_eval_result;

void scp_eval_opts_default(scp_eval_opts *o);
int scp_eval_ppl(scp_model *m, const scp_seq_source *src, const scp_eval_opts *o, scp_eval_result *r);
int scp_eval_elbo(scp_model *m, const scp_seq_source *src, const scp_eval_opts *o, scp_eval_result *r);

#endif
