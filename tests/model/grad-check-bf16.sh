#!/bin/sh
# grad-check-bf16.sh: grad-check.py's cases on the "cpu-bf16" backend (bf16 storage, fp32 master weights),
# against the float64 maths rounded to bf16 where scp stores values; tolerances in grad-check.py.
SCP_TEST_BACKEND=cpu-bf16 exec /usr/bin/python3 "$(dirname "$0")/grad-check.py"
