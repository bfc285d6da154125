// export-gguf-check.js SPEC.json GGUF: read a GGUF with Hugging Face's independent reader (npm @huggingface/gguf,
// found through GGUF_MODULE) and print TAP lines: the architecture, the metadata values in spec.meta, and the
// tensor list (names, shapes ne[0]-first, ggml types) that a llama.cpp model of spec's sizes has.
const fs = require("fs");
const { gguf } = require(process.env.GGUF_MODULE);
const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const file = process.argv[3];
let n = 0, failed = 0;
function ok(c, d) { n++; if (!c) failed++; console.log((c ? "ok " : "not ok ") + n + " - " + d); }
const num = (v) => (typeof v === "bigint" ? Number(v) : v);
(async () => {
  const r = await gguf(file, { allowLocalFile: true });
  const m = r.metadata;
  ok(num(m.version) === 3, spec.tag + ": GGUF version 3 (@huggingface/gguf)");
  ok(m["general.architecture"] === spec.arch, spec.tag + ": general.architecture is " + spec.arch + " (got " + m["general.architecture"] + ")");
  for (const [k, v] of Object.entries(spec.meta)) {
    const got = num(m[k]);
    ok(typeof v === "number" ? Math.abs(got - v) <= 1e-6 * Math.abs(v) : got === v,
       spec.tag + ": " + k + " = " + JSON.stringify(v) + " (got " + JSON.stringify(got) + ")");
  }
  const toks = m["tokenizer.ggml.tokens"];
  ok(Array.isArray(toks) && toks.length === spec.vocab && toks[spec.mask] === "<|mask|>",
     spec.tag + ": " + spec.vocab + " vocabulary entries, '<|mask|>' at " + spec.mask);
  // The tensors a llama.cpp model of these sizes has: name -> [ne..., type].
  const D = spec.D, I = spec.I, H = spec.H, KV = spec.KV, hd = spec.hd, V = spec.vocab, f = spec.mat_type;
  const want = { "token_embd.weight": [D, V, f], "output_norm.weight": [D, 0] };
  if (!spec.tied) want["output.weight"] = [D, V, f];
  for (let l = 0; l < spec.L; l++) {
    const b = "blk." + l + ".";
    Object.assign(want, {
      [b + "attn_norm.weight"]: [D, 0], [b + "attn_q.weight"]: [D, H * hd, f], [b + "attn_k.weight"]: [D, KV * hd, f],
      [b + "attn_v.weight"]: [D, KV * hd, f], [b + "attn_output.weight"]: [H * hd, D, f], [b + "ffn_norm.weight"]: [D, 0],
      [b + "ffn_gate.weight"]: [D, I, f], [b + "ffn_up.weight"]: [D, I, f], [b + "ffn_down.weight"]: [I, D, f],
    });
    if (spec.qkv_bias) Object.assign(want, { [b + "attn_q.bias"]: [H * hd, 0], [b + "attn_k.bias"]: [KV * hd, 0], [b + "attn_v.bias"]: [KV * hd, 0] });
  }
  const have = {};
  for (const t of r.tensorInfos) have[t.name] = t.shape.map(num).concat([num(t.dtype)]);
  const wn = Object.keys(want).sort(), hn = Object.keys(have).sort();
  ok(JSON.stringify(wn) === JSON.stringify(hn), spec.tag + ": the " + wn.length + " tensor names llama.cpp expects" +
     (JSON.stringify(wn) === JSON.stringify(hn) ? "" : " (extra: " + hn.filter((x) => !(x in want)) + "; missing: " + wn.filter((x) => !(x in have)) + ")"));
  const bad = wn.filter((k) => JSON.stringify(want[k]) !== JSON.stringify(have[k]));
  ok(bad.length === 0, spec.tag + ": shapes and types (matrices type " + f + ", norms and biases F32)" +
     (bad.length ? " differ: " + bad.slice(0, 3).map((k) => k + " " + JSON.stringify(have[k]) + " want " + JSON.stringify(want[k])) : ""));
  console.log("1.." + n);
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.log("not ok - @huggingface/gguf failed: " + e); console.log("1..1"); process.exit(1); });
