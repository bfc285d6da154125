#!/bin/sh
# bench.sh: a training step of the Qwen3-0.6B shape (hidden 1024, 28 layers, 16 heads, 8 KV heads, head_dim 128,
# intermediate 3072, vocab 151936; B x T = 4 x 2048, bidirectional attention, masked-diffusion loss on about
# half of the positions) on scp's CUDA backend (bench/gpu/scp-step) and on PyTorch (bench/gpu/torch-step.py:
# transformers' Qwen3 in bf16, SDPA, fused AdamW) in the same call, on the same GPU. Prints both JSON lines, then
# a table: tokens/s, TFLOP/s, MFU against the GPU's dense bf16 peak, the ratio, and scp's time per operation.
# The table step (every entry of the operation table in lib/model/model.c's order) runs on "cuda" (bf16 storage) once
# per CUDA attention path (SCP_CUDA_ATTN=gemm and =flash, with both rows' attention_fwd / attention_bwd times in
# ms) and on "cuda-fp32" (fp32 storage); the driver step (lib/model/model.c, as scp-train runs it) on cuda, on cuda
# with --recompute, and on cuda-fp32. The per-operation breakdown is the cuda gemm run's, beside cuda-fp32's.
#
#   bench/gpu/bench.sh [-b BUILDDIR] [-B BATCH] [-T SEQ] [-n STEPS] [-o JSONFILE] [--quick] [--tiny --device cpu (dry run)]
# --quick leaves out the flash-attention table step and the --recompute driver step (a shorter device call).
# BUILDDIR (default .) holds bench/gpu/scp-step; PEAK_TFLOPS overrides the peak looked up from the device name.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=.
batch=4 seq=2048 steps=3 json= tiny= device=cuda quick=
while [ $# -gt 0 ]; do
    case $1 in
    -b) build=$2; shift ;;
    -B) batch=$2; shift ;;
    -T) seq=$2; shift ;;
    -n) steps=$2; shift ;;
    -o) json=$2; shift ;;
    --tiny) tiny=--tiny ;;
    --quick) quick=1 ;;
    --device) device=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
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
[ "$device" = cpu ] && be=cpu
status=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/scp-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# step OUT ATTN ARGS...: one scp-step run (SCP_CUDA_ATTN=ATTN unless ATTN is -), its JSON in $tmp/OUT.json; a
# failure is reported and remembered.
step() {
    out=$1 attn=$2; shift 2
    [ "$attn" = - ] && attn=
    # shellcheck disable=SC2086
    env ${attn:+SCP_CUDA_ATTN=$attn} "$build/bench/gpu/scp-step" $tiny --batch "$batch" --seq "$seq" --steps "$steps" --peak-tflops "$peak" "$@" \
        >"$tmp/$out.json" 2>"$tmp/$out.err" || { echo "# scp-step $* failed:"; sed 's/^/#   /' "$tmp/$out.err"; status=1; }
}
# The table step once per CUDA attention path (lib/model/cuda/attention.cu: SCP_CUDA_ATTN=gemm, cuBLAS GEMMs over
# materialised scores, the default where its scratch fits; =flash, the fused kernels). scp.json is the gemm run.
step scp gemm --backend $be
[ -n "$quick" ] || step flash flash --backend $be
# The driver step, plain and with --recompute
step driver - --backend $be --driver
[ -n "$quick" ] || step recompute - --backend $be --driver --recompute
# fp32 storage (the "cuda-fp32" table): the table step with the default attention path, and the driver step
if [ "$be" = cuda ]; then
    step fp32 - --backend cuda-fp32
    step driver32 - --backend cuda-fp32 --driver
fi
# shellcheck disable=SC2086
"${PYTHON:-/usr/bin/python3}" "$here/torch-step.py" $tiny --device "$device" --batch "$batch" --seq "$seq" --steps "$steps" \
    --peak-tflops "$peak" >"$tmp/torch.json" 2>"$tmp/torch.err" || { echo "# torch-step failed:"; tail -5 "$tmp/torch.err" | sed 's/^/#   /'; status=1; }
