#!/bin/sh
# ptxas-report.sh: registers, spills and static shared memory of every kernel of the CUDA backend, from
# `nvcc -Xptxas -v` for sm_90a (Hopper). Dynamic shared memory (the attention tiles) is not in these figures:
# for the fp32 attention kernels (attention.cu) it is (16 hd + 32 (hd + 1) + 32 hd) * 4 bytes for the forward,
# (32 hd + 64 (hd + 1)) * 4 (+ 256) for the backward kernels (+ 256 for dk/dv): 40.1 and 48.3 / 48.5 KiB at
# hd = 128, 80.1 and 96.3 KiB at hd = 256 (above 48 KiB the launch opts in); for the tensor-core kernels
# (attention_tc.cu, attention_flash.cu, attention_flash_bwd.cu) the script prints it last, from the same formulas
# as their *_smem structs.
#   bench/gpu/ptxas-report.sh [ARCH]     (default sm_90a; e.g. sm_80)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
arch=${1:-sm_90a}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
filt=$(command -v c++filt || command -v cu++filt || echo cat)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/scp-ptxas.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "# $($nvcc --version | tail -1), -O3 -arch=$arch"
printf '%-16s %-58s %5s %7s %7s %8s\n' file kernel regs spill_st spill_ld smem_B
for f in "$root"/lib/model/cuda/*.cu; do
    "$nvcc" -O3 -std=c++17 -arch="$arch" -I"$root/lib" -Xptxas -v -c "$f" -o "$tmp/x.o" 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
    # ptxas prints per function: "Compiling entry function 'NAME'", "... bytes spill stores, ... spill loads",
    # "Used N registers, ... bytes smem, ..."
    awk '/Compiling entry function/ { split($0, q, "\047"); fn = q[2] }
         /spill stores/ { st = $5; ld = $9 }
         /Used [0-9]+ registers/ { r = ""; s = 0
             for (i = 1; i <= NF; i++) { if ($(i + 1) ~ /^registers/) r = $i; if ($(i + 1) == "bytes" && $(i + 2) ~ /^smem/) s = $i }
             print fn, r, st, ld, s }' "$tmp/log" |
    while read -r fn regs st ld smem; do
        name=$(echo "$fn" | $filt 2>/dev/null || echo "$fn")
        name=$(echo "$name" | sed 's/^void //; s/(anonymous namespace):://g; s/(.*//' | cut -c1-58)
        printf '%-16s %-58s %5s %7s %7s %8s\n' "$(basename "$f")" "$name" "$regs" "$st" "$ld" "$smem"
    done
done
# attention_tc.cu's dynamic shared memory per block (bytes; its *_smem structs): bf16 tiles (64, hd + 8), fp32
# scores (4 warps, 16, 68), bf16 P / dS (4, 16, 72), visibility (64, 68) bytes; an SM has 228 KiB (227 per block).
echo "# attention_tc.cu dynamic shared memory per block (bytes): two blocks per SM fit below 113 KiB each"
printf '%-6s %10s %10s %10s\n' hd fwd dq dkdv
for hd in 16 32 64 96 128; do
    t=$((64 * (hd + 8) * 2)) s=$((4 * 16 * 68 * 4)) p=$((4 * 16 * 72 * 2)) m=$((64 * 68))
    printf '%-6s %10s %10s %10s\n' "$hd" $((3 * t + s + p + m + 256 + 1024)) $((4 * t + s + p + m + 256 + 2048)) \
        $((4 * t + 512 + 2 * p + m + 2048))
done
# attention_flash.cu's (its flash_smem struct): Q and two K and two V tiles (64, hd + 8) bf16, two tiles' 64
# document ids (int32).
echo "# attention_flash.cu dynamic shared memory per block (bytes)"
printf '%-6s %10s\n' hd fwd
for hd in 16 32 64 96 128; do
    printf '%-6s %10s\n' "$hd" $((5 * 64 * (hd + 8) * 2 + 2 * 64 * 4))
done
# attention_flash_bwd.cu's (its *_smem structs): bf16 tiles (64, hd + 8), K, V and two of Q, dO, with two of
# (lse, D, document id) (64) for dk/dv; Q, dO and two of K, V, with two of (document id) (64) for dq.
echo "# attention_flash_bwd.cu dynamic shared memory per block (bytes)"
printf '%-6s %10s %10s\n' hd dq dkdv
for hd in 16 32 64 96 128; do
    t=$((64 * (hd + 8) * 2))
    printf '%-6s %10s %10s\n' "$hd" $((6 * t + 512)) $((6 * t + 1536))
done
