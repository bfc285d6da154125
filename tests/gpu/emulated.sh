#!/bin/sh
# shellcheck disable=SC2086 # the lists of flags and objects ($san, $cflags, $libs, $objs, ...) are split on purpose
# emulated.sh: the CUDA backend's kernels compiled for the CPU and run through tests/model/backend-ops against the
# CPU reference, where there is no GPU. lib/model/cuda/*.cu are compiled by the C++ compiler against a small SIMT
# emulator (tests/gpu/emu/: one fiber per CUDA thread, switched by a few instructions of its own on
# x86-64 (by swapcontext elsewhere), real barriers behind __syncthreads and the warp shuffles, NaN-filled dynamic
# shared memory and fresh device memory, launch geometry and shared-memory size checked, a plain GEMM with
# cuBLAS's argument checks in place of cuBLAS). It catches indexing, tiling, masking, reduction-order and
# synchronisation mistakes and the row-major to column-major GEMM mapping; it cannot see timing, the memory
# model or faults of the real cuBLAS (misaligned vector accesses it does catch: UBSan's alignment check, below):
# that is tests/model/backend-ops on a GPU. Skips (77) without g++.
. "$SCP_SRCDIR/tests/lib.sh"
cxx=${CXX_FOR_EMU:-g++}
command -v "$cxx" >/dev/null 2>&1 || skip_all "no C++ compiler ($cxx) for the emulator"
mkvar() { sed -n "s/^$1 = //p" "$SCP_BUILDDIR/Makefile" | head -1; }
cc=$(mkvar CC)
cflags="$(mkvar CFLAGS) $(mkvar OPENMP_CFLAGS)"
# the libraries libscp needs (as LDADD in Makefile.am, less MPI: the emulator stands in for CUDA)
libs="$(mkvar JANSSON_LIBS) $(mkvar ZLIB_LIBS) $(mkvar LIBARCHIVE_LIBS) $(mkvar PCRE2_LIBS) $(mkvar UTF8PROC_LIBS) $(mkvar BLAS_LIBS) $(mkvar OPENMP_CFLAGS) $(mkvar LDFLAGS) $(mkvar LIBS) -lm"
# Misaligned vector accesses fault on the GPU but not on x86: the kernels are built with UBSan's alignment check
# (the emulator's float2/float4/uint4/__nv_bfloat162 carry CUDA's alignments), which stops at the first one.
# In a sanitizer build (configure --enable-sanitizers) the kernels and the emulator take the build's
# AddressSanitizer and UBSan instead: the emulator becomes the kernels' memory checker, as compute-sanitizer's
# memcheck is on a GPU. Every cudaMalloc is a heap block of its own with red zones around it, the scratch past
# what its caller asked for and the bytes around a block's dynamic shared memory are poisoned (emu.cc), and a read
# or write outside them stops the run with the kernel's line. The emulated cuBLAS reads exactly the m, n, k, lda
# ... it is given, so a GEMM handed a leading dimension or a size beyond its buffer is caught too.
# The memory check is several times slower: it runs the bf16 table alone, whose kernels are the fp32 table's
# instantiated for the other storage type, and the default path on the GPU. It also runs the fibers in reverse
# order (EMU_SCHEDULE, emu.cc), so that the two builds of the suite between them see each missing barrier from
# both sides: thread 0 writing what the others read without a __syncthreads passes in index order and fails in
# reverse; the others writing what thread 0 then sums fails in index order.
san="-fsanitize=alignment -fno-sanitize-recover=alignment"
tables="--backend cuda-fp32 --backend cuda"
case $cflags in
*-fsanitize=address*)
    san=$(for f in $cflags; do case $f in -fsanitize*|-fno-sanitize*) printf '%s ' "$f" ;; esac; done)
    san="$san-fno-omit-frame-pointer"
    tables="--backend cuda"
    : "${EMU_SCHEDULE:=reverse}"
    export EMU_SCHEDULE ;;
