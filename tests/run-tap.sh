#!/bin/sh
# run-tap.sh: run one test for automake's TAP driver. A test that cannot run here (no assets, no reference
# implementation, no GPU) prints "1..0 # SKIP why" and exits 77, the automake convention; the TAP driver
# treats any non-zero exit as an error, so 77 becomes 0 here once the skip has been printed. The test's
# wall time ends its output as a TAP comment, so that a slow suite shows where its time goes:
#   grep -h '^# elapsed' build/tests/*/*.log | sort -k3 -n
start=$(date +%s)
"$@"
rc=$?
echo "# elapsed $(( $(date +%s) - start )) s: $*"
[ "$rc" -eq 77 ] && exit 0
exit "$rc"
