#include "train/train_options.h"

#include <toml++/toml.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/atomic_output.h"
#include "data/blend.h"

namespace escale {

namespace {
Status ApplyTomlTable(const toml::table& t, const std::string& path,
                      const std::vector<OptionSpec>& table);

std::string FormatDouble(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
}  // namespace

int64_t TrainOptions::accumulation_steps() const {
  if (global_batch_tokens <= 0) return 1;
  return global_batch_tokens / tokens_per_micro_batch();
}

Status TrainOptions::Validate() const {
  const int sources = !model_dir.empty() + !from_config.empty() + !init_from.empty();
  if (sources != 1) return InvalidArgument("give exactly one of --model, --from-config or --init-from");
  if (!scale_out.empty() && init_from.empty())
    return InvalidArgument("--scale-out upcycles online and needs --init-from DENSE_DIR");
  if (!init_from.empty() && scale_out.empty())
    return InvalidArgument("--init-from needs --scale-out E,K (for a dense start use --model)");
  if (init_from.empty()) {
    const TrainOptions d;
    const std::pair<const char*, bool> upcycling[] = {
        {"--granularity", granularity != d.granularity},
        {"--router-init-std", router_init_std != d.router_init_std},
        {"--moe-every", moe_every != d.moe_every},
        {"--moe-format", moe_format != d.moe_format},
        {"--shared-experts", shared_experts},
        {"--expert-noise", expert_noise != d.expert_noise},
        {"--reinit-ratio", reinit_ratio != d.reinit_ratio},
        {"--drop-by", drop_by != d.drop_by}};
    for (const auto& [flag, set] : upcycling)
      if (set)
        return InvalidArgument(
            std::string(flag) +
            " is an option of online upcycling: give it with --init-from "
            "DENSE_DIR --scale-out E,K (or convert first with escale scale-out)");
  }
  if (carry_moments && model_dir.empty())
    return InvalidArgument(
        "--carry-moments reads the moments inside --model MODEL (MODEL/moments/); give --model");
  if (data.empty() == data_blend.empty())
    return InvalidArgument(
        "give exactly one of --data SHARD_DIR or --data-blend 'NAME=WEIGHT:DIR ...'");
  if (!data_blend.empty()) ESCALE_RETURN_IF_ERROR(ParseDataBlend(data_blend).status());
  if (out.empty()) return InvalidArgument("--out RUN_DIR is required");
  // Bounds that no real run comes near, so that an absurd value (a typo, 1e8) is refused here,
  // naming the flag, instead of failing later as an allocation or an overflow.
  constexpr int64_t kMaxSeqLen = int64_t{1} << 20, kMaxMicroBatch = int64_t{1} << 16,
                    kMaxThreads = 1024;
  if (seq_len < 2 || seq_len > kMaxSeqLen)
    return InvalidArgument("--seq-len must be between 2 and " + std::to_string(kMaxSeqLen) +
                           " (got " + std::to_string(seq_len) + ")");
  if (micro_batch < 1 || micro_batch > kMaxMicroBatch)
    return InvalidArgument("--micro-batch must be between 1 and " + std::to_string(kMaxMicroBatch) +
                           " (got " + std::to_string(micro_batch) + ")");
  if (tokens_per_micro_batch() > (int64_t{1} << 31))
    return InvalidArgument(
        "--seq-len x --micro-batch = " + std::to_string(tokens_per_micro_batch()) +
        " tokens per micro-batch is more than 2^31; use --global-batch-tokens for large batches");
  // AdamW's step is about lr per weight whatever the gradient: above 1 every weight leaves its
  // scale in one step.
  if (!(lr > 0 && lr <= 1))
    return InvalidArgument("--lr must be a number in (0, 1] (got " + FormatDouble(lr) +
                           "; typical: 1e-4 to 3e-3)");
  if (!(min_lr >= 0 && min_lr <= lr))
    return InvalidArgument("--min-lr must be between 0 and --lr (got " + FormatDouble(min_lr) +
                           ")");
  if (warmup < 0) return InvalidArgument("--warmup must not be negative");
  if (!(wsd_decay_fraction >= 0 && wsd_decay_fraction <= 1))
    return InvalidArgument("--wsd-decay-fraction must be between 0 and 1");
  if (!(spike_zscore >= 0) || !std::isfinite(spike_zscore))
    return InvalidArgument("--spike-zscore must be a finite number >= 0 (0 = off)");
  if (max_skips < 1) return InvalidArgument("--max-skips must be at least 1");
  if (global_batch_tokens < 0 || (global_batch_tokens > 0 && global_batch_tokens % tokens_per_micro_batch() != 0))
    return InvalidArgument("--global-batch-tokens (" + std::to_string(global_batch_tokens) +
                           ") must be a multiple of seq-len x micro-batch (" +
                           std::to_string(tokens_per_micro_batch()) + ")");
  if (zero_stage != 0 && zero_stage != 1) return InvalidArgument("--zero-stage takes 0 or 1");
  if (steps < 0 || token_budget < 0) return InvalidArgument("--steps and --token-budget must not be negative");
  if (steps == 0 && !(token_budget > 0)) return InvalidArgument("give --steps or --token-budget");
  if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1)) return InvalidArgument("AdamW betas must be in [0, 1)");
  if (!(eps > 0) || !std::isfinite(eps))
    return InvalidArgument("--eps must be a finite positive number");
  if (!(weight_decay >= 0 && weight_decay <= 10))
    return InvalidArgument("--weight-decay must be between 0 and 10");
  if (!(clip >= 0) || !std::isfinite(clip))
    return InvalidArgument("--clip must be a finite number >= 0 (0 disables clipping)");
  for (double c : {aux_loss, router_max_z, router_z, output_z, output_max_z})
    if (!(c >= 0) || !std::isfinite(c)) return InvalidArgument("loss coefficients must be finite and >= 0");
  if (!(capacity_factor >= 0) || !std::isfinite(capacity_factor))
    return InvalidArgument("--capacity-factor must be >= 0 (0 = dropless)");
  if (!router.empty() && router != "mixtral" && router != "st")
    return InvalidArgument("--router must be mixtral or st");
  if (eval_every < 0 || save_every < 0 || keep_last < 0 || eval_batches < 0)
    return InvalidArgument("--eval-every, --eval-batches, --save-every and --keep-last must be >= 0");
  if (threads < 0 || threads > kMaxThreads)
    return InvalidArgument("--threads must be between 0 (all cores) and " +
                           std::to_string(kMaxThreads) + " (got " + std::to_string(threads) + ")");
  return Status::Ok();
}

