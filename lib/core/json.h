/* core/json.h: jansson with messages that name the file, line and key. */
#ifndef SCP_JSON_H
#define SCP_JSON_H

#include <jansson.h>
#include <stdint.h>

/* Load a JSON file (or '-'); on error: "PATH:LINE:COL: MESSAGE". Caller json_decref()s. */
json_t *scp_json_load(const char *path);
/* Parse a buffer; `what` names it in messages: "WHAT:LINE:COL: invalid JSON: ..." for bad input, "WHAT: out of
 * memory ..." when an allocation failed. */
json_t *scp_json_parse(const char *buf, size_t len, const char *what);
/* json_loadb with running out of memory told apart from bad input (jansson reports it as no error or as a
 * syntax error): on failure *oom (may be NULL) is 1 when an allocation failed, and err->text then says
 * "out of memory". For callers that word their own messages (JSONL lines). */
json_t *scp_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err, int *oom);
/* Write atomically, pretty-printed with sorted keys (stable bytes). */
int scp_json_save(const char *path, const json_t *j);
/* The same with 17 significant digits, so that every double reads back bit for bit (trainer state). */
int scp_json_save_exact(const char *path, const json_t *j);

/* A program's JSON result on standard output: j dumped with jansson's flags and a newline, then flushed. 0, or
 * -1 with "<stdout>: write error: ..." (a full disk, a closed pipe), so that the program exits 1 with a message. */
int scp_json_print(const json_t *j, size_t flags);

/* Typed getters: return 0 and set *out, 1 if the key is absent (out untouched), -1 with a message naming
 * `what` (the file) and the key when present with the wrong type. */
int scp_json_get_int(const json_t *obj, const char *key, int64_t *out, const char *what);
int scp_json_get_real(const json_t *obj, const char *key, double *out, const char *what);
int scp_json_get_bool(const json_t *obj, const char *key, int *out, const char *what);
int scp_json_get_str(const json_t *obj, const char *key, const char **out, const char *what);

#endif
