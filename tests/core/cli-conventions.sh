#!/bin/sh
# cli-conventions.sh: every program keeps the command-line conventions of scp(7): --help and --version on
# stdout with exit 0, an unknown option is a usage error (exit 2; one that other programs take is named with its
# meaning there), every long option in --help is documented
# in the program's man page, every man page renders without warnings, and the programs share one option
# vocabulary (lib/core/options.def): an option line of any --help pairs a letter with the long option the
# vocabulary gives it, and no letter or long option means two things across the programs.
. "${SCP_SRCDIR:-$(dirname "$0")/../..}/tests/lib.sh"

# The programs: scp-NAME without an extension (object files scp-NAME.o sit beside them); the directory's own
# name may hold dots, so only the file names are filtered.
progs=
for f in "$SCP_BIN"/scp-*; do
    case ${f##*/} in *.*) ;; *) [ -x "$f" ] && progs="$progs $f" ;; esac
done
[ -n "$progs" ] || skip_all "no programs built in $SCP_BIN"
for p in $progs; do
    name=$(basename "$p")
    "$p" --help >"$TMP/help" 2>"$TMP/help.err"; r=$?
    [ $r -eq 0 ] && [ -s "$TMP/help" ] && [ ! -s "$TMP/help.err" ]
    ok $? "$name --help prints to stdout and exits 0"
    "$p" --version >"$TMP/ver" 2>/dev/null && grep -q "^$name (scp) " "$TMP/ver" && grep -q '^features: ' "$TMP/ver"
    ok $? "$name --version names the program, version and features"
    "$p" --no-such-option >/dev/null 2>"$TMP/bad"; r=$?
    [ $r -eq 2 ] && grep -q "$name" "$TMP/bad"
    ok $? "$name rejects an unknown option with exit 2"
    man="$SCP_SRCDIR/man/$name.1"
    [ -f "$man" ]
    ok $? "$name has a man page"
    [ -f "$man" ] || continue
    undocumented=
    for o in $(grep -oE -- '--[a-z][a-z0-9-]*' "$TMP/help" | sort -u); do
        # man pages escape the dashes: \-\-option
        esc=$(printf '%s' "$o" | sed 's/-/\\\\-/g')
        grep -q -- "$esc" "$man" || grep -q -- "$o" "$man" || undocumented="$undocumented $o"
    done
    [ -z "$undocumented" ]
    ok $? "every option in $name --help is in its man page${undocumented:+ (missing:$undocumented)}"
done
# The vocabulary check: every option line of every --help (scp-eval's subcommands too) against options.def, and
# across the programs. It is run first on planted faults, so that it is known to fail where it must.
mkdir -p "$TMP/helps"
for p in $progs; do "$p" --help >"$TMP/helps/$(basename "$p")" 2>/dev/null; done
for sub in ppl elbo generate choice; do
    "$SCP_BIN/scp-eval" "$sub" --help >"$TMP/helps/scp-eval-$sub" 2>/dev/null
done
vocab_check() { /usr/bin/python3 "$SCP_SRCDIR/tests/core/cli_vocab.py" "$@"; }
mkdir -p "$TMP/planted"
printf '  -t, --threads N   x\n  -d, --dtype T   y\n      --no-such-thing   z\n' >"$TMP/planted/prog-a"
printf '  -j, --threads N   x\n' >"$TMP/planted/prog-b"
vocab_check "$SCP_SRCDIR/lib/core/options.def" "$TMP/planted" >"$TMP/planted.out"; r=$?
[ $r -eq 1 ] && grep -q -- '--threads has letter' "$TMP/planted.out" && grep -q -- '-d, --dtype, options.def' "$TMP/planted.out" &&
    grep -q -- '--no-such-thing is not in' "$TMP/planted.out"
ok $? "the vocabulary check finds planted contradictions ($(wc -l <"$TMP/planted.out") lines)"
vocab_check "$SCP_SRCDIR/lib/core/options.def" "$TMP/helps" >"$TMP/vocab.out"
ok $? "every --help agrees with options.def: a letter or long option means one thing in every program"
sed 's/^/#   /' "$TMP/vocab.out" | head -20
for m in "$SCP_SRCDIR"/man/*.[157]; do
    [ -f "$m" ] || continue
    LC_ALL=C groff -ww -z -man "$m" 2>"$TMP/groff"
    [ ! -s "$TMP/groff" ]
    ok $? "$(basename "$m") renders cleanly with groff -ww"
    [ -s "$TMP/groff" ] && sed 's/^/#   /' "$TMP/groff" | head -5
done
# An option of the vocabulary that a program does not take is refused with what it means in the other programs,
# and where the program has its own way to say it, that way.
fails_with 2 "unknown option '-m': scp-train takes no -m/--model .in other scp programs: a checkpoint directory.*; the checkpoint a run starts from is -i/--init" \
    "scp-train -m: refused, pointing to --init" scp-train -m ck -d sh -o run --steps 1
fails_with 2 "unknown option '--model=ck': scp-export takes no -m/--model .*the checkpoint is the operand" \
    "scp-export --model=ck: refused, pointing to the operand" scp-export --model=ck -o out.gguf
fails_with 2 "unknown option '--split': scp-train takes no --split .in other scp programs: which split of a shard set" \
    "scp-train --split: refused with the option's meaning elsewhere" scp-train --split val
fails_with 2 "unknown option '--no-such-option'\$" "an option no program takes: the plain message" \
    scp-train --no-such-option
done_testing
