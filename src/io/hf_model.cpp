// Hugging Face model directories: canonical <-> HF tensor names, reading single-file or sharded
// checkpoints as zero-copy views, writing through a staging directory (docs/formats.md).
#include "io/hf_model.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "core/atomic_output.h"
#include "core/buffer_pool.h"
#include "core/json_text.h"
#include "core/progress.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string LayerPrefix(int64_t l) { return "model.layers." + std::to_string(l) + "."; }

std::string MoePrefix(const ModelConfig& c, int64_t l) {
  return LayerPrefix(l) + std::string(ArchInfo(c.arch).moe_module) + ".";
}

// Where a tensor was found: the file and the name inside it.
struct Located {
  const SafetensorsFile* file = nullptr;
  std::string name;
};

std::string BaseName(const std::string& p) { return fs::path(p).filename().string(); }

// The set of tensor names on disk and the file holding each, after checking the index.
struct Checkpoint {
  std::vector<std::shared_ptr<const SafetensorsFile>> files;
  std::map<std::string, Located> tensors;
  uint64_t bytes = 0;
};

Result<Checkpoint> OpenCheckpoint(const std::string& dir) {
  Checkpoint ck;
  const std::string single = dir + "/model.safetensors";
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::error_code ec;
  auto open = [&](const std::string& path) -> Result<const SafetensorsFile*> {
    ESCALE_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(path));
    ck.bytes += f.file()->size();
    ck.files.push_back(std::make_shared<const SafetensorsFile>(std::move(f)));
    return ck.files.back().get();
  };
  if (fs::is_regular_file(single, ec)) {  // transformers also prefers the single file
    ESCALE_ASSIGN_OR_RETURN(const SafetensorsFile* f, open(single));
    for (const auto& e : f->entries()) ck.tensors[e.name] = {f, e.name};
    return ck;
  }
  if (!fs::is_regular_file(index_path, ec))
    return NotFound(dir + " holds neither model.safetensors nor model.safetensors.index.json; "
                          "is it a Hugging Face safetensors model directory?");
  ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(index_path));
  auto parsed = ParseJsonText(text, index_path);
  if (!parsed.ok()) return FormatError(parsed.status().message() + "; re-download it");
  const json index = *std::move(parsed);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    return FormatError(index_path + " is not a valid index (needs a \"weight_map\" object); re-download it");
  std::map<std::string, const SafetensorsFile*> by_file;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it->is_string())
      return FormatError(index_path + ": weight_map entry for '" + it.key() + "' must be a file name");
    const std::string shard = it->get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      return FormatError(index_path + ": shard name '" + shard + "' must be a plain file name in the directory");
    if (!by_file.count(shard)) {
      const std::string path = dir + "/" + shard;
      if (!fs::is_regular_file(path, ec))
        return NotFound("shard " + shard + " named in " + index_path +
                        " is missing; the download is incomplete");
      ESCALE_ASSIGN_OR_RETURN(by_file[shard], open(path));
    }
    const SafetensorsFile* f = by_file[shard];
    if (f->Find(it.key()) == nullptr)
      return FormatError("tensor '" + it.key() + "' is mapped to " + shard + " by the index but is not in it");
    ck.tensors[it.key()] = {f, it.key()};
  }
  for (const auto& [shard, f] : by_file)
    for (const auto& e : f->entries()) {
      const auto it = ck.tensors.find(e.name);
      if (it == ck.tensors.end() || it->second.file != f)
        return FormatError("tensor '" + e.name + "' in " + shard +
                           " is not assigned to that file by model.safetensors.index.json");
    }
  return ck;
}

// Per-expert views into a transformers-v5 fused tensor: [E, 2I, H] (gate rows then up rows)
// or [E, H, I] (down). `part` 0 = gate, 1 = up, 2 = down.
Tensor ExpertSlice(const Tensor& fused, int64_t e, int part, const Shape& shape) {
  const int64_t per = ShapeNumel(shape);
  const int64_t elems_per_expert = fused.numel() / fused.dim(0);
  const int64_t start = e * elems_per_expert + (part == 1 ? per : 0);
  const size_t esz = static_cast<size_t>(DTypeSize(fused.dtype()));
  auto keep = std::make_shared<const Tensor>(fused);
  return Tensor::View(fused.dtype(), shape, fused.bytes() + static_cast<size_t>(start) * esz, keep);
}

}  // namespace

