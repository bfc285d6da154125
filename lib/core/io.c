/* core/io.c: mapped inputs, atomic outputs, directory helpers. */
#include "core/io.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <ftw.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <zlib.h>

static int read_stream(FILE *f, const char *path, uint8_t **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = scp_xmalloc(cap + 1);
    for (;;) {
        if (n == cap) buf = scp_xrealloc(buf, (cap *= 2) + 1);
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return scp_error("%s: read error: %s", path, strerror(errno));
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

int scp_map_file(scp_map *m, const char *path)
{
    memset(m, 0, sizeof *m);
    if (strcmp(path, "-") == 0) {
        uint8_t *buf;
        if (read_stream(stdin, "<stdin>", &buf, &m->size)) return -1;
        m->data = buf;
        m->path = scp_xstrdup("<stdin>");
        return 0;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) return scp_error("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return scp_error("%s: cannot stat: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return scp_error("%s: is a directory, expected a file", path);
    }
    m->path = scp_xstrdup(path);
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (p == MAP_FAILED) {
            free(m->path);
            return scp_error("%s: cannot map: %s", path, strerror(errno));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
        m->mapped = 1;
        return 0;
    }
    FILE *f = fdopen(fd, "rb");
    uint8_t *buf;
    int rc = read_stream(f, path, &buf, &m->size);
    fclose(f);
    if (rc) {
        free(m->path);
        return -1;
    }
    m->data = buf;
    return 0;
}

void scp_unmap(scp_map *m)
{
    if (!m) return;
    if (m->mapped) munmap((void *)m->data, m->size);
    else free((void *)m->data);
    free(m->path);
    memset(m, 0, sizeof *m);
}

int scp_read_file(const char *path, char **buf, size_t *len)
{
    FILE *f = scp_fopen_in(path);
    if (!f) return -1;
    uint8_t *b;
    size_t n;
    int rc = read_stream(f, strcmp(path, "-") ? path : "<stdin>", &b, &n);
    scp_fclose_in(f);
    if (rc) return -1;
    *buf = (char *)b;
    if (len) *len = n;
    return 0;
}

FILE *scp_fopen_in(const char *path)
{
    if (strcmp(path, "-") == 0) return stdin;
    FILE *f = fopen(path, "rb");
    if (!f) {
        scp_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        scp_error("%s: is a directory, expected a file", path);
        return NULL;
    }
    return f;
}

void scp_fclose_in(FILE *f)
{
    if (f && f != stdin) fclose(f);
}

static void out_free(scp_out *o)
{
    free(o->tmp);
    free(o->path);
    free(o);
}

scp_out *scp_out_open(const char *path, int binary)
{
    scp_out *o = scp_xcalloc(1, sizeof *o);
    o->path = scp_xstrdup(path);
    if (strcmp(path, "-") == 0) {
        if (binary && isatty(STDOUT_FILENO)) {
            free(o->path);
            free(o);
            scp_error("refusing to write binary data to a terminal (use -o FILE or a pipe)");
            return NULL;
        }
        o->f = stdout;
        return o;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        scp_error("%s: is a directory, not an output file", path);
        out_free(o);
        return NULL;
    }
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* A device, FIFO or socket is written in place: renaming a temporary over it would replace the node. */
        o->f = fopen(path, "wb");
        if (!o->f) {
            scp_error("%s: cannot open for writing: %s", path, strerror(errno));
            out_free(o);
            return NULL;
        }
        o->streamed = 1;
        return o;
    }
    o->tmp = scp_xasprintf("%s.tmp-%ld", path, (long)getpid());
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        scp_error("%s: cannot create: %s", o->tmp, strerror(errno));
        free(o->tmp);
        free(o->path);
        free(o);
        return NULL;
    }
    scp_cleanup_register(o->tmp);
    return o;
}

int scp_out_commit(scp_out *o)
{
    int rc = 0;
    if (!o->tmp) {
        const char *name = o->streamed ? o->path : "<stdout>";
        if (fflush(o->f) != 0) rc = scp_error("%s: write error: %s", name, strerror(errno));
        if (o->streamed && fclose(o->f) != 0 && rc == 0) rc = scp_error("%s: write error: %s", name, strerror(errno));
        out_free(o);
        return rc;
    }
    if (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0)
        rc = scp_error("%s: write error: %s", o->path, strerror(errno));
    if (fclose(o->f) != 0 && rc == 0) rc = scp_error("%s: write error: %s", o->path, strerror(errno));
    if (rc == 0 && rename(o->tmp, o->path) != 0)
        rc = scp_error("%s: cannot rename into place: %s", o->path, strerror(errno));
    if (rc) unlink(o->tmp);
    scp_cleanup_unregister(o->tmp);
    out_free(o);
    return rc;
}

