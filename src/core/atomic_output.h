// Outputs appear complete or not at all: every file and directory escale writes is built under a
// temporary name in the same directory, fsynced, and renamed into place. A run killed at any
// moment leaves either the old output or the new one, plus at most a stale *.tmp-* entry that
// the next run removes.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale {

class SpliceWriter;

// Writes one file. Commit() = flush + fsync + rename + fsync(parent). Without Commit() the
// destructor removes the temporary file. Large writes go through a pipe (core/splice_write.h).
class AtomicFile {
 public:
  static Result<AtomicFile> Create(const std::string& final_path);
  AtomicFile(AtomicFile&& o) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  ~AtomicFile();

  Status Write(const void* data, size_t n);
  Status Commit();
  size_t bytes_written() const { return written_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  AtomicFile() = default;
  std::string final_;
  std::string tmp_;
  int fd_ = -1;
  size_t written_ = 0;
  bool committed_ = false;
  std::unique_ptr<SpliceWriter> splice_;  // created on the first large write
};

// Builds a directory. Files go into path(); Commit() fsyncs the directory and renames it over
// `final_dir` (an existing `final_dir` is replaced only when `overwrite` was set). `final_dir` may
// end in '/'. An output that equals, contains or lies inside one of `inputs` is refused, so that
// --overwrite can never delete what is being read. Staging entries of `final_dir` left by killed
// processes are removed first (and said so on stderr).
class StagingDir {
 public:
  static Result<StagingDir> Create(const std::string& final_dir, bool overwrite,
                                   const std::vector<std::string>& inputs = {});
  StagingDir(StagingDir&& o) noexcept;
  StagingDir& operator=(StagingDir&&) = delete;
  StagingDir(const StagingDir&) = delete;
  ~StagingDir();

  const std::string& path() const { return tmp_; }
  const std::string& final_path() const { return final_; }
  Status Commit();

 private:
  StagingDir() = default;
  std::string final_;
  std::string tmp_;
  bool overwrite_ = false;
  bool committed_ = false;
};

// Refuses an output path that equals, contains or lies inside any of `inputs` (compared after
// resolving symlinks and "..", so different spellings of one place are caught).
Status CheckOutputApartFromInputs(const std::string& output,
                                  const std::vector<std::string>& inputs);
// "dir/" -> "dir", "a/./b" -> "a/b"; the path a user means, without the spelling that breaks
// rename(2) and sibling names.
std::string NormalizeOutputPath(const std::string& path);

// Atomically replace a small file's contents (manifests, pointers, JSON).
Status WriteFileAtomic(const std::string& path, const std::string& contents);
Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 64u << 20);
Status FsyncDir(const std::string& dir);
// Copy a file through an AtomicFile (used to carry tokenizer files along).
Status CopyFileAtomic(const std::string& src, const std::string& dst);

}  // namespace escale
