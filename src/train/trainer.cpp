#include "train/trainer.h"

#include <fcntl.h>
#include <omp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/atomic_output.h"
#include "core/progress.h"
#include "dist/communicator.h"
#include "io/hf_model.h"
#include "io/optimizer_moments.h"
#include "io/safetensors.h"
#include "model/layout.h"
#include "model/train_model.h"
#include "train/adamw.h"
#include "train/checkpoint_store.h"
#include "train/data_blend.h"
#include "train/data_parallel.h"
#include "train/fault_policy.h"
#include "train/metrics_log.h"
#include "train/schedule.h"

namespace escale {
namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void OnStopSignal(int sig) { g_stop_signal.store(sig); }

// Installs SIGINT/SIGTERM handlers for the lifetime of a run and restores the old ones after.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

// One trainer per run directory at a time (advisory lock held for the run). The lock file is
// removed on release, whatever the exit path, and so is the run directory when this run created it
// and left nothing in it (a refusal before the first checkpoint).
class RunLock {
 public:
  static Result<RunLock> Acquire(const std::string& run_dir, bool created_dir) {
    const std::string path = run_dir + "/.lock";
    // The holder unlinks the file before it unlocks: a waiter may lock that unlinked inode, so it
    // retries until the inode it locked is still the one at the path.
    for (int attempt = 0; attempt < 100; ++attempt) {
      const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) return IoError("cannot create " + path + ": " + std::strerror(errno));
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd);
        return InvalidArgument("another escale train is using " + run_dir +
                               "; wait for it or choose another --out");
      }
      struct stat held {};
      struct stat now {};
      if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
          held.st_dev == now.st_dev) {
        RunLock l;
        l.fd_ = fd;
        l.path_ = path;
        l.dir_ = created_dir ? run_dir : "";
        return l;
      }
      ::close(fd);
    }
    return IoError("cannot lock " + path + ": it keeps being replaced");
  }
  RunLock(RunLock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)), dir_(std::move(o.dir_)) {
    o.fd_ = -1;
  }
  RunLock& operator=(RunLock&&) = delete;
  ~RunLock() {
    if (fd_ < 0) return;
    ::unlink(path_.c_str());
    ::close(fd_);
    if (!dir_.empty()) ::rmdir(dir_.c_str());  // fails, harmlessly, unless the directory is empty
  }

 private:
  RunLock() = default;
  int fd_ = -1;
  std::string path_, dir_;
};

Result<std::set<int64_t>> ParseStepList(const std::string& text, const char* flag) {
  std::set<int64_t> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (*end != '\0' || v < 0) return InvalidArgument(std::string(flag) + " takes step numbers, not '" + item + "'");
    out.insert(v);
  }
  return out;
}

// The options that must not change across a resume (they change the data or the maths).
nlohmann::json ResumeKey(const TrainOptions& o) {
  nlohmann::json key = {{"seq_len", o.seq_len},
                        {"micro_batch", o.micro_batch},
                        {"global_batch_tokens", o.global_batch_tokens},
                        {"seed", o.seed},
                        {"schedule", o.schedule},
                        {"lr", o.lr},
                        {"min_lr", o.min_lr},
                        {"warmup", o.warmup},
                        {"beta1", o.beta1},
                        {"beta2", o.beta2},
                        {"weight_decay", o.weight_decay}};
  // Names and weights fix which source serves each window; a plain --data run keeps the old key.
  if (!o.data_blend.empty()) {
    nlohmann::json blend = nlohmann::json::array();
    Result<std::vector<BlendEntry>> entries = ParseDataBlend(o.data_blend);  // validated before
    if (entries.ok())
      for (const auto& e : *entries) blend.push_back({e.name, e.weight});
    key["data_blend"] = blend;
  }
  return key;
}

nlohmann::json CursorJson(const DataCursor& c) {
  return {{"epoch", c.epoch}, {"position", c.position}};
}
DataCursor CursorFrom(const nlohmann::json& d) {
  return {d.at("epoch").get<int64_t>(), d.at("position").get<int64_t>()};
}

struct EvalResult {
  double blended = -1;             // weight-averaged over the sources with validation shards
  std::vector<double> per_source;  // -1 where a source has none
};

// AdamW moments over the flat parameter space: parameter i occupies [offset[i], offset[i] + size)
// in canonical order. A rank holds [lo, hi) of it: everything, or with ZeRO-1 its shard.
struct OptimizerState {
  std::vector<int64_t> offset;
  int64_t total = 0, lo = 0, hi = 0;
  std::vector<float> m, v;  // hi - lo elements
};

// A branch's log starts as the parent run's log (cut at the branch step when the log is opened),
// so its curve shows the whole history and its cost counts the parent's steps.
Status StartBranchLog(const std::string& checkpoint_dir, const std::string& out) {
  fs::path ckpt = fs::path(checkpoint_dir).lexically_normal();
  if (!ckpt.has_filename()) ckpt = ckpt.parent_path();
  const fs::path parent_log = ckpt.parent_path().parent_path() / "metrics.jsonl";
  std::error_code ec;
  if (!fs::exists(parent_log, ec)) return Status::Ok();
  ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(parent_log.string()));
  return WriteFileAtomic(out + "/metrics.jsonl", text);
}

