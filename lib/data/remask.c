/* data/remask.c: shard set -> masked examples, written in example order from a pool of threads (data/remask.h). */
#include "data/remask.h"
#include "core/error.h"
#include "core/io.h"
#include "core/pipeline.h"
#include "core/progress.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* What every block needs: the set, the options, the header, and for --prompt-end-id the packed order. */
typedef struct job {
    const scp_shardset *set;
    const scp_remask_opts *o;
    const char *split;
    scp_masked_header h;
    size_t record_size;
    int L, prompt_len;
    int64_t n;               /* examples */
    int64_t *inv;            /* packed index -> sequence index (prompt_end_id only) */
} job;

/* One worker's scratch for a sequence of L tokens and a batch of B noise levels. */
typedef struct scratch {
    int32_t *tokens, *noisy, *prev;   /* L each */
    uint8_t *mask, *keep;             /* L each */
    double *t;                        /* B */
    scp_doc_segment *segs, *psegs;    /* L each */
} scratch;

static void scratch_init(scratch *w, int L, int B)
{
    w->tokens = scp_xmalloc(sizeof(int32_t) * (size_t)L);
    w->noisy = scp_xmalloc(sizeof(int32_t) * (size_t)L);
    w->prev = scp_xmalloc(sizeof(int32_t) * (size_t)L);
    w->mask = scp_xmalloc((size_t)L);
    w->keep = scp_xmalloc((size_t)L);
    w->t = scp_xmalloc(sizeof(double) * (size_t)B);
    w->segs = scp_xmalloc(sizeof(scp_doc_segment) * (size_t)L);
    w->psegs = scp_xmalloc(sizeof(scp_doc_segment) * (size_t)L);
}

static void scratch_free(scratch *w)
{
    free(w->tokens);
    free(w->noisy);
    free(w->prev);
    free(w->mask);
    free(w->keep);
    free(w->t);
    free(w->segs);
    free(w->psegs);
}

scp_masked_header scp_remask_header(const scp_shardset *set, const scp_remask_opts *o)
{
    const int L = scp_shardset_seq_len(set);
    scp_masked_header h = {.version = SCP_MASKED_VERSION, .token_bytes = (uint32_t)scp_shardset_token_bytes(set),
                           .seq_len = (uint32_t)L, .vocab_size = (uint32_t)scp_shardset_vocab_size(set),
                           .mask_id = o->mask_id, .flags = o->targets ? SCP_MASKED_FLAG_TARGETS : 0, .seed = o->seed,
                           .t_sampler = (uint32_t)o->sampler, .schedule = (uint32_t)o->schedule, .eps = o->eps,
                           .batch = (uint32_t)o->batch, .prompt_len = (uint32_t)(o->prompt_len < L ? o->prompt_len : L),
                           .tokenizer_hash = scp_shardset_tokenizer_hash(set), .split = (uint32_t)o->val,
                           .prompt_end_id = o->prompt_end_id};
    if (h.token_bytes == 2 && o->mask_id > 65535) h.token_bytes = 4;   /* the mask id must fit the record */
    return h;
}

static int job_init(job *jb, const scp_shardset *set, const scp_remask_opts *o)
{
    memset(jb, 0, sizeof *jb);
    jb->set = set;
    jb->o = o;
    jb->split = o->val ? "val" : "train";
    jb->h = scp_remask_header(set, o);
    jb->record_size = scp_masked_record_size(&jb->h);
    jb->L = scp_shardset_seq_len(set);
    jb->prompt_len = (int)jb->h.prompt_len;
    jb->n = scp_shardset_num_seqs(set);
    if (o->n_examples >= 0 && o->n_examples < jb->n) jb->n = o->n_examples;
    if (o->prompt_end_id < 0) return 0;
    int64_t all = scp_shardset_num_seqs(set);
    jb->inv = scp_xmalloc(sizeof *jb->inv * (size_t)(all ? all : 1));
    for (int64_t i = 0; i < all; i++) {
        int64_t p;
        if (scp_shardset_seq_info(set, i, &p, NULL, NULL) < 0) return -1;
        if (p < 0 || p >= all)
            return scp_error("%s: sequence %" PRId64 " has packed index %" PRId64 " out of range", o->data, i, p);
        jb->inv[p] = i;
    }
    return 0;
}

