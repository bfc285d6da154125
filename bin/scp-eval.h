/* scp-eval.h: the subcommands of scp-eval, one source file each (bin/scp-eval.c holds ppl and elbo and the
 * dispatch table; generate and choice are added as bin/scp-eval-generate.c, bin/scp-eval-choice.c).
 * Each gets argv with argv[0] = "scp-eval SUBCOMMAND" and returns the exit status. */
#ifndef SCP_EVAL_CMD_H
#define SCP_EVAL_CMD_H

int scp_eval_ppl_main(int argc, char **argv);
int scp_eval_elbo_main(int argc, char **argv);
/* bin/scp-eval-generate.c, bin/scp-eval-choice.c */
int scp_eval_generate_main(int argc, char **argv);
int scp_eval_choice_main(int argc, char **argv);

#endif
