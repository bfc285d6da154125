// export-llamacpp.mjs GGUF [PROMPT [N | first]]: load a GGUF with llama.cpp itself (npm node-llama-cpp, prebuilt
// CPU binary; module directory in NODE_LLAMA_CPP) and print one JSON line: the architecture llama.cpp loaded,
// the ids llama.cpp's tokenizer gives PROMPT (without BOS), and with N its greedy completion of PROMPT (N tokens,
// temperature 0); with "first", the ids of PROMPT with special tokens parsed ("<|mask|>" is the mask token) and
// the token llama.cpp picks from the logits at the last of them, as one batch (for a non-causal model: with
// attention over the whole prompt). A model llama.cpp cannot load makes this exit non-zero.
const { getLlama, LlamaCompletion } = await import(process.env.NODE_LLAMA_CPP + "/dist/index.js");
const [file, prompt, n] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: file });
const out = { arch: model.fileInfo.metadata.general.architecture };
if (prompt !== undefined) out.ids = Array.from(model.tokenize(prompt, n === "first"));
if (n === "first") {
  const ctx = await model.createContext({ contextSize: 64, threads: 1 });
  for await (const t of ctx.getSequence().evaluate(out.ids, { temperature: 0 })) { out.first = t; break; }
  await ctx.dispose();
} else if (n) {
  const ctx = await model.createContext({ contextSize: 256, threads: 1 });
  const comp = new LlamaCompletion({ contextSequence: ctx.getSequence() });
  out.text = await comp.generateCompletion(prompt, { maxTokens: Number(n), temperature: 0 });
  await ctx.dispose();
}
console.log(JSON.stringify(out));
await model.dispose();
await llama.dispose();
