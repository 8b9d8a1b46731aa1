// Tokenizer throughput of two independent implementations of Hugging Face tokenizers, the
// baseline of `escale bench tokenize` (which runs this script and checks the token counts):
//   * js:          @huggingface/tokenizers (transformers.js's pure-JS tokenizer), encode() per
//                  document, one thread (JavaScript's main thread);
//   * rust-encode: @anush008/tokenizers (Node bindings of the Rust `tokenizers` crate), one
//                  awaited encode() per document: one call in flight, so one encoding thread, plus
//                  the N-API round trip of every call;
//   * rust-batch:  the same bindings, one encodeBatch() over all documents: the crate encodes the
//                  batch on its rayon pool, RAYON_NUM_THREADS threads (escale sets it to --workers).
//
//   NODE_PATH=build/tokenizer-npm/node_modules RAYON_NUM_THREADS=2 \
//     node scripts/bench/tokenize_baseline.mjs --tokenizer T.json --input FILE [--repeat R] \
//     [--impls js,rust-encode,rust-batch]
//
// Documents are split exactly as escale's DocumentReader does: a .jsonl file is one document per
// non-blank line (its "text" field), any other file is one document (its bytes as UTF-8). Special
// token strings are split out of the text (the libraries' default; escale bench tokenize does the
// same). Timing excludes loading; `seconds` is the best of R passes (wall clock), `cpu_seconds`
// the process CPU time (all threads) of that pass. Prints one JSON line per implementation on
// stdout. Exits 3 with one line on stderr when node cannot load the packages (escale then skips
// the baseline), 2 on a bad command line or input.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

function fail(code, msg) {
  process.stderr.write(`tokenize_baseline: ${msg}\n`);
  process.exit(code);
}

function parseArgs(argv) {
  const a = { tokenizer: null, input: null, repeat: 3, impls: ['js', 'rust-encode', 'rust-batch'] };
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i], v = argv[i + 1];
    if (k === '--tokenizer') { a.tokenizer = v; ++i; }
    else if (k === '--input') { a.input = v; ++i; }
    else if (k === '--repeat') { a.repeat = Number(v); ++i; }
    else if (k === '--impls') { a.impls = String(v).split(','); ++i; }
    else fail(2, `unknown argument ${k}`);
  }
  if (!a.tokenizer || !a.input) fail(2, 'need --tokenizer T.json and --input FILE');
  if (!Number.isInteger(a.repeat) || a.repeat < 1) fail(2, '--repeat must be a positive integer');
  for (const impl of a.impls) {
    if (!['js', 'rust-encode', 'rust-batch'].includes(impl)) fail(2, `unknown implementation ${impl}`);
  }
  return a;
}

function readDocuments(path) {
  let raw;
  try {
    raw = readFileSync(path);
  } catch (e) {
    fail(2, `cannot read ${path}: ${e.message}`);
  }
  if (!path.endsWith('.jsonl')) return [raw.toString('utf8')];
  const docs = [];
  const lines = raw.toString('utf8').split('\n');
  for (let i = 0; i < lines.length; ++i) {
    if (/^[ \t\r\n]*$/.test(lines[i])) continue;
    let j;
    try {
      j = JSON.parse(lines[i]);
    } catch (e) {
      fail(2, `${path}:${i + 1}: not a JSON object`);
    }
    if (typeof j !== 'object' || j === null || typeof j.text !== 'string') {
      fail(2, `${path}:${i + 1}: no string field "text"`);
    }
    docs.push(j.text);
  }
  return docs;
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function now() {
  return Number(process.hrtime.bigint()) / 1e9;
}

// Best (lowest wall clock) of `repeat` passes of `pass`, which returns the token count.
async function measure(repeat, pass) {
  let best = null;
  for (let r = 0; r < repeat; ++r) {
    const c0 = cpuSeconds(), t0 = now();
    const tokens = await pass();
    const seconds = now() - t0, cpu = cpuSeconds() - c0;
    if (best === null || seconds < best.seconds) best = { tokens, seconds, cpu_seconds: cpu };
  }
  return best;
}

// Read from node_modules directly: @huggingface/tokenizers does not export its package.json.
function version(modules, pkg) {
  return JSON.parse(readFileSync(resolve(modules, pkg, 'package.json'), 'utf8')).version;
}

const args = parseArgs(process.argv.slice(2));
const modules = process.env.NODE_PATH || 'build/tokenizer-npm/node_modules';
const require = createRequire(resolve(modules, 'x.js'));
let rust, JsTokenizer, rustVersion, jsVersion;
try {
  rust = require('@anush008/tokenizers');
  rustVersion = version(modules, '@anush008/tokenizers');
  const jsPath = require.resolve('@huggingface/tokenizers');
  ({ Tokenizer: JsTokenizer } = await import(jsPath.replace(/\.cjs$/, '.mjs')));
  jsVersion = version(modules, '@huggingface/tokenizers');
} catch (e) {
  fail(3, `cannot load @anush008/tokenizers / @huggingface/tokenizers from ${modules} ` +
          '(run scripts/tokenizer/fetch_tokenizers.sh)');
}

const docs = readDocuments(args.input);
const bytes = docs.reduce((n, d) => n + Buffer.byteLength(d, 'utf8'), 0);
let tokenizerJson;
try {
  tokenizerJson = readFileSync(args.tokenizer, 'utf8');
} catch (e) {
  fail(2, `cannot read ${args.tokenizer}: ${e.message}`);
}
const rayonThreads = Number(process.env.RAYON_NUM_THREADS) || null;
const common = { node: process.version, bytes, documents: docs.length };

for (const impl of args.impls) {
  let loadSeconds, best, threads, ver, pkg;
  if (impl === 'js') {
    const t0 = now();
    const tok = new JsTokenizer(JSON.parse(tokenizerJson), {});
    loadSeconds = now() - t0;
    best = await measure(args.repeat, () => {
      let n = 0;
      for (const d of docs) n += tok.encode(d, { add_special_tokens: false }).ids.length;
      return n;
    });
    threads = 1;
    pkg = '@huggingface/tokenizers';
    ver = jsVersion;
  } else {
    const t0 = now();
    const tok = rust.Tokenizer.fromString(tokenizerJson);
    loadSeconds = now() - t0;
    if (impl === 'rust-encode') {
      best = await measure(args.repeat, async () => {
        let n = 0;
        for (const d of docs) n += (await tok.encode(d, null, { addSpecialTokens: false })).getIds().length;
        return n;
      });
      threads = 1;
    } else {
      best = await measure(args.repeat, async () => {
        const encs = await tok.encodeBatch(docs, { addSpecialTokens: false });
        let n = 0;
        for (const e of encs) n += e.getIds().length;
        return n;
      });
      threads = rayonThreads ?? 'rayon default (all cores)';
    }
    pkg = '@anush008/tokenizers';
    ver = rustVersion;
  }
  process.stdout.write(JSON.stringify({
    impl, package: pkg, version: ver, ...common, tokens: best.tokens, seconds: best.seconds,
    cpu_seconds: best.cpu_seconds, threads, repeat: args.repeat, load_seconds: loadSeconds,
  }) + '\n');
}
