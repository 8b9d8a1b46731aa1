#include "support/test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace escale::testing {
namespace fs = std::filesystem;

TempDir::TempDir() {
  static std::atomic<int> n{0};
  path_ = (fs::temp_directory_path() /
           ("escale-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++))).string();
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string SourceDir() { return ESCALE_SOURCE_DIR; }

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream f(path, std::ios::binary);
  f.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

CommandResult RunShell(const std::string& command) {
  TempDir tmp;
  const std::string out = tmp / "out", err = tmp / "err";
  const std::string full = command + " >" + out + " 2>" + err + " </dev/null";
  const int rc = std::system(full.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + (WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
}

CommandResult RunEscale(const std::string& args) {
  return RunShell(std::string(ESCALE_BINARY) + " --quiet " + args);
}

}  // namespace escale::testing