std::string HfTensorName(const ModelConfig& c, const TensorSpec& s) {
  const ArchitectureInfo& ai = ArchInfo(c.arch);
  const std::string lp = s.layer >= 0 ? LayerPrefix(s.layer) : "";
  switch (s.role) {
    case TensorRole::kEmbed: return "model.embed_tokens.weight";
    case TensorRole::kAttnNorm: return lp + "input_layernorm.weight";
    case TensorRole::kWq: return lp + "self_attn.q_proj.weight";
    case TensorRole::kWk: return lp + "self_attn.k_proj.weight";
    case TensorRole::kWv: return lp + "self_attn.v_proj.weight";
    case TensorRole::kBq: return lp + "self_attn.q_proj.bias";
    case TensorRole::kBk: return lp + "self_attn.k_proj.bias";
    case TensorRole::kBv: return lp + "self_attn.v_proj.bias";
    case TensorRole::kQNorm:
      return lp + "self_attn.q_norm.weight";
    case TensorRole::kKNorm:
      return lp + "self_attn.k_norm.weight";
    case TensorRole::kWo: return lp + "self_attn.o_proj.weight";
    case TensorRole::kFfnNorm: return lp + "post_attention_layernorm.weight";
    case TensorRole::kFfnGate: return lp + "mlp.gate_proj.weight";
    case TensorRole::kFfnUp: return lp + "mlp.up_proj.weight";
    case TensorRole::kFfnDown: return lp + "mlp.down_proj.weight";
    case TensorRole::kRouter: return MoePrefix(c, s.layer) + "gate.weight";
    case TensorRole::kExpertGate:
    case TensorRole::kExpertUp:
    case TensorRole::kExpertDown: {
      const std::string ep = MoePrefix(c, s.layer) + "experts." + std::to_string(s.expert) + ".";
      const std::string_view which = s.role == TensorRole::kExpertGate ? ai.expert_gate
                                     : s.role == TensorRole::kExpertUp ? ai.expert_up
                                                                       : ai.expert_down;
      return ep + std::string(which) + ".weight";
    }
    case TensorRole::kSharedGate: return lp + "mlp.shared_expert.gate_proj.weight";
    case TensorRole::kSharedUp: return lp + "mlp.shared_expert.up_proj.weight";
    case TensorRole::kSharedDown: return lp + "mlp.shared_expert.down_proj.weight";
    case TensorRole::kSharedRouter: return lp + "mlp.shared_expert_gate.weight";
    case TensorRole::kFinalNorm: return "model.norm.weight";
    case TensorRole::kLmHead: return "lm_head.weight";
  }
  return "?";
}

