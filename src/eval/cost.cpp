#include "eval/cost.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

namespace escale {

Result<CostReport> ComputeCost(const std::vector<CostPhase>& phases, const CostPhase& scratch) {
  if (phases.empty()) return InvalidArgument("no phases given; add at least one --phase");
  auto check = [](const CostPhase& p, bool need_tokens) -> Status {
    const std::string who = p.name.empty() ? "the scratch run" : "phase '" + p.name + "'";
    if ((need_tokens && !(p.tokens > 0)) || !(p.tokens_per_day > 0) || !(p.devices > 0) ||
        !(p.gflops_per_device > 0) || !std::isfinite(p.tokens) || !std::isfinite(p.tokens_per_day))
      return InvalidArgument(who + " needs positive, finite tokens, tokens/day, devices and GFLOPS");
    return Status::Ok();
  };
  CostReport r;
  r.phases = phases;
  r.scratch = scratch;
  r.scratch.tokens = 0;
  for (const CostPhase& p : phases) {
    ESCALE_RETURN_IF_ERROR(check(p, true));
    r.scratch.tokens += p.tokens;
    r.days += p.tokens / p.tokens_per_day;
    r.compute += p.tokens * p.cluster_gflops() / p.tokens_per_day;
  }
  ESCALE_RETURN_IF_ERROR(check(r.scratch, false));
  r.scratch_days = r.scratch.tokens / scratch.tokens_per_day;
  r.scratch_compute = r.scratch.tokens * scratch.cluster_gflops() / scratch.tokens_per_day;
  r.time_savings = r.scratch_days / r.days;
  r.compute_savings = r.scratch_compute / r.compute;
  return r;
}

std::vector<CostPhase> PaperTable6Phases() {
  return {{"preparation (7B)", 3600e9, 279e9, 480, 989.5},
          {"scale-up (16B)", 1200e9, 70e9, 1024, 240},
          {"scale-out (8x16B, 32B active)", 545e9, 25e9, 1024, 240}};
}

CostPhase PaperTable6Scratch() { return {"", 0, 25e9, 1024, 240}; }

Result<double> ParseQuantity(const std::string& text) {
  if (text.empty()) return InvalidArgument("empty number");
  double scale = 1;
  std::string body = text;
  switch (body.back()) {
    case 'K': case 'k': scale = 1e3; body.pop_back(); break;
    case 'M': scale = 1e6; body.pop_back(); break;
    case 'B': case 'G': scale = 1e9; body.pop_back(); break;
    case 'T': scale = 1e12; body.pop_back(); break;
    default: break;
  }
  char* end = nullptr;
  const double v = std::strtod(body.c_str(), &end);
  if (body.empty() || end != body.c_str() + body.size() || !std::isfinite(v))
    return InvalidArgument("'" + text + "' is not a number (examples: 3600B, 1.2T, 545e9, 25B)");
  return v * scale;
}

Result<CostPhase> ParseCostPhase(const std::string& text, bool named) {
  std::vector<std::string> f;
  std::stringstream ss(text);
  for (std::string part; std::getline(ss, part, ':');) f.push_back(part);
  const size_t want = named ? 5 : 3;
  const char* form = named ? "NAME:TOKENS:TOKENS_PER_DAY:DEVICES:GFLOPS_PER_DEVICE"
                           : "TOKENS_PER_DAY:DEVICES:GFLOPS_PER_DEVICE";
  if (f.size() != want)
    return InvalidArgument("'" + text + "' should have the form " + form);
  CostPhase p;
  size_t i = 0;
  if (named) {
    p.name = f[i++];
    ESCALE_ASSIGN_OR_RETURN(p.tokens, ParseQuantity(f[i++]));
  }
  ESCALE_ASSIGN_OR_RETURN(p.tokens_per_day, ParseQuantity(f[i++]));
  ESCALE_ASSIGN_OR_RETURN(p.devices, ParseQuantity(f[i++]));
  ESCALE_ASSIGN_OR_RETURN(p.gflops_per_device, ParseQuantity(f[i++]));
  return p;
}

}  // namespace escale
