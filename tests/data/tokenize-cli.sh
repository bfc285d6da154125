#!/bin/sh
# tokenize-cli.sh: scp-tokenize as a command: inputs (plain, gzip, tar, tar.gz, zip, JSONL, stdin), document
# modes, token stream and id output, --decode, identical output for any -j, malformed inputs (message naming
# the file, member and line; exit 1; --skip-bad counts and goes on), CLI conventions, man pages.
# Runs on a small llama2.c tokenizer.bin that the test writes, so it needs no assets.
. "${SCP_SRCDIR:-$(dirname "$0")/../..}/tests/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || skip_all "no /usr/bin/python3 to write the test tokenizer"
TOK=$TMP/tok.bin
"$PY" - "$TOK" <<'EOF'
import struct, sys
pieces = [("<unk>", 0.0), ("\n<s>\n", 0.0), ("\n</s>\n", 0.0)] + [("<0x%02X>" % b, 0.0) for b in range(256)]
chars = " abcdefghijklmnopqrstuvwxyzTOHW.,!'"
pieces += [(c, -100.0) for c in chars]
merged = [" t", "th", "he", " the", " a", "an", " an", "nd", " and", "in", "ing", " w", "as", " was", "On", "ce", "Once",
          " u", "up", "on", " upon", " ti", "me", " time", "re", "er", " there"]
pieces += [(m, -float(i)) for i, m in enumerate(merged)]
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<I", 16))
    for s, sc in pieces:
        b = s.encode()
        f.write(struct.pack("<fi", sc, len(b)) + b)
EOF

check "--help exits 0" scp-tokenize --help
groff -man -Tascii -P-c "$SCP_SRCDIR/man/scp-tokenize.1" 2>/dev/null | sed 's/.\x08//g' > "$TMP/man.txt"
for o in --model --tokenizer --output --format --doc --input-format --field --bos --eos --no-special --decode \
         --skip-special --threads --skip-bad --quiet --help --version; do
    grep -q -- "$o" "$TMP/check.out" || { echo "# --help lacks $o"; false; }
    ok $? "--help documents $o"
    grep -q -- "$o" "$TMP/man.txt" || { echo "# man page lacks $o"; false; }
    ok $? "man page documents $o"
done
check "--version exits 0" scp-tokenize --version
fails_with 2 "exactly one of" "no tokenizer: usage error" scp-tokenize
fails_with 2 "--doc must be" "bad --doc: usage error" scp-tokenize -t "$TOK" --doc words
fails_with 2 "threads" "bad --threads: usage error" scp-tokenize -t "$TOK" -j x
check "man pages pass groff -ww" sh -c "groff -ww -z -man '$SCP_SRCDIR/man/scp-tokenize.1' 2>&1 | grep . && exit 1; groff -ww -z -man '$SCP_SRCDIR/man/scp-tokens.5' 2>&1 | grep . && exit 1; exit 0"

# Documents.
printf 'Once upon a time there was an ant.\n\nThe ant was in the hat,\nwith the cat!\n\n\nOnce upon a time.\n' > "$TMP/a.txt"
printf 'What the hat was.\nHow the ant went on.\n' > "$TMP/b.txt"
scp-tokenize -t "$TOK" -q --format ids "$TMP/a.txt" "$TMP/b.txt" > "$TMP/lines.ids"
n=$(wc -l < "$TMP/lines.ids"); [ "$n" -eq 6 ]; ok $? "--doc line: 6 non-empty lines -> 6 documents ($n)"
n=$(scp-tokenize -t "$TOK" -q --format ids --doc paragraph "$TMP/a.txt" | wc -l); [ "$n" -eq 3 ]; ok $? "--doc paragraph: 3 paragraphs ($n)"
n=$(scp-tokenize -t "$TOK" -q --format ids --doc file "$TMP/a.txt" "$TMP/b.txt" | wc -l); [ "$n" -eq 2 ]; ok $? "--doc file: 2 files ($n)"
first=$(head -1 "$TMP/lines.ids")
[ "$first" = "$(echo 'Once upon a time there was an ant.' | scp-tokenize -t "$TOK" -q --format ids)" ]; ok $? "stdin '-' by default"
[ "$(echo 'Once' | scp-tokenize -t "$TOK" -q --format ids --bos --eos)" = "1 $(echo Once | scp-tokenize -t "$TOK" -q --format ids) 2" ]
ok $? "--bos/--eos wrap each document in 1 ... 2"

