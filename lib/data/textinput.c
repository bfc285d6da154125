/* data/textinput.c: documents from plain text, JSONL, compressed files and archives, streamed through libarchive
 * (see data/textinput.h). Lines are found in a growing buffer, so a member of any size is read in bounded memory
 * except in --doc file mode, where the member is the document. */
#include "data/textinput.h"
#include "core/error.h"
#include "core/json.h"

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct scp_textin {
    char *path;
    scp_textin_opts o;
    struct archive *a;
    int raw;              /* not an archive: the file itself is the one member */
    char *member;         /* member name for messages (NULL for raw) */
    int member_open, member_eof, jsonl, done;
    int fatal;            /* the archive cannot be read further (corrupt compression): no more members */
    char *buf;            /* stream buffer: unread data is [beg, end) */
    size_t cap, beg, end, scan;
    uint64_t line, bad;
    char *doc;            /* document assembly (paragraphs, JSONL strings) */
    size_t doccap;
};

static const char *where(scp_textin *in)
{
    static __thread char w[1200];
    if (in->raw || !in->member) snprintf(w, sizeof w, "%s", in->path);
    else snprintf(w, sizeof w, "%s: member %s", in->path, in->member);
    return w;
}

scp_textin *scp_textin_open(const char *path, const scp_textin_opts *o)
{
    scp_textin *in = scp_xcalloc(1, sizeof *in);
    in->path = scp_xstrdup(strcmp(path, "-") == 0 ? "<stdin>" : path);
    in->o = *o;
    if (!in->o.field) in->o.field = "text";
    in->a = archive_read_new();
    archive_read_support_filter_all(in->a);
    /* Explicit formats: format_all would include text-based ones (mtree) that could claim a plain text file. */
    archive_read_support_format_tar(in->a);
    archive_read_support_format_zip(in->a);
    archive_read_support_format_7zip(in->a);
    archive_read_support_format_cpio(in->a);
    archive_read_support_format_ar(in->a);
    archive_read_support_format_rar(in->a);
    archive_read_support_format_rar5(in->a);
    archive_read_support_format_xar(in->a);
    archive_read_support_format_cab(in->a);
    archive_read_support_format_lha(in->a);
    archive_read_support_format_iso9660(in->a);
    archive_read_support_format_empty(in->a);
    archive_read_support_format_raw(in->a);
    int r = strcmp(path, "-") == 0 ? archive_read_open_fd(in->a, 0, 1 << 16) : archive_read_open_filename(in->a, path, 1 << 16);
    if (r != ARCHIVE_OK) {
        scp_error("%s: cannot read: %s", in->path, archive_error_string(in->a) ? archive_error_string(in->a) : "unknown error");
        scp_textin_close(in);
        return NULL;
    }
    in->cap = 1 << 17;
    in->buf = scp_xmalloc(in->cap);
    return in;
}

void scp_textin_close(scp_textin *in)
{
    if (!in) return;
    if (in->a) archive_read_free(in->a);
    free(in->path);
    free(in->member);
    free(in->buf);
    free(in->doc);
    free(in);
}

uint64_t scp_textin_bad(const scp_textin *in) { return in->bad; }

static int is_jsonl_name(const char *name)
{
    size_t n = strlen(name);
    static const char *comp[] = {".gz", ".zst", ".xz", ".bz2", ".lz4", ".zstd"};
    for (size_t i = 0; i < sizeof comp / sizeof comp[0]; i++) {
        size_t l = strlen(comp[i]);
        if (n > l && strcmp(name + n - l, comp[i]) == 0) { n -= l; break; }
    }
    static const char *js[] = {".jsonl", ".ndjson", ".json"};
    for (size_t i = 0; i < 3; i++) {
        size_t l = strlen(js[i]);
        if (n > l && strncmp(name + n - l, js[i], l) == 0) return 1;
    }
    return 0;
}

/* Open the next regular member: 1, 0 at the end, -1 on error. */
static int next_member(scp_textin *in)
{
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(in->a, &e);
        if (r == ARCHIVE_EOF) return 0;
        if (r < ARCHIVE_WARN) {
            scp_error("%s: %s", in->path, archive_error_string(in->a) ? archive_error_string(in->a) : "cannot read the archive");
            return -1;
        }
        in->raw = archive_format(in->a) == ARCHIVE_FORMAT_RAW;
        if (!in->raw && archive_entry_filetype(e) != AE_IFREG) continue;
        free(in->member);
        in->member = in->raw ? NULL : scp_xstrdup(archive_entry_pathname(e) ? archive_entry_pathname(e) : "?");
        in->member_open = 1;
        in->member_eof = 0;
        in->beg = in->end = in->scan = 0;
        in->line = 0;
        in->jsonl = in->o.format == SCP_IN_JSONL || (in->o.format == SCP_IN_AUTO && is_jsonl_name(in->member ? in->member : in->path));
        return 1;
    }
}

/* Read more of the member into the buffer: 1 read, 0 member end, -1 error. */
static int fill(scp_textin *in)
{
    if (in->member_eof) return 0;
    if (in->beg > 0) {
        memmove(in->buf, in->buf + in->beg, in->end - in->beg);
        in->end -= in->beg;
        in->scan -= in->beg;
        in->beg = 0;
    }
    if (in->cap - in->end < (1 << 16)) in->buf = scp_xrealloc(in->buf, in->cap *= 2);
    la_ssize_t got = archive_read_data(in->a, in->buf + in->end, in->cap - in->end);
    if (got < 0) {
        if (got == ARCHIVE_FATAL || in->raw) in->fatal = 1;
        scp_error("%s: %s", where(in), archive_error_string(in->a) ? archive_error_string(in->a) : "read error");
        return -1;
    }
    if (got == 0) {
        in->member_eof = 1;
        return 0;
    }
    in->end += (size_t)got;
    return 1;
}

