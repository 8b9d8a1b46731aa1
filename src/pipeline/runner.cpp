#include "pipeline/runner.h"

#include <omp.h>
#include <toml++/toml.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/atomic_output.h"
#include "core/subprocess.h"
#include "eval/savings.h"
#include "io/hf_model.h"
#include "model/layout.h"
#include "ops/cpu/sgemm_rate.h"
#include "pipeline/compare.h"
#include "pipeline/recipe_check.h"
#include "pipeline/report.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint_store.h"
#include "train/train_options.h"

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

toml::table ParseStageToml(const std::string& text) {
  try {
    return toml::parse(text);
  } catch (const toml::parse_error&) {
    return {};  // the stage's own train run reports a bad table with its line
  }
}

// An option of a train stage's TOML, else the trainer's default.
int64_t IntOption(const std::string& toml_text, const char* key, int64_t dflt) {
  return ParseStageToml(toml_text)[key].value_or(dflt);
}
int64_t SeqLenOf(const std::string& toml_text) {
  return IntOption(toml_text, "seq_len", TrainOptions{}.seq_len);
}

std::string BranchName(double fraction) {
  return "baseline_decay_" + std::to_string(static_cast<int>(std::lround(fraction * 100)));
}

}  // namespace

namespace {

// Builds the stage list of a recipe in order; `current` is the model the next stage starts from.
class StagePlanner {
 public:
  explicit StagePlanner(const Recipe& r) : r_(r), o_(r.out), seed_(std::to_string(r.seed)) {}
  std::vector<Stage> Plan() && {
    Data();
    Preparation();
    if (r_.scale_up)
      Surgery(
          {"scale_up", "scale-up", "grown", "grow wider and deeper", "verify_up",
           "function preservation of the growth", "up", "continued pretraining of the grown model"},
          r_.scale_up_flags, r_.up_train);
    if (r_.scale_out)
      Surgery(
          {"scale_out", "scale-out", "upcycled", "upcycle to a Mixture-of-Experts", "verify_out",
           "function preservation of the upcycling", "moe", "continued pretraining of the MoE"},
          r_.scale_out_flags, r_.out_train);
    if (r_.baseline) Baseline();
    if (r_.eval) Evaluations();
    return std::move(s_);
  }

 private:
  struct SurgeryNames {
    const char *stage, *command, *output, *note, *verify, *verify_note, *train, *train_note;
  };

  // The tokenizer (trained unless the recipe names one) and the token shards.
  void Data() {
    tokenizer_ = r_.tokenizer;
    tokenizer_dir_ = r_.tokenizer.empty() ? "" : fs::path(r_.tokenizer).parent_path().string();
    if (tokenizer_.empty()) {
      tokenizer_dir_ = o_ + "/tokenizer";
      tokenizer_ = tokenizer_dir_ + "/tokenizer.json";
      Stage t{"tokenizer",
              {"tokenizer", "train"},
              tokenizer_,
              "",
              false,
              false,
              "train a byte-level BPE tokenizer"};
      for (const auto& in : r_.inputs) t.args.push_back(in);
      t.args.insert(t.args.end(),
                    {"--vocab-size", std::to_string(r_.vocab_size), "-o", tokenizer_});
      s_.push_back(t);
    }
    Stage shards{"shards",
                 {"tokenize", "--tokenizer", tokenizer_},
                 o_ + "/shards",
                 "",
                 false,
                 true,
                 "corpus -> token shards"};
    for (const auto& in : r_.inputs) shards.args.insert(shards.args.end(), {"--input", in});
    shards.args.insert(shards.args.end(),
                       {"--output", o_ + "/shards", "--val-fraction", FormatNumber(r_.val_fraction),
                        "--workers", std::to_string(r_.workers), "--seed",
                        r_.data_seed >= 0 ? std::to_string(r_.data_seed) : seed_});
    s_.push_back(shards);
  }