/* Has document doc_id's prompt (up to its first prompt_end_id) ended before packed sequence p? Walks back
 * through the earlier pieces of the document (packing order keeps them in consecutive sequences). */
static int prompt_ended_before(const job *jb, scratch *w, int64_t p, int64_t doc_id, int *err)
{
    for (int64_t q = p - 1; q >= 0; q--) {
        int64_t i = jb->inv[q];
        int nv, ns = scp_shardset_seq_info(jb->set, i, NULL, &nv, w->psegs);
        if (ns <= 0 || scp_shardset_get(jb->set, i, w->prev, NULL)) {
            *err = 1;
            return 0;
        }
        scp_doc_segment *g = &w->psegs[ns - 1];
        if (g->doc_id != doc_id) return 0;   /* not found: cannot happen in a consistent set */
        for (int j = g->pos; j < nv; j++)
            if (w->prev[j] == jb->o->prompt_end_id) return 1;
        if (g->doc_offset == 0) return 0;
    }
    return 0;
}

/* keep[j] = 1 for padding and for prompt tokens of prompt_end_id; *n_valid: the real tokens. */
static int mark_keep(const job *jb, scratch *w, int64_t i, int *n_valid)
{
    const int L = jb->L;
    const int32_t end_id = jb->o->prompt_end_id;
    int64_t packed;
    int nv, ns = scp_shardset_seq_info(jb->set, i, &packed, &nv, end_id >= 0 ? w->segs : NULL);
    if (ns < 0) return -1;
    *n_valid = nv;
    memset(w->keep, 0, (size_t)nv);
    memset(w->keep + nv, 1, (size_t)(L - nv));
    if (end_id < 0) return 0;
    for (int k = 0; k < ns; k++) {
        int a = w->segs[k].pos, b = k + 1 < ns ? w->segs[k + 1].pos : nv;
        if (w->segs[k].doc_offset > 0) {
            int err = 0;
            int ended = prompt_ended_before(jb, w, packed, w->segs[k].doc_id, &err);
            if (err) return -1;
            if (ended) continue;
        }
        for (int j = a; j < b; j++) {
            w->keep[j] = 1;
            if (w->tokens[j] == end_id) break;
        }
    }
    return 0;
}

/* Examples [i0, i1) into out (records back to back, or NULL to leave the last one in w); i0 is a multiple of
 * the batch size, so that each batch's t is drawn once. */
static int mask_block(const job *jb, scratch *w, int64_t i0, int64_t i1, uint8_t *out, scp_remask_stats *st)
{
    const int L = jb->L, B = jb->o->batch;
    const int32_t mask_id = jb->o->mask_id;
    memset(st, 0, sizeof *st);
    for (int64_t i = i0; i < i1; i++) {
        if ((i - i0) % B == 0) scp_mask_sample_t(jb->o->sampler, jb->h.seed, (uint64_t)(i / B), B, jb->h.eps, w->t);
        double t = w->t[i % B];
        if (scp_shardset_get(jb->set, i, w->tokens, NULL)) return -1;
        int nv;
        if (mark_keep(jb, w, i, &nv)) return -1;
        /* The mask id must not occur among the real tokens (prompts included: the model could not tell it from a
         * mask). */
        int maskable = 0, hit = 0;
        for (int j = 0; j < L; j++) maskable += !w->keep[j];
        for (int j = 0; j < nv; j++) hit |= w->tokens[j] == mask_id;
        for (int j = 0; j < jb->prompt_len && j < L; j++) maskable -= !w->keep[j];
        if (hit)
            for (int j = 0; j < nv; j++)
                if (w->tokens[j] == mask_id)
                    return scp_error("%s: %s sequence %" PRId64 " position %d holds the mask id %d as a real token: choose a mask id "
                                     "outside the data's vocabulary", jb->o->data, jb->split, i, j, mask_id);
        int n = scp_mask_sequence_keep(jb->h.seed, (uint64_t)i, t, jb->o->schedule, L, w->tokens, w->keep, jb->prompt_len,
                                       mask_id, w->noisy, w->mask);
        double p = scp_mask_prob(jb->o->schedule, t);
        st->masked += (uint64_t)n;
        st->maskable += (uint64_t)maskable;
        st->expect += p * maskable;
        st->var += p * (1 - p) * maskable;
        if (out)
            scp_masked_record_encode(&jb->h, out + (size_t)(i - i0) * jb->record_size, (uint64_t)i, t, (uint32_t)n,
                                     (uint32_t)maskable, w->noisy, w->tokens, w->mask);
    }
    return 0;
}