std::vector<OptionSpec> TrainOptionTable(TrainOptions& o) {
  return {
      {"model", "Hugging Face model directory to continue training", &o.model_dir},
      {"from_config", "config.json of a model to train from random initialisation", &o.from_config},
      {"init_from", "dense checkpoint to upcycle online (with --scale-out)", &o.init_from},
      {"scale_out", "E,K: experts and top-k for online upcycling", &o.scale_out},
      {"granularity", "online upcycling: split each FFN into G slices (E*G experts, top K*G)",
       &o.granularity},
      {"router_init_std", "online upcycling: router weights ~ N(0, std^2)", &o.router_init_std},
      {"moe_every", "online upcycling: layer i becomes MoE iff (i+1) % N == 0", &o.moe_every},
      {"moe_format",
       "online upcycling: auto, mixtral, qwen2-moe or qwen3-moe (escale scale-out --format)",
       &o.moe_format},
      {"shared_experts", "online upcycling: add a Qwen2-MoE shared expert (a dense FFN copy)",
       &o.shared_experts},
      {"expert_noise", "online upcycling: std of Gaussian noise on expert weights (not exact)",
       &o.expert_noise},
      {"reinit_ratio",
       "online upcycling, Drop-Upcycling: fraction of each expert's neurons re-initialised",
       &o.reinit_ratio},
      {"drop_by", "online upcycling: probability or position (assignments over capacity)",
       &o.drop_by},
      {"data", "token shard directory (escale tokenize output)", &o.data},
      {"data_blend",
       "weighted shard directories instead of --data: 'NAME=WEIGHT:DIR ...' (e.g. 'en=0.7:A "
       "zh=0.3:B'; weights normalised)",
       &o.data_blend},
      {"out", "run directory (checkpoints, metrics.jsonl)", &o.out},
      {"resume", "continue the run in --out from its latest complete checkpoint", &o.resume},
      {"branch_from",
       "start from another run's checkpoint (weights, AdamW moments, data position, step) in a new "
       "--out, e.g. a WSD decay branch off a stable run: same schedule options, other --steps and "
       "--wsd-decay-fraction",
       &o.branch_from},
      {"carry_moments",
       "start AdamW from the moments that scale-up or scale-out --carry-moments mapped into "
       "--model "
       "(MODEL/moments/) instead of zeros: the grown model continues its source's optimizer",
       &o.carry_moments},
      {"seq_len", "sequence length", &o.seq_len},
      {"micro_batch", "sequences per forward/backward pass", &o.micro_batch},
      {"global_batch_tokens",
       "tokens per optimiser step (multiple of seq_len x micro_batch; 0 = one micro-batch)",
       &o.global_batch_tokens},
      {"steps", "optimiser steps (0: from --token-budget)", &o.steps},
      {"token_budget", "tokens to train on when --steps is 0", &o.token_budget},
      {"lr", "peak learning rate", &o.lr},
      {"min_lr", "final learning rate", &o.min_lr},
      {"warmup", "warmup steps", &o.warmup},
      {"schedule", "cosine, wsd or constant", &o.schedule},
      {"wsd_decay_fraction", "WSD: fraction of steps in the final decay", &o.wsd_decay_fraction},
      {"beta1", "AdamW beta1", &o.beta1},
      {"beta2", "AdamW beta2", &o.beta2},
      {"eps", "AdamW epsilon", &o.eps},
      {"weight_decay", "AdamW decoupled weight decay (not on norms, biases, embeddings)",
       &o.weight_decay},
      {"clip", "global gradient-norm clip (0 = off)", &o.clip},
      {"seed", "random seed (initialisation, data order)", &o.seed},
      {"aux_loss", "load-balancing loss coefficient (Switch form, docs/method.md §4)", &o.aux_loss},
      {"router_max_z", "router max-z loss coefficient (AquilaMoE)", &o.router_max_z},
      {"router_z", "router z-loss coefficient (ST-MoE)", &o.router_z},
      {"output_z", "output z-loss coefficient (PaLM)", &o.output_z},
      {"output_max_z", "output max-z loss coefficient (Baichuan 2)", &o.output_max_z},
      {"capacity_factor", "expert capacity factor (0 = dropless)", &o.capacity_factor},
      {"router", "routing type override: mixtral or st", &o.router},
      {"eval_every", "validate every N steps (0 = only at the end)", &o.eval_every},
      {"eval_batches",
       "validation micro-batches per evaluation (0 = every complete seq_len window of the split)",
       &o.eval_batches},
      {"save_every", "checkpoint every N steps (0 = only at the end)", &o.save_every},
      {"keep_last", "complete checkpoints to keep (0 = all)", &o.keep_last},
      {"keep_steps",
       "also checkpoint at these steps and never prune them (comma list; branch points)",
       &o.keep_steps},
      {"spike_zscore", "skip a step whose loss z-score exceeds this (0 = off)", &o.spike_zscore},
      {"max_skips", "stop after this many skipped steps in a row", &o.max_skips},
      {"threads", "worker threads (0 = all cores)", &o.threads},
      {"zero_stage",
       "1: shard the AdamW moments across the ranks of an mpirun run (ZeRO-1); 0: every rank holds "
       "all",
       &o.zero_stage},
      {"inject_nan_steps", "testing: steps whose gradients are poisoned with NaN (comma list)",
       &o.inject_nan_steps},
      {"inject_spike_steps",
       "testing: steps whose loss is inflated tenfold before judging (comma list)",
       &o.inject_spike_steps},
      {"inject_drift_steps",
       "testing, under mpirun: steps after which the last rank nudges one weight (comma list)",
       &o.inject_drift_steps},
  };
}

