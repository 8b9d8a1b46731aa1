#include "pipeline/runner.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "core/subprocess.h"
#include "io/hf_model.h"
#include "io/tokenizer.h"
#include "model/layout.h"
#include "pipeline/report.h"

namespace escale::pipeline {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string Latest(const std::string& dir) {
  return "@latest:" + dir;
}

std::string FormatNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.12g", v);
  return buf;
}

void AddFlags(std::vector<std::string>& args, const Flags& flags) {
  for (const auto& [flag, values] : flags) {
    if (values.empty()) args.push_back("--" + flag);
    for (const auto& v : values) {
      args.push_back("--" + flag);
      args.push_back(v);
    }
  }
}

bool HasFlag(const Flags& flags, const std::string& f) {
  for (const auto& [flag, v] : flags)
    if (flag == f) return true;
  return false;
}

Result<std::string> ResolveLatest(const std::string& arg) {
  if (!arg.starts_with("@latest:")) return arg;
  const std::string dir = arg.substr(8);
  ESCALE_ASSIGN_OR_RETURN(std::string name, ReadSmallFile(dir + "/checkpoints/latest"));
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  return dir + "/checkpoints/" + name + "/model";
}

// The sequence length a train stage uses: from its TOML, else the trainer's default.
int64_t SeqLenOf(const std::string& toml_text) {
  // The train option table's default is 256; the stage TOML may set seq_len.
  const auto p = toml_text.find("seq_len");
  if (p == std::string::npos) return 256;
  const auto eq = toml_text.find('=', p);
  return eq == std::string::npos ? 256 : std::atoll(toml_text.c_str() + eq + 1);
}

}  // namespace

