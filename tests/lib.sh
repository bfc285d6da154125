# lib.sh: TAP helpers for command-line tests. Source it: . "$SCP_SRCDIR/tests/lib.sh"
# Programs are found in $SCP_BIN (set by make check; defaults to ./bin); real assets in $SCP_ASSETS.
# The tests that source it sit one folder below tests/ (tests/core/, tests/gpu/, ...).
: "${SCP_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${SCP_BIN:=$SCP_SRCDIR/bin}"
: "${SCP_ASSETS:=$SCP_SRCDIR/../shared/assets}"
PATH="$SCP_BIN:$PATH"
export PATH SCP_BIN SCP_SRCDIR SCP_ASSETS

tap_n=0
tap_failed=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/scp-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# ok COND_STATUS DESCRIPTION: record a result from the exit status of the previous command ($?).
ok() {
    tap_n=$((tap_n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $tap_n - $2"; else echo "not ok $tap_n - $2"; tap_failed=$((tap_failed + 1)); fi
}
# check DESCRIPTION CMD...: run CMD, ok if it exits 0.
check() {
    d=$1; shift
    "$@" >"$TMP/check.out" 2>"$TMP/check.err"; r=$?
    ok $r "$d"
    [ $r -eq 0 ] || { sed 's/^/# /' "$TMP/check.err" | head -20; }
}
# fails_with CODE PATTERN DESCRIPTION CMD...: CMD must exit CODE and print PATTERN (grep -E) on stderr.
fails_with() {
    code=$1; pat=$2; d=$3; shift 3
    "$@" >"$TMP/fail.out" 2>"$TMP/fail.err"; r=$?
    if [ $r -eq "$code" ] && grep -Eq -- "$pat" "$TMP/fail.err"; then ok 0 "$d"
    else ok 1 "$d"; echo "# exit $r (wanted $code); stderr:"; sed 's/^/#   /' "$TMP/fail.err" | head -10; fi
}
diag() { echo "# $*"; }
skip_all() { echo "1..0 # SKIP $*"; trap - EXIT; rm -rf "$TMP"; exit 77; }
# sanitized: true in a build with AddressSanitizer/UndefinedBehaviorSanitizer (configure --enable-sanitizers),
# where a test may cut what only repeats the plain build's check at several times the cost.
sanitized() { "$SCP_BIN/scp-train" --version 2>/dev/null | grep -q 'sanitizers=yes'; }
need_assets() { [ -d "$SCP_ASSETS" ] && [ -e "$SCP_ASSETS/$1" ] || skip_all "asset $1 not found (set SCP_ASSETS)"; }
done_testing() { echo "1..$tap_n"; [ "$tap_failed" -eq 0 ]; exit $?; }