  // The small dense model: the recipe's, or a random one, trained when [prepare.train] says so.
  void Preparation() {
    std::string model = r_.model;
    if (model.empty()) {
      model = o_ + "/dense-init";
      s_.push_back({"init",
                    {"init", model, "--preset", r_.preset, "--seed", seed_, "--tokenizer-from",
                     tokenizer_dir_},
                    model,
                    "",
                    false,
                    true,
                    "random dense model (vocabulary of the tokenizer)"});
    }
    current_ = model;
    if (r_.prepare_train.present) {
      current_ = Train("prepare", model, r_.prepare_train, "train the small dense model");
      trained_.push_back("prepare");
    }
  }

  // carry: the model was grown with --carry-moments, so AdamW continues the source's moments.
  std::string Train(const std::string& name, const std::string& from, const TrainStageSpec& spec,
                    const char* note, bool carry = false) {
    Stage t{name,
            {"train", "--model", from, "--data", o_ + "/shards", "--out", o_ + "/" + name, "--seed",
             seed_},
            o_ + "/" + name,
            spec.toml,
            true,
            false,
            note};
    t.args.insert(t.args.begin() + 1, {"--config", o_ + "/configs/" + name + ".toml"});
    if (carry) t.args.push_back("--carry-moments");
    s_.push_back(t);
    return Latest(o_ + "/" + name);
  }

  // A conversion (scale-up or scale-out) of the current model, its verification, and the
  // continued pretraining after it.
  void Surgery(const SurgeryNames& n, const Flags& flags, const TrainStageSpec& spec) {
    const std::string out = o_ + "/" + n.output;
    Stage st{n.stage, {n.command, current_, out}, out, "", false, true, n.note};
    AddFlags(st.args, flags);
    if (!HasFlag(flags, "seed")) st.args.insert(st.args.end(), {"--seed", seed_});
    s_.push_back(st);
    if (r_.verify)
      s_.push_back(
          {n.verify, {"verify", current_, out}, "", "", false, false, n.verify_note, 0, false});
    current_ = out;
    if (spec.present) {
      current_ = Train(n.train, out, spec, n.train_note, HasFlag(flags, "carry-moments"));
      trained_.push_back(n.train);
    }
  }

  // The final architecture from scratch, and its WSD decay branches.
  void Baseline() {
    const std::string config = o_ + "/" + (r_.scale_out ? "upcycled" : "grown") + "/config.json";
    Stage b{"baseline",
            {"train", "--config", o_ + "/configs/baseline.toml", "--from-config", config, "--data",
             o_ + "/shards", "--out", o_ + "/baseline", "--seed", seed_},
            o_ + "/baseline",
            r_.baseline_train.toml,
            true,
            false,
            "the final architecture from scratch at equal compute"};
    s_.push_back(b);
    trained_.push_back("baseline");
    for (double f : r_.decay_branches) {
      Stage br = b;
      br.name = BranchName(f);
      br.output = o_ + "/" + br.name;
      br.args = {"train",         "--config", o_ + "/configs/" + br.name + ".toml",
                 "--from-config", config,     "--data",
                 o_ + "/shards",  "--out",    br.output,
                 "--seed",        seed_};
      br.branch_fraction = f;
      br.note = "a WSD decay branch of the baseline (a fully decayed run at a smaller budget)";
      s_.push_back(br);
    }
  }

  void Evaluations() {
    for (const auto& name : trained_) {
      Stage e{"eval_" + name,
              {"eval", Latest(o_ + "/" + name), "--tokenizer", tokenizer_, "--shards",
               o_ + "/shards", "--json", "--output", o_ + "/eval/" + name + ".json"},
              o_ + "/eval/" + name + ".json",
              "",
              false,
              false,
              "validation perplexity" + std::string(r_.tasks.empty() ? "" : " and tasks"),
              0,
              false};
      for (const auto& t : r_.tasks) e.args.insert(e.args.end(), {"--task", t});
      // Windows as long as the stage trained on (a model trained at 128 tokens is not asked about
      // 2048).
      std::string toml;
      for (const Stage& st : s_)
        if (st.train && st.name == name) toml = st.train_config;
      const int64_t len = r_.eval_max_length > 0 ? r_.eval_max_length : SeqLenOf(toml);
      e.args.insert(e.args.end(), {"--max-length", std::to_string(len)});
      s_.push_back(e);
    }
  }

