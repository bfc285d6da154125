/* fuzz-config.c: libFuzzer target for config.json (scp_config_from_json): any input is either refused with a
 * message naming the file or read into a config that writes back (scp_config_to_json) and reads again to the
 * same sizes; the RoPE frequencies are then finite and positive, and the parameter table, its units and its
 * count agree. Built by `make fuzz`. */
#include "core/json.h"
#include "formats/model_config.h"
#include "fuzz_check.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Tables past this many tensors are allowed but slow to build once per input; their sizing is checked by the
 * reader (check_products), which runs on every input. */
#define MAX_TABLE 65536

static int same_sizes(const scp_model_config *a, const scp_model_config *b)
{
    return a->arch == b->arch && a->hidden_size == b->hidden_size && a->intermediate_size == b->intermediate_size &&
           a->num_layers == b->num_layers && a->num_heads == b->num_heads && a->num_kv_heads == b->num_kv_heads &&
           a->head_dim == b->head_dim && a->vocab_size == b->vocab_size && a->num_experts == b->num_experts &&
           a->moe_intermediate_size == b->moe_intermediate_size && a->tie_word_embeddings == b->tie_word_embeddings &&
           a->qkv_bias == b->qkv_bias && a->o_bias == b->o_bias && a->mask_token_id == b->mask_token_id &&
           a->rope_scaling_factor == b->rope_scaling_factor && a->rms_norm_eps == b->rms_norm_eps &&
           a->rope_theta == b->rope_theta && a->causal == b->causal && a->shift_logits == b->shift_logits;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_expect_message();
    json_t *j = scp_json_parse((const char *)data, size, "config.json");
    if (!j) {
        fuzz_check_refusal("config.json");
        return 0;
    }
    scp_model_config c;
    fuzz_expect_message();
    if (scp_config_from_json(&c, j, "config.json") != 0) {
        fuzz_check_refusal("config.json");
        scp_config_free(&c);
        json_decref(j);
        return 0;
    }
    json_decref(j);

    json_t *back = scp_config_to_json(&c);
    scp_model_config c2;
    if (scp_config_from_json(&c2, back, "config.json written back") != 0 || !same_sizes(&c, &c2)) {
        fprintf(stderr, "config.json does not read back: %s\n", scp_last_error());
        abort();
    }
    json_decref(back);
    scp_config_free(&c2);

    double *inv = malloc(sizeof *inv * (size_t)(c.head_dim / 2));
    scp_rope_inv_freq(&c, inv);
    for (int i = 0; i < c.head_dim / 2; i++)
        if (!isfinite(inv[i]) || inv[i] < 0) {
            fprintf(stderr, "RoPE frequency %d is %g\n", i, inv[i]);
            abort();
        }
    free(inv);

    if ((int64_t)c.num_layers * (14 + 3 * (int64_t)c.num_experts) <= MAX_TABLE) {
        scp_param_desc *t;
        int n = scp_param_table(&c, &t);
        int64_t total = 0;
        for (int i = 0; i < n; i++) total += t[i].numel;
        int64_t *lo = malloc(sizeof *lo * (size_t)(2 * c.num_layers + 3));
        int units = scp_param_units(t, n, c.num_layers, lo);
        if (total != scp_param_count(&c) || total > SCP_CONFIG_MAX_PARAMS || units != c.num_layers + 2 || lo[units] != total)
            abort();
        for (int u = 0; u < units; u++)
            if (lo[u] > lo[u + 1]) abort();
        free(lo);
        free(t);
    }
    scp_model_config copy;
    scp_config_copy(&copy, &c);
    scp_config_free(&copy);
    scp_config_free(&c);
    return 0;
}
