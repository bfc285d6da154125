#!/bin/sh
# demo-small.sh: the demo pipeline (share/scp/demo/Makefile) end to end at test size (small.conf): corpus,
# BPE tokenizer, model config, tokenize, shard, AR pretraining, SCP conversion, from-scratch baseline, the
# evaluations, samples, export, plots, summary. Checks what each stage produced, that a rerun does nothing and
# that changing one option redoes only the stages that depend on it.
. "$SCP_SRCDIR/tests/lib.sh"

# The demo's stages are the programs the rest of the suite runs under the sanitizers; what this test adds, the
# makefile's logic and the pipeline's products, is the same in every build.
sanitized && skip_all "sanitizer build: the demo pipeline is checked by the plain build"
command -v make >/dev/null 2>&1 || skip_all "no make"
command -v gnuplot >/dev/null 2>&1 || skip_all "no gnuplot (the plots stage needs it)"
[ -x /usr/bin/python3 ] || skip_all "no /usr/bin/python3 (the demo's scripts need it)"

# The make running the test suite must not pass its flags and variables (jobserver, TESTS=...) to ours.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
MK="$SCP_SRCDIR/share/scp/demo/Makefile"
D="$TMP/demo"
mkdir -p "$D"
demo() { make --no-print-directory -C "$D" -f "$MK" CONF="$SCP_SRCDIR/share/scp/demo/small.conf" SCP_BIN="$SCP_BIN" \
    SCP_TOOLS="$SCP_SRCDIR/tools" THREADS=2 "$@"; }

demo >"$TMP/make.out" 2>"$TMP/make.err"; r=$?
ok $r "make runs the whole demo pipeline"
[ $r -eq 0 ] || { tail -30 "$TMP/make.err" | sed 's/^/# /'; done_testing; }

# The summary table names the three models and every figure.
grep -q '| val diffusion NLL bound' "$D/summary.md" && grep -q 'AR (before)' "$D/summary.md" &&
    grep -q 'SCP (after)' "$D/summary.md" && grep -q 'from scratch' "$D/summary.md"
ok $? "summary.md has the before/after/from-scratch table"
grep -q '^| val diffusion NLL bound' "$TMP/make.out"
ok $? "the summary is printed on stdout"
grep -q '^==> pretrain the AR model' "$TMP/make.err" && grep -q '^==> SCP: bidirectional' "$TMP/make.err"
ok $? "stage banners on stderr"

# Every figure is a real number in its range, with the sizes small.conf asks for.
/usr/bin/python3 - "$D" <<'EOF' >"$TMP/figs.out" 2>&1
import json, math, os, sys
d = sys.argv[1]
def j(n): return json.load(open(os.path.join(d, "eval", n + ".json")))
vocab = json.load(open(os.path.join(d, "base", "config.json")))["vocab_size"]
uniform = math.log(vocab)
ppl = j("ar-ppl")
assert ppl["metric"] == "ppl" and 0 < ppl["nll"] < uniform, ("AR NLL not below uniform", ppl["nll"], uniform)
for m in ("ar", "scp", "scratch"):
    e = j(m + "-elbo")
    assert e["metric"] == "elbo" and math.isfinite(e["nll"]) and e["nll"] > 0, (m, e)
    c = j(m + "-choice")
    assert c["items"] == 12 and 0 <= c["accuracy"] <= 1 and c["chance"] == 0.25, (m, c)
    assert c["mode"] == ("ar" if m == "ar" else "diffusion"), (m, c["mode"])
    r = j(m + "-recall")
    assert r["items"] == 12 and 0 <= r["accuracy"] <= 1, (m, r)
# Conversion beats its starting point on the diffusion bound: the AR model scored bidirectionally.
assert j("scp-elbo")["nll"] < j("ar-elbo")["nll"], "SCP did not lower the diffusion bound"
# Training lowered the losses: the last val line of each run is below its step-0 line.
for run, key in (("ar", "nll"), ("scp", "elbo"), ("scratch", "elbo")):
    ev = [json.loads(l) for l in open(os.path.join(d, run, "metrics.jsonl")) if '"eval"' in l]
    assert ev[0]["step"] == 0 and ev[-1][key] < ev[0][key], (run, ev[0], ev[-1])
# The converted checkpoint and its export are bidirectional diffusion models with the mask token.
mask = json.load(open(os.path.join(d, "base", "config.json")))["mask_token_id"]
for p in ("scp/latest/config.json", "export/hf/config.json"):
    c = json.load(open(os.path.join(d, p)))
    assert c["is_causal"] is False and c["mask_token_id"] == mask, (p, c)
