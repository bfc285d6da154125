/* data/source.c: sequence sources over shard sets and token-stream windows. */
#include "data/source.h"
#include "core/error.h"
#include "core/io.h"
#include "formats/tokstream.h"

#include <stdlib.h>
#include <string.h>

static int shards_get(void *ctx, int64_t i, int32_t *tokens, int32_t *doc)
{
    return scp_shardset_get(ctx, i, tokens, doc);
}

void scp_source_shards(scp_seq_source *src, scp_shardset *s)
{
    src->n = scp_shardset_num_seqs(s);
    src->T = scp_shardset_seq_len(s);
    src->get = shards_get;
    src->ctx = s;
}

int scp_windows_open(scp_windows *w, const char *path, int len, int stride)
{
    memset(w, 0, sizeof *w);
    w->len = len;
    w->stride = stride;
    FILE *f = scp_fopen_in(path);
    if (!f) return -1;
    scp_tokstream_reader r;
    if (scp_tokstream_read_begin(&r, f, path)) {
        scp_fclose_in(f);
        return -1;
    }
    w->tokenizer_hash = r.h.tokenizer_hash;
    w->vocab_size = (int)r.h.vocab_size;
    int32_t *ids = NULL;
    size_t cap = 0, wcap = 0;
    uint32_t n;
    int rc, d = 0;
    while ((rc = scp_tokstream_read_doc(&r, &ids, &cap, &n)) == 1) {
        if ((size_t)w->n_tokens + n > wcap) {
            while ((size_t)w->n_tokens + n > wcap) wcap = wcap ? 2 * wcap : 1 << 16;
            w->tokens = scp_xrealloc(w->tokens, wcap * sizeof *w->tokens);
            w->doc = scp_xrealloc(w->doc, wcap * sizeof *w->doc);
        }
        memcpy(w->tokens + w->n_tokens, ids, n * sizeof *ids);
        for (uint32_t i = 0; i < n; i++) w->doc[w->n_tokens + i] = d;
        w->n_tokens += n;
        d++;
    }
    free(ids);
    scp_tokstream_read_close(&r);
    scp_fclose_in(f);
    if (rc < 0) {
        scp_windows_free(w);
        return -1;
    }
    return 0;
}

void scp_windows_free(scp_windows *w)
{
    free(w->tokens);
    free(w->doc);
    w->tokens = w->doc = NULL;
}

static int windows_get(void *ctx, int64_t i, int32_t *tokens, int32_t *doc)
{
    const scp_windows *w = ctx;
    int64_t s = i * w->stride;
    memcpy(tokens, w->tokens + s, (size_t)w->len * sizeof *tokens);
    if (doc)
        for (int k = 0; k < w->len; k++) doc[k] = w->doc[s + k] - w->doc[s];
    return 0;
}

void scp_source_windows(scp_seq_source *src, scp_windows *w)
{
    src->n = w->n_tokens >= w->len ? (w->n_tokens - w->len) / w->stride + 1 : 0;
    src->T = w->len;
    src->get = windows_get;
    src->ctx = w;
}
