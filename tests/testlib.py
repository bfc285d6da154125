"""testlib.py: TAP helpers for Python tests (run with Debian's /usr/bin/python3, which sees python3-torch)."""
import os
import subprocess
import sys
import tempfile

SRCDIR = os.environ.get("SCP_SRCDIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SCP_BIN", os.path.join(SRCDIR, "bin"))
ASSETS = os.environ.get("SCP_ASSETS", os.path.join(SRCDIR, "..", "shared", "assets"))

_n = 0
_failed = 0


def ok(cond, desc):
    global _n, _failed
    _n += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (_n, desc), flush=True)
    if not cond:
        _failed += 1
    return cond


def diag(msg):
    for line in str(msg).splitlines():
        print("# " + line, flush=True)


def skip_all(why):
    print("1..0 # SKIP " + why, flush=True)
    sys.exit(77)


def sanitized():
    """True in a build with AddressSanitizer/UndefinedBehaviorSanitizer (configure --enable-sanitizers), where
    a test may cut what only repeats the plain build's check at several times the cost."""
    out = subprocess.run([os.path.join(BIN, "scp-train"), "--version"], capture_output=True, text=True).stdout
    return "sanitizers=yes" in out


def done():
    print("1..%d" % _n, flush=True)
    sys.exit(1 if _failed else 0)


def run(args, **kw):
    """Run a program from SCP_BIN (first element is the program name)."""
    prog = args[0] if os.path.isabs(args[0]) else os.path.join(BIN, args[0])
    return subprocess.run([prog] + list(args[1:]), capture_output=True, **kw)


def tmpdir():
    return tempfile.mkdtemp(prefix="scp-test.")
