// The whole recipe checked before its first stage runs: every stage's training options as
// `escale train` reads them, and every surgery option against the options the stage's command
// has. A typo then costs a second, not a preparation stage.
#include "pipeline/recipe_check.h"

#include <cctype>
#include <set>

#include "core/subprocess.h"
#include "train/train_options.h"

namespace escale::pipeline {
namespace {

Status CheckTrainTable(const std::string& where, const TrainStageSpec& spec,
                       bool steps_from_compute) {
  if (!spec.present) return Status::Ok();
  TrainOptions o;
  const Status applied = ApplyTomlText(spec.toml, where, TrainOptionTable(o));
  if (!applied.ok()) return InvalidArgument("recipe " + applied.message());
  // The stage supplies these itself; everything else must already be valid.
  o.model_dir = "model";
  o.data = "shards";
  o.out = "run";
  if (steps_from_compute && o.steps == 0 && !(o.token_budget > 0)) o.steps = 1;
  const Status valid = o.Validate();
  if (!valid.ok()) return InvalidArgument("recipe " + where + ": " + valid.message());
  return Status::Ok();
}

// The long options a subcommand accepts, read from its own --help, so that this list can never
// drift from the command.
Result<std::set<std::string>> CommandFlags(const std::string& executable,
                                           const std::string& command) {
  ESCALE_ASSIGN_OR_RETURN(ProcessOutput p, RunProcess({executable, command, "--help"}));
  if (p.exit_code != 0) return InternalError("'escale " + command + " --help' failed: " + p.err);
  std::set<std::string> flags;
  for (size_t i = p.out.find("--"); i != std::string::npos; i = p.out.find("--", i + 2)) {
    size_t e = i + 2;
    while (e < p.out.size() &&
           (std::isalnum(static_cast<unsigned char>(p.out[e])) || p.out[e] == '-'))
      ++e;
    if (e > i + 2) flags.insert(p.out.substr(i + 2, e - i - 2));
  }
  return flags;
}

Status CheckSurgeryFlags(const std::string& executable, const std::string& table,
                         const std::string& command, const Flags& flags) {
  ESCALE_ASSIGN_OR_RETURN(const std::set<std::string> known, CommandFlags(executable, command));
  for (const auto& [flag, values] : flags) {
    std::string key = flag;
    for (char& c : key)
      if (c == '-') c = '_';
    if (!known.count(flag))
      return InvalidArgument("recipe [" + table + "]: unknown key '" + key + "' (escale " +
                             command + " --help lists the options; write them with _ for -)");
  }
  return Status::Ok();
}

}  // namespace

Status CheckRecipeTraining(const Recipe& r) {
  ESCALE_RETURN_IF_ERROR(CheckTrainTable("[prepare.train]", r.prepare_train, false));
  if (r.scale_up) ESCALE_RETURN_IF_ERROR(CheckTrainTable("[scale_up.train]", r.up_train, false));
  if (r.scale_out) ESCALE_RETURN_IF_ERROR(CheckTrainTable("[scale_out.train]", r.out_train, false));
  if (r.baseline)
    ESCALE_RETURN_IF_ERROR(CheckTrainTable("[baseline.train]", r.baseline_train, true));
  return Status::Ok();
}

Status CheckRecipe(const Recipe& r, const std::string& executable) {
  ESCALE_RETURN_IF_ERROR(CheckRecipeTraining(r));
  if (r.scale_up)
    ESCALE_RETURN_IF_ERROR(CheckSurgeryFlags(executable, "scale_up", "scale-up", r.scale_up_flags));
  if (r.scale_out)
    ESCALE_RETURN_IF_ERROR(
        CheckSurgeryFlags(executable, "scale_out", "scale-out", r.scale_out_flags));
  return Status::Ok();
}

}  // namespace escale::pipeline
