"""man-examples.py: the EXAMPLES section of every manual page (man/*.1, *.5, *.7) runs as written.

Each page's EXAMPLES are read from the roff source: every .nf/.fi or .EX/.EE block is a list of shell commands
(a line ending in '\\', '|', '&&' or '||' continues on the next), run with /bin/sh in a directory of the page's
own, in order. A block whose lines start with "$ " is a transcript: the "$ " lines are the commands and the
lines under each are its expected standard output ("..." alone on a line stands for any number of lines, inside
a line for any text; runs of blanks compare equal). The files a page's examples name (ckpt, shards, run,
corpus.jsonl, ...) are made here first: a small generated corpus and tokenizer, a tiny Llama trained for a few
steps as the AR checkpoint and converted as the diffusion one; the names of real models and corpora
(stories260K.bin, tinystories_val.txt, ...) point into SCP_ASSETS, and the examples that need them skip where
they are absent. Two section-5 pages show files rather than commands: their listings are compared with the
files the programs write.

An example passes when it exits 0, prints what its transcript shows, and warns about no deprecated spelling;
anything else fails, and the rest of its block is skipped."""
import atexit
import glob
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ASSETS, BIN, SRCDIR, diag, sanitized, skip_all, tmpdir  # noqa: E402

# The examples check the manuals against the programs, the same in every build; under the sanitizers the
# programs' code runs in the rest of the suite, and the examples' fixtures would only cost minutes.
if sanitized():
    skip_all("sanitizer build: the manuals' examples are checked by the plain build")

TOOLS = os.path.join(SRCDIR, "tools")
TIMEOUT = 300

tmp = tmpdir()
atexit.register(shutil.rmtree, tmp, True)
FX = os.path.join(tmp, "fixture")
ENV = dict(os.environ)
ENV["PATH"] = os.pathsep.join([BIN, TOOLS, ENV.get("PATH", "/usr/bin:/bin")])
ENV["LC_ALL"] = "C"
ENV.pop("MAKEFLAGS", None)


# ---- TAP ---------------------------------------------------------------------------------------------------
N = 0
FAILED = 0


def tap(good, desc, directive=None):
    """One result; directive is "SKIP why"."""
    global N, FAILED
    N += 1
    desc = desc.replace("#", "(hash)")
    print("%s %d - %s%s" % ("ok" if good else "not ok", N, desc, " # " + directive if directive else ""), flush=True)
    if not good:
        FAILED += 1
    return good


def ok(good, desc):
    return tap(good, desc)


def done():
    print("1..%d" % N, flush=True)
    sys.exit(1 if FAILED else 0)


# ---- roff ----------------------------------------------------------------------------------------------------
ESCAPES = [("\\-", "-"), ("\\(aq", "'"), ("\\(dq", '"'), ("\\(ga", "`"), ("\\(ti", "~"), ("\\(ha", "^"),
           ("\\(em", "--"), ("\\(en", "-"), ("\\(+-", "+-"), ("\\&", ""), ("\\|", ""), ("\\ ", " "),
           ("\\fB", ""), ("\\fI", ""), ("\\fR", ""), ("\\fP", ""), ("\\(lq", '"'), ("\\(rq", '"')]


def unroff(line):
    out, i = [], 0
    while i < len(line):
        if line[i] == "\\":
            if line.startswith("\\e", i) or line.startswith("\\\\", i):
                out.append("\\")
                i += 2
                continue
            for a, b in ESCAPES:
                if line.startswith(a, i):
                    out.append(b)
                    i += len(a)
                    break
            else:
                out.append(line[i])
                i += 1
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


def examples_section(path):
    """The lines of the EXAMPLES (or EXAMPLE) section, or None."""
    lines = open(path, encoding="utf-8").read().split("\n")
    sec, found = [], False
    for ln in lines:
        if ln.startswith(".SH"):
            name = ln[3:].strip().strip('"')
            if found:
                break
            found = name in ("EXAMPLES", "EXAMPLE")
            continue
        if found:
            sec.append(ln)
    return sec if found else None


