#include "tokenizer/tokenizer.h"

#include <utf8proc.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <span>
#include <unordered_map>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"

namespace escale::tok {

namespace {

bool IsAsciiSpace(unsigned char c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}
bool IsWordByte(unsigned char c) {
  return std::isalnum(c) != 0 || c == '_' || c >= 0x80;
}

// NFC of `in` into `out`. Invalid bytes pass through untouched; the valid runs between them are
// normalized. Code points below U+0300 are already NFC, so text without a byte >= 0xCC is copied.
void Nfc(std::string_view in, std::string& out) {
  out.clear();
  bool maybe = false;
  for (unsigned char c : in) {
    if (c >= 0xcc) {
      maybe = true;
      break;
    }
  }
  if (!maybe) {
    out.assign(in);
    return;
  }
  size_t i = 0;
  while (i < in.size()) {
    size_t j = i;
    while (j < in.size()) {
      const size_t len = Utf8SequenceLength(in, j);
      if (len == 0) break;
      j += len;
    }
    if (j > i) {
      utf8proc_uint8_t* dst = nullptr;
      const utf8proc_ssize_t n =
          utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(in.data() + i),
                       static_cast<utf8proc_ssize_t>(j - i), &dst,
                       static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      if (n >= 0 && dst != nullptr) {
        out.append(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
      } else {
        out.append(in.substr(i, j - i));  // allocation failure inside utf8proc: keep the text
      }
      std::free(dst);
    }
    if (j < in.size()) out.push_back(in[j++]);  // one invalid byte, kept as is
    i = j;
  }
}

void ReplaceAll(std::string_view in, std::string_view pat, std::string_view rep, std::string& out) {
  out.clear();
  size_t i = 0;
  for (size_t j; (j = in.find(pat, i)) != std::string_view::npos; i = j + pat.size()) {
    out.append(in.substr(i, j - i)).append(rep);
  }
  out.append(in.substr(i));
}

// The normalizer steps in order; `buf` is scratch.
void ApplyNorm(const std::vector<NormStep>& steps, std::string_view in, std::string& out,
               std::string& buf) {
  size_t first = 0;
  if (!steps.empty() && steps[0].kind == NormStep::Kind::kPrepend && !in.empty()) {
    out.assign(steps[0].a).append(in);  // the usual leading Prepend without moving the text
    first = 1;
  } else {
    out.assign(in);
  }
  for (const NormStep& n : std::span(steps).subspan(first)) {
    switch (n.kind) {
      case NormStep::Kind::kNfc:
        Nfc(out, buf);
        out.swap(buf);
        break;
      case NormStep::Kind::kPrepend:
        if (!out.empty()) out.insert(0, n.a);  // tokenizers prepends to non-empty text only
        break;
      case NormStep::Kind::kReplace:
        if (out.find(n.a) != std::string::npos) {
          ReplaceAll(out, n.a, n.b, buf);
          out.swap(buf);
        }
        break;
    }
  }
}

// "<0xNN>" -> NN, or -1 (tokenizers' ByteFallback accepts either case of hex digit).
int FallbackByte(std::string_view tok) {
  if (tok.size() != 6 || tok.substr(0, 3) != "<0x" || tok[5] != '>') return -1;
  int v = 0;
  for (char c : tok.substr(3, 2)) {
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else
      return -1;
  }
  return v;
}

// tokenizers' decoder chain over token strings. ByteFallback keeps the exact bytes of a run of
// byte tokens (tokenizers writes one U+FFFD per byte when the run is not valid UTF-8).
std::string DecodeLiteral(const TokenizerImpl& t, std::vector<std::string> toks) {
  std::string buf;
  for (const DecodeStep& d : t.decoder) {
    switch (d.kind) {
      case DecodeStep::Kind::kReplace:
        for (std::string& s : toks) {
          if (s.find(d.a) == std::string::npos) continue;
          ReplaceAll(s, d.a, d.b, buf);
          s.swap(buf);
        }
        break;
      case DecodeStep::Kind::kByteFallback: {
        std::vector<std::string> next;
        bool in_run = false;
        for (std::string& s : toks) {
          const int b = FallbackByte(s);
          if (b < 0) {
            next.push_back(std::move(s));
            in_run = false;
            continue;
          }
          if (!in_run) next.emplace_back();
          next.back().push_back(static_cast<char>(b));
          in_run = true;
        }
        toks.swap(next);
        break;
      }
      case DecodeStep::Kind::kFuse: {
        std::string all;
        for (const std::string& s : toks) all += s;
        toks.assign(1, std::move(all));
        break;
      }
      case DecodeStep::Kind::kStrip:
        for (std::string& s : toks) {
          size_t b = 0, e = s.size();
          for (int k = 0; k < d.start && s.compare(b, d.a.size(), d.a) == 0; ++k) b += d.a.size();
          for (int k = 0;
               k < d.stop && e >= b + d.a.size() && s.compare(e - d.a.size(), d.a.size(), d.a) == 0;
               ++k) {
            e -= d.a.size();
          }
          s = s.substr(b, e - b);
        }
        break;
      case DecodeStep::Kind::kMetaspace:
        for (size_t i = 0; i < toks.size(); ++i) {
          if (toks[i].find(d.a) == std::string::npos) continue;
          // The first token loses every replacement character, not only a leading one.
          ReplaceAll(toks[i], d.a, i == 0 && d.strip_first ? "" : " ", buf);
          toks[i].swap(buf);
        }
        break;
    }
  }
  std::string out;
  for (size_t i = 0; i < toks.size(); ++i) {
    if (!t.has_decoder && i > 0) out.push_back(' ');  // no decoder: tokenizers joins with spaces
    out += toks[i];
  }
  return out;
}

}  // namespace

constexpr size_t kMaxCachedWord = 256;

struct Encoder::State {
  const TokenizerImpl& t;
  size_t max_cache;
  std::vector<std::unique_ptr<Regex::Matcher>> matchers;
  // Pre-token -> ids. A single id (most words) is stored in the slot itself (a = id, b = 1);
  // longer results are a = offset into `arena`, b = count.
  StringTable cache;
  std::vector<int32_t> arena;
  BpeModel::Scratch scratch;
  std::string error;  // see Encoder::error()
  std::string normalized;
  std::string norm_buf;
  std::string prefixed;
  SanitizedUtf8 sanitized;
  std::vector<std::pair<size_t, size_t>> pieces, next, matches;
  std::vector<std::string_view> words;
  std::vector<uint64_t> hashes;

