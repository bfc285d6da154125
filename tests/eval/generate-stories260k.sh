#!/bin/sh
# generate-stories260k.sh: scp-eval generate on the real stories260K (skips without ../shared/assets).
# - imported as a causal checkpoint, greedy AR decoding of "Once upon a time" (BOS first) gives the published
#   continuation (../shared/assets/README.md);
# - converted (a few steps of scp-train with the masked-diffusion objective, bidirectional attention), diffusion
#   sampling is deterministic for a seed, every order with and without --block leaves a complete canvas, and
#   infill puts tokens only where the <|mask|> tokens were.
. "$SCP_SRCDIR/tests/lib.sh"
need_assets models/stories260K.bin
need_assets models/tok512.bin
need_assets corpora/tinystories_val.txt
for p in scp-import scp-tokenize scp-shard scp-train scp-eval; do [ -x "$SCP_BIN/$p" ] || skip_all "$p not built"; done
A=$SCP_ASSETS
REF="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."

check "import stories260K.bin with tok512.bin" scp-import -q "$A/models/stories260K.bin" --tokenizer "$A/models/tok512.bin" -o "$TMP/ck"
scp-eval generate -m "$TMP/ck" -p "Once upon a time" -n 40 -j 1 > "$TMP/ar.txt" 2> "$TMP/ar.err"
ok $? "AR greedy generation runs"
case "$(cat "$TMP/ar.txt")" in "$REF"*) r=0 ;; *) r=1 ;; esac
ok $r "greedy continuation begins with the published one"
diag "$(cat "$TMP/ar.txt")"
scp-eval generate -m "$TMP/ck" -p "Once upon a time" -n 40 -j 1 --jsonl > "$TMP/ar.json"
# field FILE KEY: a value of the first JSON line.
field() { /usr/bin/python3 -c 'import json,sys; v=json.loads(open(sys.argv[1]).readline())[sys.argv[2]]; print(json.dumps(v) if isinstance(v, list) else v)' "$1" "$2"; }
[ "$(field "$TMP/ar.json" mode)" = ar ] && [ "$(field "$TMP/ar.json" text)" = "$(cat "$TMP/ar.txt")" ]
ok $? "--jsonl: mode ar, the same text"

# A converted checkpoint: a few masked-diffusion steps on TinyStories text.
head -c 100000 "$A/corpora/tinystories_val.txt" > "$TMP/small.txt"
check "tokenize some TinyStories with the checkpoint's tokenizer" scp-tokenize -q --model "$TMP/ck" --doc paragraph --bos -o "$TMP/s.tok" "$TMP/small.txt"
check "shard it" scp-shard -q -L 64 -v 0.05 -o "$TMP/sh" "$TMP/s.tok"
check "10 steps of scp-train (mdm, bidirectional)" scp-train -q --init "$TMP/ck" --data "$TMP/sh" -o "$TMP/run" --steps 10 --lr 2e-3 --batch-tokens 512 -j 1
D=$TMP/run/latest
grep -q '"is_causal": false' "$D/config.json"
ok $? "the trained checkpoint is bidirectional"
gen() { scp-eval generate -m "$D" -j 1 --jsonl "$@"; }
gen -p "Once upon a time" -n 24 --steps 12 --temperature 0.8 -s 11 > "$TMP/a.json" &&
    gen -p "Once upon a time" -n 24 --steps 12 --temperature 0.8 -s 11 > "$TMP/b.json" &&
    gen -p "Once upon a time" -n 24 --steps 12 --temperature 0.8 -s 12 > "$TMP/c.json"
ok $? "diffusion generation with seeds 11, 11, 12"
[ "$(field "$TMP/a.json" ids)" = "$(field "$TMP/b.json" ids)" ]
ok $? "same seed, same canvas"
[ "$(field "$TMP/a.json" ids)" != "$(field "$TMP/c.json" ids)" ]
ok $? "another seed, another canvas"
diag "diffusion: $(field "$TMP/a.json" text)"
# complete IDS_JSON N: no mask id (512) left, N ids.
complete() { /usr/bin/python3 -c 'import json,sys; ids=json.loads(sys.argv[1]); sys.exit(not (512 not in ids and len(ids) == int(sys.argv[2])))' "$1" "$2"; }
np=$(field "$TMP/a.json" prompt_tokens)
for order in low-confidence margin entropy random; do
    for block in 0 8; do
        if [ $block = 0 ]; then set -- ; else set -- --block $block; fi
        gen -p "Once upon a time" -n 24 --steps 12 --order $order "$@" > "$TMP/o.json"
        complete "$(field "$TMP/o.json" ids)" $((np + 24))
        ok $? "order $order${1:+ --block $block}: complete canvas ($(field "$TMP/o.json" steps) steps): $(field "$TMP/o.json" completion)"
    done
done
P="Once upon a time, there was a <|mask|> <|mask|> named Lily. She <|mask|> to play."
gen -p "$P" -n 0 --steps 3 --temperature 1 -s 4 > "$TMP/i.json"
ok $? "infill runs"
gen -p "$P" -n 0 --steps 1 --order random -s 3 > "$TMP/i2.json"
/usr/bin/python3 - "$TMP/i.json" "$TMP/i2.json" <<'PY'
import json, sys
a = json.loads(open(sys.argv[1]).readline())
b = json.loads(open(sys.argv[2]).readline())
filled = a["filled"]
diff = [i for i in range(len(a["ids"])) if a["ids"][i] != b["ids"][i]]
print("# filled positions %s; two fillings differ at %s" % (filled, diff))
print("# " + a["text"])
print("# " + b["text"])
pieces = ["Once upon a time, there was a", "named Lily. She", "to play."]
pos = [a["text"].find(p) for p in pieces]
good = (len(filled) == 3 and filled == b["filled"] and set(diff) <= set(filled) and 512 not in a["ids"]
        and len(a["ids"]) == a["prompt_tokens"] and all(a["ids"][i] != 512 for i in filled)
        and all(p >= 0 for p in pos) and pos == sorted(pos))
sys.exit(0 if good else 1)
PY
ok $? "infill: 3 mask positions filled, no mask left, the rest of the prompt kept (text pieces in order, ids equal elsewhere)"
done_testing
