// escale train: continued pretraining of a dense or MoE model (from a checkpoint, from a config,
// or upcycled online from a dense checkpoint), with bit-exact --resume.
#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/command.h"
#include "core/atomic_output.h"
#include "core/json_text.h"
#include "data/blend.h"
#include "data/token_shards.h"
#include "dist/communicator.h"
#include "io/hf_model.h"
#include "model/init.h"
#include "ops/cpu/sgemm_rate.h"
#include "surgery/scale_out.h"
#include "tokenizer/tokenizer.h"
#include "train/trainer.h"

namespace escale::cli {
namespace {
namespace fs = std::filesystem;

struct Args {
  TrainOptions opt;
  std::string config_file;
  std::map<std::string, std::string> flag_values;  // option key -> text given on the command line
  std::map<std::string, bool>
      bool_flags;  // yes/no options are bare flags, as in the other commands
  bool no_mfu = false;
  double peak_gflops = 0;  // > 0: the sgemm rate MFU is measured against, not measured here
};

// The shards of a tokenize output directory as the trainer's token arrays.
Result<std::vector<TokenArray>> LoadSplit(const std::string& dir, const std::string& prefix, int64_t vocab) {
  ESCALE_ASSIGN_OR_RETURN(std::vector<std::string> paths, tok::ListShardFiles(dir, prefix));
  std::vector<TokenArray> out;
  for (const auto& p : paths) {
    ESCALE_ASSIGN_OR_RETURN(tok::TokenShard shard, tok::TokenShard::Open(p, vocab));
    auto owner = std::make_shared<tok::TokenShard>(std::move(shard));
    out.push_back({owner->data(), static_cast<int64_t>(owner->size()), owner->token_bytes(), owner});
  }
  return out;
}

Result<std::pair<int64_t, int64_t>> ParseExpertsTopK(const std::string& s) {
  const auto comma = s.find(',');
  const std::string usage = "--scale-out takes E,K (e.g. 8,2), not '" + s + "'";
  if (comma == std::string::npos) return InvalidArgument(usage);
  // Named strings: strtoll's end pointer must point into storage that outlives the check.
  const std::string experts = s.substr(0, comma), top_k = s.substr(comma + 1);
  char* end_e = nullptr;
  char* end_k = nullptr;
  const long long e = std::strtoll(experts.c_str(), &end_e, 10);
  const long long k = std::strtoll(top_k.c_str(), &end_k, 10);
  if (experts.empty() || top_k.empty() || *end_e != '\0' || *end_k != '\0' || e < 1 || k < 1)
    return InvalidArgument(usage);
  return std::make_pair(static_cast<int64_t>(e), static_cast<int64_t>(k));
}

// Each rank's default OpenMP team: the cores this process may use, shared with the other ranks
// on its node (OMP_NUM_THREADS or --threads win). libgomp's default already follows mpirun's
// binding; without binding every rank would otherwise start a team of all the node's cores.
int64_t DefaultThreads(const dist::Communicator& comm) {
  if (std::getenv("OMP_NUM_THREADS") != nullptr || comm.local_size() <= 1) return 0;
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  return std::max(1, std::min(omp_get_max_threads(), cores / comm.local_size()));
}

// Everything before the training loop; under several ranks every rank runs it on its own.
Status PrepareTrain(Args& a, dist::Communicator& comm, TrainerInputs& in) {
  TrainOptions& o = a.opt;
  auto table = TrainOptionTable(o);
  if (!a.config_file.empty()) ESCALE_RETURN_IF_ERROR(ApplyTomlFile(a.config_file, table));
  for (const auto& spec : table) {
    auto it = a.flag_values.find(spec.key);
    if (it != a.flag_values.end() && !it->second.empty()) ESCALE_RETURN_IF_ERROR(ApplyOptionText(spec, it->second));
  }
  for (const auto& spec : table)
    if (auto it = a.bool_flags.find(spec.key); it != a.bool_flags.end() && it->second)
      ESCALE_RETURN_IF_ERROR(ApplyOptionText(spec, "true"));
  ESCALE_RETURN_IF_ERROR(o.Validate());
  if (o.threads == 0) o.threads = DefaultThreads(comm);

  std::string tokenizer_dir;
  if (!o.model_dir.empty()) {
    ESCALE_ASSIGN_OR_RETURN(HfModel m, ReadHfModel(o.model_dir));
    in.config = m.config;
    in.init = m.tensors;  // views into the mapping (they keep it alive); TrainModel copies to fp32 once
    tokenizer_dir = o.model_dir;
    in.description = "continued pretraining of " + o.model_dir;
  } else if (!o.from_config.empty()) {
    ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(o.from_config));
    ESCALE_ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonText(text, o.from_config));
    ESCALE_ASSIGN_OR_RETURN(in.config, ParseHfConfig(j));
    ESCALE_RETURN_IF_ERROR(in.config.Validate());
    in.init = RandomInit(in.config, {.seed = static_cast<uint64_t>(o.seed)});
    in.description = "from scratch (" + o.from_config + ")";
  } else {
    ESCALE_ASSIGN_OR_RETURN(auto ek, ParseExpertsTopK(o.scale_out));
    ESCALE_ASSIGN_OR_RETURN(HfModel dense, ReadHfModel(o.init_from));
    if (dense.config.is_moe())
      return InvalidArgument(o.init_from + " is already an MoE; online upcycling starts from a dense checkpoint");
    // The same options as escale scale-out, under the same names (--moe-format is its --format).
    surgery::ScaleOutOptions so;
    so.experts = ek.first;
    so.top_k = ek.second;
    so.seed = static_cast<uint64_t>(o.seed);
    so.capacity_factor = o.capacity_factor;
    so.granularity = o.granularity;
    so.router_std = o.router_init_std;
    so.every = o.moe_every;
    so.shared_expert = o.shared_experts;
    so.expert_noise = o.expert_noise;
    so.reinit_ratio = o.reinit_ratio;
    surgery::ScaleOutChoices choices;
    choices.router = o.router.empty() ? "mixtral" : o.router;
    choices.format = o.moe_format;
    choices.drop_by = o.drop_by;
    const std::string what = "online upcycling --scale-out " + o.scale_out +
                             " (E is scale-out's --experts, K its --top-k)";
    ESCALE_RETURN_IF_ERROR(surgery::ApplyScaleOutChoices(choices, so).WithContext(what));
    auto planned = surgery::PlanScaleOut(dense.config, so);
    if (!planned.ok()) return planned.status().WithContext(what);
    surgery::ScaleOutPlan plan = std::move(*planned);
    ESCALE_ASSIGN_OR_RETURN(in.init, surgery::ScaleOutInMemory(plan, surgery::SourceFromMap(dense.tensors), DType::kF32));
    in.config = plan.target;
    tokenizer_dir = o.init_from;
    in.description = "online scale-out " + o.scale_out + " of " + o.init_from;
  }
  const std::string tokenizer_json = tokenizer_dir.empty() ? "" : tokenizer_dir + "/tokenizer.json";
  if (o.data_blend.empty()) {
    ESCALE_ASSIGN_OR_RETURN(in.train, LoadSplit(o.data, "train", in.config.vocab_size));
    if (in.train.empty()) return NotFound(o.data + " holds no train_*.bin shards");
    ESCALE_ASSIGN_OR_RETURN(in.val, LoadSplit(o.data, "val", in.config.vocab_size));
    ESCALE_RETURN_IF_ERROR(tok::CheckShardManifest(o.data, tokenizer_json));
  } else {
    ESCALE_ASSIGN_OR_RETURN(std::vector<BlendEntry> entries, ParseDataBlend(o.data_blend));
    for (const auto& e : entries) {
      DataSourceInputs src{e.name, e.weight, {}, {}};
      ESCALE_ASSIGN_OR_RETURN(src.train, LoadSplit(e.dir, "train", in.config.vocab_size));
      if (src.train.empty())
        return NotFound(e.dir + " (source '" + e.name + "') holds no train_*.bin shards");
      ESCALE_ASSIGN_OR_RETURN(src.val, LoadSplit(e.dir, "val", in.config.vocab_size));
      ESCALE_RETURN_IF_ERROR(tok::CheckShardManifest(e.dir, tokenizer_json));
      in.blend.push_back(std::move(src));
    }
  }
  std::error_code ec;
  if (!tokenizer_dir.empty() && fs::is_regular_file(tokenizer_dir + "/tokenizer.json", ec))
    in.copy_files_from = tokenizer_dir;
  if (a.peak_gflops > 0)
    in.sgemm_gflops = a.peak_gflops;
  else if (!a.no_mfu)
    in.sgemm_gflops = MeasurePeakSgemmRate(
                          o.threads > 0 ? static_cast<int>(o.threads) : omp_get_max_threads(), 1.0)
                          .gflops;
  return Status::Ok();
}

