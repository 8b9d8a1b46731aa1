#include "train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/atomic_output.h"
#include "core/progress.h"
#include "model/layout.h"

namespace escale {
namespace fs = std::filesystem;

namespace {

// Expert load of the last micro-batch, per MoE layer: spread, drops and router entropy.
nlohmann::json ExpertLoadJson(const std::vector<MoeLayerStats>& stats) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& s : stats) {
    double mean = 0, var = 0;
    int64_t lo = INT64_MAX, hi = 0, total = 0;
    for (int64_t c : s.tokens_per_expert) {
      mean += static_cast<double>(c);
      lo = std::min(lo, c);
      hi = std::max(hi, c);
      total += c;
    }
    mean /= static_cast<double>(s.tokens_per_expert.size());
    for (int64_t c : s.tokens_per_expert)
      var += (static_cast<double>(c) - mean) * (static_cast<double>(c) - mean);
    var /= static_cast<double>(s.tokens_per_expert.size());
    layers.push_back(
        {{"layer", s.layer},
         {"min", lo},
         {"max", hi},
         {"cv", mean > 0 ? std::sqrt(var) / mean : 0.0},
         {"dropped", total > 0 ? static_cast<double>(s.dropped) / static_cast<double>(total) : 0.0},
         {"entropy", s.router_entropy}});
  }
  return layers;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

Trainer::Trainer(const TrainOptions& opt, TrainerInputs inputs)
    : opt_(opt), in_(std::move(inputs)), faults_({100, 20, opt.spike_zscore, opt.max_skips}) {
  comm_ = in_.comm != nullptr ? in_.comm : &single_process_;
  world_ = comm_->size();
  rank_ = comm_->rank();
  root_ = rank_ == 0;
  config_ = in_.config;
}

Trainer::~Trainer() = default;

Result<std::unique_ptr<Trainer>> Trainer::Prepare(const TrainOptions& opt, TrainerInputs inputs) {
  std::unique_ptr<Trainer> t(new Trainer(opt, std::move(inputs)));
  ESCALE_RETURN_IF_ERROR(dist::AgreeOnStatus(*t->comm_, t->ResolveOptions()));
  t->Announce();
  ESCALE_RETURN_IF_ERROR(t->OpenRunDirectory());
  ESCALE_RETURN_IF_ERROR(dist::AgreeOnStatus(*t->comm_, t->Build()));
  ESCALE_RETURN_IF_ERROR(t->ReplicateStart());
  ESCALE_RETURN_IF_ERROR(t->PlanSharding());
  ESCALE_RETURN_IF_ERROR(t->OpenMetrics());
  return t;
}

// The same on every rank: options, schedule, the share of each step.
Status Trainer::ResolveOptions() {
  ESCALE_RETURN_IF_ERROR(opt_.Validate());
  ESCALE_ASSIGN_OR_RETURN(const ScheduleKind kind, ParseScheduleKind(opt_.schedule));
  ESCALE_ASSIGN_OR_RETURN(FaultInjection injection, FaultInjection::FromOptions(opt_));
  if (!injection.empty()) inject_.emplace(std::move(injection));
  ESCALE_ASSIGN_OR_RETURN(keep_steps_, ParseStepList(opt_.keep_steps, "--keep-steps"));
  if (!config_.is_moe() && (opt_.capacity_factor > 0 || !opt_.router.empty()))
    return InvalidArgument(
        "--capacity-factor and --router apply to MoE models; this model is dense "
        "(upcycle it with --init-from DENSE --scale-out E,K)");
  if (config_.is_moe()) {
    if (opt_.capacity_factor > 0) config_.moe.capacity_factor = opt_.capacity_factor;
    if (opt_.router == "st") config_.moe.router = RouterType::kSt;
    if (opt_.router == "mixtral") config_.moe.router = RouterType::kMixtral;
    if (config_.router_untrainable())
      return InvalidArgument(
          "top-1 with mixtral routing gives the router no gradient; use --router st or k >= 2");
  }
  ESCALE_RETURN_IF_ERROR(config_.Validate());
  accum_ = opt_.accumulation_steps();
  tokens_per_step_ = opt_.tokens_per_micro_batch() * accum_;
  total_steps_ = opt_.steps > 0 ? opt_.steps
                                : static_cast<int64_t>(std::ceil(
                                      opt_.token_budget / static_cast<double>(tokens_per_step_)));
  sched_ = {kind,         opt_.lr,
            opt_.min_lr,  std::min(opt_.warmup, total_steps_),
            total_steps_, opt_.wsd_decay_fraction};
  ESCALE_RETURN_IF_ERROR(sched_.Validate());
  ESCALE_ASSIGN_OR_RETURN(share_,
                          ShareOfStep(accum_, opt_.seq_len, opt_.micro_batch, world_, rank_));
  adamw_ = {opt_.beta1, opt_.beta2, opt_.eps, opt_.weight_decay};
  coef_ = {opt_.aux_loss, opt_.router_max_z, opt_.router_z, opt_.output_z, opt_.output_max_z};
  return Status::Ok();
}

void Trainer::Announce() const {
  // Checkpoints do not repeat it; an online upcycle has no other command that would say it.
  if (const std::string warning = root_ ? RopeScalingWarning(config_) : ""; !warning.empty())
    std::fprintf(stderr, "escale train: warning: the checkpoints of this run are %s\n",
                 warning.c_str());
  // The engine parallelises with OpenMP (BLAS calls run single-threaded inside its team).
  if (opt_.threads > 0) omp_set_num_threads(static_cast<int>(opt_.threads));
  if (world_ > 1 && root_)
    std::fprintf(stderr,
                 "escale train: %d ranks (%s), %d threads each, %lld micro-batch(es) per rank per "
                 "step\n",
                 world_, comm_->name().c_str(), omp_get_max_threads(),
                 static_cast<long long>(share_.count));
}

// Rank 0 alone: the run directory, its lock, and the checkpoint to resume from (read here and
// broadcast, so the other ranks need not see the run directory at all).
Status Trainer::OpenRunDirectory() {
  ESCALE_RETURN_IF_ERROR(
      dist::BroadcastStatus(*comm_, root_ ? FindResumePoint() : Status::Ok(), 0));
  std::string resume_text;  // {"path", "step", "state"} or empty
  if (root_ && resume_from_)
    resume_text =
        nlohmann::json{
            {"path", resume_from_->path}, {"step", resume_from_->step}, {"state", resumed_state_}}
            .dump();
  ESCALE_RETURN_IF_ERROR(dist::BroadcastString(*comm_, resume_text, 0));
  if (!root_ && !resume_text.empty()) {
    const nlohmann::json r = nlohmann::json::parse(resume_text);
    resume_from_ = CheckpointInfo{r.at("path").get<std::string>(), r.at("step").get<int64_t>(), {}};
    resumed_state_ = r.at("state");
  }
  return Status::Ok();
}

Status Trainer::FindResumePoint() {
  std::error_code ec;
  const bool created = !fs::exists(opt_.out, ec);
  fs::create_directories(opt_.out, ec);
  if (ec) return IoError("cannot create run directory " + opt_.out + ": " + ec.message());
  ESCALE_ASSIGN_OR_RETURN(RunLock l, RunLock::Acquire(opt_.out, created));
  lock_.emplace(std::move(l));
  ESCALE_ASSIGN_OR_RETURN(resume_from_, FindResumableCheckpoint(opt_.out));
  if (resume_from_ && !opt_.resume)
    return InvalidArgument(opt_.out + " already holds checkpoints (latest: step " +
                           std::to_string(resume_from_->step) +
                           "); pass --resume to continue it or choose a new --out");
  // A branch starts from another run's checkpoint once; after its own first checkpoint it
  // resumes from its own, like any run.
  if (!resume_from_ && !opt_.branch_from.empty()) {
    ESCALE_ASSIGN_OR_RETURN(CheckpointInfo b, VerifyCheckpoint(opt_.branch_from));
    ESCALE_RETURN_IF_ERROR(StartBranchLog(opt_.branch_from, opt_.out));
    resume_from_ = b;
  }
  if (!resume_from_) return Status::Ok();
  ESCALE_ASSIGN_OR_RETURN(resumed_model_, ReadHfModel(resume_from_->path + "/model"));
  ESCALE_ASSIGN_OR_RETURN(std::string text,
                          ReadSmallFile(resume_from_->path + "/trainer_state.json"));
  resumed_state_ = nlohmann::json::parse(text, nullptr, false);
  if (resumed_state_.is_discarded() || !resumed_state_.is_object())
    return FormatError(resume_from_->path + "/trainer_state.json is not valid JSON");
  if (!resumed_state_.contains("resume_key"))
    return FormatError(resume_from_->path +
                       "/trainer_state.json lacks its resume key; "
                       "resume from an earlier checkpoint (delete this one)");
  if (resumed_state_["resume_key"] != ResumeKey(opt_))
    return InvalidArgument(
        "the options that fix the data order and schedule differ from the run being resumed (" +
        resumed_state_["resume_key"].dump() + "); resume with the same options");
  const int64_t saved_world = resumed_state_.value("world_size", int64_t{1});
  if (saved_world != world_)
    std::fprintf(stderr,
                 "escale train: resuming a checkpoint written by %lld rank(s) with %d: the run "
                 "continues with the same global batch, but not bit-identically to an unbroken "
                 "%lld-rank run\n",
                 static_cast<long long>(saved_world), world_, static_cast<long long>(saved_world));
  return Status::Ok();
}

// Every rank: the model, the data and the state to resume (rank 0's weights and moments are
// broadcast afterwards, so every replica starts from identical bits).
Status Trainer::Build() {
  sharded_ = opt_.zero_stage == 1 && world_ > 1;
  carried_ = opt_.carry_moments && !resume_from_;
  blended_ = !in_.blend.empty();
  ESCALE_RETURN_IF_ERROR(BuildModel());
  ESCALE_RETURN_IF_ERROR(BuildData());
  return RestoreProgress();
}

Status Trainer::BuildModel() {
  TensorMap start_weights = root_ && resume_from_ ? resumed_model_.tensors : std::move(in_.init);
  ESCALE_ASSIGN_OR_RETURN(
      model_, TrainModel::Create(config_, start_weights, {opt_.micro_batch, opt_.seq_len}, coef_));
  start_weights.clear();
  resumed_model_ = HfModel();
  params_ = model_->params();
  for (const auto& p : params_) {
    ost_.offset.push_back(ost_.total);
    ost_.total += static_cast<int64_t>(p.value.size());
  }
  // ZeRO-1: rank r keeps the moments of [total*r/N, total*(r+1)/N) and updates those weights.
  ost_.lo = sharded_ ? ost_.total * rank_ / world_ : 0;
  ost_.hi = sharded_ ? ost_.total * (rank_ + 1) / world_ : ost_.total;
  ost_.m.assign(static_cast<size_t>(ost_.hi - ost_.lo), 0.0f);
  ost_.v.assign(ost_.m.size(), 0.0f);
  moment_base_.assign(params_.size(), 0);
  if (resume_from_ || carried_) {
    m_full_.assign(static_cast<size_t>(ost_.total), 0.0f);
    v_full_.assign(m_full_.size(), 0.0f);
  }
  if (carried_ && root_)
    ESCALE_RETURN_IF_ERROR(
        LoadCarriedMoments(opt_.model_dir, params_, ost_.offset, m_full_, v_full_, moment_base_));
  return Status::Ok();
}

// One source (--data) or several (--data-blend), each with its own shuffled windows. A single
// source keeps the RNG stream name it always had, so its order is unchanged.
Status Trainer::BuildData() {
  if (!blended_) in_.blend.push_back({"", 1.0, std::move(in_.train), std::move(in_.val)});
  std::vector<BlendSource> train_sources;
  for (auto& src : in_.blend) {
    auto named = [&](const Status& st) {
      return blended_ ? Status(st.code(), "--data-blend source '" + src.name + "': " + st.message())
                      : st;
    };
    Result<DataLoader> t = DataLoader::Create(std::move(src.train), opt_.seq_len, opt_.micro_batch,
                                              config_.vocab_size, static_cast<uint64_t>(opt_.seed),
                                              true, blended_ ? "data/" + src.name : "data");
    if (!t.ok()) return named(t.status());
    train_sources.push_back({src.name, src.weight, std::move(t).value()});
    std::optional<DataLoader> v;
    if (!src.val.empty()) {
      Result<DataLoader> vl = DataLoader::Create(std::move(src.val), opt_.seq_len, opt_.micro_batch,
                                                 config_.vocab_size, 0, false);
      if (!vl.ok()) return named(vl.status());
      v.emplace(std::move(vl).value());
    }
    val_templates_.push_back(std::move(v));
  }
  ESCALE_ASSIGN_OR_RETURN(DataBlend b, DataBlend::Create(std::move(train_sources)));
  train_.emplace(std::move(b));
  return Status::Ok();
}

// The step, data cursors, fault history and moments of the checkpoint being resumed.
Status Trainer::RestoreProgress() {
  if (!resume_from_) return Status::Ok();
  const std::string state_file = resume_from_->path + "/trainer_state.json";
  if (resumed_state_.contains("moment_steps_at_start")) {
    const nlohmann::json& base = resumed_state_["moment_steps_at_start"];
    for (size_t i = 0; i < params_.size(); ++i) {
      const nlohmann::json e =
          base.is_object() ? base.value(params_[i].name, nlohmann::json(0)) : nlohmann::json();
      if (!e.is_number_integer() || e.get<int64_t>() < 0)
        return FormatError(state_file + ": moment_steps_at_start is damaged");
      moment_base_[i] = e.get<int64_t>();
    }
  }
  // A damaged state file is a format error with a hint, never an exception escaping.
  std::vector<DataCursor> cursors;
  try {
    step_ = resumed_state_.at("step").get<int64_t>();
    updates_ = resumed_state_.at("updates").get<int64_t>();
    tokens_seen_ = resumed_state_.at("tokens_seen").get<double>();
    if (blended_) {
      const nlohmann::json& ds = resumed_state_.at("data_sources");
      for (size_t i = 0; i < train_->size(); ++i)
        cursors.push_back(CursorFrom(ds.at(train_->name(i))));
    } else {
      cursors.push_back(CursorFrom(resumed_state_.at("data")));
    }
    const nlohmann::json& f = resumed_state_.at("faults");
    faults_.Restore(f.at("history").get<std::deque<double>>(), f.at("consecutive").get<int64_t>(),
                    f.at("total").get<int64_t>());
  } catch (const nlohmann::json::exception&) {
    return FormatError(state_file +
                       " lacks the step, data cursor or fault state; "
                       "resume from an earlier checkpoint (delete this one)");
  }
  if (step_ != resume_from_->step || updates_ < 0 || updates_ > step_)
    return FormatError(state_file + " disagrees with its manifest");
  ESCALE_RETURN_IF_ERROR(train_->Restore(cursors));
  if (!root_) return Status::Ok();
  return ReadCheckpointOptimizer(resume_from_->path, params_, ost_.offset, m_full_, v_full_);
}

// Rank 0's weights and moments to every rank; then each keeps its shard of the moments.
Status Trainer::ReplicateStart() {
  grad_runs_ = ContiguousRuns(params_, true);
  if (world_ > 1)
    for (std::span<float> run : ContiguousRuns(params_, false))
      ESCALE_RETURN_IF_ERROR(BroadcastFloats(*comm_, run));
  // Checked on the replicated weights, so that every rank gives the same answer.
  if (const std::string bad = FirstNonFinite(params_); !bad.empty())
    return InvalidArgument(
        "the starting weights are not finite (" + bad + " is NaN or infinite): " +
        (resume_from_ ? "checkpoint " + resume_from_->path : std::string("the model")) +
        " cannot be trained; start from an earlier checkpoint or the original model");
  if (carried_ && world_ > 1) ESCALE_RETURN_IF_ERROR(BroadcastInts(*comm_, moment_base_));
  if (resume_from_ || carried_) {
    if (world_ > 1) {
      ESCALE_RETURN_IF_ERROR(BroadcastFloats(*comm_, m_full_));
      ESCALE_RETURN_IF_ERROR(BroadcastFloats(*comm_, v_full_));
    }
    std::copy(m_full_.begin() + ost_.lo, m_full_.begin() + ost_.hi, ost_.m.begin());
    std::copy(v_full_.begin() + ost_.lo, v_full_.begin() + ost_.hi, ost_.v.begin());
    m_full_ = std::vector<float>();
    v_full_ = std::vector<float>();
  }
  return Status::Ok();
}

Status Trainer::PlanSharding() {
  if (!sharded_) return Status::Ok();
  const std::vector<std::span<float>> value_runs = ContiguousRuns(params_, false);
  if (grad_runs_.size() != 1 || value_runs.size() != 1)
    return InternalError(
        "--zero-stage 1 needs the engine's weights and gradients in one flat buffer each");
  flat_grad_ = grad_runs_[0];
  flat_value_ = value_runs[0];
  for (int r = 0; r < world_; ++r) {
    const int64_t lo = ost_.total * r / world_, hi = ost_.total * (r + 1) / world_;
    if (hi - lo > INT_MAX)
      return Unsupported("--zero-stage 1: a shard exceeds 2^31 weights; use more ranks");
    shard_counts_.push_back(static_cast<int>(hi - lo));
    shard_displs_.push_back(static_cast<int>(lo));
  }
  shard_grad_ = flat_grad_.first(ost_.m.size());
  return Status::Ok();
}

// Rank 0 alone writes the metrics log, checkpoints and progress.
Status Trainer::OpenMetrics() {
  Status opened = Status::Ok();
  if (root_) {
    Result<MetricsLog> m = MetricsLog::Open(opt_.out + "/metrics.jsonl", resume_from_ ? step_ : -1);
    if (m.ok()) metrics_.emplace(std::move(m).value());
    opened = m.status();
  }
  ESCALE_RETURN_IF_ERROR(dist::BroadcastStatus(*comm_, opened, 0));
  flops_per_token_ = TrainingFlopsPerToken(config_, opt_.seq_len).total();
  tokens_.resize(static_cast<size_t>(opt_.tokens_per_micro_batch()));
  targets_.resize(tokens_.size());
  val_sums_.resize(val_templates_.size());
  last_checkpoint_ = resume_from_ ? resume_from_->path : "";
  return Status::Ok();
}

// Validation batches are shared round-robin among the ranks and their losses summed.
Result<Trainer::ValidationLoss> Trainer::Evaluate() {
  ValidationLoss r;
  r.per_source.assign(val_templates_.size(), -1.0);
  std::fill(val_sums_.begin(), val_sums_.end(), 0.0);
  const Status local = [&]() -> Status {
    for (size_t i = 0; i < val_templates_.size(); ++i) {
      if (!val_templates_[i]) continue;
      DataLoader val =
          *val_templates_[i];  // always the same first windows: comparable across evals
      const ValidationPlan plan =
          PlanValidation(val.windows(), opt_.micro_batch, opt_.eval_batches);
      for (int64_t b = 0; b < plan.batches; ++b) {
        const int64_t rows = plan.Rows(b);
        if (!EvaluatesBatch(b, world_, rank_)) {
          for (int64_t w = 0; w < rows; ++w)
            ESCALE_RETURN_IF_ERROR(val.NextWindow(tokens_.data(), targets_.data()));
          continue;
        }
        if (rows == opt_.micro_batch) {
          ESCALE_RETURN_IF_ERROR(val.Next(tokens_, targets_));
        } else {  // the split's last windows: the rest of the batch is padding that is not scored
          std::fill(tokens_.begin(), tokens_.end(), 0);
          std::fill(targets_.begin(), targets_.end(), -1);
          for (int64_t w = 0; w < rows; ++w)
            ESCALE_RETURN_IF_ERROR(val.NextWindow(tokens_.data() + w * opt_.seq_len,
                                                  targets_.data() + w * opt_.seq_len));
        }
        ESCALE_ASSIGN_OR_RETURN(LossTerms t, model_->Evaluate(tokens_, targets_));
        val_sums_[i] += t.ce / (static_cast<double>(plan.windows) / static_cast<double>(rows));
      }
    }
    return Status::Ok();
  }();
  ESCALE_RETURN_IF_ERROR(dist::AgreeOnStatus(*comm_, local));
  ESCALE_RETURN_IF_ERROR(comm_->AllReduceSum(std::span<double>(val_sums_)));
  double weighted = 0, weights = 0;
  for (size_t i = 0; i < val_templates_.size(); ++i) {
    if (!val_templates_[i]) continue;
    r.per_source[i] = val_sums_[i];
    weighted += train_->weight(i) * r.per_source[i];
    weights += train_->weight(i);
  }
  if (weights > 0) r.blended = weighted / weights;
  return r;
}

// This rank's share of the step's micro-batches, forward and backward; every rank walks the whole
// global batch so that the data order is the one a single process sees.
Status Trainer::ComputeGradients() {
  for (int64_t a = 0; a < accum_; ++a) {
    ESCALE_RETURN_IF_ERROR(train_->Next(tokens_, targets_));
    if (!share_.contains(a)) continue;
    ESCALE_ASSIGN_OR_RETURN(
        LossTerms t, model_->ForwardBackward(tokens_, targets_, 1.0f / static_cast<float>(accum_)));
    reduced_[kTotal] += t.total / accum_;
    reduced_[kCe] += t.ce / accum_;
    reduced_[kAux] += t.aux / accum_;
    reduced_[kRouterMaxZ] += t.router_max_z / accum_;
    reduced_[kRouterZ] += t.router_z / accum_;
    reduced_[kOutputZ] += t.output_z / accum_;
    reduced_[kOutputMaxZ] += t.output_max_z / accum_;
  }
  return Status::Ok();
}

// Gradients, their reduction over the ranks, the fault policy's verdict and (if accepted) the
// update. From the reduction on, every rank holds the same numbers, so all agree.
Result<Trainer::StepResult> Trainer::Step() {
  const auto t0 = std::chrono::steady_clock::now();
  model_->ZeroGrads();
  reduced_.fill(0.0);
  ESCALE_RETURN_IF_ERROR(dist::AgreeOnStatus(*comm_, ComputeGradients()));
  reduced_[kStop] = StopSignals::Requested() ? 1.0 : 0.0;
  if (inject_) inject_->AfterBackward(step_, rank_, params_);
  const auto t_reduce = std::chrono::steady_clock::now();
  double sq = 0;
  if (sharded_) {
    // Each rank receives the summed gradient of its shard; the norm is summed from the shards.
    ESCALE_RETURN_IF_ERROR(comm_->ReduceScatterSum(flat_grad_, shard_counts_));
    reduced_[kGradSq] = SumOfSquares(shard_grad_);
    ESCALE_RETURN_IF_ERROR(comm_->AllReduceSum(std::span<double>(reduced_)));
    sq = reduced_[kGradSq];
  } else if (world_ > 1) {
    ESCALE_RETURN_IF_ERROR(comm_->AllReduceSum(std::span<double>(reduced_)));
    for (std::span<float> run : grad_runs_) ESCALE_RETURN_IF_ERROR(comm_->AllReduceSum(run));
  }
  StepResult s;
  s.reduce_seconds = Seconds(t_reduce);  // includes waiting for the slowest rank's share
  s.loss = {reduced_[kTotal],   reduced_[kCe],      reduced_[kAux],       reduced_[kRouterMaxZ],
            reduced_[kRouterZ], reduced_[kOutputZ], reduced_[kOutputMaxZ]};
  s.stop = reduced_[kStop] > 0;
  s.judged_loss = inject_ ? inject_->JudgedLoss(step_, s.loss.total) : s.loss.total;
  if (!sharded_)
    for (const auto& p : params_) sq += SumOfSquares(p.grad);
  s.grad_norm = std::sqrt(sq);
  s.verdict = faults_.Judge(s.judged_loss, s.grad_norm);
  faults_.Record(s.verdict, s.judged_loss);
  s.lr = LearningRate(sched_, step_);
  if (s.verdict == StepVerdict::kAccept) {
    ++updates_;
    ApplyUpdate(s);
    if (sharded_)
      ESCALE_RETURN_IF_ERROR(comm_->AllGather(flat_value_, shard_counts_, shard_displs_));
  }
  if (inject_) inject_->AfterUpdate(step_, rank_, world_, params_);
  ++step_;
  tokens_seen_ += static_cast<double>(tokens_per_step_);
  s.seconds = Seconds(t0);
  s.tokens_per_second = static_cast<double>(tokens_per_step_) / s.seconds;  // of all ranks
  return s;
}

// Clipping and AdamW on each parameter's part inside [lo, hi): all of every parameter without
// ZeRO-1, this rank's shard with it.
void Trainer::ApplyUpdate(const StepResult& s) {
  const float clip = static_cast<float>(ClipFactor(s.grad_norm, opt_.clip));
  if (sharded_ && clip != 1.0f) Scale(shard_grad_, clip);
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t off = ost_.offset[i], n = static_cast<int64_t>(params_[i].value.size());
    const int64_t a = std::max(off, ost_.lo), b = std::min(off + n, ost_.hi);
    if (a >= b) continue;
    const std::span<float> grad = sharded_ ? shard_grad_.subspan(a - ost_.lo, b - a)
                                           : params_[i].grad.subspan(a - off, b - a);
    if (!sharded_ && clip != 1.0f) Scale(grad, clip);
    AdamWUpdate(adamw_, updates_ + moment_base_[i], s.lr, params_[i].decay,
                params_[i].value.subspan(a - off, b - a), grad,
                std::span<float>(ost_.m).subspan(a - ost_.lo, b - a),
                std::span<float>(ost_.v).subspan(a - ost_.lo, b - a));
  }
}