  const Recipe& r_;
  const std::string o_, seed_;
  std::vector<Stage> s_;
  std::string tokenizer_, tokenizer_dir_, current_;
  std::vector<std::string> trained_;
};

}  // namespace

std::vector<Stage> PlanStages(const Recipe& r) {
  return StagePlanner(r).Plan();
}

namespace {

// What a training stage's metrics.jsonl says, read once: tokens trained (the last step record),
// training seconds (the sum of step times, evaluations excluded), median tokens/s, and the
// validation curve at each evaluation with the run's own cumulative tokens, seconds and FLOPs.
struct RunFigures {
  double tokens = 0, seconds = 0, tokens_per_second = NAN, flops_per_token = NAN;
  Curve val;  // flops/seconds/tokens from the run's start (a branch: the parent's start)
  double flops() const { return flops_per_token * tokens; }
};

RunFigures ReadRunFigures(const std::string& run_dir, double flops_per_token = NAN) {
  RunFigures f;
  f.flops_per_token = flops_per_token;
  auto m = ReadStageMetrics(run_dir, run_dir);
  if (!m.ok() || m->steps.empty()) return f;
  f.tokens = m->steps.back().value("tokens", 0.0);
  std::vector<double> v;
  for (const auto& r : m->steps) {
    if (r.contains("tokens_per_s")) v.push_back(r["tokens_per_s"].get<double>());
    f.seconds += r.value("step_s", 0.0);
  }
  if (!v.empty()) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    f.tokens_per_second = v[v.size() / 2];
  }
  f.val = ValidationCurve(*m, flops_per_token);
  return f;
}

// Training FLOPs per token of the model a train stage trains (its latest checkpoint's config).
double StageFlopsPerToken(const Stage& st) {
  auto model_dir = ResolveLatest(Latest(st.output));
  if (!model_dir.ok()) return NAN;
  auto cfg = ReadHfConfig(*model_dir);
  return cfg.ok() ? TrainingFlopsPerToken(*cfg, SeqLenOf(st.train_config)).total() : NAN;
}

json CurveJson(const Curve& c) {
  json a = json::array();
  for (const CurvePoint& p : c)
    a.push_back({{"flops", p.flops}, {"seconds", p.seconds}, {"tokens", p.tokens}, {"loss", p.loss}});
  return a;
}

json Optional(const std::optional<double>& v) {
  return v && std::isfinite(*v) ? json(*v) : json(nullptr);
}

// The cost block: EfficientScale's stages laid end to end on the FLOPs axis against the
// baseline's lower envelope (the stable run and its decay branches), at equal loss.
json CostBlock(const Curve& es, double prep_flops, double prep_seconds, const Curve& envelope) {
  json cost;
  auto s = CompareAtEqualLoss(es, envelope, prep_flops, prep_seconds);
  if (!s.ok()) {
    cost["error"] = s.status().message();
    return cost;
  }
  const std::string es_reach =
      s->reached_in_preparation
          ? "reached during the preparation stage (" + s->arm_reach.Describe() +
                "): the small model alone matches the baseline; give the baseline more compute"
          : s->arm_reach.Describe();
  cost = {{"efficientscale_final_val_loss", s->arm_final_loss},
          {"efficientscale_flops", s->arm_flops},
          {"efficientscale_seconds", s->arm_seconds},
          {"preparation_flops", s->preparation_flops},
          {"preparation_seconds", s->preparation_seconds},
          {"baseline_final_val_loss", s->baseline_final_loss},
          {"target_loss", s->target_loss},
          {"target_loss_is", s->target_is_baseline_final ? "the baseline's final loss"
                                                         : "EfficientScale's final loss"},
          {"efficientscale_to_target", es_reach},
          {"baseline_to_target", s->baseline_reach.Describe()},
          {"efficientscale_flops_to_target",
           s->arm_reach.reached ? json(s->arm_reach.at.flops) : json(nullptr)},
          {"baseline_flops_to_target",
           s->baseline_reach.reached ? json(s->baseline_reach.at.flops) : json(nullptr)},
          {"compute_savings_with_preparation", Optional(s->compute_with_preparation)},
          {"compute_savings_without_preparation", Optional(s->compute_without_preparation)},
          {"time_savings_with_preparation", Optional(s->time_with_preparation)},
          {"time_savings_without_preparation", Optional(s->time_without_preparation)},
          {"loss_gap_at_equal_flops", Optional(s->loss_gap_at_equal_flops)}};
  return cost;
}

