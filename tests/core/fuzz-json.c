/* fuzz-json.c: libFuzzer target for the JSON reader (scp_json_parse) and the typed getters: any input is either
 * refused with a message naming it or parsed into a value that dumps and parses back to an equal value; every
 * key of an object is then read with each getter, which answers 0, 1 (absent, null) or -1 with a message naming
 * the file and the key. Built by `make fuzz`. */
#include "core/json.h"
#include "fuzz_check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void read_every_key(const json_t *o)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        int64_t i;
        double d;
        int b;
        const char *s;
        fuzz_expect_message();
        if (scp_json_get_int(o, key, &i, "fuzz.json") < 0) fuzz_check_refusal("fuzz.json");
        fuzz_expect_message();
        if (scp_json_get_real(o, key, &d, "fuzz.json") < 0) fuzz_check_refusal("fuzz.json");
        fuzz_expect_message();
        if (scp_json_get_bool(o, key, &b, "fuzz.json") < 0) fuzz_check_refusal("fuzz.json");
        fuzz_expect_message();
        if (scp_json_get_str(o, key, &s, "fuzz.json") < 0) fuzz_check_refusal("fuzz.json");
        if (json_is_object(v)) read_every_key(v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_expect_message();
    json_t *j = scp_json_parse((const char *)data, size, "fuzz.json");
    if (!j) {
        fuzz_check_refusal("fuzz.json");
        return 0;
    }
    if (json_is_object(j)) read_every_key(j);
    /* what scp_json_save writes reads back as the same value */
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY);
    if (!s) abort();
    json_t *back = scp_json_parse(s, strlen(s), "fuzz.json dumped");
    if (!back || !json_equal(j, back)) {
        fprintf(stderr, "dump does not read back: %s\n", back ? "a different value" : scp_last_error());
        abort();
    }
    json_decref(back);
    free(s);
    json_decref(j);
    return 0;
}
