#!/bin/sh
# generate-dryrun.sh: tests/gpu/generate-gpu.py without a GPU: cpu-ref and cpu-bf16 in place of cuda-fp32 and cuda,
# so that its runs, its reading of the logits and its rule for near ties are checked on every machine with the
# assets (the GPU run is tests/gpu/device-check.sh's).
SCP_GPU_DRYRUN=1 exec /usr/bin/python3 "$SCP_SRCDIR/tests/gpu/generate-gpu.py"
