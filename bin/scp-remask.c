/* scp-remask: the forward process of masked diffusion as a pipeline stage (man 1 scp-remask): shard set ->
 * masked examples (man 5 scp-masked), with the library code scp-train uses online (lib/data/mask.c). */
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "data/mask.h"
#include "formats/masked_examples.h"
#include "formats/model_config.h"
#include "core/progress.h"
#include "data/shard.h"
#include "tok/tokenizer.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn static void usage(void)
{
    printf("Usage: %s --data SHARDS [OPTIONS] [-o OUT]\n"
           "Mask every sequence of a shard set as masked diffusion's forward process does: draw t in [eps, 1],\n"
           "mask each token with the schedule's probability at t, replace it by the mask id. Writes masked\n"
           "examples (man 5 scp-masked) to OUT or standard output; --show prints them for people instead.\n\n"
           "  -d, --data DIR            the shard set (scp-shard's output)\n"
           "  -p, --split NAME          train (default) or val\n"
           "  -m, --model DIR           take the mask id (config.json mask_token_id) and the tokenizer from DIR\n"
           "  -M, --mask-id ID          the mask token id (instead of --model)\n"
           "  -s, --seed N              seed (default 0): example i's randomness comes from (seed, i) alone\n"
           "  -e, --eps E               smallest t (default 0.001)\n"
           "  -t, --t-sampler NAME      uniform (default), stratified or antithetic across a batch\n"
           "  -S, --schedule NAME       masking probability at t: linear (t, default), cosine, poly2 (t^2)\n"
           "  -B, --batch N             batch size for the t sampler (default 1)\n"
           "  -P, --prompt-len N        keep the first N positions of every sequence unmasked\n"
           "  -E, --prompt-end-id ID    keep each document unmasked up to and including its first token ID\n"
           "  -n, --max-seqs N          only the first N sequences (suffixes k M G)\n"
           "  -j, --threads N           worker threads (default: the number of CPUs; output does not depend on it)\n"
           "  -o, --output FILE         output file (default '-': standard output, never a terminal)\n"
           "  -T, --with-targets        store the clean tokens in each record too\n"
           "      --show                print examples as text (ids without a tokenizer), masked spans in [[ ]]\n"
           "  -q, --quiet               no statistics on stderr\n"
           "  -h, --help                show this help\n"
           "      --version             show the version and compiled-in features\n",
           scp_progname());
    exit(0);
}

typedef struct job {
    const scp_shardset *set;
    const char *data, *split;
    scp_masked_header h;
    scp_t_sampler sampler;
    scp_mask_schedule sched;
    int L, B, prompt_len, prompt_end_id;
    int32_t mask_id;
    const int64_t *inv;   /* packed index -> sequence index, for --prompt-end-id */
} job;

typedef struct stats { uint64_t masked, maskable; double expect, var; } stats;

typedef struct work {
    int32_t *tokens, *doc, *noisy, *prev;
    uint8_t *mask, *keep;
    double *t;
    scp_doc_segment *segs, *psegs;
} work;

static void work_init(work *w, int L, int B)
{
    w->tokens = scp_xmalloc(sizeof(int32_t) * (size_t)L);
    w->doc = scp_xmalloc(sizeof(int32_t) * (size_t)L);
    w->noisy = scp_xmalloc(sizeof(int32_t) * (size_t)L);
    w->prev = scp_xmalloc(sizeof(int32_t) * (size_t)L);
    w->mask = scp_xmalloc((size_t)L);
    w->keep = scp_xmalloc((size_t)L);
    w->t = scp_xmalloc(sizeof(double) * (size_t)B);
    w->segs = scp_xmalloc(sizeof(scp_doc_segment) * (size_t)L);
    w->psegs = scp_xmalloc(sizeof(scp_doc_segment) * (size_t)L);
}

static void work_free(work *w)
{
    free(w->tokens);
    free(w->doc);
    free(w->noisy);
    free(w->prev);
    free(w->mask);
    free(w->keep);
    free(w->t);
    free(w->segs);
    free(w->psegs);
}

/* Has document doc_id's prompt (up to its first prompt_end_id) ended before packed sequence p? Walks back
 * through the earlier pieces of the document (packing order keeps them in consecutive sequences). */
