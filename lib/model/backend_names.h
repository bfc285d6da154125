/* model/backend_names.h: the names --backend accepts, known whether or not this build or machine can run them.
 *
 * A name outside the list is a usage error (the programs exit 2 listing the names); a known name that this build
 * lacks (cuda without CUDA) or this machine cannot run (no GPU) fails later, when the model is made, with its
 * own message (exit 1). */
#ifndef SCP_BACKEND_NAMES_H
#define SCP_BACKEND_NAMES_H

/* 0 when name is one of the backends the suite knows, else -1 with "unknown backend 'NAME' (the backends: cpu,
 * cpu-ref, ...)". */
int scp_backend_check_name(const char *name);

#endif
