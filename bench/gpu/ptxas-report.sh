#!/bin/sh
# ptxas-report.sh: registers, spills and static shared memory of every kernel of the CUDA backend, from
# `nvcc -Xptxas -v` for sm_90a (Hopper). Dynamic shared memory (the attention tiles) is not in these figures:
# it is (16 hd + 32 (hd + 1) + 32 hd) * 4 bytes for the forward, (32 hd + 64 (hd + 1)) * 4 (+ 256) for the
# backward kernels (+ 256 for dk/dv): 40.1 and 48.3 / 48.5 KiB at hd = 128, 80.1 and 96.3 KiB at hd = 256 (above
# 48 KiB the launch opts in).
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
for f in "$root"/lib/cuda/*.cu; do
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
        printf '%-16s %-58s %5s %7s %7s %8s\n' "$(basename "$f")" "$(echo "$name" | sed 's/(.*//' | cut -c1-58)" "$regs" "$st" "$ld" "$smem"
    done
done