Result<HfModel> ReadHfModel(const std::string& dir) {
  HfModel m;
  m.dir = dir;
  ESCALE_ASSIGN_OR_RETURN(m.config, ReadHfConfig(dir));
  auto ck_or = OpenCheckpoint(dir);
  if (!ck_or.ok()) return ck_or.status();
  Checkpoint ck = std::move(ck_or).value();
  m.files = ck.files;
  m.bytes_on_disk = ck.bytes;
  if (!ck.files.empty()) m.metadata = ck.files.front()->metadata();
  const ModelConfig& c = m.config;
  const std::string cls(ArchitectureClassName(c.arch));

  std::set<std::string> used;
  auto get = [&](const std::string& hf, const Shape& want, const std::string& canonical) -> Result<Tensor> {
    const Located& loc = ck.tensors.at(hf);
    const SafetensorsEntry* e = loc.file->Find(loc.name);
    if (e->shape != want)
      return FormatError("tensor " + hf + " (" + canonical + ") in " + BaseName(loc.file->path()) +
                         " has shape " + ShapeToString(e->shape) + " but config.json implies " +
                         ShapeToString(want) + "; config and weights do not match");
    if (!IsConvertibleToF32(e->dtype))
      return Unsupported("tensor " + hf + " is " + std::string(DTypeName(e->dtype)) +
                         "; escale reads F32, F16, BF16 or F64 weights (quantized checkpoints are not supported)");
    used.insert(hf);
    return loc.file->Get(loc.name);
  };
  auto present = [&](const std::string& hf) { return ck.tensors.count(hf) > 0; };

  // Fused v5 expert tensors, loaded once per layer and sliced per expert.
  std::map<int64_t, std::pair<Tensor, Tensor>> fused;
  auto fused_for = [&](int64_t l) -> Result<const std::pair<Tensor, Tensor>*> {
    if (auto it = fused.find(l); it != fused.end()) return &it->second;
    const std::string p = LayerPrefix(l) + "mlp.experts.";
    const int64_t E = c.moe.num_experts, I = c.moe.expert_intermediate, H = c.hidden_size;
    if (!present(p + "gate_up_proj") || !present(p + "down_proj"))
      return NotFound("layer " + std::to_string(l) + " has neither per-expert tensors (" +
                      MoePrefix(c, l) + "experts.{e}...) nor fused " + p + "gate_up_proj/down_proj");
    const SafetensorsEntry* gu = ck.tensors.at(p + "gate_up_proj").file->Find(p + "gate_up_proj");
    if (gu->shape == Shape{E, H, 2 * I} && H != 2 * I)
      return Unsupported(p + "gate_up_proj is stored [E, H, 2I] (transposed fused layout); "
                             "re-save the model in the [E, 2I, H] or per-expert layout");
    ESCALE_ASSIGN_OR_RETURN(Tensor g, get(p + "gate_up_proj", {E, 2 * I, H}, "layers." + std::to_string(l) + ".moe.experts gate+up"));
    ESCALE_ASSIGN_OR_RETURN(Tensor d, get(p + "down_proj", {E, H, I}, "layers." + std::to_string(l) + ".moe.experts down"));
    return &(fused[l] = {std::move(g), std::move(d)});
  };

  for (const TensorSpec& s : CanonicalTensors(c)) {
    std::string hf = HfTensorName(c, s);
    if (s.role == TensorRole::kRouter && !present(hf) && ArchInfo(c.arch).moe_module != "mlp" &&
        present(LayerPrefix(s.layer) + "mlp.gate.weight"))
      hf = LayerPrefix(s.layer) + "mlp.gate.weight";  // v5 Mixtral module path
    const bool expert = s.role == TensorRole::kExpertGate || s.role == TensorRole::kExpertUp ||
                        s.role == TensorRole::kExpertDown;
    if (expert && !present(hf)) {
      ESCALE_ASSIGN_OR_RETURN(const auto* f, fused_for(s.layer));
      const int part = s.role == TensorRole::kExpertGate ? 0 : s.role == TensorRole::kExpertUp ? 1 : 2;
      m.tensors[s.name] = ExpertSlice(part == 2 ? f->second : f->first, s.expert, part, s.shape);
      continue;
    }
    if (!present(hf)) {
      if (s.role == TensorRole::kLmHead)
        return NotFound("lm_head.weight is missing and tie_word_embeddings is false; set "
                        "\"tie_word_embeddings\": true in config.json if the head is tied");
      return NotFound("tensor " + hf + " (" + s.name + ", shape " + ShapeToString(s.shape) + ") is missing from " +
                      dir + "; the checkpoint does not match config.json (" + cls + ")");
    }
    ESCALE_ASSIGN_OR_RETURN(m.tensors[s.name], get(hf, s.shape, s.name));
  }
  for (const auto& [name, loc] : ck.tensors) {
    if (used.count(name)) continue;
    if (name == "lm_head.weight" && c.tie_word_embeddings) continue;  // tied: the embedding wins
    if (name.ends_with("rotary_emb.inv_freq")) continue;  // a buffer, recomputed from rope_theta
    return FormatError("unexpected tensor " + name + " in " + BaseName(loc.file->path()) + ": it is not part of a " +
                       cls + " with this config.json (wrong architecture or layer/expert counts?)");
  }
  // config.json without a dtype: report the weights' own dtype.
  {
    ESCALE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(dir + "/config.json"));
    const json j = json::parse(text, nullptr, false);
    if (!j.contains("torch_dtype") && !j.contains("dtype")) m.config.dtype = m.tensors.at("embed").dtype();
  }
  return m;
}

