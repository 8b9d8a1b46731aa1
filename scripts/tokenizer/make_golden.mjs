// Golden token ids from two independent implementations of Hugging Face tokenizers:
//   * @anush008/tokenizers: Node bindings of the Rust `tokenizers` crate (0.22), Oniguruma regexes;
//   * @huggingface/tokenizers: the pure-JS tokenizer of transformers.js.
// For every tokenizer.json given, writes tests/tokenizer/data/golden_<name>.json with the texts,
// the Rust ids (the reference) and whether transformers.js agrees. For SentencePiece-style
// tokenizers (no ByteLevel decoder, e.g. Llama 2) each case also holds the Rust decoder's text of
// the ids (`decoded`), since their decode is not the identity, and a few extra texts around
// their special tokens and U+2581.
//
//   scripts/tokenizer/fetch_tokenizers.sh
//   NODE_PATH=build/tokenizer-npm/node_modules node scripts/tokenizer/make_golden.mjs \
//       llama3=build/tokenizers/llama3 qwen3=build/tokenizers/qwen3
//
// Also: `node make_golden.mjs --encode DIR FILE` prints the Rust ids of FILE's text (one JSON
// array), used by the trainer round-trip check.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';

const require = createRequire(resolve(process.env.NODE_PATH || 'build/tokenizer-npm/node_modules', 'x.js'));
const rust = require('@anush008/tokenizers');
const jsPath = require.resolve('@huggingface/tokenizers');
const { Tokenizer: JsTokenizer } = await import(jsPath.replace(/\.cjs$/, '.mjs'));

// Deterministic PRNG (mulberry32) so the random cases are the same on every run.
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HANDWRITTEN = [
  'Hello world!',
  "DON'T you think it's fine? I'M sure we'll've... they'RE here; She'd go. It'S",
  'The quick brown fox jumps over the lazy dog. 1234567890 12 123 1234 3.14159 -42 1e-9',
  '你好，世界！这是一个测试。大语言模型的分词器。',
  '日本語のテキストとカタカナ、ひらがな。한국어 문장입니다. Привет, мир! مرحبا بالعالم',
  'def f(x):\n    return x**2  # square\n\tif x>0:\n\t\tprint("pos")\r\n}\n',
  'for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; } // C++\n',
  'emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇩🇪 ❤️ ✨',
  'spaces:   three   then\t\ttabs\n\n\nnewlines \r\n\r\n end   ',
  '    leading and trailing    ',
  'NFC: e\u0301 vs \u00e9, A\u030a vs \u00c5, \u1100\u1161 Hangul jamo, \u212b angstrom',
  'unicode spaces:\u00a0nbsp\u2009thin\u3000ideographic\u0085nel\u2028ls',
  'numbers: \uff11\uff12\uff13 fullwidth, \u2167 roman, x\u00b2 superscript, \u0663\u0664 arabic-indic',
  "case folding: '\u017f 'S '\u212a 's",
  '<|begin_of_text|>Hello<|eot_id|> <|end_of_text|><|im_start|>user\nhi<|im_end|>\n<|endoftext|>',
  '<think>\nreasoning\n</think> <tool_call>{"a":1}</tool_call>',
  'almost <|eot_id| special <|im_end and <|endoftext|x',
  'replacement char: \ufffd and BOM \ufeff and zero width \u200b joiner \u200d',
  'URLs: https://example.com/path?q=1&r=2#frag email@example.org',
  '',
  ' ',
  '\n',
  'a',
  "'",
  "''''",
  '...!!!???',
  'x'.repeat(300),
  ' '.repeat(50) + 'word' + ' '.repeat(50),
];

const POOLS = [
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123456789', ' ', ' ', '  ', '\t', '\n', '\r\n',
  '.,;:!?-_()[]{}<>/\\|@#$%^&*+=~`"', "'", "'s", "'T", "'re", "'VE", "'m", "'ll", "'D",
  '的一是不了人我在有他这为之大来以个中上们', 'あいうえおカキクケコ', '가나다라마바사', 'абвгдеёжзийк', 'αβγδεζηθ',
  'مرحبا', 'שלום', 'हिन्दी', 'ไทย', 'e\u0301', '\u0301', '\u00e9', '\u00a0', '\u2009', '\u3000', '\u0085',
  '\u00b2', '\u2167', '\uff11', '\u0663', '\u017f', '\u212a', '\u00df',
  '😀', '👍🏽', '👨‍👩‍👧', '🇯🇵', '\u200d', '\ufe0f', '\ufffd',
  '<|eot_id|>', '<|endoftext|>', '<|im_start|>', '<think>', '<|begin_of_text|>',
];

