#!/bin/sh
# moe-scp.sh: a small qwen3_moe model (4 experts, top-2) end to end on generated text: scp-new-model --experts,
# AR pretraining from random weights, the SCP conversion (masked diffusion, bidirectional) with the
# load-balancing and z losses, whose held-out diffusion NLL bound must fall well beyond its standard error;
# the per-expert load in metrics.jsonl (one count per expert, summing to tokens x k x layers); --recompute
# giving bitwise the same losses; bf16 storage (cpu-bf16) close to fp32; exact resume; scp-eval ppl, elbo and generate; scp-export to Hugging Face and GGUF, each
# imported back giving the same bound.
. "$SCP_SRCDIR/tests/lib.sh"
[ -x /usr/bin/python3 ] || skip_all "no /usr/bin/python3 (the corpus and tokenizer tools need it)"
T=$SCP_SRCDIR/tools
cd "$TMP" || exit 1

"$T/scp-gen-corpus" -o data -n 60 --mentions 6 --seed 1 >/dev/null 2>"$TMP/err" &&
    "$T/scp-train-bpe" data/corpus.txt -o tok/tokenizer.json --config tok/tokenizer_config.json --vocab 384 \
        --mask-token 2>>"$TMP/err" &&
    "$T/scp-new-model" -t tok/tokenizer.json -o base --hidden 64 --layers 2 --heads 4 --intermediate 128 --max-len 64 \
        --experts 4 --experts-per-tok 2 2>>"$TMP/err" &&
    scp-tokenize -m base --doc paragraph --bos -o data/corpus.tok data/corpus.txt 2>>"$TMP/err" &&
    scp-shard -L 64 -v 0.1 -s 1 -S 1M -f -o data/shards data/corpus.tok 2>>"$TMP/err"
ok $? "corpus, tokenizer, a qwen3_moe config (scp-new-model --experts 4 --experts-per-tok 2), shards"
grep -q '"num_experts": 4' base/config.json && grep -q '"model_type": "qwen3_moe"' base/config.json
ok $? "the config is qwen3_moe with 4 experts"

COMMON="--data data/shards --batch-tokens 2048 --seed 1 --threads 2 --force --quiet"
check "AR pretraining of the MoE model from random weights (with --aux-loss)" \
    scp-train --init random:base/config.json -o ar --objective ar --attention causal --tokens 200k --lr 5e-3 \
    --min-lr 5e-4 --warmup 5 --schedule cosine --eval-every 0 --aux-loss 0.01 $COMMON
check "SCP conversion (mdm, bidirectional, --aux-loss 0.01 --z-loss 0.001, --lr-router 1 --lr-mlp 0.1)" \
    scp-train --init ar/latest -o scp --objective mdm --attention bidirectional --tokens 60k --lr 2e-3 --min-lr 2e-4 \
    --warmup 5 --schedule cosine --lr-mlp 0.1 --lr-router 1 --eval-every 10 --eval-seqs 32 --eval-samples 8 \
    --aux-loss 0.01 --z-loss 0.001 $COMMON

/usr/bin/python3 - <<'EOF' >"$TMP/figs.out" 2>&1
import json, math
ev = [json.loads(l) for l in open("scp/metrics.jsonl") if '"eval"' in l]
st = [json.loads(l) for l in open("scp/metrics.jsonl") if '"eval"' not in l]
first, last = ev[0], ev[-1]
drop, noise = first["elbo"] - last["elbo"], 3 * math.hypot(first["se"], last["se"])
print("held-out bound %.4f (se %.4f) at step 0 -> %.4f (se %.4f) at step %d: fell %.3f nats, 3 se = %.3f"
      % (first["elbo"], first["se"], last["elbo"], last["se"], last["step"], drop, noise))
assert first["step"] == 0 and drop > noise, "the bound did not fall beyond noise"
for s in st + [json.loads(l) for l in open("ar/metrics.jsonl") if '"eval"' not in l]:
    load = s["expert_load"]
    assert len(load) == 4 and sum(load) == 2048 * 2 * 2, ("load is not tokens x k x layers", s)
    assert abs(s["load_max_mean"] - max(load) * 4 / sum(load)) < 1e-12 and math.isfinite(s["aux_loss"]), s
    assert 0 < s["aux_loss"] <= 2.0000001 and s["z_loss"] > 0, s   # aux is at most E/k = 2
print("loads of the last step", st[-1]["expert_load"], "max/mean %.3f" % st[-1]["load_max_mean"])
EOF
r=$?
ok $r "SCP lowers the held-out diffusion bound beyond noise; per-expert load in every step line"
sed 's/^/# /' "$TMP/figs.out"

