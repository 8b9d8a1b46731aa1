// Helpers shared by the tests: scratch directories, running the CLI, small random fixtures.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace escale::testing {

// A fresh directory under the build's temp area, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the escale binary with `args` (a shell-quoted string).
CommandResult RunEscale(const std::string& args);
CommandResult RunShell(const std::string& command);

std::string SourceDir();
void WriteFile(const std::string& path, const std::string& contents);
std::string ReadFile(const std::string& path);

}  // namespace escale::testing