  State(const TokenizerImpl& impl, size_t max_entries) : t(impl), max_cache(max_entries) {
    for (const auto& step : t.pretok)
      matchers.push_back(std::make_unique<Regex::Matcher>(*step.regex));
  }

  // `h` is HashBytes(w), shared by the cache and the vocabulary table.
  void Word(std::string_view w, uint64_t h, std::vector<int32_t>& out) {
    if (const StringTable::Value* v = cache.Find(w, h)) {
      if (v->b == 1) {
        out.push_back(static_cast<int32_t>(v->a));
      } else {
        out.insert(out.end(), arena.begin() + v->a, arena.begin() + v->a + v->b);
      }
      return;
    }
    const size_t before = out.size();
    const int32_t whole = t.bpe.ignore_merges ? t.bpe.IdOfBytes(w, h) : -1;
    if (whole >= 0) {
      out.push_back(whole);  // what Tokenize returns first under ignore_merges
    } else {
      t.bpe.Tokenize(w, scratch, out);
    }
    if (w.size() > kMaxCachedWord) return;  // long runs rarely repeat; keep the cache small
    if (cache.size() >= max_cache) {
      cache.Clear();
      arena.clear();
    }
    const auto count = static_cast<uint32_t>(out.size() - before);
    if (count == 1) {
      cache.InsertOrAssign(w, {static_cast<uint32_t>(out[before]), 1});
      return;
    }
    const auto start = static_cast<uint32_t>(arena.size());
    arena.insert(arena.end(), out.begin() + static_cast<ptrdiff_t>(before), out.end());
    cache.InsertOrAssign(w, {start, count});
  }

