#!/bin/sh
# export-llamacpp.sh: the GGUF files scp-export writes, loaded and run by llama.cpp itself (npm node-llama-cpp
# with its prebuilt CPU binary, installed at test time into a cache outside the repository; skips when npm
# or the network is unavailable).
# - llama.cpp loads the diffusion exports of random Llama, Qwen2, Qwen3 and Qwen3-MoE models under the
#   architectures its diffusion runner knows (llada, dream, rnd1; qwen3), and the causal exports (llama,
#   qwen2, qwen3, qwen3moe): its loader checks the hyperparameters and every tensor's name and shape;
# - its greedy continuation of the causal Llama, Qwen2 and Qwen3 exports equals scp-eval generate's (same
#   prompt ids, no BOS), so the tensors mean the same thing to both (q/k order, biases, q/k norms);
# - llama.cpp runs the llada / dream exports with non-causal attention, and at a final <|mask|> picks the token
#   scp's one-step diffusion commits there;
# - with ../shared/assets: the exported stories260K gives the published greedy continuation in llama.cpp, and
#   llama.cpp's tokenizer, reading the exported vocabulary, gives the ids ours gives.
. "$SCP_SRCDIR/tests/lib.sh"
for p in scp-import scp-export scp-eval; do [ -x "$SCP_BIN/$p" ] || skip_all "$p not built"; done
# What this test adds is llama.cpp's reading of the files, the same in every build; under the sanitizers the
# exporter runs in export-roundtrip.py and moe-scp.sh, and llama.cpp's runs would only cost minutes.
sanitized && skip_all "sanitizer build: llama.cpp's reading of the exports is checked by the plain build"
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || skip_all "node/npm not installed"
[ "$(uname -m)" = x86_64 ] || skip_all "node-llama-cpp's prebuilt binary used here is for x86_64"
NPMDIR=${XDG_CACHE_HOME:-$HOME/.cache}/scp-npm-llama
MOD=$NPMDIR/node_modules/node-llama-cpp
if [ ! -f "$MOD/dist/index.js" ] || [ ! -d "$NPMDIR/node_modules/@node-llama-cpp/linux-x64" ]; then
    mkdir -p "$NPMDIR" && (cd "$NPMDIR" && timeout 300 npm install --no-audit --no-fund --silent --omit=optional \
        node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1 >/dev/null 2>&1) ||
        skip_all "npm install node-llama-cpp failed (offline?)"
fi
[ -f "$MOD/dist/index.js" ] || skip_all "node-llama-cpp not installed"
export NODE_LLAMA_CPP=$MOD
lcpp() { node "$SCP_SRCDIR/tests/convert/export-llamacpp.mjs" "$@" 2> "$TMP/lcpp.err"; }
field() { /usr/bin/python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(json.dumps(v) if isinstance(v, list) else v)' "$1" "$2"; }
# A first load tells whether the binary runs here at all.
/usr/bin/python3 - "$TMP" <<'PY' || exit 1
import sys, os
sys.path.insert(0, os.path.join(os.environ["SCP_SRCDIR"], "tests"))
import importgen as g
for a in ("llama", "qwen2", "qwen3", "qwen3_moe"):
    g.make_hf(os.path.join(sys.argv[1], "src_" + a), g.config(a, vocab=48), "F32", seed=3, n_tokens=45)
PY
scp-import -q "$TMP/src_llama" -o "$TMP/ck_llama" && scp-export -q -o "$TMP/c_llama.gguf" "$TMP/ck_llama" || exit 1
lcpp "$TMP/c_llama.gguf" > /dev/null || skip_all "llama.cpp (node-llama-cpp) does not run here: $(tail -1 "$TMP/lcpp.err")"

for a in llama qwen2 qwen3 qwen3_moe; do
    case $a in llama) d=llada c=llama ;; qwen2) d=dream c=qwen2 ;; qwen3) d=qwen3 c=qwen3 ;; qwen3_moe) d=rnd1 c=qwen3moe ;; esac
    [ -d "$TMP/ck_$a" ] || scp-import -q "$TMP/src_$a" -o "$TMP/ck_$a"
    scp-export -q --force --bidirectional -o "$TMP/b_$a.gguf" "$TMP/ck_$a" && out=$(lcpp "$TMP/b_$a.gguf")
    ok $? "$a: llama.cpp loads the bidirectional export"
    [ "$(field "$out" arch)" = "$d" ]
    ok $? "$a: ... as architecture $d"
    scp-export -q --force -o "$TMP/c_$a.gguf" "$TMP/ck_$a" && out=$(lcpp "$TMP/c_$a.gguf" "ab a" 4)
    ok $? "$a: llama.cpp loads and runs the causal export ($c)"
    [ "$(field "$out" arch)" = "$c" ]
    ok $? "$a: ... as architecture $c"
    [ "$a" = qwen3_moe ] && continue   # scp's model driver does not run MoE yet
    ours=$(scp-eval generate -m "$TMP/ck_$a" -p "ab a" -n 4 --no-bos --at-eos ignore -j 1 --jsonl)
    ids=$(field "$ours" ids)
    [ "$(field "$out" ids)" = "[2, 0]" ] && [ "$(/usr/bin/python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])[:2]))' "$ids")" = "[2, 0]" ]
    ok $? "$a: llama.cpp and scp tokenize the prompt alike ($(field "$out" ids))"
    [ "$(field "$out" text)" = "$(field "$ours" completion)" ]
    ok $? "$a: llama.cpp's greedy continuation '$(field "$out" text)' is scp-eval generate's '$(field "$ours" completion)'"