// The step's line of metrics.jsonl (rank 0; the others return Ok).
Status Trainer::RecordStep(const StepResult& s) {
  if (!root_) return Status::Ok();
  nlohmann::json rec = {{"step", step_},
                        {"loss", s.loss.total},
                        {"ce", s.loss.ce},
                        {"lr", s.lr},
                        {"grad_norm", s.grad_norm},
                        {"tokens", tokens_seen_},
                        {"tokens_per_s", s.tokens_per_second},
                        {"step_s", s.seconds}};
  if (world_ > 1) {
    rec["world_size"] = world_;
    rec["allreduce_s"] = s.reduce_seconds;
  }
  if (blended_) rec["data"] = ServedJson();
  if (in_.sgemm_gflops > 0)
    rec["mfu"] = flops_per_token_ * s.tokens_per_second / (in_.sgemm_gflops * 1e9 * world_);
  if (config_.is_moe()) {
    rec["aux"] = s.loss.aux;
    rec["router_max_z"] = s.loss.router_max_z;
    rec["router_z"] = s.loss.router_z;
    // Expert load of rank 0's last micro-batch (with one rank: the step's last).
    rec["expert_load"] = ExpertLoadJson(model_->moe_stats());
  }
  if (coef_.output_z > 0) rec["output_z"] = s.loss.output_z;
  if (coef_.output_max_z > 0) rec["output_max_z"] = s.loss.output_max_z;
  if (s.verdict != StepVerdict::kAccept) {
    const std::string verdict(StepVerdictName(s.verdict));
    rec["skipped"] = verdict;
    std::fprintf(stderr, "\nescale train: step %lld skipped (%s, loss %g, grad norm %g)\n",
                 static_cast<long long>(step_), verdict.c_str(), s.judged_loss, s.grad_norm);
  }
  return metrics_->Append(rec);
}

