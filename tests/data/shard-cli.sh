#!/bin/sh
# shard-cli.sh: scp-shard from the command line: same inputs and seed give the same bytes whatever -j, a pipe
# gives the same set as a file, --verify catches a flipped byte and a truncated shard (exit 1 naming it),
# streams of different tokenizers are refused naming both, outputs are atomic (--force to replace), --info.
. "${SCP_SRCDIR:-$(dirname "$0")/../..}/tests/lib.sh"

MK="${SCP_BUILDDIR:-$SCP_SRCDIR}/tests/data/shard-mkstream"
[ -x "$SCP_BIN/scp-shard" ] || skip_all "scp-shard not built"
[ -x "$MK" ] || skip_all "tests/data/shard-mkstream not built"

"$MK" --docs 400 --vocab 3000 --min 0 --max 500 --seed 1 -o "$TMP/a.tok" &&
"$MK" --docs 300 --vocab 3000 --seed 2 -o "$TMP/b.tok" &&
"$MK" --docs 10 --vocab 3000 --seed 3 --hash 77 -o "$TMP/other.tok"
ok $? "generate token streams"

check "shard two streams, -j 1" scp-shard -q -L 128 -S 5000 -s 3 -v 0.1 -j 1 "$TMP/a.tok" "$TMP/b.tok" -o "$TMP/s1"
check "the same with -j 2" scp-shard -q -L 128 -S 5000 -s 3 -v 0.1 -j 2 "$TMP/a.tok" "$TMP/b.tok" -o "$TMP/s2"
diff -r "$TMP/s1" "$TMP/s2" >/dev/null
ok $? "same inputs and seed give byte-identical shard sets whatever -j"
check "another seed" scp-shard -q -L 128 -S 5000 -s 4 -v 0.1 "$TMP/a.tok" "$TMP/b.tok" -o "$TMP/s3"
! diff -r "$TMP/s1" "$TMP/s3" >/dev/null
ok $? "another seed gives other bytes"
n=$(ls "$TMP/s1" | grep -c '^train-.*\.shard$')
[ "$n" -gt 3 ] && [ -f "$TMP/s1/val-00000.shard" ] && [ ! -e "$TMP/s1/.spool" ]
ok $? "several train shards and a val shard, no leftovers ($n train shards)"

