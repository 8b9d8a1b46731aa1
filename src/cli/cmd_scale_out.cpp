// escale scale-out SRC DST: sparse upcycling of a dense model into an MoE, or growing an MoE's
// expert count (docs/method.md §3). `escale train --init-from` takes the same options
// (ScaleOutChoices).
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/conversion.h"
#include "surgery/convert.h"

namespace escale::cli {
namespace {

struct ScaleOutArgs : ConversionArgs {
  surgery::ScaleOutChoices choices;
  surgery::ScaleOutOptions opt;
};

Status RunScaleOut(ScaleOutArgs& a) {
  ESCALE_RETURN_IF_ERROR(surgery::ApplyScaleOutChoices(a.choices, a.opt));
  return RunConversion(a, [&a](const surgery::ConvertOptions& conv) {
    return surgery::ScaleOutModel(a.src, a.dst, a.opt, conv);
  });
}

CommandRegistration reg(30, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<ScaleOutArgs>();
  CLI::App* sub = app.add_subcommand("scale-out", "Upcycle a dense model into a Mixture-of-Experts");
  sub->add_option("src", a->src, "Dense or MoE model directory (config.json alone is enough for --dry-run)")
      ->required();
  sub->add_option("dst", a->dst, "Output model directory (must not exist)");
  sub->add_option("--experts", a->opt.experts, "Copies of each dense FFN (E >= 2); for an MoE source the new expert "
                                               "count, a multiple m x E0 (m >= 2)")
      ->required();
  sub->add_option("--top-k", a->opt.top_k,
                  "Experts per token (k; k x granularity = 1 needs --router st); required "
                  "for a dense source, default m x k0 (exact) for an MoE source");
  sub->add_option("--router", a->choices.router,
                  "mixtral: softmax over the k selected (exact at init); st: softmax over "
                  "all, top-k, no renormalisation")
      ->check(CLI::IsMember({"mixtral", "st"}))
      ->capture_default_str();
  sub->add_option("--router-init-std", a->opt.router_std, "Router weights ~ N(0, std^2)")->capture_default_str();
  sub->add_option("--seed", a->opt.seed, "Seed of the router, noise and re-initialisation streams")
      ->capture_default_str();
  sub->add_option("--capacity-factor", a->opt.capacity_factor, "Capacity per expert ceil(CF*T*k/E); 0 = dropless")
      ->capture_default_str();
  sub->add_option("--drop-by", a->choices.drop_by,
                  "Which assignments over capacity are dropped first")
      ->check(CLI::IsMember({"probability", "position"}))
      ->capture_default_str();
  sub->add_option("--moe-every", a->opt.every, "Layer i becomes MoE iff (i+1) % N == 0")->capture_default_str();
  sub->add_option("--format", a->choices.format,
                  "Output architecture: auto (the source's own MoE class, e.g. mixtral for "
                  "llama, qwen3-moe for qwen3, when it can hold the model) or " +
                      std::string(ArchitectureCliList(true)))
      ->capture_default_str();
  sub->add_option("--granularity", a->opt.granularity, "Split each FFN into G slices: E*G experts, top k*G")
      ->capture_default_str();
  sub->add_flag("--shared-experts", a->opt.shared_expert, "Add a Qwen2-MoE shared expert (dense FFN copy)");
  sub->add_option("--expert-noise", a->opt.expert_noise, "Std of Gaussian noise added to expert weights (not exact)")
      ->capture_default_str();
  sub->add_option("--reinit-ratio", a->opt.reinit_ratio, "Drop-Upcycling: fraction of each expert's neurons "
                                                         "re-initialised (not exact)")
      ->capture_default_str();
  sub->add_option("--router-noise", a->opt.router_noise, "MoE source: std of Gaussian noise added to the copied "
                                                         "router rows (copies 1..m-1; not exact)")
      ->capture_default_str();
  sub->add_option("--dtype", a->dtype, "Output dtype: f32, bf16, f16, f64 (default: the source's)");
  sub->add_flag(
      "--carry-moments", a->carry_moments,
      "SRC is a training checkpoint's model: map its AdamW moments too, into DST/moments/, for "
      "`escale train --carry-moments` (docs/method.md §4.3)");
  sub->add_flag("--dry-run", a->dry_run, "Print the plan without reading any weight");
  sub->add_flag("--overwrite", a->overwrite, "Replace DST if it exists");
  return [a]() { return RunScaleOut(*a); };
});

}  // namespace
}  // namespace escale::cli
