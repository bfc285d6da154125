/* data/detokenize.c: a token stream or id lines -> text, a document per line (data/tokenize.h). */
#include "data/tokenize.h"
#include "core/error.h"
#include "core/io.h"
#include "formats/tokstream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static int write_text(const scp_tokenizer *tok, const int32_t *ids, size_t n, int skip_special, FILE *out,
                      const char *out_name, scp_tokenize_stats *st)
{
    size_t len;
    char *s = scp_tokenizer_decode(tok, ids, n, skip_special, &len);
    s[len] = '\n';
    int rc = scp_write_all(out, s, len + 1, out_name);
    free(s);
    st->docs++;
    st->tokens += n;
    return rc;
}

/* A token stream: documents without the BOS and EOS the stream's flags say were added. */
static int decode_stream(const scp_tokenizer *tok, const char *tok_name, FILE *f, const char *name, int skip_special,
                         FILE *out, const char *out_name, scp_tokenize_stats *st)
{
    scp_tokstream_reader r;
    if (scp_tokstream_read_begin(&r, f, name) ||
        scp_tokenizer_check_data(tok, tok_name, r.h.tokenizer_hash, name)) {
        scp_tokstream_read_close(&r);
        return -1;
    }
    int32_t *ids = NULL;
    size_t cap = 0;
    uint32_t n;
    int k, rc = 0;
    while (rc == 0 && (k = scp_tokstream_read_doc(&r, &ids, &cap, &n)) == 1) {
        int32_t *p = ids;
        if ((r.h.flags & SCP_TOKSTREAM_FLAG_BOS) && n && p[0] == r.h.bos_id) p++, n--;
        if ((r.h.flags & SCP_TOKSTREAM_FLAG_EOS) && n && p[n - 1] == r.h.eos_id) n--;
        rc = write_text(tok, p, n, skip_special, out, out_name, st);
    }
    if (rc == 0 && k < 0) rc = -1;
    free(ids);
    scp_tokstream_read_close(&r);
    return rc;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Id lines: every id must be one of the tokenizer's. */
static int decode_lines(const scp_tokenizer *tok, FILE *f, const char *name, int skip_special, FILE *out,
                        const char *out_name, scp_tokenize_stats *st)
{
    char *line = NULL;
    size_t line_cap = 0, cap = 0;
    int32_t *ids = NULL;
    uint64_t lineno = 0;
    int nv = scp_tokenizer_vocab_size(tok), rc = 0;
    while (rc == 0 && getline(&line, &line_cap, f) >= 0) {
        lineno++;
        size_t n = 0;
        for (char *p = line;;) {
            while (is_space(*p)) p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v >= nv || (*end && !is_space(*end))) {
                rc = scp_error("%s:%" PRIu64 ": '%.*s' is not a token id of this tokenizer (0..%d)", name, lineno,
                               (int)strcspn(p, " \t\r\n"), p, nv - 1);
                break;
            }
            if (n == cap) ids = scp_xrealloc(ids, sizeof *ids * (cap = cap ? cap * 2 : 256));
            ids[n++] = (int32_t)v;
            p = end;
        }
        if (rc == 0) rc = write_text(tok, ids, n, skip_special, out, out_name, st);
    }
    if (rc == 0 && ferror(f)) rc = scp_error("%s: read error", name);
    free(line);
    free(ids);
    return rc;
}

int scp_detokenize(const scp_tokenizer *tok, const char *tok_name, const char *path, int skip_special, FILE *out,
                   const char *out_name, scp_tokenize_stats *st)
{
    FILE *f = scp_fopen_in(path);
    if (!f) return -1;
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    /* A token stream starts with its magic "SCPTOKS"; anything else is read as id lines. */
    int c = getc(f);
    if (c != EOF) ungetc(c, f);
    int rc = c == 'S' ? decode_stream(tok, tok_name, f, name, skip_special, out, out_name, st)
                      : decode_lines(tok, f, name, skip_special, out, out_name, st);
    scp_fclose_in(f);
    return rc;
}
