#include "pipeline/recipe.h"

#include <toml++/toml.h>

#include <charconv>
#include <cmath>
#include <set>
#include <sstream>

namespace escale::pipeline {

namespace {

std::string Where(const std::string& path, const std::string& key) {
  return path + ": '" + key + "'";
}

Status CheckKeys(const std::string& path, const std::string& table, const toml::table& t,
                 const std::set<std::string>& allowed) {
  for (const auto& [k, v] : t) {
    const std::string key(k.str());
    if (!allowed.count(key))
      return InvalidArgument(path + ": unknown key '" + (table.empty() ? key : table + "." + key) +
                             "' (see docs/pipeline.md)");
  }
  return Status::Ok();
}

Result<std::string> Str(const std::string& path, const toml::table& t, const std::string& key,
                        std::string dflt) {
  const toml::node* n = t.get(key);
  if (!n) return dflt;
  if (!n->is_string()) return InvalidArgument(Where(path, key) + " must be a string");
  return std::string(*n->as_string());
}

Result<int64_t> Int(const std::string& path, const toml::table& t, const std::string& key,
                    int64_t dflt) {
  const toml::node* n = t.get(key);
  if (!n) return dflt;
  if (!n->is_integer()) return InvalidArgument(Where(path, key) + " must be an integer");
  return **n->as_integer();
}

Result<double> Num(const std::string& path, const toml::table& t, const std::string& key,
                   double dflt) {
  const toml::node* n = t.get(key);
  if (!n) return dflt;
  if (n->is_integer()) return static_cast<double>(**n->as_integer());
  if (!n->is_floating_point()) return InvalidArgument(Where(path, key) + " must be a number");
  return **n->as_floating_point();
}

Result<std::vector<std::string>> StrList(const std::string& path, const toml::table& t,
                                         const std::string& key) {
  std::vector<std::string> out;
  const toml::node* n = t.get(key);
  if (!n) return out;
  if (n->is_string()) return std::vector<std::string>{std::string(*n->as_string())};
  if (!n->is_array()) return InvalidArgument(Where(path, key) + " must be a list of strings");
  for (const auto& e : *n->as_array()) {
    if (!e.is_string()) return InvalidArgument(Where(path, key) + " must be a list of strings");
    out.emplace_back(*e.as_string());
  }
  return out;
}

std::string ValueText(const toml::node& n) {
  if (n.is_string()) return std::string(*n.as_string());
  if (n.is_integer()) return std::to_string(**n.as_integer());
  if (n.is_floating_point()) {  // the shortest text that reads back to the same double
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, **n.as_floating_point());
    return std::string(buf, r.ptr);
  }
  if (n.is_boolean()) return **n.as_boolean() ? "true" : "false";
  return "";
}

// A surgery table (minus its "train" sub-table) -> command-line flags.
Result<Flags> ToFlags(const std::string& path, const std::string& table, const toml::table& t) {
  Flags f;
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    if (key == "train") continue;
    std::string flag = key;
    for (char& c : flag)
      if (c == '_') c = '-';
    if (v.is_boolean()) {
      if (**v.as_boolean()) f.push_back({flag, {}});
    } else if (v.is_array()) {
      std::vector<std::string> vals;
      for (const auto& e : *v.as_array()) vals.push_back(ValueText(e));
      f.push_back({flag, vals});
    } else if (v.is_string() || v.is_integer() || v.is_floating_point()) {
      f.push_back({flag, {ValueText(v)}});
    } else {
      return InvalidArgument(path + ": '" + table + "." + key +
                             "' must be a string, number, boolean or list");
    }
  }
  return f;
}

// [train] defaults with the stage's own train table on top, written back as TOML for --config.
TrainStageSpec MergeTrain(const toml::table* defaults, const toml::table* stage) {
  toml::table merged;
  if (defaults) merged = *defaults;
  if (stage)
    for (const auto& [k, v] : *stage) merged.insert_or_assign(k, v);
  std::ostringstream s;
  s << merged;
  return {s.str() + "\n", stage != nullptr};
}

}  // namespace