# Containers: the same documents through gzip, tar, tar.gz, zip, JSONL and JSONL.gz give the same ids.
cat "$TMP/a.txt" "$TMP/b.txt" > "$TMP/ab.txt"
gzip -c "$TMP/ab.txt" > "$TMP/ab.txt.gz"
(cd "$TMP" && tar cf ab.tar a.txt b.txt && tar czf ab.tar.gz a.txt b.txt)
"$PY" - "$TMP" <<'EOF'
import json, sys, zipfile, gzip
d = sys.argv[1]
with zipfile.ZipFile(d + "/ab.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.write(d + "/a.txt", "a.txt"); z.write(d + "/b.txt", "b.txt")
lines = [l for l in open(d + "/ab.txt").read().split("\n") if l]
with open(d + "/ab.jsonl", "w") as f:
    for l in lines: f.write(json.dumps({"id": 1, "body": l, "text": l}) + "\n")
with gzip.open(d + "/ab.jsonl.gz", "wt") as f:
    for l in lines: f.write(json.dumps({"text": l}) + "\n")
with open(d + "/bad.jsonl", "w") as f:
    f.write(json.dumps({"text": lines[0]}) + "\n{not json\n" + json.dumps({"title": "x"}) + "\n" + json.dumps({"text": lines[1]}) + "\n")
EOF
for f in ab.txt ab.txt.gz ab.tar ab.tar.gz ab.zip ab.jsonl ab.jsonl.gz; do
    scp-tokenize -t "$TOK" -q --format ids "$TMP/$f" > "$TMP/c.ids" 2> "$TMP/c.err"
    cmp -s "$TMP/c.ids" "$TMP/lines.ids"; ok $? "$f gives the same documents"
    [ -s "$TMP/c.err" ] && sed 's/^/# /' "$TMP/c.err"
done
scp-tokenize -t "$TOK" -q --format ids --field body "$TMP/ab.jsonl" | cmp -s - "$TMP/lines.ids"; ok $? "--field body"
if command -v zstd >/dev/null 2>&1; then
    (cd "$TMP" && tar cf - a.txt b.txt | zstd -q -c > ab.tar.zst)
    scp-tokenize -t "$TOK" -q --format ids "$TMP/ab.tar.zst" | cmp -s - "$TMP/lines.ids"; ok $? "ab.tar.zst gives the same documents"
fi
cat "$TMP/ab.txt.gz" | scp-tokenize -t "$TOK" -q --format ids - | cmp -s - "$TMP/lines.ids"; ok $? "gzip through a pipe"

# Token stream, decode, round trip, pipes.
check "token stream to a file" scp-tokenize -t "$TOK" -q --bos -o "$TMP/ab.tok" "$TMP/ab.txt"
head -c 8 "$TMP/ab.tok" | od -c | head -1 | grep -q 'S   C   P   T   O   K   S  \\0'; ok $? "stream starts with the magic SCPTOKS"
scp-tokenize -t "$TOK" -q --decode "$TMP/ab.tok" > "$TMP/back.txt"
grep -v '^$' "$TMP/ab.txt" | cmp -s - "$TMP/back.txt"; ok $? "--decode gives the lines back"
scp-tokenize -t "$TOK" -q "$TMP/ab.txt" | scp-tokenize -t "$TOK" -q --decode - | cmp -s - "$TMP/back.txt"; ok $? "encode | decode through a pipe"
scp-tokenize -t "$TOK" -q --decode "$TMP/lines.ids" | cmp -s - "$TMP/back.txt"; ok $? "--decode of id lines"
echo "5 99999" > "$TMP/badid.ids"
fails_with 1 "badid.ids:1: '99999' is not a token id" "--decode: an id outside the vocabulary names file and line" \
    scp-tokenize -t "$TOK" --decode "$TMP/badid.ids"
{ cat "$TOK"; printf '\000\000\000\000\003\000\000\000xyz'; } > "$TMP/tok2.bin"
fails_with 1 "ab.tok: tokenized with another tokenizer .* than .*tok2.bin" "--decode refuses a stream of another tokenizer (hash)" \
    scp-tokenize -t "$TMP/tok2.bin" --decode "$TMP/ab.tok"
head -c 100 "$TMP/ab.tok" > "$TMP/cut.tok"
fails_with 1 "cut.tok: truncated" "--decode of a truncated stream" scp-tokenize -t "$TOK" --decode "$TMP/cut.tok"

# Identical output for any number of threads, over several batches.
"$PY" -c "
import random
r = random.Random(7)
w = 'Once upon a time there was an ant and the hat with the cat what how'.split()
with open('$TMP/big.txt', 'w') as f:
    for i in range(140000): f.write(' '.join(r.choice(w) for _ in range(r.randint(1, 12))) + '\n')
"
scp-tokenize -t "$TOK" -q -j 1 -o "$TMP/j1.tok" "$TMP/big.txt"
for j in 2 3 8; do
    scp-tokenize -t "$TOK" -q -j $j -o "$TMP/jn.tok" "$TMP/big.txt"; cmp -s "$TMP/j1.tok" "$TMP/jn.tok"; ok $? "-j $j output identical to -j 1"
done
scp-tokenize -t "$TOK" -j 2 -o "$TMP/j1.tok" "$TMP/big.txt" 2> "$TMP/sum.err"
grep -q '140000 documents' "$TMP/sum.err"; ok $? "summary line on stderr: $(cat "$TMP/sum.err")"

# On a terminal: the binary stream is refused on stdout, and progress is shown on stderr.
if command -v script >/dev/null 2>&1; then
    script -qec "scp-tokenize -t '$TOK' '$TMP/a.txt'" "$TMP/tty.log" > /dev/null 2>&1; r=$?
    [ $r -eq 1 ] && grep -q 'refusing to write binary data to a terminal' "$TMP/tty.log"; ok $? "binary stream refused on a terminal"
    script -qec "scp-tokenize -t '$TOK' -j 2 -o '$TMP/tty.tok' '$TMP/big.txt'" "$TMP/tty2.log" > /dev/null 2>&1
    grep -q 'MB, [0-9]* documents, [0-9]* tokens, [0-9.]* MB/s' "$TMP/tty2.log"; ok $? "progress line (MB, documents, tokens, MB/s) on a terminal"
fi

# Malformed inputs.
fails_with 1 "bad.jsonl: line 2: not JSON" "JSONL line that is not JSON: file and line" scp-tokenize -t "$TOK" -o "$TMP/x.tok" "$TMP/bad.jsonl"
[ ! -e "$TMP/x.tok" ]; ok $? "nothing left under the output name after a failure"
scp-tokenize -t "$TOK" --format ids --skip-bad "$TMP/bad.jsonl" > "$TMP/sk.ids" 2> "$TMP/sk.err"; r=$?
[ $r -eq 0 ] && [ "$(wc -l < "$TMP/sk.ids")" -eq 2 ] && grep -q 'skipped 2 bad records' "$TMP/sk.err"; ok $? "--skip-bad keeps 2 good lines, counts 2 bad: $(tail -1 "$TMP/sk.err")"
"$PY" -c "
import json; open('$TMP/nofield.jsonl','w').write(json.dumps({'title': 'x'}) + '\n')"
fails_with 1 'nofield.jsonl: line 1: no "text" field' "JSONL line without the field: file and line" scp-tokenize -t "$TOK" -o "$TMP/x.tok" "$TMP/nofield.jsonl"
head -c 60 "$TMP/ab.txt.gz" > "$TMP/cut.txt.gz"
fails_with 1 "cut.txt.gz" "truncated gzip: exit 1 naming the file" scp-tokenize -t "$TOK" -o "$TMP/x.tok" "$TMP/cut.txt.gz"
"$PY" -c "
d = bytearray(open('$TMP/ab.txt.gz','rb').read()); d[20] ^= 0xFF; d[25] ^= 0xFF; open('$TMP/corrupt.txt.gz','wb').write(bytes(d))"
fails_with 1 "corrupt.txt.gz" "corrupt gzip: exit 1 naming the file" scp-tokenize -t "$TOK" -o "$TMP/x.tok" "$TMP/corrupt.txt.gz"
head -c 700 "$TMP/ab.tar" > "$TMP/cut.tar"
fails_with 1 "cut.tar: member a.txt" "truncated tar: exit 1 naming the member" scp-tokenize -t "$TOK" --doc file -o "$TMP/x.tok" "$TMP/cut.tar"
scp-tokenize -t "$TOK" --format ids --skip-bad "$TMP/corrupt.txt.gz" "$TMP/b.txt" > "$TMP/sk2.ids" 2> "$TMP/sk2.err"; r=$?
tail -2 "$TMP/lines.ids" > "$TMP/b.ids"
[ $r -eq 0 ] && grep -q 'skipped 1 bad record' "$TMP/sk2.err" && tail -2 "$TMP/sk2.ids" | cmp -s - "$TMP/b.ids"
ok $? "--skip-bad goes on past a corrupt gzip to the next file: $(tail -1 "$TMP/sk2.err")"
(cd "$TMP" && tar cf two.tar b.txt a.txt && head -c 1300 two.tar > cut2.tar)
scp-tokenize -t "$TOK" --format ids --skip-bad "$TMP/cut2.tar" > "$TMP/sk3.ids" 2> "$TMP/sk3.err"; r=$?
[ $r -eq 0 ] && grep -q 'skipped 1 bad record$' "$TMP/sk3.err" && cmp -s "$TMP/sk3.ids" "$TMP/b.ids"
ok $? "--skip-bad on a truncated tar: the whole first member, the second counted once: $(tail -1 "$TMP/sk3.err")"
fails_with 1 "nothere.txt" "missing input file" scp-tokenize -t "$TOK" -o "$TMP/x.tok" "$TMP/nothere.txt"
printf '{"model": {' > "$TMP/broken.json"
fails_with 1 "broken.json" "broken tokenizer.json: exit 1 naming it" scp-tokenize -t "$TMP/broken.json" "$TMP/a.txt"
# A Split pattern that backtracks without end stops at PCRE2's match limit: exit 1 naming the input and the
# document, no output (not the rest of the text as one piece).
"$PY" - "$TMP/backtrack.json" <<'EOF'
import json, sys
vocab = {c: i for i, c in enumerate("abc")}
json.dump({"model": {"type": "BPE", "vocab": vocab, "merges": []}, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a+)+[bc]"}, "behavior": "Isolated", "invert": False},
           "decoder": None}, open(sys.argv[1], "w"))
