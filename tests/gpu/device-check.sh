#!/bin/sh
# device-check.sh: everything the CUDA backend has to show on a GPU machine, in one call that ends within
# T_TOTAL seconds (default 510: 8.5 minutes) on an H100 or H200, ending with a short table. The parts, in the
# order of what matters most, with the estimate of each on an H100 (estimates: the parts marked * have not run on a
# GPU yet; the others from the H200 calls of bench/RESULTS.md):
#   build   configure and make in build-gpu (nvcc, -j16; about 4 min, which leaves the benchmarks no time), or use a
#           build-gpu-pre carried from a machine with the C libraries (see --prepare; 5 s)
#   (0) *   where the build has cuDNN attention (lib/model/cuda/attention_cudnn.c): tests/gpu/cudnn-probe, its
#           forward and backward graphs for one small shape, each stage's outcome and the error against a plain
#           attention (5 s); after (1), backend-ops' attention cases under SCP_CUDA_ATTN=cudnn (backend-ops-cudnn,
#           20 s)
#   (1)     tests/model/backend-ops: every operation of the CUDA tables against the CPU: "cuda" (bf16 activations)
#           against cpu-bf16 on the same bf16 inputs, "cuda-fp32" (fp32 activations) against cpu-ref (30 s); *
#           then its expert GEMM cases once per cuBLAS path (SCP_CUDA_MOE_GEMM=cublas, cublas-loop) (2 x 5 s)
#   (2)     tests/gpu/train-stories260k.sh: 20 steps of the stories260K conversion, cuda against cpu losses;
#           and the same 20 steps with --backend cuda-fp32 against cpu (train-stories260k-fp32, below) (25 + 25 s)
#   (3)     tests/gpu/hf-logits.py: imported Qwen3 and Llama logits against transformers (the machine's python3)
#           and tests/convert/export-hf-modeling.py: scp-export --format hf loaded by AutoModelForMaskedLM with
#           trust_remote_code, its logits against scp's (where that python3 has transformers) (30 + 30 s)
#   (4)     tests/gpu/zero-nccl.py: --zero 2 and 3 through NCCL on one GPU against the unsharded run (20 s)
#   (5)     the MoE and dense gradient checks on cuda and cuda-fp32 (tests/model/moe-grad-check.py, grad-check.py)
#           (3 x 20 s)
#   (6) *   tests/gpu/generate-gpu.py: scp-eval generate on cuda-fp32 and cuda against the CPU on stories260K: AR
#           decoding with the key/value cache and diffusion, the same tokens or near ties, tokens/s (20 s)
#   bench   bench/gpu/bench.sh: a Qwen3-0.6B training step, scp cuda against PyTorch, with the op breakdown, and
#           the bf16 GEMM microbenchmark (70 s), and * the expert GEMMs on their three paths (bench/gpu/moe-gemm)
#           (20 s)
#   bench-moe * bench/gpu/bench.sh -s qwen3-30b-a3b-4l: the MoE training step, Qwen3-30B-A3B cut to 4 layers (all
#           128 experts, top-8, sequence 4096), scp against transformers' Qwen3MoeForCausalLM (70 s)
#   bench-SHAPE * the shapes of $SHAPES (default: qwen3-1.7b, qwen3-4b with --recompute, qwen3-0.6b at 1 x 8192),
#           the driver step against PyTorch (45, 75 and 40 s)
# Each part has a time limit (the variables below), cut to what is left of T_TOTAL; a part that would start with
# less than 20 s left is skipped and says so. Each part prints one row of the summary; the benchmarks add their
# "gpu-step: SHAPE scp N tok/s PyTorch N tok/s ratio R MFU M%" lines and the generation its "generate:" lines.
#
#   sh tests/gpu/device-check.sh              run from the repository root; logs go to $OUT/logs.tgz when set
#   sh tests/gpu/device-check.sh --prepare    here, on a machine without a GPU: bootstrap if needed and build
#                                             build-gpu-pre (MPI and NCCL where found, no BLAS, stripped, with
#                                             copies of its non-CUDA shared libraries; about 50 MiB), and
#                                             build-gpu-pre.tar.xz of it (about 3 MB: what to carry)
# What to carry to the device (tool `run`, carry): the autotools output, which git ignores: configure,
# Makefile.in, aclocal.m4, config.h.in, build-aux, m4; build-gpu-pre.tar.xz (what --prepare leaves; unpacked here
# when build-gpu-pre is absent) if the machine may lack jansson & co.; and
# for (2) and (6) a git-ignored folder holding models/stories260K.bin, models/tok512.bin,
# corpora/tinystories_val.txt, named by SCP_ASSETS (e.g. `SCP_ASSETS=$PWD/.assets sh tests/gpu/device-check.sh`).
# Environment: PYTHON (default python3: the one with torch and transformers), JOBS (default 16), BUILD_DIR
# (default build-gpu), PREBUILT=1 (use build-gpu-pre without trying to configure here), NCCL_LIB (the folder of
# libnccl.so.2 when it is not on the loader's path; default: the one of python3's nvidia-nccl package),
# SCP_CUDNN_LIB (the path of libcudnn.so.9 where the loader does not find it; default: python3's nvidia-cudnn
# package's when neither the loader's cache nor /usr/local/cuda/lib64 has it),
# T_TOTAL, T_OPS, T_TRAIN, T_TRAIN32, T_HF, T_GRAD, T_MOE, T_GEN, T_BENCH, T_MOE_BENCH, T_SHAPE (time limits in
# seconds of the parts; T_SHAPE each shape's), BENCH_ARGS (e.g. "-n 2"), SHAPES (bench.sh shapes, each NAME or
# NAME:BxT), SKIP_PTXAS=1 (no resource report: it compiles the kernels again), SKIP_BENCH=1, SKIP_MOE_BENCH=1,
# SKIP_SHAPES=1, SKIP_GEN=1, SKIP_HF=1 (a shorter call), SKIP_CHECKS=1 (parts (1) to (6) left out: a call for
# the benchmarks that a first call had no time left for, e.g. SKIP_CHECKS=1 SKIP_BENCH=1 SKIP_MOE_BENCH=1
# SHAPES=qwen3-0.6b:1x8192).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
jobs=${JOBS:-16}
PYTHON=${PYTHON:-python3}
export PYTHON

