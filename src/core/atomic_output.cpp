#include "core/atomic_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/input_fault_guard.h"
#include "core/splice_write.h"

namespace escale {
namespace fs = std::filesystem;

namespace {
std::string Errno() { return std::strerror(errno); }

constexpr size_t kNameMax = 255;       // NAME_MAX of Linux file systems
constexpr size_t kSuffixReserve = 24;  // ".tmp-" + pid (7 digits) + "-" + counter (10 digits)

std::string UniqueSuffix() {
  static std::atomic<unsigned> counter{0};
  return ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
}

// The temporary sibling of `final_path`: its name, shortened when the suffix would push a long
// (legal) name past NAME_MAX, then ".tmp-PID-N".
std::string StagingPrefix(const std::string& final_path) {
  const fs::path p(final_path);
  std::string base = p.filename().string();
  if (base.size() + kSuffixReserve > kNameMax) base.resize(kNameMax - kSuffixReserve);
  return (p.parent_path() / base).string() + ".tmp-";
}
std::string TempSibling(const std::string& final_path) {
  return StagingPrefix(final_path) + UniqueSuffix().substr(5);
}

// Removes staging entries of `final_path` whose process is gone: NAME.tmp-PID-N with no live PID.
// A live PID (ours, a concurrent writer, or a reused number) is left alone.
void RemoveStaleStaging(const std::string& final_path) {
  const std::string prefix = StagingPrefix(final_path);
  const fs::path parent = fs::path(prefix).parent_path();
  const std::string name_prefix = fs::path(prefix).filename().string();
  std::error_code ec;
  fs::directory_iterator it(parent.empty() ? fs::path(".") : parent, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, name_prefix.size(), name_prefix) != 0) continue;
    const std::string rest = name.substr(name_prefix.size());
    const size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string::npos ||
        rest.find_first_not_of("0123456789-") != std::string::npos)
      continue;
    const long pid = std::strtol(rest.substr(0, dash).c_str(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH)
      continue;
    std::error_code rm;
    const auto removed = fs::remove_all(it->path(), rm);
    if (!rm && removed > 0)
      std::fprintf(stderr, "escale: removed %s, left by a run that was killed (process %ld)\n",
                   it->path().c_str(), pid);
  }
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
  f.tmp_ = TempSibling(final_path);
  f.fd_ = ::open(f.tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (f.fd_ < 0)
    return IoError("cannot create " + final_path + " (its temporary file " + f.tmp_ +
                   "): " + Errno());
  fault_guard::AddStaging(f.tmp_);
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
  if (!committed_ && !tmp_.empty()) {
    ::unlink(tmp_.c_str());
    fault_guard::RemoveStaging(tmp_);
  }
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
  fault_guard::RemoveStaging(tmp_);
  return FsyncDir(ParentOf(final_));
}

std::string NormalizeOutputPath(const std::string& path) {
  if (path.empty()) return path;
  std::string n = fs::path(path).lexically_normal().string();
  while (n.size() > 1 && n.back() == '/') n.pop_back();
  return n;
}

Status CheckOutputApartFromInputs(const std::string& output,
                                  const std::vector<std::string>& inputs) {
  std::error_code ec;
  const fs::path out = fs::weakly_canonical(fs::absolute(output, ec), ec);
  if (ec) return Status::Ok();  // an unresolvable path cannot be an existing input
  auto under = [](const fs::path& inner, const fs::path& outer) {
    return std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end()).first ==
           outer.end();
  };
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    std::error_code e2;
    const fs::path p = fs::weakly_canonical(fs::absolute(NormalizeOutputPath(in), e2), e2);
    if (e2) continue;
    if (p == out)
      return InvalidArgument("output " + output + " is the input " + in +
                             "; choose another output path");
    if (under(p, out))
      return InvalidArgument("output " + output + " contains the input " + in +
                             " (replacing it would delete the input); choose another output path");
    if (under(out, p))
      return InvalidArgument("output " + output + " lies inside the input " + in +
                             "; choose a path outside it");
  }
  return Status::Ok();
}

Result<StagingDir> StagingDir::Create(const std::string& user_dir, bool overwrite,
                                      const std::vector<std::string>& inputs) {
  const std::string final_dir = NormalizeOutputPath(user_dir);
  std::string spelled = user_dir;  // "out/." and "a/.." name a directory only by reference: refused
  while (spelled.size() > 1 && spelled.back() == '/') spelled.pop_back();
  const std::string last = fs::path(spelled).filename().string();
  const std::string base = fs::path(final_dir).filename().string();
  if (final_dir.empty() || base.empty() || base == "." || base == ".." || last == "." ||
      last == "..")
    return InvalidArgument("output path '" + user_dir +
                           "' names no new directory; give a path such as out/model");
  ESCALE_RETURN_IF_ERROR(CheckOutputApartFromInputs(final_dir, inputs));
  std::error_code ec;
  if (fs::exists(final_dir, ec) && !overwrite)
    return InvalidArgument("output " + user_dir +
                           " already exists; choose a new path or pass --overwrite");
  if (fs::exists(final_dir, ec) && !fs::is_directory(final_dir, ec))
    return InvalidArgument("output " + user_dir +
                           " exists and is not a directory; remove it or choose another path");
  const std::string parent = ParentOf(final_dir);
  if (!fs::is_directory(parent, ec)) fs::create_directories(parent, ec);
  if (ec) return IoError("cannot create directory " + parent + ": " + ec.message());
  RemoveStaleStaging(final_dir);
  StagingDir d;
  d.final_ = final_dir;
  d.tmp_ = TempSibling(final_dir);
  d.overwrite_ = overwrite;
  if (!fs::create_directory(d.tmp_, ec) || ec)
    return IoError("cannot create " + user_dir + " (its staging directory " + d.tmp_ +
                   "): " + ec.message());
  fault_guard::AddStaging(d.tmp_);
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
    fault_guard::RemoveStaging(tmp_);
  }
}

Status StagingDir::Commit() {
  ESCALE_RETURN_IF_ERROR(FsyncDir(tmp_));
  std::error_code ec;
  std::string old;
  if (fs::exists(final_, ec)) {
    if (!overwrite_) return InvalidArgument("output " + final_ + " appeared while writing; not replaced");
    old = TempSibling(final_);
    fs::rename(final_, old, ec);
    if (ec) return IoError("cannot move old " + final_ + " aside: " + ec.message());
  }
  fs::rename(tmp_, final_, ec);
  if (ec) return IoError("cannot rename " + tmp_ + " to " + final_ + ": " + ec.message());
  committed_ = true;
  fault_guard::RemoveStaging(tmp_);
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
