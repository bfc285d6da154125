"""export-stories.py: scp-export on the real stories260K (skips without ../shared/assets).
- The causal checkpoint exported to GGUF holds the tensors of the published stories260K.gguf (a GGUF made by
  others from the same weights): every tensor byte for byte, q/k in llama.cpp's interleaved order, the embedding's
  first 512 rows (ours has one more row, the mask token), no separate output matrix (tied); the same vocabulary
  (tokens, scores, token types) and special ids.
- The converted (bidirectional) checkpoint exported as HF and as GGUF (llada) comes back through scp-import with
  the very same tensors.
- Where torch and transformers are installed: the causal checkpoint's HF export loads without remote code as
  transformers' own LlamaForCausalLM (its model_type is llama), which gives the published figures of the
  assets' README: 1.4034 nats/token of next-token loss on the first 60 windows of tinystories_val.txt, and the
  greedy continuation of "Once upon a time"; this checks scp-import's q/k row permutation of the llama2.c file
  and the export against an implementation scp did not write."""
import atexit
import json
import os
import shutil
import struct  # noqa: F401 (the exec'ed reader uses it)
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from testlib import ASSETS, BIN, ok, diag, done, run, tmpdir, skip_all  # noqa: E402
import importgen as g  # noqa: E402
import numpy as np  # noqa: E402,F401

for f in ("models/stories260K.bin", "models/tok512.bin", "models/stories260K.gguf"):
    if not os.path.exists(os.path.join(ASSETS, f)):
        skip_all("asset %s not found (set SCP_ASSETS)" % f)
for prog in ("scp-import", "scp-export"):
    if not os.path.exists(os.path.join(BIN, prog)):
        skip_all(prog + " not built")
src = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "export-roundtrip.py")).read()
exec(src[src.index("def read_gguf"):src.index("def st(path)")])   # the GGUF reader of export-roundtrip.py

tmp = tmpdir()
atexit.register(shutil.rmtree, tmp, True)


def runok(args, what):
    r = run(args)
    if r.returncode:
        diag("%s: %s" % (" ".join(args), r.stderr.decode()))
    return ok(r.returncode == 0, what)


ck, dif = os.path.join(tmp, "ck"), os.path.join(tmp, "dif")
runok(["scp-import", "-q", os.path.join(ASSETS, "models/stories260K.bin"), "--tokenizer", os.path.join(ASSETS, "models/tok512.bin"),
       "-o", ck], "import stories260K.bin + tok512.bin")
out = os.path.join(tmp, "c.gguf")
runok(["scp-export", "-q", "-o", out, ck], "export the causal checkpoint to GGUF")
_, mine_m, mine = read_gguf(out)
_, ref_m, ref = read_gguf(os.path.join(ASSETS, "models/stories260K.gguf"))
ok(mine_m["general.architecture"] == "llama", "architecture llama (causal)")
names = sorted(set(ref) - {"output.weight"})
ok(sorted(mine) == names, "the published file's %d tensors (its output.weight is the tied embedding, absent here)" % len(names))
same = [k for k in names if k != "token_embd.weight" and mine.get(k) == ref[k]]
ok(len(same) == len(names) - 1, "%d tensors byte for byte as published (q/k in interleaved RoPE order)" % len(same))
ty, ne, b = mine["token_embd.weight"]
rty, rne, rb = ref["token_embd.weight"]
ok(ty == rty == 0 and ne == [64, 513] and rne == [64, 512] and b[:len(rb)] == rb, "token_embd: the published 512 rows, then the mask row")
ok(ref["output.weight"][2] == rb, "(the published output.weight is the embedding: tied)")
for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
    ok(mine_m[k][:512] == ref_m[k] and len(mine_m[k]) == 513, "%s: the published 512 entries, then the mask" % k)
