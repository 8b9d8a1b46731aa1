// Streaming, sharding safetensors writer (docs/formats.md, "safetensors writer").
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "io/safetensors.h"

namespace escale {
namespace {

constexpr size_t kBufferBytes = 8u << 20;  // large writes keep the writer near `cp` speed

Result<uint64_t> DeclaredBytes(const SafetensorsEntry& e) {
  uint64_t numel = 1;
  for (int64_t d : e.shape) {
    if (d < 0) return InvalidArgument("tensor '" + e.name + "' has a negative dimension");
    const uint64_t u = static_cast<uint64_t>(d);
    if (u != 0 && numel > std::numeric_limits<uint64_t>::max() / 64 / u)
      return InvalidArgument("tensor '" + e.name + "' shape " + ShapeToString(e.shape) + " is too large");
    numel *= u;
  }
  const uint64_t bits = numel * static_cast<uint64_t>(DTypeBits(e.dtype));
  if (bits % 8 != 0)
    return InvalidArgument("tensor '" + e.name + "' does not fill whole bytes in " +
                           std::string(DTypeName(e.dtype)));
  return bits / 8;
}

std::string ShardName(const std::string& base, size_t i, size_t n) {
  if (n == 1) return base + ".safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu", i + 1, n);
  return base + buf + ".safetensors";
}

}  // namespace

struct SafetensorsWriter::Impl {
  struct Shard {
    std::string path;
    std::vector<size_t> entries;  // indices into `declared`
    std::string header;           // 8-byte length + padded JSON
    std::optional<AtomicFile> file;
  };
  std::string dir;
  Options opt;
  std::vector<SafetensorsEntry> declared;
  std::vector<size_t> shard_of;
  std::vector<Shard> shards;
  size_t next = 0;
  uint64_t total = 0;
  std::vector<char> buf;
  size_t buf_used = 0;
  bool finished = false;

  Status Flush(Shard& s) {
    if (buf_used == 0) return Status::Ok();
    ESCALE_RETURN_IF_ERROR(s.file->Write(buf.data(), buf_used));
    buf_used = 0;
    return Status::Ok();
  }
  Status Append(Shard& s, const void* p, size_t n) {
    if (n >= buf.size()) {  // big tensors go straight to the file, in buffer-sized writes
      ESCALE_RETURN_IF_ERROR(Flush(s));
      const char* c = static_cast<const char*>(p);
      for (size_t off = 0; off < n; off += buf.size())
        ESCALE_RETURN_IF_ERROR(s.file->Write(c + off, std::min(buf.size(), n - off)));
      return Status::Ok();
    }
    if (buf_used + n > buf.size()) ESCALE_RETURN_IF_ERROR(Flush(s));
    std::memcpy(buf.data() + buf_used, p, n);
    buf_used += n;
    return Status::Ok();
  }
};

SafetensorsWriter::SafetensorsWriter() : impl_(std::make_unique<Impl>()) {}
SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&&) noexcept = default;
SafetensorsWriter::~SafetensorsWriter() = default;

