#include "pipeline/report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "pipeline/svg_plot.h"

namespace escale::pipeline {

namespace fs = std::filesystem;
using nlohmann::json;

Result<StageMetrics> ReadStageMetrics(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/metrics.jsonl";
  std::ifstream in(path);
  if (!in) return NotFound("cannot open " + path);
  StageMetrics s;
  s.name = name;
  s.dir = dir;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number()) {
      ++s.skipped_lines;
      continue;
    }
    if (j.value("event", "") == "eval") {
      if (j.contains("val_loss") && j["val_loss"].is_number())
        s.evals.emplace_back(j["step"].get<int64_t>(), j["val_loss"].get<double>());
    } else if (!j.contains("event")) {
      s.steps.push_back(std::move(j));
    }
  }
  return s;
}

Result<std::vector<StageMetrics>> DiscoverStages(const std::string& run_dir) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) return NotFound(run_dir + " is not a directory");
  std::vector<StageMetrics> out;
  if (fs::is_regular_file(run_dir + "/metrics.jsonl", ec)) {
    ESCALE_ASSIGN_OR_RETURN(StageMetrics s,
                            ReadStageMetrics(run_dir, fs::path(run_dir).filename().string()));
    out.push_back(std::move(s));
    return out;
  }
  std::vector<std::pair<fs::file_time_type, std::string>> found;
  for (const auto& e : fs::directory_iterator(run_dir, ec)) {
    const fs::path m = e.path() / "metrics.jsonl";
    if (e.is_directory() && fs::is_regular_file(m))
      found.emplace_back(fs::last_write_time(m), e.path().filename().string());
  }
  if (ec) return IoError("cannot list " + run_dir + ": " + ec.message());
  if (found.empty())
    return NotFound(
        run_dir + " holds no metrics.jsonl (give a training output directory or a run directory)");
  std::sort(found.begin(), found.end());
  for (const auto& [t, name] : found) {
    ESCALE_ASSIGN_OR_RETURN(StageMetrics s, ReadStageMetrics(run_dir + "/" + name, name));
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

double Get(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : NAN;
}

double Median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  if (v.empty()) return NAN;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

std::string Fmt(const char* f, double v) {
  if (!std::isfinite(v)) return "–";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Exponential moving average, the usual smoothing of a noisy per-step loss.
std::vector<double> Smooth(const std::vector<double>& y, double alpha) {
  std::vector<double> o(y.size());
  double m = NAN;
  for (size_t i = 0; i < y.size(); ++i) {
    if (std::isfinite(y[i])) m = std::isfinite(m) ? alpha * y[i] + (1 - alpha) * m : y[i];
    o[i] = m;
  }
  return o;
}

Series CurveSeries(const std::string& name, const json& points, bool markers) {
  Series s{name, {}, {}, markers};
  if (!points.is_array()) return s;
  for (const json& p : points) {
    s.x.push_back(Get(p, "flops"));
    s.y.push_back(Get(p, "loss"));
  }
  return s;
}

std::string SavingsCell(const json& cost, const char* key) {
  const json& v = cost.value(key, json(nullptr));
  return v.is_number() ? Fmt("%.2f&times;", v.get<double>()) : "&ndash; (see below)";
}

// Validation loss against cumulative training FLOPs: EfficientScale's stages end to end, each
// baseline run, and the baseline's lower envelope; then the savings at equal loss.
std::string RenderComparison(const json& pipeline) {
  if (!pipeline.contains("curves")) return "";
  const json& curves = pipeline["curves"];
  PlotSpec plot{"Validation loss against training compute",
                "training FLOPs (log scale)",
                "loss",
                {},
                {},
                false};
  plot.log_x = true;
  plot.series.push_back(
      CurveSeries("EfficientScale", curves.value("efficientscale", json()), false));
  plot.series.push_back(
      CurveSeries("scratch envelope", curves.value("baseline_envelope", json()), false));
  const json runs = curves.value("baseline_runs", json::object());
  for (const auto& [name, c] : runs.items()) plot.series.push_back(CurveSeries(name, c, true));
  double boundary = 0;
  for (const json& row : pipeline.value("stages", json::array())) {
    const std::string name = row.value("stage", "");
    if (name.starts_with("baseline")) continue;
    if (boundary > 0) plot.markers.push_back({boundary, name});
    boundary += Get(row, "flops");
  }
  std::string html =
      "<h2>Against training from scratch, at equal compute</h2>\n" + RenderSvg(plot) +
      "<p class=\"note\">Each point is a validation loss on the whole held-out split. The scratch "
      "envelope is the best loss any from-scratch run (the stable run and its fully decayed "
      "branches) reached within that many FLOPs; dashed lines mark where each EfficientScale "
      "stage begins.</p>\n";
  if (!pipeline.contains("cost")) return html;
  const json& c = pipeline["cost"];
  if (c.contains("error"))
    return html + "<p>No savings: " + HtmlEscape(c["error"].get<std::string>()) + "</p>\n";
  html += "<table id=\"savings\"><tr><th>to validation loss " + Fmt("%.4f", Get(c, "target_loss")) +
          " (" + HtmlEscape(c.value("target_loss_is", std::string("-"))) +
          "), scratch / EfficientScale</th><th>with preparation</th><th>without preparation</th>"
          "</tr>\n";
  html += "<tr><td>compute (training FLOPs)</td><td>" +
          SavingsCell(c, "compute_savings_with_preparation") + "</td><td>" +
          SavingsCell(c, "compute_savings_without_preparation") + "</td></tr>\n";
  html += "<tr><td>training time (same machine and threads)</td><td>" +
          SavingsCell(c, "time_savings_with_preparation") + "</td><td>" +
          SavingsCell(c, "time_savings_without_preparation") + "</td></tr>\n</table>\n";
  html +=
      "<p class=\"note\">The target is the loss both arms reach: the worse of the two final "
      "losses. Scratch (the lower envelope of its runs) ends at " +
      Fmt("%.4f", Get(c, "baseline_final_val_loss")) + " and " +
      HtmlEscape(c.value("baseline_to_target", std::string("-"))) + "; EfficientScale ends at " +
      Fmt("%.4f", Get(c, "efficientscale_final_val_loss")) + " after " +
      Fmt("%.3g", Get(c, "efficientscale_flops")) + " FLOPs (preparation " +
      Fmt("%.3g", Get(c, "preparation_flops")) + ") and " +
      HtmlEscape(c.value("efficientscale_to_target", std::string("-"))) +
      ". Loss gap at equal FLOPs: " + Fmt("%+.4f", Get(c, "loss_gap_at_equal_flops")) +
      " (negative: EfficientScale ahead). A figure without a number: EfficientScale reached "
      "the target during preparation (the small model alone matched scratch); nothing is "
      "extrapolated.</p>\n";
  return html;
}

// MoE balance: coefficient of variation of the tokens per expert, per layer, over the steps, and
// the load-balancing loss; returns the mean over layers of the last CV (NaN for a dense stage).
double AddMoePlots(const StageMetrics& s, std::vector<PlotSpec>& moe_plots) {
  double last_cv = NAN;
  if (s.steps.empty() || !s.steps.back().contains("expert_load")) return last_cv;
  PlotSpec moe{"Expert load imbalance, " + s.name + " (CV of tokens per expert; 0 = uniform)",
               "step",
               "CV",
               {},
               {},
               false};
  PlotSpec aux{
      "Load-balancing loss, " + s.name + " (1 = uniform routing)", "step", "aux", {}, {}, false};
  Series aux_s{"aux", {}, {}, false};
  std::vector<Series> layers;
  for (const json& r : s.steps) {
    const auto& el = r.value("expert_load", json::array());
    const double step = r["step"].get<double>();
    for (size_t l = 0; l < el.size(); ++l) {
      if (layers.size() <= l)
        layers.push_back({"layer " + std::to_string(el[l].value("layer", static_cast<int64_t>(l))),
                          {},
                          {},
                          false});
      layers[l].x.push_back(step);
      layers[l].y.push_back(Get(el[l], "cv"));
    }
    aux_s.x.push_back(step);
    aux_s.y.push_back(Get(r, "aux"));
  }
  std::vector<double> cvs;
  for (const auto& l : layers)
    if (!l.y.empty()) cvs.push_back(l.y.back());
  if (!cvs.empty()) {
    last_cv = 0;
    for (double c : cvs) last_cv += c / static_cast<double>(cvs.size());
  }
  for (auto& l : layers) l.y = Smooth(l.y, 0.2);
  moe.series = std::move(layers);
  aux.series.push_back(aux_s);
  moe_plots.push_back(std::move(moe));
  moe_plots.push_back(std::move(aux));
  return last_cv;
}

}  // namespace

std::string RenderReport(const std::vector<StageMetrics>& stages, const std::string& title,
                         const nlohmann::json* pipeline) {
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" +
      HtmlEscape(title) +
      "</title>\n<style>body{font-family:sans-serif;margin:24px;max-width:1000px}"
      "table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;"
      "text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
      ".note{color:#666;font-size:90%}</style></head>\n<body>\n<h1>" +
      HtmlEscape(title) + "</h1>\n";
  // Stage table, and the global token axis: each stage starts where the previous one ended.
  html +=
      "<h2>Stages</h2>\n<table "
      "id=\"stages\"><tr><th>stage</th><th>steps</th><th>tokens</th><th>val loss before</th>"
      "<th>val loss after</th><th>train loss (last 10)</th><th>tokens/s (median)</th><th>MFU "
      "(median)</th>"
      "<th>time</th><th>expert load CV (last)</th></tr>\n";
  double total_tokens = 0;
  PlotSpec loss{
      "Training loss (EMA 0.1) and validation loss", "tokens (all stages)", "loss", {}, {}, false};
  PlotSpec val{"Validation loss", "tokens (all stages)", "loss", {}, {}, false};
  PlotSpec lr{"Learning rate", "tokens (all stages)", "lr", {}, {}, false};
  PlotSpec tput{"Throughput", "tokens (all stages)", "tokens/s", {}, {}, false};
  std::vector<PlotSpec> moe_plots;
  int64_t skipped = 0;
  for (const StageMetrics& s : stages) {
    skipped += s.skipped_lines;
    // The from-scratch baseline is a separate run over the same tokens: it starts at 0, beside the
    // EfficientScale stages laid end to end.
    const bool baseline = s.name.starts_with("baseline");
    const double start = baseline ? 0.0 : total_tokens;
    Series tl{s.name, {}, {}, false}, lrs{s.name, {}, {}, false}, tp{s.name, {}, {}, false};
    std::vector<double> raw, tps, mfu, step_s;
    double last_tokens = 0;
    std::vector<std::pair<int64_t, double>> step_tokens;
    for (const json& r : s.steps) {
      const double t = Get(r, "tokens");
      if (std::isfinite(t)) last_tokens = t;
      step_tokens.emplace_back(r["step"].get<int64_t>(), t);
      tl.x.push_back(start + t);
      raw.push_back(Get(r, "loss"));
      lrs.x.push_back(start + t);
      lrs.y.push_back(Get(r, "lr"));
      tp.x.push_back(start + t);
      tp.y.push_back(Get(r, "tokens_per_s"));
      tps.push_back(Get(r, "tokens_per_s"));
      mfu.push_back(Get(r, "mfu"));
      step_s.push_back(Get(r, "step_s"));
    }
    tl.y = Smooth(raw, 0.1);
    // Validation points sit at the tokens of their step (step 0: the stage's start).
    Series vs{s.name + " (val)", {}, {}, true};
    for (const auto& [step, v] : s.evals) {
      double t = 0;
      for (const auto& [st, tok] : step_tokens)
        if (st <= step && std::isfinite(tok)) t = tok;
      vs.x.push_back(start + t);
      vs.y.push_back(v);
    }
    loss.series.push_back(tl);
    loss.series.push_back(vs);
    val.series.push_back(vs);
    lr.series.push_back(lrs);
    tput.series.push_back(tp);
    if (!baseline) {
      loss.markers.push_back({start, s.name});
      val.markers.push_back({start, s.name});
    }
    const double last_cv = AddMoePlots(s, moe_plots);
    double tail = 0;
    int n_tail = 0;
    for (size_t i = raw.size() >= 10 ? raw.size() - 10 : 0; i < raw.size(); ++i)
      if (std::isfinite(raw[i])) tail += raw[i], ++n_tail;
    double seconds = 0;
    for (double x : step_s)
      if (std::isfinite(x)) seconds += x;
    const double med_mfu = Median(mfu);
    html += "<tr><td>" + HtmlEscape(s.name) + "</td><td>" + std::to_string(s.steps.size()) +
            "</td><td>" + Fmt("%.0f", last_tokens) + "</td><td>" +
            Fmt("%.4f", s.evals.empty() ? NAN : s.evals.front().second) + "</td><td>" +
            Fmt("%.4f", s.evals.empty() ? NAN : s.evals.back().second) + "</td><td>" +
            Fmt("%.4f", n_tail ? tail / n_tail : NAN) + "</td><td>" + Fmt("%.0f", Median(tps)) +
            "</td><td>" + Fmt("%.1f%%", 100 * med_mfu) + "</td><td>" + Fmt("%.1f s", seconds) +
            "</td><td>" + Fmt("%.3f", last_cv) + "</td></tr>\n";
    if (!baseline) total_tokens += last_tokens;
  }
  html +=
      "</table>\n<p class=\"note\">Validation loss before/after: the first and last evaluation of "
      "the stage. "
      "A stage that starts from a function-preserving scale-up or upcycling begins at the previous "
      "stage's final "
      "validation loss. MFU: model FLOPs per second over the machine's fp32 sgemm rate at the "
      "same thread count (escale pipeline measures it once per run, in machine.json).</p>\n";
  if (skipped > 0)
    html += "<p class=\"note\">" + std::to_string(skipped) +
            " unreadable metrics line(s) were skipped (a run cut while writing).</p>\n";
  if (pipeline) html += RenderComparison(*pipeline);
  html += "<h2>Loss</h2>\n" + RenderSvg(loss) + RenderSvg(val);
  html += "<h2>Schedule and throughput</h2>\n" + RenderSvg(lr) + RenderSvg(tput);
  if (!moe_plots.empty()) {
    html += "<h2>Mixture-of-Experts routing</h2>\n";
    for (const PlotSpec& p : moe_plots) html += RenderSvg(p);
  }
  html += "<p class=\"note\">Written by escale report from ";
  for (size_t i = 0; i < stages.size(); ++i)
    html += (i ? ", " : "") + HtmlEscape(stages[i].dir) + "/metrics.jsonl";
  html += ".</p>\n</body></html>\n";
  return html;
}

}  // namespace escale::pipeline
