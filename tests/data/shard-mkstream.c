/* shard-mkstream: write a token stream of random documents, for the shard and remask tests and the data
 * benchmark. Document d has a length uniform in [min, max] and ids uniform in [4, vocab), framed by BOS and
 * EOS when given, all from the stream (seed, d): the same arguments give the same bytes.
 *   shard-mkstream [--docs N | --tokens N] [--vocab V] [--min A] [--max B] [--seed S] [--hash HEX]
 *                  [--bos ID] [--eos ID] [--pad ID] [--mask ID] [-o FILE]
 * --tokens N: documents until at least N tokens. */
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "core/rng.h"
#include "formats/tokstream.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    static const struct option opts[] = {
        {"docs", required_argument, 0, 'd'}, {"tokens", required_argument, 0, 'n'}, {"vocab", required_argument, 0, 'V'},
        {"min", required_argument, 0, 'a'},  {"max", required_argument, 0, 'b'},    {"seed", required_argument, 0, 's'},
        {"hash", required_argument, 0, 'H'}, {"bos", required_argument, 0, 'B'},    {"eos", required_argument, 0, 'E'},
        {"pad", required_argument, 0, 'P'},  {"mask", required_argument, 0, 'M'},   {"output", required_argument, 0, 'o'},
        {0, 0, 0, 0}};
    int64_t docs = 100, tokens = 0, vocab = 1000, mn = 1, mx = 300, seed = 1, bos = 1, eos = 2, pad = -1, mask = -1;
    uint64_t hash = 0x1234abcd5678ef00ull;
    const char *out = "-";
    int c;
    while ((c = getopt_long(argc, argv, "d:n:V:a:b:s:H:B:E:P:M:o:", opts, NULL)) != -1) {
        switch (c) {
        case 'd': docs = scp_opt_count("--docs", optarg, 0, INT64_MAX); break;
        case 'n': tokens = scp_opt_count("--tokens", optarg, 0, INT64_MAX); break;
        case 'V': vocab = scp_opt_int("--vocab", optarg, 5, INT32_MAX); break;
        case 'a': mn = scp_opt_int("--min", optarg, 0, 1 << 30); break;
        case 'b': mx = scp_opt_int("--max", optarg, 0, 1 << 30); break;
        case 's': seed = scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case 'H': hash = strtoull(optarg, NULL, 16); break;
        case 'B': bos = scp_opt_int("--bos", optarg, -1, 3); break;
        case 'E': eos = scp_opt_int("--eos", optarg, -1, 3); break;
        case 'P': pad = scp_opt_int("--pad", optarg, -1, 3); break;
        case 'M': mask = scp_opt_int("--mask", optarg, -1, 3); break;
        case 'o': out = optarg; break;
        default: scp_usage_error("unknown option");
        }
    }
    if (mx < mn) scp_usage_error("--max is below --min");
    scp_out *o = scp_out_open(out, 1);
    if (!o) scp_die_last();
    setvbuf(o->f, NULL, _IOFBF, 1 << 20);
    scp_tokstream_header h = {.vocab_size = (uint32_t)vocab, .bos_id = (int32_t)bos, .eos_id = (int32_t)eos,
                              .pad_id = (int32_t)pad, .mask_id = (int32_t)mask, .tokenizer_hash = hash,
                              .flags = (bos >= 0 ? SCP_TOKSTREAM_FLAG_BOS : 0) | (eos >= 0 ? SCP_TOKSTREAM_FLAG_EOS : 0)};
    scp_tokstream_writer w;
    if (scp_tokstream_write_begin(&w, o->f, out, &h)) scp_die_last();
    int32_t *ids = scp_xmalloc(sizeof *ids * (size_t)(mx + 2));
    int64_t total = 0;
    for (int64_t d = 0; tokens ? total < tokens : d < docs; d++) {
        scp_rng r;
        scp_rng_init(&r, (uint64_t)seed, (uint64_t)d);
        int64_t len = mn + (int64_t)scp_rng_below(&r, (uint64_t)(mx - mn + 1)), n = 0;
        if (bos >= 0) ids[n++] = (int32_t)bos;
        for (int64_t i = 0; i < len; i++) ids[n++] = 4 + (int32_t)scp_rng_below(&r, (uint64_t)(vocab - 4));
        if (eos >= 0) ids[n++] = (int32_t)eos;
        if (scp_tokstream_write_doc(&w, ids, (uint32_t)n)) scp_die_last();
        total += n;
    }
    free(ids);
    if (scp_tokstream_write_end(&w) || scp_out_commit(o)) scp_die_last();
    return 0;
}