void ReleasePages(const HfModel& m, const Tensor& t) {
  for (const auto& f : m.files) {
    const MappedFile& mf = *f->file();
    if (t.nbytes() && t.bytes() >= mf.data() && t.bytes() < mf.data() + mf.size())
      mf.DontNeed(static_cast<size_t>(t.bytes() - mf.data()), t.nbytes());
  }
}

void PopulatePages(const Tensor& t) {
  if (!t.nbytes()) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(t.bytes()) / page * page;
  ::madvise(reinterpret_cast<void*>(lo), reinterpret_cast<uintptr_t>(t.bytes()) + t.nbytes() - lo,
            MADV_POPULATE_READ);
}

namespace {

// Producer and writer meet here: the producer waits while `in_flight` tensors are produced and not
// yet written; the writer waits for the next one. `stop` ends the producer early (writer failed).
struct Handoff {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Result<TensorBytes>> ready;
  size_t in_flight = 0;
  bool stop = false;
};

}  // namespace

Status StreamHfModel(const std::string& dir, const ModelConfig& config, const TensorStream& stream,
                     const WriteOptions& opt) {
  if (opt.dtype != DType::kF32 && opt.dtype != DType::kBF16 && opt.dtype != DType::kF16 && opt.dtype != DType::kF64)
    return InvalidArgument("cannot write weights as " + std::string(DTypeName(opt.dtype)) + "; choose f32, bf16 or f16");
  ModelConfig out_cfg = config;
  out_cfg.dtype = opt.dtype;
  ESCALE_ASSIGN_OR_RETURN(json cj, HfConfigToJson(out_cfg));

  std::error_code ec;
  if (!opt.copy_tokenizer_from.empty() && !fs::is_directory(opt.copy_tokenizer_from, ec))
    return NotFound("tokenizer source " + opt.copy_tokenizer_from + " is not a directory");

  ESCALE_ASSIGN_OR_RETURN(StagingDir staging, StagingDir::Create(dir, opt.overwrite, opt.inputs));
  const std::vector<TensorSpec> specs = CanonicalTensors(out_cfg);
  std::vector<SafetensorsEntry> declared;
  std::vector<size_t> sizes;
  declared.reserve(specs.size());
  for (const TensorSpec& s : specs) {
    declared.push_back({HfTensorName(out_cfg, s), opt.dtype, s.shape, 0, 0});
    sizes.push_back(static_cast<size_t>(ShapeNumel(s.shape)) * static_cast<size_t>(DTypeSize(opt.dtype)));
  }
  SafetensorsWriter::Options wo;
  wo.max_shard_bytes = opt.max_shard_bytes;
  wo.metadata = opt.metadata;
  ESCALE_ASSIGN_OR_RETURN(SafetensorsWriter w, SafetensorsWriter::Create(staging.path(), declared, wo));

  // The producer thread runs `stream` ahead of this thread, which writes: the kernel's copy into
  // the page cache overlaps the next tensor's computation.
  Progress progress("writing " + dir, w.total_bytes(), "B", opt.progress);
  const std::string of_n = "/" + std::to_string(specs.size()) + " ";
  const size_t depth = std::max<size_t>(1, opt.in_flight);
  Handoff h;
  std::thread producer([&] {
    for (size_t i = 0; i < specs.size(); ++i) {
      {
        std::unique_lock lock(h.mu);
        h.cv.wait(lock, [&] { return h.stop || h.in_flight < depth; });
        if (h.stop) return;
        ++h.in_flight;
      }
      Result<TensorBytes> r = stream(specs[i], sizes[i]);
      const bool failed = !r.ok();
      if (failed) r = Result<TensorBytes>(r.status().WithContext("producing " + specs[i].name));
      {
        std::lock_guard lock(h.mu);
        h.ready.push_back(std::move(r));
      }
      h.cv.notify_all();
      if (failed) return;
    }
  });
  auto written = [&]() -> Status {
    uint64_t done = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      Result<TensorBytes> r = Status::Ok();
      {
        std::unique_lock lock(h.mu);
        h.cv.wait(lock, [&] { return !h.ready.empty(); });
        r = std::move(h.ready.front());
        h.ready.pop_front();
      }
      ESCALE_RETURN_IF_ERROR(r.status());
      TensorBytes t = std::move(r).value();
      if (t.bytes == nullptr && sizes[i] != 0) return InternalError("no bytes produced for " + specs[i].name);
      ESCALE_RETURN_IF_ERROR(w.Write(declared[i].name, t.bytes, sizes[i]));
      if (t.after_write) t.after_write();
      t = TensorBytes{};  // give the buffer back before the producer is let go
      {
        std::lock_guard lock(h.mu);
        --h.in_flight;
      }
      h.cv.notify_all();
      done += sizes[i];
      progress.Update(done, "tensor " + std::to_string(i + 1) + of_n + specs[i].name);
    }
    return Status::Ok();
  }();
  {
    std::lock_guard lock(h.mu);
    h.stop = true;
  }
  h.cv.notify_all();
  producer.join();
  ESCALE_RETURN_IF_ERROR(written);

  ESCALE_RETURN_IF_ERROR(w.Finish());
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(staging.path() + "/config.json", cj.dump(2) + "\n"));
  if (!opt.copy_tokenizer_from.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                          "generation_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                          "added_tokens.json", "chat_template.jinja"}) {
      const std::string src = opt.copy_tokenizer_from + "/" + f;
      if (fs::is_regular_file(src, ec))
        ESCALE_RETURN_IF_ERROR(CopyFileAtomic(src, staging.path() + "/" + f));
    }
  }
  if (opt.write_extra) ESCALE_RETURN_IF_ERROR(opt.write_extra(staging.path()));
  ESCALE_RETURN_IF_ERROR(staging.Commit());
  progress.Finish();
  if (const std::string warning = opt.warn ? RopeScalingWarning(out_cfg) : ""; !warning.empty())
    std::fprintf(stderr, "escale: warning: %s is %s\n", dir.c_str(), warning.c_str());
  return Status::Ok();
}

