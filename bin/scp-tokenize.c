/* scp-tokenize: text (plain, JSONL, gzip, archives) -> token stream (man 5 scp-tokens) or id lines; --decode
 * turns a token stream or id lines back into text.
 *
 * Documents are read in order into batches of about 8 MB; a pool of threads encodes a batch (each thread takes
 * the next document), then the batch is written in input order, so the output is the same for any -j. */
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "core/progress.h"
#include "data/textinput.h"
#include "tok/tokenizer.h"
#include "formats/tokstream.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn static void usage(void)
{
    printf("Usage: scp-tokenize (-m DIR | -t FILE) [OPTION]... [FILE]...\n"
           "Tokenize documents from FILEs (or standard input) into a token stream (man 5 scp-tokens).\n"
           "FILEs may be plain text or JSONL, compressed (gzip, zstd, xz, bzip2) or archives (tar, zip, ...).\n"
           "\n"
           "  -m, --model DIR          take the tokenizer from a checkpoint directory\n"
           "  -t, --tokenizer FILE     tokenizer.json, SentencePiece .model, llama2.c tokenizer.bin,\n"
           "                           or GPT-2 encoder.json (with vocab.bpe beside it)\n"
           "  -o, --output FILE        write here (default '-': standard output, refused on a terminal\n"
           "                           for the binary stream)\n"
           "  -f, --format FMT         stream (default: binary token stream) or ids (a document per line,\n"
           "                           ids separated by spaces)\n"
           "  -d, --doc MODE           a text document is a whole file, a line (default) or a paragraph\n"
           "                           (lines between blank lines)\n"
           "  -i, --input-format FMT   auto (default: JSONL for *.jsonl, *.ndjson, *.json), text or jsonl\n"
           "  -k, --field NAME         JSONL key of the text (default 'text'); implies --input-format jsonl\n"
           "                           unless one is given\n"
           "  -b, --bos                add the tokenizer's BOS before each document\n"
           "  -e, --eos                add the tokenizer's EOS after each document\n"
           "  -N, --no-special         treat special tokens written in the text as plain text\n"
           "  -D, --decode             decode token streams or id lines (FILEs) back to text, a document\n"
           "                           per line\n"
           "  -S, --skip-special       with --decode: leave special tokens out\n"
           "  -j, --threads N          encoding threads (default: all processors); output is the same for any N\n"
           "  -s, --skip-bad           skip bad JSONL lines and unreadable members or files, counting them,\n"
           "                           instead of stopping\n"
           "  -q, --quiet              no summary line\n"
           "  -h, --help               show this help and exit\n"
           "  -V, --version            show the version and exit\n"
           "\n"
           "Progress is shown on standard error when it is a terminal; a summary line ends the run.\n");
    exit(0);
}

typedef struct doc {
    size_t off, len;     /* text in the batch arena */
    int32_t *ids;
    size_t n;
} doc;

/* A batch of documents: their text (arena) and, once encoded, their ids. */
typedef struct batch {
    char *arena;
    size_t used, acap;
    doc *docs;
    size_t ndocs, dcap;
} batch;

/* nthreads workers encode the batch `cur` (each takes the next document); the main thread meanwhile writes
 * the previous batch and reads the next one, so reading and writing overlap the encoding. */
typedef struct pool {
    const scp_tokenizer *tok;
    int special, nthreads;
    batch *cur;
    atomic_size_t next;
    pthread_barrier_t start, done;
    int quit;
    atomic_int failed;
} pool;

static void encode_range(pool *p)
{
    batch *b = p->cur;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= b->ndocs) break;
        doc *d = &b->docs[i];
        if (scp_tokenizer_encode(p->tok, b->arena + d->off, d->len, p->special, &d->ids, &d->n)) atomic_store(&p->failed, 1);
    }
}

static void *worker(void *arg)
{
    pool *p = arg;
    for (;;) {
        pthread_barrier_wait(&p->start);
        if (p->quit) return NULL;
        encode_range(p);
        pthread_barrier_wait(&p->done);
    }
}

/* Start encoding b (returns at once with threads; encodes it here with one thread). */
static void pool_start(pool *p, batch *b)
{
    p->cur = b;
    atomic_store(&p->next, 0);
    if (p->nthreads > 1) pthread_barrier_wait(&p->start);
    else encode_range(p);
}

