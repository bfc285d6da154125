/* data/tokenize.c: documents -> token stream or id lines on a pool of threads, in input order (data/tokenize.h). */
#include "data/tokenize.h"
#include "core/error.h"
#include "core/io.h"
#include "core/pipeline.h"
#include "core/progress.h"
#include "formats/tokstream.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct doc {
    size_t off, len;     /* text in the batch arena */
    const char *input;   /* the input it came from, and its number there (from 1), for messages */
    int64_t number;
    int32_t *ids;        /* encoded (malloc'ed by the tokenizer), n of them */
    size_t n;
} doc;

/* A batch of documents: their text (arena) and, once encoded, their ids. */
typedef struct batch {
    char *arena;
    size_t used, acap;
    doc *docs;
    size_t ndocs, dcap;
} batch;

typedef struct job {
    const scp_tokenizer *tok;
    const scp_tokenize_opts *o;
    scp_tokenize_stats *st;
    /* The document reader over all inputs (fill). */
    const char *const *inputs;
    int n_inputs, next_input, eof;
    scp_textin *in;
    int64_t in_docs;           /* documents read from the open input */
    batch slots[2];
    /* The writer (drain): a token stream or id lines. */
    FILE *f;
    const char *what;
    scp_tokstream_writer w;
    int32_t bos, eos;          /* added around each document, -1: not */
    int32_t *wrapped;          /* a document with its BOS and EOS */
    size_t wrapped_cap;
    char *line;
    size_t line_cap;
    uint64_t written_bytes;    /* text of the documents written */
    scp_progress progress;
    double t0;
} job;

/* Fill slot with documents until about 8 MB of text or 65536 documents: their number, 0 at the end of the input,
 * -1 on an error. */
static int64_t fill(void *ctx, int slot)
{
    job *j = ctx;
    batch *b = &j->slots[slot];
    const size_t batch_bytes = 8u << 20, batch_docs = 1u << 16;
    b->used = 0;
    b->ndocs = 0;
    while (!j->eof && b->used < batch_bytes && b->ndocs < batch_docs) {
        if (!j->in) {
            if (j->next_input == j->n_inputs) {
                j->eof = 1;
                break;
            }
            j->in = scp_textin_open(j->inputs[j->next_input++], &j->o->input);
            j->in_docs = 0;
            if (!j->in) {
                if (!j->o->input.skip_bad) return -1;
                scp_warn("%s (skipped)", scp_last_error());
                j->st->bad++;
                continue;
            }
        }
        const char *text;
        size_t len;
        int k = scp_textin_next(j->in, &text, &len);
        if (k < 0) return -1;
        if (k == 0) {
            j->st->bad += scp_textin_bad(j->in);
            scp_textin_close(j->in);
            j->in = NULL;
            continue;
        }
        if (b->used + len > b->acap) b->arena = scp_xrealloc(b->arena, b->acap = b->used + len + (1 << 20));
        if (b->ndocs == b->dcap) b->docs = scp_xrealloc(b->docs, sizeof *b->docs * (b->dcap = b->dcap ? b->dcap * 2 : 1024));
        memcpy(b->arena + b->used, text, len);
        const char *name = j->inputs[j->next_input - 1];
        b->docs[b->ndocs++] = (doc){b->used, len, strcmp(name, "-") ? name : "<stdin>", ++j->in_docs, NULL, 0};
        b->used += len;
        j->st->bytes += len;
    }
    return (int64_t)b->ndocs;
}

static int work(void *ctx, int slot, int64_t item, int worker)
{
    (void)worker;
    job *j = ctx;
    batch *b = &j->slots[slot];
    doc *d = &b->docs[item];
    if (scp_tokenizer_encode(j->tok, b->arena + d->off, d->len, j->o->special, &d->ids, &d->n))
        return scp_error_prefix("%s: document %" PRId64, d->input, d->number);
    return 0;
}

/* One document as a line of decimal ids, BOS and EOS included. */
static int write_id_line(job *j, const int32_t *ids, size_t n)
{
    size_t need = (n + 2) * 12 + 2;
    if (need > j->line_cap) j->line = scp_xrealloc(j->line, j->line_cap = need * 2);
    char *q = j->line;
    int first = 1;
    for (size_t i = 0; i < n + 2; i++) {
        int32_t v;
        if (i == 0) {
            if (j->bos < 0) continue;
            v = j->bos;
        } else if (i == n + 1) {
            if (j->eos < 0) continue;
            v = j->eos;
        } else
            v = ids[i - 1];
        if (!first) *q++ = ' ';
        first = 0;
        char digits[12];
        int k = 0;
        uint32_t u = (uint32_t)v;
        do digits[k++] = (char)('0' + u % 10);
        while (u /= 10);
        while (k) *q++ = digits[--k];
    }
    *q++ = '\n';
    return scp_write_all(j->f, j->line, (size_t)(q - j->line), j->what);
}

