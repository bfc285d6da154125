#!/bin/sh
# bench.sh: a training step of the Qwen3-0.6B shape (hidden 1024, 28 layers, 16 heads, 8 KV heads, head_dim 128,
# intermediate 3072, vocab 151936; B x T = 4 x 2048, bidirectional attention, masked-diffusion loss on about
# half of the positions) on scp's CUDA backend (bench/gpu/scp-step) and on PyTorch (bench/gpu/torch-step.py:
# transformers' Qwen3 in bf16, SDPA, fused AdamW) in the same call, on the same GPU. Prints both JSON lines, then
# a table: tokens/s, TFLOP/s, MFU against the GPU's dense bf16 peak, the ratio, and scp's time per operation.
# The table step runs twice, once per CUDA attention path (SCP_CUDA_ATTN=gemm and =flash), with both rows'
# attention_fwd / attention_bwd times (ms); then once more on the bf16-storage table ("cuda-bf16": bf16
# activations and compute weights, default attention path), and the driver step on both tables; the per-operation
# breakdown is the gemm run's, beside the bf16 table run's.
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
# The table step once per CUDA attention path (lib/cuda/attention.cu: SCP_CUDA_ATTN=gemm, cuBLAS GEMMs over
# materialised scores, the default where its scratch fits; =flash, the fused kernels). scp.json is the gemm run.
for path in gemm flash; do
    [ $path = flash ] && [ -n "$quick" ] && continue
    out=scp
    [ $path = flash ] && out=flash
    # shellcheck disable=SC2086
    SCP_CUDA_ATTN=$path "$build/bench/gpu/scp-step" --backend $be $tiny --batch "$batch" --seq "$seq" --steps "$steps" \
        --peak-tflops "$peak" >"$tmp/$out.json" 2>"$tmp/$out.err" ||
        { echo "# scp-step (SCP_CUDA_ATTN=$path) failed:"; sed 's/^/#   /' "$tmp/$out.err"; status=1; }
done
# bf16 storage (lib/cuda: the "cuda-bf16" table), the table step with the default attention path.
if [ "$be" = cuda ]; then
    # shellcheck disable=SC2086
    "$build/bench/gpu/scp-step" --backend cuda-bf16 $tiny --batch "$batch" --seq "$seq" --steps "$steps" \
        --peak-tflops "$peak" >"$tmp/bf16.json" 2>"$tmp/bf16.err" ||
        { echo "# scp-step --backend cuda-bf16 failed:"; sed 's/^/#   /' "$tmp/bf16.err"; status=1; }
fi
# The same step through the model driver (lib/model.c, as scp-train runs it), plain and with --recompute; and
# plain on the bf16-storage table (scp-train --backend cuda-bf16).
for v in driver recompute driver16; do
    extra=--driver vbe=$be
    [ $v = recompute ] && extra="--driver --recompute"
    [ $v = recompute ] && [ -n "$quick" ] && continue
    if [ $v = driver16 ]; then [ "$be" = cuda ] || continue; vbe=cuda-bf16; fi
    # shellcheck disable=SC2086
    "$build/bench/gpu/scp-step" --backend $vbe $tiny --batch "$batch" --seq "$seq" --steps "$steps" --peak-tflops "$peak" \
        $extra >"$tmp/$v.json" 2>"$tmp/$v.err" ||
        { echo "# scp-step --backend $vbe $extra failed:"; sed 's/^/#   /' "$tmp/$v.err"; status=1; }
done
# shellcheck disable=SC2086
"${PYTHON:-/usr/bin/python3}" "$here/torch-step.py" $tiny --device "$device" --batch "$batch" --seq "$seq" --steps "$steps" \
    --peak-tflops "$peak" >"$tmp/torch.json" 2>"$tmp/torch.err" || { echo "# torch-step failed:"; tail -5 "$tmp/torch.err" | sed 's/^/#   /'; status=1; }
grep -h 'stand-in' "$tmp/torch.err" | sed 's/^/# /'  # say so when transformers' Qwen3 was not what ran
all="$tmp/scp.json $tmp/flash.json $tmp/bf16.json $tmp/driver.json $tmp/recompute.json $tmp/driver16.json $tmp/torch.json"
# shellcheck disable=SC2086
cat $all 2>/dev/null
# shellcheck disable=SC2086
[ -n "$json" ] && cat $all >"$json" 2>/dev/null
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" - "$tmp/scp.json" "$tmp/torch.json" "$peak" "${name:-no GPU}" "$tmp/driver.json" "$tmp/recompute.json" \
    "$tmp/flash.json" "$tmp/bf16.json" "$tmp/driver16.json" "$quick" <<'PY'
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
b16, drv16 = load(sys.argv[8]), load(sys.argv[9])
be = (s or fl or {}).get("backend", "cuda")
att = (lambda p: ", %s attn" % p) if be == "cuda" else (lambda p: "")  # SCP_CUDA_ATTN means nothing elsewhere
quick = sys.argv[10] == "1"  # --quick: no flash or --recompute rows, rather than rows that say failed
rows = [("scp %s (table%s)" % (be, att("gemm")), s)] + ([] if quick else [("scp %s (table%s)" % (be, att("flash")), fl)])
if be == "cuda":
    rows += [("scp cuda-bf16 (table)", b16)]
rows += [("scp " + r["backend"], r) for r in (drv, rec) if r]
if be == "cuda":
    rows += [("scp cuda-bf16 driver", drv16)]
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
    print("# scp tokens/s over torch: %.2f (table)%s" % (s["tok_s"] / t["tok_s"],
          ", %.2f (driver)" % (drv["tok_s"] / t["tok_s"]) if drv else ""))
if drv16 and t:
    print("# scp cuda-bf16 tokens/s over torch: %.2f (driver)%s" % (drv16["tok_s"] / t["tok_s"],
          ", over scp cuda driver %.2f" % (drv16["tok_s"] / drv["tok_s"]) if drv else ""))
if drv and rec:
    print("# --recompute: workspace %.2f GB -> %.2f GB, step time x%.2f" % (drv["workspace_bytes"] / 1e9,
          rec["workspace_bytes"] / 1e9, rec["best_s"] / drv["best_s"]))
if s:
    tot = sum(s["ops_ms"].values())
    o16 = (b16 or {}).get("ops_ms") or {}
    tot16 = sum(o16.values())
    print("# scp time per operation in one synchronised step (ms, share)%s:" % (
          "; the same on cuda-bf16" if o16 else ""))
    for k, v in sorted(s["ops_ms"].items(), key=lambda kv: -kv[1]):
        extra = "   %10.2f  %5.1f%%" % (o16[k], 100 * o16[k] / tot16 if tot16 else 0) if k in o16 else ""
        print("#   %-14s %10.2f  %5.1f%%%s" % (k, v, 100 * v / tot if tot else 0, extra))
if t and t.get("ops_ms"):
    print("# torch: top operators in one profiled step (ms):")
    for k, v in t["ops_ms"].items():
        print("#   %-50s %10.2f" % (k[:50], v))
PY
exit $status