// m_full and v_full: the moments over the whole flat parameter space.
Status SaveCheckpoint(const std::string& run_dir, int64_t step, const TrainModel& model, std::span<const float> m_full,
                      std::span<const float> v_full, const std::vector<int64_t>& offset, const nlohmann::json& state,
                      const TrainerInputs& in, int64_t keep_last, const std::set<int64_t>& keep_steps) {
  ESCALE_ASSIGN_OR_RETURN(CheckpointWriter w, CheckpointWriter::Begin(run_dir, step));
  WriteOptions wo;
  wo.dtype = DType::kF32;
  wo.max_shard_bytes = uint64_t{1} << 62;
  wo.progress = false;
  wo.warn = false;  // said once when the run starts
  wo.copy_tokenizer_from = in.copy_files_from;
  wo.metadata = {{"escale.step", std::to_string(step)}};
  ESCALE_RETURN_IF_ERROR(WriteHfModel(w.dir() + "/model", model.config(), model.ExportTensors(), wo));
  // Optimizer moments as one safetensors file: m.NAME and v.NAME, fp32.
  std::vector<SafetensorsEntry> entries;
  const auto params = model.params();
  for (const auto& p : params) {
    const Shape shape{static_cast<int64_t>(p.value.size())};
    entries.push_back({"m." + p.name, DType::kF32, shape, 0, 0});
    entries.push_back({"v." + p.name, DType::kF32, shape, 0, 0});
  }
  SafetensorsWriter::Options so;
  so.basename = "optimizer";
  so.max_shard_bytes = uint64_t{1} << 62;
  ESCALE_ASSIGN_OR_RETURN(SafetensorsWriter sw, SafetensorsWriter::Create(w.dir(), entries, so));
  for (size_t i = 0; i < params.size(); ++i) {
    const size_t off = static_cast<size_t>(offset[i]), n = params[i].value.size();
    ESCALE_RETURN_IF_ERROR(sw.Write("m." + params[i].name, m_full.data() + off, n * 4));
    ESCALE_RETURN_IF_ERROR(sw.Write("v." + params[i].name, v_full.data() + off, n * 4));
  }
  ESCALE_RETURN_IF_ERROR(sw.Finish());
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(w.dir() + "/trainer_state.json", state.dump(2) + "\n"));
  return w.Commit({{"step", step}, {"description", in.description}}, keep_last, keep_steps);
}

}  // namespace

namespace {

// Maximal runs of adjacent spans (the engine keeps values and gradients in flat buffers, so this is
// usually one run): collectives then move a few large buckets, never one message per tensor.
std::vector<std::span<float>> ContiguousRuns(std::span<TrainModel::Param> params, bool grads) {
  std::vector<std::span<float>> runs;
  for (const auto& p : params) {
    const std::span<float> s = grads ? p.grad : p.value;
    if (!runs.empty() && runs.back().data() + runs.back().size() == s.data())
      runs.back() = std::span<float>(runs.back().data(), runs.back().size() + s.size());
    else
      runs.push_back(s);
  }
  return runs;
}

// The replicas must hold identical weights (same summed gradients, same update). Checked at each
// checkpoint with a hash of every weight's bits, so a divergence (a non-deterministic reduction,
// a faulty node) stops the run instead of saving rank 0's replica as if it spoke for all.
Status CheckReplicasAgree(dist::Communicator& comm, std::span<TrainModel::Param> params, int64_t step) {
  if (comm.size() == 1) return Status::Ok();
  uint64_t h = 1469598103934665603ull;
  for (const auto& p : params)
    for (float v : p.value) {
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      h = (h ^ bits) * 1099511628211ull;
    }
  const double mine = static_cast<double>(h >> 12);  // exact in a double
  std::array<double, 2> range = {mine, -mine};
  ESCALE_RETURN_IF_ERROR(comm.AllReduceMax(std::span<double>(range)));
  if (range[0] == -range[1]) return Status::Ok();
  return InternalError("the ranks' weights differ after step " + std::to_string(step) +
                       " (replicas diverged); resume from the last checkpoint and report this");
}

// The first weight holding NaN or infinity, as "NAME[index]", or empty. A checkpoint of such
// weights would be a run that has diverged, saved as if it were progress.
std::string FirstNonFinite(std::span<const TrainModel::Param> params) {
  for (const auto& p : params)
    for (size_t i = 0; i < p.value.size(); ++i)
      if (!std::isfinite(p.value[i])) return p.name + "[" + std::to_string(i) + "]";
  return "";
}

Status BroadcastFloats(dist::Communicator& comm, std::span<float> data) {
  return comm.Broadcast(std::as_writable_bytes(data), 0);
}

Status BroadcastInts(dist::Communicator& comm, std::span<int64_t> data) {
  return comm.Broadcast(std::as_writable_bytes(data), 0);
}

// The moments scale-up or scale-out --carry-moments wrote into the model: every parameter's, of
// its size, into the flat m and v, and the updates behind each.
Status LoadCarriedMoments(const std::string& model_dir, std::span<const TrainModel::Param> params,
                          const std::vector<int64_t>& offset, std::vector<float>& m,
                          std::vector<float>& v, std::vector<int64_t>& base) {
  const std::string path = model_dir + "/" + kMomentsFile;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    return InvalidArgument(
        "--carry-moments: " + path +
        " does not exist; make the model with scale-up or scale-out "
        "--carry-moments from a training checkpoint (or train without --carry-moments)");
  ESCALE_ASSIGN_OR_RETURN(MomentMap moments, ReadMomentsFile(path));
  if (moments.size() != params.size())
    return InvalidArgument(path + " holds the moments of " + std::to_string(moments.size()) +
                           " tensors, the model has " + std::to_string(params.size()) +
                           ": it was written for another model");
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = moments.find(params[i].name);
    if (it == moments.end() || it->second.m.size() != params[i].value.size())
      return InvalidArgument(path + " has no moments of " + params[i].name + " with its " +
                             std::to_string(params[i].value.size()) +
                             " elements: it was written for another model");
    std::copy(it->second.m.begin(), it->second.m.end(), m.begin() + offset[i]);
    std::copy(it->second.v.begin(), it->second.v.end(), v.begin() + offset[i]);
    base[i] = it->second.steps;
  }
  return Status::Ok();
}

}  // namespace

