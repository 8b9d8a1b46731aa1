#include "pipeline/compare.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "io/hf_model.h"
#include "model/layout.h"
#include "pipeline/report.h"
#include "pipeline/svg_plot.h"

namespace escale::pipeline {

namespace fs = std::filesystem;

namespace {

std::string Sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace

Curve ValidationCurve(const StageMetrics& m, double flops_per_token, double offset_flops) {
  Curve c;
  double tokens = 0, seconds = 0;
  size_t next = 0;
  for (const auto& [step, loss] : m.evals) {
    for (; next < m.steps.size() && m.steps[next]["step"].get<int64_t>() <= step; ++next) {
      tokens = m.steps[next].value("tokens", tokens);
      seconds += m.steps[next].value("step_s", 0.0);
    }
    c.push_back({offset_flops + flops_per_token * tokens, seconds, tokens, loss});
  }
  return c;
}

Result<CompareInput> ParseCompareInput(const std::string& text,
                                       const std::vector<CompareInput>& earlier,
                                       const std::vector<ComparedRun>& read) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    return InvalidArgument("'" + text + "': give NAME=RUN_DIR or NAME=RUN_DIR@OFFSET");
  CompareInput in;
  in.name = text.substr(0, eq);
  in.run_dir = text.substr(eq + 1);
  const auto at = in.run_dir.rfind('@');
  if (at == std::string::npos) return in;
  const std::string off = in.run_dir.substr(at + 1);
  in.run_dir = in.run_dir.substr(0, at);
  for (size_t i = 0; i < earlier.size() && i < read.size(); ++i)
    if (earlier[i].name == off) {
      const Curve& c = read[i].curve;
      in.offset_flops = c.empty() ? 0 : c.back().flops;
      return in;
    }
  char* end = nullptr;
  in.offset_flops = std::strtod(off.c_str(), &end);
  if (off.empty() || *end != '\0' || !(in.offset_flops >= 0) || !std::isfinite(in.offset_flops))
    return InvalidArgument("'" + text +
                           "': the offset after @ is FLOPs (e.g. 1.5e13) or the name "
                           "of an earlier run");
  return in;
}

Result<ComparedRun> ReadComparedRun(const CompareInput& in) {
  ESCALE_ASSIGN_OR_RETURN(StageMetrics m, ReadStageMetrics(in.run_dir, in.name));
  ESCALE_ASSIGN_OR_RETURN(std::string latest, ReadSmallFile(in.run_dir + "/checkpoints/latest"));
  while (!latest.empty() && (latest.back() == '\n' || latest.back() == ' ')) latest.pop_back();
  const std::string ckpt = in.run_dir + "/checkpoints/" + latest;
  ESCALE_ASSIGN_OR_RETURN(ModelConfig cfg, ReadHfConfig(ckpt + "/model"));
  ESCALE_ASSIGN_OR_RETURN(std::string state_text, ReadSmallFile(ckpt + "/trainer_state.json"));
  const nlohmann::json state = nlohmann::json::parse(state_text, nullptr, false);
  if (state.is_discarded() || !state.contains("resume_key"))
    return FormatError(ckpt + "/trainer_state.json is not an escale trainer state");
  const int64_t seq_len = state["resume_key"].value("seq_len", int64_t{0});
  if (seq_len < 1) return FormatError(ckpt + "/trainer_state.json lacks the sequence length");
  ComparedRun r;
  r.input = in;
  r.flops_per_token = TrainingFlopsPerToken(cfg, seq_len).total();
  r.curve = ValidationCurve(m, r.flops_per_token, in.offset_flops);
  if (r.curve.empty()) return NotFound(in.run_dir + "/metrics.jsonl holds no evaluation");
  return r;
}

std::string RenderCompareSvg(const std::vector<ComparedRun>& runs, CompareAxis axis,
                             const std::string& title) {
  PlotSpec p{title,
             axis == CompareAxis::kFlops ? "training FLOPs (log scale)" : "training tokens",
             "validation loss",
             {},
             {},
             false};
  p.log_x = axis == CompareAxis::kFlops;
  for (const ComparedRun& r : runs) {
    Series s{r.input.name, {}, {}, false};
    for (const CurvePoint& q : r.curve) {
      s.x.push_back(axis == CompareAxis::kFlops ? q.flops : q.tokens);
      s.y.push_back(q.loss);
    }
    p.series.push_back(std::move(s));
  }
  return RenderSvg(p);
}

std::string CompareTable(const std::vector<ComparedRun>& runs) {
  std::string t =
      "| run | final loss | FLOPs | tokens | seconds | FLOPs to the best other final loss |\n"
      "|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    const CurvePoint& last = runs[i].curve.back();
    double target = INFINITY;
    for (size_t j = 0; j < runs.size(); ++j)
      if (j != i) target = std::min(target, runs[j].curve.back().loss);
    std::string reach = "-";
    if (std::isfinite(target)) {
      const Reach r = FirstReach(runs[i].curve, target);
      reach = (r.reached ? Sci(r.at.flops) : r.Describe()) + " (loss " + Sci(target) + ")";
    }
    char row[256];
    std::snprintf(row, sizeof row, "| %s | %.4f | %s | %.0f | %.1f | ", runs[i].input.name.c_str(),
                  last.loss, Sci(last.flops).c_str(), last.tokens, last.seconds);
    t += row + reach + " |\n";
  }
  return t;
}

}  // namespace escale::pipeline
