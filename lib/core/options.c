/* core/options.c: getopt tables built from the vocabulary of core/options.def. */
#include "core/options.h"
#include "core/cli.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE no_argument
#define REQ required_argument
const scp_option_def scp_options[SCP_OPT_COUNT] = {
#define SCP_OPTION(id, name, letter, arg, meaning) [SCP_OPT_##id] = {name, letter, arg, meaning},
#include "core/options.def"
#undef SCP_OPTION
};
#undef NONE
#undef REQ

/* Values getopt_long returns for an option without a letter: 256 + its id; for alias k: 1024 + k. */
enum { LONG_BASE = 256, ALIAS_BASE = 1024 };

static void add_short(scp_cli *c, int letter, int has_arg)
{
    size_t n = strlen(c->shortopts);
    if (n + 3 >= sizeof c->shortopts) abort();
    c->shortopts[n++] = (char)letter;
    if (has_arg == required_argument) c->shortopts[n++] = ':';
    c->shortopts[n] = 0;
}

void scp_cli_begin(scp_cli *c, const scp_opt_id *ids, const scp_cli_alias *aliases)
{
    memset(c, 0, sizeof *c);
    c->aliases = aliases;
    int n = 0, na = 0;
    while (ids[n] != SCP_OPT_END) n++;
    while (aliases && (aliases[na].old_name || aliases[na].old_letter)) na++;
    c->longopts = scp_xcalloc((size_t)(n + na + 1), sizeof *c->longopts);
    c->n_ids = n;
    /* A leading ':' makes getopt report a missing value as ':' and stay quiet, so that the message is ours. */
    c->shortopts[0] = ':';
    for (int i = 0; i < n; i++) {
        const scp_option_def *d = &scp_options[ids[i]];
        int val = d->letter ? d->letter : LONG_BASE + (int)ids[i];
        c->longopts[i] = (struct option){d->name, d->has_arg, NULL, val};
        if (d->letter) add_short(c, d->letter, d->has_arg);
    }
    int k = n;
    for (int a = 0; a < na; a++) {
        const scp_cli_alias *al = &aliases[a];
        int has_arg = scp_options[al->id].has_arg;
        if (al->old_name) c->longopts[k++] = (struct option){al->old_name, has_arg, NULL, ALIAS_BASE + a};
        if (al->old_letter) {
            if (strchr(c->shortopts + 1, al->old_letter)) abort();   /* the letter is one of the program's own */
            add_short(c, al->old_letter, has_arg);
        }
    }
    optind = 0;   /* glibc: full re-initialisation */
    opterr = 0;
}

static int alias_of_letter(const scp_cli *c, int letter)
{
    for (int a = 0; c->aliases && (c->aliases[a].old_name || c->aliases[a].old_letter); a++)
        if (c->aliases[a].old_letter == letter) return a;
    return -1;
}

/* The vocabulary's option whose letter is `letter` (one at most), or -1. */
static int option_of_letter(int letter)
{
    for (int id = 0; id < SCP_OPT_COUNT; id++)
        if (letter && scp_options[id].letter == letter) return id;
    return -1;
}

/* "-m/--model", or "--name" for an option without a letter, for messages. */
static const char *spelled(scp_opt_id id, char *buf, size_t size)
{
    const scp_option_def *d = &scp_options[id];
    if (d->letter) snprintf(buf, size, "-%c/--%s", d->letter, d->name);
    else snprintf(buf, size, "--%s", d->name);
    return buf;
}

static void warn_alias(const char *old, int is_letter, scp_opt_id id)
{
    char now[64];
    fprintf(stderr, "%s: warning: %s%s is deprecated and will be removed in the next release; use %s\n",
            scp_progname(), is_letter ? "-" : "--", old, spelled(id, now, sizeof now));
}

/* The vocabulary's option spelled `what` ("-m", "--model" or "--model=x"), or -1. */
static int option_of_spelling(const char *what)
{
    if (what[0] != '-') return -1;
    if (what[1] != '-') return option_of_letter(what[1]);
    size_t n = strcspn(what + 2, "=");
    for (int id = 0; id < SCP_OPT_COUNT; id++)
        if (strlen(scp_options[id].name) == n && strncmp(scp_options[id].name, what + 2, n) == 0) return id;
    return -1;
}

/* An option the program does not take: a usage error that says what it means elsewhere in the suite, since the
 * likeliest cause is a spelling that another scp program takes. */
static void refuse_unknown(const scp_cli *c, const char *what)
{
    int id = option_of_spelling(what);
    if (id < 0) scp_usage_error("unknown option '%s'", what);
    char name[64];
    const char *instead = NULL;
    for (int i = 0; c->instead && c->instead[i].text; i++)
        if ((int)c->instead[i].id == id) instead = c->instead[i].text;
    scp_usage_error("unknown option '%s': %s takes no %s (in other scp programs: %s)%s%s", what, scp_progname(),
                    spelled((scp_opt_id)id, name, sizeof name), scp_options[id].meaning, instead ? "; " : "",
                    instead ? instead : "");
}

int scp_cli_next(scp_cli *c, int argc, char **argv)
{
    int longidx = -1;
    int v = getopt_long(argc, argv, c->shortopts, c->longopts, &longidx);
    if (v == -1) return -1;
    if (v == '?' || v == ':') {
        const char *what = argv[optind - 1];
        if (optopt && optopt < LONG_BASE && !(what[0] == '-' && what[1] == '-')) {
            if (v == ':') scp_usage_error("option -%c needs a value", optopt);
            char letter[3] = {'-', (char)optopt, 0};
            refuse_unknown(c, letter);
        }
        if (v == ':') scp_usage_error("option %s needs a value", what);
        refuse_unknown(c, what);
    }
    if (v >= ALIAS_BASE) {
        const scp_cli_alias *al = &c->aliases[v - ALIAS_BASE];
        warn_alias(al->old_name, 0, al->id);
        return (int)al->id;
    }
    if (v >= LONG_BASE) return v - LONG_BASE;
    for (int i = 0; i < c->n_ids; i++)
        if (c->longopts[i].val == v) {
            int id = option_of_letter(v);
            if (id < 0) abort();   /* the program's tables hold a letter the vocabulary does not */
            return id;
        }
    int a = alias_of_letter(c, v);
    if (a >= 0) {
        char l[2] = {(char)v, 0};
        warn_alias(l, 1, c->aliases[a].id);
        return (int)c->aliases[a].id;
    }
    abort();   /* getopt returned a letter that is not in the tables it was given */
}

void scp_cli_end(scp_cli *c)
{
    free(c->longopts);
    c->longopts = NULL;
}

const char *scp_opt_name(scp_opt_id id)
{
    static __thread char buf[64];
    snprintf(buf, sizeof buf, "--%s", scp_options[id].name);
    return buf;
}
