#include "core/atomic_output.h"

#include "core/splice_write.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace escale {
namespace fs = std::filesystem;

namespace {
std::string Errno() { return std::strerror(errno); }

std::string UniqueSuffix() {
  static std::atomic<unsigned> counter{0};
  return ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
}

std::string ParentOf(const std::string& path) {
  fs::path p = fs::path(path).parent_path();
  return p.empty() ? "." : p.string();
}
}  // namespace

Status FsyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open directory " + dir + ": " + Errno());
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0 && e != EINVAL) return IoError("cannot fsync directory " + dir + ": " + std::strerror(e));
  return Status::Ok();
}

Result<AtomicFile> AtomicFile::Create(const std::string& final_path) {
  AtomicFile f;
  f.final_ = final_path;
  f.tmp_ = final_path + UniqueSuffix();
  f.fd_ = ::open(f.tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (f.fd_ < 0) return IoError("cannot create " + f.tmp_ + ": " + Errno());
  return f;
}

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : final_(std::move(o.final_)), tmp_(std::move(o.tmp_)), fd_(o.fd_), written_(o.written_),
      committed_(o.committed_), splice_(std::move(o.splice_)) {
  o.fd_ = -1;
  o.committed_ = true;
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

Status AtomicFile::Write(const void* data, size_t n) {
  constexpr size_t kSpliceMin = 1u << 20;  // below this, one write() costs less than the pipe
  if (n >= kSpliceMin) {
    if (!splice_) splice_ = std::make_unique<SpliceWriter>();
    ESCALE_RETURN_IF_ERROR(splice_->Write(fd_, data, n, tmp_));
  } else {
    ESCALE_RETURN_IF_ERROR(WriteAll(fd_, data, n, tmp_));
  }
  written_ += n;
  return Status::Ok();
}

Status AtomicFile::Commit() {
  if (::fsync(fd_) != 0) return IoError("cannot fsync " + tmp_ + ": " + Errno());
  if (::close(fd_) != 0) {
    fd_ = -1;
    return IoError("cannot close " + tmp_ + ": " + Errno());
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), final_.c_str()) != 0)
    return IoError("cannot rename " + tmp_ + " to " + final_ + ": " + Errno());
  committed_ = true;
  return FsyncDir(ParentOf(final_));
}

Result<StagingDir> StagingDir::Create(const std::string& final_dir, bool overwrite) {
  std::error_code ec;
  if (fs::exists(final_dir, ec) && !overwrite)
    return InvalidArgument("output " + final_dir + " already exists; choose a new path or pass --overwrite");
  const std::string parent = ParentOf(final_dir);
  if (!fs::is_directory(parent, ec)) fs::create_directories(parent, ec);
  if (ec) return IoError("cannot create directory " + parent + ": " + ec.message());
  StagingDir d;
  d.final_ = final_dir;
  d.tmp_ = final_dir + UniqueSuffix();
  d.overwrite_ = overwrite;
  if (!fs::create_directory(d.tmp_, ec) || ec)
    return IoError("cannot create directory " + d.tmp_ + ": " + ec.message());
  return d;
}

StagingDir::StagingDir(StagingDir&& o) noexcept
    : final_(std::move(o.final_)), tmp_(std::move(o.tmp_)), overwrite_(o.overwrite_),
      committed_(o.committed_) {
  o.committed_ = true;
}

StagingDir::~StagingDir() {
  if (!committed_ && !tmp_.empty()) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

Status StagingDir::Commit() {
  ESCALE_RETURN_IF_ERROR(FsyncDir(tmp_));
  std::error_code ec;
  std::string old;
  if (fs::exists(final_, ec)) {
    if (!overwrite_) return InvalidArgument("output " + final_ + " appeared while writing; not replaced");
    old = final_ + UniqueSuffix();
    fs::rename(final_, old, ec);
    if (ec) return IoError("cannot move old " + final_ + " aside: " + ec.message());
  }
  fs::rename(tmp_, final_, ec);
  if (ec) return IoError("cannot rename " + tmp_ + " to " + final_ + ": " + ec.message());
  committed_ = true;
  ESCALE_RETURN_IF_ERROR(FsyncDir(ParentOf(final_)));
  if (!old.empty()) fs::remove_all(old, ec);
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, const std::string& contents) {
  ESCALE_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(path));
  ESCALE_RETURN_IF_ERROR(f.Write(contents.data(), contents.size()));
  return f.Commit();
}

Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return NotFound(path + " does not exist or is not a file");
  const auto size = fs::file_size(path, ec);
  if (ec) return IoError("cannot stat " + path + ": " + ec.message());
  if (size > max_bytes)
    return FormatError(path + " is " + std::to_string(size) + " bytes, over the limit of " +
                       std::to_string(max_bytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) return IoError("cannot read " + path);
  return ss.str();
}

Status CopyFileAtomic(const std::string& src, const std::string& dst) {
  std::ifstream in(src, std::ios::binary);
  if (!in) return IoError("cannot open " + src);
  ESCALE_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(dst));
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = in.gcount();
    if (got > 0) ESCALE_RETURN_IF_ERROR(f.Write(buf.data(), static_cast<size_t>(got)));
  }
  if (in.bad()) return IoError("cannot read " + src);
  return f.Commit();
}

}  // namespace escale