std::string Ratio(const json& v) {
  if (!v.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", v.get<double>());
  return buf;
}

Status WriteSummary(const Recipe& r, const std::vector<Stage>& stages) {
  json summary = {{"recipe", r.path}, {"out", r.out}};
  json rows = json::array();
  // EfficientScale: its stages end to end; the baseline: each run (stable, branches) on its own.
  Curve es;
  double es_flops = 0, es_seconds = 0, es_tokens = 0, prep_flops = 0, prep_seconds = 0;
  std::vector<Curve> base_runs;
  json base_json = json::object();
  for (const Stage& st : stages) {
    if (!st.train) continue;
    const double fpt = StageFlopsPerToken(st);
    if (!std::isfinite(fpt)) continue;
    auto cfg = ReadHfConfig(*ResolveLatest(Latest(st.output)));
    const ParameterCounts pc = CountParameters(*cfg);
    const RunFigures fig = ReadRunFigures(st.output, fpt);
    json row = {{"stage", st.name},         {"parameters", pc.total},
                {"active_parameters", pc.active}, {"tokens", fig.tokens},
                {"flops_per_token", fpt},   {"tokens_per_second", fig.tokens_per_second},
                {"flops", fig.flops()},     {"seconds", fig.seconds}};
    if (!fig.val.empty()) row["trainer_val_loss"] = fig.val.back().loss;
    std::ifstream ev(r.out + "/eval/" + st.name + ".json");
    if (ev) {
      json e = json::parse(ev, nullptr, false);
      if (!e.is_discarded() && e.contains("shard_perplexity")) {
        row["val_loss"] = e["shard_perplexity"].value("validation_loss", json(nullptr));
        row["rolling_window_loss"] = e["shard_perplexity"]["loss"];
      }
      if (!e.is_discarded() && e.contains("tasks")) row["tasks"] = e["tasks"];
    }
    rows.push_back(row);
    if (st.name.starts_with("baseline")) {
      Curve c;
      for (const CurvePoint& p : fig.val)
        if (p.flops > 0) c.push_back(p);
      base_runs.push_back(c);
      base_json[st.name] = CurveJson(c);
      continue;
    }
    for (const CurvePoint& p : fig.val) {
      const CurvePoint q{es_flops + p.flops, es_seconds + p.seconds, es_tokens + p.tokens, p.loss};
      if (q.flops > 0) es.push_back(q);
    }
    es_flops += fig.flops();
    es_seconds += fig.seconds;
    es_tokens += fig.tokens;
    if (st.name == "prepare") prep_flops = fig.flops(), prep_seconds = fig.seconds;
  }
  summary["stages"] = rows;
  const Curve envelope = LowerEnvelope(base_runs);
  summary["curves"] = {{"efficientscale", CurveJson(es)},
                       {"baseline_runs", base_json},
                       {"baseline_envelope", CurveJson(envelope)}};
  if (!es.empty() && !envelope.empty())
    summary["cost"] = CostBlock(es, prep_flops, prep_seconds, envelope);
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(r.out + "/pipeline.json", summary.dump(2) + "\n"));
  std::printf("\n%-20s %12s %12s %12s %10s %10s %10s\n", "stage", "parameters", "active",
              "tokens", "TFLOPs", "tokens/s", "val loss");
  for (const auto& row : rows)
    std::printf("%-20s %12lld %12lld %12.0f %10.3f %10.0f %10s\n",
                row["stage"].get<std::string>().c_str(),
                static_cast<long long>(row["parameters"].get<int64_t>()),
                static_cast<long long>(row["active_parameters"].get<int64_t>()),
                row["tokens"].get<double>(), row["flops"].get<double>() / 1e12,
                row["tokens_per_second"].is_number() ? row["tokens_per_second"].get<double>() : NAN,
                row.contains("trainer_val_loss")
                    ? std::to_string(row["trainer_val_loss"].get<double>()).substr(0, 6).c_str()
                    : "-");
  if (summary.contains("cost") && !summary["cost"].contains("error")) {
    const json& c = summary["cost"];
    std::printf(
        "\nat validation loss %.4f (%s): baseline (envelope of %zu run(s)) %s; EfficientScale %s\n"
        "compute savings: %s with preparation, %s without; time: %s / %s\n",
        c["target_loss"].get<double>(), c["target_loss_is"].get<std::string>().c_str(),
        base_runs.size(), c["baseline_to_target"].get<std::string>().c_str(),
        c["efficientscale_to_target"].get<std::string>().c_str(),
        Ratio(c["compute_savings_with_preparation"]).c_str(),
        Ratio(c["compute_savings_without_preparation"]).c_str(),
        Ratio(c["time_savings_with_preparation"]).c_str(),
        Ratio(c["time_savings_without_preparation"]).c_str());
  }
  return Status::Ok();
}

