#include "tokenizer/documents.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace escale::tok {

namespace fs = std::filesystem;

namespace {
bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}
}  // namespace

Result<std::vector<SourceFile>> ListSources(const std::vector<std::string>& inputs) {
  std::vector<SourceFile> out;
  for (const std::string& in : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(in, ec);
    if (ec || !fs::exists(st)) return NotFound("input " + in + " does not exist");
    std::vector<std::string> files;
    if (fs::is_directory(st)) {
      for (auto it = fs::recursive_directory_iterator(in, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file(ec)) files.push_back(it->path().string());
      }
      if (ec) return IoError("cannot list directory " + in + ": " + ec.message());
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(in);
    }
    for (auto& f : files) {
      SourceFile s;
      s.size = fs::file_size(f, ec);
      if (ec) return IoError("cannot stat " + f + ": " + ec.message());
      s.jsonl = EndsWith(f, ".jsonl");
      s.path = std::move(f);
      out.push_back(std::move(s));
    }
  }
  if (out.empty()) return InvalidArgument("no input files found");
  return out;
}

Result<FieldFilter> ParseFieldFilter(const std::string& text, const std::string& flag) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    return InvalidArgument(flag + " takes KEY=VALUE (e.g. lang=en), not '" + text + "'");
  return FieldFilter{text.substr(0, eq), text.substr(eq + 1)};
}

Result<DocumentReader> DocumentReader::Open(const SourceFile& src, const FieldFilter& filter) {
  if (filter.active() && !src.jsonl)
    return InvalidArgument(
        src.path +
        " is plain text, which has no fields to filter on; give only .jsonl inputs "
        "with a field filter");
  DocumentReader r;
  r.src_ = src;
  r.filter_ = filter;
  r.f_ = std::fopen(src.path.c_str(), "rb");
  if (r.f_ == nullptr) return IoError("cannot open " + src.path + ": " + std::strerror(errno));
  return r;
}

DocumentReader::DocumentReader(DocumentReader&& o) noexcept
    : src_(std::move(o.src_)),
      filter_(std::move(o.filter_)),
      f_(o.f_),
      done_(o.done_),
      line_(o.line_),
      bytes_read_(o.bytes_read_),
      line_buf_(std::move(o.line_buf_)) {
  o.f_ = nullptr;
}

DocumentReader::~DocumentReader() {
  if (f_ != nullptr) std::fclose(f_);
}

Result<bool> DocumentReader::Next(std::string& doc) {
  doc.clear();
  if (done_) return false;
  char buf[1 << 16];
  if (!src_.jsonl) {
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f_)) > 0) doc.append(buf, n);
    if (std::ferror(f_)) return IoError("cannot read " + src_.path + ": " + std::strerror(errno));
    bytes_read_ += doc.size();
    done_ = true;
    return true;
  }
  while (true) {
    line_buf_.clear();
    bool got = false;
    while (std::fgets(buf, sizeof(buf), f_) != nullptr) {
      got = true;
      const size_t n = std::strlen(buf);  // a NUL inside a JSON line is invalid JSON anyway
      line_buf_.append(buf, n);
      if (n > 0 && buf[n - 1] == '\n') break;
    }
    if (std::ferror(f_)) return IoError("cannot read " + src_.path + ": " + std::strerror(errno));
    if (!got) {
      done_ = true;
      return false;
    }
    ++line_;
    bytes_read_ += line_buf_.size();
    if (line_buf_.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    const auto j = nlohmann::json::parse(line_buf_, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return FormatError(src_.path + ":" + std::to_string(line_) + ": not a JSON object");
    }
    auto it = j.find("text");
    if (it == j.end() || !it->is_string()) {
      return FormatError(src_.path + ":" + std::to_string(line_) + ": no string field \"text\"");
    }
    if (filter_.active()) {
      auto f = j.find(filter_.key);
      if (f == j.end() || (f->is_string() ? f->get<std::string>() : f->dump()) != filter_.value)
        continue;
    }
    doc = it->get<std::string>();
    return true;
  }
}

}  // namespace escale::tok
