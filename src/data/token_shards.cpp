#include "data/token_shards.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "core/json_text.h"
#include "tokenizer/tokenizer.h"

namespace escale::tok {

namespace {
void PutLe32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint32_t GetLe32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(std::to_integer<unsigned>(p[i])) << (8 * i);
  return v;
}
}  // namespace

struct ShardWriter::Impl {
  explicit Impl(AtomicFile f) : file(std::move(f)) {}
  AtomicFile file;
  int width = 2;
  std::vector<unsigned char> buf;
};

ShardWriter::ShardWriter() = default;
ShardWriter::ShardWriter(ShardWriter&&) noexcept = default;
ShardWriter::~ShardWriter() = default;

Result<ShardWriter> ShardWriter::Create(const std::string& path, int token_bytes) {
  if (token_bytes != 2 && token_bytes != 4)
    return InvalidArgument("shard token width must be 2 or 4 bytes");
  ESCALE_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(path));
  ShardWriter w;
  w.impl_ = std::make_unique<Impl>(std::move(f));
  w.impl_->width = token_bytes;
  const std::vector<unsigned char> placeholder(kShardHeaderBytes, 0);  // patched in Commit()
  ESCALE_RETURN_IF_ERROR(w.impl_->file.Write(placeholder.data(), placeholder.size()));
  return w;
}

Status ShardWriter::Append(const int32_t* ids, size_t n) {
  auto& buf = impl_->buf;
  const int width = impl_->width;
  const int64_t limit = width == 2 ? 65536 : (int64_t{1} << 32);
  for (size_t i = 0; i < n; ++i) {
    const int64_t id = ids[i];
    if (id < 0 || id >= limit) {
      return InvalidArgument("token id " + std::to_string(id) + " does not fit a " +
                             std::to_string(width * 8) + "-bit shard");
    }
    const auto v = static_cast<uint32_t>(id);
    buf.push_back(static_cast<unsigned char>(v));
    buf.push_back(static_cast<unsigned char>(v >> 8));
    if (width == 4) {
      buf.push_back(static_cast<unsigned char>(v >> 16));
      buf.push_back(static_cast<unsigned char>(v >> 24));
    }
  }
  tokens_ += n;
  if (buf.size() >= (size_t{1} << 22)) {
    ESCALE_RETURN_IF_ERROR(impl_->file.Write(buf.data(), buf.size()));
    buf.clear();
  }
  return Status::Ok();
}

Status ShardWriter::Commit() {
  if (tokens_ > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
    return InvalidArgument(
        "a shard holds at most 2^31-1 tokens (llm.c's int32 header); use smaller shards");
  }
  auto& buf = impl_->buf;
  if (!buf.empty()) ESCALE_RETURN_IF_ERROR(impl_->file.Write(buf.data(), buf.size()));
  buf.clear();
  unsigned char header[kShardHeaderBytes] = {};
  const bool wide = impl_->width == 4;
  PutLe32(header, static_cast<uint32_t>(wide ? kShardMagicU32 : kShardMagicU16));
  PutLe32(header + 4, static_cast<uint32_t>(wide ? kShardVersionU32 : kShardVersionU16));
  PutLe32(header + 8, static_cast<uint32_t>(tokens_));
  // The count is known only now: patch the header through a second descriptor on the temporary
  // file; AtomicFile::Commit's fsync then covers it (fsync is per file, not per descriptor).
  const std::string& tmp = impl_->file.temp_path();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot reopen " + tmp + ": " + std::strerror(errno));
  const ssize_t w = ::pwrite(fd, header, sizeof(header), 0);
  const int e = errno;
  ::close(fd);
  if (w != static_cast<ssize_t>(sizeof(header))) {
    return IoError("cannot write the header of " + tmp + ": " + std::strerror(e));
  }
  return impl_->file.Commit();
}