// The baseline's budget, fixed when it starts: `compute` times the EfficientScale FLOPs, in
// steps, unless its table sets steps or a token budget; plus the checkpoints its branches need.
Result<std::string> BaselineConfig(const Recipe& r, const std::vector<Stage>& stages,
                                   const Stage& base) {
  toml::table t = ParseStageToml(base.train_config);
  int64_t steps = t["steps"].value_or(int64_t{0});
  if (steps == 0 && !t.contains("token_budget")) {
    double flops = 0;
    for (const Stage& st : stages)
      if (st.train && !st.name.starts_with("baseline"))
        flops += ReadRunFigures(st.output, StageFlopsPerToken(st)).flops();
    const std::string cfg_path = base.args[4];  // --from-config PATH
    ESCALE_ASSIGN_OR_RETURN(ModelConfig cfg, ReadHfConfig(fs::path(cfg_path).parent_path().string()));
    const double fpt = TrainingFlopsPerToken(cfg, SeqLenOf(base.train_config)).total();
    if (!(flops > 0) || !std::isfinite(flops))
      return InvalidArgument("the baseline's budget is measured from the EfficientScale stages' "
                             "FLOPs, and none were recorded; set steps in [baseline.train]");
    const int64_t per_step =
        t["global_batch_tokens"].value_or(int64_t{0}) > 0
            ? t["global_batch_tokens"].value_or(int64_t{0})
            : SeqLenOf(base.train_config) * t["micro_batch"].value_or(TrainOptions{}.micro_batch);
    steps = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(r.baseline_compute * flops / fpt / static_cast<double>(per_step))));
    t.insert_or_assign("steps", steps);
  }
  std::string keep;
  for (double f : r.decay_branches) {
    const BranchPoint b = DecayBranch(steps, f, t["wsd_decay_fraction"].value_or(TrainOptions{}.wsd_decay_fraction),
                                      t["warmup"].value_or(TrainOptions{}.warmup));
    keep += (keep.empty() ? "" : ",") + std::to_string(b.at);
  }
  if (!keep.empty()) t.insert_or_assign("keep_steps", keep);
  std::ostringstream out;
  out << t;
  return out.str() + "\n";
}