*-fsanitize*) skip_all "a sanitizer build without AddressSanitizer" ;;
esac
# The CPU reference's OpenMP threads sleep between its parallel regions rather than spin, as the programs' do
# (lib/core/cli.c): the emulator runs on one thread in between, and spinning workers would take the cores from it
# and from the tests beside it.
: "${OMP_WAIT_POLICY:=passive}"
export OMP_WAIT_POLICY
src=$SCP_SRCDIR
objs=
for f in "$src"/lib/model/cuda/*.cu; do
    b=$(basename "$f" .cu)
    # k<<<g, b, s>>>(args) -> emu_launch(k, g, b, s)(args); dynamic shared memory from the emulator. Line for
    # line, so that a report names the line of the .cu file.
    { printf '#line 1 "%s"\n' "lib/model/cuda/$b.cu"
      sed -e 's/\([A-Za-z_][A-Za-z_0-9]*\(<[0-9]*>\)\{0,1\}\)<<<\([^>]*\)>>>(/emu_launch(\1, \3)(/g' \
        -e 's/extern __shared__ float smem\[\];/float *smem = emu_dyn_smem();/' "$f"; } >"$TMP/$b.cc"
    if ! "$cxx" -std=c++20 -O1 -g $san -pthread -I"$src/tests/gpu/emu" -I"$src/lib/cuda" -I"$src/lib" \
        -c "$TMP/$b.cc" -o "$TMP/$b.o" 2>"$TMP/cxx.err"; then
        echo "not ok 1 - lib/model/cuda/$b.cu compiles for the emulator"; sed 's/^/# /' "$TMP/cxx.err" | head -30
        echo "1..1"; exit 1
    fi
    objs="$objs $TMP/$b.o"
done
# The plugin's table of functions, linked in: libscp's plugin loader (lib/model/cuda_plugin.c) then hands out the
# emulated tables instead of loading libscp-cuda.so.
$cc $cflags -I"$src/lib" -I"$SCP_BUILDDIR" -c "$src/lib/model/cuda/plugin.c" -o "$TMP/plugin.o" 2>"$TMP/cc.err" ||
    { echo "not ok 1 - lib/model/cuda/plugin.c compiles"; sed 's/^/# /' "$TMP/cc.err" | head -30; echo "1..1"; exit 1; }
objs="$objs $TMP/plugin.o"
# cuBLAS's grouped GEMM (moe_gemm_cublas.cu's SCP_CUDA_MOE_GEMM=cublas), emulated beside emu.cc's cublasGemmEx
"$cxx" -std=c++20 -O1 -g $san -pthread -I"$src/tests/gpu/emu" -c "$src/tests/gpu/emu/emu_cublas_grouped.cc" \
    -o "$TMP/emu_grouped.o" 2>"$TMP/cxx.err" ||
    { echo "not ok 1 - tests/gpu/emu/emu_cublas_grouped.cc compiles"; sed 's/^/# /' "$TMP/cxx.err" | head -30; echo "1..1"; exit 1; }
objs="$objs $TMP/emu_grouped.o"
"$cxx" -std=c++20 -O1 -g $san -pthread -I"$src/tests/gpu/emu" -c "$src/tests/gpu/emu/emu.cc" -o "$TMP/emu.o" &&
    $cc $cflags -DSCP_CUDA_EMU -I"$src/lib" -I"$SCP_BUILDDIR" -c "$src/tests/model/backend-ops.c" -o "$TMP/ops.o" &&
    "$cxx" $san -pthread -o "$TMP/backend-ops-emu" "$TMP/ops.o" $objs "$TMP/emu.o" "$SCP_BUILDDIR/lib/libscp.a" $libs \
        2>"$TMP/ld.err" || { echo "not ok 1 - the emulated backend-ops links"; sed 's/^/# /' "$TMP/ld.err" | head -30; echo "1..1"; exit 1; }
[ -n "${EMU_KEEP:-}" ] && cp "$TMP/backend-ops-emu" "$EMU_KEEP"
# The warp primitives the flash kernels build on (lib/model/cuda/warp_mma.h: mma.m16n8k16, ldmatrix, cp.async)
# against the PTX ISA's layouts and plain products (tests/gpu/warp-mma-test.cu), before the ops that use them.
sed -e 's/\([A-Za-z_][A-Za-z_0-9]*\)<<<\([^>]*\)>>>(/emu_launch(\1, \2)(/g' \
    -e 's/extern __shared__ float smem\[\];/float *smem = emu_dyn_smem();/' \
    "$src/tests/gpu/warp-mma-test.cu" >"$TMP/wmma.cc"
if "$cxx" -std=c++20 -O1 -g $san -pthread -I"$src/tests/gpu/emu" -I"$src/lib" -c "$TMP/wmma.cc" -o "$TMP/wmma.o" \
    2>"$TMP/cxx.err" && "$cxx" $san -pthread -o "$TMP/warp-mma-emu" "$TMP/wmma.o" "$TMP/emu.o" 2>>"$TMP/cxx.err"; then
    "$TMP/warp-mma-emu" >"$TMP/mma.tap"
else
    { echo "not ok 1 - tests/gpu/warp-mma-test.cu builds for the emulator"
      sed 's/^/# /' "$TMP/cxx.err" | head -30; } >"$TMP/mma.tap"
fi
mma_failed=0
grep -q '^not ok' "$TMP/mma.tap" && mma_failed=1
# The op-by-op parity (TAP), then whole training steps of a small Qwen3-shaped model through the table
# (bench/gpu/scp-step --tiny: every entry in lib/model/model.c's order, chunked LM head, AdamW) against cpu-ref.
# EMU_OPS_ARGS (for work on a kernel, e.g. "--backend cuda --attention"): the op checks with those arguments
# alone, and nothing after them.
# (There the primitives' self-test shows as comments, and its failure stops the run.)
if [ -n "${EMU_OPS_ARGS:-}" ]; then
    grep -v '^1\.\.' "$TMP/mma.tap" | sed 's/^/# warp_mma: /'
    if [ "$mma_failed" -ne 0 ]; then
        echo "not ok 1 - the warp primitives' self-test (tests/gpu/warp-mma-test.cu)"; echo "1..1"; exit 1
    fi
    "$TMP/backend-ops-emu" $EMU_OPS_ARGS
    exit $?
fi
"$TMP/backend-ops-emu" $tables --small >"$TMP/ops.tap"
ops_rc=$?
# The expert GEMMs' cases once more on each cuBLAS path of the bf16 table (lib/model/cuda/moe_gemm_cublas.cu)
for p in cublas cublas-loop; do
    SCP_CUDA_MOE_GEMM=$p "$TMP/backend-ops-emu" --backend cuda --small --moe-gemm >"$TMP/moe.tap" || ops_rc=1
    sed "/^\(not \)\{0,1\}ok /s/\$/ [SCP_CUDA_MOE_GEMM=$p]/" "$TMP/moe.tap" >>"$TMP/ops.tap"
done
# the self-test's lines, then the op checks', numbered on
cat "$TMP/mma.tap" "$TMP/ops.tap" | awk '/^1\.\./ { next }
    /^(not )?ok [0-9]+/ { n++; sub(/ok [0-9]+/, "ok " n) } { print }'
n=$(cat "$TMP/mma.tap" "$TMP/ops.tap" | grep -c '^\(not \)\{0,1\}ok ')
if [ "$ops_rc" -ne 0 ]; then n=$((n + 1)); echo "not ok $n - the emulated backend-ops exited with status $ops_rc"; fi
$cc $cflags -DSCP_CUDA_EMU -I"$src/lib" -I"$SCP_BUILDDIR" -c "$src/bench/gpu/scp-step.c" -o "$TMP/step.o" &&
    "$cxx" $san -pthread -o "$TMP/scp-step-emu" "$TMP/step.o" $objs "$TMP/emu.o" "$SCP_BUILDDIR/lib/libscp.a" $libs \
        2>"$TMP/ld.err" || { sed 's/^/# /' "$TMP/ld.err" | head -30; }
"$TMP/scp-step-emu" --backend cuda-fp32 --tiny --steps 1 >"$TMP/cuda.json" 2>"$TMP/step.err"
"$TMP/scp-step-emu" --backend cpu-ref --tiny --steps 1 >"$TMP/ref.json" 2>>"$TMP/step.err"
# bf16 storage: the cuda-bf16 table against cpu-bf16 (the CPU kernels behind the same one rounding per stored
# value). The kernels sum in other orders than the CPU's, so now and then a stored value rounds to the
# neighbouring bf16 number: 1e-4 rather than fp32's 1e-5.
"$TMP/scp-step-emu" --backend cuda-bf16 --tiny --steps 1 >"$TMP/cuda16.json" 2>>"$TMP/step.err"
"$TMP/scp-step-emu" --backend cpu-bf16 --tiny --steps 1 >"$TMP/ref16.json" 2>>"$TMP/step.err"
# The same steps through the model driver (lib/model/model.c's device-resident path: weights, gradients and AdamW
# moments in emulated device memory, gradient norm and clipping there), where libscp was built with CUDA (its
# scp_backend_find then asks the plugin loader, which hands out the emulated table).
drv=
if grep -q 'define HAVE_CUDA 1' "$SCP_BUILDDIR/config.h"; then
    drv=1
    "$TMP/scp-step-emu" --backend cuda-fp32 --tiny --steps 1 --driver >"$TMP/cuda-drv.json" 2>>"$TMP/step.err"
    "$TMP/scp-step-emu" --backend cpu-ref --tiny --steps 1 --driver >"$TMP/ref-drv.json" 2>>"$TMP/step.err"
    "$TMP/scp-step-emu" --backend cuda-bf16 --tiny --steps 1 --driver >"$TMP/cuda16-drv.json" 2>>"$TMP/step.err"
    "$TMP/scp-step-emu" --backend cpu-bf16 --tiny --steps 1 --driver >"$TMP/ref16-drv.json" 2>>"$TMP/step.err"
fi
sed 's/^/# /' "$TMP/step.err" | head -10
/usr/bin/python3 - "$TMP" ${drv:+driver} <<'PY' >"$TMP/step.tap"
import json, os, sys
d = sys.argv[1]
pairs = [("cuda.json", "ref.json", "cuda-fp32 table", "cpu-ref", 1e-5), ("cuda16.json", "ref16.json", "cuda-bf16 table", "cpu-bf16", 1e-4)]
if len(sys.argv) > 2:
    pairs += [("cuda-drv.json", "ref-drv.json", "cuda-fp32 driver", "cpu-ref", 1e-5),
              ("cuda16-drv.json", "ref16-drv.json", "cuda-bf16 driver", "cpu-bf16", 1e-4)]
for cp, rp, via, ref, tol in pairs:
    try:
        c, r = json.load(open(os.path.join(d, cp))), json.load(open(os.path.join(d, rp)))
    except (OSError, ValueError) as e:
        print("1 training steps on the emulated %s ran (%s)" % (via, e))
        continue
    for k, what in (("loss0", "first step's loss"), ("loss", "the next step's loss, after one AdamW update")):
        rel = abs(c[k] - r[k]) / abs(r[k])
        print("%d %s on the emulated %s: %.7f vs %s %.7f (rel %.2g, tol %g)" % (0 if rel <= tol else 1, what, via, c[k], ref, r[k], rel, tol))
PY
while read -r st what; do
    n=$((n + 1))
    if [ "$st" = 0 ]; then echo "ok $n - $what"; else echo "not ok $n - $what"; fi
done <"$TMP/step.tap"
# Whole models through the driver on the emulated tables, against PyTorch autograd: grad-check.py's dense
# models and moe-grad-check.py's qwen3_moe ones, their helpers linked with the emulated kernels (in a build
# directory of their own, beside a backend-ops that reports the emulator's one device). "cuda-fp32" against float64
# (the emulator's GEMMs do not round to bf16, so fp32 tolerances hold), "cuda-bf16" against float64 with scp's
# bf16 roundings (grad-check-bf16.sh's reference). Where libscp was built with CUDA (its scp_backend_find hands
# out the tables).
gfail=0
# relay STATUS WHAT TAG: the TAP lines of $TMP/g.tap (a script that exited with STATUS), numbered on, each tagged
# [TAG]; a failure, or a script that passed nothing, fails here.
relay() {
    while read -r line; do
        case $line in
        "ok "*) n=$((n + 1)); echo "ok $n -${line#ok [0-9]* -} [$3]" ;;
        "not ok "*) n=$((n + 1)); gfail=1; echo "not ok $n -${line#not ok [0-9]* -} [$3]" ;;
        "#"*) echo "$line" ;;
        esac
    done <"$TMP/g.tap"
    if [ "$1" -ne 0 ] || ! grep -q '^ok ' "$TMP/g.tap"; then
        n=$((n + 1)); gfail=1; echo "not ok $n - $2 on the emulated tables ran (status $1)"
        tail -5 "$TMP/g.tap" | sed 's/^/# /'
    fi
}
if [ -n "$drv" ] && [ -x /usr/bin/python3 ]; then
    mkdir -p "$TMP/bd/tests/model"
    cp "$TMP/backend-ops-emu" "$TMP/bd/tests/model/backend-ops"
    for h in grad-helper moe-helper; do
        $cc $cflags -I"$src/lib" -I"$SCP_BUILDDIR" -c "$src/tests/model/$h.c" -o "$TMP/$h.o" &&
            "$cxx" $san -pthread -o "$TMP/bd/tests/model/$h" "$TMP/$h.o" $objs "$TMP/emu.o" "$SCP_BUILDDIR/lib/libscp.a" $libs \
                2>"$TMP/ld.err" || sed 's/^/# /' "$TMP/ld.err" | head -10
    done
    # Emulated, a model takes half a minute: the two tables share the cases between them so that together they
    # reach every switch the kernels see (biases, q/k norm with head_dim 6, annealed, document and GQA masks, tied
    # embeddings, AdamW; the grouped experts with renormalised routing and k = E, micro-batches with the aux and
    # z losses); the CPU tables run every case (tests/model/), and the GPU runs them all (tests/gpu/device-check.sh).
    for run in "SCP_TEST_BACKEND=cuda-fp32 grad-check.py" "SCP_TEST_BACKEND=cuda-bf16 grad-check.py" \
        "SCP_MOE_BACKENDS=cuda-fp32 moe-grad-check.py" "SCP_MOE_BACKENDS=cuda-bf16 moe-grad-check.py"; do
        case $run in
        *fp32*moe-*) cases=4 ;;
        *moe-*) cases=1,5 ;;
        *fp32*) cases=3,4 ;;
        *) cases=1,2 ;;
        esac
        env SCP_BUILDDIR="$TMP/bd" SCP_GRAD_CASES=$cases ${run% *} /usr/bin/python3 "$src/tests/model/${run#* }" \
            >"$TMP/g.tap" 2>&1
        relay $? "$run" "emulated, ${run% *}"
    done
    # Generation through the driver on the emulated tables: scp-eval generate (AR decoding with the key/value
    # cache, diffusion in one step and in several) on cuda-fp32 and cuda against the CPU, tests/gpu/generate-gpu.py
    # on a small random Qwen3 model, with scp-eval and logits-dump linked with the emulated kernels.
    mkdir -p "$TMP/bd/bin" "$TMP/bd/tests/gpu"
    ln -sf "$SCP_BUILDDIR/bin/scp-import" "$TMP/bd/bin/scp-import"
    eobjs=
    for f in scp-eval scp-eval-generate scp-eval-choice scp-eval-model; do
        $cc $cflags -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I"$src/lib" -I"$SCP_BUILDDIR" \
            -c "$src/bin/$f.c" -o "$TMP/$f.o" 2>>"$TMP/gen.err" && eobjs="$eobjs $TMP/$f.o"
    done
    $cc $cflags -std=gnu11 -D_GNU_SOURCE -I"$src/lib" -I"$SCP_BUILDDIR" -c "$src/tests/gpu/logits-dump.c" \
        -o "$TMP/logits-dump.o" 2>>"$TMP/gen.err"
    "$cxx" $san -pthread -o "$TMP/bd/bin/scp-eval" $eobjs $objs "$TMP/emu.o" "$SCP_BUILDDIR/lib/libscp.a" $libs \
        2>>"$TMP/gen.err" &&
        "$cxx" $san -pthread -o "$TMP/bd/tests/gpu/logits-dump" "$TMP/logits-dump.o" $objs "$TMP/emu.o" \
            "$SCP_BUILDDIR/lib/libscp.a" $libs 2>>"$TMP/gen.err"
    env SCP_BUILDDIR="$TMP/bd" SCP_BIN="$TMP/bd/bin" SCP_GEN_RANDOM=1 /usr/bin/python3 "$src/tests/gpu/generate-gpu.py" \
        >"$TMP/g.tap" 2>&1
    grc=$?
    [ "$grc" -ne 0 ] && sed 's/^/# /' "$TMP/gen.err" | head -20
    relay "$grc" generate-gpu.py emulated
    # GPU ranks on several processes: scp-train linked with the emulated kernels, lib/dist/nccl.c and the emulated
    # NCCL (tests/gpu/emu/emu_nccl.cc: NCCL's calls over MPI, each buffer checked to be device memory), under
    # mpirun: tests/gpu/nccl-emulated.py. Where libscp was built with NCCL (which needs MPI) and mpirun is there.
    if grep -q 'define HAVE_NCCL 1' "$SCP_BUILDDIR/config.h"; then
        if command -v mpirun >/dev/null 2>&1; then
            mpic=$(mkvar MPI_CFLAGS)
            tobjs=
            for f in scp-train scp-train-plan; do
                $cc $cflags -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I"$src/lib" -I"$SCP_BUILDDIR" $mpic \
                    -c "$src/bin/$f.c" -o "$TMP/$f.o" 2>>"$TMP/nccl.err" && tobjs="$tobjs $TMP/$f.o"
            done
            # nccl.c is C: the emulator's cuda_runtime.h and nccl.h stand before the toolkit's
            $cc $cflags -std=gnu11 -D_GNU_SOURCE -I"$src/tests/gpu/emu" -I"$src/lib" -I"$SCP_BUILDDIR" $mpic \
                -c "$src/lib/dist/nccl.c" -o "$TMP/nccl.o" 2>>"$TMP/nccl.err" &&
                "$cxx" -std=c++20 -O1 -g $san -pthread -I"$src/tests/gpu/emu" $mpic -c "$src/tests/gpu/emu/emu_nccl.cc" \
                    -o "$TMP/emu_nccl.o" 2>>"$TMP/nccl.err" &&
                # -rdynamic: the plugin loader finds nccl.c's entry point in the program (lib/model/cuda_plugin.c)
                "$cxx" $san -pthread -rdynamic -o "$TMP/bd/bin/scp-train" $tobjs $objs "$TMP/emu.o" "$TMP/emu_nccl.o" \
                    "$TMP/nccl.o" "$SCP_BUILDDIR/lib/libscp.a" $libs $(mkvar MPI_LIBS) 2>>"$TMP/nccl.err"
            ln -sf "$SCP_BUILDDIR/bin/scp-shard" "$TMP/bd/bin/scp-shard"
            env SCP_BUILDDIR="$TMP/bd" SCP_BIN="$TMP/bd/bin" /usr/bin/python3 "$src/tests/gpu/nccl-emulated.py" \
                >"$TMP/g.tap" 2>&1
            grc=$?
            [ "$grc" -ne 0 ] && [ -s "$TMP/nccl.err" ] && sed 's/^/# /' "$TMP/nccl.err" | head -20
            relay "$grc" nccl-emulated.py "emulated NCCL"
        else
            echo "# no mpirun: the emulated NCCL ranks (tests/gpu/nccl-emulated.py) left out"
        fi
    fi
    # The emulated programs kept, for debugging and for counting what a step asks of the device (EMU_COUNT, emu.cc).
    if [ -n "${EMU_KEEP_BUILD:-}" ]; then
        mkdir -p "$TMP/bd/bench/gpu" "$EMU_KEEP_BUILD" && cp "$TMP/scp-step-emu" "$TMP/bd/bench/gpu/scp-step" &&
            cp -r "$TMP/bd/." "$EMU_KEEP_BUILD"
    fi
fi
echo "1..$n"
[ "$ops_rc" -eq 0 ] && [ "$gfail" -eq 0 ] && [ "$mma_failed" -eq 0 ] && ! grep -q '^not ok' "$TMP/ops.tap" && ! grep -q '^1 ' "$TMP/step.tap"