done

# Non-causal attention: a bidirectional export without shift, read by llama.cpp as llada / dream, picks at a
# final <|mask|> the token scp's one-step diffusion commits there (the argmax of that position's logits under
# bidirectional attention); the causal export must disagree on at least one prompt, or nothing was shown.
for a in llama qwen2; do
    scp-export -q --force --bidirectional --no-shift -o "$TMP/n_$a.gguf" "$TMP/ck_$a" || ok 1 "$a: export without shift"
    same=0 diff_causal=0 total=0
    for p in "a" "ab a" "abab" "b" "ba" "abba b"; do
        total=$((total + 1))
        l=$(field "$(lcpp "$TMP/n_$a.gguf" "$p<|mask|>" first)" first)
        lc=$(field "$(lcpp "$TMP/c_$a.gguf" "$p<|mask|>" first)" first)
        o=$(scp-eval generate -m "$TMP/ck_$a" --mode diffusion --no-shift -p "$p<|mask|>" -n 0 --steps 1 --no-bos -j 1 --jsonl |
            /usr/bin/python3 -c 'import json,sys; o=json.load(sys.stdin); print(o["ids"][o["filled"][0]])')
        [ -n "$l" ] && [ "$l" = "$o" ] && same=$((same + 1))
        [ "$l" != "$lc" ] && diff_causal=$((diff_causal + 1))
    done
    [ $same = $total ]
    ok $? "$a: at a final mask llama.cpp (non-causal) and scp-eval generate (one diffusion step) agree on $same of $total prompts"
    [ $diff_causal -gt 0 ]
    ok $? "$a: ... and the causal export differs on $diff_causal of them (attention is really non-causal in llama.cpp)"
done

if [ -e "$SCP_ASSETS/models/stories260K.bin" ] && [ -e "$SCP_ASSETS/models/tok512.bin" ]; then
    REF=", there was a little girl named Lily. She loved to play outside in the park."
    check "import stories260K" scp-import -q "$SCP_ASSETS/models/stories260K.bin" --tokenizer "$SCP_ASSETS/models/tok512.bin" -o "$TMP/s"
    check "export it to GGUF" scp-export -q -o "$TMP/s.gguf" "$TMP/s"
    out=$(lcpp "$TMP/s.gguf" "Once upon a time" 30)
    ok $? "llama.cpp runs the exported stories260K"
    case "$(field "$out" text)" in "$REF"*) r=0 ;; *) r=1 ;; esac
    ok $r "llama.cpp's greedy continuation is the published one: $(field "$out" text)"
    T="Once upon a time, there was a little girl named Lily. She loved to play outside."
    ours=$(scp-eval generate -m "$TMP/s" -p "$T" -n 0 --no-bos -j 1 --jsonl)
    [ "$(field "$(lcpp "$TMP/s.gguf" "$T")" ids)" = "$(field "$ours" ids)" ]
    ok $? "llama.cpp's tokenizer on the exported vocabulary gives our ids"
    check "export the converted (bidirectional, no shift) checkpoint" scp-export -q --bidirectional --no-shift -o "$TMP/d.gguf" "$TMP/s"
    [ "$(field "$(lcpp "$TMP/d.gguf")" arch)" = llada ]
    ok $? "llama.cpp loads it as llada"
else
    diag "stories260K not found under $SCP_ASSETS: random models only"
fi
done_testing