Result<TokenShard> TokenShard::Open(const std::string& path, std::optional<int64_t> vocab_size) {
  ESCALE_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  const size_t size = file->size();
  if (size < kShardHeaderBytes) {
    return FormatError(path + ": " + std::to_string(size) +
                       " bytes is too small for the 1024-byte token shard header");
  }
  const std::byte* p = file->data();
  const auto magic = static_cast<int32_t>(GetLe32(p));
  const auto version = static_cast<int32_t>(GetLe32(p + 4));
  const auto count = static_cast<int32_t>(GetLe32(p + 8));
  int width;
  if (magic == kShardMagicU16) {
    width = 2;
    if (version != kShardVersionU16) {
      return FormatError(path + ": version " + std::to_string(version) +
                         " with magic 20240520 (expected version 1, uint16 tokens)");
    }
  } else if (magic == kShardMagicU32) {
    width = 4;
    if (version != kShardVersionU32) {
      return FormatError(path + ": version " + std::to_string(version) +
                         " with magic 20240801 (expected version 7, uint32 tokens)");
    }
  } else {
    return FormatError(
        path + ": magic " + std::to_string(magic) +
        " is not a token shard's (20240520 for uint16 or 20240801 for uint32 llm.c shards)");
  }
  if (count < 0)
    return FormatError(path + ": negative token count " + std::to_string(count) + " in the header");
  const uint64_t expected =
      kShardHeaderBytes + static_cast<uint64_t>(count) * static_cast<uint64_t>(width);
  if (expected != size) {
    return FormatError(path + ": header says " + std::to_string(count) + " tokens (" +
                       std::to_string(expected) + " bytes) but the file has " +
                       std::to_string(size) + " bytes: truncated or corrupted");
  }
  TokenShard s;
  s.file_ = std::move(file);
  s.count_ = static_cast<uint64_t>(count);
  s.width_ = width;
  if (vocab_size) {
    for (uint64_t i = 0; i < s.count_; ++i) {
      if (static_cast<int64_t>(s[i]) >= *vocab_size) {
        return FormatError(path + ": token " + std::to_string(s[i]) + " at position " +
                           std::to_string(i) + " is not below the vocabulary size " +
                           std::to_string(*vocab_size));
      }
    }
  }
  return s;
}

const void* TokenShard::data() const {
  return file_->data() + kShardHeaderBytes;
}

uint32_t TokenShard::operator[](uint64_t i) const {
  const std::byte* p = file_->data() + kShardHeaderBytes + i * static_cast<uint64_t>(width_);
  if (width_ == 2) return std::to_integer<uint32_t>(p[0]) | (std::to_integer<uint32_t>(p[1]) << 8);
  return GetLe32(p);
}

std::vector<int32_t> TokenShard::Slice(uint64_t begin, uint64_t n) const {
  std::vector<int32_t> out;
  if (begin >= count_) return out;
  n = std::min(n, count_ - begin);
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) out.push_back(static_cast<int32_t>((*this)[begin + i]));
  return out;
}

Result<std::vector<std::string>> ListShardFiles(const std::string& dir, const std::string& prefix) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(dir + "/manifest.json", ec))
    return NotFound(dir +
                    " has no manifest.json: not a finished 'escale tokenize' output (rerun it)");
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix + "_", 0) == 0 && e.path().extension() == ".bin")
      paths.push_back(e.path().string());
  }
  if (ec) return IoError("cannot list " + dir + ": " + ec.message());
  std::sort(paths.begin(), paths.end());
  return paths;
}

Status CheckShardManifest(const std::string& dir, const std::string& tokenizer_json) {
  namespace fs = std::filesystem;
  ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(dir + "/manifest.json"));
  auto parsed = ParseJsonText(text, dir + "/manifest.json");
  if (!parsed.ok())
    return FormatError(
        parsed.status().message() +
        "; it was not written by escale tokenize (or was damaged): rerun escale tokenize");
  const nlohmann::json m = *std::move(parsed);
  if (!m.is_object() || !m.contains("format") || m["format"] != "llm.c token shards" ||
      !m.contains("tokenizer") || !m["tokenizer"].is_object())
    return FormatError(dir +
                       "/manifest.json was not written by escale tokenize; rerun escale tokenize");
  std::error_code ec;
  if (tokenizer_json.empty() || !fs::is_regular_file(tokenizer_json, ec)) return Status::Ok();
  const nlohmann::json& t = m["tokenizer"];
  if (!t.contains("sha256") || !t["sha256"].is_string()) return Status::Ok();  // older manifests
  ESCALE_ASSIGN_OR_RETURN(const std::string mine, TokenizerFileSha256(tokenizer_json));
  const std::string theirs = t["sha256"].get<std::string>();
  if (mine != theirs)
    return InvalidArgument("the shards in " + dir + " were made with another tokenizer (sha256 " +
                           theirs.substr(0, 12) + "...) than " + tokenizer_json + " (" +
                           mine.substr(0, 12) +
                           "...); retokenize with escale tokenize --tokenizer " + tokenizer_json);
  return Status::Ok();
}

}  // namespace escale::tok