Status RunTrain(Args& a) {
  // MPI starts here, and only when a launcher started this process (dist/communicator.h).
  ESCALE_ASSIGN_OR_RETURN(dist::Communicator * comm, dist::World());
  TrainerInputs in;
  in.comm = comm;
  ESCALE_RETURN_IF_ERROR(dist::AgreeOnStatus(*comm, PrepareTrain(a, *comm, in)));
  const TrainOptions& o = a.opt;
  ESCALE_ASSIGN_OR_RETURN(TrainSummary s, RunTraining(o, std::move(in)));
  if (comm->rank() != 0) return Status::Ok();
  // A negative validation loss means the shards hold no validation split.
  char val[96] = "no validation split";
  if (s.first_val_loss >= 0)
    std::snprintf(val, sizeof val, "validation loss %.4f -> %.4f", s.first_val_loss,
                  s.last_val_loss);
  std::printf("trained steps %lld..%lld%s: train loss %.4f, %s, %.0f tokens/s, %lld skipped\n",
              static_cast<long long>(s.start_step), static_cast<long long>(s.steps_done),
              s.interrupted ? " (interrupted)" : "", s.last_train_loss, val, s.tokens_per_second,
              static_cast<long long>(s.skipped_steps));
  if (!o.data_blend.empty()) {
    double total = 0;
    for (const auto& r : s.sources) total += r.tokens;
    for (const auto& r : s.sources) {
      std::printf("source %s: weight %.3f, %.0f tokens served (%.1f%%), %.3f epochs",
                  r.name.c_str(), r.weight, r.tokens, total > 0 ? 100.0 * r.tokens / total : 0.0,
                  r.epochs);
      if (r.last_val_loss >= 0)
        std::printf(", val loss %.4f -> %.4f", r.first_val_loss, r.last_val_loss);
      std::printf("\n");
    }
  }
  std::printf("checkpoint: %s\n", s.last_checkpoint.c_str());
  return Status::Ok();
}

