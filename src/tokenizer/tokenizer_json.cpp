// tokenizer.json -> TokenizerImpl. Two kinds of BPE load: byte-level (GPT-2, Llama 3, Qwen2: a
// ByteLevel pre-tokenizer) and SentencePiece-style (Llama 2, Mistral v0.1: literal vocabulary with
// byte fallback, Prepend/Replace normalizer or Metaspace pre-tokenizer). Anything else is refused
// with a clear Unsupported error instead of being encoded differently from Hugging Face.
#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "core/json_text.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"

namespace escale::tok {

using nlohmann::json;

namespace {

constexpr int64_t kMaxId = 1 << 24;  // far above any real vocabulary; bounds table sizes

// The GPT-2 pattern tokenizers' ByteLevel pre-tokenizer uses when use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string TypeOf(const json& j) {
  if (!j.is_object()) return "";
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// A Replace/Split pattern given as {"String": ...}; regex patterns are not supported here.
Result<std::string> LiteralPattern(const json& pattern, const std::string& what) {
  if (pattern.is_object() && pattern.contains("String"))
    return pattern.at("String").get<std::string>();
  return Unsupported(what + " with a Regex pattern is not supported (only {\"String\": ...})");
}

Status LoadNormalizer(const json& j, TokenizerImpl& t) {
  if (j.is_null()) return Status::Ok();
  const std::string type = TypeOf(j);
  if (type == "NFC") {
    t.norm.push_back({NormStep::Kind::kNfc, "", ""});
    return Status::Ok();
  }
  if (type == "Prepend") {
    t.norm.push_back({NormStep::Kind::kPrepend, j.at("prepend").get<std::string>(), ""});
    return Status::Ok();
  }
  if (type == "Replace") {
    ESCALE_ASSIGN_OR_RETURN(std::string pat, LiteralPattern(j.at("pattern"), "Replace normalizer"));
    if (pat.empty())
      return Unsupported("Replace normalizer with an empty pattern is not supported");
    t.norm.push_back(
        {NormStep::Kind::kReplace, std::move(pat), j.at("content").get<std::string>()});
    return Status::Ok();
  }
  if (type == "Sequence") {
    for (const json& n : j.at("normalizers")) ESCALE_RETURN_IF_ERROR(LoadNormalizer(n, t));
    return Status::Ok();
  }
  return Unsupported(
      "normalizer '" + type +
      "' is not supported (only NFC, Prepend, Replace or none: byte-level BPE such as "
      "GPT-2, Llama 3, Qwen2, and SentencePiece-style BPE such as Llama 2, Mistral)");
}

// A ByteLevel step anywhere in a pre-tokenizer or decoder (Sequences included).
bool HasByteLevel(const json& j) {
  if (TypeOf(j) == "ByteLevel") return true;
  if (TypeOf(j) != "Sequence") return false;
  for (const char* key : {"pretokenizers", "decoders"}) {
    if (!j.contains(key)) continue;
    for (const json& p : j.at(key)) {
      if (HasByteLevel(p)) return true;
    }
  }
  return false;
}

Status LoadMetaspace(const json& j, TokenizerImpl& t) {
  if (t.metaspace || !t.pretok.empty()) {
    return Unsupported(
        "Metaspace pre-tokenizer combined with other pre-tokenizer steps is not supported");
  }
  MetaspaceStep m;
  m.replacement = j.value("replacement", m.replacement);
  if (m.replacement.empty()) return FormatError("Metaspace replacement is empty");
  m.split = j.value("split", true);
  if (j.contains("prepend_scheme") && j.at("prepend_scheme").is_string()) {
    const std::string p = j.at("prepend_scheme").get<std::string>();
    if (p == "always")
      m.prepend = MetaspaceStep::Prepend::kAlways;
    else if (p == "first")
      m.prepend = MetaspaceStep::Prepend::kFirst;
    else if (p == "never")
      m.prepend = MetaspaceStep::Prepend::kNever;
    else
      return FormatError("Metaspace prepend_scheme '" + p + "' is not always, first or never");
  } else {
    // Files written before prepend_scheme existed say add_prefix_space.
    m.prepend = j.value("add_prefix_space", true) ? MetaspaceStep::Prepend::kAlways
                                                  : MetaspaceStep::Prepend::kNever;
  }
  t.metaspace = std::move(m);
  return Status::Ok();
}

Status LoadDecoder(const json& j, TokenizerImpl& t) {
  if (j.is_null()) return Status::Ok();
  const std::string type = TypeOf(j);
  t.has_decoder = true;
  DecodeStep d;
  if (type == "Sequence") {
    for (const json& p : j.at("decoders")) ESCALE_RETURN_IF_ERROR(LoadDecoder(p, t));
    return Status::Ok();
  }
  if (type == "Replace") {
    d.kind = DecodeStep::Kind::kReplace;
    ESCALE_ASSIGN_OR_RETURN(d.a, LiteralPattern(j.at("pattern"), "Replace decoder"));
    if (d.a.empty()) return Unsupported("Replace decoder with an empty pattern is not supported");
    d.b = j.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    d.kind = DecodeStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    d.kind = DecodeStep::Kind::kFuse;
  } else if (type == "Strip") {
    d.kind = DecodeStep::Kind::kStrip;
    d.a = j.at("content").get<std::string>();
    d.start = j.value("start", 0);
    d.stop = j.value("stop", 0);
    if (d.start < 0 || d.stop < 0)
      return FormatError("Strip decoder start/stop must not be negative");
  } else if (type == "Metaspace") {
    d.kind = DecodeStep::Kind::kMetaspace;
    d.a = j.value("replacement", std::string("\xe2\x96\x81"));
    if (d.a.empty()) return FormatError("Metaspace decoder replacement is empty");
    if (j.contains("prepend_scheme") && j.at("prepend_scheme").is_string()) {
      d.strip_first = j.at("prepend_scheme").get<std::string>() != "never";
    } else {
      d.strip_first = j.value("add_prefix_space", true);
    }
  } else {
    return Unsupported(
        "decoder '" + type +
        "' is not supported for SentencePiece-style BPE (only Replace, ByteFallback, "
        "Fuse, Strip and Metaspace)");
  }
  t.decoder.push_back(std::move(d));
  return Status::Ok();
}

Result<std::shared_ptr<const Regex>> CompileSplitPattern(const json& pattern) {
  if (pattern.contains("Regex")) return Regex::Compile(pattern.at("Regex").get<std::string>());
  if (pattern.contains("String")) {
    // A literal: escape every ASCII punctuation character for PCRE2.
    std::string lit = pattern.at("String").get<std::string>(), re;
    for (char c : lit) {
      if (std::ispunct(static_cast<unsigned char>(c)) != 0) re.push_back('\\');
      re.push_back(c);
    }
    return Regex::Compile(re);
  }
  return FormatError("Split pre-tokenizer pattern needs a 'Regex' or 'String' key");
}

Status LoadPreTokenizer(const json& j, TokenizerImpl& t, bool& byte_level) {
  if (j.is_null()) return Status::Ok();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    for (const json& p : j.at("pretokenizers"))
      ESCALE_RETURN_IF_ERROR(LoadPreTokenizer(p, t, byte_level));
    return Status::Ok();
  }
  if (type == "Metaspace") {
    if (!t.literal)
      return Unsupported("Metaspace pre-tokenizer together with ByteLevel is not supported");
    return LoadMetaspace(j, t);
  }
  if (type == "ByteLevel") {
    byte_level = true;
    if (j.value("add_prefix_space", false)) {
      if (!t.pretok.empty()) {
        return Unsupported(
            "ByteLevel pre-tokenizer with add_prefix_space after another "
            "pre-tokenizer step is not supported");
      }
      t.prefix_space = true;
    }
    if (j.value("use_regex", true)) {
      ESCALE_ASSIGN_OR_RETURN(auto re, Regex::Compile(kGpt2Pattern));
      t.pretok.push_back(
          {PreTokStep::Kind::kByteLevelRegex, std::move(re), SplitBehavior::kIsolated});
    }
    return Status::Ok();
  }
  if (type == "Split") {
    if (t.literal) {
      return Unsupported(
          "Split pre-tokenizer in a SentencePiece-style (non-ByteLevel) tokenizer is "
          "not supported");
    }
    if (j.value("invert", false))
      return Unsupported("Split pre-tokenizer with invert=true is not supported");
    const std::string b = j.value("behavior", "Isolated");
    SplitBehavior behavior;
    if (b == "Isolated")
      behavior = SplitBehavior::kIsolated;
    else if (b == "Removed")
      behavior = SplitBehavior::kRemoved;
    else if (b == "MergedWithPrevious")
      behavior = SplitBehavior::kMergedWithPrevious;
    else if (b == "MergedWithNext")
      behavior = SplitBehavior::kMergedWithNext;
    else
      return Unsupported("Split behavior '" + b + "' is not supported");
    ESCALE_ASSIGN_OR_RETURN(auto re, CompileSplitPattern(j.at("pattern")));
    t.pretok.push_back({PreTokStep::Kind::kSplit, std::move(re), behavior});
    return Status::Ok();
  }
  return Unsupported(
      "pre-tokenizer '" + type +
      "' is not supported (only Split + ByteLevel, or Metaspace for SentencePiece-style BPE)");
}

// Template post-processing ("$A" plus special tokens around it) for single sequences.
Status LoadPostProcessor(const json& j, TokenizerImpl& t) {
  if (j.is_null()) return Status::Ok();
  const std::string type = TypeOf(j);
  if (type == "ByteLevel") return Status::Ok();  // only adjusts offsets
  if (type == "Sequence") {
    for (const json& p : j.at("processors")) ESCALE_RETURN_IF_ERROR(LoadPostProcessor(p, t));
    return Status::Ok();
  }
  if (type == "TemplateProcessing") {
    const json& specials = j.at("special_tokens");
    bool seen_a = false;
    for (const json& piece : j.at("single")) {
      if (piece.contains("Sequence")) {
        seen_a = true;
        continue;
      }
      const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
      if (!specials.contains(name)) {
        return FormatError("post_processor template names special token '" + name +
                           "' missing from its special_tokens");
      }
      auto& dst = seen_a ? t.template_suffix : t.template_prefix;
      for (const json& id : specials.at(name).at("ids")) {
        const int64_t v = id.get<int64_t>();
        if (v < 0 || v >= static_cast<int64_t>(t.id_bytes.size())) {
          return FormatError("post_processor special token id " + std::to_string(v) +
                             " is out of range");
        }
        dst.push_back(static_cast<int32_t>(v));
      }
    }
    return Status::Ok();
  }
  return Unsupported("post_processor '" + type + "' is not supported");
}

void BuildMatcher(const TokenizerImpl& t, bool normalized, AddedMatcher& m) {
  for (size_t i = 0; i < t.added.size(); ++i) {
    if (t.added[i].normalized != normalized || t.added[i].content.empty()) continue;
    m.tokens.push_back(static_cast<int32_t>(i));
    m.first_byte[static_cast<unsigned char>(t.added[i].content[0])] = true;
  }
  std::stable_sort(m.tokens.begin(), m.tokens.end(), [&](int32_t a, int32_t b) {
    return t.added[a].content.size() > t.added[b].content.size();
  });
}

std::optional<std::string> ConfigTokenName(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && it->at("content").is_string()) {
    return it->at("content").get<std::string>();
  }
  return std::nullopt;
}

