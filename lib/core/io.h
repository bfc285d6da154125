/* core/io.h: files for a Unix tool. '-' is standard input or output; outputs go to a temporary name in the same
 * directory, are flushed, fsync'ed and renamed, so a crash never leaves a half-written file under its final
 * name. Whole-directory outputs (checkpoints) work the same way. */
#ifndef SCP_IO_H
#define SCP_IO_H

#include <stdint.h>
#include <stdio.h>
#include <stddef.h>

/* A read-only view of a whole file: mmap'ed for regular files, read into memory for pipes and '-'. */
typedef struct scp_map {
    const uint8_t *data;
    size_t size;
    int mapped;   /* 1: munmap on close, 0: free */
    char *path;   /* for messages */
} scp_map;

int scp_map_file(scp_map *m, const char *path);
void scp_unmap(scp_map *m);

/* Read a whole file (or '-') into a NUL-terminated buffer. */
int scp_read_file(const char *path, char **buf, size_t *len);

/* Open for reading; '-' gives stdin. Error names the file. Close with scp_fclose_in. */
FILE *scp_fopen_in(const char *path);
void scp_fclose_in(FILE *f);

/* An output file written atomically. '-' writes to stdout directly (no temporary). */
typedef struct scp_out {
    FILE *f;
    char *path;   /* final name, or "-" */
    char *tmp;    /* temporary name, NULL for stdout and streamed outputs */
    int streamed; /* an existing device, FIFO or socket, written in place (never renamed over) */
} scp_out;

/* binary != 0 refuses to write binary data to a terminal (stdout on a tty). An existing path that is not a regular
 * file (a character device such as /dev/null, a FIFO) is opened and written in place, not replaced. */
scp_out *scp_out_open(const char *path, int binary);
/* Flush, fsync and rename into place; frees the handle. Returns 0 or -1 (temporary removed). */
int scp_out_commit(scp_out *o);
/* Discard: remove the temporary; frees the handle. */
void scp_out_abort(scp_out *o);

/* 0, or -1 with a message when writing `out` would destroy an input: out is one of the inputs (the same file by
 * device and inode) or lies inside an input directory; with out_is_dir (a directory output that may be replaced
 * or removed) also when an input lies inside out. "-" and NULL inputs, inputs that do not exist and outputs that
 * are devices or FIFOs are never clashes. Programs refuse a clash as a usage error (exit 2). */
int scp_output_check(const char *out, int out_is_dir, const char *const *inputs, int n_inputs);

/* 0, or -1 with a message when an existing `out` is not an output of the program's kind, which --force may
 * replace: a directory where the output is a file, a file where it is a directory, or a directory that is not
 * empty and has no `marker` (the file every output of the kind has, such as a checkpoint's config.json; NULL for
 * a file output), `kind` naming the kind in the message. So a mistyped -o never removes a user's own folder.
 * Absent outputs, "-", devices and FIFOs pass. Programs refuse as a usage error (exit 2), --force or not. */
int scp_output_replaceable(const char *out, int out_is_dir, const char *marker, const char *kind);

/* Whole-directory output: returns the temporary directory "DIR.tmp-PID" (created, registered for cleanup).
 * scp_dir_commit fsyncs it and renames it to DIR, replacing an existing DIR only if replace != 0. */
char *scp_dir_begin(const char *final_dir);
int scp_dir_commit(const char *tmp_dir, const char *final_dir, int replace);
/* Remove a directory tree (used for aborts and checkpoint rotation). */
int scp_rm_rf(const char *path);

int scp_mkdir_p(const char *path);
int scp_is_dir(const char *path);
int scp_file_exists(const char *path);
/* dir + "/" + name, freshly allocated. */
char *scp_path_join(const char *dir, const char *name);
/* Copy a file byte for byte (destination written atomically). */
int scp_copy_file(const char *src, const char *dst);
/* fsync a directory so that renames inside it are durable. */
int scp_fsync_dir(const char *dir);

/* Write exactly n bytes / read exactly n bytes; errors name `what`. Short read at EOF is an error
 * "truncated" unless allow_eof and nothing was read (then returns 1). */
int scp_write_all(FILE *f, const void *buf, size_t n, const char *what);
int scp_read_exact(FILE *f, void *buf, size_t n, const char *what, int allow_eof);

/* CRC32 (zlib) of a buffer, continuing from crc (start with 0). */
uint32_t scp_crc32(uint32_t crc, const void *buf, size_t n);

#endif