CommandRegistration reg(40, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand("train", "Continued pretraining (dense or MoE; from a checkpoint, a config, or online upcycling)");
  c->add_option("--config", a->config_file, "TOML file with any of the options below (flags win)");
  c->add_flag("--no-mfu", a->no_mfu, "Skip measuring the sgemm rate (no MFU in the metrics)");
  c->add_option(
       "--peak-gflops", a->peak_gflops,
       "Measure MFU against this sgemm rate (GFLOP/s) instead of measuring it at the start "
       "(escale pipeline measures it once per run)")
      ->check(CLI::PositiveNumber);
  for (const auto& spec : TrainOptionTable(a->opt)) {
    std::string flag = "--" + spec.key;
    for (char& ch : flag) if (ch == '_') ch = '-';
    if (std::holds_alternative<bool*>(spec.target)) {
      c->add_flag(flag, a->bool_flags[spec.key], spec.help);
      continue;
    }
    // Show the default next to the help: the table's targets still hold the defaults here.
    const std::string def = std::visit(
        [](auto* p) -> std::string {
          using T = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<T, std::string>) return *p;
          else if constexpr (std::is_same_v<T, bool>) return *p ? "true" : "false";
          else {
            std::ostringstream os;
            os << *p;
            return os.str();
          }
        },
        spec.target);
    c->add_option(flag, a->flag_values[spec.key], def.empty() ? spec.help : spec.help + " (default " + def + ")");
  }
  return [a] { return RunTrain(*a); };
});

}  // namespace
}  // namespace escale::cli