void scp_out_abort(scp_out *o)
{
    if (!o) return;
    if (o->streamed) fclose(o->f);
    if (o->tmp) {
        fclose(o->f);
        unlink(o->tmp);
        scp_cleanup_unregister(o->tmp);
    }
    out_free(o);
}

/* ---- outputs against inputs ------------------------------------------------------------------------------- */
/* The canonical path of p, or of its nearest existing ancestor with the rest appended (an output may not exist
 * yet). Freshly allocated. */
static char *resolve(const char *p)
{
    char *r = realpath(p, NULL);
    if (r) return r;
    char *copy = scp_xstrdup(p), *slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    char *parent = slash ? (slash == copy ? scp_xstrdup("/") : scp_xasprintf("%.*s", (int)(slash - copy), copy)) : scp_xstrdup(".");
    char *rp = resolve(parent);
    char *out = scp_xasprintf("%s/%s", strcmp(rp, "/") ? rp : "", base);
    free(rp);
    free(parent);
    free(copy);
    return out;
}

/* 1 when path lies strictly inside dir (both canonical). */
static int inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || (n == 1 && dir[0] == '/')) && path[n + 1 - (n == 1)];
}

int scp_output_check(const char *out, int out_is_dir, const char *const *inputs, int n_inputs)
{
    if (!out || strcmp(out, "-") == 0) return 0;
    struct stat so;
    int out_exists = stat(out, &so) == 0;
    if (out_exists && !S_ISREG(so.st_mode) && !S_ISDIR(so.st_mode)) return 0;   /* a device or FIFO: streamed */
    char *ro = resolve(out);
    int rc = 0;
    for (int i = 0; i < n_inputs && rc == 0; i++) {
        const char *in = inputs[i];
        struct stat si;
        if (!in || strcmp(in, "-") == 0 || stat(in, &si) != 0) continue;
        if (out_exists && so.st_dev == si.st_dev && so.st_ino == si.st_ino) {
            rc = scp_error("%s: the output is the input %s; it would be destroyed", out, in);
            break;
        }
        char *ri = realpath(in, NULL);
        if (!ri) continue;
        if (S_ISDIR(si.st_mode) && inside(ro, ri))
            rc = scp_error("%s: the output lies inside the input directory %s", out, in);
        else if (out_is_dir && inside(ri, ro))
            rc = scp_error("%s: the input %s lies inside the output directory, which may be replaced", out, in);
        free(ri);
    }
    free(ro);
    return rc;
}

/* The first entry of dir other than . and .. (freshly allocated), or NULL when it has none or cannot be read. */
static char *first_entry(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *name = NULL;
    struct dirent *e;
    while (!name && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) name = scp_xstrdup(e->d_name);
    closedir(d);
    return name;
}

int scp_output_replaceable(const char *out, int out_is_dir, const char *marker, const char *kind)
{
    struct stat st;
    if (!out || strcmp(out, "-") == 0 || stat(out, &st) != 0) return 0;
    if (S_ISREG(st.st_mode) && out_is_dir) return scp_error("%s: exists and is a file, not a %s", out, kind);
    if (!S_ISDIR(st.st_mode)) return 0;
    if (!out_is_dir) return scp_error("%s: is a directory; the output is a %s file", out, kind);
    char *p = scp_path_join(out, marker);
    int has = scp_file_exists(p);
    free(p);
    char *e = has ? NULL : first_entry(out);
    if (!e) return 0;
    int rc = scp_error("%s: exists and is not a %s (it holds %s but no %s): neither written into nor replaced, "
                       "with or without --force; remove it yourself or give another output", out, kind, e, marker);
    free(e);
    return rc;
}

/* ---- directories ---------------------------------------------------------------------------------------- */
int scp_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int scp_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int scp_mkdir_p(const char *path)
{
    char *p = scp_xstrdup(path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) goto fail;
            *s = '/';
        }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) goto fail;
    if (!scp_is_dir(p)) {
        scp_error("%s: exists and is not a directory", path);
        free(p);
        return -1;
    }
    free(p);
    return 0;
