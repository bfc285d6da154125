/* fuzz-train-state.c: libFuzzer target for trainer_state.json (scp_train_state_load), the state a run resumes
 * from, with its options: the input is written to a memory file and loaded over the default options. Any input
 * is either refused with a message naming the file or loaded into a state that saves and loads back the same.
 * Built by `make fuzz`. */
#include "train/state.h"
#include "fuzz_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;
static char path[64], *saved;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0) {
        char tmpl[] = "/tmp/fuzz-train-state-XXXXXX";
        if ((fd = memfd_create("fuzz-train-state", 0)) < 0 || !mkdtemp(tmpl)) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        saved = malloc(strlen(tmpl) + 32);
        sprintf(saved, "%s/trainer_state.json", tmpl);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    scp_train_opts o, o2;
    scp_train_opts_default(&o);
    scp_train_opts_default(&o2);
    scp_train_state s, s2;
    fuzz_expect_message();
    if (scp_train_state_load(path, &s, &o) != 0) {
        fuzz_check_refusal(path);
    } else if (scp_train_state_save(saved, &s, &o) != 0 || scp_train_state_load(saved, &s2, &o2) != 0 ||
               memcmp(&s, &s2, sizeof s) != 0) {
        fprintf(stderr, "trainer_state.json does not save and load back: %s\n", scp_last_error());
        abort();
    }
    scp_train_opts_free(&o);
    scp_train_opts_free(&o2);
    return 0;
}