namespace {

// A stream over a producer that fills buffers recycled through `pool`.
TensorStream BufferedStream(TensorProducer produce, BufferPool& pool) {
  return [produce = std::move(produce), &pool](const TensorSpec& s, size_t n) -> Result<TensorBytes> {
    std::shared_ptr<std::byte> buf = pool.Acquire(n);
    if (!buf) return IoError("cannot allocate a " + std::to_string(n) + "-byte buffer for " + s.name);
    ESCALE_RETURN_IF_ERROR(produce(s, buf.get()));
    TensorBytes t;
    t.bytes = buf.get();
    t.keep = std::move(buf);
    return t;
  };
}

// Converts n elements in chunks so the scratch space stays small whatever the tensor size.
Status ConvertBytes(DType src_type, const std::byte* src, size_t n, DType dst_type, std::byte* dst) {
  if (src_type == dst_type) {
    if (n) std::memcpy(dst, src, n * static_cast<size_t>(DTypeSize(src_type)));
    return Status::Ok();
  }
  constexpr size_t kChunk = 1 << 16;
  const size_t si = static_cast<size_t>(DTypeSize(src_type)), di = static_cast<size_t>(DTypeSize(dst_type));
  if (src_type == DType::kF64 || dst_type == DType::kF64) {
    std::vector<double> tmp(std::min(n, kChunk));
    for (size_t i = 0; i < n; i += kChunk) {
      const size_t k = std::min(kChunk, n - i);
      ESCALE_RETURN_IF_ERROR(ConvertToF64(src_type, src + i * si, k, tmp.data()));
      ESCALE_RETURN_IF_ERROR(ConvertFromF64(tmp.data(), k, dst_type, dst + i * di));
    }
    return Status::Ok();
  }
  std::vector<float> tmp(std::min(n, kChunk));
  for (size_t i = 0; i < n; i += kChunk) {
    const size_t k = std::min(kChunk, n - i);
    ESCALE_RETURN_IF_ERROR(ConvertToF32(src_type, src + i * si, k, tmp.data()));
    ESCALE_RETURN_IF_ERROR(ConvertFromF32(tmp.data(), k, dst_type, dst + i * di));
  }
  return Status::Ok();
}
}  // namespace