// The BPE model's options, and whether its vocabulary is SentencePiece-style text or byte-level.
Status LoadModelOptions(const json& root, const json& model, TokenizerImpl& t) {
  // SentencePiece-style when neither the pre-tokenizer nor the decoder is ByteLevel.
  t.literal = !HasByteLevel(root.value("pre_tokenizer", json())) &&
              !HasByteLevel(root.value("decoder", json()));
  t.bpe.literal = t.literal;
  t.bpe.byte_fallback = model.value("byte_fallback", false);
  t.bpe.fuse_unk = model.value("fuse_unk", false);
  if (t.bpe.byte_fallback && !t.literal) {
    return Unsupported(
        "BPE byte_fallback together with a ByteLevel pre-tokenizer is not supported");
  }
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(k) && model.at(k).is_string() && !model.at(k).get<std::string>().empty()) {
      return Unsupported(std::string("BPE ") + k + " is not supported");
    }
  }
  if (model.contains("dropout") && model.at("dropout").is_number() &&
      model.at("dropout").get<double>() > 0) {
    return Unsupported("BPE dropout is training-time only; set it to null");
  }
  t.bpe.ignore_merges = model.value("ignore_merges", false);

  return Status::Ok();
}

// model.vocab and the ids of added_tokens: checked ids, the id tables sized to them, each
// vocabulary token's bytes. in_vocab marks the ids model.vocab defines.
Status LoadVocabulary(const json& model, const json& added, TokenizerImpl& t,
                      std::vector<uint8_t>& in_vocab) {
  const json& vocab = model.at("vocab");
  if (!vocab.is_object()) return FormatError("model.vocab must be an object of token -> id");
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer())
      return FormatError("model.vocab['" + it.key() + "'] is not an integer");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= kMaxId)
      return FormatError("model.vocab id " + std::to_string(id) + " is out of range");
    max_id = std::max(max_id, id);
  }
  for (const json& a : added) {
    const int64_t id = a.at("id").get<int64_t>();
    if (id < 0 || id >= kMaxId)
      return FormatError("added token id " + std::to_string(id) + " is out of range");
    max_id = std::max(max_id, id);
  }
  // Ids index dense tables: refuse files whose ids are far sparser than their entries, so a
  // malformed file cannot make us allocate gigabytes.
  const auto entries = static_cast<int64_t>(vocab.size() + added.size());
  if (max_id >= 2 * entries + 65536) {
    return FormatError("token id " + std::to_string(max_id) + " is far beyond the " +
                       std::to_string(entries) + " tokens defined (ids must be dense)");
  }
  const size_t n = static_cast<size_t>(max_id + 1);
  t.id_bytes.assign(n, std::string());
  t.id_token.assign(n, std::string());
  t.id_special.assign(n, 0);
  std::fill(std::begin(t.bpe.byte_id), std::end(t.bpe.byte_id), -1);
  t.bpe.bytes_to_id.Reserve(vocab.size());
  t.token_to_id.reserve(vocab.size() + added.size());
  in_vocab.assign(n, 0);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    const std::string& token = it.key();
    // One id, two tokens: decoding would pick one of them silently.
    if (in_vocab[static_cast<size_t>(id)])
      return FormatError("model.vocab gives id " + std::to_string(id) + " to both '" +
                         t.id_token[id] + "' and '" + token + "'");
    in_vocab[static_cast<size_t>(id)] = 1;
    t.id_token[id] = token;
    t.token_to_id[token] = id;
    std::string bytes;
    if (t.literal) {
      // SentencePiece-style: the vocabulary string is the text itself.
      t.bpe.bytes_to_id.InsertOrAssign(token, {static_cast<uint32_t>(id), 0});
      if (token.size() == 1) t.bpe.byte_id[static_cast<unsigned char>(token[0])] = id;
      t.id_bytes[id] = token;
    } else if (ByteLevelToBytes(token, bytes)) {
      t.bpe.bytes_to_id.InsertOrAssign(bytes, {static_cast<uint32_t>(id), 0});
      if (bytes.size() == 1) t.bpe.byte_id[static_cast<unsigned char>(bytes[0])] = id;
      t.id_bytes[id] = std::move(bytes);
    } else {
      // As the ByteLevel decoder does: characters outside the byte alphabet stand for themselves.
      std::string out;
      for (size_t i = 0; i < token.size();) {
        size_t len = Utf8SequenceLength(token, i);
        if (len == 0) len = 1;
        std::string one;
        if (!ByteLevelToBytes(token.substr(i, len), one)) one = token.substr(i, len);
        out += one;
        i += len;
      }
      t.id_bytes[id] = std::move(out);
    }
  }

  return Status::Ok();
}

