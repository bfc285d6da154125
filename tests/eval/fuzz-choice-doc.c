/* fuzz-choice-doc.c: libFuzzer target for one line of a multiple-choice task file (scp_choice_doc_read): the
 * input is parsed as the line's JSON, as scp-eval reads each line, then read into its parts. Any input is
 * either refused with a message naming the line or read into at least two choices, a label for each (the file's
 * own, which may be empty, or A, B, C...) and a gold index among them. Built by `make fuzz`. */
#include "core/json.h"
#include "eval/choice_doc.h"
#include "fuzz_check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *j = scp_json_loadb((const char *)data, size, JSON_ALLOW_NUL, &err, NULL);
    if (!j) return 0;
    scp_choice_doc d;
    fuzz_expect_message();
    if (scp_choice_doc_read(j, "tasks.jsonl: line 1", &d) != 0) {
        fuzz_check_refusal("tasks.jsonl: line 1");
    } else {
        if (d.n_choices < 2 || d.gold < 0 || d.gold >= d.n_choices || !d.text || !d.delimiter) abort();
        for (int k = 0; k < d.n_choices; k++)
            if (!d.choices[k] || !d.labels[k]) abort();
        free(scp_choice_doc_keys(j));
        scp_choice_doc_free(&d);
    }
    json_decref(j);
    return 0;
}