static void pool_finish(pool *p)
{
    if (p->nthreads > 1) pthread_barrier_wait(&p->done);
}

/* The document reader over all inputs. */
typedef struct reader {
    char **inputs;
    int nin, fi;
    scp_textin *in;
    const scp_textin_opts *to;
    uint64_t bytes, bad;
    int eof;
} reader;

/* Fill b with documents until about batch_bytes of text or batch_docs documents; b->ndocs == 0 at the end of
 * the input. -1 on an error (message recorded). */
static int read_batch(reader *r, batch *b)
{
    const size_t batch_bytes = 8u << 20, batch_docs = 1u << 16;
    b->used = 0;
    b->ndocs = 0;
    while (!r->eof && b->used < batch_bytes && b->ndocs < batch_docs) {
        if (!r->in) {
            if (r->fi == r->nin) { r->eof = 1; break; }
            const char *path = r->inputs[r->fi++];
            r->in = scp_textin_open(path, r->to);
            if (!r->in) {
                if (!r->to->skip_bad) return -1;
                scp_warn("%s (skipped)", scp_last_error());
                r->bad++;
                continue;
            }
        }
        const char *text;
        size_t len;
        int k = scp_textin_next(r->in, &text, &len);
        if (k < 0) return -1;
        if (k == 0) {
            r->bad += scp_textin_bad(r->in);
            scp_textin_close(r->in);
            r->in = NULL;
            continue;
        }
        if (b->used + len > b->acap) b->arena = scp_xrealloc(b->arena, b->acap = b->used + len + (1 << 20));
        if (b->ndocs == b->dcap) b->docs = scp_xrealloc(b->docs, sizeof *b->docs * (b->dcap = b->dcap ? b->dcap * 2 : 1024));
        memcpy(b->arena + b->used, text, len);
        b->docs[b->ndocs++] = (doc){b->used, len, NULL, 0};
        b->used += len;
        r->bytes += len;
    }
    return 0;
}

/* Output: either the token stream writer or id lines. */
typedef struct out {
    int ids_fmt;
    FILE *f;
    const char *what;
    scp_tokstream_writer w;
    int32_t bos, eos;
    char *line;
    size_t linecap;
    uint64_t docs, tokens;
} out;

static int out_doc(out *o, const int32_t *ids, size_t n)
{
    size_t extra = (o->bos >= 0) + (o->eos >= 0);
    o->docs++;
    o->tokens += n + extra;
    if (!o->ids_fmt) {
        if (!extra) return scp_tokstream_write_doc(&o->w, ids, (uint32_t)n);
        static __thread int32_t *tmp;
        static __thread size_t tcap;
        if (n + 2 > tcap) tmp = scp_xrealloc(tmp, sizeof *tmp * (tcap = (n + 2) * 2));
        size_t k = 0;
        if (o->bos >= 0) tmp[k++] = o->bos;
        memcpy(tmp + k, ids, n * sizeof *ids);
        k += n;
        if (o->eos >= 0) tmp[k++] = o->eos;
        return scp_tokstream_write_doc(&o->w, tmp, (uint32_t)k);
    }
    size_t need = (n + 2) * 12 + 2;
    if (need > o->linecap) o->line = scp_xrealloc(o->line, o->linecap = need * 2);
    char *q = o->line;
    int first = 1;
    for (size_t i = 0; i < n + 2; i++) {
        int32_t v;
        if (i == 0) { if (o->bos < 0) continue; v = o->bos; }
        else if (i == n + 1) { if (o->eos < 0) continue; v = o->eos; }
        else v = ids[i - 1];
        if (!first) *q++ = ' ';
        first = 0;
        char tmp[12];
        int k = 0;
        uint32_t u = (uint32_t)v;
        do { tmp[k++] = (char)('0' + u % 10); u /= 10; } while (u);
        while (k) *q++ = tmp[--k];
    }
    *q++ = '\n';
    return scp_write_all(o->f, o->line, (size_t)(q - o->line), o->what);
}

