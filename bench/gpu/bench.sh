#!/bin/sh
# bench.sh: a training step (forward, backward, AdamW; B x T random ids, bidirectional attention, masked-diffusion
# loss on about half of the positions) of one named shape of bench/gpu/gpu_bench.py on scp's CUDA backend
# (bench/gpu/scp-step) and on PyTorch (bench/gpu/torch-step.py: transformers' Qwen3 or Qwen3-MoE from the same
# config.json, bf16, SDPA, fused AdamW) in the same call, on the same GPU. Prints the JSON lines, then a table:
# tokens/s, TFLOP/s, MFU against the GPU's dense bf16 peak (gpu_bench.py's FLOP count, on active parameters for
# MoE), peak device memory (scp: the table's peak_bytes; PyTorch: torch.cuda.max_memory_allocated), scp's time per
# operation and PyTorch's top operators; last the line
#   gpu-step: SHAPE-BxT scp N tok/s PyTorch N tok/s ratio R MFU M%
# (ratio: scp's tokens/s over PyTorch's; MFU: scp's), from the first scp row: the driver step (lib/model/model.c, as
# scp-train runs it; with --recompute where the shape asks for it, and then PyTorch with gradient checkpointing).
# For qwen3-0.6b (the default) the table step (every entry of the operation table in lib/model/model.c's order)
# follows on "cuda" (bf16 storage) once per CUDA attention path (SCP_CUDA_ATTN=gemm, =flash, =wmma, =cudnn where
# built), the driver with --recompute, and the table and driver steps on "cuda-fp32" (fp32 storage).
#
#   bench/gpu/bench.sh [-b BUILDDIR] [-s SHAPE] [-B BATCH] [-T SEQ] [-n STEPS] [-o JSONFILE] [--quick | --driver-only]
#                      [--device cpu]
# SHAPE: qwen3-0.6b (default), qwen3-1.7b, qwen3-4b, qwen3-30b-a3b-4l (MoE), tiny, tiny-moe (--tiny: tiny);
# BATCH and SEQ default to the shape's. --quick leaves out the flash-attention table steps and the --recompute
# driver step of qwen3-0.6b, --driver-only all its rows but the driver's. --device cpu: a dry run on scp's cpu
# backend and PyTorch on the CPU (tiny shapes).
# BUILDDIR (default .) holds bench/gpu/scp-step; PEAK_TFLOPS overrides the peak looked up from the device name.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=.
shape=qwen3-0.6b batch= seq= steps=3 json= device=cuda quick= only=
while [ $# -gt 0 ]; do
    case $1 in
    -b) build=$2; shift ;;
    -s | --shape) shape=$2; shift ;;
    -B) batch=$2; shift ;;
    -T) seq=$2; shift ;;
    -n) steps=$2; shift ;;
    -o) json=$2; shift ;;
    --tiny) shape=tiny ;;
    --quick) quick=1 ;;
    --driver-only) only=1 ;;
    --device) device=$2; shift ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
py=/usr/bin/python3
[ -x "$py" ] || py=python3
PYTHON=${PYTHON:-$py}
runs=$("$py" "$here/gpu_bench.py" runs "$shape") || exit 2
# shellcheck disable=SC2086
set -- $runs
batch=${batch:-$1} seq=${seq:-$2} recompute=$3
name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
case ${PEAK_TFLOPS:-} in
'') case $name in
    *H100*PCIe*) peak=756 ;;
    *H100*|*H200*|*GH200*) peak=989.4 ;;    # dense bf16, SXM
    *A100*) peak=312 ;;
    *) peak=0 ;;
    esac ;;
*) peak=$PEAK_TFLOPS ;;
esac
be=cuda
[ "$device" = cpu ] && be=cpu && name=cpu
status=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/scp-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$py" "$here/gpu_bench.py" config "$shape" "$tmp/config.json" || exit 2
rows=
# step OUT LABEL ATTN ARGS...: one scp-step run (SCP_CUDA_ATTN=ATTN unless ATTN is -), its JSON in $tmp/OUT.json
# and a row LABEL of the table (_ for a space); a failure is reported and remembered.
step() {
    out=$1 label=$2 attn=$3; shift 3
    [ "$attn" = - ] && attn=
    rows="$rows $label=$tmp/$out.json"
    # shellcheck disable=SC2086
    env ${attn:+SCP_CUDA_ATTN=$attn} "$build/bench/gpu/scp-step" --config "$tmp/config.json" --batch "$batch" \
        --seq "$seq" --steps "$steps" "$@" >"$tmp/$out.json" 2>"$tmp/$out.err" ||
        { echo "# scp-step $* failed:"; tail -5 "$tmp/$out.err" | sed 's/^/#   /'; status=1; }
}
rec=
[ "$recompute" = 1 ] && rec=--recompute
step driver "scp_$be${rec:+_recompute}_driver" - --backend $be --driver $rec
if [ "$shape" = qwen3-0.6b ] && [ -z "$only" ]; then
    # The table step once per CUDA attention path (lib/model/cuda/attention.cu: SCP_CUDA_ATTN=gemm, cuBLAS GEMMs
    # over materialised scores, the default where its scratch fits; =flash, the FlashAttention-2 kernels on
    # mma.sync; =wmma, the WMMA flash kernels; =cudnn, cuDNN's fused attention through its graph API, where the
    # build has it: lib/model/cuda/attention_cudnn.c).
    step table "scp_${be}_table_gemm" gemm --backend $be
    [ -n "$quick" ] || [ "$be" != cuda ] || step flash "scp_cuda_table_flash" flash --backend $be
    [ -n "$quick" ] || [ "$be" != cuda ] || step wmma "scp_cuda_table_wmma" wmma --backend $be
    if [ -z "$quick" ] && [ "$be" = cuda ] && grep -q 'define HAVE_CUDNN 1' "$build/config.h" 2>/dev/null; then
        step cudnn "scp_cuda_table_cudnn" cudnn --backend $be
    fi
    [ -n "$quick" ] || step recompute "scp_${be}_driver_--recompute" - --backend $be --driver --recompute
    if [ "$be" = cuda ]; then
        step fp32 scp_cuda-fp32_table - --backend cuda-fp32
        step driver32 scp_cuda-fp32_driver - --backend cuda-fp32 --driver
    fi
fi
# shellcheck disable=SC2086
"$PYTHON" "$here/torch-step.py" --shape "$shape" --device "$device" --batch "$batch" --seq "$seq" --steps "$steps" \
    $rec >"$tmp/torch.json" 2>"$tmp/torch.err" || { echo "# torch-step failed:"; tail -5 "$tmp/torch.err" | sed 's/^/#   /'; status=1; }
grep -h 'stand-in' "$tmp/torch.err" | sed 's/^/# /'  # say so when transformers' model was not what ran
for r in $rows; do cat "${r#*=}" 2>/dev/null; done
cat "$tmp/torch.json" 2>/dev/null
if [ -n "$json" ]; then
    { for r in $rows; do cat "${r#*=}" 2>/dev/null; done; cat "$tmp/torch.json" 2>/dev/null; } >"$json"
fi
# shellcheck disable=SC2086
"$py" "$here/gpu_bench.py" table "$shape" "$batch" "$seq" "$peak" "${name:-no GPU}" $rows "$tmp/torch.json"
exit $status