/* ---- the writer: batches of blocks through the pipeline -------------------------------------------------- */

typedef struct slot {
    int64_t first_block;
    uint8_t *records;           /* blocks_per_batch blocks of block_len records */
    scp_remask_stats *sums;     /* per block */
} slot;

typedef struct writer {
    job jb;
    int64_t block_len, n_blocks, blocks_per_batch, next_block;
    slot slots[2];
    scratch *scratch;           /* per worker */
    FILE *f;
    const char *what;
    uint32_t crc;
    scp_remask_stats *tot;
    scp_progress progress;
} writer;

static int64_t fill(void *ctx, int s)
{
    writer *wr = ctx;
    int64_t left = wr->n_blocks - wr->next_block, n = left < wr->blocks_per_batch ? left : wr->blocks_per_batch;
    wr->slots[s].first_block = wr->next_block;
    wr->next_block += n;
    return n;
}

static int work(void *ctx, int s, int64_t item, int worker)
{
    writer *wr = ctx;
    int64_t k = wr->slots[s].first_block + item, i0 = k * wr->block_len;
    int64_t i1 = i0 + wr->block_len < wr->jb.n ? i0 + wr->block_len : wr->jb.n;
    uint8_t *out = wr->slots[s].records + (size_t)item * (size_t)wr->block_len * wr->jb.record_size;
    return mask_block(&wr->jb, &wr->scratch[worker], i0, i1, out, &wr->slots[s].sums[item]);
}

/* In example order: the bytes, the CRC and the sums do not depend on the thread count. */
static int drain(void *ctx, int s, int64_t n)
{
    writer *wr = ctx;
    for (int64_t item = 0; item < n; item++) {
        int64_t i0 = (wr->slots[s].first_block + item) * wr->block_len;
        int64_t i1 = i0 + wr->block_len < wr->jb.n ? i0 + wr->block_len : wr->jb.n;
        size_t nb = wr->jb.record_size * (size_t)(i1 - i0);
        const uint8_t *rec = wr->slots[s].records + (size_t)item * (size_t)wr->block_len * wr->jb.record_size;
        wr->crc = scp_crc32(wr->crc, rec, nb);
        if (scp_write_all(wr->f, rec, nb, wr->what)) return -1;
        const scp_remask_stats *b = &wr->slots[s].sums[item];
        wr->tot->masked += b->masked;
        wr->tot->maskable += b->maskable;
        wr->tot->expect += b->expect;
        wr->tot->var += b->var;
        wr->tot->examples = i1;
        scp_progress_update(&wr->progress, i1, "examples");
    }
    return 0;
}

int scp_remask_write(const scp_shardset *set, const scp_remask_opts *o, FILE *out, const char *out_name,
                     scp_remask_stats *st)
{
    memset(st, 0, sizeof *st);
    writer wr = {.f = out, .what = out_name, .tot = st};
    if (job_init(&wr.jb, set, o)) {
        free(wr.jb.inv);
        return -1;
    }
    const job *jb = &wr.jb;
    uint8_t hb[SCP_MASKED_HEADER];
    scp_masked_header_encode(&jb->h, hb);
    wr.crc = scp_crc32(0, hb, sizeof hb);
    int rc = scp_write_all(out, hb, sizeof hb, out_name);
    /* Blocks of about 1 MB of records, aligned to batches so that each batch's t is drawn once; a batch of blocks
     * gives every worker two. */
    const int B = o->batch;
    wr.block_len = (int64_t)((1u << 20) / jb->record_size);
    if (wr.block_len < 1) wr.block_len = 1;
    wr.block_len = (wr.block_len + B - 1) / B * B;
    wr.n_blocks = (jb->n + wr.block_len - 1) / wr.block_len;
    int threads = o->threads > 1 ? o->threads : 1;
    wr.blocks_per_batch = 2 * (int64_t)threads;
    for (int s = 0; s < 2; s++) {
        wr.slots[s].records = scp_xmalloc((size_t)(wr.blocks_per_batch * wr.block_len) * jb->record_size);
        wr.slots[s].sums = scp_xcalloc((size_t)wr.blocks_per_batch, sizeof(scp_remask_stats));
    }
    wr.scratch = scp_xmalloc(sizeof *wr.scratch * (size_t)threads);
    for (int w = 0; w < threads; w++) scratch_init(&wr.scratch[w], jb->L, B);
    scp_progress_init(&wr.progress, jb->n);
    scp_pipeline p = {.ctx = &wr, .fill = fill, .work = work, .drain = drain, .threads = threads};
    if (rc == 0) rc = scp_pipeline_run(&p);
    scp_progress_end(&wr.progress);
    if (rc == 0) {
        uint8_t tr[SCP_MASKED_TRAILER];
        scp_masked_trailer_encode(tr, (uint64_t)jb->n, st->masked, st->maskable, wr.crc);
        rc = scp_write_all(out, tr, sizeof tr, out_name);
    }
    for (int w = 0; w < threads; w++) scratch_free(&wr.scratch[w]);
    free(wr.scratch);
    for (int s = 0; s < 2; s++) {
        free(wr.slots[s].records);
        free(wr.slots[s].sums);
    }
    free(wr.jb.inv);
    return rc;
}

