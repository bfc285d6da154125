/* data/textinput.h: documents from files, for scp-tokenize.
 *
 * An input is a path or '-'. Everything goes through libarchive, so gzip, zstd, xz and bzip2 are decompressed
 * transparently and archives (tar, tar.gz, tar.zst, zip, 7z, cpio, ...) are read member by member; a file
 * that is not an archive is one member. Each member is plain text or JSONL:
 *   text:  a document is the whole member (SCP_DOC_FILE), each line (SCP_DOC_LINE, without its "\n" or
 *          "\r\n"), or each paragraph (SCP_DOC_PARAGRAPH: lines between blank lines, joined by "\n");
 *   JSONL: one JSON object per line; the document is the string under `field`.
 * Empty documents are skipped. Errors name the file, the member and the line. */
#ifndef SCP_TEXTINPUT_H
#define SCP_TEXTINPUT_H

#include <stddef.h>
#include <stdint.h>

enum { SCP_DOC_FILE = 0, SCP_DOC_LINE = 1, SCP_DOC_PARAGRAPH = 2 };
enum { SCP_IN_AUTO = 0, SCP_IN_TEXT = 1, SCP_IN_JSONL = 2 };

typedef struct scp_textin_opts {
    int doc;             /* SCP_DOC_* (plain text only) */
    int format;          /* SCP_IN_AUTO: JSONL when the member name ends in .jsonl/.ndjson (before .gz etc.) */
    const char *field;   /* JSONL key, default "text" */
    int skip_bad;        /* skip bad JSONL lines and unreadable members, counting them, instead of failing */
} scp_textin_opts;

typedef struct scp_textin scp_textin;

scp_textin *scp_textin_open(const char *path, const scp_textin_opts *o);
/* Next document: *text (not NUL-terminated, valid until the next call) and *len. 1: a document, 0: end,
 * -1: error (message recorded: "FILE: member M: line N: ..."). */
int scp_textin_next(scp_textin *in, const char **text, size_t *len);
uint64_t scp_textin_bad(const scp_textin *in);       /* records skipped under skip_bad */
void scp_textin_close(scp_textin *in);

#endif