static int prompt_ended_before(const job *jb, work *w, int64_t p, int64_t doc_id, int *err)
{
    for (int64_t q = p - 1; q >= 0; q--) {
        int64_t i = jb->inv[q];
        int nv, ns = scp_shardset_seq_info(jb->set, i, NULL, &nv, w->psegs);
        if (ns <= 0 || scp_shardset_get(jb->set, i, w->prev, NULL)) {
            *err = 1;
            return 0;
        }
        scp_doc_segment *g = &w->psegs[ns - 1];
        if (g->doc_id != doc_id) return 0;   /* not found: cannot happen in a consistent set */
        for (int j = g->pos; j < nv; j++)
            if (w->prev[j] == jb->prompt_end_id) return 1;
        if (g->doc_offset == 0) return 0;
    }
    return 0;
}

/* keep[j] = 1 for padding and for prompt tokens of --prompt-end-id; *n_valid: the real tokens. */
static int mark_keep(const job *jb, work *w, int64_t i, int *n_valid)
{
    const int L = jb->L;
    int64_t packed;
    int nv, ns = scp_shardset_seq_info(jb->set, i, &packed, &nv, jb->prompt_end_id >= 0 ? w->segs : NULL);
    if (ns < 0) return -1;
    *n_valid = nv;
    memset(w->keep, 0, (size_t)nv);
    memset(w->keep + nv, 1, (size_t)(L - nv));
    if (jb->prompt_end_id < 0) return 0;
    for (int k = 0; k < ns; k++) {
        int a = w->segs[k].pos, b = k + 1 < ns ? w->segs[k + 1].pos : nv;
        if (w->segs[k].doc_offset > 0) {
            int err = 0;
            int ended = prompt_ended_before(jb, w, packed, w->segs[k].doc_id, &err);
            if (err) return -1;
            if (ended) continue;
        }
        for (int j = a; j < b; j++) {
            w->keep[j] = 1;
            if (w->tokens[j] == jb->prompt_end_id) break;
        }
    }
    return 0;
}

/* Examples [i0, i1) into out (records back to back); i0 is a multiple of B. */
static int do_block(const job *jb, work *w, int64_t i0, int64_t i1, uint8_t *out, stats *st)
{
    const int L = jb->L, B = jb->B;
    const size_t rs = scp_masked_record_size(&jb->h);
    memset(st, 0, sizeof *st);
    for (int64_t i = i0; i < i1; i++) {
        if ((i - i0) % B == 0) scp_mask_sample_t(jb->sampler, jb->h.seed, (uint64_t)(i / B), B, jb->h.eps, w->t);
        double t = w->t[i % B];
        if (scp_shardset_get(jb->set, i, w->tokens, NULL)) return -1;
        int nv;
        if (mark_keep(jb, w, i, &nv)) return -1;
        /* One pass: maskable positions, and the mask id must not occur among the real tokens (prompts
         * included: the model could not tell it from a mask). */
        int maskable = 0, hit = 0;
        for (int j = 0; j < L; j++) maskable += !w->keep[j];
        for (int j = 0; j < nv; j++) hit |= w->tokens[j] == jb->mask_id;
        for (int j = 0; j < jb->prompt_len && j < L; j++) maskable -= !w->keep[j];
        if (hit)
            for (int j = 0; j < nv; j++)
                if (w->tokens[j] == jb->mask_id)
                    return scp_error("%s: %s sequence %" PRId64 " position %d holds the mask id %d as a real token: choose a mask id "
                                     "outside the data's vocabulary", jb->data, jb->split, i, j, jb->mask_id);
        int n = scp_mask_sequence_keep(jb->h.seed, (uint64_t)i, t, jb->sched, L, w->tokens, w->keep, jb->prompt_len,
                                       jb->mask_id, w->noisy, w->mask);
        double p = scp_mask_prob(jb->sched, t);
        st->masked += (uint64_t)n;
        st->maskable += (uint64_t)maskable;
        st->expect += p * maskable;
        st->var += p * (1 - p) * maskable;
        if (out)
            scp_masked_record_encode(&jb->h, out + (size_t)(i - i0) * rs, (uint64_t)i, t, (uint32_t)n, (uint32_t)maskable,
                                     w->noisy, w->tokens, w->mask);
    }
    return 0;
}

