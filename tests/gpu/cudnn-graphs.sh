#!/bin/sh
# cudnn-graphs.sh: the cuDNN attention graphs (lib/model/cuda/attention_cudnn.c) handed to libcudnn without a GPU:
# every tensor and operation descriptor and the operation graphs finalized for several shapes (cudnn-probe
# --graphs). Skipped where the build has no cuDNN attention or libcudnn.so.9 cannot be loaded; what needs a GPU
# (engines, plans, results against a reference) is cudnn-probe's run in tests/gpu/device-check.sh.
probe=$SCP_BUILDDIR/tests/gpu/cudnn-probe
if [ ! -x "$probe" ]; then
    echo "1..0 # SKIP no cuDNN attention in this build"
    exit 77
fi
exec "$probe" --graphs