assert json.load(open(os.path.join(d, "ar/best/config.json")))["is_causal"] is True
# The "before" model is the AR run's checkpoint of the lowest val NLL (--keep-best), step 0 (the init) aside.
ev = [json.loads(l) for l in open(os.path.join(d, "ar", "metrics.jsonl")) if '"eval"' in l]
low = min((e["nll"], e["step"]) for e in ev if e["step"] > 0)[1]
best = os.readlink(os.path.join(d, "ar", "best"))
assert best == "step-%07d" % low, (best, low)
print("figures ok")
EOF
r=$?
ok $r "figures: AR NLL below uniform, SCP lowers the bound, val losses fall, export bidirectional, ar/best lowest"
[ $r -eq 0 ] || sed 's/^/# /' "$TMP/figs.out"

head -c 4 "$D/export/scp-demo.gguf" | grep -q GGUF
ok $? "GGUF export has the GGUF magic"
for p in ar conversion; do
    head -c 8 "$D/plots/$p.png" | od -An -c | grep -q 'P   N   G'
    ok $? "plots/$p.png is a PNG"
done
[ "$(wc -l <"$D/samples.txt")" -ge 5 ]
ok $? "samples.txt has a generation per prompt"

# The generated tokenizer round-trips the corpus exactly (decode(encode(text)) == text).
scp-tokenize -t "$D/tok/tokenizer.json" --doc file -o "$TMP/c.tok" "$D/data/corpus.txt" 2>/dev/null &&
    scp-tokenize -t "$D/tok/tokenizer.json" --decode "$TMP/c.tok" >"$TMP/c.txt" 2>/dev/null &&
    { cat "$D/data/corpus.txt"; echo; } | cmp -s - "$TMP/c.txt"
ok $? "scp-train-bpe's tokenizer.json round-trips the corpus through scp-tokenize"

# Every fact's cloze context followed by its answer is in the corpus, and gold points at the answer.
/usr/bin/python3 - "$D/data" <<'EOF'
import json, sys
c = open(sys.argv[1] + "/corpus.txt").read()
for l in open(sys.argv[1] + "/facts.jsonl"):
    o = json.loads(l)
    assert o["choices"][o["gold"]] == o["answer"] and len(o["choices"]) == 4, o
    assert o["context"] + o["answer"] in c, o
EOF
ok $? "facts.jsonl: every probe and answer occur in the corpus, gold is the answer"

# A rerun has nothing to do; one changed option redoes its stage and what follows it, nothing before.
demo -q
ok $? "a rerun is up to date (make -q)"
demo -n SAMPLE_LENGTH=9 >"$TMP/n.out" 2>&1
! grep -q 'scp-train' "$TMP/n.out" && grep -q 'scp-eval generate' "$TMP/n.out"
ok $? "changing SAMPLE_LENGTH redoes the samples only, no training"
demo -n SCP_LR_MLP=0.5 >"$TMP/n2.out" 2>&1
grep -q -- '-o scp ' "$TMP/n2.out" && ! grep -q -- '-o ar ' "$TMP/n2.out" && ! grep -q -- '-o scratch ' "$TMP/n2.out"
ok $? "changing SCP_LR_MLP redoes the conversion, not the AR model or the baseline"
demo -q
ok $? "make -n with other options changed nothing: still up to date"

# An experiment makefile in the same directory reuses the data and the AR model and writes its table.
make --no-print-directory -C "$D" -f "$SCP_SRCDIR/share/scp/experiments/lr-groups.mk" \
    CONF="$SCP_SRCDIR/share/scp/demo/small.conf" SCP_BIN="$SCP_BIN" SCP_TOOLS="$SCP_SRCDIR/tools" THREADS=2 \
    MLP_MULTS="0 1" SEEDS="1 2" >"$TMP/exp.out" 2>"$TMP/exp.err"
r=$?
ok $r "experiment lr-groups.mk runs (2 multipliers x 2 seeds)"
[ $r -eq 0 ] || tail -20 "$TMP/exp.err" | sed 's/^/# /'
! grep -q -- '-o ar ' "$TMP/exp.err" "$TMP/exp.out"
ok $? "the experiment reuses the demo's AR model"
# Rows: AR (1 run), MLP x0 and x1 (2 seeds each, a mean and a spread); 4 runs trained.
grep -q '^| AR model, before | 1 | [0-9.]* | [0-9.]* |' "$D/results-lr-groups.md" &&
    grep -q '^| 0 | 2 | [0-9.]* ± [0-9.]* | [0-9.]* ± [0-9.]* |' "$D/results-lr-groups.md" &&
    grep -q '^| 1 (uniform) | 2 | [0-9.]* ± [0-9.]* |' "$D/results-lr-groups.md" &&
    [ "$(ls "$D"/runs/*.done | wc -l)" -eq 4 ]
