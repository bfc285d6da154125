#!/bin/sh
# harness-cpu.sh: tests/gpu/cuda-ops run on the fast CPU backend against cpu-ref: checks the parity harness
# (poisoning, strides, tolerances, repeatability checks) on machines without a GPU, where cuda-ops skips.
exec "$SCP_BUILDDIR/tests/gpu/cuda-ops" --backend cpu