Status ApplyOptionText(const OptionSpec& spec, const std::string& text) {
  const std::string flag = "--" + [&] {
    std::string k = spec.key;
    for (char& c : k) if (c == '_') c = '-';
    return k;
  }();
  return std::visit(
      [&](auto* p) -> Status {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          *p = text;
        } else if constexpr (std::is_same_v<T, bool>) {
          if (text == "true" || text == "1") *p = true;
          else if (text == "false" || text == "0") *p = false;
          else return InvalidArgument(flag + " takes true or false, not '" + text + "'");
        } else if constexpr (std::is_same_v<T, int64_t>) {
          char* end = nullptr;
          const long long v = std::strtoll(text.c_str(), &end, 10);
          if (text.empty() || *end != '\0') return InvalidArgument(flag + " takes an integer, not '" + text + "'");
          *p = v;
        } else {
          char* end = nullptr;
          const double v = std::strtod(text.c_str(), &end);
          if (text.empty() || *end != '\0' || !std::isfinite(v))
            return InvalidArgument(flag + " takes a number, not '" + text + "'");
          *p = v;
        }
        return Status::Ok();
      },
      spec.target);
}

Status ApplyTomlFile(const std::string& path, const std::vector<OptionSpec>& table) {
  ESCALE_ASSIGN_OR_RETURN(const std::string text, ReadSmallFile(path));
  return ApplyTomlText(text, path, table);
}