// A checkpoint at the current step: collective (replica check, ZeRO-1 gather), written by rank 0
// into *written unless an earlier write of this step failed. The returned error is every rank's.
Status Trainer::Checkpoint(StepVerdict last_verdict, Status* written) {
  ESCALE_RETURN_IF_ERROR(CheckReplicasAgree(*comm_, params_, step_));
  // Never save a diverged run as progress: every rank holds the same weights, so all agree.
  if (const std::string bad = FirstNonFinite(params_); !bad.empty())
    return InternalError(
        "training diverged: after step " + std::to_string(step_) + " the weights are not finite (" +
        bad + "); nothing saved. Last good checkpoint: " +
        (last_checkpoint_.empty() ? "none" : last_checkpoint_) + " (lower --lr, then --resume)");
  if (updates_ == updates_at_start_)
    return InternalError("no step of this run was accepted (" +
                         std::to_string(step_ - start_step_) +
                         " skipped, last: " + std::string(StepVerdictName(last_verdict)) +
                         "); nothing saved. Lower --lr or check the model and data");
  if (sharded_) {  // rank 0 collects the moments' shards (only for the save)
    if (root_) {
      m_full_.resize(static_cast<size_t>(ost_.total));
      v_full_.resize(static_cast<size_t>(ost_.total));
    }
    ESCALE_RETURN_IF_ERROR(comm_->Gather(ost_.m, m_full_, shard_counts_, shard_displs_, 0));
    ESCALE_RETURN_IF_ERROR(comm_->Gather(ost_.v, v_full_, shard_counts_, shard_displs_, 0));
  }
  if (root_ && written->ok())
    *written = SaveCheckpoint(opt_.out, step_, *model_, sharded_ ? m_full_ : ost_.m,
                              sharded_ ? v_full_ : ost_.v, ost_.offset, StateJson(),
                              {in_.copy_files_from, in_.description, opt_.keep_last, keep_steps_});
  if (sharded_) {
    m_full_ = std::vector<float>();
    v_full_ = std::vector<float>();
  }
  last_checkpoint_ = CheckpointsDir(opt_.out) + "/" + CheckpointName(step_);
  return Status::Ok();
}