EOF
printf 'abc\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n' >"$TMP/backtrack.txt"
fails_with 1 "backtrack.txt: document 2: the pre-tokenizer's Split pattern failed at byte 0 of a 40-byte text: match limit" \
    "a Split pattern at PCRE2's match limit: exit 1 naming the input and the document" \
    scp-tokenize -t "$TMP/backtrack.json" -o "$TMP/backtrack.tok" "$TMP/backtrack.txt"
[ ! -e "$TMP/backtrack.tok" ]
ok $? "... and no output"
# Deprecated letters still work, with a warning naming the new spelling, and give the same output.
scp-tokenize -t "$TOK" -q -f ids -d paragraph -i text "$TMP/a.txt" >"$TMP/old.ids" 2>"$TMP/old.err"; r=$?
scp-tokenize -t "$TOK" -q --format ids --doc paragraph --input-format text "$TMP/a.txt" >"$TMP/new.ids"
[ $r -eq 0 ] && cmp -s "$TMP/old.ids" "$TMP/new.ids" && [ "$(grep -c 'deprecated' "$TMP/old.err")" -eq 3 ] &&
    grep -q -- "-f is deprecated.*use --format" "$TMP/old.err"
ok $? "-f -d -i: the output of --format --doc --input-format, 3 warnings"
scp-tokenize -t "$TOK" -q --decode -S "$TMP/ab.tok" 2>"$TMP/old.err" | cmp -s - "$TMP/back.txt" &&
    grep -q -- "-S is deprecated.*use --skip-special" "$TMP/old.err"
