#!/bin/sh
# export-gguf-hf.sh: the GGUF files scp-export writes, read by an independent reader, Hugging Face's
# @huggingface/gguf (npm, installed at test time into a cache outside the repository; skips when npm or the
# network is unavailable): architecture, the diffusion metadata llama.cpp's runner reads, the vocabulary with
# the mask token, and the tensor list. A random Qwen2 model (dream) always; the real stories260K (llada) when
# ../shared/assets is there.
. "$SCP_SRCDIR/tests/lib.sh"
for p in scp-import scp-export; do [ -x "$SCP_BIN/$p" ] || skip_all "$p not built"; done
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || skip_all "node/npm not installed"
NPMDIR=${XDG_CACHE_HOME:-$HOME/.cache}/scp-npm
MOD=$NPMDIR/node_modules/@huggingface/gguf
if [ ! -f "$MOD/package.json" ]; then
    mkdir -p "$NPMDIR" && (cd "$NPMDIR" && timeout 300 npm install --no-audit --no-fund --silent @huggingface/gguf@0.4.6 >/dev/null 2>&1) ||
        skip_all "npm install @huggingface/gguf failed (offline?)"
fi
[ -f "$MOD/package.json" ] || skip_all "@huggingface/gguf not installed"
export GGUF_MODULE=$MOD
# sub TAP: run the node checker and renumber its lines into ours.
sub() {
    node "$SCP_SRCDIR/tests/convert/export-gguf-check.js" "$1" "$2" > "$TMP/sub.tap" 2>&1
    while IFS= read -r l; do
        case "$l" in
        "ok "*) ok 0 "${l#ok * - }" ;;
        "not ok "*) ok 1 "${l#not ok * - }" ;;
        "1.."*) ;;
        *) diag "$l" ;;
        esac
    done < "$TMP/sub.tap"
}

/usr/bin/python3 - "$TMP/src" <<'PY' || exit 1
import sys, os
sys.path.insert(0, os.path.join(os.environ["SCP_SRCDIR"], "tests"))
import importgen as g
g.make_hf(sys.argv[1], g.config("qwen2", vocab=48), "F32", seed=5, n_tokens=45)
PY
check "import a random Qwen2 model" scp-import -q "$TMP/src" -o "$TMP/ck"
check "export it bidirectional to GGUF (BF16 matrices)" scp-export -q --bidirectional --dtype bf16 -o "$TMP/q.gguf" "$TMP/ck"
cat > "$TMP/q.json" <<'J'
{"tag": "qwen2", "arch": "dream", "D": 16, "I": 24, "L": 2, "H": 4, "KV": 2, "hd": 4, "vocab": 48, "mask": 45,
 "tied": false, "qkv_bias": true, "mat_type": 30,
 "meta": {"dream.attention.causal": false, "diffusion.shift_logits": true, "tokenizer.ggml.mask_token_id": 45,
          "dream.block_count": 2, "dream.embedding_length": 16, "dream.attention.head_count": 4,
          "dream.attention.head_count_kv": 2, "dream.feed_forward_length": 24, "dream.context_length": 64,
          "dream.rope.freq_base": 10000, "dream.attention.layer_norm_rms_epsilon": 1e-6,
          "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.eos_token_id": 2, "general.file_type": 32}}
J
sub "$TMP/q.json" "$TMP/q.gguf"

if [ -e "$SCP_ASSETS/models/stories260K.bin" ] && [ -e "$SCP_ASSETS/models/tok512.bin" ]; then
    check "import stories260K" scp-import -q "$SCP_ASSETS/models/stories260K.bin" --tokenizer "$SCP_ASSETS/models/tok512.bin" -o "$TMP/s"
    check "export it bidirectional, no shift (LLaDA's convention), to GGUF" scp-export -q --bidirectional --no-shift -o "$TMP/s.gguf" "$TMP/s"
    cat > "$TMP/s.json" <<'J'
{"tag": "stories260K", "arch": "llada", "D": 64, "I": 172, "L": 5, "H": 8, "KV": 4, "hd": 8, "vocab": 513, "mask": 512,
 "tied": true, "qkv_bias": false, "mat_type": 0,
 "meta": {"llada.attention.causal": false, "diffusion.shift_logits": false, "tokenizer.ggml.mask_token_id": 512,
          "llada.block_count": 5, "llada.embedding_length": 64, "llada.feed_forward_length": 172,
          "llada.attention.head_count": 8, "llada.attention.head_count_kv": 4, "llada.rope.dimension_count": 8,
          "llada.context_length": 512, "tokenizer.ggml.model": "llama", "tokenizer.ggml.bos_token_id": 1,
          "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.add_bos_token": true, "general.file_type": 0}}
J
    sub "$TMP/s.json" "$TMP/s.gguf"
else
    diag "stories260K not found under $SCP_ASSETS: only the random model"
fi
done_testing
