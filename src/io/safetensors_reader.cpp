// Validating safetensors reader: every rule listed in docs/formats.md, "safetensors reader".
#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"

namespace escale {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxDim = (uint64_t{1} << 48) - 1;  // the schema's 48-bit integer bound
// The header is {name: {dtype, shape: [..], data_offsets: [..]}, "__metadata__": {k: v}}.
constexpr int kMaxDepth = 3;
constexpr const char* kHint = "the file is damaged or was not written by a safetensors writer; "
                              "re-download or re-export it";

Status Bad(const std::string& what) { return FormatError(what + " (" + kHint + ")"); }
Status BadTensor(const std::string& name, const std::string& what) {
  return Bad("tensor '" + name + "': " + what);
}

bool IsValidUtf8(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return false;
    i += len;
  }
  return true;
}

// Builds a DOM like nlohmann's own SAX DOM parser, but refuses duplicate keys and deep nesting
// (nlohmann silently keeps the last duplicate).
class StrictSax {
 public:
  json root;
  std::string error;

  bool null() { return Value(json(nullptr)); }
  bool boolean(bool v) { return Value(json(v)); }
  bool number_integer(json::number_integer_t v) { return Value(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return Value(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) { return Value(json(v)); }
  bool string(json::string_t& v) { return Value(json(std::move(v))); }
  bool binary(json::binary_t&) { return Fail("binary values are not JSON"); }
  bool start_object(std::size_t) { return Open(json::object()); }
  bool start_array(std::size_t) { return Open(json::array()); }
  bool end_object() { stack_.pop_back(); return true; }
  bool end_array() { stack_.pop_back(); return true; }
  bool key(json::string_t& k) {
    json* obj = stack_.back();
    if (obj->contains(k)) return Fail("duplicate key '" + k + "'");
    pending_key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& ex) {
    if (error.empty()) {
      std::string what = ex.what();
      // nlohmann prefixes "[json.exception.parse_error.101] parse error at line 1, column 5: ".
      const size_t colon = what.find(": ", what.find("parse error"));
      if (colon != std::string::npos) what = what.substr(colon + 2);
      error = "header is not valid JSON at byte " + std::to_string(pos) + ": " + what;
    }
    return false;
  }

 private:
  bool Fail(std::string why) {
    if (error.empty()) error = std::move(why);
    return false;
  }
  json* Insert(json v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json* top = stack_.back();
    if (top->is_array()) {
      top->push_back(std::move(v));
      return &top->back();
    }
    json& slot = (*top)[pending_key_];
    slot = std::move(v);
    return &slot;
  }
  bool Value(json v) {
    Insert(std::move(v));
    return true;
  }
  bool Open(json v) {
    if (static_cast<int>(stack_.size()) >= kMaxDepth)
      return Fail("header nests JSON deeper than " + std::to_string(kMaxDepth) + " levels");
    stack_.push_back(Insert(std::move(v)));
    return true;
  }
  std::vector<json*> stack_;
  std::string pending_key_;
};

Result<uint64_t> ReadUint(const json& v, const std::string& tensor, const char* field) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    return BadTensor(tensor, std::string(field) + " entries must be non-negative integers, got " + v.dump());
  const uint64_t x = v.get<uint64_t>();
  if (x > kMaxDim)
    return BadTensor(tensor, std::string(field) + " entry " + std::to_string(x) + " exceeds 2^48-1");
  return x;
}

Result<SafetensorsEntry> ParseEntry(const std::string& name, const json& v) {
  if (!v.is_object()) return BadTensor(name, "entry must be an object with dtype, shape, data_offsets");
  for (auto it = v.begin(); it != v.end(); ++it)
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
      return BadTensor(name, "unexpected key '" + it.key() +
                                 "' (a tensor entry has exactly dtype, shape and data_offsets)");
  for (const char* k : {"dtype", "shape", "data_offsets"})
    if (!v.contains(k)) return BadTensor(name, std::string("missing key '") + k + "'");
  SafetensorsEntry e;
  e.name = name;
  const json& dt = v["dtype"];
  if (!dt.is_string()) return BadTensor(name, "dtype must be a string");
  const auto parsed = ParseDType(dt.get<std::string>());
  if (!parsed) return BadTensor(name, "unknown dtype '" + dt.get<std::string>() + "'");
  e.dtype = *parsed;
  const json& shape = v["shape"];
  if (!shape.is_array()) return BadTensor(name, "shape must be an array");
  for (const json& d : shape) {
    ESCALE_ASSIGN_OR_RETURN(uint64_t x, ReadUint(d, name, "shape"));
    e.shape.push_back(static_cast<int64_t>(x));
  }
  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2) return BadTensor(name, "data_offsets must be [begin, end]");
  ESCALE_ASSIGN_OR_RETURN(e.begin, ReadUint(off[0], name, "data_offsets"));
  ESCALE_ASSIGN_OR_RETURN(e.end, ReadUint(off[1], name, "data_offsets"));
  if (e.end < e.begin)
    return BadTensor(name, "data_offsets end " + std::to_string(e.end) + " is before begin " +
                               std::to_string(e.begin));
  return e;
}

