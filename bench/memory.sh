#!/bin/sh
# memory.sh: what scp-train costs in memory before it does anything, and for a tiny CPU training run: the peak
# address space (VmPeak) and resident set (VmHWM) read from /proc at its exit (gdb stops it there), the maximum
# resident set that /usr/bin/time reports, and the smallest address-space limit (ulimit -v, to 8 MiB) under which
# it runs to the end (a run that hangs past the time limit counts as not running).
#
#   sh bench/memory.sh BUILD_DIR [THREADS]     (THREADS: of the training run, default 2)
#
# Needs gdb, /usr/bin/time, timeout and /usr/bin/python3 (the training data: tests/train_testdata.py).
set -u
build=$(cd "${1:?usage: memory.sh BUILD_DIR [THREADS]}" && pwd)
threads=${2:-2}
src=$(cd "$(dirname "$0")/.." && pwd)
train=$build/bin/scp-train
tmp=$(mktemp -d "${TMPDIR:-/tmp}/scp-memory.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

/usr/bin/python3 - "$build/bin" "$tmp" "$src/tests" <<'PY' || exit 1
import os, sys
sys.path.insert(0, sys.argv[3])
import train_testdata as td
td.write_config(os.path.join(sys.argv[2], "cfg", "config.json"), vocab=64, mask_id=63)
td.make_shards(sys.argv[1], sys.argv[2])
PY

# measure NAME LIMIT_S CMD...: one line of figures.
measure() {
    name=$1 lim=$2; shift 2
    rm -rf "$tmp/run"
    st=$(gdb -q -batch -ex 'catch syscall exit_group' -ex run -ex 'info proc status' --args "$@" 2>/dev/null |
        awk '$1 == "VmPeak:" { p = $2 } $1 == "VmHWM:" { h = $2 }
             END { printf "VmPeak %.1f MiB, VmHWM %.1f MiB", p / 1024, h / 1024 }')
    rm -rf "$tmp/run"
    rss=$(/usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1)
    # bisection on ulimit -v (KiB): lo does not run, hi does
    lo=8192 hi=8388608
    while [ $((hi - lo)) -gt 8192 ]; do
        mid=$(((lo + hi) / 2 / 8192 * 8192))
        rm -rf "$tmp/run"
        if (ulimit -v "$mid" && timeout -k 2 "$lim" "$@" >/dev/null 2>&1) 2>/dev/null; then hi=$mid; else lo=$mid; fi
    done
    printf '%-34s %s, max RSS %s MiB, runs under ulimit -v %d MiB\n' "$name:" "$st" \
        "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')" $((hi / 1024))
}

echo "# $build: $("$train" --version | sed -n 's/^features: //p')"
measure "scp-train --version" 20 "$train" --version
measure "2 CPU training steps ($threads threads)" 60 "$train" -q --threads "$threads" \
    --init "random:$tmp/cfg/config.json" --data "$tmp/shards" -o "$tmp/run" --steps 2