Status ApplyTomlText(const std::string& text, const std::string& path,
                     const std::vector<OptionSpec>& table) {
  // Debian builds toml++ with exceptions: parse errors arrive as toml::parse_error.
  toml::table t;
  try {
    t = toml::parse(text, path);
  } catch (const toml::parse_error& err) {
    return FormatError(path + ":" + std::to_string(err.source().begin.line) + ": " +
                       std::string(err.description()));
  }
  return ApplyTomlTable(t, path, table);
}

namespace {
Status ApplyTomlTable(const toml::table& t, const std::string& path,
                      const std::vector<OptionSpec>& table) {
  for (const auto& entry : t) {
    // Named, not a structured binding: clang before 16 cannot capture a binding in a lambda.
    const toml::node& node = entry.second;
    const std::string k(entry.first.str());
    const OptionSpec* spec = nullptr;
    for (const auto& s : table)
      if (s.key == k) spec = &s;
    if (spec == nullptr) return InvalidArgument(path + ": unknown option '" + k + "' (see escale train --help)");
    const std::string where = path + ": option '" + k + "'";
    Status st = std::visit(
        [&](auto* p) -> Status {
          using T = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<T, std::string>) {
            if (!node.is_string()) return InvalidArgument(where + " must be a string");
            *p = std::string(*node.as_string());
          } else if constexpr (std::is_same_v<T, bool>) {
            if (!node.is_boolean()) return InvalidArgument(where + " must be true or false");
            *p = **node.as_boolean();
          } else if constexpr (std::is_same_v<T, int64_t>) {
            if (!node.is_integer()) return InvalidArgument(where + " must be an integer");
            *p = **node.as_integer();
          } else {
            if (node.is_integer()) *p = static_cast<double>(**node.as_integer());
            else if (node.is_floating_point()) *p = **node.as_floating_point();
            else return InvalidArgument(where + " must be a number");
          }
          return Status::Ok();
        },
        spec->target);
    ESCALE_RETURN_IF_ERROR(st);
  }
  return Status::Ok();
}

}  // namespace

Result<std::set<int64_t>> ParseStepList(const std::string& text, const char* flag) {
  std::set<int64_t> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (*end != '\0' || v < 0)
      return InvalidArgument(std::string(flag) + " takes step numbers, not '" + item + "'");
    out.insert(v);
  }
  return out;
}

}  // namespace escale
