#!/bin/sh
# outputs.sh: where scp-remask, scp-import, scp-export and scp-shard write, against what could go wrong: an
# existing device node or FIFO is written in place and stays one; an output that would destroy an input is a
# usage error (exit 2) that leaves the input as it was; --force replaces only an output of the program's kind (a
# checkpoint, a shard set, a run directory: never a folder of the user's, nor a file where a directory goes); a run
# directory given as a checkpoint is refused with its checkpoint's name; a help, summary or example text that cannot be written (a
# full disk) is exit 1 with a message; the old option spellings still work, with a warning. (scp-tokenize's own
# cases are in tokenize-cli.sh, scp-shard's in shard-cli.sh.)
. "${SCP_SRCDIR:-$(dirname "$0")/../..}/tests/lib.sh"

MK="${SCP_BUILDDIR:-$SCP_SRCDIR}/tests/data/shard-mkstream"
for p in scp-tokenize scp-shard scp-remask scp-import scp-export scp-train scp-eval; do
    [ -x "$SCP_BIN/$p" ] || skip_all "$p not built"
done
[ -x "$MK" ] || skip_all "tests/data/shard-mkstream not built"

# A tree's files and their checksums, to see that nothing in it changed.
sums() { (cd "$1" && find . -type f | sort | xargs cksum); }

if [ -w /dev/full ]; then
    for p in scp-tokenize scp-shard scp-remask scp-import scp-export; do
        fails_with 1 "^$p: <stdout>: write error" "$p --help to a full disk: exit 1 with a message" sh -c "$p --help >/dev/full"
    done
fi

# ---- scp-remask ------------------------------------------------------------------------------------------------
"$MK" --docs 300 --vocab 3000 --seed 1 -o "$TMP/a.tok" && scp-shard -q -L 64 -v 0.1 -s 1 "$TMP/a.tok" -o "$TMP/S" &&
    scp-remask -q -d "$TMP/S" -M 3000 -s 2 -o "$TMP/ref.m"
ok $? "a shard set and its masked examples"
if mknod "$TMP/null" c 1 3 2>/dev/null && [ -c "$TMP/null" ] && echo x 2>/dev/null >"$TMP/null"; then
    check "scp-remask -o onto a character device (a /dev/null twin)" scp-remask -q -d "$TMP/S" -M 3000 -s 2 -o "$TMP/null"
    [ -c "$TMP/null" ] && [ -z "$(ls -d "$TMP"/null.tmp-* 2>/dev/null)" ]
    ok $? "... it is still a character device, and no temporary is left beside it"
else
    diag "mknod not allowed here: the FIFO below stands in for a device"
fi
mkfifo "$TMP/fifo"
cat "$TMP/fifo" >"$TMP/fifo.out" &
reader=$!
scp-remask -q -d "$TMP/S" -M 3000 -s 2 -j 2 -o "$TMP/fifo"; r=$?
[ $r -eq 0 ] || : >"$TMP/fifo"   # a run that failed before opening it leaves the reader waiting for a writer
wait $reader
[ $r -eq 0 ] && [ -p "$TMP/fifo" ] && cmp -s "$TMP/fifo.out" "$TMP/ref.m"
ok $? "scp-remask -o onto a FIFO with a reader: the examples go through it, and it is still a FIFO"

before=$(sums "$TMP/S")
fails_with 2 "inside the input directory" "scp-remask -o onto a shard of its input is refused" \
    scp-remask -q -d "$TMP/S" -M 3000 -o "$TMP/S/train-00000.shard"
fails_with 2 "inside the input directory" "scp-remask -o into its shard set is refused" \
    scp-remask -q -d "$TMP/S" -M 3000 -o "$TMP/S/examples.bin"
[ "$(sums "$TMP/S")" = "$before" ]
ok $? "... and the shard set is untouched"
if [ -w /dev/full ]; then
    fails_with 1 "<stdout>: write error" "scp-remask --show to a full disk: exit 1 with a message" \
        sh -c 'scp-remask -d "$1" -M 3000 --show >/dev/full' sh "$TMP/S"
    fails_with 1 "write error" "scp-remask examples to a full disk: exit 1 with a message" \
        sh -c 'scp-remask -q -d "$1" -M 3000 >/dev/full' sh "$TMP/S"
fi

# ---- scp-import and scp-export ------------------------------------------------------------------------------
/usr/bin/python3 - "$TMP/src" <<'PY'
import os, sys
sys.path.insert(0, os.path.join(os.environ["SCP_SRCDIR"], "tests"))
import importgen as g
g.make_hf(sys.argv[1], g.config("llama", vocab=40), "F32", seed=3, n_tokens=38)
PY
ok $? "a random Hugging Face model"
check "scp-import it" scp-import -q "$TMP/src" -o "$TMP/ck"
before=$(sums "$TMP/src")
fails_with 2 "the output is the input" "scp-import -f -o onto its source is refused" scp-import -q -f "$TMP/src" -o "$TMP/src"
fails_with 2 "inside the input directory" "scp-import -o into its source is refused" scp-import -q "$TMP/src" -o "$TMP/src/ck"
fails_with 2 "lies inside the output directory" "scp-import -f -o onto a directory holding the source is refused" \
    scp-import -q -f "$TMP/src" -o "$TMP"
[ "$(sums "$TMP/src")" = "$before" ]
ok $? "... and the source is untouched"
if [ -w /dev/full ]; then
    fails_with 1 "<stdout>: write error" "scp-import --info to a full disk: exit 1 with a message" \
        sh -c 'scp-import --info "$1" >/dev/full' sh "$TMP/ck"