function randomCases(count, seed) {
  const r = rng(seed);
  const out = [];
  for (let c = 0; c < count; ++c) {
    const n = 1 + Math.floor(r() * 40);
    let s = '';
    for (let i = 0; i < n; ++i) {
      const pool = POOLS[Math.floor(r() * POOLS.length)];
      const chars = [...pool];
      if (pool.length > 3 && !pool.startsWith('<') && !pool.startsWith("'")) {
        const k = 1 + Math.floor(r() * 6);
        for (let j = 0; j < k; ++j) s += chars[Math.floor(r() * chars.length)];
      } else {
        s += pool;
      }
    }
    out.push(s);
  }
  return out;
}

// Extra texts for SentencePiece-style tokenizers: special tokens next to text and spaces (the
// Prepend normalizer runs on every piece between them), U+2581 in the input, unknown characters.
const SPM_EXTRA = [
  '<s>Hello</s> <unk>',
  ' <s> x </s>',
  '<s>',
  'a<s>b',
  'x\u2581y \u2581\u2581 z\u2581',
  '\u2581',
  '  two leading spaces',
  'trailing spaces  ',
  'tab\there',
  '\u{10FFFF}\u{E000} private use, \u0000 nul, \u007f del',
  'ǅ ǈ Ǌ title case, \u{1D400}\u{1D401} math bold',
];

async function rustIds(tok, text, addSpecial) {
  const e = await tok.encode(text, null, { addSpecialTokens: addSpecial });
  return e.getIds();
}

async function makeGolden(name, dir) {
  const jsonPath = join(dir, 'tokenizer.json');
  const raw = readFileSync(jsonPath);
  const sha256 = createHash('sha256').update(raw).digest('hex');
  const rtok = rust.Tokenizer.fromFile(jsonPath);
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  const jtok = new JsTokenizer(JSON.parse(raw.toString('utf8')), config);
  const spm = JSON.parse(raw.toString('utf8')).decoder?.type !== 'ByteLevel';
  const texts = [...HANDWRITTEN, ...randomCases(300, 20240520), ...(spm ? SPM_EXTRA : [])];
  const cases = [];
  let disagree = 0;
  for (const text of texts) {
    const ids = await rustIds(rtok, text, false);
    let js = null;
    try {
      js = Array.from(jtok.encode(text, { add_special_tokens: false }).ids);
    } catch (e) {
      js = null;
    }
    const jsAgrees = js !== null && js.length === ids.length && js.every((v, i) => v === ids[i]);
    if (!jsAgrees) ++disagree;
    const decoded = spm ? { decoded: await rtok.decode(ids, false) } : {};
    cases.push({ text, ids, ...decoded, js_agrees: jsAgrees, ...(jsAgrees ? {} : { js_ids: js }) });
  }
  // One case with the post-processor applied (BOS for templates that add it).
  const withSpecial = { text: 'Hello world', ids: await rustIds(rtok, 'Hello world', true) };
  if (spm) {
    withSpecial.decoded = await rtok.decode(withSpecial.ids, false);
    withSpecial.decoded_skip_special = await rtok.decode(withSpecial.ids, true);
  }
  const out = {
    tokenizer: name,
    tokenizer_sha256: sha256,
    generator: 'scripts/tokenizer/make_golden.mjs',
    reference: '@anush008/tokenizers 0.6.0 (Rust tokenizers 0.22)',
    cross_check: '@huggingface/tokenizers 0.2.0 (transformers.js)',
    js_disagreements: disagree,
    add_special_tokens_case: withSpecial,
    cases,
  };
  const path = `tests/tokenizer/data/golden_${name}.json`;
  writeFileSync(path, JSON.stringify(out, null, 0).replace(/\},\{/g, '},\n{') + '\n');
  console.log(`${path}: ${cases.length} cases, transformers.js disagrees on ${disagree}`);
}

const args = process.argv.slice(2);
if (args[0] === '--encode') {
  const tok = rust.Tokenizer.fromFile(join(args[1], 'tokenizer.json'));
  const text = readFileSync(args[2], 'utf8');
  console.log(JSON.stringify(await rustIds(tok, text, false)));
} else {
  for (const a of args) {
    const [name, dir] = a.split('=');
    await makeGolden(name, dir);
  }
}