grep -h 'stand-in' "$tmp/torch.err" | sed 's/^/# /'  # say so when transformers' Qwen3 was not what ran
all="$tmp/scp.json $tmp/flash.json $tmp/driver.json $tmp/recompute.json $tmp/fp32.json $tmp/driver32.json $tmp/torch.json"
# shellcheck disable=SC2086
cat $all 2>/dev/null
# shellcheck disable=SC2086
[ -n "$json" ] && cat $all >"$json" 2>/dev/null
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" - "$tmp/scp.json" "$tmp/torch.json" "$peak" "${name:-no GPU}" "$tmp/driver.json" "$tmp/recompute.json" \
    "$tmp/flash.json" "$tmp/fp32.json" "$tmp/driver32.json" "$quick" <<'PY'
import json, sys
def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
s, t, peak, name = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print("# %s, dense bf16 peak %s TFLOP/s" % (name, peak if peak else "unknown"))
print("# %-34s %10s %9s %8s %7s %9s %9s %9s" % ("", "step s", "tok/s", "TFLOP/s", "MFU", "loss0", "attn_fwd", "attn_bwd"))
drv, rec, fl = load(sys.argv[5]), load(sys.argv[6]), load(sys.argv[7])
f32, drv32 = load(sys.argv[8]), load(sys.argv[9])
quick = sys.argv[10] == "1"  # --quick: no flash or --recompute rows, rather than rows that say failed
be = (s or fl or {}).get("backend", "cuda")
gpu = be == "cuda"
att = (lambda p: ", %s attn" % p) if gpu else (lambda p: "")  # SCP_CUDA_ATTN means nothing elsewhere
rows = [("scp %s (table%s)" % (be, att("gemm")), s)]
if not quick:
    rows += [("scp %s (table%s)" % (be, att("flash")), fl)]
rows += [("scp %s driver" % be, drv)]
if not quick:
    rows += [("scp %s driver --recompute" % be, rec)]
if gpu:
    rows += [("scp cuda-fp32 (table)", f32), ("scp cuda-fp32 driver", drv32)]
rows += [("torch " + (t or {}).get("impl", "")[:28], t)]
def ms(r, k):  # attention time (ms) in the row's synchronised per-operation step, where it has one
    v = (r.get("ops_ms") or {}).get(k)
    return "%9.2f" % v if v is not None else "%9s" % "-"
for label, r in rows:
    if r:
        print("# %-34s %10.4f %9.0f %8.1f %6.1f%% %9.4f %s %s" % (label, r["best_s"], r["tok_s"], r["tflops"], 100 * r["mfu"],
              r["loss0"], ms(r, "attention_fwd"), ms(r, "attention_bwd")))
    else:
        print("# %-34s %10s" % (label, "failed"))
if s and fl:
    print("# gemm attention over flash: step x%.2f" % (fl["best_s"] / s["best_s"]))
if s and t:
    print("# scp %s tokens/s over torch: %.2f (table)%s" % (be, s["tok_s"] / t["tok_s"],
          ", %.2f (driver)" % (drv["tok_s"] / t["tok_s"]) if drv else ""))
if drv32 and t:
    print("# scp cuda-fp32 tokens/s over torch: %.2f (driver)%s" % (drv32["tok_s"] / t["tok_s"],
          "; bf16 storage over fp32 (driver): x%.2f" % (drv["tok_s"] / drv32["tok_s"]) if drv else ""))
if drv and rec:
    print("# --recompute: workspace %.2f GB -> %.2f GB, step time x%.2f" % (drv["workspace_bytes"] / 1e9,
          rec["workspace_bytes"] / 1e9, rec["best_s"] / drv["best_s"]))
if s:
    tot = sum(s["ops_ms"].values())
    o32 = (f32 or {}).get("ops_ms") or {}
    tot32 = sum(o32.values())
    print("# scp time per operation in one synchronised step (ms, share), %s%s:" % (be,
          "; the same on cuda-fp32" if o32 else ""))
    for k, v in sorted(s["ops_ms"].items(), key=lambda kv: -kv[1]):
        extra = "   %10.2f  %5.1f%%" % (o32[k], 100 * o32[k] / tot32 if tot32 else 0) if k in o32 else ""
        print("#   %-14s %10.2f  %5.1f%%%s" % (k, v, 100 * v / tot if tot else 0, extra))
if t and t.get("ops_ms"):
    print("# torch: top operators in one profiled step (ms):")
    for k, v in t["ops_ms"].items():
        print("#   %-50s %10.2f" % (k[:50], v))
PY
exit $status