/* ---- text for people ----------------------------------------------------------------------------------- */

/* One example (w holds it: tokens, mask, keep). */
static int show_example(const job *jb, const scratch *w, int64_t i, double t, const scp_tokenizer *tok, FILE *out)
{
    int nv;
    if (scp_shardset_seq_info(jb->set, i, NULL, &nv, NULL) < 0) return -1;
    int maskable = 0, n = 0;
    for (int j = 0; j < jb->L; j++) {
        maskable += j >= jb->prompt_len && !w->keep[j];
        n += w->mask[j];
    }
    fprintf(out, "== example %" PRId64 "  t=%.4f  masked %d of %d (%.3f; schedule %.3f)\n", i, t, n, maskable,
            maskable ? (double)n / maskable : 0.0, scp_mask_prob(jb->o->schedule, t));
    /* A span is shown as what it adds to the text of the tokens before it, decode(0..k) less decode(0..j): a
     * decoder that drops the space of a text's first word (SentencePiece's) would drop it from every span decoded
     * alone. Where the shorter text is not the start of the longer (a character split between spans), the span
     * is decoded alone. */
    char *before = NULL;   /* decode(0..j), when known (have_before) */
    size_t before_len = 0;
    int have_before = 1;
    for (int j = 0; j < nv;) {
        int m = w->mask[j], k = j;
        while (k < nv && w->mask[k] == m) k++;
        if (!tok && j) fputc(' ', out);
        if (m) fputs("[[", out);
        if (tok) {
            size_t len;
            char *upto = scp_tokenizer_decode(tok, w->tokens, (size_t)k, 0, &len);
            if (upto && have_before && len >= before_len && (!before_len || memcmp(upto, before, before_len) == 0)) {
                fwrite(upto + before_len, 1, len - before_len, out);
            } else {
                size_t n;
                char *s = scp_tokenizer_decode(tok, w->tokens + j, (size_t)(k - j), 0, &n);
                if (s) fwrite(s, 1, n, out);
                free(s);
            }
            free(before);
            before = upto, before_len = upto ? len : 0, have_before = upto != NULL;
        } else
            for (int q = j; q < k; q++) fprintf(out, q > j ? " %d" : "%d", w->tokens[q]);
        if (m) fputs("]]", out);
        j = k;
    }
    free(before);
    if (nv < jb->L) fprintf(out, "%s(+%d padding)", nv ? " " : "", jb->L - nv);
    fputs("\n\n", out);
    return 0;
}

int scp_remask_show(const scp_shardset *set, const scp_remask_opts *o, const scp_tokenizer *tok, FILE *out)
{
    job jb;
    int rc = job_init(&jb, set, o);
    scratch w;
    scratch_init(&w, jb.L, o->batch);
    for (int64_t i = 0; rc == 0 && i < jb.n && !ferror(out); i++) {
        scp_remask_stats st;
        /* Mask the batch's examples up to i: w then holds example i. */
        rc = mask_block(&jb, &w, i - i % o->batch, i + 1, NULL, &st);
        if (rc == 0) rc = show_example(&jb, &w, i, w.t[i % o->batch], tok, out);
    }
    scratch_free(&w);
    free(jb.inv);
    return rc;
}
