#!/bin/sh
# eval-stories260k.sh: the imported real stories260K reproduces its published causal NLL, 1.4034 nats/token
# (within 0.001), on the reference protocol of ../shared/assets/README.md: paragraphs of tinystories_val.txt,
# BOS before each, no EOS, concatenated, windows of 513 tokens every 512, the first 60 windows (30,720
# predicted tokens). The windows come straight from the token stream (scp-eval ppl --stream --stride).
# Needs the assets (skips without them) and scp-import, scp-tokenize.
. "$SCP_SRCDIR/tests/lib.sh"
need_assets models/stories260K.bin
need_assets models/tok512.bin
need_assets models/tok512.model
need_assets corpora/tinystories_val.txt
for p in scp-import scp-tokenize scp-eval; do
    [ -x "$SCP_BIN/$p" ] || skip_all "$p not built"
done
A=$SCP_ASSETS

check "import stories260K.bin with tok512.bin" scp-import -q "$A/models/stories260K.bin" --tokenizer "$A/models/tok512.bin" -o "$TMP/ck"
check "tokenize the validation text (SentencePiece model, paragraphs, BOS)" \
    scp-tokenize -q -t "$A/models/tok512.model" --doc paragraph --bos -o "$TMP/val.tok" "$A/corpora/tinystories_val.txt"
check "scp-eval ppl on 60 windows of 513 every 512" \
    sh -c "scp-eval ppl --model '$TMP/ck' --stream '$TMP/val.tok' --seq-len 513 --stride 512 --max-seqs 60 > '$TMP/ppl.json'"
# figure FILE KEY: a value of scp-eval's JSON output.
figure() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
nll=$(figure "$TMP/ppl.json" nll)
diag "nll $nll nats/token, ppl $(figure "$TMP/ppl.json" ppl), $(figure "$TMP/ppl.json" seqs) windows"
[ "$(figure "$TMP/ppl.json" seqs)" = 60 ] && [ "$(figure "$TMP/ppl.json" tokens)" = 30720 ]
ok $? "60 windows, 30720 predicted tokens"
awk -v x="$nll" 'BEGIN { d = x - 1.4034; if (d < 0) d = -d; exit !(d < 0.001) }'
ok $? "NLL $nll within 0.001 of the published 1.4034"
# The same text tokenized by the checkpoint's own tokenizer (llama2.c tokenizer.bin plus the mask token)
# gives the same windows, so the same figure.
check "tokenize with the checkpoint's tokenizer" \
    scp-tokenize -q --model "$TMP/ck" --doc paragraph --bos -o "$TMP/val2.tok" "$A/corpora/tinystories_val.txt"
scp-eval ppl --model "$TMP/ck" --stream "$TMP/val2.tok" --seq-len 513 --stride 512 --max-seqs 60 > "$TMP/ppl2.json"
[ "$(figure "$TMP/ppl2.json" nll)" = "$nll" ]
ok $? "same figure from the checkpoint's tokenizer.bin ($(figure "$TMP/ppl2.json" nll))"
done_testing