ok $? "-S is --skip-special, with a warning"
scp-tokenize -t "$TOK" --format ids -s "$TMP/bad.jsonl" 2>"$TMP/old.err" | cmp -s - "$TMP/sk.ids" &&
    grep -q -- "-s is deprecated.*use --skip-bad" "$TMP/old.err" && grep -q 'skipped 2 bad records' "$TMP/old.err"
ok $? "-s is --skip-bad, with a warning"

# Outputs. An existing device node or FIFO is written in place and stays what it was.
scp-tokenize -t "$TOK" -q -o "$TMP/ref.tok" "$TMP/ab.txt"
if mknod "$TMP/null" c 1 3 2>/dev/null && [ -c "$TMP/null" ] && echo x 2>/dev/null >"$TMP/null"; then
    check "-o onto a character device (a /dev/null twin)" scp-tokenize -t "$TOK" -q -o "$TMP/null" "$TMP/ab.txt"
    [ -c "$TMP/null" ] && [ -z "$(ls -d "$TMP"/null.tmp-* 2>/dev/null)" ]
    ok $? "... it is still a character device, and no temporary is left beside it"
else
    diag "mknod not allowed here: the FIFO below stands in for a device"
fi
mkfifo "$TMP/fifo"
cat "$TMP/fifo" >"$TMP/fifo.out" &
reader=$!
scp-tokenize -t "$TOK" -q -o "$TMP/fifo" "$TMP/ab.txt"; r=$?
[ $r -eq 0 ] || : >"$TMP/fifo"   # a run that failed before opening it leaves the reader waiting for a writer
wait $reader
[ $r -eq 0 ] && [ -p "$TMP/fifo" ] && cmp -s "$TMP/fifo.out" "$TMP/ref.tok"
ok $? "-o onto a FIFO with a reader: the stream goes through it, and it is still a FIFO"