// SentencePiece's byte-fallback tokens <0xNN>, and the unknown token.
Status LoadFallbackAndUnknown(const json& model, TokenizerImpl& t) {
  std::fill(std::begin(t.bpe.fallback_id), std::end(t.bpe.fallback_id), -1);
  if (t.literal) {
    static const char* kHex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const std::string name = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
      if (const StringTable::Value* v = t.bpe.bytes_to_id.Find(name)) {
        t.bpe.fallback_id[b] = static_cast<int32_t>(v->a);
      }
    }
  }
  if (model.contains("unk_token") && model.at("unk_token").is_string()) {
    const std::string unk = model.at("unk_token").get<std::string>();
    auto it = t.token_to_id.find(unk);
    if (it == t.token_to_id.end()) {
      return FormatError("model.unk_token '" + unk + "' is not in model.vocab");
    }
    t.bpe.unk_id = it->second;
  }

  return Status::Ok();
}

// merge_sides: every id used as a merge's left or right side.
Status LoadMerges(const json& model, TokenizerImpl& t, std::vector<int32_t>& merge_sides) {
  // Merges: "a b" strings (legacy) or ["a", "b"] pairs; rank = position.
  const json& merges = model.contains("merges") ? model.at("merges") : json::array();
  if (!merges.is_array()) return FormatError("model.merges must be an array");
  t.bpe.merges.Reserve(merges.size());
  int32_t rank = 0;
  merge_sides.reserve(2 * merges.size());
  std::string_view a, b;
  std::string ab;
  for (const json& m : merges) {
    if (m.is_string()) {
      const std::string_view s = m.get_ref<const std::string&>();
      if (s.substr(0, 8) == "#version") continue;
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return FormatError("merge " + std::to_string(rank + 1) + " ('" + std::string(s) +
                           "') is not two tokens separated by one space");
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get_ref<const std::string&>();
      b = m[1].get_ref<const std::string&>();
    } else {
      return FormatError("merge " + std::to_string(rank + 1) +
                         " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    ab.assign(a).append(b);
    auto ia = t.token_to_id.find(a), ib = t.token_to_id.find(b),
         iab = t.token_to_id.find(std::string_view(ab));
    if (ia == t.token_to_id.end() || ib == t.token_to_id.end() || iab == t.token_to_id.end()) {
      return FormatError("merge " + std::to_string(rank + 1) + " ('" + std::string(a) + "' + '" +
                         std::string(b) + "') uses a token missing from model.vocab");
    }
    t.bpe.merges.InsertOrAssign(BpeModel::Key(ia->second, ib->second),
                                MergeInfo{rank, iab->second});
    merge_sides.push_back(ia->second);
    merge_sides.push_back(ib->second);
    ++rank;
  }

  return Status::Ok();
}

Status LoadAddedTokens(const json& added, const std::vector<uint8_t>& in_vocab, TokenizerImpl& t) {
  const size_t n = t.id_token.size();
  // Added tokens: decode to their content; matched before the model sees the text. One may name
  // a vocabulary token again (Llama 2's <s>, GPT-2's <|endoftext|>), never take another's id.
  std::vector<uint8_t> is_added(n, 0);
  for (const json& a_tok : added) {
    AddedToken at;
    at.id = static_cast<int32_t>(a_tok.at("id").get<int64_t>());
    at.content = a_tok.at("content").get<std::string>();
    const auto idx = static_cast<size_t>(at.id);
    if (is_added[idx])
      return FormatError("added_tokens give id " + std::to_string(at.id) + " to both '" +
                         t.id_token[idx] + "' and '" + at.content + "'");
    is_added[idx] = 1;
    if (in_vocab[idx] && at.content != t.id_token[idx] && at.content != t.id_bytes[idx])
      return FormatError("added token '" + at.content + "' takes id " + std::to_string(at.id) +
                         ", which model.vocab gives to '" + t.id_token[idx] + "'");
    at.special = a_tok.value("special", false);
    at.normalized = a_tok.value("normalized", !at.special);
    at.lstrip = a_tok.value("lstrip", false);
    at.rstrip = a_tok.value("rstrip", false);
    at.single_word = a_tok.value("single_word", false);
    t.id_token[at.id] = at.content;
    t.id_bytes[at.id] = at.content;
    t.id_special[at.id] = at.special ? 1 : 0;
    t.token_to_id[at.content] = at.id;
    t.added.push_back(std::move(at));
  }
  return Status::Ok();
}

// SentencePiece-style only: the decoder, and where text may be cut before the model sees it.
Status LoadLiteralDecoding(const json& root, const json& vocab,
                           const std::vector<int32_t>& merge_sides, TokenizerImpl& t) {
  ESCALE_RETURN_IF_ERROR(LoadDecoder(root.value("decoder", json()), t));
  // Cutting before each U+2581 run that follows other text is exact when no token could span
  // such a cut (see TokenizerImpl::split_at_metaspace); ignore_merges looks at the whole segment.
  constexpr std::string_view kMeta = "\xe2\x96\x81";
  bool ok = !t.metaspace && !t.bpe.ignore_merges && t.bpe.bytes_to_id.Find(kMeta) != nullptr;
  for (auto it = vocab.begin(); ok && it != vocab.end(); ++it) {
    std::string_view tok = it.key();
    while (tok.substr(0, kMeta.size()) == kMeta) tok.remove_prefix(kMeta.size());
    if (tok.find(kMeta) != std::string_view::npos) ok = false;
  }
  t.split_at_metaspace = ok;
  // Only with all 256 byte tokens: else an unknown character leaves an unk pending, which
  // tokenizers emits after the byte tokens of the next character, across such a cut.
  const bool all_bytes = std::all_of(std::begin(t.bpe.fallback_id), std::end(t.bpe.fallback_id),
                                     [](int32_t id) { return id >= 0; });
  if (ok && t.bpe.byte_fallback && all_bytes) {
    std::vector<uint8_t> in_merge(t.id_bytes.size(), 0);
    for (int32_t id : merge_sides) in_merge[static_cast<size_t>(id)] = 1;
    for (int c = 0; c < 0x80; ++c) {
      const int32_t fb = t.bpe.fallback_id[c];
      t.cut_ascii[c] = t.bpe.byte_id[c] < 0 && fb >= 0 && in_merge[static_cast<size_t>(fb)] == 0;
    }
  }
  return Status::Ok();
}

// Document delimiters: BOS and EOS from the template, tokenizer_config.json or well-known names.
void FindDelimiters(const json& config, TokenizerImpl& t) {
  auto lookup = [&](const std::string& name) -> std::optional<int32_t> {
    auto it = t.token_to_id.find(name);
    return it == t.token_to_id.end() ? std::nullopt : std::optional<int32_t>(it->second);
  };
  if (!t.template_prefix.empty()) t.bos = t.template_prefix.front();
  if (!t.bos && config.is_object()) {
    if (auto name = ConfigTokenName(config, "bos_token")) t.bos = lookup(*name);
  }
  if (config.is_object()) {
    if (auto name = ConfigTokenName(config, "eos_token")) t.eos = lookup(*name);
  }
  if (!t.eos && !t.template_suffix.empty()) t.eos = t.template_suffix.back();
  if (!t.eos) {
    for (const char* name : {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"}) {
      if ((t.eos = lookup(name))) break;
    }
  }
}

Status Load(const json& root, const json& config, TokenizerImpl& t) {
  if (!root.is_object()) return FormatError("tokenizer.json is not a JSON object");
  if (!root.contains("model")) return FormatError("tokenizer.json has no 'model'");
  const json& model = root.at("model");
  const std::string mtype = TypeOf(model);
  if (!mtype.empty() && mtype != "BPE") {
    return Unsupported(
        "model type '" + mtype +
        "' is not supported: only BPE models (byte-level like GPT-2, Llama 3, Qwen2, or "
        "SentencePiece-style like Llama 2, Mistral); Unigram (T5) and WordPiece are not");
  }
  ESCALE_RETURN_IF_ERROR(LoadModelOptions(root, model, t));
  const json& added = root.contains("added_tokens") && root.at("added_tokens").is_array()
                          ? root.at("added_tokens")
                          : json::array();
  std::vector<uint8_t> in_vocab;
  ESCALE_RETURN_IF_ERROR(LoadVocabulary(model, added, t, in_vocab));
  ESCALE_RETURN_IF_ERROR(LoadFallbackAndUnknown(model, t));
  std::vector<int32_t> merge_sides;
  ESCALE_RETURN_IF_ERROR(LoadMerges(model, t, merge_sides));
  ESCALE_RETURN_IF_ERROR(LoadAddedTokens(added, in_vocab, t));
  BuildMatcher(t, false, t.raw_matcher);
  BuildMatcher(t, true, t.normalized_matcher);

  ESCALE_RETURN_IF_ERROR(LoadNormalizer(root.value("normalizer", json()), t));
  t.nfc = t.norm.size() == 1 && t.norm[0].kind == NormStep::Kind::kNfc;
  bool byte_level = false;
  ESCALE_RETURN_IF_ERROR(LoadPreTokenizer(root.value("pre_tokenizer", json()), t, byte_level));
  if (!t.literal && !byte_level) {
    return Unsupported(
        "tokenizer.json has a ByteLevel decoder but no ByteLevel pre-tokenizer: only "
        "byte-level BPE (GPT-2, Llama 3, Qwen2) or SentencePiece-style BPE (Llama 2, "
        "Mistral) is supported");
  }
  if (t.literal)
    ESCALE_RETURN_IF_ERROR(LoadLiteralDecoding(root, model.at("vocab"), merge_sides, t));
  ESCALE_RETURN_IF_ERROR(LoadPostProcessor(root.value("post_processor", json()), t));
  FindDelimiters(config, t);
  return Status::Ok();
}

}  // namespace

Result<std::shared_ptr<const Tokenizer>> Tokenizer::FromJson(const std::string& json_text,
                                                             const std::string& config_json) {
  ESCALE_ASSIGN_OR_RETURN(json root, ParseJsonText(json_text, "tokenizer.json"));
  json config;
  if (!config_json.empty()) {
    ESCALE_ASSIGN_OR_RETURN(config, ParseJsonText(config_json, "tokenizer_config.json"));
  }
  auto impl = std::make_unique<TokenizerImpl>();
  try {
    ESCALE_RETURN_IF_ERROR(Load(root, config, *impl));
  } catch (const json::exception& e) {
    // Wrong types or missing keys deep in the file: one line naming the JSON problem.
    // nlohmann's text starts with its own id ("[json.exception.out_of_range.403] "): drop it.
    std::string why = e.what();
    if (const size_t b = why.find("] ");
        why.rfind("[json.exception.", 0) == 0 && b != std::string::npos)
      why = why.substr(b + 2);
    return FormatError("tokenizer.json does not have the expected structure: " + why);
  }
  impl->sha256 = Sha256Hex(json_text.data(), json_text.size());
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

Result<std::shared_ptr<const Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  if (!std::filesystem::exists(path)) return NotFound("tokenizer file " + path + " does not exist");
  ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, size_t{1} << 30));
  std::string config;
  const auto cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(cfg_path, ec)) {
    auto c = ReadSmallFile(cfg_path.string());
    if (c.ok()) config = std::move(c).value();
  }
  auto r = FromJson(text, config);
  if (!r.ok()) return r.status().WithContext(path);
  return r;
}

}  // namespace escale::tok