std::vector<Stage> PlanStages(const Recipe& r) {
  const std::string& o = r.out;
  const std::string seed = std::to_string(r.seed);
  std::vector<Stage> s;
  std::string tokenizer = r.tokenizer,
              tokenizer_dir =
                  r.tokenizer.empty() ? "" : fs::path(r.tokenizer).parent_path().string();
  if (tokenizer.empty()) {
    tokenizer_dir = o + "/tokenizer";
    tokenizer = tokenizer_dir + "/tokenizer.json";
    Stage t{"tokenizer",
            {"tokenizer", "train"},
            tokenizer,
            "",
            false,
            false,
            "train a byte-level BPE tokenizer"};
    for (const auto& in : r.inputs) t.args.push_back(in);
    t.args.insert(t.args.end(), {"--vocab-size", std::to_string(r.vocab_size), "-o", tokenizer});
    s.push_back(t);
  }
  Stage shards{"shards",
               {"tokenize", "--tokenizer", tokenizer},
               o + "/shards",
               "",
               false,
               true,
               "corpus -> token shards"};
  for (const auto& in : r.inputs) shards.args.insert(shards.args.end(), {"--input", in});
  shards.args.insert(shards.args.end(),
                     {"--output", o + "/shards", "--val-fraction", FormatNumber(r.val_fraction),
                      "--workers", std::to_string(r.workers), "--seed", seed});
  s.push_back(shards);
  std::string model = r.model;
  if (model.empty()) {
    model = o + "/dense-init";
    s.push_back(
        {"init",
         {"init", model, "--preset", r.preset, "--seed", seed, "--tokenizer-from", tokenizer_dir},
         model,
         "",
         false,
         true,
         "random dense model (vocabulary of the tokenizer)"});
  }
  auto train = [&](const std::string& name, const std::string& from, const TrainStageSpec& spec,
                   const char* note) {
    Stage t{name,
            {"train", "--model", from, "--data", o + "/shards", "--out", o + "/" + name, "--seed",
             seed},
            o + "/" + name,
            spec.toml,
            true,
            false,
            note};
    t.args.insert(t.args.begin() + 1, {"--config", o + "/configs/" + name + ".toml"});
    s.push_back(t);
    return Latest(o + "/" + name);
  };
  std::string current = model;
  if (r.prepare_train.present)
    current = train("prepare", model, r.prepare_train, "train the small dense model");
  std::vector<std::string> trained =
      r.prepare_train.present ? std::vector<std::string>{"prepare"} : std::vector<std::string>{};
  if (r.scale_up) {
    Stage up{"scale_up",
             {"scale-up", current, o + "/grown"},
             o + "/grown",
             "",
             false,
             true,
             "grow wider and deeper"};
    AddFlags(up.args, r.scale_up_flags);
    if (!HasFlag(r.scale_up_flags, "seed")) up.args.insert(up.args.end(), {"--seed", seed});
    s.push_back(up);
    if (r.verify)
      s.push_back({"verify_up",
                   {"verify", current, o + "/grown"},
                   "",
                   "",
                   false,
                   false,
                   "function preservation of the growth"});
    current = o + "/grown";
    if (r.up_train.present) {
      current = train("up", o + "/grown", r.up_train, "continued pretraining of the grown model");
      trained.push_back("up");
    }
  }
  if (r.scale_out) {
    Stage so{"scale_out", {"scale-out", current, o + "/upcycled"}, o + "/upcycled", "", false,
             true,        "upcycle to a Mixture-of-Experts"};
    AddFlags(so.args, r.scale_out_flags);
    if (!HasFlag(r.scale_out_flags, "seed")) so.args.insert(so.args.end(), {"--seed", seed});
    s.push_back(so);
    if (r.verify)
      s.push_back({"verify_out",
                   {"verify", current, o + "/upcycled"},
                   "",
                   "",
                   false,
                   false,
                   "function preservation of the upcycling"});
    current = o + "/upcycled";
    if (r.out_train.present) {
      current = train("moe", o + "/upcycled", r.out_train, "continued pretraining of the MoE");
      trained.push_back("moe");
    }
  }
  if (r.baseline) {
    Stage b{"baseline",
            {"train", "--config", o + "/configs/baseline.toml", "--from-config",
             o + "/" + (r.scale_out ? "upcycled" : "grown") + "/config.json", "--data",
             o + "/shards", "--out", o + "/baseline", "--seed", seed},
            o + "/baseline",
            r.baseline_train.toml,
            true,
            false,
            "the final architecture from scratch, same tokens"};
    s.push_back(b);
    trained.push_back("baseline");
  }
  if (r.eval) {
    for (const auto& name : trained) {
      Stage e{"eval_" + name,
              {"eval", Latest(o + "/" + name), "--tokenizer", tokenizer, "--shards", o + "/shards",
               "--json", "--output", o + "/eval/" + name + ".json"},
              o + "/eval/" + name + ".json",
              "",
              false,
              false,
              "validation perplexity" + std::string(r.tasks.empty() ? "" : " and tasks")};
      for (const auto& t : r.tasks) e.args.insert(e.args.end(), {"--task", t});
      // Windows as long as the stage trained on (a model trained at 128 tokens is not asked about
      // 2048).
      std::string toml;
      for (const Stage& st : s)
        if (st.train && st.name == name) toml = st.train_config;
      const int64_t len = r.eval_max_length > 0 ? r.eval_max_length : SeqLenOf(toml);
      e.args.insert(e.args.end(), {"--max-length", std::to_string(len)});
      s.push_back(e);
    }
  }
  return s;
}

namespace {

// What a training stage's metrics.jsonl says, read once: tokens trained (the last step record),
// median tokens/s, and the validation curve as (tokens, loss) at each evaluation.
struct RunFigures {
  double tokens = 0, tokens_per_second = NAN;
  std::vector<std::pair<double, double>> val;
};

RunFigures ReadRunFigures(const std::string& run_dir) {
  RunFigures f;
  auto m = ReadStageMetrics(run_dir, run_dir);
  if (!m.ok() || m->steps.empty()) return f;
  f.tokens = m->steps.back().value("tokens", 0.0);
  std::vector<double> v;
  for (const auto& r : m->steps)
    if (r.contains("tokens_per_s")) v.push_back(r["tokens_per_s"].get<double>());
  if (!v.empty()) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    f.tokens_per_second = v[v.size() / 2];
  }
  for (const auto& [step, loss] : m->evals) {
    double tok = 0;
    for (const auto& r : m->steps)
      if (r["step"].get<int64_t>() <= step) tok = r.value("tokens", tok);
    f.val.emplace_back(tok, loss);
  }
  return f;
}