# --recompute: the same losses, bit for bit (tokens_per_s and peak_rss_bytes aside).
for rc in "" --recompute; do
    scp-train --init ar/latest -o "rc$rc" --objective mdm --steps 3 --lr 2e-3 --aux-loss 0.01 --z-loss 0.001 \
        --eval-every 0 $rc $COMMON 2>>"$TMP/err" || echo "run failed" >>"$TMP/err"
    sed -e 's/"tokens_per_s":[^,]*,//' -e 's/,"peak_rss_bytes":[0-9]*//' "rc$rc/metrics.jsonl" >"rc$rc.lines"
done
cmp -s rc.lines rc--recompute.lines && [ "$(wc -l <rc.lines)" -eq 3 ]
ok $? "--recompute gives bitwise the same step losses, loads and gradient norms"

# bf16 storage (cpu-bf16: the CPU kernels behind bf16 activations, fp32 master weights): the same 3 steps follow
# the fp32 losses to bf16's precision without equalling them (a near tie in the routing may pick another expert,
# hence 2e-2 rather than grad-check-bf16's tighter figures).
scp-train --init ar/latest -o rcbf --objective mdm --steps 3 --lr 2e-3 --aux-loss 0.01 --z-loss 0.001 \
    --eval-every 0 --backend cpu-bf16 $COMMON 2>>"$TMP/err" || echo "cpu-bf16 run failed" >>"$TMP/err"
/usr/bin/python3 - <<'EOF' >"$TMP/bf.out" 2>&1
import json
a = [json.loads(l) for l in open("rc/metrics.jsonl")]
b = [json.loads(l) for l in open("rcbf/metrics.jsonl")]
rel = [abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b)]
print("cpu-bf16 against fp32, relative loss differences:", " ".join("%.1e" % r for r in rel))
assert len(b) == 3 and 0 < max(rel) < 2e-2 and all(sum(y["expert_load"]) == 2048 * 2 * 2 for y in b)
EOF
ok $? "a MoE run on bf16 storage (cpu-bf16) follows the fp32 losses"
sed 's/^/# /' "$TMP/bf.out"

# Exact resume: 2 steps, then --resume to 4 (the auxiliary-loss options come back from trainer_state.json),
# against 4 steps in one go, with micro-batches.
R="--objective mdm --lr 2e-3 --aux-loss 0.01 --z-loss 0.001 --eval-every 0 --micro-batch 8"
scp-train --init ar/latest -o ra --steps 4 $R $COMMON 2>>"$TMP/err" &&
    scp-train --init ar/latest -o rb --steps 2 $R $COMMON 2>>"$TMP/err" &&
    scp-train --resume -o rb --steps 4 -q 2>>"$TMP/err"
for d in ra rb; do
    sed -e 's/"tokens_per_s":[^,]*,//' -e 's/,"peak_rss_bytes":[0-9]*//' "$d/metrics.jsonl" >"$d.lines"
done
cmp -s ra.lines rb.lines && [ "$(wc -l <ra.lines)" -eq 4 ] && grep -q '"aux_loss": 0.01' rb/latest/trainer_state.json
ok $? "a resumed MoE run continues bit for bit (losses, loads, auxiliary losses)"

check "scp-eval ppl on the AR MoE checkpoint" sh -c 'scp-eval ppl -m ar/latest -d data/shards --threads 2 >ppl.json'
grep -q '"nll": [0-9]' ppl.json
ok $? "ppl gives an NLL"
check "scp-eval elbo on the converted MoE checkpoint" \
    sh -c 'scp-eval elbo -m scp/latest -d data/shards --threads 2 --max-seqs 8 --samples 2 >elbo.json'
check "scp-eval generate (diffusion) on the converted MoE checkpoint" \
    sh -c 'scp-eval generate -m scp/latest -p "The" -n 12 --threads 2 >gen.txt && test -s gen.txt'
check "scp-eval generate (AR) on the AR MoE checkpoint" \
    sh -c 'scp-eval generate -m ar/latest -p "The" -n 12 --threads 2 >gen-ar.txt && test -s gen-ar.txt'
check "scp-export to a Hugging Face directory" scp-export -q -o hf scp/latest
grep -q '"model_type": *"qwen3_moe"' hf/config.json && grep -q '"num_experts": *4' hf/config.json
ok $? "the HF export is qwen3_moe with its experts"
check "scp-export to GGUF" scp-export -q -o m.gguf scp/latest
check "both exports import back" sh -c 'scp-import -q -f hf -o back-hf && scp-import -q -f m.gguf -o back-gguf'
for b in back-hf back-gguf; do
    scp-eval elbo -m "$b" -d data/shards --threads 2 --max-seqs 8 --samples 2 >"$b.json" 2>>"$TMP/err"
    /usr/bin/python3 -c 'import json, sys; a, b = (json.load(open(p)) for p in sys.argv[1:]); sys.exit(a["nll"] != b["nll"])' \
        elbo.json "$b.json"
    ok $? "$b gives the same bound as the checkpoint it was exported from"
done
[ "$tap_failed" -eq 0 ] || sed 's/^/# /' "$TMP/err" | tail -20
done_testing