def blocks(sec):
    """The .nf/.fi and .EX/.EE blocks of a section, as lists of plain-text lines."""
    out, cur = [], None
    for ln in sec:
        req = ln.split()[0] if ln.startswith(".") and ln.split() else None
        if req in (".nf", ".EX"):
            cur = []
        elif req in (".fi", ".EE"):
            if cur is not None and any(x.strip() for x in cur):
                out.append(cur)
            cur = None
        elif cur is not None and not ln.startswith("."):
            cur.append(unroff(ln))
    return out


def commands(block):
    """[(command, expected output lines or None)] of a block."""
    transcript = any(x.startswith("$ ") for x in block)
    out, i = [], 0
    while i < len(block):
        ln = block[i]
        if transcript and not ln.startswith("$ "):
            if out:
                out[-1][1].append(ln)
            i += 1
            continue
        cmd = ln[2:] if transcript else ln
        i += 1
        while re.search(r"(\\|\||&&)\s*$", cmd) and i < len(block):
            cmd += "\n" + block[i]
            i += 1
        if cmd.strip():
            out.append((cmd, [] if transcript else None))
    return out


def matches(expected, actual):
    """expected: lines with "..." wildcards (a whole line: any lines; inside a line: any text)."""
    def norm(s):
        return " ".join(s.split())

    def line_re(e):
        return re.compile("^" + ".*".join(re.escape(p) for p in norm(e).split("...")) + "$")

    exp = [e for e in expected]
    while exp and not exp[-1].strip():
        exp.pop()
    act = actual.rstrip("\n").split("\n") if actual.strip() else []

    def m(i, j):
        if i == len(exp):
            return j == len(act)
        if exp[i].strip() == "...":
            return any(m(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and line_re(exp[i]).match(norm(act[j])) is not None and m(i + 1, j + 1)
    return m(0, 0)


# ---- the files the examples name ---------------------------------------------------------------------------
def sh(cmd, cwd):
    r = subprocess.run(["/bin/sh", "-c", cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError("fixture: %s: exit %d\n%s" % (cmd, r.returncode, r.stderr[-2000:]))
    return r.stdout


def asset(rel):
    p = os.path.join(ASSETS, rel)
    return p if os.path.exists(p) else None


def build_fixture():
    """A generated corpus and tokenizer, a tiny AR model and its conversion, and the files made from them."""
    os.makedirs(FX)
    t0 = time.time()
    steps = [
        "scp-gen-corpus -o data -n 20 --mentions 4 --choices 4 --seed 1",
        "scp-train-bpe data/corpus.txt -o tok/tokenizer.json --vocab 300 --mask-token --config tok/tokenizer_config.json",
        "scp-new-model -t tok/tokenizer.json -o base --layers 2 --hidden 32 --heads 2 --intermediate 64 --max-len 128",
        "scp-tokenize -q -t tok/tokenizer.json --doc paragraph --bos data/corpus.txt | scp-shard -q -L 64 -v 0.1 -s 1 -o shards",
        "scp-train -q --init random:base/config.json --data shards -o ar --objective ar --attention causal "
        "--steps 12 --batch-tokens 1024 --lr 5e-3 --eval-every 6 --eval-seqs 4",
        "scp-train -q --init ar/latest --data shards -o scp --steps 8 --batch-tokens 1024 --lr 3e-3 --lr-mlp 0.1 "
        "--warmup 2 --eval-every 4 --eval-seqs 4 --eval-samples 2 --micro-batch 4",
        "scp-train -q --init ar/latest --init-random --data shards -o scratch --steps 8 --batch-tokens 1024 --lr 3e-3 "
        "--eval-every 4 --eval-seqs 4 --eval-samples 2 --micro-batch 4",
    ]
    for s in steps:
        sh(s, FX)
    # Corpora in the other forms the examples read: JSONL (plain and gzip'ed, under another key) and a tar.zst.
    paras = [p for p in open(os.path.join(FX, "data", "corpus.txt"), encoding="utf-8").read().split("\n\n") if p.strip()]
    with open(os.path.join(FX, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for p in paras:
            f.write(json.dumps({"text": p}) + "\n")
    with gzip.open(os.path.join(FX, "corpus.jsonl.gz"), "wt", encoding="utf-8") as f:
        f.write(open(os.path.join(FX, "corpus.jsonl"), encoding="utf-8").read())
    with gzip.open(os.path.join(FX, "web.jsonl.gz"), "wt", encoding="utf-8") as f:
        for p in paras:
            f.write(json.dumps({"url": "https://example.org/", "content": p}) + "\n")
    if shutil.which("zstd"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for k in range(2):
                data = "\n\n".join(paras[k::2]).encode()
                ti = tarfile.TarInfo("books/book%d.txt" % (k + 1))
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        subprocess.run(["zstd", "-q", "-o", os.path.join(FX, "books.tar.zst")], input=buf.getvalue(), check=True)
    diag("fixture made in %.1f s" % (time.time() - t0))


def build_experiment(d):
    """An experiment directory as share/scp/experiments leaves it: runs/RUN, eval/run-RUN-*.json, time/run-RUN."""
    for run, init in (("e1-scp-s1", "--init ar/latest"), ("e1-scp-s2", "--init ar/latest"),
                      ("e1-scratch-s1", "--init ar/latest --init-random"), ("e1-scratch-s2", "--init ar/latest --init-random")):
        seed = run[-1]
        sh("mkdir -p runs eval time && s=$(date +%%s.%%N) && scp-train -q %s --data shards -o runs/%s --steps 4 "
           "--batch-tokens 512 --lr 3e-3 --seed %s --eval-every 2 --eval-seqs 2 --eval-samples 2 && "
           "awk \"BEGIN{printf \\\"%%.1f\\\\n\\\", $(date +%%s.%%N) - $s}\" > time/run-%s && "
           "scp-eval elbo -m runs/%s/latest -d shards --samples 2 --seed %s > eval/run-%s-elbo.json && "
           "scp-eval choice -m runs/%s/latest --tasks facts.jsonl --samples 2 --max-items 12 > eval/run-%s-choice.json"
           % (init, run, seed, run, run, seed, run, run, run), d)


def build_demo(d):
    """The figures of a demo directory (share/scp/demo/Makefile) for the fixture's three models."""
    cmds = ["mkdir -p demo/eval demo/time",
            "scp-eval ppl -m ar/latest -d shards > demo/eval/ar-ppl.json"]
    for m in ("ar", "scp", "scratch"):
        cmds += ["scp-eval elbo -m %s/latest -d shards --samples 2 > demo/eval/%s-elbo.json" % (m, m),
                 "scp-eval choice -m %s/latest --tasks facts.jsonl --samples 2 --max-items 12 > demo/eval/%s-choice.json" % (m, m),
                 "echo 1.0 > demo/time/%s" % m]
    cmds.append("scp-eval generate -m scp/latest --prompt 'Once upon a time' --length 8 --steps 8 > demo/samples.txt")
    for c in cmds:
        sh(c, d)


def build_qwen3(d):
    """A tiny Qwen3 with the real Qwen3 tokenizer, its embedding padded to 151936 rows as Qwen3-0.6B's is."""
    import importgen as g
    qt = asset("tokenizers/qwen3")
    c = g.config("qwen3", tied=True, vocab=151936, hidden_size=8, num_attention_heads=2, num_key_value_heads=1,
                 head_dim=4, intermediate_size=8, num_hidden_layers=1, bos_token_id=151643, eos_token_id=151645)
    g.make_hf(d, c, "BF16", seed=1)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(qt, f), os.path.join(d, f))


def build_stories(d, shards):
    """stories260K imported, and with shards the shard set of scp(7)'s example."""
    sh("scp-import -q %s --tokenizer %s -o stories260K" % (asset("models/stories260K.bin"), asset("models/tok512.bin")), d)
    if shards:
        sh("scp-tokenize -q -m stories260K --doc paragraph --bos %s | "
           "scp-shard -q --seq-len 256 --val-fraction 0.05 --seed 1 -o shards" % asset("corpora/tinystories_val.txt"), d)


S260 = {"stories260K.bin": "asset:models/stories260K.bin", "tok512.bin": "asset:models/tok512.bin",
        "tinystories_val.txt": "asset:corpora/tinystories_val.txt"}
TOKFILES = {"tokenizer.json": "fx:tok/tokenizer.json", "tokenizer_config.json": "fx:tok/tokenizer_config.json"}
# What each page's examples find in their directory. fx:PATH links a fixture file, copy:PATH copies it (the
# examples write into it), asset:PATH links a real file (examples that name it skip without it), gen:NAME builds it.
PAGES = {
    "scp.7": dict(S260),
    "scp-import.1": dict(S260, **{"Qwen3-0.6B": "gen:qwen3"}),
    "scp-tokenize.1": dict(TOKFILES, **{"ckpt": "fx:ar/latest", "corpus.jsonl.gz": "fx:corpus.jsonl.gz",
                                        "books.tar.zst": "fx:books.tar.zst", "web.jsonl.gz": "fx:web.jsonl.gz",
                                        "tok512.model": "asset:models/tok512.model",
                                        "stories.txt": "asset:corpora/tinystories_val.txt"}),
    "scp-shard.1": dict(TOKFILES, **{"corpus.jsonl": "fx:corpus.jsonl"}),
    "scp-remask.1": {"data": "fx:shards", "ckpt": "fx:ar/latest"},
    "scp-train.1": {"ckpt": "fx:ar/latest", "shards": "fx:shards"},
    "scp-eval.1": {"ckpt": "fx:ar/latest", "run": "fx:scp", "shards": "fx:shards", "facts.jsonl": "fx:data/facts.jsonl",
                   "stories260K": "gen:stories", "tinystories_val.txt": "asset:corpora/tinystories_val.txt",
                   "ARC-Easy-Test.jsonl": "gen:tasks", "ARC-Easy-Train.jsonl": "gen:tasks", "mmlu.jsonl": "gen:tasks"},
    "scp-export.1": {"run": "fx:scp", "ckpt": "fx:ar/latest"},
    "scp-tokens.5": {"stories260K": "gen:stories", "tinystories_val.txt": "asset:corpora/tinystories_val.txt"},
    "scp-shards.5": {"shards": "gen:stories-shards"},
    "scp-masked.5": {"shards": "gen:stories-shards", "stories260K": "gen:stories-shards"},
    "scp-gen-corpus.1": {"run": "fx:scp"},
    "scp-train-bpe.1": {"corpus.txt": "fx:data/corpus.txt"},
    "scp-new-model.1": {"tok": "fx:tok", "shards": "fx:shards"},
    "scp-recall.1": {"facts.jsonl": "fx:data/facts.jsonl", "scp": "fx:scp"},
    # the overlay's four runs: the two diffusion fixtures (micro-batches, so noise scales), each standing twice
    "scp-plot.1": {"run": "copy:scp", "scp-run": "fx:scp", "scratch-run": "fx:scratch", "ar-s1": "fx:scp",
                   "ar-s2": "fx:scratch", "mdm-s1": "fx:scp", "mdm-s2": "fx:scratch"},
    "scp-exp-table.1": {"ar": "fx:ar", "shards": "fx:shards", "facts.jsonl": "fx:data/facts.jsonl",
                        ".": "gen:experiment"},
    "scp-demo-summary.1": {"ar": "fx:ar", "scp": "fx:scp", "scratch": "fx:scratch", "shards": "fx:shards",
                           "facts.jsonl": "fx:data/facts.jsonl", "demo": "gen:demo"},
}
# Programs a page's examples need besides the suite's (their examples skip without them).
NEEDS = {"scp-plot.1": ["gnuplot"]}


def build_tasks(d):
    """Multiple-choice items in the layouts of the ARC and MMLU datasets' JSONL files."""
    arc = [{"id": "q%d" % i, "question": {"stem": "Who %s?" % q,
                                           "choices": [{"text": t, "label": "ABCD"[k]} for k, t in enumerate(opts)]},
            "answerKey": "ABCD"[a]}
           for i, (q, opts, a) in enumerate([("flies", ["dog", "bird", "fish", "cat"], 1),
                                             ("swims", ["fish", "horse", "cow", "bird"], 0),
                                             ("moos", ["cat", "dog", "cow", "hen"], 2)])]
    mmlu = [{"question": "What is %d plus %d?" % (x, y), "subject": "arithmetic",
             "choices": [str(x + y + k - 1) for k in range(4)], "answer": 1} for x, y in ((1, 2), (3, 4), (2, 2))]
    for name, items in (("ARC-Easy-Test.jsonl", arc), ("ARC-Easy-Train.jsonl", arc * 2), ("mmlu.jsonl", mmlu)):
        with open(os.path.join(d, name), "w") as f:
            f.writelines(json.dumps(x) + "\n" for x in items)


def setup_page(page, d):
    """Make the page's files in d; returns {name: why it is missing} for the ones that could not be made."""
    missing = {}
    spec = PAGES.get(page, {})
    gens = []
    for n, s in spec.items():
        if s.startswith("gen:") and s[4:] not in [g for _, g in gens]:
            gens.append((n, s[4:]))
    for name, s in spec.items():
        if s.startswith("gen:"):
            continue
        kind, rel = s.split(":", 1)
        dst = os.path.join(d, name)
        if kind == "asset":
            src = asset(rel)
            if src is None:
                missing[name] = "asset %s not found (set SCP_ASSETS)" % rel
                continue
            os.symlink(src, dst)
        elif kind == "fx":
            src = os.path.join(FX, rel)
            if not os.path.exists(src):
                missing[name] = "%s could not be made here" % rel
                continue
            os.symlink(os.path.realpath(src), dst)
        elif kind == "copy":
            shutil.copytree(os.path.join(FX, rel), dst, symlinks=True)
    for name, g in gens:
        try:
            if g in ("stories", "stories-shards"):
                need = [r for r in ("models/stories260K.bin", "models/tok512.bin", "corpora/tinystories_val.txt")
                        if asset(r) is None]
                if need:
                    for n, s in spec.items():
                        if s == "gen:" + g:
                            missing[n] = "asset %s not found (set SCP_ASSETS)" % need[0]
                    continue
                build_stories(d, g == "stories-shards")
            elif g == "qwen3":
                if asset("tokenizers/qwen3/tokenizer.json") is None:
                    missing[name] = "asset tokenizers/qwen3 not found (set SCP_ASSETS)"
                    continue
                try:
                    import numpy  # noqa: F401 - tests/importgen.py writes the tensors with it
                except ImportError:
                    missing[name] = "needs numpy for /usr/bin/python3"
                    continue
                build_qwen3(os.path.join(d, name))
            elif g == "experiment":
                build_experiment(d)
            elif g == "demo":
                build_demo(d)
            elif g == "tasks":
                build_tasks(d)
        except Exception as e:  # noqa: BLE001 - a file the examples need that could not be made is a failure
            ok(False, "%s: %s is made for the examples" % (page, name))
            diag(str(e))
            for n, s in spec.items():
                if s == "gen:" + g:
                    missing[n] = "%s could not be made" % name
    return missing


# ---- running -----------------------------------------------------------------------------------------------
def programs_of(cmd):
    """The commands a shell line runs: the first word of the line and after each |, &&, || and ;."""
    words = []
    for part in re.split(r"\|\||&&|[|;]", re.sub(r"#.*", "", cmd.replace("\\\n", " "))):
        w = part.split()
        if w:
            words.append(w[0])
    return words


def mentions(cmd, name):
    return re.search(r"(^|[\s=/])%s($|[\s/])" % re.escape(name), cmd) is not None


def show(s, n=15):
    lines = s.rstrip("\n").split("\n")
    return "\n".join(("  " + x) for x in lines[-n:])


def run_page(page, path):
    sec = examples_section(path)
    ok(sec is not None, "%s has an EXAMPLES section" % page)
    if sec is None:
        return
    if page in CUSTOM:
        CUSTOM[page](page, blocks(sec))
        return
    d = os.path.join(tmp, "pages", page)
    os.makedirs(d)
    missing = setup_page(page, d)
    for prog in NEEDS.get(page, []):
        if not shutil.which(prog, path=ENV["PATH"]):
            missing[prog] = "needs %s" % prog
    bl = blocks(sec)
    ok(bool(bl), "%s: its EXAMPLES hold commands" % page)
    for b in bl:
        stop = None
        for cmd, expected in commands(b):
            one = " ".join(re.sub(r"\s#.*", "", cmd).split())
            desc = "%s: %s" % (page, one if len(one) <= 110 else one[:107] + "...")
            if stop:
                tap(True, desc, "SKIP " + stop)
                continue
            why = [w for n, w in missing.items() if n in NEEDS.get(page, []) or mentions(cmd, n)]
            absent = [p for p in programs_of(cmd) if "/" not in p and "=" not in p and
                      not shutil.which(p, path=ENV["PATH"]) and p not in ("cd", "echo", "test", "[")]
            if why or absent:
                reason = why[0] if why else "needs %s (not installed)" % absent[0]
                tap(True, desc, "SKIP " + reason)
                if why:
                    stop = "an earlier example of this block did not run"
                continue
            t0 = time.time()
            try:
                r = subprocess.run(["/bin/sh", "-c", cmd], cwd=d, env=ENV, capture_output=True, text=True,
                                   timeout=TIMEOUT)
                rc, out, err = r.returncode, r.stdout, r.stderr
            except subprocess.TimeoutExpired:
                rc, out, err = 124, "", "timed out after %d s" % TIMEOUT
            secs = time.time() - t0
            bad = []
            if rc != 0:
                bad.append("exit %d" % rc)
            if expected is not None and rc == 0 and not matches(expected, out):
                bad.append("output differs from the page")
            if re.search(r"is deprecated", err):
                bad.append("a deprecated spelling")
            if not bad:
                ok(True, "%s (%.1f s)" % (desc, secs))
                continue
            ok(False, "%s: %s" % (desc, ", ".join(bad)))
            if "output differs from the page" in bad:
                diag("expected:\n" + show("\n".join(expected), 40) + "\ngot:\n" + show(out, 40))
            diag("stderr:\n" + show(err))
            stop = "an earlier example of this block did not run"


# ---- pages that show files --------------------------------------------------------------------------------
def pairs(text):
    """"key": value pairs shown in a listing (strings, numbers, booleans)."""
    return re.findall(r'"([\w.]+)":\s*("(?:[^"\\]|\\.)*"|true|false|null|-?[0-9][0-9.e+-]*)', text)


def find_key(obj, key):
    """Every value of key anywhere in a JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from find_key(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from find_key(v, key)


def check_checkpoint(page, bl):
    """scp-checkpoint(5): the listing is the directory scp-import makes of stories260K, with the values shown."""
    if asset("models/stories260K.bin") is None or asset("models/tok512.bin") is None:
        tap(True, "%s: the example listing is scp-import's stories260K" % page,
            "SKIP asset models/stories260K.bin not found (set SCP_ASSETS)")
        return
    text = "\n".join(bl[0])
    top = text.split("\n")[0].strip().rstrip("/")
    d = os.path.join(tmp, "pages", page)
    os.makedirs(d)
    sh("scp-import -q %s --tokenizer %s -o %s" % (asset("models/stories260K.bin"), asset("models/tok512.bin"), top), d)
    files = {}
    cur = None
    for ln in text.split("\n")[1:]:
        m = re.match(r"^\s{1,4}(\S+)(.*)$", ln)
        if m and not ln.startswith("     "):
            cur = m.group(1)
            files[cur] = m.group(2)
        elif cur:
            files[cur] += "\n" + ln
    real = sorted(os.listdir(os.path.join(d, top)))
    ok(sorted(files) == real, "%s: the listing names the files of %s (%s)" % (page, top, " ".join(real)))
    for f, shown in files.items():
        p = os.path.join(d, top, f)
        if not f.endswith(".json") or not os.path.exists(p):
            continue
        j = json.load(open(p))
        bad = []
        for k, v in pairs(shown):
            want = json.loads(v)
            if want not in list(find_key(j, k)):
                bad.append("%s: %s" % (k, v))
        ok(not bad and pairs(shown), "%s: %s holds the values shown%s" % (page, f, (" (not: %s)" % "; ".join(bad)) if bad else ""))
    m = re.search(r"tokenizer\.bin\s+(\d+) tokens", text)
    if m:
        ok(os.path.getsize(os.path.join(d, top, "tokenizer.bin")) == os.path.getsize(asset("models/tok512.bin")),
           "%s: tokenizer.bin is the llama2.c tokenizer, copied" % page)


def check_metrics(page, bl):
    """scp-run(5): the metrics lines shown have the keys of the lines scp-train writes (a dense run, an MoE run)."""
    d = os.path.join(tmp, "pages", page)
    os.makedirs(d)
    for name in ("shards", "tok"):
        os.symlink(os.path.join(FX, name), os.path.join(d, name))
    sh("scp-new-model -t tok/tokenizer.json -o moe --layers 2 --hidden 32 --heads 2 --intermediate 64 --max-len 128 "
       "--experts 8 --experts-per-tok 2 2>/dev/null && scp-train -q --init random:moe/config.json --data shards -o moerun "
       "--steps 2 --batch-tokens 512 --aux-loss 0.01 --z-loss 0.001", d)

    def lines(path):
        return [json.loads(x) for x in open(path) if x.strip()]
    dense = lines(os.path.join(FX, "scp", "metrics.jsonl"))
    moe = lines(os.path.join(d, "moerun", "metrics.jsonl"))
    step = next(o for o in dense if "eval" not in o)
    ev = next(o for o in dense if "eval" in o)
    moestep = next(o for o in moe if "eval" not in o)
    shown = []
    for b in bl:
        text = "\n".join(b)
        for m in re.finditer(r"\{.*?\}(?=\s*(\{|$))", text, re.S):
            shown.append(m.group(0))
    ok(len(shown) == 3, "%s: the page shows three metrics lines (a step, an evaluation, an MoE step)" % page)
    for s in shown:
        elided = "..." in s
        keys = set(re.findall(r'"(\w+)":', s))
        top = set(k for k in keys if k not in ("embed", "attn", "mlp", "norm", "router", "expert"))
        real = moestep if "expert_load" in keys else (ev if "eval" in keys else step)
        if elided:
            good = top <= set(real)
        else:
            good = top == set(real)
        ok(good, "%s: a shown %s line has the keys scp-train writes%s" % (
            page, "MoE step" if "expert_load" in keys else ("eval" if "eval" in keys else "step"),
            "" if good else " (shown %s, written %s)" % (sorted(top), sorted(real))))
        if "lr" in keys and not elided and isinstance(real.get("lr"), dict):
            sub = set(re.findall(r'"(\w+)":', re.search(r'"lr":\{[^}]*\}', s).group(0))) - {"lr"}
            ok(sub == set(real["lr"]), "%s: the learning rates are per group (%s)" % (page, ", ".join(sorted(real["lr"]))))


CUSTOM = {"scp-checkpoint.5": check_checkpoint, "scp-run.5": check_metrics}


def main():
    pages = sorted(glob.glob(os.path.join(SRCDIR, "man", "*.[157]")))
    only = os.environ.get("SCP_MAN_PAGES")   # e.g. SCP_MAN_PAGES="scp-eval.1 scp.7" to run a few
    if only:
        pages = [p for p in pages if os.path.basename(p) in only.split()]
    try:
        build_fixture()
    except Exception as e:  # noqa: BLE001
        ok(False, "the examples' fixture (a corpus, a tokenizer, a tiny model and its conversion) is made")
        diag(str(e))
        done()
    t0 = time.time()
    for p in pages:
        run_page(os.path.basename(p), p)
    diag("examples ran in %.1f s" % (time.time() - t0))
    done()


if __name__ == "__main__":
    main()