Result<SafetensorsWriter> SafetensorsWriter::Create(const std::string& dir,
                                                    std::vector<SafetensorsEntry> declared,
                                                    Options opt) {
  SafetensorsWriter w;
  Impl& m = *w.impl_;
  m.dir = dir;
  m.opt = std::move(opt);
  if (m.opt.max_shard_bytes == 0) return InvalidArgument("max_shard_bytes must be positive");
  std::set<std::string> seen;
  // Split like huggingface_hub: in declaration order, start a new shard when the next tensor
  // would push the current one past the limit; an oversized tensor gets a shard of its own.
  std::vector<std::vector<size_t>> groups(1);
  uint64_t current = 0;
  for (size_t i = 0; i < declared.size(); ++i) {
    SafetensorsEntry& e = declared[i];
    if (e.name == "__metadata__" || !seen.insert(e.name).second)
      return InvalidArgument("tensor name '" + e.name + "' is declared twice or reserved");
    ESCALE_ASSIGN_OR_RETURN(uint64_t nbytes, DeclaredBytes(e));
    if (!groups.back().empty() && current + nbytes > m.opt.max_shard_bytes) {
      groups.emplace_back();
      current = 0;
    }
    groups.back().push_back(i);
    current += nbytes;
    m.total += nbytes;
    e.end = nbytes;  // byte size for now; offsets are assigned per shard below
  }
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [k, v] : m.opt.metadata) meta[k] = v;
  meta["format"] = "pt";
  m.shard_of.resize(declared.size());
  for (size_t s = 0; s < groups.size(); ++s) {
    Impl::Shard shard;
    shard.path = dir + "/" + ShardName(m.opt.basename, s, groups.size());
    shard.entries = groups[s];
    // __metadata__ first, then tensors in file order (the reference writer's layout).
    std::string js = "{\"__metadata__\":" + meta.dump();
    uint64_t off = 0;
    for (size_t idx : groups[s]) {
      SafetensorsEntry& e = declared[idx];
      const uint64_t nbytes = e.end;
      e.begin = off;
      e.end = off + nbytes;
      off = e.end;
      m.shard_of[idx] = s;
      js += ',';
      js += nlohmann::json(e.name).dump();
      js += ":{\"dtype\":\"";
      js += DTypeName(e.dtype);
      js += "\",\"shape\":";
      js += nlohmann::json(e.shape).dump();
      js += ",\"data_offsets\":[";
      js += std::to_string(e.begin);
      js += ',';
      js += std::to_string(e.end);
      js += "]}";
    }
    js += "}";
    js.append((8 - js.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
    if (js.size() > kSafetensorsMaxHeader)
      return InvalidArgument("safetensors header for " + shard.path + " would exceed 100 MB; lower max_shard_bytes");
    uint64_t n = js.size();
    char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    shard.header.assign(len, 8);
    shard.header += js;
    m.shards.push_back(std::move(shard));
  }
  m.declared = std::move(declared);
  m.buf.resize(kBufferBytes);
  return w;
}

Status SafetensorsWriter::Write(const std::string& name, const void* bytes, size_t n) {
  Impl& m = *impl_;
  if (m.finished) return InternalError("SafetensorsWriter::Write after Finish");
  if (m.next >= m.declared.size())
    return InternalError("tensor '" + name + "' written but all declared tensors are done");
  const SafetensorsEntry& e = m.declared[m.next];
  if (e.name != name)
    return InternalError("tensor '" + name + "' written where '" + e.name + "' was declared next");
  if (e.end - e.begin != n)
    return InternalError("tensor '" + name + "' has " + std::to_string(n) + " bytes, declared " +
                         std::to_string(e.end - e.begin));
  Impl::Shard& s = m.shards[m.shard_of[m.next]];
  if (!s.file) {
    ESCALE_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(s.path));
    s.file.emplace(std::move(f));
    ESCALE_RETURN_IF_ERROR(m.Append(s, s.header.data(), s.header.size()));
  }
  ESCALE_RETURN_IF_ERROR(m.Append(s, bytes, n));
  ++m.next;
  if (m.next == m.declared.size() || m.shard_of[m.next] != m.shard_of[m.next - 1])
    ESCALE_RETURN_IF_ERROR(m.Flush(s));
  return Status::Ok();
}

Status SafetensorsWriter::Finish() {
  Impl& m = *impl_;
  if (m.finished) return Status::Ok();
  if (m.next != m.declared.size())
    return InternalError("SafetensorsWriter::Finish with tensor '" + m.declared[m.next].name +
                         "' not yet written");
  for (Impl::Shard& s : m.shards) {
    if (!s.file) {  // a shard without tensors (empty model): header only
      ESCALE_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(s.path));
      s.file.emplace(std::move(f));
      ESCALE_RETURN_IF_ERROR(s.file->Write(s.header.data(), s.header.size()));
    }
    ESCALE_RETURN_IF_ERROR(s.file->Commit());
  }
  if (m.shards.size() > 1) {
    nlohmann::json index;
    index["metadata"]["total_size"] = m.total;
    nlohmann::json& wm = index["weight_map"] = nlohmann::json::object();
    for (size_t i = 0; i < m.declared.size(); ++i) {
      const std::string& p = m.shards[m.shard_of[i]].path;
      wm[m.declared[i].name] = p.substr(p.rfind('/') + 1);
    }
    ESCALE_RETURN_IF_ERROR(
        WriteFileAtomic(m.dir + "/" + m.opt.basename + ".safetensors.index.json", index.dump(2) + "\n"));
  }
  m.finished = true;
  return Status::Ok();
}

uint64_t SafetensorsWriter::total_bytes() const { return impl_->total; }

}  // namespace escale