  // Refines `pieces` (offsets into `text`) by every pre-tokenizer step.
  void Split(std::string_view text) {
    pieces.assign(1, {0, text.size()});
    for (size_t s = 0; s < t.pretok.size(); ++s) {
      next.clear();
      const SplitBehavior behavior = t.pretok[s].behavior;
      for (const auto& [pb, pe] : pieces) {
        matches.clear();
        matchers[s]->FindAll(text.substr(pb, pe - pb), matches);
        if (matchers[s]->exhausted() && error.empty())
          error =
              "the tokenizer's pre-tokenizer regex exceeded its work bound (catastrophic "
              "backtracking) on a " +
              std::to_string(pe - pb) +
              "-byte piece of the input; pattern: " + t.pretok[s].regex->pattern() +
              " (fix the Split pattern in tokenizer.json)";
        size_t cur = pb;
        bool pending_next = false;  // MergedWithNext: a match waits to start the next piece
        size_t pending_begin = 0;
        for (auto [mb, me] : matches) {
          mb += pb;
          me += pb;
          switch (behavior) {
            case SplitBehavior::kIsolated:
              if (mb > cur) next.emplace_back(cur, mb);
              next.emplace_back(mb, me);
              break;
            case SplitBehavior::kRemoved:
              if (mb > cur) next.emplace_back(cur, mb);
              break;
            case SplitBehavior::kMergedWithPrevious:
              next.emplace_back(cur, me);
              break;
            case SplitBehavior::kMergedWithNext:
              if (pending_next) {
                next.emplace_back(pending_begin, mb);
              } else if (mb > cur) {
                next.emplace_back(cur, mb);
              }
              pending_next = true;
              pending_begin = mb;
              break;
          }
          cur = me;
        }
        if (pending_next) {
          next.emplace_back(pending_begin, pe);
        } else if (pe > cur) {
          next.emplace_back(cur, pe);
        }
      }
      pieces.swap(next);
    }
  }

  // SentencePiece-style: Metaspace (if any), then words as described by split_at_metaspace.
  void ModelLiteral(std::string_view seg, bool at_start, std::vector<int32_t>& out) {
    words.clear();
    if (t.metaspace) {
      const MetaspaceStep& m = *t.metaspace;
      prefixed.clear();
      const bool starts =
          seg.substr(0, 1) == " " || seg.substr(0, m.replacement.size()) == m.replacement;
      if (!starts && (m.prepend == MetaspaceStep::Prepend::kAlways ||
                      (m.prepend == MetaspaceStep::Prepend::kFirst && at_start))) {
        prefixed = m.replacement;
      }
      for (char c : seg) {
        if (c == ' ')
          prefixed += m.replacement;
        else
          prefixed.push_back(c);
      }
      seg = prefixed;
      if (m.split) {
        // MergedWithNext: every replacement starts a new word.
        size_t b = 0;
        for (size_t j; (j = seg.find(m.replacement, b + 1)) != std::string_view::npos; b = j) {
          words.push_back(seg.substr(b, j - b));
        }
        words.push_back(seg.substr(b));
      } else {
        words.push_back(seg);
      }
    } else if (t.split_at_metaspace) {
      // One pass over the bytes: cut before a U+2581 run that follows other text, and around an
      // ASCII character that always becomes its own byte token (cut_ascii).
      constexpr std::string_view kMeta = "\xe2\x96\x81";
      const auto* p = reinterpret_cast<const unsigned char*>(seg.data());
      const size_t n = seg.size();
      size_t b = 0;
      bool prev_meta = false;
      for (size_t j = 0; j < n;) {
        const unsigned char c = p[j];
        if (c == 0xe2 && seg.compare(j, kMeta.size(), kMeta) == 0) {
          if (!prev_meta && j > b) {
            words.push_back(seg.substr(b, j - b));
            b = j;
          }
          prev_meta = true;
          j += kMeta.size();
          continue;
        }
        prev_meta = false;
        if (t.cut_ascii[c]) {
          if (j > b) words.push_back(seg.substr(b, j - b));
          words.push_back(seg.substr(j, 1));
          b = j + 1;
        }
        ++j;
      }
      if (b < n) words.push_back(seg.substr(b));
      if (words.empty()) words.push_back(seg);
    } else {
      words.push_back(seg);
    }
    Words(out);
  }

