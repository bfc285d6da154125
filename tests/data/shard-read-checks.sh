#!/bin/sh
# shard-read-checks.sh: the programs that read a shard set check what they read. A token byte flipped in a
# shard (header intact) makes scp-train and scp-eval exit 1 naming the shard and "CRC mismatch"; a wrong size
# in manifest.json fails scp-shard --verify naming it; a val shard listed in the manifest but missing is named
# by scp-train --eval-every and scp-eval --split val (not taken for a set without a val split), and a set made
# without one still trains with a warning.
. "${SCP_SRCDIR:-$(dirname "$0")/../..}/tests/lib.sh"

MK="${SCP_BUILDDIR:-$SCP_SRCDIR}/tests/data/shard-mkstream"
for p in scp-shard scp-train scp-eval; do [ -x "$SCP_BIN/$p" ] || skip_all "$p not built"; done
[ -x "$MK" ] || skip_all "tests/data/shard-mkstream not built"

# One train shard and one val shard of 32-token sequences over a 64-id vocabulary; a 2-layer model.
"$MK" --docs 200 --vocab 64 --min 10 --max 60 --seed 1 -o "$TMP/a.tok" &&
scp-shard -q -L 32 -S 1000000 -s 1 -v 0.1 "$TMP/a.tok" -o "$TMP/good" &&
[ -f "$TMP/good/train-00000.shard" ] && [ -f "$TMP/good/val-00000.shard" ] && [ ! -e "$TMP/good/train-00001.shard" ]
ok $? "a shard set of one train and one val shard"
mkdir -p "$TMP/cfg" && cat >"$TMP/cfg/config.json" <<'EOF'
{"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64, "max_position_embeddings": 64,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 2, "mask_token_id": 63}
EOF
train() { scp-train -q --threads 1 --init "random:$TMP/cfg/config.json" --steps 2 --batch-tokens 128 "$@"; }
check "scp-train on the good set, evaluating on val" train --data "$TMP/good" --eval-every 1 -o "$TMP/run"
ck=$(ls -d "$TMP"/run/step-* 2>/dev/null | tail -1)
[ -n "$ck" ] && [ -f "$ck/config.json" ]
ok $? "it saved a checkpoint ($ck)"
check "scp-eval ppl on the good set" scp-eval ppl -m "$ck" -d "$TMP/good" --split train -t 1

# flip DIR FILE OFFSET: xor one byte (a token: the data after the 128-byte header).
flip() { /usr/bin/python3 -c '
import sys
p, o = sys.argv[1], int(sys.argv[2]); b = bytearray(open(p, "rb").read()); b[o] ^= 0x01; open(p, "wb").write(b)' "$1/$2" "$3"; }

cp -r "$TMP/good" "$TMP/flip" && flip "$TMP/flip" train-00000.shard 140
fails_with 1 "train-00000\.shard: CRC mismatch" "a flipped token: scp-train exits 1 naming the shard" \
    train --data "$TMP/flip" -o "$TMP/run-flip"
[ -z "$(ls -d "$TMP"/run-flip/step-* 2>/dev/null)" ]
ok $? "and saves no checkpoint trained on it"
fails_with 1 "train-00000\.shard: CRC mismatch" "scp-eval ppl exits 1 naming it" scp-eval ppl -m "$ck" -d "$TMP/flip" --split train -t 1
fails_with 1 "train-00000\.shard: CRC mismatch" "scp-eval elbo exits 1 naming it" scp-eval elbo -m "$ck" -d "$TMP/flip" --split train -t 1
check "the undamaged val split of the same set still evaluates" scp-eval ppl -m "$ck" -d "$TMP/flip" --split val -t 1
cp -r "$TMP/good" "$TMP/vflip" && flip "$TMP/vflip" val-00000.shard 140
fails_with 1 "val-00000\.shard: CRC mismatch" "a flipped token in the val shard: scp-train --eval-every exits 1 naming it" \
    train --data "$TMP/vflip" --eval-every 1 -o "$TMP/run-vflip"
fails_with 1 "train-00000\.shard.*CRC mismatch" "scp-shard --verify names it too" scp-shard --verify "$TMP/flip"

# Sizes recorded in manifest.json: one shard's byte count, then a split's.
# edit DIR PYTHON-STATEMENT: change manifest.json (m is the parsed object).
edit() { /usr/bin/python3 -c '
import json, sys
p = sys.argv[1] + "/manifest.json"; m = json.load(open(p)); exec(sys.argv[2]); json.dump(m, open(p, "w"), indent=2)' "$1" "$2"; }
cp -r "$TMP/good" "$TMP/size" && edit "$TMP/size" 'm["shards"][0]["bytes"] += 64'
fails_with 1 "train-00000\.shard: the file has [0-9]+ bytes, manifest.json says" "a wrong shard size in manifest.json: --verify names the shard" \
    scp-shard --verify "$TMP/size"
rm -rf "$TMP/size" && cp -r "$TMP/good" "$TMP/size" && edit "$TMP/size" 'm["splits"]["val"]["tokens"] -= 1'
fails_with 1 "manifest.json: splits\.val\.tokens is [0-9]+, the shard files hold" "a wrong split size: --verify names the entry" \
    scp-shard --verify "$TMP/size"
rm -rf "$TMP/size" && cp -r "$TMP/good" "$TMP/size" && edit "$TMP/size" 'm["totals"]["bytes"] *= 2'
fails_with 1 "manifest.json: totals\.bytes is" "a wrong total: --verify names it" scp-shard --verify "$TMP/size"

# A val shard listed but missing.
cp -r "$TMP/good" "$TMP/noval" && rm "$TMP/noval/val-00000.shard"
fails_with 1 "val-00000\.shard: cannot open" "a missing val shard: scp-train --eval-every exits 1 naming it" \
    train --data "$TMP/noval" --eval-every 1 -o "$TMP/run-noval"
if grep -q "no val split" "$TMP/fail.err"; then ok 1 "not reported as 'no val split'"; else ok 0 "not reported as 'no val split'"; fi
fails_with 1 "val-00000\.shard: cannot open" "scp-eval --split val exits 1 naming it" scp-eval ppl -m "$ck" -d "$TMP/noval" -t 1
check "the train split alone still trains" train --data "$TMP/noval" -o "$TMP/run-train-only"

# A set made without a val split: --eval-every is ignored with a warning.
scp-shard -q -L 32 -S 1000000 -s 1 "$TMP/a.tok" -o "$TMP/trainonly"
scp-train --threads 1 --init "random:$TMP/cfg/config.json" --steps 1 --batch-tokens 128 --data "$TMP/trainonly" \
    --eval-every 1 -o "$TMP/run-trainonly" 2>"$TMP/warn.err"
[ $? -eq 0 ] && grep -q "no val split: --eval-every ignored" "$TMP/warn.err"
ok $? "a set without a val split: --eval-every ignored with a warning, exit 0"

done_testing