nlohmann::json Trainer::EvalEvent(const ValidationLoss& r) const {
  nlohmann::json e = {{"event", "eval"}, {"step", step_}, {"val_loss", r.blended}};
  if (blended_) {
    nlohmann::json by = nlohmann::json::object();
    for (size_t i = 0; i < train_->size(); ++i)
      if (r.per_source[i] >= 0) by[train_->name(i)] = r.per_source[i];
    e["val_loss_by_source"] = by;
  }
  return e;
}

// Tokens and epochs served per source so far: the effective blend proportions.
nlohmann::json Trainer::ServedJson() const {
  nlohmann::json d = nlohmann::json::object();
  for (size_t i = 0; i < train_->size(); ++i)
    d[train_->name(i)] = {{"tokens", train_->served(i) * opt_.seq_len},
                          {"epochs", train_->epochs(i)}};
  return d;
}

nlohmann::json Trainer::StateJson() const {
  nlohmann::json j{{"step", step_},
                   {"updates", updates_},
                   {"tokens_seen", tokens_seen_},
                   {"faults",
                    {{"history", faults_.history()},
                     {"consecutive", faults_.consecutive_skips()},
                     {"total", faults_.total_skips()}}},
                   {"resume_key", ResumeKey(opt_)},
                   {"world_size", world_},
                   {"description", in_.description}};
  if (std::any_of(moment_base_.begin(), moment_base_.end(), [](int64_t b) { return b != 0; })) {
    nlohmann::json b = nlohmann::json::object();
    for (size_t i = 0; i < params_.size(); ++i) b[params_[i].name] = moment_base_[i];
    j["moment_steps_at_start"] = b;
  }
  if (!blended_) {
    j["data"] = CursorJson(train_->cursors()[0]);
  } else {
    j["data_sources"] = nlohmann::json::object();
    for (size_t i = 0; i < train_->size(); ++i)
      j["data_sources"][train_->name(i)] = CursorJson(train_->cursors()[i]);
  }
  return j;
}