fail:
    scp_error("%s: cannot create directory: %s", p, strerror(errno));
    free(p);
    return -1;
}

char *scp_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    if (n && dir[n - 1] == '/') return scp_xasprintf("%s%s", dir, name);
    return scp_xasprintf("%s/%s", dir, name);
}

static int rm_entry(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb; (void)ftw;
    return (type == FTW_DP ? rmdir(p) : unlink(p)) ? -1 : 0;
}

int scp_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return unlink(path) ? scp_error("%s: cannot remove: %s", path, strerror(errno)) : 0;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return scp_error("%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

int scp_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return scp_error("%s: cannot open directory: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc ? scp_error("%s: cannot sync: %s", dir, strerror(errno)) : 0;
}

char *scp_dir_begin(const char *final_dir)
{
    size_t n = strlen(final_dir);
    while (n > 1 && final_dir[n - 1] == '/') n--;
    char *tmp = scp_xasprintf("%.*s.tmp-%ld", (int)n, final_dir, (long)getpid());
    scp_rm_rf(tmp);
    if (scp_mkdir_p(tmp)) {
        free(tmp);
        return NULL;
    }
    scp_cleanup_register(tmp);
    return tmp;
}

static char *parent_dir(const char *path)
{
    char *p = scp_xstrdup(path);
    char *slash = strrchr(p, '/');
    if (!slash) {
        free(p);
        return scp_xstrdup(".");
    }
    if (slash == p) slash[1] = 0;
    else *slash = 0;
    return p;
}

int scp_dir_commit(const char *tmp_dir, const char *final_dir, int replace)
{
    /* Sync every file inside, then the directory, then rename. */
    DIR *d = opendir(tmp_dir);
    if (!d) return scp_error("%s: cannot open directory: %s", tmp_dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        char *p = scp_path_join(tmp_dir, e->d_name);
        int fd = open(p, O_RDONLY);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        free(p);
    }
    closedir(d);
    if (scp_fsync_dir(tmp_dir)) return -1;
    char *old = NULL;
    if (scp_file_exists(final_dir)) {
        if (!replace) return scp_error("%s: already exists (use --force to replace it)", final_dir);
        old = scp_xasprintf("%s.old-%ld", final_dir, (long)getpid());
        if (rename(final_dir, old) != 0) {
            free(old);
            return scp_error("%s: cannot move aside: %s", final_dir, strerror(errno));
        }
    }
    if (rename(tmp_dir, final_dir) != 0) {
        int e2 = errno;
        if (old) rename(old, final_dir);
        free(old);
        return scp_error("%s: cannot rename into place: %s", final_dir, strerror(e2));
    }
    scp_cleanup_unregister(tmp_dir);
    if (old) {
        scp_rm_rf(old);
        free(old);
    }
    char *parent = parent_dir(final_dir);
    scp_fsync_dir(parent);
    free(parent);
    return 0;
}

int scp_copy_file(const char *src, const char *dst)
{
    scp_map m;
    if (scp_map_file(&m, src)) return -1;
    scp_out *o = scp_out_open(dst, 0);
    if (!o) {
        scp_unmap(&m);
        return -1;
    }
    int rc = scp_write_all(o->f, m.data, m.size, dst);
    scp_unmap(&m);
    if (rc) {
        scp_out_abort(o);
        return -1;
    }
    return scp_out_commit(o);
}

int scp_write_all(FILE *f, const void *buf, size_t n, const char *what)
{
    if (n && fwrite(buf, 1, n, f) != n) return scp_error("%s: write error: %s", what, strerror(errno));
    return 0;
}

int scp_read_exact(FILE *f, void *buf, size_t n, const char *what, int allow_eof)
{
    size_t got = n ? fread(buf, 1, n, f) : 0;
    if (got == n) return 0;
    if (ferror(f)) return scp_error("%s: read error: %s", what, strerror(errno));
    if (got == 0 && allow_eof) return 1;
    return scp_error("%s: truncated (expected %zu more bytes, got %zu)", what, n, got);
}

uint32_t scp_crc32(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    /* zlib's crc32 takes a uInt length: feed large buffers in pieces. */
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}