// numel * bits / 8 with every multiplication checked.
Result<uint64_t> EntryBytes(const SafetensorsEntry& e) {
  uint64_t numel = 1;
  for (int64_t d : e.shape) {
    const uint64_t u = static_cast<uint64_t>(d);
    if (u != 0 && numel > std::numeric_limits<uint64_t>::max() / u)
      return BadTensor(e.name, "shape " + ShapeToString(e.shape) + " overflows the element count");
    numel *= u;
  }
  const uint64_t bits_per = static_cast<uint64_t>(DTypeBits(e.dtype));
  if (numel > std::numeric_limits<uint64_t>::max() / bits_per)
    return BadTensor(e.name, "shape " + ShapeToString(e.shape) + " overflows the byte count");
  const uint64_t bits = numel * bits_per;
  if (bits % 8 != 0)
    return BadTensor(e.name, std::to_string(numel) + " elements of " + std::string(DTypeName(e.dtype)) +
                                 " do not fill whole bytes");
  return bits / 8;
}

}  // namespace

Result<std::vector<SafetensorsEntry>> ParseSafetensorsHeader(
    const std::byte* data, size_t file_size, uint64_t* data_offset,
    std::map<std::string, std::string>* metadata) {
  if (file_size < 8)
    return Bad("file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(data[i]);
  if (n > kSafetensorsMaxHeader)
    return Bad("header length " + std::to_string(n) + " exceeds the 100 MB limit");
  // n <= 1e8, so 8 + n cannot overflow; compare without assuming size_t width.
  if (8 + n > static_cast<uint64_t>(file_size))
    return Bad("header length " + std::to_string(n) + " runs past the end of the " +
               std::to_string(file_size) + "-byte file (truncated?)");
  const auto* hdr = reinterpret_cast<const unsigned char*>(data + 8);
  if (!IsValidUtf8(hdr, static_cast<size_t>(n))) return Bad("header is not valid UTF-8");

  StrictSax sax;
  const bool parsed = json::sax_parse(hdr, hdr + n, &sax, json::input_format_t::json,
                                      /*strict=*/true, /*ignore_comments=*/false);
  if (!parsed || !sax.error.empty())
    return Bad(sax.error.empty() ? std::string("header is not valid JSON") : sax.error);
  const json& root = sax.root;
  if (!root.is_object()) return Bad("header must be a JSON object");

  std::vector<SafetensorsEntry> entries;
  entries.reserve(root.size());
  std::map<std::string, std::string> meta;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return Bad("__metadata__ must be an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          return Bad("__metadata__ value for '" + m.key() + "' is " + m->dump() +
                     ", but metadata values must be strings");
        meta[m.key()] = m->get<std::string>();
      }
      continue;
    }
    ESCALE_ASSIGN_OR_RETURN(SafetensorsEntry e, ParseEntry(it.key(), *it));
    entries.push_back(std::move(e));
  }

  // Any order in the JSON is legal; in offset order the tensors must tile the buffer exactly.
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t running = 0;
  for (const SafetensorsEntry& e : entries) {
    if (e.begin != running)
      return BadTensor(e.name, "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                                   "] " + (e.begin < running ? "overlap the previous tensor" : "leave a gap after the previous tensor") +
                                   " (expected begin " + std::to_string(running) +
                                   "; tensors must tile the data section from 0 without gaps or overlaps)");
    ESCALE_ASSIGN_OR_RETURN(uint64_t nbytes, EntryBytes(e));
    if (e.end - e.begin != nbytes)
      return BadTensor(e.name, "data_offsets span " + std::to_string(e.end - e.begin) + " bytes but " +
                                   std::string(DTypeName(e.dtype)) + " " + ShapeToString(e.shape) +
                                   " needs " + std::to_string(nbytes));
    running = e.end;
  }
  const uint64_t data_size = static_cast<uint64_t>(file_size) - 8 - n;
  if (running != data_size)
    return Bad(running < data_size
                   ? std::to_string(data_size - running) + " trailing bytes after the last tensor"
                   : "tensor data runs " + std::to_string(running - data_size) +
                         " bytes past the end of the file (truncated?)");
  if (data_offset) *data_offset = 8 + n;
  if (metadata) *metadata = std::move(meta);
  return entries;
}

Result<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  ESCALE_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> mf, MappedFile::Open(path));
  SafetensorsFile f;
  auto entries = ParseSafetensorsHeader(mf->data(), mf->size(), &f.data_offset_, &f.metadata_);
  if (!entries.ok()) return entries.status().WithContext(path);
  f.entries_ = std::move(entries).value();
  for (size_t i = 0; i < f.entries_.size(); ++i) f.by_name_[f.entries_[i].name] = i;
  f.file_ = std::move(mf);
  return f;
}

const SafetensorsEntry* SafetensorsFile::Find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

Result<Tensor> SafetensorsFile::Get(const std::string& name) const {
  const SafetensorsEntry* e = Find(name);
  if (e == nullptr) return NotFound(path() + ": no tensor named '" + name + "'");
  const std::byte* p = file_->data() + data_offset_ + e->begin;
  const int elem = DTypeSize(e->dtype);
  const size_t align = elem <= 1 ? 1 : static_cast<size_t>(std::min(elem, 8));
  Tensor view = Tensor::View(e->dtype, e->shape, p, file_);
  // A header padded to a length that is not a multiple of the element size leaves the data
  // misaligned for typed access; such tensors are copied into aligned storage.
  if (reinterpret_cast<uintptr_t>(p) % align != 0) return view.Clone();
  return view;
}

}  // namespace escale