# An output that is an input, or the tokenizer, is a usage error, and the file is left as it was.
cp "$TMP/a.txt" "$TMP/t.txt"
fails_with 2 "the output is the input" "-o onto the input text is refused" scp-tokenize -t "$TOK" -o "$TMP/t.txt" "$TMP/t.txt"
cmp -s "$TMP/a.txt" "$TMP/t.txt"; ok $? "... and the input is untouched"
fails_with 2 "the output is the input" "--decode -o onto the decoded stream is refused" \
    scp-tokenize -t "$TOK" --decode -o "$TMP/ref.tok" "$TMP/ref.tok"
cp "$TOK" "$TMP/tok-copy.bin"
fails_with 2 "the output is the input" "-o onto the tokenizer is refused" scp-tokenize -t "$TOK" -o "$TOK" "$TMP/a.txt"
cmp -s "$TOK" "$TMP/tok-copy.bin"; ok $? "... and the tokenizer is untouched"
mkdir -p "$TMP/ck"
cp "$TOK" "$TMP/ck/tokenizer.bin"
cp "$TMP/a.txt" "$TMP/ck/t.txt"
fails_with 2 "the output" "-m CKPT -o onto a file inside the checkpoint is refused" scp-tokenize -m "$TMP/ck" -o "$TMP/ck/t.txt" "$TMP/ck/t.txt"
cmp -s "$TMP/a.txt" "$TMP/ck/t.txt"; ok $? "... and the file is untouched"
if [ -w /dev/full ]; then
    fails_with 1 "write error" "id lines to a full disk: exit 1 with a message" \
        sh -c 'scp-tokenize -t "$1" -q --format ids "$2" >/dev/full' sh "$TOK" "$TMP/big.txt"
fi
done_testing
