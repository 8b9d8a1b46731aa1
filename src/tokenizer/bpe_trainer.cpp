#include "tokenizer/bpe_trainer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "core/progress.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/documents.h"
#include "tokenizer/pretokenizer_regex.h"

namespace escale::tok {

namespace {

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

class WordCounter {
 public:
  explicit WordCounter(const Regex& re) : matcher_(re) {}
  void Add(std::string_view doc) {
    std::string_view text = doc;
    const bool valid = IsValidUtf8(doc);
    if (!valid) {
      SanitizeUtf8(doc, sanitized_);
      text = sanitized_.text;
    }
    matches_.clear();
    matcher_.FindAll(text, matches_);
    size_t cur = 0;
    auto add = [&](size_t b, size_t e) {
      if (!valid) {
        b = sanitized_.offsets[b];
        e = sanitized_.offsets[e];
      }
      if (e > b) ++counts_[std::string(doc.substr(b, e - b))];
    };
    for (const auto& [b, e] : matches_) {
      if (b > cur) add(cur, b);
      add(b, e);
      cur = e;
    }
    if (cur < text.size()) add(cur, text.size());
  }
  std::unordered_map<std::string, uint64_t>& counts() { return counts_; }

 private:
  Regex::Matcher matcher_;
  SanitizedUtf8 sanitized_;
  std::vector<std::pair<size_t, size_t>> matches_;
  std::unordered_map<std::string, uint64_t> counts_;
};

struct HeapItem {
  uint64_t count;
  uint64_t pair;
  // Max count first; on equal counts the smaller pair key (left id, then right id) first.
  bool operator<(const HeapItem& o) const {
    return count != o.count ? count < o.count : pair > o.pair;
  }
};

// The trained tokenizer as a Hugging Face tokenizer.json (byte-level BPE, specials after the
// learned vocabulary).
Result<std::string> TokenizerJson(const std::vector<std::string>& vocab,
                                  const std::vector<std::pair<int32_t, int32_t>>& merges,
                                  const std::unordered_map<std::string, int32_t>& bytes_to_id,
                                  const std::vector<std::string>& specials) {
  nlohmann::ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (size_t i = 0; i < specials.size(); ++i) {
    if (bytes_to_id.count(specials[i]) != 0) {
      return InvalidArgument("special token '" + specials[i] +
                             "' was also learned as a merge; choose another name");
    }
    added.push_back({{"id", vocab.size() + i},
                     {"content", specials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"},
                        {"add_prefix_space", false},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  j["post_processor"] = {{"type", "ByteLevel"},
                         {"add_prefix_space", false},
                         {"trim_offsets", false},
                         {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", false},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  nlohmann::ordered_json model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = nullptr;
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = false;
  model["byte_fallback"] = false;
  model["ignore_merges"] = false;
  nlohmann::ordered_json v = nlohmann::ordered_json::object();
  for (size_t id = 0; id < vocab.size(); ++id) v[BytesToByteLevel(vocab[id])] = id;
  for (size_t i = 0; i < specials.size(); ++i) v[specials[i]] = vocab.size() + i;
  model["vocab"] = std::move(v);
  nlohmann::ordered_json m = nlohmann::ordered_json::array();
  for (const auto& [x, y] : merges)
    m.push_back({BytesToByteLevel(vocab[x]), BytesToByteLevel(vocab[y])});
  model["merges"] = std::move(m);
  j["model"] = std::move(model);
  return j.dump(1);
}

Result<std::string> Train(std::unordered_map<std::string, uint64_t>& word_counts,
                          const TrainOptions& opts) {
  std::vector<std::string> specials = opts.special_tokens;
  if (specials.empty()) specials.push_back("<|endoftext|>");
  const int64_t model_target =
      static_cast<int64_t>(opts.vocab_size) - static_cast<int64_t>(specials.size());
  if (model_target < 256) {
    return InvalidArgument("--vocab-size " + std::to_string(opts.vocab_size) +
                           " leaves no room: it must be at least 256 + " +
                           std::to_string(specials.size()) + " special tokens");
  }

  // Words sorted by bytes so everything downstream is independent of hash order.
  std::vector<std::pair<std::string, uint64_t>> sorted(word_counts.begin(), word_counts.end());
  word_counts.clear();
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::vector<int32_t>> words(sorted.size());
  std::vector<uint64_t> counts(sorted.size());
  for (size_t w = 0; w < sorted.size(); ++w) {
    counts[w] = sorted[w].second;
    for (unsigned char c : sorted[w].first) words[w].push_back(c);
  }
  sorted.clear();

  std::vector<std::string> vocab(256);  // id -> bytes
  for (int b = 0; b < 256; ++b) vocab[b] = std::string(1, static_cast<char>(b));
  std::unordered_map<std::string, int32_t> bytes_to_id;
  for (int b = 0; b < 256; ++b) bytes_to_id[vocab[b]] = b;
  std::vector<std::pair<int32_t, int32_t>> merges;

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<uint32_t>> where;
  for (size_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = PairKey(s[i], s[i + 1]);
      pair_count[k] += static_cast<int64_t>(counts[w]);
      auto& v = where[k];
      if (v.empty() || v.back() != w) v.push_back(static_cast<uint32_t>(w));
    }
  }
  std::priority_queue<HeapItem> heap;
  for (const auto& [k, c] : pair_count) {
    if (c > 0) heap.push({static_cast<uint64_t>(c), k});
  }

  std::vector<uint32_t> seen(words.size(), 0);
  uint32_t stamp = 0;
  Progress progress("training BPE", static_cast<uint64_t>(model_target - 256), "merges",
                    opts.progress);
  std::vector<uint64_t> touched;
  while (static_cast<int64_t>(vocab.size()) < model_target && !heap.empty()) {
    const HeapItem top = heap.top();
    heap.pop();
    auto pc = pair_count.find(top.pair);
    const int64_t current = pc == pair_count.end() ? 0 : pc->second;
    if (current <= 0) continue;
    if (static_cast<uint64_t>(current) != top.count) {  // stale: re-queue with the true count
      heap.push({static_cast<uint64_t>(current), top.pair});
      continue;
    }
    if (current < opts.min_frequency) break;
    const auto a = static_cast<int32_t>(top.pair >> 32);
    const auto b = static_cast<int32_t>(top.pair & 0xffffffffu);
    const std::string merged = vocab[a] + vocab[b];
    int32_t new_id;
    auto existing = bytes_to_id.find(merged);
    if (existing != bytes_to_id.end()) {
      new_id = existing->second;  // two merge paths to one string share the token
    } else {
      new_id = static_cast<int32_t>(vocab.size());
      vocab.push_back(merged);
      bytes_to_id.emplace(merged, new_id);
    }
    merges.emplace_back(a, b);

    ++stamp;
    touched.clear();
    std::vector<uint32_t> word_list = std::move(where[top.pair]);
    where.erase(top.pair);
    for (uint32_t w : word_list) {
      if (seen[w] == stamp) continue;
      seen[w] = stamp;
      auto& s = words[w];
      const auto cnt = static_cast<int64_t>(counts[w]);
      bool has = false;
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        if (s[i] == a && s[i + 1] == b) {
          has = true;
          break;
        }
      }
      if (!has) continue;  // stale entry
      for (size_t i = 0; i + 1 < s.size(); ++i) pair_count[PairKey(s[i], s[i + 1])] -= cnt;
      std::vector<int32_t> ns;
      ns.reserve(s.size());
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          ns.push_back(new_id);
          i += 2;
        } else {
          ns.push_back(s[i]);
          ++i;
        }
      }
      s.swap(ns);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = PairKey(s[i], s[i + 1]);
        pair_count[k] += cnt;
        if (s[i] == new_id || s[i + 1] == new_id) {
          auto& v = where[k];
          if (v.empty() || v.back() != w) v.push_back(w);
          touched.push_back(k);
        }
      }
    }
    pair_count.erase(top.pair);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t k : touched) {
      const int64_t c = pair_count[k];
      if (c > 0) heap.push({static_cast<uint64_t>(c), k});
    }
    progress.Update(vocab.size() - 256);
  }
  progress.Finish();

  return TokenizerJson(vocab, merges, bytes_to_id, specials);
}

}  // namespace

Result<std::string> TrainByteLevelBpeFromTexts(const std::vector<std::string>& docs,
                                               const TrainOptions& opts) {
  ESCALE_ASSIGN_OR_RETURN(auto re, Regex::Compile(kGpt2Pattern));
  WordCounter counter(*re);
  for (const auto& d : docs) counter.Add(d);
  return Train(counter.counts(), opts);
}

Result<std::string> TrainByteLevelBpe(const TrainOptions& opts) {
  ESCALE_ASSIGN_OR_RETURN(auto sources, ListSources(opts.inputs));
  ESCALE_ASSIGN_OR_RETURN(auto re, Regex::Compile(kGpt2Pattern));
  WordCounter counter(*re);
  uint64_t total = 0;
  for (const auto& s : sources) total += s.size;
  Progress progress("counting words", total, "B", opts.progress);
  uint64_t done = 0;
  std::string doc;
  for (const auto& s : sources) {
    ESCALE_ASSIGN_OR_RETURN(DocumentReader reader, DocumentReader::Open(s));
    while (true) {
      ESCALE_ASSIGN_OR_RETURN(bool more, reader.Next(doc));
      if (!more) break;
      counter.Add(doc);
      progress.Update(done + reader.bytes_read());
    }
    done += s.size;
  }
  progress.Finish();
  return Train(counter.counts(), opts);
}

}  // namespace escale::tok