// A decay branch's table: the baseline's, with the branch's own steps.
Result<std::string> BranchConfig(const Recipe& r, const Stage& br, BranchPoint& point) {
  ESCALE_ASSIGN_OR_RETURN(std::string base_text, ReadSmallFile(r.out + "/configs/baseline.toml"));
  toml::table t = ParseStageToml(base_text);
  const int64_t steps = t["steps"].value_or(int64_t{0});
  if (steps <= 0) return InvalidArgument("the baseline's steps are unknown; rerun its stage");
  point = DecayBranch(steps, br.branch_fraction,
                      t["wsd_decay_fraction"].value_or(TrainOptions{}.wsd_decay_fraction),
                      t["warmup"].value_or(TrainOptions{}.warmup));
  t.insert_or_assign("steps", point.total);
  t.erase("keep_steps");
  std::ostringstream out;
  out << t;
  return out.str() + "\n";
}

}  // namespace

BranchPoint DecayBranch(int64_t steps, double fraction, double decay_fraction, int64_t warmup) {
  BranchPoint b;
  b.total = std::max<int64_t>(2, std::llround(fraction * static_cast<double>(steps)));
  const int64_t decay = std::llround(decay_fraction * static_cast<double>(b.total));
  b.at = std::clamp<int64_t>(b.total - decay, std::max<int64_t>(1, std::min(warmup, b.total - 1)),
                             b.total - 1);
  return b;
}

namespace {

// What a stage runs: its command line with "@latest:" resolved (without the --resume or
// --overwrite a rerun adds) and, for a train stage, the options file it is given.
struct Invocation {
  std::vector<std::string> argv;
  std::string config;
};

Result<Invocation> Prepare(const Recipe& r, const std::vector<Stage>& stages, const Stage& s,
                           const std::string& executable) {
  Invocation inv;
  inv.argv = {executable};
  for (const auto& a : s.args) {
    ESCALE_ASSIGN_OR_RETURN(std::string v, ResolveLatest(a));
    inv.argv.push_back(v);
  }
  if (s.name == "init") {
    // The model's vocabulary is the tokenizer's, known once the tokenizer exists.
    const std::string tok = r.tokenizer.empty() ? r.out + "/tokenizer/tokenizer.json" : r.tokenizer;
    ESCALE_ASSIGN_OR_RETURN(auto t, tok::Tokenizer::FromFile(tok));
    inv.argv.insert(inv.argv.end(), {"--vocab", std::to_string(t->vocab_size())});
  }
  if (!s.train) return inv;
  inv.config = s.train_config;
  if (s.name == "baseline") {
    ESCALE_ASSIGN_OR_RETURN(inv.config, BaselineConfig(r, stages, s));
  } else if (s.branch_fraction > 0) {
    BranchPoint point;
    ESCALE_ASSIGN_OR_RETURN(inv.config, BranchConfig(r, s, point));
    inv.argv.insert(inv.argv.end(),
                    {"--branch-from", r.out + "/baseline/checkpoints/" + CheckpointName(point.at)});
  }
  return inv;
}

// Two option files of a training stage ask for the same run: how often it saves aside, which
// changes nothing it computes.
bool SameTrainingOptions(const std::string& a, const std::string& b) {
  auto essential = [](const std::string& text) {
    toml::table t = ParseStageToml(text);
    for (const char* k : {"save_every", "keep_last"}) t.erase(k);
    std::ostringstream o;
    o << t;
    return o.str();
  };
  return essential(a) == essential(b);
}

// The options file a training stage last ran with differs from what the recipe asks for now.
bool OptionsChanged(const Recipe& r, const Stage& s, const Invocation& inv) {
  auto old = ReadSmallFile(r.out + "/configs/" + s.name + ".toml");
  return !old.ok() || !SameTrainingOptions(*old, inv.config);
}

// Why a finished stage no longer matches the recipe ("" when it does): its recorded command
// line (the executable's own path aside, so a rebuilt binary elsewhere changes nothing) or its
// training options differ from what the recipe asks for now.
std::string WhatChanged(const Recipe& r, const Stage& s, const std::string& marker,
                        const Invocation& inv) {
  std::string command, out;
  if (auto text = ReadSmallFile(marker); text.ok()) {
    try {
      const json m = json::parse(*text);
      command = m.value("command", "");
      out = m.value("out", "");
    } catch (const json::exception&) {
    }
  }
  // A run directory moved or named another way (relative, absolute) is the same run.
  if (!out.empty() && out != r.out) {
    std::string mapped;
    for (size_t i = 0; i < command.size();) {
      const bool at_arg = i > 0 && command[i - 1] == ' ';
      const size_t end = i + out.size();
      if (at_arg && command.compare(i, out.size(), out) == 0 &&
          (end == command.size() || command[end] == '/' || command[end] == ' ')) {
        mapped += r.out;
        i = end;
      } else {
        mapped += command[i++];
      }
    }
    command = mapped;
  }
  const std::string want =
      " " + ShellJoin(std::vector<std::string>(inv.argv.begin() + 1, inv.argv.end()));
  bool same = false;
  for (const char* tail : {"", " --resume", " --overwrite"})
    same = same || command.ends_with(want + tail);
  if (!same) return "its command line changed";
  if (s.train) {
    if (OptionsChanged(r, s, inv))
      return "its training options (configs/" + s.name + ".toml) changed";
  }
  return "";
}

}  // namespace

