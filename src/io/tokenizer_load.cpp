// tokenizer.json -> TokenizerImpl. Anything outside byte-level BPE is refused with a clear
// Unsupported error instead of being encoded differently from Hugging Face.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <limits>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "core/atomic_output.h"
#include "io/tokenizer_bytes.h"
#include "io/tokenizer_impl.h"

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

Status LoadNormalizer(const json& j, TokenizerImpl& t) {
  if (j.is_null()) return Status::Ok();
  const std::string type = TypeOf(j);
  if (type == "NFC") {
    t.nfc = true;
    return Status::Ok();
  }
  if (type == "Sequence") {
    for (const json& n : j.at("normalizers")) ESCALE_RETURN_IF_ERROR(LoadNormalizer(n, t));
    return Status::Ok();
  }
  return Unsupported("normalizer '" + type +
                     "' is not supported (only NFC or none: byte-level BPE tokenizers such as "
                     "GPT-2, Llama 3 and Qwen2)");
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
    for (const json& p : j.at("pretokenizers")) ESCALE_RETURN_IF_ERROR(LoadPreTokenizer(p, t, byte_level));
    return Status::Ok();
  }
  if (type == "ByteLevel") {
    byte_level = true;
    if (j.value("add_prefix_space", false)) {
      if (!t.pretok.empty()) {
        return Unsupported("ByteLevel pre-tokenizer with add_prefix_space after another "
                           "pre-tokenizer step is not supported");
      }
      t.prefix_space = true;
    }
    if (j.value("use_regex", true)) {
      ESCALE_ASSIGN_OR_RETURN(auto re, Regex::Compile(kGpt2Pattern));
      t.pretok.push_back({PreTokStep::Kind::kByteLevelRegex, std::move(re), SplitBehavior::kIsolated});
    }
    return Status::Ok();
  }
  if (type == "Split") {
    if (j.value("invert", false)) return Unsupported("Split pre-tokenizer with invert=true is not supported");
    const std::string b = j.value("behavior", "Isolated");
    SplitBehavior behavior;
    if (b == "Isolated") behavior = SplitBehavior::kIsolated;
    else if (b == "Removed") behavior = SplitBehavior::kRemoved;
    else if (b == "MergedWithPrevious") behavior = SplitBehavior::kMergedWithPrevious;
    else if (b == "MergedWithNext") behavior = SplitBehavior::kMergedWithNext;
    else return Unsupported("Split behavior '" + b + "' is not supported");
    ESCALE_ASSIGN_OR_RETURN(auto re, CompileSplitPattern(j.at("pattern")));
    t.pretok.push_back({PreTokStep::Kind::kSplit, std::move(re), behavior});
    return Status::Ok();
  }
  return Unsupported("pre-tokenizer '" + type +
                     "' is not supported (byte-level BPE needs Split and ByteLevel only)");
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
          return FormatError("post_processor special token id " + std::to_string(v) + " is out of range");
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