/* --show: one example for people (w holds it: tokens, mask, keep). */
static void show_example(const job *jb, work *w, int64_t i, double t, const scp_tokenizer *tok)
{
    int nv;
    if (scp_shardset_seq_info(jb->set, i, NULL, &nv, NULL) < 0) scp_die_last();
    int maskable = 0, n = 0;
    for (int j = 0; j < jb->L; j++) {
        maskable += j >= jb->prompt_len && !w->keep[j];
        n += w->mask[j];
    }
    printf("== example %" PRId64 "  t=%.4f  masked %d of %d (%.3f; schedule %.3f)\n", i, t, n, maskable,
           maskable ? (double)n / maskable : 0.0, scp_mask_prob(jb->sched, t));
    for (int j = 0; j < nv;) {
        int m = w->mask[j], k = j;
        while (k < nv && w->mask[k] == m) k++;
        if (!tok && j) putchar(' ');
        if (m) fputs("[[", stdout);
        if (tok) {
            size_t len;
            char *s = scp_tokenizer_decode(tok, w->tokens + j, (size_t)(k - j), 0, &len);
            if (s) fwrite(s, 1, len, stdout);
            free(s);
        } else
            for (int q = j; q < k; q++) printf(q > j ? " %d" : "%d", w->tokens[q]);
        if (m) fputs("]]", stdout);
        j = k;
    }
    if (nv < jb->L) printf("%s(+%d padding)", nv ? " " : "", jb->L - nv);
    printf("\n\n");
}