  void Model(std::string_view seg, bool at_start, std::vector<int32_t>& out) {
    if (seg.empty()) return;
    if (t.literal) {
      ModelLiteral(seg, at_start, out);
      return;
    }
    if (t.prefix_space && seg.front() != ' ') {
      prefixed.assign(1, ' ');
      prefixed.append(seg);
      seg = prefixed;
    }
    words.clear();
    if (IsValidUtf8(seg)) {
      Split(seg);
      for (const auto& [b, e] : pieces) words.push_back(seg.substr(b, e - b));
    } else {
      // Invalid bytes: segment a stand-in where each is U+FFFD, then cut the original bytes.
      SanitizeUtf8(seg, sanitized);
      const std::string shadow = sanitized.text;
      Split(shadow);
      for (const auto& [b, e] : pieces) {
        const size_t ob = sanitized.offsets[b], oe = sanitized.offsets[e];
        words.push_back(seg.substr(ob, oe - ob));
      }
    }
    Words(out);
  }

  void Words(std::vector<int32_t>& out) {
    // Hash every word first and prefetch the cache slot (and, under ignore_merges, the vocabulary
    // slot) a few words ahead, so that the table lookups' memory accesses overlap.
    constexpr size_t kAhead = 8;
    hashes.resize(words.size());
    for (size_t i = 0; i < words.size(); ++i) hashes[i] = HashBytes(words[i]);
    for (size_t i = 0; i < words.size(); ++i) {
      if (i + kAhead < words.size()) {
        cache.Prefetch(hashes[i + kAhead]);
        if (t.bpe.ignore_merges) t.bpe.bytes_to_id.Prefetch(hashes[i + kAhead]);
      }
      if (i == 0) {
        for (size_t k = 1; k < kAhead && k < words.size(); ++k) cache.Prefetch(hashes[k]);
      }
      Word(words[i], hashes[i], out);
    }
  }

  void Normalized(std::string_view seg, bool at_start, const EncodeOptions& opts,
                  std::vector<int32_t>& out) {
    if (t.norm.empty()) {
      WithAdded(seg, at_start, t.normalized_matcher, opts, out, /*normalized_stage=*/true);
      return;
    }
    // Normalized text is consumed before the next call, so one buffer per Encoder serves.
    std::string& norm = normalized;
    if (t.nfc) {
      Nfc(seg, norm);
    } else {
      ApplyNorm(t.norm, seg, norm, norm_buf);
    }
    WithAdded(norm, at_start, t.normalized_matcher, opts, out, true);
  }