Status WriteSummary(const Recipe& r, const std::vector<Stage>& stages) {
  json summary = {{"recipe", r.path}, {"out", r.out}};
  json rows = json::array();
  double es_flops = 0, es_seconds = 0;
  struct Point {
    double flops, loss;
  };
  std::vector<Point> es_curve, base_curve;
  double base_flops = 0, base_seconds = 0, base_final = NAN;
  for (const Stage& st : stages) {
    if (!st.train) continue;
    auto model_dir = ResolveLatest(Latest(st.output));
    if (!model_dir.ok()) continue;
    auto cfg = ReadHfConfig(*model_dir);
    if (!cfg.ok()) continue;
    const ParameterCounts pc = CountParameters(*cfg);
    const double fpt = TrainingFlopsPerToken(*cfg, SeqLenOf(st.train_config)).total();
    const RunFigures fig = ReadRunFigures(st.output);
    const double tokens = fig.tokens, tps = fig.tokens_per_second;
    json row = {{"stage", st.name},     {"parameters", pc.total}, {"active_parameters", pc.active},
                {"tokens", tokens},     {"flops_per_token", fpt}, {"tokens_per_second", tps},
                {"flops", fpt * tokens}};
    std::ifstream ev(r.out + "/eval/" + st.name + ".json");
    if (ev) {
      json e = json::parse(ev, nullptr, false);
      if (!e.is_discarded() && e.contains("shard_perplexity"))
        row["val_loss"] = e["shard_perplexity"]["loss"];
      if (!e.is_discarded() && e.contains("tasks")) row["tasks"] = e["tasks"];
    }
    rows.push_back(row);
    const bool base = st.name == "baseline";
    double& flops = base ? base_flops : es_flops;
    auto& curve = base ? base_curve : es_curve;
    for (const auto& [tok, loss] : fig.val) curve.push_back({flops + fpt * tok, loss});
    flops += fpt * tokens;
    (base ? base_seconds : es_seconds) += std::isfinite(tps) && tps > 0 ? tokens / tps : 0;
    if (base && !curve.empty()) base_final = curve.back().loss;
  }
  summary["stages"] = rows;
  if (base_flops > 0 && es_flops > 0) {
    // SPEC.md §6 on one machine: the cluster rate is the same for every phase, so compute and time
    // savings are both the ratio of the from-scratch time to the EfficientScale time on the same
    // tokens; plus the honest figure: EfficientScale compute until its validation loss first
    // reaches the baseline's final loss.
    json cost = {{"efficientscale_flops", es_flops},
                 {"baseline_flops", base_flops},
                 {"efficientscale_seconds", es_seconds},
                 {"baseline_seconds", base_seconds},
                 {"time_savings", es_seconds > 0 ? base_seconds / es_seconds : NAN},
                 {"baseline_final_val_loss", base_final}};
    double reach = NAN;
    for (const Point& p : es_curve)
      if (p.loss <= base_final) {
        reach = p.flops;
        break;
      }
    cost["efficientscale_flops_to_baseline_loss"] =
        std::isfinite(reach) ? json(reach) : json(nullptr);
    cost["compute_savings_to_baseline_loss"] =
        std::isfinite(reach) && reach > 0 ? json(base_flops / reach) : json(nullptr);
    summary["cost"] = cost;
  }
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(r.out + "/pipeline.json", summary.dump(2) + "\n"));
  std::printf("\n%-10s %14s %14s %12s %12s %10s\n", "stage", "parameters", "active", "tokens",
              "tokens/s", "val loss");
  for (const auto& row : rows)
    std::printf("%-10s %14lld %14lld %12.0f %12.0f %10s\n", row["stage"].get<std::string>().c_str(),
                static_cast<long long>(row["parameters"].get<int64_t>()),
                static_cast<long long>(row["active_parameters"].get<int64_t>()),
                row["tokens"].get<double>(),
                row["tokens_per_second"].is_number() ? row["tokens_per_second"].get<double>() : NAN,
                row.contains("val_loss")
                    ? std::to_string(row["val_loss"].get<double>()).substr(0, 6).c_str()
                    : "-");
  if (summary.contains("cost")) {
    const json& c = summary["cost"];
    std::printf(
        "\nbaseline final val loss %.4f; EfficientScale %s it after %s of the baseline's FLOPs\n",
        c["baseline_final_val_loss"].get<double>(),
        c["efficientscale_flops_to_baseline_loss"].is_null() ? "never reached" : "reached",
        c["compute_savings_to_baseline_loss"].is_null()
            ? "-"
            : (std::to_string(100.0 / c["compute_savings_to_baseline_loss"].get<double>())
                   .substr(0, 5) +
               "%")
                  .c_str());
  }
  return Status::Ok();
}

}  // namespace

