// Loads a GGUF file in the real llama.cpp (node-llama-cpp's prebuilt CPU binary, never built from
// source) and writes JSON: for each token sequence, llama.cpp's raw next-token logits at every
// position; for each text, llama.cpp's tokenization (no BOS, special tokens parsed).
// Usage: node llama_cpp_eval.mjs MODEL.gguf REQUEST.json OUT.json
//   REQUEST.json: {"sequences": [[ids...], ...], "texts": ["...", ...]}
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const [modelPath, requestPath, outPath] = process.argv.slice(2);
const npmDir = process.env.ESCALE_GGUF_NPM || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../build/gguf-npm");
const require = createRequire(path.join(npmDir, "package.json"));
const { getLlama } = await import(require.resolve("node-llama-cpp"));

const req = JSON.parse(fs.readFileSync(requestPath, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const out = { vocab: model.tokens.vocabularyType ?? null, logits: [], tokens: [] };
for (const text of req.texts ?? []) out.tokens.push(Array.from(model.tokenize(text, true)));
const seqs = req.sequences ?? [];
if (seqs.length > 0) {
  const n = Math.max(...seqs.map((s) => s.length));
  const context = await model.createContext({ sequences: seqs.length, contextSize: Math.max(64, n + 8), batchSize: Math.max(64, n + 8), threads: 1,
    // f32 cache and no flash attention: the default f16 cache alone moves logits by ~1e-3.
    flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" });
  for (const ids of seqs) {
    const sequence = context.getSequence();
    const input = ids.map((t) => [t, { generateNext: { logits: true } }]);
    const res = await sequence.controlledEvaluate(input);
    const rows = [];
    for (let i = 0; i < ids.length; ++i) {
      const row = new Array(model.tokens.vocabSize ?? 0).fill(null);
      for (const [tok, v] of res[i].next.logits) row[tok] = v;
      rows.push(row);
    }
    out.logits.push(rows);
    sequence.dispose();
  }
  await context.dispose();
}
fs.writeFileSync(outPath, JSON.stringify(out));
await model.dispose();
await llama.dispose();