// "scale_up.train.lr=1e-3": the value is read as TOML (a number, true/false, a quoted string,
// a [list]); anything TOML does not read is taken as a bare string.
Status ApplyOverride(toml::table& t, const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    return InvalidArgument("--set '" + text + "': give KEY=VALUE, e.g. scale_up.train.lr=1e-3");
  const std::string key = text.substr(0, eq), value = text.substr(eq + 1);
  toml::table holder;
  try {
    holder = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    holder = toml::table{};
    holder.insert("v", value);
  }
  toml::table* at = &t;
  std::string rest = key;
  for (auto dot = rest.find('.'); dot != std::string::npos; dot = rest.find('.')) {
    const std::string part = rest.substr(0, dot);
    rest = rest.substr(dot + 1);
    if (part.empty() || rest.empty())
      return InvalidArgument("--set '" + text + "': '" + key + "' is not a dotted key");
    toml::node* n = at->get(part);
    if (!n) n = at->insert(part, toml::table{}).first->second.as_table();
    if (!n || !n->is_table())
      return InvalidArgument("--set '" + text + "': '" + part + "' is not a table in the recipe");
    at = n->as_table();
  }
  at->insert_or_assign(rest, *holder.get("v"));
  return Status::Ok();
}

Result<Recipe> ParseRecipe(const std::string& path, const std::vector<std::string>& overrides) {
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& err) {
    return FormatError(path + ":" + std::to_string(err.source().begin.line) + ": " +
                       std::string(err.description()));
  }
  for (const std::string& o : overrides) ESCALE_RETURN_IF_ERROR(ApplyOverride(t, o));
  ESCALE_RETURN_IF_ERROR(CheckKeys(
      path, "", t,
      {"out", "seed", "data", "train", "prepare", "scale_up", "scale_out", "baseline", "eval"}));
  Recipe r;
  r.path = path;
  ESCALE_ASSIGN_OR_RETURN(r.out, Str(path, t, "out", ""));
  if (r.out.empty()) return InvalidArgument(path + ": 'out' (the run directory) is required");
  ESCALE_ASSIGN_OR_RETURN(int64_t seed, Int(path, t, "seed", 1));
  r.seed = static_cast<uint64_t>(seed);
  auto table = [&](const char* name) { return t[name].as_table(); };
  for (const char* name : {"data", "train", "prepare", "scale_up", "scale_out", "baseline", "eval"})
    if (t.contains(name) && !table(name))
      return InvalidArgument(path + ": '" + name + "' must be a table ([" + name + "])");

  const toml::table* data = table("data");
  if (!data) return InvalidArgument(path + ": a [data] table with 'inputs' is required");
  ESCALE_RETURN_IF_ERROR(CheckKeys(
      path, "data", *data, {"inputs", "tokenizer", "vocab_size", "val_fraction", "workers", "seed"}));
  ESCALE_ASSIGN_OR_RETURN(r.data_seed, Int(path, *data, "seed", -1));
  ESCALE_ASSIGN_OR_RETURN(r.inputs, StrList(path, *data, "inputs"));
  if (r.inputs.empty())
    return InvalidArgument(path + ": 'data.inputs' must list at least one file or directory");
  ESCALE_ASSIGN_OR_RETURN(r.tokenizer, Str(path, *data, "tokenizer", ""));
  ESCALE_ASSIGN_OR_RETURN(r.vocab_size, Int(path, *data, "vocab_size", 8192));
  ESCALE_ASSIGN_OR_RETURN(r.val_fraction, Num(path, *data, "val_fraction", 0.02));
  ESCALE_ASSIGN_OR_RETURN(r.workers, Int(path, *data, "workers", 2));
  if (!(r.val_fraction > 0 && r.val_fraction < 1))
    return InvalidArgument(
        path +
        ": 'data.val_fraction' must be in (0, 1): the stages are compared on validation loss");

  const toml::table* train = table("train");
  const toml::table* prepare = table("prepare");
  if (!prepare) return InvalidArgument(path + ": a [prepare] table (preset or model) is required");
  ESCALE_RETURN_IF_ERROR(CheckKeys(path, "prepare", *prepare, {"model", "preset", "train"}));
  ESCALE_ASSIGN_OR_RETURN(r.model, Str(path, *prepare, "model", ""));
  ESCALE_ASSIGN_OR_RETURN(r.preset, Str(path, *prepare, "preset", ""));
  if (r.model.empty() == r.preset.empty())
    return InvalidArgument(path +
                           ": [prepare] needs exactly one of 'model' (a checkpoint) and 'preset' "
                           "(train from scratch)");
  auto sub_train = [](const toml::table* tb) { return tb ? (*tb)["train"].as_table() : nullptr; };
  r.prepare_train = MergeTrain(train, sub_train(prepare));
  if (!r.model.empty())
    r.prepare_train.present = sub_train(prepare) != nullptr;
  else
    r.prepare_train.present = true;  // a model from a preset must be trained

  if (const toml::table* up = table("scale_up")) {
    r.scale_up = true;
    ESCALE_ASSIGN_OR_RETURN(r.scale_up_flags, ToFlags(path, "scale_up", *up));
    r.up_train = MergeTrain(train, sub_train(up));
  }
  if (const toml::table* so = table("scale_out")) {
    r.scale_out = true;
    ESCALE_ASSIGN_OR_RETURN(r.scale_out_flags, ToFlags(path, "scale_out", *so));
    r.out_train = MergeTrain(train, sub_train(so));
  }
  if (!r.scale_up && !r.scale_out)
    return InvalidArgument(path + ": nothing to grow: add [scale_up] and/or [scale_out]");
  if (const toml::table* b = table("baseline")) {
    ESCALE_RETURN_IF_ERROR(
        CheckKeys(path, "baseline", *b, {"train", "enabled", "compute", "decay_branches"}));
    r.baseline = (*b)["enabled"].value_or(true);
    r.baseline_train = MergeTrain(train, sub_train(b));
    ESCALE_ASSIGN_OR_RETURN(r.baseline_compute, Num(path, *b, "compute", 1.0));
    if (!(r.baseline_compute > 0) || !std::isfinite(r.baseline_compute))
      return InvalidArgument(path + ": 'baseline.compute' must be a positive multiple of the " +
                             "EfficientScale stages' FLOPs");
    if (const toml::node* n = b->get("decay_branches")) {
      const toml::array* a = n->as_array();
      if (!a) return InvalidArgument(path + ": 'baseline.decay_branches' must be a list of numbers");
      for (const auto& e : *a) {
        const auto v = e.value<double>();
        if (!v || !(*v > 0 && *v < 1))
          return InvalidArgument(path + ": 'baseline.decay_branches' holds fractions of the " +
                                 "baseline's steps in (0, 1), e.g. [0.25, 0.5]");
        r.decay_branches.push_back(*v);
      }
      toml::table merged = toml::parse(r.baseline_train.toml);
      if (!r.decay_branches.empty() && merged["schedule"].value_or(std::string("cosine")) != "wsd")
        return InvalidArgument(path + ": decay branches need schedule = \"wsd\" for the baseline " +
                               "(a constant stable phase to branch from)");
    }
  }
  if (const toml::table* e = table("eval")) {
    ESCALE_RETURN_IF_ERROR(
        CheckKeys(path, "eval", *e, {"enabled", "tasks", "max_length", "verify"}));
    r.verify = (*e)["verify"].value_or(true);
    r.eval = (*e)["enabled"].value_or(true);
    ESCALE_ASSIGN_OR_RETURN(r.tasks, StrList(path, *e, "tasks"));
    ESCALE_ASSIGN_OR_RETURN(r.eval_max_length, Int(path, *e, "max_length", 0));
  }
  return r;
}

}  // namespace escale::pipeline
