/* core/options.h: the one option vocabulary of the suite, and getopt driven by it.
 *
 * Every long option and short letter that any program accepts is defined once, in core/options.def, with its
 * meaning; a program names the options it takes (SCP_OPT_* ids) and gets getopt's tables from them, so a letter
 * or a long name means one thing in every program. Spellings that changed stay accepted for one release as a
 * program's deprecated aliases: they work, with a warning on stderr naming the new spelling.
 *
 *   static const scp_opt_id opts[] = {SCP_OPT_DATA, SCP_OPT_OUTPUT, SCP_OPT_THREADS, SCP_OPT_HELP, SCP_OPT_END};
 *   static const scp_cli_alias old[] = {{"eps", 0, SCP_OPT_T_EPS}, {NULL, 't', SCP_OPT_T_SAMPLER}, {0}};
 *   scp_cli c;
 *   scp_cli_begin(&c, opts, old);
 *   for (int id; (id = scp_cli_next(&c, argc, argv)) >= 0;)
 *       switch (id) { case SCP_OPT_DATA: data = optarg; break; ... }
 *   scp_cli_end(&c);           (optind is then the first operand, as with getopt)
 */
#ifndef SCP_OPTIONS_H
#define SCP_OPTIONS_H

#include <getopt.h>

typedef enum scp_opt_id {
    SCP_OPT_END = -1,   /* terminates a program's list of ids */
#define SCP_OPTION(id, name, letter, arg, meaning) SCP_OPT_##id,
#include "core/options.def"
#undef SCP_OPTION
    SCP_OPT_COUNT
} scp_opt_id;

typedef struct scp_option_def {
    const char *name;      /* long name, without "--" */
    int letter;            /* short letter, or 0 */
    int has_arg;           /* no_argument or required_argument */
    const char *meaning;
} scp_option_def;

/* The vocabulary, indexed by scp_opt_id. */
extern const scp_option_def scp_options[SCP_OPT_COUNT];

/* A deprecated spelling: an old long name (old_name) or an old letter (old_letter) that a program accepts for one
 * release as option id. A list ends with an entry whose old_name is NULL and old_letter 0. */
typedef struct scp_cli_alias {
    const char *old_name;
    int old_letter;
    scp_opt_id id;
} scp_cli_alias;

/* What a program offers in place of an option of the vocabulary that it does not take, for the message that
 * refuses it (scp-train's checkpoint is --init, not -m). A list ends with an entry whose text is NULL. */
typedef struct scp_cli_instead {
    scp_opt_id id;
    const char *text;    /* such as "the checkpoint training starts from is -i/--init" */
} scp_cli_instead;

typedef struct scp_cli {
    const scp_cli_alias *aliases;
    const scp_cli_instead *instead;   /* NULL, or set after scp_cli_begin */
    struct option *longopts;    /* the program's options, then its aliases' old long names */
    int n_ids;
    char shortopts[160];
} scp_cli;

/* Build the getopt tables of a program from its option ids (ending with SCP_OPT_END) and its aliases (NULL for
 * none), and restart getopt (optind = 0), so that argv can be parsed more than once. A program whose list
 * contradicts the vocabulary (an alias letter that is one of its own options' letters) is a programming error:
 * it aborts. */
void scp_cli_begin(scp_cli *c, const scp_opt_id *ids, const scp_cli_alias *aliases);
/* The next option's id (its value in optarg), or -1 after the last option. An alias warns once on stderr and
 * returns the id it stands for; an unknown option or a missing value ends the program with exit 2, the message
 * of an option that other programs of the suite take saying what it means there (and c->instead's text). */
int scp_cli_next(scp_cli *c, int argc, char **argv);
void scp_cli_end(scp_cli *c);

/* "--name" of an option id, for messages. */
const char *scp_opt_name(scp_opt_id id);

#endif