Result<TrainSummary> Trainer::Run() {
  TrainSummary summary;
  summary.start_step = start_step_ = step_;
  updates_at_start_ = updates_;
  StopSignals signals;
  ESCALE_ASSIGN_OR_RETURN(const ValidationLoss first_eval, Evaluate());
  ValidationLoss last_eval = first_eval;
  summary.first_val_loss = summary.last_val_loss = first_eval.blended;
  // A resumed run's log already holds the evaluation at its step (if one was due there).
  {
    Status written = Status::Ok();
    if (summary.first_val_loss >= 0 && !resume_from_ && root_)
      written = metrics_->Append(EvalEvent(first_eval));
    ESCALE_RETURN_IF_ERROR(dist::BroadcastStatus(*comm_, written, 0));
  }
  Progress progress("train", static_cast<uint64_t>(total_steps_), "steps", root_);
  progress.StartAt(static_cast<uint64_t>(step_));
  double step_seconds_sum = 0;
  int64_t timed_steps = 0;
  while (step_ < total_steps_) {
    ESCALE_ASSIGN_OR_RETURN(const StepResult s, Step());
    step_seconds_sum += s.seconds;
    ++timed_steps;
    summary.last_train_loss = s.loss.total;
    Status written = RecordStep(s);  // rank 0's writes this step, broadcast below
    if (faults_.TooManySkips())
      return Status(
          ErrorCode::kInternal,
          std::to_string(faults_.consecutive_skips()) +
              " steps in a row were skipped (last: " + std::string(StepVerdictName(s.verdict)) +
              " at step " + std::to_string(step_) + "); stopping. Last good checkpoint: " +
              (last_checkpoint_.empty() ? "none" : last_checkpoint_) +
              " (lower --lr or check the data, then --resume)");
    const bool last = step_ == total_steps_;
    if ((opt_.eval_every > 0 && step_ % opt_.eval_every == 0) || last) {
      ESCALE_ASSIGN_OR_RETURN(last_eval, Evaluate());
      summary.last_val_loss = last_eval.blended;
      if (summary.last_val_loss >= 0 && root_ && written.ok())
        written = metrics_->Append(EvalEvent(last_eval));
    }
    if ((opt_.save_every > 0 && step_ % opt_.save_every == 0) || keep_steps_.count(step_) || last ||
        s.stop)
      ESCALE_RETURN_IF_ERROR(Checkpoint(s.verdict, &written));
    // The other ranks wait here for rank 0's writes (and stop with it if they failed).
    ESCALE_RETURN_IF_ERROR(dist::BroadcastStatus(*comm_, written, 0));
    char detail[160];
    std::snprintf(detail, sizeof detail, "loss %.4f lr %.2e %.0f tok/s", s.loss.total, s.lr,
                  s.tokens_per_second);
    progress.Update(static_cast<uint64_t>(step_), detail);
    if (s.stop) {
      summary.interrupted = true;
      if (root_)
        std::fprintf(stderr,
                     "\nescale train: stopped by signal at step %lld; saved %s (continue with "
                     "--resume)\n",
                     static_cast<long long>(step_), last_checkpoint_.c_str());
      break;
    }
  }
  progress.Finish();
  summary.steps_done = step_;
  summary.skipped_steps = faults_.total_skips();
  summary.tokens_per_second =
      timed_steps > 0 ? static_cast<double>(tokens_per_step_) * timed_steps / step_seconds_sum : 0;
  summary.last_checkpoint = last_checkpoint_;
  for (size_t i = 0; i < train_->size(); ++i)
    summary.sources.push_back(
        {train_->name(i), train_->weight(i), static_cast<double>(train_->served(i) * opt_.seq_len),
         train_->epochs(i), first_eval.per_source[i], last_eval.per_source[i]});
  return summary;
}

Result<TrainSummary> RunTraining(const TrainOptions& opt, TrainerInputs inputs) {
  ESCALE_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                          Trainer::Prepare(opt, std::move(inputs)));
  return trainer->Run();
}

}  // namespace escale
