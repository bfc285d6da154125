#!/bin/sh
# cli-conventions.sh: every program keeps the command-line conventions of scp(7): --help and --version on
# stdout with exit 0, an unknown option is a usage error (exit 2), every long option in --help is documented
# in the program's man page, and every man page renders without warnings.
. "${SCP_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"

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
for m in "$SCP_SRCDIR"/man/*.[157]; do
    [ -f "$m" ] || continue
    LC_ALL=C groff -ww -z -man "$m" 2>"$TMP/groff"
    [ ! -s "$TMP/groff" ]
    ok $? "$(basename "$m") renders cleanly with groff -ww"
    [ -s "$TMP/groff" ] && sed 's/^/#   /' "$TMP/groff" | head -5
done
done_testing