static int decode_file(const scp_tokenizer *tok, const char *path, FILE *of, const char *ofname, int skip_special,
                       uint64_t *ndocs, uint64_t *ntok)
{
    FILE *f = scp_fopen_in(path);
    if (!f) return -1;
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    int c = getc(f);
    int rc = 0;
    if (c != EOF) ungetc(c, f);
    int32_t *ids = NULL;
    size_t cap = 0;
    if (c == 'S') {
        scp_tokstream_reader r;
        if (scp_tokstream_read_begin(&r, f, name)) {
            scp_tokstream_read_close(&r);
            scp_fclose_in(f);
            return -1;
        }
        uint64_t h = scp_tokenizer_hash(tok);
        if (r.h.tokenizer_hash && r.h.tokenizer_hash != h) {
            scp_error("%s: token stream was made with another tokenizer (hash %016" PRIx64 ", this tokenizer %016" PRIx64 ")", name,
                      r.h.tokenizer_hash, h);
            scp_tokstream_read_close(&r);
            scp_fclose_in(f);
            return -1;
        }
        uint32_t n;
        int k;
        while ((k = scp_tokstream_read_doc(&r, &ids, &cap, &n)) == 1) {
            int32_t *p = ids;
            if ((r.h.flags & SCP_TOKSTREAM_FLAG_BOS) && n && p[0] == r.h.bos_id) { p++; n--; }
            if ((r.h.flags & SCP_TOKSTREAM_FLAG_EOS) && n && p[n - 1] == r.h.eos_id) n--;
            size_t len;
            char *s = scp_tokenizer_decode(tok, p, n, skip_special, &len);
            s[len] = '\n';
            rc = scp_write_all(of, s, len + 1, ofname);
            free(s);
            (*ndocs)++;
            *ntok += n;
            if (rc) break;
        }
        if (k < 0) rc = -1;
        scp_tokstream_read_close(&r);
    } else {
        char *line = NULL;
        size_t lcap = 0;
        ssize_t ll;
        uint64_t lineno = 0;
        int nv = scp_tokenizer_vocab_size(tok);
        while ((ll = getline(&line, &lcap, f)) >= 0) {
            lineno++;
            size_t n = 0;
            char *p = line;
            for (;;) {
                while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
                if (!*p) break;
                char *end;
                errno = 0;
                long v = strtol(p, &end, 10);
                if (end == p || errno || v < 0 || v >= nv || (*end && *end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')) {
                    rc = scp_error("%s:%" PRIu64 ": '%.*s' is not a token id of this tokenizer (0..%d)", name, lineno,
                                   (int)strcspn(p, " \t\r\n"), p, nv - 1);
                    break;
                }
                if (n == cap) ids = scp_xrealloc(ids, sizeof *ids * (cap = cap ? cap * 2 : 256));
                ids[n++] = (int32_t)v;
                p = end;
            }
            if (rc) break;
            size_t len;
            char *s = scp_tokenizer_decode(tok, ids, n, skip_special, &len);
            s[len] = '\n';
            rc = scp_write_all(of, s, len + 1, ofname);
            free(s);
            (*ndocs)++;
            *ntok += n;
            if (rc) break;
        }
        free(line);
        if (!rc && ferror(f)) rc = scp_error("%s: read error", name);
    }
    free(ids);
    scp_fclose_in(f);
    return rc;
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 't'},
        {"output", required_argument, 0, 'o'}, {"format", required_argument, 0, 'f'},
        {"doc", required_argument, 0, 'd'}, {"input-format", required_argument, 0, 'i'},
        {"field", required_argument, 0, 'k'}, {"bos", no_argument, 0, 'b'}, {"eos", no_argument, 0, 'e'},
        {"no-special", no_argument, 0, 'N'}, {"decode", no_argument, 0, 'D'}, {"skip-special", no_argument, 0, 'S'},
        {"threads", required_argument, 0, 'j'}, {"skip-bad", no_argument, 0, 's'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    const char *model = NULL, *tokpath = NULL, *output = "-";
    int ids_fmt = 0, bos = 0, eos = 0, special = 1, decode = 0, skip_special = 0, quiet = 0;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int input_format_given = 0;
    scp_textin_opts to = {SCP_DOC_LINE, SCP_IN_AUTO, "text", 0};
    int c;
    while ((c = getopt_long(argc, argv, "m:t:o:f:d:i:k:beNDSj:sqhV", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't': tokpath = optarg; break;
        case 'o': output = optarg; break;
        case 'f':
            if (strcmp(optarg, "ids") == 0) ids_fmt = 1;
            else if (strcmp(optarg, "stream") == 0) ids_fmt = 0;
            else scp_usage_error("--format must be 'stream' or 'ids', not '%s'", optarg);
            break;
        case 'd':
            if (strcmp(optarg, "file") == 0) to.doc = SCP_DOC_FILE;
            else if (strcmp(optarg, "line") == 0) to.doc = SCP_DOC_LINE;
            else if (strcmp(optarg, "paragraph") == 0) to.doc = SCP_DOC_PARAGRAPH;
            else scp_usage_error("--doc must be 'file', 'line' or 'paragraph', not '%s'", optarg);
            break;
        case 'i':
            input_format_given = 1;
            if (strcmp(optarg, "auto") == 0) to.format = SCP_IN_AUTO;
            else if (strcmp(optarg, "text") == 0) to.format = SCP_IN_TEXT;
            else if (strcmp(optarg, "jsonl") == 0) to.format = SCP_IN_JSONL;
            else scp_usage_error("--input-format must be 'auto', 'text' or 'jsonl', not '%s'", optarg);
            break;
        case 'k':
            if (!*optarg) scp_usage_error("--field needs a name");
            to.field = optarg;
            if (!input_format_given) to.format = SCP_IN_JSONL;
            break;
        case 'b': bos = 1; break;
        case 'e': eos = 1; break;
        case 'N': special = 0; break;
        case 'D': decode = 1; break;
        case 'S': skip_special = 1; break;
        case 'j': threads = (int)scp_opt_int("--threads", optarg, 0, 1024); break;
        case 's': to.skip_bad = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage();
        case 'V': scp_cli_version();
        default: scp_usage_error("unknown option");
        }
    }
    if (!!model + !!tokpath != 1) scp_usage_error("give exactly one of --model DIR or --tokenizer FILE");
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads <= 0) threads = 1;
    scp_cleanup_on_signals();

    double t0 = scp_now();
    scp_tokenizer *tok = scp_tokenizer_load(model ? model : tokpath);
    if (!tok) scp_die_last();
    int nin = argc - optind;
    char *def[] = {"-"};
    char **inputs = nin ? argv + optind : def;
    if (!nin) nin = 1;

    scp_out *so = scp_out_open(output, !decode && !ids_fmt);
    if (!so) scp_die_last();
    const char *oname = strcmp(output, "-") == 0 ? "<stdout>" : output;

    if (decode) {
        uint64_t nd = 0, nt = 0;
        for (int i = 0; i < nin; i++)
            if (decode_file(tok, inputs[i], so->f, oname, skip_special, &nd, &nt)) {
                scp_out_abort(so);
                scp_die_last();
            }
        if (scp_out_commit(so)) scp_die_last();
        if (!quiet) fprintf(stderr, "%s: decoded %" PRIu64 " documents, %" PRIu64 " tokens\n", scp_progname(), nd, nt);
        scp_tokenizer_free(tok);
        return 0;
    }

    out o = {0};
    o.ids_fmt = ids_fmt;
    o.f = so->f;
    o.what = oname;
    o.bos = bos ? scp_tokenizer_bos_id(tok) : -1;
    o.eos = eos ? scp_tokenizer_eos_id(tok) : -1;
    if (bos && o.bos < 0) scp_die("%s: the tokenizer has no BOS token (--bos)", model ? model : tokpath);
    if (eos && o.eos < 0) scp_die("%s: the tokenizer has no EOS token (--eos)", model ? model : tokpath);
    if (!ids_fmt) {
        scp_tokstream_header h = {0};
        h.vocab_size = (uint32_t)scp_tokenizer_vocab_size(tok);
        h.bos_id = scp_tokenizer_bos_id(tok);
        h.eos_id = scp_tokenizer_eos_id(tok);
        h.pad_id = scp_tokenizer_pad_id(tok);
        h.mask_id = scp_tokenizer_token_id(tok, "<|mask|>");
        h.flags = (bos ? SCP_TOKSTREAM_FLAG_BOS : 0) | (eos ? SCP_TOKSTREAM_FLAG_EOS : 0);
        h.tokenizer_hash = scp_tokenizer_hash(tok);
        if (scp_tokstream_write_begin(&o.w, so->f, oname, &h)) {
            scp_out_abort(so);
            scp_die_last();
        }
    }

    pool p = {0};
    p.tok = tok;
    p.special = special;
    p.nthreads = threads;
    pthread_t *th = NULL;
    if (threads > 1) {
        pthread_barrier_init(&p.start, NULL, (unsigned)threads + 1);
        pthread_barrier_init(&p.done, NULL, (unsigned)threads + 1);
        th = scp_xmalloc(sizeof *th * (size_t)threads);
        for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, &p);
    }
    reader rd = {inputs, nin, 0, NULL, &to, 0, 0, 0};
    batch bt[2] = {{0}, {0}};
    scp_progress prog;
    scp_progress_init(&prog, 0);
    double te = scp_now();
    int failed = 0;
    /* bt[cb] is being encoded while bt[cb ^ 1] is written and then refilled */
    int cb = 0;
    uint64_t wbytes = 0;   /* text bytes of the documents written */
    if (read_batch(&rd, &bt[0])) failed = 1;
    else if (bt[0].ndocs) {
        pool_start(&p, &bt[0]);
        for (;;) {
            int rf = read_batch(&rd, &bt[cb ^ 1]);
            pool_finish(&p);
            if (atomic_load(&p.failed)) rf = -1;
            if (rf) { failed = 1; break; }
            if (bt[cb ^ 1].ndocs) pool_start(&p, &bt[cb ^ 1]);
            /* write bt[cb] while the workers encode the next batch */
            for (size_t i = 0; i < bt[cb].ndocs; i++) {
                if (!failed && out_doc(&o, bt[cb].docs[i].ids, bt[cb].docs[i].n)) failed = 1;
                free(bt[cb].docs[i].ids);
                bt[cb].docs[i].ids = NULL;
            }
            bt[cb].ndocs = 0;
            wbytes += bt[cb].used;
            scp_progress_update(&prog, 0, "%.1f MB, %" PRIu64 " documents, %" PRIu64 " tokens, %.1f MB/s", (double)wbytes / 1e6,
                                o.docs, o.tokens, (double)wbytes / 1e6 / (scp_now() - te + 1e-9));
            cb ^= 1;
            if (!bt[cb].ndocs) break;          /* the input is done */
            if (failed) { pool_finish(&p); break; }
        }
    }
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < bt[k].ndocs; i++) free(bt[k].docs[i].ids);
        free(bt[k].arena);
        free(bt[k].docs);
    }
    if (rd.in) {
        rd.bad += scp_textin_bad(rd.in);
        scp_textin_close(rd.in);
    }
    uint64_t bytes = rd.bytes, bad = rd.bad;
    if (threads > 1) {
        p.quit = 1;
        pthread_barrier_wait(&p.start);
        for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
        pthread_barrier_destroy(&p.start);
        pthread_barrier_destroy(&p.done);
        free(th);
    }
    scp_progress_end(&prog);
    if (failed) {
        scp_out_abort(so);
        scp_die_last();
    }
    if (!ids_fmt && scp_tokstream_write_end(&o.w)) {
        scp_out_abort(so);
        scp_die_last();
    }
    if (scp_out_commit(so)) scp_die_last();
    double el = scp_now() - te;
    if (!quiet) {
        char skipped[64] = "";
        if (bad) snprintf(skipped, sizeof skipped, ", skipped %" PRIu64 " bad record%s", bad, bad == 1 ? "" : "s");
        fprintf(stderr, "%s: %" PRIu64 " documents, %" PRIu64 " tokens from %" PRIu64 " bytes of text in %.2f s (%.1f MB/s, %d thread%s)%s\n",
                scp_progname(), o.docs, o.tokens, bytes, el, (double)bytes / 1e6 / (el > 0 ? el : 1e-9), threads,
                threads == 1 ? "" : "s", skipped);
    }
    (void)t0;
    free(o.line);
    scp_tokenizer_free(tok);
    return 0;
}