int main(int argc, char **argv)
{
    scp_cli_init(argc, argv);
    enum { OPT_VERSION = 256, OPT_SHOW };
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},       {"split", required_argument, 0, 'p'},
        {"model", required_argument, 0, 'm'},      {"mask-id", required_argument, 0, 'M'},
        {"seed", required_argument, 0, 's'},       {"eps", required_argument, 0, 'e'},
        {"t-sampler", required_argument, 0, 't'},  {"schedule", required_argument, 0, 'S'},
        {"batch", required_argument, 0, 'B'},      {"prompt-len", required_argument, 0, 'P'},
        {"prompt-end-id", required_argument, 0, 'E'}, {"max-seqs", required_argument, 0, 'n'},
        {"threads", required_argument, 0, 'j'},    {"output", required_argument, 0, 'o'},
        {"with-targets", no_argument, 0, 'T'},     {"show", no_argument, 0, OPT_SHOW},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},  {0, 0, 0, 0}};
    const char *data = NULL, *split = "train", *model = NULL, *out = "-";
    int64_t mask_id = -1, max_seqs = -1;
    uint64_t seed = 0;
    double eps = 1e-3;
    int sampler = SCP_T_UNIFORM, sched = SCP_SCHED_LINEAR, B = 1, prompt_len = 0, prompt_end = -1, targets = 0, show = 0,
        quiet = 0, c;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu > 0 ? (int)ncpu : 1;
    while ((c = getopt_long(argc, argv, "d:p:m:M:s:e:t:S:B:P:E:n:j:o:Tqh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'p': split = optarg; break;
        case 'm': model = optarg; break;
        case 'M': mask_id = scp_opt_int("--mask-id", optarg, 0, INT32_MAX); break;
        case 's': seed = (uint64_t)scp_opt_int("--seed", optarg, 0, INT64_MAX); break;
        case 'e': eps = scp_opt_double("--eps", optarg, 0, 0.5); break;
        case 't':
            if ((sampler = scp_t_sampler_from_name(optarg)) < 0)
                scp_usage_error("--t-sampler: '%s' is not uniform, stratified or antithetic", optarg);
            break;
        case 'S':
            if ((sched = scp_mask_schedule_from_name(optarg)) < 0)
                scp_usage_error("--schedule: '%s' is not linear, cosine or poly2", optarg);
            break;
        case 'B': B = (int)scp_opt_int("--batch", optarg, 1, 1 << 20); break;
        case 'P': prompt_len = (int)scp_opt_int("--prompt-len", optarg, 0, INT32_MAX); break;
        case 'E': prompt_end = (int)scp_opt_int("--prompt-end-id", optarg, 0, INT32_MAX); break;
        case 'n': max_seqs = scp_opt_count("--max-seqs", optarg, 0, INT64_MAX); break;
        case 'j': threads = (int)scp_opt_int("--threads", optarg, 1, 1024); break;
        case 'o': out = optarg; break;
        case 'T': targets = 1; break;
        case OPT_SHOW: show = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage();
        case OPT_VERSION: scp_cli_version();
        default: scp_usage_error("unknown option");
        }
    }
    if (optind < argc) scp_usage_error("unexpected argument '%s'", argv[optind]);
    if (!data) scp_usage_error("no shard set (--data DIR)");
    if (strcmp(split, "train") && strcmp(split, "val")) scp_usage_error("--split: '%s' is not train or val", split);
    if (model && mask_id >= 0) scp_usage_error("give --model or --mask-id, not both");
    if (!model && mask_id < 0) scp_usage_error("no mask id: give --model DIR (config.json mask_token_id) or --mask-id ID");

    scp_shardset *set = scp_shardset_open(data, split);
    if (!set) scp_die_last();
    const int L = scp_shardset_seq_len(set);
    scp_tokenizer *tok = NULL;
    if (model) {
        char *cp = scp_is_dir(model) ? scp_path_join(model, "config.json") : scp_xstrdup(model);
        scp_model_config cfg;
        memset(&cfg, 0, sizeof cfg);
        if (scp_config_load(&cfg, cp)) scp_die_last();
        if (cfg.mask_token_id < 0) scp_die("%s: no mask_token_id (give --mask-id ID)", cp);
        if (cfg.mask_token_id >= cfg.vocab_size)
            scp_die("%s: mask_token_id %d is outside the embedding (vocab_size %d)", cp, cfg.mask_token_id, cfg.vocab_size);
        if (cfg.vocab_size < scp_shardset_vocab_size(set))
            scp_die("%s: vocab_size %d is smaller than the data's vocabulary (%d)", cp, cfg.vocab_size, scp_shardset_vocab_size(set));
        mask_id = cfg.mask_token_id;
        scp_config_free(&cfg);
        free(cp);
        if (show && scp_is_dir(model)) {
            tok = scp_tokenizer_load(model);
            if (!tok) scp_warn("%s; showing token ids", scp_last_error());
            else if (scp_shardset_tokenizer_hash(set) && scp_tokenizer_hash(tok) != scp_shardset_tokenizer_hash(set))
                scp_die("%s: the tokenizer (hash %016" PRIx64 ") is not the data's (%016" PRIx64 ")", model,
                        scp_tokenizer_hash(tok), scp_shardset_tokenizer_hash(set));
        }
    }
    if (mask_id == scp_shardset_bos_id(set) || mask_id == scp_shardset_eos_id(set) || mask_id == scp_shardset_pad_id(set))
        scp_die("mask id %" PRId64 " is the data's bos, eos or pad token: choose an unused id", mask_id);
    if (prompt_len > L) prompt_len = L;
    int64_t N = scp_shardset_num_seqs(set);
    if (max_seqs >= 0 && max_seqs < N) N = max_seqs;
    if (show && max_seqs < 0 && N > 4) N = 4;

    job jb = {.set = set, .data = data, .split = split, .sampler = sampler, .sched = sched, .L = L, .B = B, .prompt_len = prompt_len,
              .prompt_end_id = prompt_end, .mask_id = (int32_t)mask_id};
    jb.h = (scp_masked_header){.version = SCP_MASKED_VERSION, .token_bytes = (uint32_t)scp_shardset_token_bytes(set),
                               .seq_len = (uint32_t)L, .vocab_size = (uint32_t)scp_shardset_vocab_size(set),
                               .mask_id = (int32_t)mask_id, .flags = targets ? SCP_MASKED_FLAG_TARGETS : 0, .seed = seed,
                               .t_sampler = (uint32_t)sampler, .schedule = (uint32_t)sched, .eps = eps, .batch = (uint32_t)B,
                               .prompt_len = (uint32_t)prompt_len, .tokenizer_hash = scp_shardset_tokenizer_hash(set),
                               .split = strcmp(split, "val") == 0, .prompt_end_id = prompt_end};
    if (jb.h.token_bytes == 2 && mask_id > 65535) jb.h.token_bytes = 4;   /* the mask id must fit the record */
    int64_t *inv = NULL;
    if (prompt_end >= 0) {
        int64_t all = scp_shardset_num_seqs(set);
        inv = scp_xmalloc(sizeof *inv * (size_t)all);
        for (int64_t i = 0; i < all; i++) {
            int64_t p;
            if (scp_shardset_seq_info(set, i, &p, NULL, NULL) < 0) scp_die_last();
            if (p < 0 || p >= all) scp_die("%s: sequence %" PRId64 " has packed index %" PRId64 " out of range", data, i, p);
            inv[p] = i;
        }
        jb.inv = inv;
    }

    stats tot = {0};
    if (show) {
        work w;
        work_init(&w, L, B);
        for (int64_t i = 0; i < N; i++) {
            stats st;
            if (do_block(&jb, &w, i - i % B, i + 1, NULL, &st) < 0) scp_die_last();
            /* do_block ran the batch prefix up to i: w holds example i. */
            show_example(&jb, &w, i, w.t[i % B], tok);
        }
        work_free(&w);
        scp_tokenizer_free(tok);
        free(inv);
        scp_shardset_close(set);
        return fflush(stdout) ? 1 : 0;
    }

    scp_out *o = scp_out_open(out, 1);
    if (!o) scp_die_last();
    setvbuf(o->f, NULL, _IOFBF, 1 << 20);
    uint8_t hb[SCP_MASKED_HEADER];
    scp_masked_header_encode(&jb.h, hb);
    uint32_t crc = scp_crc32(0, hb, sizeof hb);
    if (scp_write_all(o->f, hb, sizeof hb, o->path)) scp_die_last();
    const size_t rs = scp_masked_record_size(&jb.h);
    /* Blocks of about 1 MB of records, aligned to batches so that each batch's t is drawn once. */
    int64_t blk = (int64_t)((1u << 20) / rs);
    if (blk < 1) blk = 1;
    blk = (blk + B - 1) / B * B;
    int64_t nblocks = (N + blk - 1) / blk;
    int failed = 0;
    char *msg = NULL;
    scp_progress pr;
    scp_progress_init(&pr, N);
    double t0 = scp_now();
#pragma omp parallel num_threads(threads)
    {
        work w;
        work_init(&w, L, B);
        uint8_t *buf = scp_xmalloc(rs * (size_t)blk);
#pragma omp for ordered schedule(dynamic, 1)
        for (int64_t k = 0; k < nblocks; k++) {
            int64_t i0 = k * blk, i1 = i0 + blk < N ? i0 + blk : N;
            stats st;
            int rc = failed ? -1 : do_block(&jb, &w, i0, i1, buf, &st);
            char *m = rc && !failed ? scp_xstrdup(scp_last_error()) : NULL;
#pragma omp ordered
            {
                /* In example order: the bytes and the sums do not depend on the thread count. */
                if (!failed && rc) {
                    failed = 1;
                    msg = m;
                    m = NULL;
                }
                if (!failed) {
                    size_t nb = rs * (size_t)(i1 - i0);
                    crc = scp_crc32(crc, buf, nb);
                    if (scp_write_all(o->f, buf, nb, o->path)) {
                        failed = 1;
                        msg = scp_xstrdup(scp_last_error());
                    }
                    tot.masked += st.masked;
                    tot.maskable += st.maskable;
                    tot.expect += st.expect;
                    tot.var += st.var;
                    scp_progress_update(&pr, i1, "examples");
                }
            }
            free(m);
        }
        free(buf);
        work_free(&w);
    }
    scp_progress_end(&pr);
    if (failed) {
        scp_out_abort(o);
        scp_die("%s", msg);
    }
    uint8_t tr[SCP_MASKED_TRAILER];
    scp_masked_trailer_encode(tr, (uint64_t)N, tot.masked, tot.maskable, crc);
    if (scp_write_all(o->f, tr, sizeof tr, o->path) || scp_out_commit(o)) scp_die_last();
    double el = scp_now() - t0;
    if (!quiet) {
        double frac = tot.maskable ? (double)tot.masked / (double)tot.maskable : 0;
        double exp_t = tot.maskable ? tot.expect / (double)tot.maskable : 0;
        double sd = tot.maskable ? sqrt(tot.var) / (double)tot.maskable : 0;
        fprintf(stderr,
                "%s: %" PRId64 " examples of %d tokens in %.2f s (%.3g tokens/s)\n"
                "%s: masked fraction %.5f of %" PRIu64 " maskable tokens; expected %.5f for the t drawn (z = %.2f), "
                "%.5f for the %s schedule with t uniform on [%g, 1]\n",
                scp_progname(), N, L, el, el > 0 ? (double)N * L / el : 0.0, scp_progname(), frac, tot.maskable, exp_t,
                sd > 0 ? (frac - exp_t) / sd : 0.0, scp_mask_mean_prob(sched, eps), scp_mask_schedule_name(sched), eps);
    }
    free(msg);
    free(inv);
    scp_tokenizer_free(tok);
    scp_shardset_close(set);
    return 0;
}
