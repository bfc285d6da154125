#!/bin/sh
# train-stories260k.sh: end to end on the GPU: the first 20 steps of the stories260K conversion
# (tools/scp-convert-stories260k: import with a mask token, paragraphs with BOS, shards of 256, bidirectional
# masked-diffusion training) with --backend cuda against the same run with --backend cpu, step by step. The
# losses must agree within 2% at every step (the runs see the same batches, noise levels and masks, so only
# arithmetic separates them) and both must fall. Needs a GPU and the assets (skips otherwise).
# SCP_GPU_BACKEND=cuda-fp32 runs the fp32-storage table instead (device-check.sh does both; bf16 tensor-core
# matmuls, otherwise fp32). For "cuda" (bf16 storage) the same 2% holds: bf16 storage rounds every activation,
# activation gradient and the weights the kernels read to 8 significant bits (2^-9 relative per rounding,
# unbiased), the loss averages 4096 tokens, and through 20 AdamW updates the runs drift apart by gradient noise (cpu-bf16, the same rounding on the CPU, stays within
# 3.2e-3); a wrong kernel shows as a loss tens of % off, rising, or NaN. SCP_GPU_DRYRUN=1 runs the whole script
# with cpu-ref (or cpu-bf16) in place of the GPU (a dry run of the pipeline and the comparison without a GPU).
. "$SCP_SRCDIR/tests/lib.sh"
gpu=${SCP_GPU_BACKEND:-cuda}
case $gpu in cuda | cuda-bf16 | cuda-fp32) ;; *) echo "SCP_GPU_BACKEND: cuda, cuda-bf16 or cuda-fp32, not '$gpu'" >&2; exit 2 ;; esac
if [ "${SCP_GPU_DRYRUN:-0}" = 1 ]; then
    [ "$gpu" = cuda-fp32 ] && gpu=cpu-ref || gpu=cpu-bf16
else
    n=$("$SCP_BUILDDIR/tests/model/backend-ops" --devices 2>/dev/null || echo 0)
    [ "${n:-0}" -gt 0 ] || skip_all "no CUDA device"
fi
need_assets models/stories260K.bin
need_assets models/tok512.bin
need_assets corpora/tinystories_val.txt
A=$SCP_ASSETS

check "import stories260K with a mask token" \
    scp-import -q --force "$A/models/stories260K.bin" --tokenizer "$A/models/tok512.bin" -o "$TMP/ckpt"
check "tokenize (paragraphs, BOS)" \
    scp-tokenize -q --model "$TMP/ckpt" --doc paragraph --bos -o "$TMP/corpus.tok" "$A/corpora/tinystories_val.txt"
check "shard (256 positions, 10% held out)" \
    scp-shard -q --force -L 256 --val-fraction 0.1 -s 1 "$TMP/corpus.tok" -o "$TMP/shards"
common="--init $TMP/ckpt --data $TMP/shards --steps 20 --batch-tokens 4096 --lr 2e-3 --min-lr 2e-4 --warmup 5
        --schedule cosine --lr-attn 1 --lr-mlp 0.5 --weight-decay 0.1 --clip 1 --seed 1 --threads 4 --force -q"
for be in cpu $gpu; do
    t0=$(date +%s)
    # shellcheck disable=SC2086
    check "20 steps with --backend $be" scp-train $common --backend $be -o "$TMP/run-$be"
    diag "$be: $(($(date +%s) - t0)) s"
done
# The comparison prints "0 WHAT" / "1 WHAT" (status, description) and "# ..." diagnostics. (A GPU machine's
# image may have its Python elsewhere: python3 on PATH then.)
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" - "$TMP/run-cpu/metrics.jsonl" "$TMP/run-$gpu/metrics.jsonl" "$gpu" >"$TMP/cmp.out" <<'PY'
import json, math, sys
def losses(p):
    try:
        return {j["step"]: j["loss"] for j in map(json.loads, open(p)) if j.get("loss") is not None and "eval" not in j}
    except OSError:
        return {}
c, g, gn = losses(sys.argv[1]), losses(sys.argv[2]), sys.argv[3]
def ok(cond, what):
    print("%d %s" % (0 if cond else 1, what))
steps = sorted(c)
ok(len(c) == 20 and sorted(g) == steps, "20 logged steps on both backends (cpu %d, %s %d)" % (len(c), gn, len(g)))
worst = 0.0
for s in steps:
    a, b = c[s], g.get(s)
    r = abs(b - a) / abs(a) if b is not None and math.isfinite(b) else float("inf")
    worst = max(worst, r)
    print("# step %2d  cpu %.5f  %s %s  rel %.2e" % (s, a, gn, "%.5f" % b if b is not None else "-", r))
ok(worst <= 0.02, "%s losses within 2%% of cpu at every step (worst %.3g)" % (gn, worst))
for name, d in (("cpu", c), (gn, g)):
    v = [d[s] for s in sorted(d)]
    ok(len(v) >= 10 and sum(v[-5:]) / 5 < sum(v[:5]) / 5, "%s: mean loss of the last 5 steps below the first 5" % name)
PY
while read -r st what; do
    if [ "$st" = "#" ]; then echo "# $what"; else ok "$st" "$what"; fi
done <"$TMP/cmp.out"
# The same 20 steps on the device again: with --recompute (each layer's forward rerun in backward), and with
# the gradients going through a one-rank NCCL communicator layer by layer during the backward (the overlap path
# of data-parallel GPU runs; SCP_NCCL_ONE_RANK=1). Both must give bitwise the losses and weights of the plain
# run: recomputation repeats the same kernels on the same inputs, and a one-rank sum is the identity.
same_run() {   # same_run NAME: metrics losses and model.safetensors of run-NAME against run-$gpu
    a=$(grep -v eval "$TMP/run-$gpu/metrics.jsonl" | sed -n 's/.*"loss": *\([^,}]*\).*/\1/p' | tr '\n' ' ')
    b=$(grep -v eval "$TMP/run-$1/metrics.jsonl" 2>/dev/null | sed -n 's/.*"loss": *\([^,}]*\).*/\1/p' | tr '\n' ' ')
    [ -n "$a" ] && [ "$a" = "$b" ] && cmp -s "$TMP/run-$gpu/latest/model.safetensors" "$TMP/run-$1/latest/model.safetensors"
}
case $gpu in cuda*)
    # shellcheck disable=SC2086
    check "20 steps with --backend $gpu --recompute" scp-train $common --backend "$gpu" --recompute -o "$TMP/run-recompute"
    ok "$(same_run recompute && echo 0 || echo 1)" "--recompute: bitwise the same losses and final weights"
    if [ -x "$SCP_BUILDDIR/tests/dist/dist-nccl-smoke" ]; then
        # shellcheck disable=SC2086
        check "20 steps with gradients through NCCL during the backward" \
            env SCP_NCCL_ONE_RANK=1 scp-train $common --backend "$gpu" -o "$TMP/run-nccl"
        ok "$(same_run nccl && echo 0 || echo 1)" "NCCL layer-by-layer all-reduce (one rank): bitwise the same losses and final weights"
    fi
esac
done_testing