Status RunPipeline(const Recipe& r, const PipelineOptions& opt) {
  const std::vector<Stage> stages = PlanStages(r);
  const std::string markers = r.out + "/stages";
  if (opt.dry_run) {
    for (const Stage& s : stages) {
      const bool done = fs::exists(markers + "/" + s.name + ".done");
      std::printf("%-11s %-6s %s\n            escale %s\n", s.name.c_str(), done ? "done" : "",
                  s.note.c_str(), ShellJoin(s.args).c_str());
    }
    return Status::Ok();
  }
  std::error_code ec;
  for (const char* d : {"", "/stages", "/configs", "/logs", "/eval", "/tokenizer"}) {
    fs::create_directories(r.out + d, ec);
    if (ec) return IoError("cannot create " + r.out + d + ": " + ec.message());
  }
  ESCALE_ASSIGN_OR_RETURN(std::string recipe_text, ReadSmallFile(r.path));
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(r.out + "/recipe.toml", recipe_text));
  for (const Stage& s : stages) {
    const std::string marker = markers + "/" + s.name + ".done";
    if (fs::exists(marker)) {
      std::printf("== %s: done\n", s.name.c_str());
      continue;
    }
    std::vector<std::string> argv = {opt.executable};
    for (const auto& a : s.args) {
      ESCALE_ASSIGN_OR_RETURN(std::string v, ResolveLatest(a));
      argv.push_back(v);
    }
    if (s.name == "init") {
      // The model's vocabulary is the tokenizer's, known once the tokenizer exists.
      const std::string tok =
          r.tokenizer.empty() ? r.out + "/tokenizer/tokenizer.json" : r.tokenizer;
      ESCALE_ASSIGN_OR_RETURN(auto t, tok::Tokenizer::FromFile(tok));
      argv.insert(argv.end(), {"--vocab", std::to_string(t->vocab_size())});
    }
    if (s.train) {
      std::string config = s.train_config;
      if (s.name == "baseline" && config.find("steps") == std::string::npos &&
          config.find("token_budget") == std::string::npos) {
        double tokens = 0;
        for (const Stage& t : stages)
          if (t.train && t.name != "baseline") tokens += ReadRunFigures(t.output).tokens;
        config += "token_budget = " + std::to_string(static_cast<int64_t>(tokens)) + "\n";
      }
      ESCALE_RETURN_IF_ERROR(WriteFileAtomic(r.out + "/configs/" + s.name + ".toml", config));
      if (fs::exists(s.output + "/checkpoints/latest")) argv.push_back("--resume");
    } else if (s.overwrite_flag && !s.output.empty() && fs::exists(s.output)) {
      argv.push_back("--overwrite");  // left by an interrupted run of this stage
    }
    std::printf("== %s: %s\n   %s\n", s.name.c_str(), s.note.c_str(), ShellJoin(argv).c_str());
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    ESCALE_ASSIGN_OR_RETURN(int rc, RunProcessTee(argv, r.out + "/logs/" + s.name + ".log"));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rc != 0)
      return Status(ErrorCode::kInvalidArgument,
                    "stage '" + s.name + "' failed (exit " + std::to_string(rc) + "; log " + r.out +
                        "/logs/" + s.name +
                        ".log); fix the cause and rerun: finished stages are kept");
    ESCALE_RETURN_IF_ERROR(WriteFileAtomic(
        marker, json{{"command", ShellJoin(argv)}, {"seconds", seconds}}.dump() + "\n"));
  }
  ESCALE_RETURN_IF_ERROR(WriteSummary(r, stages));
  std::vector<std::string> report = {opt.executable, "-q",      "report",
                                     r.out,          "--title", "EfficientScale run " + r.out};
  ESCALE_ASSIGN_OR_RETURN(int rc, RunProcessTee(report, ""));
  if (rc != 0) return Status(ErrorCode::kIo, "the report failed (exit " + std::to_string(rc) + ")");
  return Status::Ok();
}

}  // namespace escale::pipeline