r=$?
ok $r "results-lr-groups.md has the AR row and a mean ± spread per multiplier"
[ $r -eq 0 ] && [ -f "$D/results-lr-groups.md" ] || sed 's/^/# /' "$D/results-lr-groups.md"
# MLP multiplier 0 freezes the MLP: its weights stay bit-identical to the AR model's; attention trains.
/usr/bin/python3 - "$D" <<'EOF'
import json, struct, sys
d = sys.argv[1]
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a = tensors(d + "/ar/latest/model.safetensors")
z = tensors(d + "/runs/e3-attn1-mlp0-s1/latest/model.safetensors")
u = tensors(d + "/runs/e3-attn1-mlp1-s1/latest/model.safetensors")
mlp = [k for k in a if ".mlp." in k]
att = [k for k in a if ".self_attn." in k]
assert mlp and att
assert all(a[k] == z[k] for k in mlp), "MLP moved with --lr-mlp 0"
assert all(a[k] != z[k] for k in att), "attention did not train"
assert all(a[k] != u[k] for k in mlp), "MLP did not train with --lr-mlp 1"
EOF
ok $? "--lr-mlp 0 leaves the MLP weights of the AR model bit-identical, attention trains"

# Experiment 5 (noise-scale.mk) at test size: six run kinds x two seeds, its table (ratio rows) and plots.
make --no-print-directory -C "$D" -f "$SCP_SRCDIR/share/scp/experiments/noise-scale.mk" \
    CONF="$SCP_SRCDIR/share/scp/demo/small.conf" SCP_BIN="$SCP_BIN" SCP_TOOLS="$SCP_SRCDIR/tools" THREADS=2 \
    NS_TOKENS=8k NS_SEEDS="1 2" >"$TMP/ns.out" 2>"$TMP/ns.err"
r=$?
ok $r "experiment noise-scale.mk runs (6 kinds x 2 seeds)"
[ $r -eq 0 ] || tail -20 "$TMP/ns.err" | sed 's/^/# /'
grep -q -- '--micro-batch 4 .*--objective mdm --attention bidirectional --t-sampler uniform' "$TMP/ns.err" &&
    [ "$(ls "$D"/runs/e5-*.done | wc -l)" -eq 12 ] && ! grep -q -- '-o ar ' "$TMP/ns.err" &&
    [ "$(grep -c '^| next-token | 2 | -\{0,1\}[0-9]' "$D/results-noise-scale.md")" -eq 4 ] &&
    [ "$(grep -c '^| diffusion / next-token | [12] |' "$D/results-noise-scale.md")" -eq 4 ]
r=$?
ok $r "results-noise-scale.md: per-objective and ratio rows, from the AR model and from random weights"
[ $r -eq 0 ] || sed 's/^/# /' "$D/results-noise-scale.md"
for p in noise-scale-ar-init noise-scale-random-init; do
    head -c 8 "$D/plots/$p.png" | od -An -c | grep -q 'P   N   G'
    ok $? "plots/$p.png is a PNG"
done

# scp-exp-table's noise columns against hand-made step lines: E|G_B|^2 = |G|^2 + tr(Sigma)/B exactly, |G|^2 = 2,
# B_small = 256, B_big = 2048; tr(Sigma) = 1000 in the first two steps with an estimate, TR in the last two,
# so B_simple is 500 over the first half and TR/2 over the last. A step without an estimate is left out.
mkdir -p "$TMP/nt/runs"
for run in a1:3000 a2:4000 b1:1500 b2:1000; do
    name=${run%:*} tr=${run#*:}
    mkdir -p "$TMP/nt/runs/$name"
    awk -v tr="$tr" 'BEGIN {
        print "{\"step\":0,\"tokens\":0,\"loss\":5,\"grad_sq_small\":null,\"batch_small\":null}"
        for (i = 1; i <= 4; i++) { t = i <= 2 ? 1000 : tr
            printf "{\"step\":%d,\"tokens\":%d,\"loss\":4,\"grad_sq_small\":%.17g,\"grad_sq_big\":%.17g,", i, 4096 * i, 2 + t / 256, 2 + t / 2048
            printf "\"batch_small\":256,\"batch_big\":2048,\"noise_scale\":%d,\"noise_scale_groups\":{\"attn\":%d}}\n", 10 * i, tr }
    }' >"$TMP/nt/runs/$name/metrics.jsonl"