/* Next line of the member (without "\n" or "\r\n"): 1, 0 at member end, -1 error. */
static int get_line(scp_textin *in, const char **p, size_t *len)
{
    for (;;) {
        char *nl = in->scan < in->end ? memchr(in->buf + in->scan, '\n', in->end - in->scan) : NULL;
        if (nl) {
            *p = in->buf + in->beg;
            *len = (size_t)(nl - (in->buf + in->beg));
            in->beg = in->scan = (size_t)(nl - in->buf) + 1;
            break;
        }
        in->scan = in->end;
        int r = fill(in);
        if (r < 0) return -1;
        if (r == 0) {
            if (in->beg == in->end) return 0;
            *p = in->buf + in->beg;
            *len = in->end - in->beg;
            in->beg = in->scan = in->end;
            break;
        }
    }
    in->line++;
    if (*len && (*p)[*len - 1] == '\r') (*len)--;
    return 1;
}

static void doc_append(scp_textin *in, size_t *dl, const char *s, size_t n)
{
    if (*dl + n + 1 > in->doccap) in->doc = scp_xrealloc(in->doc, in->doccap = (*dl + n + 1) * 2);
    memcpy(in->doc + *dl, s, n);
    *dl += n;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* Under skip_bad: count a bad record and say so (the first few of each input). */
static void skipped(scp_textin *in)
{
    if (in->bad++ < 5) scp_warn("%s (skipped)", scp_last_error());
    else if (in->bad == 6) scp_warn("%s: more bad records skipped, counted in the summary", in->path);
}

/* A member failed: with skip_bad, count it and go on with the next member (if the archive still reads). */
static int member_failed(scp_textin *in)
{
    if (!in->o.skip_bad) return -1;
    skipped(in);
    in->member_open = 0;
    if (in->fatal) in->done = 1;
    return 0;
}

int scp_textin_next(scp_textin *in, const char **text, size_t *len)
{
    for (;;) {
        if (in->done) return 0;
        if (!in->member_open) {
            int r = next_member(in);
            if (r == 0) { in->done = 1; return 0; }
            if (r < 0) {
                if (!in->o.skip_bad) return -1;
                skipped(in);
                in->done = 1;
                return 0;
            }
        }
        const char *p;
        size_t n;
        if (in->jsonl) {
            int r = get_line(in, &p, &n);
            if (r < 0) { if (member_failed(in)) return -1; continue; }
            if (r == 0) { in->member_open = 0; continue; }
            if (blank(p, n)) continue;
            json_error_t err;
            int oom;
            json_t *j = scp_json_loadb(p, n, JSON_ALLOW_NUL, &err, &oom);
            if (oom)   /* not a bad line: --skip-bad does not apply */
                return scp_error("%s: line %llu: out of memory parsing %zu bytes of JSON", where(in), (unsigned long long)in->line, n);
            json_t *v = j && json_is_object(j) ? json_object_get(j, in->o.field) : NULL;
            if (!v || !json_is_string(v)) {
                if (!j) scp_error("%s: line %llu: not JSON: %s", where(in), (unsigned long long)in->line, err.text);
                else if (!json_is_object(j)) scp_error("%s: line %llu: not a JSON object", where(in), (unsigned long long)in->line);
                else if (!v) scp_error("%s: line %llu: no \"%s\" field", where(in), (unsigned long long)in->line, in->o.field);
                else scp_error("%s: line %llu: field \"%s\" is not a string", where(in), (unsigned long long)in->line, in->o.field);
                json_decref(j);
                if (!in->o.skip_bad) return -1;
                skipped(in);
                continue;
            }
            size_t dl = 0;
            doc_append(in, &dl, json_string_value(v), json_string_length(v));
            json_decref(j);
            if (!dl) continue;
            *text = in->doc;
            *len = dl;
            return 1;
        }
        if (in->o.doc == SCP_DOC_LINE) {
            int r = get_line(in, &p, &n);
            if (r < 0) { if (member_failed(in)) return -1; continue; }
            if (r == 0) { in->member_open = 0; continue; }
            if (!n) continue;
            *text = p;
            *len = n;
            return 1;
        }
        if (in->o.doc == SCP_DOC_PARAGRAPH) {
            size_t dl = 0;
            int r;
            while ((r = get_line(in, &p, &n)) == 1) {
                if (blank(p, n)) {
                    if (dl) break;
                    continue;
                }
                if (dl) doc_append(in, &dl, "\n", 1);
                doc_append(in, &dl, p, n);
            }
            if (r < 0) { if (member_failed(in)) return -1; continue; }
            if (r == 0) in->member_open = 0;
            if (!dl) continue;
            *text = in->doc;
            *len = dl;
            return 1;
        }
        /* whole member */
        int r;
        while ((r = fill(in)) == 1) {}
        in->member_open = 0;
        if (r < 0) { if (member_failed(in)) return -1; continue; }
        if (in->end == in->beg) continue;
        *text = in->buf + in->beg;
        *len = in->end - in->beg;
        return 1;
    }
}