ok(mine_m["tokenizer.ggml.tokens"][512] == "<|mask|>" and mine_m["tokenizer.ggml.token_type"][512] == 3, "entry 512 is '<|mask|>', a control token")
for k in ("tokenizer.ggml.model", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
          "llama.rope.dimension_count", "llama.attention.head_count_kv", "llama.feed_forward_length", "llama.attention.layer_norm_rms_epsilon"):
    ok(mine_m.get(k) == ref_m[k], "%s = %r as published" % (k, ref_m[k]))

# Round trips of the converted checkpoint.
runok(["scp-export", "-q", "--bidirectional", "--no-shift", "-o", dif, ck], "mark it bidirectional, no shift (HF export)")
ckt = g.read_st(os.path.join(ck, "model.safetensors"))
for form, path in (("hf", os.path.join(tmp, "hf")), ("gguf", os.path.join(tmp, "d.gguf"))):
    runok(["scp-export", "-q", "--format", form, "-o", path, dif], "export the diffusion checkpoint as %s" % form)
    back = os.path.join(tmp, "back-" + form)
    runok(["scp-import", "-q", path, "-o", back], "scp-import the %s export" % form)
    ok(g.read_st(os.path.join(back, "model.safetensors")) == ckt, "%s round trip: all %d tensors bit-exact" % (form, len(ckt)))
    c = json.load(open(os.path.join(back, "config.json")))
    ok(c["is_causal"] is False and c["shift_logits"] is False and c["mask_token_id"] == 512,
       "%s round trip: is_causal false, shift_logits false, mask 512" % form)
_, dm, _ = read_gguf(os.path.join(tmp, "d.gguf"))
ok(dm["general.architecture"] == "llada" and dm["llada.attention.causal"] is False and dm["diffusion.shift_logits"] is False,
   "the diffusion GGUF is llada, attention.causal false, diffusion.shift_logits false")

# The causal export in transformers' own Llama, against the published figures (the assets' README).
try:
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import AutoModelForCausalLM
except ImportError:
    transformers = None
if transformers is None:
    ok(True, "the HF export in transformers' LlamaForCausalLM # SKIP torch or transformers is not installed")
else:
    hf = os.path.join(tmp, "causal-hf")
    runok(["scp-export", "-q", "--format", "hf", "-o", hf, ck], "export the causal checkpoint as hf")
    model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32).eval()
    ok(type(model).__name__ == "LlamaForCausalLM", "transformers %s loads it without remote code as %s" %
       (transformers.__version__, type(model).__name__))

    def ids_of(args, text):
        r = run(["scp-tokenize", "-m", ck, "--format", "ids"] + args + ["-"], input=text.encode())
        return [int(t) for t in r.stdout.decode().split()]
    # the published recipe: paragraphs, BOS before each, no EOS, concatenated; windows of 513 tokens every 512
    ids = ids_of(["--doc", "paragraph", "--bos"], open(os.path.join(ASSETS, "corpora/tinystories_val.txt")).read())
    nll, n = 0.0, 0
    with torch.no_grad():
        for w in range(60):
            x = torch.tensor([ids[512 * w: 512 * w + 513]])
            logits = model(input_ids=x[:, :-1]).logits[0].double()
            nll += float(F.cross_entropy(logits, x[0, 1:], reduction="sum"))
            n += x.shape[1] - 1
    ok(n == 30720 and abs(nll / n - 1.4034) < 5e-5,
       "its next-token loss on the first 60 windows: %.5f nats/token over %d tokens (published 1.4034)" % (nll / n, n))
    seq = [1] + ids_of([], "Once upon a time")
    with torch.no_grad():
        for _ in range(24):
            seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
    r = run(["scp-tokenize", "-m", ck, "-D", "--format", "ids", "-"], input=(" ".join(map(str, seq)) + "\n").encode())
    text = r.stdout.decode().strip()
    ok(text.startswith("Once upon a time, there was a little girl named Lily. She loved to play outside in the p"),
       "its greedy continuation of \"Once upon a time\": %r (published: \"... named Lily. She loved to play outside "
       "in the park.\")" % text)
done()
