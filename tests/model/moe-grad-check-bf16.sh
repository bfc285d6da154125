#!/bin/sh
# moe-grad-check-bf16.sh: moe-grad-check.py's qwen3_moe cases on the "cpu-bf16" backend (bf16 storage, fp32 master
# weights), against the float64 maths rounded to bf16 where scp stores values; tolerances in moe-grad-check.py.
SCP_MOE_BACKENDS=cpu-bf16 exec /usr/bin/python3 "$(dirname "$0")/moe-grad-check.py"