fi
scp-import --info "$TMP/ck" >"$TMP/info.new" && scp-import -i "$TMP/ck" >"$TMP/info.old" 2>"$TMP/old.err" &&
    cmp -s "$TMP/info.new" "$TMP/info.old" && grep -q -- "-i is deprecated.*use --info" "$TMP/old.err"
ok $? "scp-import -i is --info, with a warning"
scp-import -q --dtype bf16 --mask-token 40 "$TMP/src" -o "$TMP/ck-new" &&
    scp-import -q -d bf16 -m 40 "$TMP/src" -o "$TMP/ck-old" 2>"$TMP/old.err" && diff -r "$TMP/ck-new" "$TMP/ck-old" >/dev/null &&
    [ "$(grep -c deprecated "$TMP/old.err")" -eq 2 ]
ok $? "scp-import -d and -m are --dtype and --mask-token: the same checkpoint, 2 warnings"

before=$(sums "$TMP/ck")
fails_with 2 "the output is the input" "scp-export -f -o onto its checkpoint is refused" scp-export -q -f -o "$TMP/ck" "$TMP/ck"
fails_with 2 "inside the input directory" "scp-export -o a GGUF file inside its checkpoint is refused" \
    scp-export -q -o "$TMP/ck/m.gguf" "$TMP/ck"
[ "$(sums "$TMP/ck")" = "$before" ]
ok $? "... and the checkpoint is untouched"
scp-export -q --format gguf --dtype f16 -o "$TMP/new.gguf" "$TMP/ck" &&
    scp-export -q --format gguf -d f16 -o "$TMP/old.gguf" "$TMP/ck" 2>"$TMP/old.err" && cmp -s "$TMP/new.gguf" "$TMP/old.gguf" &&
    grep -q -- "-d is deprecated.*use --dtype" "$TMP/old.err"
ok $? "scp-export -d is --dtype, with a warning"
scp-export -q -F -o "$TMP/old.gguf" "$TMP/ck" 2>"$TMP/old.err" && grep -q -- "-F is deprecated.*use -f/--force" "$TMP/old.err"
ok $? "scp-export -F is -f/--force, with a warning"
fails_with 2 "one CHECKPOINT" "scp-export -f hf (-f was --format's letter) is a usage error, not an export" \
    scp-export -q -f hf -o "$TMP/hf" "$TMP/ck"
[ ! -e "$TMP/hf" ]
ok $? "... and writes nothing"
# ---- what --force replaces -----------------------------------------------------------------------------------
mkdir -p "$TMP/mine/sub" "$TMP/empty" "$TMP/dir.gguf" && echo notes >"$TMP/mine/sub/notes.txt" && echo notes >"$TMP/file"
before=$(sums "$TMP/mine")
fails_with 2 "mine: exists and is not a checkpoint .it holds sub but no config.json" \
    "scp-import -f -o onto a folder that is not a checkpoint is refused" scp-import -q -f "$TMP/src" -o "$TMP/mine"
fails_with 2 "mine: exists and is not a model directory" "scp-export -f -o (hf) onto such a folder is refused" \
    scp-export -q -f -o "$TMP/mine" "$TMP/ck"
fails_with 2 "mine: exists and is not a shard set .it holds sub but no manifest.json" \
    "scp-shard -f -o onto such a folder is refused" scp-shard -q -f -L 64 "$TMP/a.tok" -o "$TMP/mine"
for f in "" -f; do
    fails_with 2 "mine: exists and is not a run directory .it holds sub but no metrics.jsonl" \
        "scp-train $f -o such a folder is refused" scp-train -q $f --init "$TMP/ck" -d "$TMP/S" --steps 1 -o "$TMP/mine"
done
[ "$(sums "$TMP/mine")" = "$before" ] && [ -z "$(ls -d "$TMP"/mine.* 2>/dev/null)" ]
ok $? "... and the folder is as it was, with nothing beside it"
fails_with 2 "file: exists and is a file, not a checkpoint" "scp-import -f -o onto a file is refused" \
    scp-import -q -f "$TMP/src" -o "$TMP/file"
fails_with 2 "file: exists and is a file, not a run directory" "scp-train -f -o onto a file is refused" \
    scp-train -q -f --init "$TMP/ck" -d "$TMP/S" --steps 1 -o "$TMP/file"
fails_with 2 "dir.gguf: is a directory; the output is a GGUF file" "scp-export -f -o a GGUF onto a directory is refused" \
    scp-export -q -f -o "$TMP/dir.gguf" "$TMP/ck"
[ "$(cat "$TMP/file")" = notes ] && [ -d "$TMP/dir.gguf" ]
ok $? "... and the file and the directory are as they were"
check "scp-import -f -o an empty folder" scp-import -q -f "$TMP/src" -o "$TMP/empty"
check "scp-import -f -o a checkpoint replaces it" scp-import -q -f "$TMP/src" -o "$TMP/empty"
check "scp-shard -f -o a shard set replaces it" scp-shard -q -f -L 64 -v 0.1 -s 1 "$TMP/a.tok" -o "$TMP/S"

# A run directory where a checkpoint goes: the message names the run's checkpoint.
mkdir -p "$TMP/run" && cp -r "$TMP/ck" "$TMP/run/step-0000001" && ln -s step-0000001 "$TMP/run/latest"
fails_with 1 "run: a run directory, not a checkpoint: give one of its checkpoints, such as .*/run/latest" \
    "scp-export of a run directory names its latest checkpoint" scp-export -q -o "$TMP/run.gguf" "$TMP/run"
fails_with 1 "run: a run directory, not a checkpoint: .*/run/latest" \
    "scp-eval elbo -m of a run directory names its latest checkpoint" scp-eval elbo -m "$TMP/run" -d "$TMP/S"
done_testing
