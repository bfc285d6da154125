// tokenize-hf.js: reference encodings for tests/tok/tokenize-hf.py and bench/tokenize.
//   node tokenize-hf.js hf TOKENIZER.json jsonl|lines FILE      -> ids per document, one line each
//   node tokenize-hf.js tiktoken-gpt2 - jsonl|lines FILE        -> the same with js-tiktoken's gpt2
//   node tokenize-hf.js gpt3enc - jsonl|lines FILE              -> the same with gpt-3-encoder
//   node tokenize-hf.js bench TOKENIZER.json FILE               -> MB/s of encoding FILE's lines (JSON)
//                                                                  (TOKENIZERS_PARALLELISM=false: one thread)
// Documents: "jsonl" reads {"text": ...} per line; "lines" splits the raw bytes on \n (dropping a \r before
// it and empty lines) and decodes each with the WHATWG UTF-8 decoder (invalid bytes -> U+FFFD).
const fs = require("fs");
const [kind, tok, mode, file] = process.argv.slice(2);

function docs(mode, file) {
  const buf = fs.readFileSync(file);
  if (mode === "jsonl")
    return buf.toString("utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l).text);
  const out = [];
  let s = 0;
  for (let i = 0; i <= buf.length; i++) {
    if (i === buf.length || buf[i] === 0x0a) {
      let e = i;
      if (e > s && buf[e - 1] === 0x0d) e--;
      if (e > s) out.push(new TextDecoder("utf-8").decode(buf.subarray(s, e)));
      s = i + 1;
    }
  }
  return out;
}

async function main() {
  if (kind === "bench") {
    // MB/s of Hugging Face's encodeBatch over the lines of FILE (text bytes, newlines not counted), best of 3.
    // TOKENIZERS_PARALLELISM=false runs it on one thread, true on all (rayon).
    const { Tokenizer } = require("@anush008/tokenizers");
    const t = Tokenizer.fromFile(tok);
    const lines = docs("lines", mode);
    let bytes = 0;
    for (const l of lines) bytes += Buffer.byteLength(l);
    const B = 1024;
    let best = Infinity, ntok = 0;
    for (let r = 0; r < 3; r++) {
      const t0 = process.hrtime.bigint();
      ntok = 0;
      for (let i = 0; i < lines.length; i += B) {
        const encs = await t.encodeBatch(lines.slice(i, i + B), { addSpecialTokens: false });
        for (const e of encs) ntok += e.getIds().length;
      }
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    console.log(JSON.stringify({ bytes, seconds: best, tokens: ntok, mbps: bytes / 1e6 / best }));
    return;
  }
  const ds = docs(mode, file);
  const out = [];
  if (kind === "hf") {
    const { Tokenizer } = require("@anush008/tokenizers");
    const t = Tokenizer.fromFile(tok);
    for (const d of ds) out.push((await t.encode(d, null, { addSpecialTokens: false })).getIds().join(" "));
  } else if (kind === "tiktoken-gpt2") {
    const { getEncoding } = require("js-tiktoken");
    const e = getEncoding("gpt2");
    for (const d of ds) out.push(e.encode(d, [], []).join(" "));
  } else if (kind === "gpt3enc") {
    const { encode } = require("gpt-3-encoder");
    for (const d of ds) out.push(encode(d).join(" "));
  } else {
    throw new Error("unknown kind " + kind);
  }
  process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
}
main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