cat "$TMP/a.tok" | scp-shard -q -L 128 -S 5000 -s 3 -o "$TMP/p1" &&
scp-shard -q -L 128 -S 5000 -s 3 "$TMP/a.tok" -o "$TMP/p2" &&
( for f in "$TMP"/p1/*.shard; do cmp -s "$f" "$TMP/p2/$(basename "$f")" || exit 1; done )
ok $? "a pipe on standard input gives the same shards as the file"

check "--verify a good set" scp-shard --verify "$TMP/s1"
scp-shard --info "$TMP/s1" >"$TMP/info.json" &&
/usr/bin/python3 -c '
import json, sys
i = json.load(open(sys.argv[1]))
t, v = i["splits"]["train"], i["splits"]["val"]
assert i["seq_len"] == 128 and i["vocab_size"] == 3000 and i["tokenizer_hash"] == "1234abcd5678ef00"
assert t["documents"] + v["documents"] == 700 and i["totals"]["tokens"] == t["tokens"] + v["tokens"]
assert t["sequences"] == -(-t["tokens"] // 128) and v["tokens"] >= 0.1 * i["totals"]["tokens"]
' "$TMP/info.json"
ok $? "--info prints a JSON summary with consistent counts"

cp -r "$TMP/s1" "$TMP/bad"
/usr/bin/python3 -c '
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[300] ^= 1; open(p, "wb").write(b)' "$TMP/bad/train-00002.shard"
fails_with 1 "train-00002.shard.*(checksum|corrupt)" "--verify catches a flipped bit, naming the shard" scp-shard --verify "$TMP/bad"
rm -rf "$TMP/bad" && cp -r "$TMP/s1" "$TMP/bad"
truncate -s -1 "$TMP/bad/train-00001.shard"
fails_with 1 "train-00001.shard.*truncated" "--verify catches a truncated shard, naming it" scp-shard --verify "$TMP/bad"
rm "$TMP/bad/train-00001.shard"
fails_with 1 "train-00001.shard: cannot open" "--verify catches a missing shard" scp-shard --verify "$TMP/bad"
fails_with 1 "other.tok.*different tokenizer.*a.tok" "streams of different tokenizers are refused, naming both" \
    scp-shard -q -L 128 "$TMP/a.tok" "$TMP/other.tok" -o "$TMP/mix"
[ ! -e "$TMP/mix" ] && [ -z "$(ls -d "$TMP"/mix.tmp-* 2>/dev/null)" ]
ok $? "nothing is left behind after a failure"
head -c 5000 "$TMP/b.tok" >"$TMP/cut.tok"
fails_with 1 "cut.tok.*truncated" "a truncated token stream is refused" scp-shard -q -L 128 "$TMP/cut.tok" -o "$TMP/cut"
# Damaged streams: 20 random single-byte changes, each refused with exit 1 (never a crash, never a shard set).
/usr/bin/python3 -c '
import random, sys
src = open(sys.argv[1], "rb").read()
r = random.Random(7)
for k in range(20):
    b = bytearray(src); i = r.randrange(len(b)); b[i] ^= 1 << r.randrange(8)
    open("%s/dmg%02d.tok" % (sys.argv[2], k), "wb").write(b)' "$TMP/b.tok" "$TMP"
bad=0
for f in "$TMP"/dmg*.tok; do
    scp-shard -q -L 128 "$f" -o "$TMP/dmg" 2>"$TMP/dmg.err"; r=$?
    { [ $r -eq 1 ] && grep -q "dmg" "$TMP/dmg.err" && [ ! -e "$TMP/dmg" ]; } || { bad=$((bad + 1)); diag "$f: exit $r: $(cat "$TMP/dmg.err")"; }
    rm -rf "$TMP/dmg"
done
[ $bad -eq 0 ]
ok $? "20 damaged token streams: each refused (exit 1, message naming it), nothing written"
cat "$TMP/a.tok" "$TMP/b.tok" >"$TMP/ab.tok"
fails_with 1 "ab.tok: data after the end" "two streams concatenated into one file are refused" scp-shard -q "$TMP/ab.tok" -o "$TMP/ab"
fails_with 1 "already exists" "an existing output is not replaced without --force" scp-shard -q -L 128 "$TMP/b.tok" -o "$TMP/s1"
check "--force replaces it" scp-shard -q -f -L 64 "$TMP/b.tok" -o "$TMP/s1"
grep -q '"seq_len": 64' "$TMP/s1/manifest.json"
ok $? "the replaced set is the new one"
fails_with 2 "not both" "--val-fraction with --val-tokens is a usage error" scp-shard -v 0.1 --val-tokens 100 "$TMP/b.tok" -o "$TMP/x"
fails_with 1 "would take" "a validation split of everything is refused" scp-shard -q --val-tokens 10G "$TMP/b.tok" -o "$TMP/x"
fails_with 2 "-V is --version" "-V N (the old --val-tokens letter) is a usage error, not a version and exit 0" \
    scp-shard -q -V 100 "$TMP/b.tok" -o "$TMP/x"
[ ! -e "$TMP/x" ]; ok $? "... and writes nothing"

# --info and --verify are flags; the shard set is the operand, before or after them; -i is --info's old letter.
scp-shard "$TMP/s1" --info >"$TMP/info2.json" && grep -q '"seq_len": 64' "$TMP/info2.json"
ok $? "the shard set operand may come before --info"
scp-shard -i "$TMP/s1" >"$TMP/info3.json" 2>"$TMP/i.err" && cmp -s "$TMP/info2.json" "$TMP/info3.json" &&
    grep -q "warning: -i is deprecated.*use --info" "$TMP/i.err"
ok $? "-i still works as --info, with a warning"
check "-c is --verify" scp-shard -q -c "$TMP/s1"
fails_with 2 "one shard set directory" "--info with two operands is a usage error" scp-shard --info "$TMP/s1" "$TMP/s2"
fails_with 2 "one shard set directory" "--verify with -o is a usage error" scp-shard --verify "$TMP/s1" -o "$TMP/x"
if [ -w /dev/full ]; then
    fails_with 1 "<stdout>: write error" "--info to a full disk: exit 1 with a message" sh -c 'scp-shard --info "$1" >/dev/full' sh "$TMP/s1"
fi

# An output that would destroy an input is a usage error, and the input is left as it was.
cp "$TMP/b.tok" "$TMP/in.tok"
sum=$(cksum <"$TMP/in.tok")
fails_with 2 "the output is the input" "-o onto an input stream is refused" scp-shard -q -f "$TMP/in.tok" -o "$TMP/in.tok"
[ -f "$TMP/in.tok" ] && [ "$(cksum <"$TMP/in.tok")" = "$sum" ]; ok $? "... and the stream is untouched"
mkdir -p "$TMP/holder" && cp "$TMP/b.tok" "$TMP/holder/b.tok"
fails_with 2 "lies inside the output directory" "-o onto a directory holding an input is refused" \
    scp-shard -q -f "$TMP/holder/b.tok" -o "$TMP/holder"
cmp -s "$TMP/b.tok" "$TMP/holder/b.tok"; ok $? "... and the stream in it is untouched"
fails_with 1 "not a shard set" "--verify of a directory that is not a shard set" scp-shard --verify "$TMP"

done_testing
