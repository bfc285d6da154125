/* tok/bpe.c: the BPE core: hash maps for pieces and merges, the merge loop, and a per-thread cache of
 * pre-token -> ids (real text repeats its words, so most pre-tokens are looked up, not merged). */
#include "tok/tok_internal.h"
#include "core/error.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

uint64_t tok_hash_bytes(const void *p, size_t n)
{
    /* FNV-1a with a final mix: short keys, cheap, good enough for power-of-two tables. */
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

void tok_strmap_init(tok_strmap *m, uint32_t expect)
{
    m->cap = pow2_at_least((uint64_t)expect * 2 + 1);
    m->n = 0;
    m->key = scp_xcalloc(m->cap, sizeof *m->key);
    m->klen = scp_xcalloc(m->cap, sizeof *m->klen);
    m->val = scp_xcalloc(m->cap, sizeof *m->val);
}

void tok_strmap_free(tok_strmap *m)
{
    free(m->key);
    free(m->klen);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static void strmap_grow(tok_strmap *m)
{
    tok_strmap o = *m;
    tok_strmap_init(m, o.cap);
    for (uint32_t i = 0; i < o.cap; i++)
        if (o.key[i]) tok_strmap_put(m, o.key[i], o.klen[i], o.val[i]);
    tok_strmap_free(&o);
}

int tok_strmap_put(tok_strmap *m, const char *k, uint32_t len, int32_t v)
{
    if ((m->n + 1) * 2 > m->cap) strmap_grow(m);
    uint32_t i = (uint32_t)tok_hash_bytes(k, len) & (m->cap - 1);
    while (m->key[i]) {
        if (m->klen[i] == len && memcmp(m->key[i], k, len) == 0) return 1;
        i = (i + 1) & (m->cap - 1);
    }
    m->key[i] = k;
    m->klen[i] = len;
    m->val[i] = v;
    m->n++;
    return 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *k, uint32_t len)
{
    if (!m->cap) return -1;
    uint32_t i = (uint32_t)tok_hash_bytes(k, len) & (m->cap - 1);
    while (m->key[i]) {
        if (m->klen[i] == len && memcmp(m->key[i], k, len) == 0) return m->val[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

static inline uint32_t pair_slot(uint64_t key, uint32_t cap)
{
    key ^= key >> 31;
    key *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(key >> 32) & (cap - 1);
}

void tok_pairmap_init(tok_pairmap *m, uint32_t expect)
{
    m->cap = pow2_at_least((uint64_t)expect * 2 + 1);
    m->n = 0;
    m->key = scp_xcalloc(m->cap, sizeof *m->key);
    m->rank = scp_xcalloc(m->cap, sizeof *m->rank);
    m->id = scp_xcalloc(m->cap, sizeof *m->id);
}

void tok_pairmap_free(tok_pairmap *m)
{
    free(m->key);
    free(m->rank);
    free(m->id);
    memset(m, 0, sizeof *m);
}

int tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    if ((m->n + 1) * 2 > m->cap) {
        tok_pairmap o = *m;
        tok_pairmap_init(m, o.cap);
        for (uint32_t i = 0; i < o.cap; i++)
            if (o.key[i]) {
                uint64_t k = o.key[i] - 1;
                tok_pairmap_put(m, (int32_t)(k >> 32), (int32_t)(uint32_t)k, o.rank[i], o.id[i]);
            }
        tok_pairmap_free(&o);
    }
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t i = pair_slot(key, m->cap);
    while (m->key[i]) {
        if (m->key[i] == key) return 1;
        i = (i + 1) & (m->cap - 1);
    }
    m->key[i] = key;
    m->rank[i] = rank;
    m->id[i] = id;
    m->n++;
    return 0;
}

int32_t tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *id)
{
    if (!m->cap) return INT32_MAX;
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t i = pair_slot(key, m->cap);
    while (m->key[i]) {
        if (m->key[i] == key) {
            *id = m->id[i];
            return m->rank[i];
        }
        i = (i + 1) & (m->cap - 1);
    }
    return INT32_MAX;
}

void tok_ids_push(tok_ids *a, int32_t id)
{
    if (a->n == a->cap) a->v = scp_xrealloc(a->v, sizeof *a->v * (a->cap = a->cap ? a->cap * 2 : 256));
    a->v[a->n++] = id;
}

/* ---- per-thread cache ---- */

#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_WORD 64

typedef struct cache_ent {
    uint64_t h;          /* 0 = empty */
    uint32_t koff, klen; /* key bytes in arena */
    uint32_t ioff, nids; /* ids in arena (int32 aligned) */
} cache_ent;

typedef struct tcache {
    uint64_t serial;
    uint32_t n;
    cache_ent *ent;
    char *arena;
    size_t used, cap;
} tcache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_destroy(void *p)
{
    tcache *c = p;
    if (!c) return;
    free(c->ent);
    free(c->arena);
    free(c);
}

static void cache_key_make(void) { pthread_key_create(&cache_key, cache_destroy); }

static void cache_clear(tcache *c)
{
    memset(c->ent, 0, sizeof *c->ent * CACHE_SLOTS);
    c->n = 0;
    c->used = 0;
}

static tcache *cache_get(const scp_tokenizer *t)
{
    pthread_once(&cache_once, cache_key_make);
    tcache *c = pthread_getspecific(cache_key);
    if (!c) {
        c = scp_xcalloc(1, sizeof *c);
        c->ent = scp_xcalloc(CACHE_SLOTS, sizeof *c->ent);
        c->arena = scp_xmalloc(c->cap = 1 << 22);
        pthread_setspecific(cache_key, c);
    }
    if (c->serial != t->serial) {
        cache_clear(c);
        c->serial = t->serial;
    }
    return c;
}

void tok_cache_release(const scp_tokenizer *t)
{
    pthread_once(&cache_once, cache_key_make);
    tcache *c = pthread_getspecific(cache_key);
    if (c && c->serial == t->serial) {
        cache_destroy(c);
        pthread_setspecific(cache_key, NULL);
    }
}

/* ---- the merge loop ---- */

/* sym is (m) ids; merges pairs lowest rank first, leftmost among equals, in place; returns the new count.
 * rk[i]/nid[i] hold the rank and result of the pair (i, i+1), so each merge only re-looks-up its neighbours. */
static size_t merge_all(const scp_tokenizer *t, int32_t *sym, size_t m, int32_t *rk, int32_t *nid)
{
    if (m < 2) return m;
    for (size_t i = 0; i + 1 < m; i++) rk[i] = tok_pairmap_get(&t->merges, sym[i], sym[i + 1], &nid[i]);
    for (;;) {
        int32_t best = INT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rk[i] < best) {
                best = rk[i];
                bi = i;
            }
        if (best == INT32_MAX) break;
        sym[bi] = nid[bi];
        size_t tail = m - bi - 2;   /* elements after bi+1 */
        memmove(sym + bi + 1, sym + bi + 2, tail * sizeof *sym);
        if (tail) {
            memmove(rk + bi + 1, rk + bi + 2, (tail - 1) * sizeof *rk);
            memmove(nid + bi + 1, nid + bi + 2, (tail - 1) * sizeof *nid);
        }
        m--;
        if (bi > 0) rk[bi - 1] = tok_pairmap_get(&t->merges, sym[bi - 1], sym[bi], &nid[bi - 1]);
        if (bi + 1 < m) rk[bi] = tok_pairmap_get(&t->merges, sym[bi], sym[bi + 1], &nid[bi]);
        if (m < 2) break;
    }
    return m;
}

/* The same merge order for long pre-tokens (a 100 KB run of letters is one pre-token): a binary heap of
 * candidate pairs ordered by (rank, left position) over a doubly linked list of symbols, O(n log n) instead
 * of O(n^2). A popped pair is used only if both symbols are still adjacent and unchanged. */
typedef struct hpair {
    int32_t rank, left, right, a, b, id;
} hpair;

static int hless(const hpair *x, const hpair *y) { return x->rank < y->rank || (x->rank == y->rank && x->left < y->left); }

static void hpush(hpair *h, size_t *n, hpair v)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(&v, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static hpair hpop(hpair *h, size_t *n)
{
    hpair top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && hless(&h[c + 1], &h[c])) c++;
        if (!hless(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static size_t merge_heap(const scp_tokenizer *t, int32_t *sym, size_t m)
{
    int32_t *prev = scp_xmalloc(sizeof *prev * m), *next = scp_xmalloc(sizeof *next * m);
    hpair *h = scp_xmalloc(sizeof *h * (2 * m + 1));
    size_t hn = 0;
    for (size_t i = 0; i < m; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
#define TRY(l, r) do { int32_t id_, rk_ = tok_pairmap_get(&t->merges, sym[l], sym[r], &id_); \
        if (rk_ != INT32_MAX) hpush(h, &hn, (hpair){rk_, (l), (r), sym[l], sym[r], id_}); } while (0)
    for (size_t i = 0; i + 1 < m; i++) TRY((int32_t)i, (int32_t)i + 1);
    while (hn) {
        hpair p = hpop(h, &hn);
        if (sym[p.left] != p.a || next[p.left] != p.right || sym[p.right] != p.b) continue;
        sym[p.left] = p.id;
        sym[p.right] = -1;
        int32_t r2 = next[p.right];
        next[p.left] = r2;
        if (r2 >= 0) prev[r2] = p.left;
        if (prev[p.left] >= 0) TRY(prev[p.left], p.left);
        if (r2 >= 0) TRY(p.left, r2);
    }
#undef TRY
    size_t o = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[o++] = sym[i];
    free(prev);
    free(next);
    free(h);
    return o;
}

/* Initial symbols of a pre-token. */
static size_t initial(const scp_tokenizer *t, const uint8_t *s, size_t len, int32_t *sym)
{
    size_t m = 0;
    if (t->family == TOK_BYTELEVEL) {
        for (size_t i = 0; i < len; i++)
            if (t->byte_id[s[i]] >= 0) sym[m++] = t->byte_id[s[i]];
            else if (t->unk_id >= 0) sym[m++] = t->unk_id;
        return m;
    }
    size_t i = 0;
    while (i < len) {
        size_t l = 1;
        uint8_t b = s[i];
        if (b >= 0xF0) l = 4;
        else if (b >= 0xE0) l = 3;
        else if (b >= 0xC0) l = 2;
        if (i + l > len) l = len - i;
        int32_t id = tok_strmap_get(&t->piece, (const char *)s + i, (uint32_t)l);
        if (id >= 0 && !(t->attr[id] & TOK_A_NOMERGE)) {
            sym[m++] = id;
        } else {
            int all = t->byte_fallback;
            for (size_t k = 0; all && k < l; k++)
                if (t->byte_id[s[i + k]] < 0) all = 0;
            if (all)
                for (size_t k = 0; k < l; k++) sym[m++] = t->byte_id[s[i + k]];
            else if (t->unk_id >= 0)
                sym[m++] = t->unk_id;
        }
        i += l;
    }
    return m;
}

int tok_bpe_word(const scp_tokenizer *t, const char *s, size_t len, tok_ids *out)
{
    if (!len) return 0;
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(&t->piece, s, (uint32_t)len);
        if (id >= 0) {
            tok_ids_push(out, id);
            return 0;
        }
    }
    tcache *c = NULL;
    uint64_t h = 0;
    uint32_t slot = 0;
    if (len <= CACHE_MAX_WORD) {
        c = cache_get(t);
        h = tok_hash_bytes(s, len) | 1;
        slot = (uint32_t)(h >> 16) & (CACHE_SLOTS - 1);
        for (;;) {
            cache_ent *e = &c->ent[slot];
            if (!e->h) break;
            if (e->h == h && e->klen == len && memcmp(c->arena + e->koff, s, len) == 0) {
                const int32_t *ids = (const int32_t *)(void *)(c->arena + e->ioff);
                for (uint32_t k = 0; k < e->nids; k++) tok_ids_push(out, ids[k]);
                return 0;
            }
            slot = (slot + 1) & (CACHE_SLOTS - 1);
        }
    }
    /* (len) initial symbols at most: one per byte. */
    int32_t stackbuf[3 * 256];
    int32_t *sym = stackbuf, *rk, *nid;
    int32_t *heap = NULL;
    if (len <= 256) {
        rk = stackbuf + 256;
        nid = stackbuf + 512;
    } else {
        heap = scp_xmalloc(3 * len * sizeof *heap);
        sym = heap;
        rk = heap + len;
        nid = heap + 2 * len;
    }
    size_t m = initial(t, (const uint8_t *)s, len, sym);
    m = m > 256 ? merge_heap(t, sym, m) : merge_all(t, sym, m, rk, nid);
    for (size_t k = 0; k < m; k++) tok_ids_push(out, sym[k]);
    if (c) {
        if (c->n * 2 >= CACHE_SLOTS || c->used + len + 4 * m + 8 > c->cap) {
            cache_clear(c);
            slot = (uint32_t)(h >> 16) & (CACHE_SLOTS - 1);
        }
        cache_ent *e = &c->ent[slot];
        e->h = h;
        e->koff = (uint32_t)c->used;
        e->klen = (uint32_t)len;
        memcpy(c->arena + c->used, s, len);
        c->used = (c->used + len + 3) & ~(size_t)3;
        e->ioff = (uint32_t)c->used;
        e->nids = (uint32_t)m;
        memcpy(c->arena + c->used, sym, 4 * m);
        c->used += 4 * m;
        c->n++;
    }
    free(heap);
    return 0;
}
