"""model-real.py: the model driver on the real stories260K (imported with scp-import from the llama2.c file in
../shared/assets): causal NLL on the reference protocol of assets/README.md must be 1.4034 nats/token within
0.001 (an independent fp64 forward measured it), and the greedy continuation of "Once upon a time" must begin
with the published text. Tokens come from SentencePiece (Debian python3-sentencepiece) on tok512.model, an
encoder this project did not write."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

A = testlib.ASSETS
for f in ("models/stories260K.bin", "models/tok512.bin", "models/tok512.model", "corpora/tinystories_val.txt"):
    if not os.path.exists(os.path.join(A, f)):
        testlib.skip_all("asset %s not found (set SCP_ASSETS)" % f)
try:
    import numpy as np
    import sentencepiece as spm
except ImportError as e:
    testlib.skip_all("python3-sentencepiece/numpy not available (%s)" % e)
HELPER = os.path.join(os.environ.get("SCP_BUILDDIR", os.path.join(testlib.SRCDIR, "build")), "tests", "model", "model-nll")
IMPORT = os.path.join(testlib.BIN, "scp-import")
if not os.access(HELPER, os.X_OK) or not os.access(IMPORT, os.X_OK):
    testlib.skip_all("tests/model/model-nll or scp-import not built")

d = testlib.tmpdir()
ck = os.path.join(d, "stories260K")
r = subprocess.run([IMPORT, "-q", os.path.join(A, "models/stories260K.bin"), "-t", os.path.join(A, "models/tok512.bin"), "-o", ck],
                   capture_output=True)
if not testlib.ok(r.returncode == 0, "scp-import stories260K.bin"):
    testlib.diag(r.stderr.decode(errors="replace"))
    testlib.done()

sp = spm.SentencePieceProcessor(model_file=os.path.join(A, "models/tok512.model"))
ids = []
with open(os.path.join(A, "corpora/tinystories_val.txt")) as f:
    for p in f.read().split("\n\n"):
        if p.strip():
            ids += [1] + sp.encode(p.strip())
        if len(ids) > 60 * 512:
            break
path = os.path.join(d, "ids.i32")
np.array(ids[:60 * 512 + 1], dtype=np.int32).tofile(path)
prompt = [1] + sp.encode("Once upon a time")
r = subprocess.run([HELPER, ck, path, "60"] + [str(i) for i in prompt], capture_output=True)
if testlib.ok(r.returncode == 0, "model-nll runs"):
    out = json.loads(r.stdout)
    testlib.ok(abs(out["nll"] - 1.4034) < 0.001, "causal NLL %.5f nats/token over %d tokens (reference 1.4034)" % (out["nll"], out["tokens"]))
    text = sp.decode(out["greedy"][1:])
    want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
    testlib.ok(text.startswith(want), "greedy continuation: %r" % text)
else:
    testlib.diag(r.stderr.decode(errors="replace"))
testlib.done()