if [ "${1:-}" = --prepare ]; then
    [ -x configure ] || ./bootstrap || exit 1
    rm -rf build-gpu-pre && mkdir -p build-gpu-pre && cd build-gpu-pre || exit 1
    # No MPI and no BLAS (the GPU does the matmuls; the CPU runs of (2) use the blocked loop): what travels to
    # the GPU machine stays small (64 MiB at most).
    # Only Hopper code (the GPUs this script targets are H100 and H200): without the portable PTX the binaries, each with
    # every kernel in it, take half the room.
    ../configure -q --without-blas NVCCFLAGS="-O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a" &&
        make -j"${JOBS:-2}" >/dev/null &&
        make -j"${JOBS:-2}" tests/model/backend-ops tests/gpu/logits-dump bench/gpu/scp-step bench/gpu/gemm-dtypes bench/gpu/moe-gemm \
            >/dev/null || exit 1
    make tests/model/moe-helper tests/model/grad-helper >/dev/null || exit 1
    if grep -q 'define HAVE_NCCL 1' config.h; then make tests/dist/dist-nccl-smoke >/dev/null || exit 1; fi
    if grep -q 'define HAVE_CUDNN 1' config.h; then make tests/gpu/cudnn-probe >/dev/null || exit 1; fi
    mkdir -p libs
    # bench/step links the CBLAS that the programs load on their first matrix product (lib/model/cpu/blas.h), so
    # that its library and what it needs are carried too.
    make bench/step >/dev/null || exit 1
    for b in bin/* lib/libscp-cuda.so tests/model/backend-ops tests/gpu/logits-dump tests/dist/dist-nccl-smoke \
        tests/model/moe-helper tests/model/grad-helper bench/step; do [ -x "$b" ] && ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
        grep -v -e '/usr/local/cuda' -e 'libc\.so' -e 'libm\.so' -e 'libpthread' -e 'libdl\.so' -e 'librt\.so' \
            -e 'ld-linux' -e 'libstdc++' -e 'libgcc_s' -e 'libz\.so' -e 'libudev' -e 'libicu' -e 'libxml2' -e 'libacl' -e 'libbz2' -e 'liblz4' -e 'liblzma' -e 'libzstd' -e 'libnettle' | while read -r l; do cp -L "$l" libs/; done
    find bin tests bench lib -name '*.o' -delete
    rm -f lib/libscp.a
    find bin tests bench lib -type f -perm -u+x ! -name '*.sh' ! -name '*.py' -exec strip --strip-unneeded {} + 2>/dev/null
    du -sh . libs
    # The kernels are in the CUDA plugin, lib/libscp-cuda.so (model/cuda_plugin.h); xz shrinks what travels.
    cd .. && tar cJf build-gpu-pre.tar.xz build-gpu-pre && ls -la build-gpu-pre.tar.xz || exit 1
    echo "build-gpu-pre.tar.xz ready: carry it with the autotools files (see the header of $0)"
    exit 0
fi

# Logs: one file per part in $out. Where the caller collects a few files from $OUT, they go to $OUT/logs and end
# as $OUT/logs.tgz beside $OUT/summary.txt (see the end).
out=${OUT:+$OUT/logs}
out=${out:-$root/build-gpu/device-check-logs}
mkdir -p "$out"
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
# budget LIMIT: LIMIT cut to what is left of T_TOTAL (less 15 s for the summary and the logs' archive), 0 when
# under 20 s would be left.
budget() {
    left=$((${T_TOTAL:-510} - 15 - $(elapsed)))
    if [ "$left" -lt 20 ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
summary=$out/summary.txt
: >"$summary"
row() { printf '%-28s %-8s %s\n' "$1" "$2" "$3" >>"$summary"; }

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$out/device.txt"
nvcc --version 2>&1 | tail -1

echo "== build ($(elapsed) s)"
build=${BUILD_DIR:-$root/build-gpu}
mode=built
if [ "${PREBUILT:-0}" = 1 ]; then
    echo "PREBUILT=1: not configuring here" >"$out/build.log"
    if [ ! -d build-gpu-pre ] && [ -f build-gpu-pre.tar.xz ]; then tar xJf build-gpu-pre.tar.xz; fi
elif [ ! -x configure ] && command -v autoreconf >/dev/null 2>&1; then ./bootstrap >"$out/build.log" 2>&1; fi
mkdir -p "$build"
if [ "${PREBUILT:-0}" != 1 ] && (cd "$build" && ../configure -q >>"$out/build.log" 2>&1 && make -j"$jobs" >>"$out/build.log" 2>&1 &&
    make -j"$jobs" tests/model/backend-ops tests/gpu/logits-dump bench/gpu/scp-step bench/gpu/gemm-dtypes bench/gpu/moe-gemm \
        tests/model/moe-helper tests/model/grad-helper >>"$out/build.log" 2>&1 &&
    { ! grep -q 'define HAVE_CUDNN 1' config.h || make tests/gpu/cudnn-probe >>"$out/build.log" 2>&1; }); then
    grep -q 'define HAVE_CUDA 1' "$build/config.h" || mode="built without CUDA"
elif [ -x "$root/build-gpu-pre/tests/model/backend-ops" ]; then
    build=$root/build-gpu-pre
    if [ "${PREBUILT:-0}" = 1 ]; then mode="prebuilt (PREBUILT=1)"; else mode="prebuilt (configure here failed: see build.log)"; fi
    # its copies of the C libraries first, then CUDA's (the toolkit's, else the python packages' nvidia/*/lib)
    pylibs=$("$PYTHON" -c 'import nvidia, os; print(":".join(os.path.join(p, d, "lib") for p in nvidia.__path__ for d in sorted(os.listdir(p)) if os.path.isdir(os.path.join(p, d, "lib"))))' 2>/dev/null)
    LD_LIBRARY_PATH=$build/libs:/usr/local/cuda/lib64${pylibs:+:$pylibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export LD_LIBRARY_PATH
else
    mode=FAILED
fi
tail -5 "$out/build.log" 2>/dev/null
row build "$mode" "$(elapsed) s"
export SCP_BIN=$build/bin SCP_SRCDIR=$root SCP_BUILDDIR=$build
# The CUDA plugin of this build (model/cuda_plugin.h): a prebuilt tree was configured in another folder, so its
# programs would not find it as their build tree's.
export SCP_PLUGIN_DIR=$build/lib
export SCP_ASSETS=${SCP_ASSETS:-$root/../shared/assets}

# run NAME LIMIT_S CMD...: a TAP test with a time limit (cut to the budget); its log in $out, its counts in the
# summary. timeout signals the command's whole process group, KILL 10 s after TERM. SKIP_CHECKS=1 leaves every
# test out (a second call for the benchmarks alone).
run() {
    name=$1 lim=$(budget "$2"); shift 2
    if [ "${SKIP_CHECKS:-0}" = 1 ]; then row "$name" skipped "SKIP_CHECKS=1"; return; fi
    if [ "$lim" -eq 0 ]; then row "$name" skipped "no time left of T_TOTAL"; return; fi
    echo "== $name ($(elapsed) s)"
    t0=$(date +%s)
    timeout -k 10 "$lim" "$@" >"$out/$name.log" 2>&1
    rc=$?
    pass=$(grep -c '^ok ' "$out/$name.log")
    fail=$(grep -c '^not ok ' "$out/$name.log")
    grep -v '^ok ' "$out/$name.log" | head -40
    if grep -q '^1\.\.0 # SKIP' "$out/$name.log"; then st=SKIP
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then st=TIMEOUT
    elif [ "$rc" -eq 0 ] && [ "$fail" -eq 0 ]; then st=PASS
    else st=FAIL; fi
    row "$name" "$st" "$pass ok, $fail not ok, rc $rc, $(($(date +%s) - t0)) s"
}
# bench_part NAME LIMIT_S ARGS...: bench/gpu/bench.sh -b BUILD ARGS with a time limit (cut to the budget); its
# log in $out/NAME.log, its gpu-step line in the summary row.
bench_part() {
    name=$1 lim=$(budget "$2"); shift 2
    if [ "$lim" -eq 0 ]; then row "$name" skipped "no time left of T_TOTAL"; return; fi
    echo "== $name ($(elapsed) s)"
    t0=$(date +%s)
    PYTHON=$PYTHON timeout -k 10 "$lim" sh "$root/bench/gpu/bench.sh" -b "$build" "$@" >"$out/$name.log" 2>&1
    rc=$?
    grep -e '^# ' -e '^gpu-step:' "$out/$name.log"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then st=TIMEOUT; elif [ "$rc" -eq 0 ]; then st="done"; else st="rc $rc"; fi
    line=$(grep '^gpu-step:' "$out/$name.log" | sed 's/^gpu-step: //')
    row "$name" "$st" "${line:-no gpu-step line (see $name.log)}, $(($(date +%s) - t0)) s"
}
# cuDNN (SCP_CUDA_ATTN=cudnn) where the build has it: libcudnn.so.9 from the loader's path, the toolkit's, or
# python3's nvidia-cudnn package (SCP_CUDNN_LIB, with its folder on the loader's path for the libraries it opens,
# and the package's NVRTC beside it: cuDNN compiles some of its engines at run time).
have_cudnn=0
grep -q 'define HAVE_CUDNN 1' "$build/config.h" 2>/dev/null && have_cudnn=1
if [ "$have_cudnn" = 1 ] && [ -z "${SCP_CUDNN_LIB:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcudnn\.so\.9 ' &&
    [ ! -e /usr/local/cuda/lib64/libcudnn.so.9 ]; then
    cudnn_dir=$("$PYTHON" -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null)
    if [ -n "$cudnn_dir" ] && [ -e "$cudnn_dir/libcudnn.so.9" ]; then
        SCP_CUDNN_LIB=$cudnn_dir/libcudnn.so.9
        nvrtc_dir=$("$PYTHON" -c 'import nvidia.cuda_nvrtc, os; print(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib"))' 2>/dev/null)
        LD_LIBRARY_PATH=$cudnn_dir${nvrtc_dir:+:$nvrtc_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        export SCP_CUDNN_LIB LD_LIBRARY_PATH
    fi
fi
if [ "$mode" != FAILED ]; then
    if [ "$have_cudnn" = 1 ]; then
        run cudnn-probe 60 "$build/tests/gpu/cudnn-probe"
    else
        row cudnn-probe "not built" "no cuDNN attention in this build"
    fi
    run backend-ops "${T_OPS:-150}" "$build/tests/model/backend-ops" --backend cuda-fp32 --backend cuda
    # The attention cases on the cuDNN path (the masks and head sizes it does not serve take the flash kernels)
    [ "$have_cudnn" = 1 ] &&
        run backend-ops-cudnn 90 "$build/tests/model/backend-ops" --backend cuda --attention --attn-paths cudnn
    for p in cublas cublas-loop; do   # the expert GEMMs through cuBLAS (lib/model/cuda/moe_gemm_cublas.cu)
        run "backend-ops-moe-$p" 60 env SCP_CUDA_MOE_GEMM=$p "$build/tests/model/backend-ops" --backend cuda --moe-gemm
    done
    run train-stories260k "${T_TRAIN:-150}" sh "$root/tests/gpu/train-stories260k.sh"
    # The same on the fp32-storage table (tolerance and why: train-stories260k.sh), with --recompute and NCCL.
    run train-stories260k-fp32 "${T_TRAIN32:-150}" env SCP_GPU_BACKEND=cuda-fp32 sh "$root/tests/gpu/train-stories260k.sh"
    nccl_lib=${NCCL_LIB:-$("$PYTHON" -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)}
    # The sharded state (--zero 2, 3) through NCCL on one GPU (needs MPI, NCCL and mpirun there)
    run zero-nccl 120 "$PYTHON" "$root/tests/gpu/zero-nccl.py"
    if [ -x "$build/tests/dist/dist-nccl-smoke" ]; then
        (LD_LIBRARY_PATH=${nccl_lib:+$nccl_lib:}${LD_LIBRARY_PATH:-}; export LD_LIBRARY_PATH
         run nccl-smoke 60 "$build/tests/dist/dist-nccl-smoke")
    else
        row nccl-smoke "not built" "no NCCL in this build"
    fi
    [ "${SKIP_HF:-0}" = 1 ] || run hf-logits "${T_HF:-120}" "$PYTHON" "$root/tests/gpu/hf-logits.py"
    # The modeling code of scp-export --format hf through transformers' AutoModel classes (trust_remote_code), which
    # the CPU suite skips where transformers is missing: only where this python3 has it.
    if [ "${SKIP_HF:-0}" = 1 ]; then :
    elif "$PYTHON" -c 'import numpy, torch, transformers' >/dev/null 2>&1; then
        run hf-modeling "${T_HF:-120}" "$PYTHON" "$root/tests/convert/export-hf-modeling.py"
    else
        row hf-modeling skipped "no transformers in $PYTHON"
    fi
    # MoE (qwen3_moe) on the GPU: loss, logits, expert loads and every gradient of small random configurations
    # against a float64 PyTorch reference, with bf16 tolerances (tests/model/moe-grad-check.py)
    (SCP_MOE_BACKENDS=cuda-fp32 SCP_MOE_TOL=3e-2; export SCP_MOE_BACKENDS SCP_MOE_TOL
     run moe-grad-cuda-fp32 "${T_MOE:-90}" "$PYTHON" "$root/tests/model/moe-grad-check.py")
    # The dense models of grad-check.py on cuda (bf16 storage), against float64 PyTorch with scp's bf16 roundings
    # (grad-check-bf16.sh's reference; their head sizes take the fp32 attention kernels, as the reference does)
    run grad-check-cuda "${T_GRAD:-60}" env SCP_TEST_BACKEND=cuda "$PYTHON" "$root/tests/model/grad-check.py"
    # ... and the MoE ones, against the reference with scp's bf16 roundings (moe-grad-check-bf16.sh's)
    (SCP_MOE_BACKENDS=cuda; export SCP_MOE_BACKENDS
     run moe-grad-cuda "${T_MOE:-90}" "$PYTHON" "$root/tests/model/moe-grad-check.py")
    # scp-eval generate on the GPU (AR with the key/value cache, diffusion) against the CPU, with tokens/s
    if [ "${SKIP_GEN:-0}" = 1 ]; then row generate skipped "SKIP_GEN=1"; else
        run generate "${T_GEN:-90}" "$PYTHON" "$root/tests/gpu/generate-gpu.py"
    fi
    # shellcheck disable=SC2086
    if [ "${SKIP_BENCH:-0}" = 1 ]; then row bench skipped "SKIP_BENCH=1"; else
        bench_part bench "${T_BENCH:-260}" ${BENCH_ARGS:-} -o "$out/bench.json"
        lim=$(budget 90)
        if [ -x "$build/bench/gpu/gemm-dtypes" ] && [ "$lim" -gt 0 ]; then
            echo "== gemm dtypes ($(elapsed) s)"
            timeout -k 10 "$lim" "$build/bench/gpu/gemm-dtypes" >"$out/gemm.log" 2>&1
            cat "$out/gemm.log"
        fi
        lim=$(budget 60)
        if [ -x "$build/bench/gpu/moe-gemm" ] && [ "$lim" -gt 0 ]; then
            echo "== moe gemm paths ($(elapsed) s)"
            timeout -k 10 "$lim" "$build/bench/gpu/moe-gemm" >"$out/moe-gemm.log" 2>&1
            cat "$out/moe-gemm.log"
        fi
    fi
    # The MoE training step, then the larger dense shapes and the long sequence (BENCH_ARGS: words on purpose)
    # shellcheck disable=SC2086
    if [ "${SKIP_MOE_BENCH:-0}" = 1 ]; then row bench-moe skipped "SKIP_MOE_BENCH=1"; else
        bench_part bench-moe "${T_MOE_BENCH:-150}" -s qwen3-30b-a3b-4l ${BENCH_ARGS:-} -o "$out/bench-moe.json"
    fi
    # shellcheck disable=SC2086
    if [ "${SKIP_SHAPES:-0}" = 1 ]; then row bench-shapes skipped "SKIP_SHAPES=1"; else
        for shape in ${SHAPES:-qwen3-1.7b qwen3-4b qwen3-0.6b:1x8192}; do
            bt=${shape#*:}
            if [ "$bt" = "$shape" ]; then bt=; else shape=${shape%%:*}; fi
            bench_part "bench-$shape${bt:+-$bt}" "${T_SHAPE:-150}" -s "$shape" --driver-only ${bt:+-B ${bt%x*} -T ${bt#*x}} \
                ${BENCH_ARGS:-} -o "$out/bench-$shape${bt:+-$bt}.json"
        done
    fi
fi
lim=$(budget 120)
if [ "${SKIP_PTXAS:-0}" != 1 ] && [ "$lim" -gt 0 ]; then
    echo "== ptxas resources"
    timeout -k 10 "$lim" sh "$root/bench/gpu/ptxas-report.sh" >"$out/ptxas.txt" 2>&1 && head -40 "$out/ptxas.txt"
fi

echo
echo "== summary ($(elapsed) s)"
grep '^# ' "$out/bench.log" 2>/dev/null | sed -n '1,12p'
cat "$out"/bench*.log 2>/dev/null | grep '^gpu-step:'
grep -h '^# generate:' "$out/generate.log" 2>/dev/null | sed 's/^# //'
grep '^# bf16 storage' "$out/gemm.log" 2>/dev/null
grep -h -e 'rel err' "$out"/backend-ops.log 2>/dev/null | sed 's/^[a-z ]*[0-9]* - //' |
    awk '{ for (i = 1; i <= NF; i++) if ($i == "err") { v = $(i + 1); if (v + 0 > w + 0 || v == "-nan" || v == "nan") { w = v; what = $0 } } }
         END { if (what != "") print "worst op parity: " what }'
cat "$summary"
if [ -n "${OUT:-}" ]; then
    cp "$summary" "$OUT/summary.txt" && tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"
fi
