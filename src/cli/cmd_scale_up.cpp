// escale scale-up SRC DST: grow a dense model wider and deeper (FPI, AKI, AKI-Pro;
// docs/method.md §2).
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/conversion.h"
#include "surgery/convert.h"

namespace escale::cli {
namespace {

struct ScaleUpArgs : ConversionArgs {
  std::string method = "fpi", depth, map = "circular";
  surgery::ScaleUpOptions opt;
};

Status RunScaleUp(ScaleUpArgs& a) {
  using surgery::ScaleUpMethod;
  a.opt.method = a.method == "aki" ? ScaleUpMethod::kAki : a.method == "aki-pro" ? ScaleUpMethod::kAkiPro
                                                                                  : ScaleUpMethod::kFpi;
  if (a.depth == "stack") a.opt.depth = surgery::DepthMethod::kStack;
  else if (a.depth == "interpolate") a.opt.depth = surgery::DepthMethod::kInterpolate;
  else if (a.depth == "zero") a.opt.depth = surgery::DepthMethod::kZero;
  a.opt.map = a.map == "random" ? surgery::MapKind::kRandom : surgery::MapKind::kCircular;
  return RunConversion(a, [&a](const surgery::ConvertOptions& conv) {
    return surgery::ScaleUpModel(a.src, a.dst, a.opt, conv);
  });
}

CommandRegistration reg(20, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<ScaleUpArgs>();
  CLI::App* sub = app.add_subcommand("scale-up", "Grow a dense model wider and deeper (FPI, AKI, AKI-Pro)");
  sub->add_option("src", a->src, "Source model directory (config.json alone is enough for --dry-run)")->required();
  sub->add_option("dst", a->dst, "Output model directory (must not exist)");
  sub->add_option("--method", a->method, "fpi (function preserving), aki (next-layer new units), aki-pro "
                                         "(AKI + interpolation depth)")
      ->check(CLI::IsMember({"fpi", "aki", "aki-pro"}))->capture_default_str();
  sub->add_option("--hidden", a->opt.hidden, "Target hidden size (default: keep)");
  sub->add_option("--intermediate", a->opt.intermediate, "Target FFN size (default: scaled with hidden)");
  sub->add_option("--heads", a->opt.heads, "Target query heads (default: hidden/head_dim; head_dim is fixed)");
  sub->add_option("--kv-heads", a->opt.kv_heads, "Target KV heads (default: keep; multiples duplicate, divisors "
                                                 "mean-pool)");
  sub->add_option("--layers", a->opt.layers, "Target layer count (default: keep)");
  sub->add_option("--depth", a->depth, "Depth growth: stack (default for fpi/aki), interpolate (aki-pro), zero "
                                       "(interpolate with zeroed o_proj/down_proj on the copies: exact)")
      ->check(CLI::IsMember({"stack", "interpolate", "zero"}));
  sub->add_option("--map", a->map, "New units copy source units circularly (i mod n) or at random (seeded)")
      ->check(CLI::IsMember({"circular", "random"}))->capture_default_str();
  sub->add_option("--seed", a->opt.seed, "Seed of the random map")->capture_default_str();
  sub->add_option("--dtype", a->dtype, "Output dtype: f32, bf16, f16, f64 (default: the source's)");
  sub->add_flag("--keep-tied", a->opt.keep_tied, "Keep tied embeddings when the hidden size grows (not exact)");
  sub->add_option("--symmetry-noise", a->opt.symmetry_noise,
                  "FPI: scale each copy's share of a split weight by 1 + EPS (z - mean z), z ~ N(0,1) "
                  "(seeded): copies diverge in training, the function is kept (e.g. 0.05)");
  sub->add_flag(
      "--carry-moments", a->carry_moments,
      "SRC is a training checkpoint's model: map its AdamW moments too, into DST/moments/, for "
      "`escale train --carry-moments` (docs/method.md §4.3)");
  sub->add_flag("--dry-run", a->dry_run, "Print the plan without reading any weight");
  sub->add_flag("--overwrite", a->overwrite, "Replace DST if it exists");
  return [a]() { return RunScaleUp(*a); };
});

}  // namespace
}  // namespace escale::cli