Status Load(const json& root, const json& config, TokenizerImpl& t) {
  if (!root.is_object()) return FormatError("tokenizer.json is not a JSON object");
  if (!root.contains("model")) return FormatError("tokenizer.json has no 'model'");
  const json& model = root.at("model");
  const std::string mtype = TypeOf(model);
  if (!mtype.empty() && mtype != "BPE") {
    return Unsupported("model type '" + mtype + "' is not supported (only byte-level BPE)");
  }
  if (model.value("byte_fallback", false)) {
    return Unsupported("BPE with byte_fallback (SentencePiece-style, e.g. Llama 2) is not supported; "
                       "only byte-level BPE (GPT-2, Llama 3, Qwen2)");
  }
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(k) && model.at(k).is_string() && !model.at(k).get<std::string>().empty()) {
      return Unsupported(std::string("BPE ") + k + " is not supported");
    }
  }
  if (model.contains("dropout") && model.at("dropout").is_number() && model.at("dropout").get<double>() > 0) {
    return Unsupported("BPE dropout is training-time only; set it to null");
  }
  t.bpe.ignore_merges = model.value("ignore_merges", false);

  // Vocabulary.
  const json& vocab = model.at("vocab");
  if (!vocab.is_object()) return FormatError("model.vocab must be an object of token -> id");
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) return FormatError("model.vocab['" + it.key() + "'] is not an integer");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= kMaxId) return FormatError("model.vocab id " + std::to_string(id) + " is out of range");
    max_id = std::max(max_id, id);
  }
  const json& added = root.contains("added_tokens") && root.at("added_tokens").is_array()
                          ? root.at("added_tokens") : json::array();
  for (const json& a : added) {
    const int64_t id = a.at("id").get<int64_t>();
    if (id < 0 || id >= kMaxId) return FormatError("added token id " + std::to_string(id) + " is out of range");
    max_id = std::max(max_id, id);
  }
  // Ids index dense tables: refuse files whose ids are far sparser than their entries, so a
  // malformed file cannot make us allocate gigabytes.
  const auto entries = static_cast<int64_t>(vocab.size() + added.size());
  if (max_id >= 2 * entries + 65536) {
    return FormatError("token id " + std::to_string(max_id) + " is far beyond the " + std::to_string(entries) +
                       " tokens defined (ids must be dense)");
  }
  const size_t n = static_cast<size_t>(max_id + 1);
  t.id_bytes.assign(n, std::string());
  t.id_token.assign(n, std::string());
  t.id_special.assign(n, 0);
  std::fill(std::begin(t.bpe.byte_id), std::end(t.bpe.byte_id), -1);
  t.bpe.bytes_to_id.Reserve(vocab.size());
  t.token_to_id.reserve(vocab.size() + added.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    const std::string& token = it.key();
    t.id_token[id] = token;
    t.token_to_id[token] = id;
    std::string bytes;
    if (ByteLevelToBytes(token, bytes)) {
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

  // Merges: "a b" strings (legacy) or ["a", "b"] pairs; rank = position.
  const json& merges = model.contains("merges") ? model.at("merges") : json::array();
  if (!merges.is_array()) return FormatError("model.merges must be an array");
  t.bpe.merges.Reserve(merges.size());
  int32_t rank = 0;
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
      return FormatError("merge " + std::to_string(rank + 1) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    ab.assign(a).append(b);
    auto ia = t.token_to_id.find(a), ib = t.token_to_id.find(b), iab = t.token_to_id.find(std::string_view(ab));
    if (ia == t.token_to_id.end() || ib == t.token_to_id.end() || iab == t.token_to_id.end()) {
      return FormatError("merge " + std::to_string(rank + 1) + " ('" + std::string(a) + "' + '" + std::string(b) +
                         "') uses a token missing from model.vocab");
    }
    t.bpe.merges.InsertOrAssign(BpeModel::Key(ia->second, ib->second), MergeInfo{rank, iab->second});
    ++rank;
  }

  // Added tokens: decode to their content; matched before the model sees the text.
  for (const json& a_tok : added) {
    AddedToken at;
    at.id = static_cast<int32_t>(a_tok.at("id").get<int64_t>());
    at.content = a_tok.at("content").get<std::string>();
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
  BuildMatcher(t, false, t.raw_matcher);
  BuildMatcher(t, true, t.normalized_matcher);

  ESCALE_RETURN_IF_ERROR(LoadNormalizer(root.value("normalizer", json()), t));
  bool byte_level = false;
  ESCALE_RETURN_IF_ERROR(LoadPreTokenizer(root.value("pre_tokenizer", json()), t, byte_level));
  if (!byte_level) {
    return Unsupported("tokenizer.json has no ByteLevel pre-tokenizer: only byte-level BPE tokenizers "
                       "(GPT-2, Llama 3, Qwen2 families) are supported");
  }
  ESCALE_RETURN_IF_ERROR(LoadPostProcessor(root.value("post_processor", json()), t));

  // Document delimiters.
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
  return Status::Ok();
}

}  // namespace

Result<std::shared_ptr<const Tokenizer>> Tokenizer::FromJson(const std::string& json_text,
                                                             const std::string& config_json) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return FormatError("tokenizer.json is not valid JSON");
  json config;
  if (!config_json.empty()) {
    config = json::parse(config_json, nullptr, false);
    if (config.is_discarded()) return FormatError("tokenizer_config.json is not valid JSON");
  }
  auto impl = std::make_unique<TokenizerImpl>();
  try {
    ESCALE_RETURN_IF_ERROR(Load(root, config, *impl));
  } catch (const json::exception& e) {
    // Wrong types or missing keys deep in the file: one line naming the JSON problem.
    return FormatError(std::string("tokenizer.json does not have the expected structure: ") + e.what());
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