// The sgemm rate every training stage's MFU is measured against, per thread count: measured once
// per run (the best of three half-second runs) and kept in OUT/machine.json, so that a stage that
// starts while the machine is busy is not measured against a momentarily low peak (a stage
// measured that way reported an MFU of 480%).
Result<double> RunPeakGflops(const std::string& out, int threads) {
  const std::string path = out + "/machine.json";
  json m = json::object();
  if (fs::exists(path)) {
    ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
    m = json::parse(text, nullptr, false);
    if (!m.is_object()) m = json::object();
  }
  const std::string key = std::to_string(threads);
  if (m.contains("sgemm_gflops") && m["sgemm_gflops"].is_object() &&
      m["sgemm_gflops"].contains(key) && m["sgemm_gflops"][key].is_number() &&
      m["sgemm_gflops"][key].get<double>() > 0)
    return m["sgemm_gflops"][key].get<double>();
  const double best = MeasurePeakSgemmRate(threads, 2.0).gflops;
  if (!m.contains("sgemm_gflops") || !m["sgemm_gflops"].is_object())
    m["sgemm_gflops"] = json::object();
  m["sgemm_gflops"][key] = best;
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(path, m.dump(2) + "\n"));
  return best;
}

Status RunPipeline(const Recipe& r, const PipelineOptions& opt) {
  ESCALE_RETURN_IF_ERROR(CheckRecipe(r, opt.executable));
  const std::vector<Stage> stages = PlanStages(r);
  const std::string markers = r.out + "/stages";
  if (opt.dry_run) {
    bool rerun = false;  // a changed stage reruns every stage after it
    for (const Stage& s : stages) {
      const std::string marker = markers + "/" + s.name + ".done";
      const char* state = "";
      if (fs::exists(marker)) {
        auto inv = Prepare(r, stages, s, opt.executable);
        rerun = rerun || !inv.ok() || !WhatChanged(r, s, marker, *inv).empty();
        state = rerun ? "rerun" : "done";
      } else if (s.feeds_later && !(s.train && fs::exists(s.output + "/checkpoints/latest"))) {
        rerun = true;
      }
      std::printf("%-11s %-6s %s\n            escale %s\n", s.name.c_str(), state, s.note.c_str(),
                  ShellJoin(s.args).c_str());
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
  // A finished stage whose command or options changed is rerun from nothing, and so is every stage
  // after it (their inputs change with it); an unfinished training stage resumes. Before a stage
  // that feeds others runs afresh, the markers and outputs of every later stage are removed, so a
  // run interrupted at any point never keeps a result made from what was replaced.
  auto invalidate = [&](size_t from) -> Status {
    std::error_code rm;
    for (size_t j = from; j < stages.size(); ++j) {
      fs::remove(markers + "/" + stages[j].name + ".done", rm);
      if (!rm && !stages[j].output.empty()) fs::remove_all(stages[j].output, rm);
      if (rm)
        return IoError("cannot remove the stale output of stage " + stages[j].name + ": " +
                       rm.message());
    }
    return Status::Ok();
  };
  for (size_t i = 0; i < stages.size(); ++i) {
    const Stage& s = stages[i];
    const std::string marker = markers + "/" + s.name + ".done";
    ESCALE_ASSIGN_OR_RETURN(Invocation inv, Prepare(r, stages, s, opt.executable));
    std::string why;
    if (fs::exists(marker)) {
      why = WhatChanged(r, s, marker, inv);
      if (why.empty()) {
        std::printf("== %s: done\n", s.name.c_str());
        continue;
      }
    } else if (s.train && fs::exists(s.output + "/checkpoints/latest")) {
      // Interrupted: resume it, unless it was started with other options.
      if (OptionsChanged(r, s, inv))
        why = "its training options (configs/" + s.name + ".toml) changed";
    }
    const bool resumed = why.empty() && s.train && fs::exists(s.output + "/checkpoints/latest");
    if (!why.empty()) {
      std::printf("== %s: %s since it ran: rerunning it and every stage after it\n", s.name.c_str(),
                  why.c_str());
      ESCALE_RETURN_IF_ERROR(invalidate(i));
    } else if (s.feeds_later && !resumed) {
      ESCALE_RETURN_IF_ERROR(invalidate(i + 1));
    }
    std::vector<std::string> argv = inv.argv;
    std::vector<std::string> extra;  // not recorded: a stage is the same whatever the peak measured
    if (s.train) {
      ESCALE_RETURN_IF_ERROR(WriteFileAtomic(r.out + "/configs/" + s.name + ".toml", inv.config));
      if (resumed) argv.push_back("--resume");
      const int64_t threads = IntOption(inv.config, "threads", 0);
      ESCALE_ASSIGN_OR_RETURN(
          const double peak,
          RunPeakGflops(r.out, threads > 0 ? static_cast<int>(threads) : omp_get_max_threads()));
      extra = {"--peak-gflops", FormatNumber(peak)};
    } else if (s.overwrite_flag && !s.output.empty() && fs::exists(s.output)) {
      argv.push_back("--overwrite");  // left by an interrupted run of this stage
    }
    std::vector<std::string> run = argv;
    run.insert(run.end(), extra.begin(), extra.end());
    std::printf("== %s: %s\n   %s\n", s.name.c_str(), s.note.c_str(), ShellJoin(run).c_str());
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    ESCALE_ASSIGN_OR_RETURN(int rc, RunProcessTee(run, r.out + "/logs/" + s.name + ".log"));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rc != 0)
      return Status(ErrorCode::kInvalidArgument,
                    "stage '" + s.name + "' failed (exit " + std::to_string(rc) + "; log " + r.out +
                        "/logs/" + s.name +
                        ".log); fix the cause and rerun: finished stages are kept");
    ESCALE_RETURN_IF_ERROR(WriteFileAtomic(
        marker,
        json{{"command", ShellJoin(argv)}, {"out", r.out}, {"seconds", seconds}}.dump() + "\n"));
  }
  ESCALE_RETURN_IF_ERROR(WriteSummary(r, stages));
  std::vector<std::string> report = {opt.executable, "-q",      "report",
                                     r.out,          "--title", "EfficientScale run " + r.out};
  ESCALE_ASSIGN_OR_RETURN(int rc, RunProcessTee(report, ""));
  if (rc != 0) return Status(ErrorCode::kIo, "the report failed (exit " + std::to_string(rc) + ")");
  return Status::Ok();
}

}  // namespace escale::pipeline