Status WriteHfModel(const std::string& dir, const ModelConfig& config, const TensorProducer& produce,
                    const WriteOptions& opt) {
  BufferPool pool;
  return StreamHfModel(dir, config, BufferedStream(produce, pool), opt);
}

TensorProducer CopyFromModel(const HfModel& m, DType out) {
  return [&m, out](const TensorSpec& s, std::byte* dst) -> Status {
    const auto it = m.tensors.find(s.name);
    if (it == m.tensors.end()) return NotFound("tensor '" + s.name + "' is not in " + m.dir);
    const Tensor& t = it->second;
    if (t.shape() != s.shape)
      return InvalidArgument("tensor '" + s.name + "' has shape " + ShapeToString(t.shape()) +
                             ", the output config needs " + ShapeToString(s.shape));
    PopulatePages(t);
    ESCALE_RETURN_IF_ERROR(ConvertBytes(t.dtype(), t.bytes(), static_cast<size_t>(t.numel()), out, dst));
    ReleasePages(m, t);
    return Status::Ok();
  };
}

Status WriteHfModel(const std::string& dir, const ModelConfig& config, const HfModel& source,
                    const WriteOptions& opt) {
  // Same-dtype tensors go from the mapping straight to the file (one copy, like cp) and their
  // pages are released once written; others are converted through a buffer. (Pre-populating the
  // mapping measured slower for the straight copies: the kernel's fault-around already batches.)
  BufferPool pool;
  const TensorProducer convert = CopyFromModel(source, opt.dtype);
  const TensorStream buffered = BufferedStream(convert, pool);
  return StreamHfModel(dir, config, [&](const TensorSpec& s, size_t n) -> Result<TensorBytes> {
    const auto it = source.tensors.find(s.name);
    if (it == source.tensors.end() || it->second.dtype() != opt.dtype || it->second.shape() != s.shape)
      return buffered(s, n);
    const Tensor& t = it->second;
    TensorBytes out;
    out.bytes = t.bytes();
    out.after_write = [&source, &t] { ReleasePages(source, t); };
    return out;
  }, opt);
}

Status WriteHfModel(const std::string& dir, const ModelConfig& config,
                    const std::map<std::string, Tensor>& tensors, const WriteOptions& opt) {
  std::set<std::string> expected;
  ModelConfig out_cfg = config;
  for (const TensorSpec& s : CanonicalTensors(out_cfg)) expected.insert(s.name);
  for (const auto& [name, t] : tensors)
    if (!expected.count(name))
      return InvalidArgument("tensor '" + name + "' is not part of the " +
                             std::string(ArchitectureClassName(config.arch)) + " layout of this config");
  auto produce = [&](const TensorSpec& s, std::byte* out) -> Status {
    const auto it = tensors.find(s.name);
    if (it == tensors.end()) return NotFound("tensor '" + s.name + "' is missing");
    const Tensor& t = it->second;
    if (t.shape() != s.shape)
      return InvalidArgument("tensor '" + s.name + "' has shape " + ShapeToString(t.shape()) +
                             ", the config needs " + ShapeToString(s.shape));
    return ConvertBytes(t.dtype(), t.bytes(), static_cast<size_t>(t.numel()), opt.dtype, out);
  };
  // Tensors already in the output dtype are written from where they are.
  BufferPool pool;
  const TensorStream buffered = BufferedStream(produce, pool);
  return StreamHfModel(dir, config, [&](const TensorSpec& s, size_t n) -> Result<TensorBytes> {
    const auto it = tensors.find(s.name);
    if (it == tensors.end() || it->second.dtype() != opt.dtype || it->second.shape() != s.shape)
      return buffered(s, n);
    TensorBytes out;
    out.bytes = it->second.bytes();
    return out;
  }, opt);
}

}  // namespace escale