Result<TrainSummary> RunTraining(const TrainOptions& opt, TrainerInputs in) {
  dist::SingleProcessCommunicator single_process;
  dist::Communicator& comm = in.comm != nullptr ? *in.comm : single_process;
  const int world = comm.size(), rank = comm.rank();
  const bool root = rank == 0;

  // Phase 1, the same on every rank: options, schedule, the share of each step.
  ScheduleKind kind{};
  std::set<int64_t> nan_steps, spike_steps, drift_steps, keep_steps;
  ModelConfig config = in.config;
  int64_t accum = 0, tokens_per_step = 0, total_steps = 0;
  ScheduleConfig sched;
  RankShare share;
  const Status options_ok = [&]() -> Status {
    ESCALE_RETURN_IF_ERROR(opt.Validate());
    ESCALE_ASSIGN_OR_RETURN(kind, ParseScheduleKind(opt.schedule));
    ESCALE_ASSIGN_OR_RETURN(nan_steps, ParseStepList(opt.inject_nan_steps, "--inject-nan-steps"));
    ESCALE_ASSIGN_OR_RETURN(spike_steps, ParseStepList(opt.inject_spike_steps, "--inject-spike-steps"));
    ESCALE_ASSIGN_OR_RETURN(drift_steps, ParseStepList(opt.inject_drift_steps, "--inject-drift-steps"));
    ESCALE_ASSIGN_OR_RETURN(keep_steps, ParseStepList(opt.keep_steps, "--keep-steps"));
    if (!config.is_moe() && (opt.capacity_factor > 0 || !opt.router.empty()))
      return InvalidArgument("--capacity-factor and --router apply to MoE models; this model is dense "
                             "(upcycle it with --init-from DENSE --scale-out E,K)");
    if (config.is_moe()) {
      if (opt.capacity_factor > 0) config.moe.capacity_factor = opt.capacity_factor;
      if (opt.router == "st") config.moe.router = RouterType::kSt;
      if (opt.router == "mixtral") config.moe.router = RouterType::kMixtral;
      if (config.moe.router == RouterType::kMixtral && config.moe.top_k == 1)
        return InvalidArgument("top-1 with mixtral routing gives the router no gradient; use --router st or k >= 2");
    }
    ESCALE_RETURN_IF_ERROR(config.Validate());
    accum = opt.accumulation_steps();
    tokens_per_step = opt.tokens_per_micro_batch() * accum;
    total_steps = opt.steps > 0 ? opt.steps
                                : static_cast<int64_t>(std::ceil(opt.token_budget / static_cast<double>(tokens_per_step)));
    sched = {kind, opt.lr, opt.min_lr, std::min(opt.warmup, total_steps), total_steps, opt.wsd_decay_fraction};
    ESCALE_RETURN_IF_ERROR(sched.Validate());
    ESCALE_ASSIGN_OR_RETURN(share, ShareOfStep(accum, opt.seq_len, opt.micro_batch, world, rank));
    return Status::Ok();
  }();
  ESCALE_RETURN_IF_ERROR(dist::AgreeOnStatus(comm, options_ok));
  // Checkpoints do not repeat it; an online upcycle has no other command that would say it.
  if (const std::string warning = rank == 0 ? RopeScalingWarning(config) : ""; !warning.empty())
    std::fprintf(stderr, "escale train: warning: the checkpoints of this run are %s\n",
                 warning.c_str());
  // The engine parallelises with OpenMP (BLAS calls run single-threaded inside its team).
  if (opt.threads > 0) omp_set_num_threads(static_cast<int>(opt.threads));
  if (world > 1 && root)
    std::fprintf(stderr, "escale train: %d ranks (%s), %d threads each, %lld micro-batch(es) per rank per step\n",
                 world, comm.name().c_str(), omp_get_max_threads(), static_cast<long long>(share.count));
  const AdamWConfig adamw{opt.beta1, opt.beta2, opt.eps, opt.weight_decay};
  const LossCoefficients coef{opt.aux_loss, opt.router_max_z, opt.router_z, opt.output_z, opt.output_max_z};

  // Phase 2, rank 0 alone: the run directory, its lock, and the checkpoint to resume from (read
  // here and broadcast, so the other ranks need not see the run directory at all).
  std::optional<RunLock> lock;
  std::optional<CheckpointInfo> resume_from;
  HfModel resumed_model;
  nlohmann::json resumed_state;
  std::string resume_text;  // broadcast: {"path", "step", "state"} or empty
  if (root) {
    const Status found = [&]() -> Status {
      std::error_code ec;
      const bool created = !fs::exists(opt.out, ec);
      fs::create_directories(opt.out, ec);
      if (ec) return IoError("cannot create run directory " + opt.out + ": " + ec.message());
      ESCALE_ASSIGN_OR_RETURN(RunLock l, RunLock::Acquire(opt.out, created));
      lock.emplace(std::move(l));
      ESCALE_ASSIGN_OR_RETURN(resume_from, FindResumableCheckpoint(opt.out));
      if (resume_from && !opt.resume)
        return InvalidArgument(opt.out + " already holds checkpoints (latest: step " + std::to_string(resume_from->step) +
                               "); pass --resume to continue it or choose a new --out");
      // A branch starts from another run's checkpoint once; after its own first checkpoint it
      // resumes from its own, like any run.
      if (!resume_from && !opt.branch_from.empty()) {
        ESCALE_ASSIGN_OR_RETURN(CheckpointInfo b, VerifyCheckpoint(opt.branch_from));
        ESCALE_RETURN_IF_ERROR(StartBranchLog(opt.branch_from, opt.out));
        resume_from = b;
      }
      if (!resume_from) return Status::Ok();
      ESCALE_ASSIGN_OR_RETURN(resumed_model, ReadHfModel(resume_from->path + "/model"));
      ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(resume_from->path + "/trainer_state.json"));
      resumed_state = nlohmann::json::parse(text, nullptr, false);
      if (resumed_state.is_discarded() || !resumed_state.is_object())
        return FormatError(resume_from->path + "/trainer_state.json is not valid JSON");
      if (!resumed_state.contains("resume_key"))
        return FormatError(resume_from->path + "/trainer_state.json lacks its resume key; "
                           "resume from an earlier checkpoint (delete this one)");
      if (resumed_state["resume_key"] != ResumeKey(opt))
        return InvalidArgument("the options that fix the data order and schedule differ from the run being resumed (" +
                               resumed_state["resume_key"].dump() + "); resume with the same options");
      const int64_t saved_world = resumed_state.value("world_size", int64_t{1});
      if (saved_world != world)
        std::fprintf(stderr, "escale train: resuming a checkpoint written by %lld rank(s) with %d: the run continues "
                     "with the same global batch, but not bit-identically to an unbroken %lld-rank run\n",
                     static_cast<long long>(saved_world), world, static_cast<long long>(saved_world));
      resume_text = nlohmann::json{{"path", resume_from->path}, {"step", resume_from->step}, {"state", resumed_state}}.dump();
      return Status::Ok();
    }();
    ESCALE_RETURN_IF_ERROR(dist::BroadcastStatus(comm, found, 0));
  } else {
    ESCALE_RETURN_IF_ERROR(dist::BroadcastStatus(comm, Status::Ok(), 0));
  }
  ESCALE_RETURN_IF_ERROR(dist::BroadcastString(comm, resume_text, 0));
  if (!root && !resume_text.empty()) {
    const nlohmann::json r = nlohmann::json::parse(resume_text);
    resume_from = CheckpointInfo{r.at("path").get<std::string>(), r.at("step").get<int64_t>(), {}};
    resumed_state = r.at("state");
  }

  // Phase 3, every rank: the model, the data and the state to resume (rank 0's weights and moments
  // are broadcast below, so every replica starts from identical bits).
  std::unique_ptr<TrainModel> model;
  OptimizerState ost;
  const bool sharded = opt.zero_stage == 1 && world > 1;
  std::vector<float> m_full, v_full;  // on resume: the whole moments, read by rank 0 and broadcast
  // Per parameter: the AdamW updates its moments already had when this run began (carried through
  // growth), so that bias correction continues instead of restarting.
  std::vector<int64_t> moment_base;
  const bool carried = opt.carry_moments && !resume_from;
  const bool blended = !in.blend.empty();
  std::vector<std::optional<DataLoader>> val_templates;
  std::optional<DataBlend> train_blend;
  FaultDetector faults({100, 20, opt.spike_zscore, opt.max_skips});
  int64_t step = 0, updates = 0;
  double tokens_seen = 0;
  const Status built = [&]() -> Status {
    TensorMap start_weights = root && resume_from ? resumed_model.tensors : std::move(in.init);
    ESCALE_ASSIGN_OR_RETURN(model, TrainModel::Create(config, start_weights, {opt.micro_batch, opt.seq_len}, coef));
    start_weights.clear();
    resumed_model = HfModel();
    for (const auto& p : model->params()) {
      ost.offset.push_back(ost.total);
      ost.total += static_cast<int64_t>(p.value.size());
    }
    // ZeRO-1: rank r keeps the moments of [total*r/N, total*(r+1)/N) and updates those weights.
    ost.lo = sharded ? ost.total * rank / world : 0;
    ost.hi = sharded ? ost.total * (rank + 1) / world : ost.total;
    ost.m.assign(static_cast<size_t>(ost.hi - ost.lo), 0.0f);
    ost.v.assign(ost.m.size(), 0.0f);
    moment_base.assign(model->params().size(), 0);
    if (resume_from || carried) {
      m_full.assign(static_cast<size_t>(ost.total), 0.0f);
      v_full.assign(m_full.size(), 0.0f);
    }
    if (carried && root)
      ESCALE_RETURN_IF_ERROR(LoadCarriedMoments(opt.model_dir, model->params(), ost.offset, m_full,
                                                v_full, moment_base));
    // The data: one source (--data) or several (--data-blend), each with its own shuffled windows.
    // A single source keeps the RNG stream name it always had, so its order is unchanged.
    if (!blended) in.blend.push_back({"", 1.0, std::move(in.train), std::move(in.val)});
    std::vector<BlendSource> train_sources;
    for (auto& src : in.blend) {
      auto named = [&](const Status& st) {
        return blended ? Status(st.code(), "--data-blend source '" + src.name + "': " + st.message()) : st;
      };
      Result<DataLoader> t = DataLoader::Create(std::move(src.train), opt.seq_len, opt.micro_batch, config.vocab_size,
                                                static_cast<uint64_t>(opt.seed), true,
                                                blended ? "data/" + src.name : "data");
      if (!t.ok()) return named(t.status());
      train_sources.push_back({src.name, src.weight, std::move(t).value()});
      std::optional<DataLoader> v;
      if (!src.val.empty()) {
        Result<DataLoader> vl =
            DataLoader::Create(std::move(src.val), opt.seq_len, opt.micro_batch, config.vocab_size, 0, false);
        if (!vl.ok()) return named(vl.status());
        v.emplace(std::move(vl).value());
      }
      val_templates.push_back(std::move(v));
    }
    ESCALE_ASSIGN_OR_RETURN(DataBlend b, DataBlend::Create(std::move(train_sources)));
    train_blend.emplace(std::move(b));
    if (!resume_from) return Status::Ok();
    if (resumed_state.contains("moment_steps_at_start")) {
      const nlohmann::json& base = resumed_state["moment_steps_at_start"];
      auto ps = model->params();
      for (size_t i = 0; i < ps.size(); ++i) {
        const nlohmann::json e =
            base.is_object() ? base.value(ps[i].name, nlohmann::json(0)) : nlohmann::json();
        if (!e.is_number_integer() || e.get<int64_t>() < 0)
          return FormatError(resume_from->path +
                             "/trainer_state.json: moment_steps_at_start is damaged");
        moment_base[i] = e.get<int64_t>();
      }
    }
    // A damaged state file is a format error with a hint, never an exception escaping.
    std::vector<DataCursor> cursors;
    try {
      step = resumed_state.at("step").get<int64_t>();
      updates = resumed_state.at("updates").get<int64_t>();
      tokens_seen = resumed_state.at("tokens_seen").get<double>();
      if (blended) {
        const nlohmann::json& ds = resumed_state.at("data_sources");
        for (size_t i = 0; i < train_blend->size(); ++i) cursors.push_back(CursorFrom(ds.at(train_blend->name(i))));
      } else {
        cursors.push_back(CursorFrom(resumed_state.at("data")));
      }
      const nlohmann::json& f = resumed_state.at("faults");
      faults.Restore(f.at("history").get<std::deque<double>>(), f.at("consecutive").get<int64_t>(),
                     f.at("total").get<int64_t>());
    } catch (const nlohmann::json::exception&) {
      return FormatError(resume_from->path + "/trainer_state.json lacks the step, data cursor or fault state; "
                         "resume from an earlier checkpoint (delete this one)");
    }
    if (step != resume_from->step || updates < 0 || updates > step)
      return FormatError(resume_from->path + "/trainer_state.json disagrees with its manifest");
    ESCALE_RETURN_IF_ERROR(train_blend->Restore(cursors));
    if (!root) return Status::Ok();
    auto params = model->params();
    ESCALE_ASSIGN_OR_RETURN(SafetensorsFile of, SafetensorsFile::Open(resume_from->path + "/optimizer.safetensors"));
    for (size_t i = 0; i < params.size(); ++i) {
      for (int which = 0; which < 2; ++which) {
        const std::string name = (which == 0 ? "m." : "v.") + params[i].name;
        ESCALE_ASSIGN_OR_RETURN(Tensor t, of.Get(name));
        float* dst = (which == 0 ? m_full : v_full).data() + ost.offset[i];
        if (t.dtype() != DType::kF32 || static_cast<size_t>(t.numel()) != params[i].value.size())
          return FormatError("optimizer state " + name + " has the wrong dtype or size");
        std::memcpy(dst, t.bytes(), params[i].value.size() * sizeof(float));
      }
    }
    return Status::Ok();
  }();
  ESCALE_RETURN_IF_ERROR(dist::AgreeOnStatus(comm, built));
  DataBlend& train = *train_blend;
  auto params = model->params();
  if (const std::string bad = FirstNonFinite(params); !bad.empty())
    return InvalidArgument(
        "the starting weights are not finite (" + bad + " is NaN or infinite): " +
        (resume_from ? "checkpoint " + resume_from->path : std::string("the model")) +
        " cannot be trained; start from an earlier checkpoint or the original model");
  const std::vector<std::span<float>> grad_runs = ContiguousRuns(params, true);
  if (world > 1)
    for (std::span<float> run : ContiguousRuns(params, false)) ESCALE_RETURN_IF_ERROR(BroadcastFloats(comm, run));
  if (carried && world > 1) ESCALE_RETURN_IF_ERROR(BroadcastInts(comm, moment_base));
  if (resume_from || carried) {
    if (world > 1) {
      ESCALE_RETURN_IF_ERROR(BroadcastFloats(comm, m_full));
      ESCALE_RETURN_IF_ERROR(BroadcastFloats(comm, v_full));
    }
    std::copy(m_full.begin() + ost.lo, m_full.begin() + ost.hi, ost.m.begin());
    std::copy(v_full.begin() + ost.lo, v_full.begin() + ost.hi, ost.v.begin());
    m_full = std::vector<float>();
    v_full = std::vector<float>();
  }
  // ZeRO-1 moves the gradient and the weights as one flat buffer each, split at the shard bounds.
  std::vector<int> shard_counts, shard_displs;
  std::span<float> shard_grad;  // the reduce-scatter leaves this rank's summed slice at the buffer's start
  std::span<float> flat_grad, flat_value;
  if (sharded) {
    const std::vector<std::span<float>> value_runs = ContiguousRuns(params, false);
    if (grad_runs.size() != 1 || value_runs.size() != 1)
      return InternalError("--zero-stage 1 needs the engine's weights and gradients in one flat buffer each");
    flat_grad = grad_runs[0];
    flat_value = value_runs[0];
    for (int r = 0; r < world; ++r) {
      const int64_t lo = ost.total * r / world, hi = ost.total * (r + 1) / world;
      if (hi - lo > INT_MAX) return Unsupported("--zero-stage 1: a shard exceeds 2^31 weights; use more ranks");
      shard_counts.push_back(static_cast<int>(hi - lo));
      shard_displs.push_back(static_cast<int>(lo));
    }
    shard_grad = flat_grad.first(ost.m.size());
  }

  // Rank 0 alone writes the metrics log, checkpoints and progress.
  std::optional<MetricsLog> metrics;
  {
    Status opened = Status::Ok();
    if (root) {
      Result<MetricsLog> m = MetricsLog::Open(opt.out + "/metrics.jsonl", resume_from ? step : -1);
      if (m.ok()) metrics.emplace(std::move(m).value());
      opened = m.status();
    }
    ESCALE_RETURN_IF_ERROR(dist::BroadcastStatus(comm, opened, 0));
  }
  const double flops_per_token = TrainingFlopsPerToken(config, opt.seq_len).total();
  std::vector<int32_t> tokens(static_cast<size_t>(opt.tokens_per_micro_batch()));
  std::vector<int32_t> targets(tokens.size());

  // Validation batches are shared round-robin among the ranks and their losses summed.
  std::vector<double> val_sums(val_templates.size());
  auto evaluate = [&]() -> Result<EvalResult> {
    EvalResult r;
    r.per_source.assign(val_templates.size(), -1.0);
    std::fill(val_sums.begin(), val_sums.end(), 0.0);
    const Status local = [&]() -> Status {
      for (size_t i = 0; i < val_templates.size(); ++i) {
        if (!val_templates[i]) continue;
        DataLoader val = *val_templates[i];  // always the same first windows: comparable across evals
        const ValidationPlan plan = PlanValidation(val.windows(), opt.micro_batch, opt.eval_batches);
        for (int64_t b = 0; b < plan.batches; ++b) {
          const int64_t rows = plan.Rows(b);
          if (!EvaluatesBatch(b, world, rank)) {
            for (int64_t w = 0; w < rows; ++w) ESCALE_RETURN_IF_ERROR(val.NextWindow(tokens.data(), targets.data()));
            continue;
          }
          if (rows == opt.micro_batch) {
            ESCALE_RETURN_IF_ERROR(val.Next(tokens, targets));
          } else {  // the split's last windows: the rest of the batch is padding that is not scored
            std::fill(tokens.begin(), tokens.end(), 0);
            std::fill(targets.begin(), targets.end(), -1);
            for (int64_t w = 0; w < rows; ++w)
              ESCALE_RETURN_IF_ERROR(val.NextWindow(tokens.data() + w * opt.seq_len, targets.data() + w * opt.seq_len));
          }
          ESCALE_ASSIGN_OR_RETURN(LossTerms t, model->Evaluate(tokens, targets));
          val_sums[i] += t.ce / (static_cast<double>(plan.windows) / static_cast<double>(rows));
        }
      }
      return Status::Ok();
    }();
    ESCALE_RETURN_IF_ERROR(dist::AgreeOnStatus(comm, local));
    ESCALE_RETURN_IF_ERROR(comm.AllReduceSum(std::span<double>(val_sums)));
    double weighted = 0, weights = 0;
    for (size_t i = 0; i < val_templates.size(); ++i) {
      if (!val_templates[i]) continue;
      r.per_source[i] = val_sums[i];
      weighted += train.weight(i) * r.per_source[i];
      weights += train.weight(i);
    }
    if (weights > 0) r.blended = weighted / weights;
    return r;
  };
  auto eval_event = [&](const EvalResult& r) {
    nlohmann::json e = {{"event", "eval"}, {"step", step}, {"val_loss", r.blended}};
    if (blended) {
      nlohmann::json by = nlohmann::json::object();
      for (size_t i = 0; i < train.size(); ++i)
        if (r.per_source[i] >= 0) by[train.name(i)] = r.per_source[i];
      e["val_loss_by_source"] = by;
    }
    return e;
  };
  // Tokens and epochs served per source so far: the effective blend proportions.
  auto served_json = [&]() {
    nlohmann::json d = nlohmann::json::object();
    for (size_t i = 0; i < train.size(); ++i)
      d[train.name(i)] = {{"tokens", train.served(i) * opt.seq_len}, {"epochs", train.epochs(i)}};
    return d;
  };
  auto state_json = [&]() {
    nlohmann::json j{{"step", step},
                     {"updates", updates},
                     {"tokens_seen", tokens_seen},
                     {"faults",
                      {{"history", faults.history()},
                       {"consecutive", faults.consecutive_skips()},
                       {"total", faults.total_skips()}}},
                     {"resume_key", ResumeKey(opt)},
                     {"world_size", world},
                     {"description", in.description}};
    if (std::any_of(moment_base.begin(), moment_base.end(), [](int64_t b) { return b != 0; })) {
      nlohmann::json b = nlohmann::json::object();
      for (size_t i = 0; i < params.size(); ++i) b[params[i].name] = moment_base[i];
      j["moment_steps_at_start"] = b;
    }
    if (!blended) {
      j["data"] = CursorJson(train.cursors()[0]);
    } else {
      j["data_sources"] = nlohmann::json::object();
      for (size_t i = 0; i < train.size(); ++i)
        j["data_sources"][train.name(i)] = CursorJson(train.cursors()[i]);
    }
    return j;
  };

  TrainSummary summary;
  summary.start_step = step;
  const int64_t updates_at_start = updates;
  StopSignals signals;
  ESCALE_ASSIGN_OR_RETURN(const EvalResult first_eval, evaluate());
  EvalResult last_eval = first_eval;
  summary.first_val_loss = first_eval.blended;
  summary.last_val_loss = summary.first_val_loss;
  // A resumed run's log already holds the evaluation at its step (if one was due there).
  {
    Status written = Status::Ok();
    if (summary.first_val_loss >= 0 && !resume_from && root) written = metrics->Append(eval_event(first_eval));
    ESCALE_RETURN_IF_ERROR(dist::BroadcastStatus(comm, written, 0));
  }

  Progress progress("train", static_cast<uint64_t>(total_steps), "steps", root);
  progress.StartAt(static_cast<uint64_t>(step));
  double step_seconds_sum = 0;
  int64_t timed_steps = 0;
  std::string last_ckpt = resume_from ? resume_from->path : "";
  // Summed over the ranks each step: the loss terms (each already divided by the step's
  // micro-batches) and the stop requests, so every rank stops at the same step.
  enum { kTotal, kCe, kAux, kRouterMaxZ, kRouterZ, kOutputZ, kOutputMaxZ, kStop, kGradSq, kReduced };
  std::array<double, kReduced> reduced{};
  while (step < total_steps) {
    const auto t0 = std::chrono::steady_clock::now();
    model->ZeroGrads();
    reduced.fill(0.0);
    const Status computed = [&]() -> Status {
      for (int64_t a = 0; a < accum; ++a) {
        ESCALE_RETURN_IF_ERROR(train.Next(tokens, targets));  // every rank walks the whole global batch
        if (!share.contains(a)) continue;
        ESCALE_ASSIGN_OR_RETURN(LossTerms t, model->ForwardBackward(tokens, targets, 1.0f / static_cast<float>(accum)));
        reduced[kTotal] += t.total / accum;
        reduced[kCe] += t.ce / accum;
        reduced[kAux] += t.aux / accum;
        reduced[kRouterMaxZ] += t.router_max_z / accum;
        reduced[kRouterZ] += t.router_z / accum;
        reduced[kOutputZ] += t.output_z / accum;
        reduced[kOutputMaxZ] += t.output_max_z / accum;
      }
      return Status::Ok();
    }();
    ESCALE_RETURN_IF_ERROR(dist::AgreeOnStatus(comm, computed));
    reduced[kStop] = g_stop_signal.load() != 0 ? 1.0 : 0.0;
    // Poisoned on rank 0 alone: the sum carries the NaN to every rank, which must all skip.
    if (nan_steps.count(step) && root) params[0].grad[0] = std::numeric_limits<float>::quiet_NaN();
    const auto t_comm = std::chrono::steady_clock::now();
    double sq = 0;
    if (sharded) {
      // Each rank receives the summed gradient of its shard; the norm is summed from the shards.
      ESCALE_RETURN_IF_ERROR(comm.ReduceScatterSum(flat_grad, shard_counts));
      reduced[kGradSq] = SumOfSquares(shard_grad);
      ESCALE_RETURN_IF_ERROR(comm.AllReduceSum(std::span<double>(reduced)));
      sq = reduced[kGradSq];
    } else if (world > 1) {
      ESCALE_RETURN_IF_ERROR(comm.AllReduceSum(std::span<double>(reduced)));
      for (std::span<float> run : grad_runs) ESCALE_RETURN_IF_ERROR(comm.AllReduceSum(run));
    }
    // Includes waiting for the slowest rank to finish its share.
    const double comm_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_comm).count();
    LossTerms sum{};
    sum.total = reduced[kTotal];
    sum.ce = reduced[kCe];
    sum.aux = reduced[kAux];
    sum.router_max_z = reduced[kRouterMaxZ];
    sum.router_z = reduced[kRouterZ];
    sum.output_z = reduced[kOutputZ];
    sum.output_max_z = reduced[kOutputMaxZ];
    // From here on every rank holds the same numbers, so the verdict and the update agree.
    double judged_loss = sum.total;
    if (spike_steps.count(step)) judged_loss *= 10.0;
    if (!sharded)
      for (const auto& p : params) sq += SumOfSquares(p.grad);
    const double grad_norm = std::sqrt(sq);
    const StepVerdict verdict = faults.Judge(judged_loss, grad_norm);
    faults.Record(verdict, judged_loss);
    const double lr = LearningRate(sched, step);
    if (verdict == StepVerdict::kAccept) {
      ++updates;
      const float clip = static_cast<float>(ClipFactor(grad_norm, opt.clip));
      if (sharded && clip != 1.0f) Scale(shard_grad, clip);
      // Each parameter's part inside [lo, hi): all of every parameter without ZeRO-1.
      for (size_t i = 0; i < params.size(); ++i) {
        const int64_t off = ost.offset[i], n = static_cast<int64_t>(params[i].value.size());
        const int64_t a = std::max(off, ost.lo), b = std::min(off + n, ost.hi);
        if (a >= b) continue;
        const std::span<float> grad = sharded ? shard_grad.subspan(a - ost.lo, b - a)
                                              : params[i].grad.subspan(a - off, b - a);
        if (!sharded && clip != 1.0f) Scale(grad, clip);
        AdamWUpdate(adamw, updates + moment_base[i], lr, params[i].decay,
                    params[i].value.subspan(a - off, b - a), grad,
                    std::span<float>(ost.m).subspan(a - ost.lo, b - a),
                    std::span<float>(ost.v).subspan(a - ost.lo, b - a));
      }
      if (sharded) ESCALE_RETURN_IF_ERROR(comm.AllGather(flat_value, shard_counts, shard_displs));
    }
    if (drift_steps.count(step) && world > 1 && rank == world - 1) params[0].value[0] += 1e-3f;
    ++step;
    tokens_seen += static_cast<double>(tokens_per_step);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    step_seconds_sum += dt;
    ++timed_steps;
    const double tps = static_cast<double>(tokens_per_step) / dt;  // the global batch: tokens of all ranks
    summary.last_train_loss = sum.total;
    Status written = Status::Ok();  // rank 0's writes this step, broadcast below
    if (root) {
      nlohmann::json rec = {{"step", step},         {"loss", sum.total},      {"ce", sum.ce},
                            {"lr", lr},             {"grad_norm", grad_norm}, {"tokens", tokens_seen},
                            {"tokens_per_s", tps},  {"step_s", dt}};
      if (world > 1) {
        rec["world_size"] = world;
        rec["allreduce_s"] = comm_s;
      }
      if (blended) rec["data"] = served_json();
      if (in.sgemm_gflops > 0) rec["mfu"] = flops_per_token * tps / (in.sgemm_gflops * 1e9 * world);
      if (config.is_moe()) {
        rec["aux"] = sum.aux;
        rec["router_max_z"] = sum.router_max_z;
        rec["router_z"] = sum.router_z;
        // Expert load of rank 0's last micro-batch (with one rank: the step's last).
        nlohmann::json layers = nlohmann::json::array();
        for (const auto& s : model->moe_stats()) {
          double mean = 0, var = 0;
          int64_t lo = INT64_MAX, hi = 0, total = 0;
          for (int64_t c : s.tokens_per_expert) {
            mean += static_cast<double>(c);
            lo = std::min(lo, c);
            hi = std::max(hi, c);
            total += c;
          }
          mean /= static_cast<double>(s.tokens_per_expert.size());
          for (int64_t c : s.tokens_per_expert) var += (static_cast<double>(c) - mean) * (static_cast<double>(c) - mean);
          var /= static_cast<double>(s.tokens_per_expert.size());
          layers.push_back({{"layer", s.layer}, {"min", lo}, {"max", hi}, {"cv", mean > 0 ? std::sqrt(var) / mean : 0.0},
                            {"dropped", total > 0 ? static_cast<double>(s.dropped) / static_cast<double>(total) : 0.0},
                            {"entropy", s.router_entropy}});
        }
        rec["expert_load"] = layers;
      }
      if (coef.output_z > 0) rec["output_z"] = sum.output_z;
      if (coef.output_max_z > 0) rec["output_max_z"] = sum.output_max_z;
      if (verdict != StepVerdict::kAccept) {
        rec["skipped"] = std::string(StepVerdictName(verdict));
        std::fprintf(stderr, "\nescale train: step %lld skipped (%s, loss %g, grad norm %g)\n",
                     static_cast<long long>(step), std::string(StepVerdictName(verdict)).c_str(), judged_loss, grad_norm);
      }
      written = metrics->Append(rec);
    }
    if (faults.TooManySkips())
      return Status(ErrorCode::kInternal,
                    std::to_string(faults.consecutive_skips()) + " steps in a row were skipped (last: " +
                        std::string(StepVerdictName(verdict)) + " at step " + std::to_string(step) +
                        "); stopping. Last good checkpoint: " + (last_ckpt.empty() ? "none" : last_ckpt) +
                        " (lower --lr or check the data, then --resume)");

    const bool stop = reduced[kStop] > 0;
    const bool last = step == total_steps;
    if ((opt.eval_every > 0 && step % opt.eval_every == 0) || last) {
      ESCALE_ASSIGN_OR_RETURN(last_eval, evaluate());
      summary.last_val_loss = last_eval.blended;
      if (summary.last_val_loss >= 0 && root && written.ok()) written = metrics->Append(eval_event(last_eval));
    }
    if ((opt.save_every > 0 && step % opt.save_every == 0) || keep_steps.count(step) || last || stop) {
      ESCALE_RETURN_IF_ERROR(CheckReplicasAgree(comm, params, step));
      // Never save a diverged run as progress: every rank holds the same weights, so all agree.
      if (const std::string bad = FirstNonFinite(params); !bad.empty())
        return InternalError(
            "training diverged: after step " + std::to_string(step) +
            " the weights are not finite (" + bad + "); nothing saved. Last good checkpoint: " +
            (last_ckpt.empty() ? "none" : last_ckpt) + " (lower --lr, then --resume)");
      if (updates == updates_at_start)
        return InternalError("no step of this run was accepted (" +
                             std::to_string(step - summary.start_step) +
                             " skipped, last: " + std::string(StepVerdictName(verdict)) +
                             "); nothing saved. Lower --lr or check the model and data");
      if (sharded) {  // rank 0 collects the moments' shards (only for the save)
        if (root) {
          m_full.resize(static_cast<size_t>(ost.total));
          v_full.resize(static_cast<size_t>(ost.total));
        }
        ESCALE_RETURN_IF_ERROR(comm.Gather(ost.m, m_full, shard_counts, shard_displs, 0));
        ESCALE_RETURN_IF_ERROR(comm.Gather(ost.v, v_full, shard_counts, shard_displs, 0));
      }
      if (root && written.ok())
        written = SaveCheckpoint(opt.out, step, *model, sharded ? m_full : ost.m, sharded ? v_full : ost.v, ost.offset,
                                 state_json(), in, opt.keep_last, keep_steps);
      if (sharded) {
        m_full = std::vector<float>();
        v_full = std::vector<float>();
      }
      last_ckpt = CheckpointsDir(opt.out) + "/" + CheckpointName(step);
    }
    // The other ranks wait here for rank 0's writes (and stop with it if they failed).
    ESCALE_RETURN_IF_ERROR(dist::BroadcastStatus(comm, written, 0));
    char detail[160];
    std::snprintf(detail, sizeof detail, "loss %.4f lr %.2e %.0f tok/s", sum.total, lr, tps);
    progress.Update(static_cast<uint64_t>(step), detail);
    if (stop) {
      summary.interrupted = true;
      if (root)
        std::fprintf(stderr, "\nescale train: stopped by signal at step %lld; saved %s (continue with --resume)\n",
                     static_cast<long long>(step), last_ckpt.c_str());
      break;
    }
  }
  progress.Finish();
  summary.steps_done = step;
  summary.skipped_steps = faults.total_skips();
  summary.tokens_per_second = timed_steps > 0 ? static_cast<double>(tokens_per_step) * timed_steps / step_seconds_sum : 0;
  summary.last_checkpoint = last_ckpt;
  for (size_t i = 0; i < train.size(); ++i)
    summary.sources.push_back({train.name(i), train.weight(i),
                               static_cast<double>(train.served(i) * opt.seq_len), train.epochs(i),
                               first_eval.per_source[i], last_eval.per_source[i]});
  return summary;
}

}  // namespace escale