done
"$SCP_SRCDIR/tools/scp-exp-table" "$TMP/nt" -c noise-early,noise,noise-batch,noise-ema,noise-attn \
    -r "a=a1,a2" -R "a/b=a1,a2/b1,b2" >"$TMP/nt.md" 2>&1 &&
    grep -q '^| a | 2 | 500 ± 0 | 1750 ± 354 | 0.85 ± 0.17 | 40 ± 0 | 3500 ± 707 |$' "$TMP/nt.md" &&
    grep -q '^| a/b | 2 | 1.00 ± 0.00 | 3.00 ± 1.41 | 3.00 ± 1.41 | 1.00 ± 0.00 | 3.00 ± 1.41 |$' "$TMP/nt.md"
r=$?
ok $r "scp-exp-table: B_simple of each half of the steps, over the batch, the EMAs, ratios paired by seed"
[ $r -eq 0 ] || sed 's/^/# /' "$TMP/nt.md"
fails_with 2 "1 runs before the / and 2 after" "scp-exp-table refuses a ratio of unpaired runs" \
    "$SCP_SRCDIR/tools/scp-exp-table" "$TMP/nt" -c noise -r "a=a1" -R "x=a1/b1,b2"
check "scp-plot overlays the noise scale of several runs, runs of one label in one colour" \
    "$SCP_SRCDIR/tools/scp-plot" -p noise --no-groups -l A -l A -l B -o "$TMP/nt.png" \
    "$TMP/nt/runs/a1" "$TMP/nt/runs/a2" "$TMP/nt/runs/b1"
fails_with 2 "--no-groups is for the noise panel" "scp-plot: --no-groups with a per-group panel is a usage error" \
    "$SCP_SRCDIR/tools/scp-plot" -p grad-norm --no-groups -o "$TMP/x.png" "$TMP/nt/runs/a1"

# The demo's scripts follow the command-line conventions (tests/core/cli-conventions.sh checks the C programs):
# --help and --version on stdout, the package version, usage errors exit 2, every option in the man page.
ver=$(sed -n 's/^AC_INIT(\[scp\], \[\([^]]*\)\].*/\1/p' "$SCP_SRCDIR/configure.ac")
for t in scp-gen-corpus scp-train-bpe scp-new-model scp-recall scp-plot scp-demo-summary scp-exp-table; do
    "$SCP_SRCDIR/tools/$t" --help >"$TMP/h.out" 2>"$TMP/h.err" && grep -q -i usage "$TMP/h.out" && [ ! -s "$TMP/h.err" ]
    ok $? "$t --help prints to stdout and exits 0"
    "$SCP_SRCDIR/tools/$t" --version >"$TMP/v.out" 2>&1 && grep -q "^$t (scp) $ver\$" "$TMP/v.out"
    ok $? "$t --version says $t (scp) $ver"
    "$SCP_SRCDIR/tools/$t" --no-such-option >/dev/null 2>&1
    [ $? -eq 2 ]
    ok $? "$t: an unknown option exits 2"
    missing=
    for o in $(grep -oE -- '--[a-z][a-z0-9-]*' "$TMP/h.out" | sort -u); do
        esc=$(printf '%s' "$o" | sed 's/-/\\\\-/g')
        grep -q -- "$esc" "$SCP_SRCDIR/man/$t.1" || missing="$missing $o"
    done
    [ -z "$missing" ]
    ok $? "every option of $t is in man/$t.1${missing:+ (missing:$missing)}"
done
fails_with 1 "no <\|mask\|> token" "scp-new-model refuses a tokenizer without a mask token" \
    /usr/bin/python3 -c "
import json,subprocess,sys
t=json.load(open('$D/tok/tokenizer.json')); t['added_tokens']=t['added_tokens'][:2]
json.dump(t,open('$TMP/nomask.json','w'))
sys.exit(subprocess.run(['$SCP_SRCDIR/tools/scp-new-model','-t','$TMP/nomask.json','-o','$TMP/x']).returncode)"
printf '{"step":1,"tokens":10,"loss":1.0}\n{"step":2,' >"$TMP/m.jsonl"
check "scp-plot draws a metrics file whose last line is cut off" "$SCP_SRCDIR/tools/scp-plot" -o "$TMP/m.png" "$TMP/m.jsonl"
printf 'not json\n{"step":1}\n' >"$TMP/bad.jsonl"
fails_with 1 "bad.jsonl:1: not a JSON object" "scp-plot names the file and line of a bad metrics line" \
    "$SCP_SRCDIR/tools/scp-plot" -o "$TMP/b.png" "$TMP/bad.jsonl"
done_testing