  // Splits `text` around added tokens of `m`; text between goes to the next stage. `at_start`:
  // `text` begins at offset 0 of the original input (Metaspace's "first" prepend scheme).
  void WithAdded(std::string_view text, bool at_start, const AddedMatcher& m,
                 const EncodeOptions& opts, std::vector<int32_t>& out, bool normalized_stage) {
    auto forward = [&](std::string_view part, bool first) {
      if (normalized_stage)
        Model(part, first, out);
      else
        Normalized(part, first, opts, out);
    };
    if (m.empty()) {
      forward(text, at_start);
      return;
    }
    size_t seg_start = 0;
    size_t i = 0;
    while (i < text.size()) {
      if (!m.first_byte[static_cast<unsigned char>(text[i])]) {
        ++i;
        continue;
      }
      const AddedToken* hit = nullptr;
      for (int32_t idx : m.tokens) {  // longest first
        const AddedToken& a = t.added[idx];
        if (a.special && !opts.parse_special) continue;
        if (text.size() - i < a.content.size() || text.compare(i, a.content.size(), a.content) != 0)
          continue;
        if (a.single_word) {
          const bool left_ok = i == 0 || !IsWordByte(static_cast<unsigned char>(text[i - 1]));
          const size_t e = i + a.content.size();
          const bool right_ok =
              e == text.size() || !IsWordByte(static_cast<unsigned char>(text[e]));
          if (!left_ok || !right_ok) continue;
        }
        hit = &a;
        break;
      }
      if (hit == nullptr) {
        ++i;
        continue;
      }
      size_t mb = i, me = i + hit->content.size();
      if (hit->lstrip) {
        while (mb > seg_start && IsAsciiSpace(static_cast<unsigned char>(text[mb - 1]))) --mb;
      }
      if (hit->rstrip) {
        while (me < text.size() && IsAsciiSpace(static_cast<unsigned char>(text[me]))) ++me;
      }
      if (mb > seg_start)
        forward(text.substr(seg_start, mb - seg_start), at_start && seg_start == 0);
      out.push_back(hit->id);
      seg_start = me;
      i = me;
    }
    if (seg_start < text.size()) forward(text.substr(seg_start), at_start && seg_start == 0);
  }
};

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::Encode(std::string_view text, const EncodeOptions& opts) const {
  Encoder enc(*this, 1u << 12);
  std::vector<int32_t> out;
  enc.Encode(text, opts, out);
  return out;
}

Result<std::vector<int32_t>> Tokenizer::TryEncode(std::string_view text,
                                                  const EncodeOptions& opts) const {
  Encoder enc(*this, 1u << 12);
  std::vector<int32_t> out;
  enc.Encode(text, opts, out);
  if (!enc.error().empty()) return FormatError(enc.error());
  return out;
}

Result<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  std::vector<std::string> toks;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return InvalidArgument("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(vocab_size()) + ")");
    }
    if (skip_special && impl_->id_special[id] != 0) continue;
    if (impl_->literal)
      toks.push_back(impl_->id_token[id]);
    else
      out += impl_->id_bytes[id];
  }
  if (impl_->literal) return DecodeLiteral(*impl_, std::move(toks));
  return out;
}

std::string Tokenizer::Normalize(std::string_view text) const {
  std::string out, buf;
  ApplyNorm(impl_->norm, text, out, buf);
  return out;
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->id_bytes.size());
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = impl_->token_to_id.find(token);
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::IdToToken(int32_t id) const {
  return id >= 0 && id < vocab_size() ? impl_->id_token[id] : std::string();
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->id_special[id] != 0;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const {
  return impl_->added;
}
std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->bos;
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->eos;
}
bool Tokenizer::decodes_by_concatenation() const {
  return !impl_->literal;
}
bool Tokenizer::template_adds_bos() const {
  return !impl_->template_prefix.empty();
}
const std::string& Tokenizer::sha256() const {
  return impl_->sha256;
}

Encoder::Encoder(const Tokenizer& tok, size_t max_cache_entries)
    : tok_(&tok), st_(std::make_unique<State>(*tok.impl_, max_cache_entries)) {}
Encoder::~Encoder() = default;
const std::string& Encoder::error() const {
  return st_->error;
}
void Encoder::ClearError() {
  st_->error.clear();
  for (auto& m : st_->matchers) m->ClearExhausted();
}

void Encoder::Encode(std::string_view text, const EncodeOptions& opts, std::vector<int32_t>& out) {
  const TokenizerImpl& t = *tok_->impl_;
  if (opts.add_special_tokens)
    out.insert(out.end(), t.template_prefix.begin(), t.template_prefix.end());
  st_->WithAdded(text, /*at_start=*/true, t.raw_matcher, opts, out, /*normalized_stage=*/false);
  if (opts.add_special_tokens)
    out.insert(out.end(), t.template_suffix.begin(), t.template_suffix.end());
}

}  // namespace escale::tok