static int write_doc(job *j, const int32_t *ids, size_t n)
{
    size_t extra = (j->bos >= 0) + (j->eos >= 0);
    j->st->docs++;
    j->st->tokens += n + extra;
    if (j->o->ids) return write_id_line(j, ids, n);
    if (!extra) return scp_tokstream_write_doc(&j->w, ids, (uint32_t)n);
    if (n + 2 > j->wrapped_cap) j->wrapped = scp_xrealloc(j->wrapped, sizeof *j->wrapped * (j->wrapped_cap = (n + 2) * 2));
    size_t k = 0;
    if (j->bos >= 0) j->wrapped[k++] = j->bos;
    memcpy(j->wrapped + k, ids, n * sizeof *ids);
    k += n;
    if (j->eos >= 0) j->wrapped[k++] = j->eos;
    return scp_tokstream_write_doc(&j->w, j->wrapped, (uint32_t)k);
}

static int drain(void *ctx, int slot, int64_t n)
{
    job *j = ctx;
    batch *b = &j->slots[slot];
    for (int64_t i = 0; i < n; i++) {
        doc *d = &b->docs[i];
        if (write_doc(j, d->ids, d->n)) return -1;
        free(d->ids);
        d->ids = NULL;
    }
    b->ndocs = 0;
    j->written_bytes += b->used;
    scp_progress_update(&j->progress, 0, "%.1f MB, %" PRIu64 " documents, %" PRIu64 " tokens, %.1f MB/s",
                        (double)j->written_bytes / 1e6, j->st->docs, j->st->tokens,
                        (double)j->written_bytes / 1e6 / (scp_now() - j->t0 + 1e-9));
    return 0;
}

static int begin_stream(job *j)
{
    const scp_tokenizer *t = j->tok;
    scp_tokstream_header h = {0};
    h.vocab_size = (uint32_t)scp_tokenizer_vocab_size(t);
    h.bos_id = scp_tokenizer_bos_id(t);
    h.eos_id = scp_tokenizer_eos_id(t);
    h.pad_id = scp_tokenizer_pad_id(t);
    h.mask_id = scp_tokenizer_token_id(t, "<|mask|>");
    h.flags = (j->bos >= 0 ? SCP_TOKSTREAM_FLAG_BOS : 0) | (j->eos >= 0 ? SCP_TOKSTREAM_FLAG_EOS : 0);
    h.tokenizer_hash = scp_tokenizer_hash(t);
    return scp_tokstream_write_begin(&j->w, j->f, j->what, &h);
}

int scp_tokenize(const scp_tokenizer *tok, const char *const *inputs, int n_inputs, const scp_tokenize_opts *o, FILE *out,
                 const char *out_name, scp_tokenize_stats *st)
{
    memset(st, 0, sizeof *st);
    const char *tok_name = o->tok_name ? o->tok_name : "the tokenizer";
    job j = {.tok = tok, .o = o, .st = st, .inputs = inputs, .n_inputs = n_inputs, .f = out, .what = out_name};
    j.bos = o->bos ? scp_tokenizer_bos_id(tok) : -1;
    j.eos = o->eos ? scp_tokenizer_eos_id(tok) : -1;
    if (o->bos && j.bos < 0) return scp_error("%s: the tokenizer has no BOS token (--bos)", tok_name);
    if (o->eos && j.eos < 0) return scp_error("%s: the tokenizer has no EOS token (--eos)", tok_name);
    if (!o->ids && begin_stream(&j)) return -1;
    scp_progress_init(&j.progress, 0);
    j.t0 = scp_now();
    scp_pipeline p = {.ctx = &j, .fill = fill, .work = work, .drain = drain, .threads = o->threads};
    int rc = scp_pipeline_run(&p);
    scp_progress_end(&j.progress);
    if (j.in) {
        st->bad += scp_textin_bad(j.in);
        scp_textin_close(j.in);
    }
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < j.slots[k].ndocs; i++) free(j.slots[k].docs[i].ids);
        free(j.slots[k].arena);
        free(j.slots[k].docs);
    }
    free(j.wrapped);
    free(j.line);
    if (!o->ids && rc == 0) rc = scp_tokstream_write_end(&j.w);
    else if (!o->ids) free(j.w.buf);
    return rc;
}
