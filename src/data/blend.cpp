#include "data/blend.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

namespace escale {

Result<std::vector<BlendEntry>> ParseDataBlend(const std::string& spec) {
  std::vector<BlendEntry> out;
  std::set<std::string> names;
  std::istringstream in(spec);
  double sum = 0;
  for (std::string item; in >> item;) {
    const std::string form =
        "--data-blend entry '" + item + "' is not NAME=WEIGHT:DIR (e.g. en=0.7:shards/en)";
    const size_t eq = item.find('='), colon = item.find(':', eq == std::string::npos ? 0 : eq);
    if (eq == std::string::npos || colon == std::string::npos || eq == 0 ||
        colon + 1 == item.size())
      return InvalidArgument(form);
    BlendEntry e;
    e.name = item.substr(0, eq);
    e.dir = item.substr(colon + 1);
    for (char c : e.name)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
        return InvalidArgument("--data-blend source name '" + e.name +
                               "' may hold only letters, digits, '_', '-' and '.'");
    const std::string w = item.substr(eq + 1, colon - eq - 1);
    char* end = nullptr;
    e.weight = std::strtod(w.c_str(), &end);
    if (w.empty() || *end != '\0' || !std::isfinite(e.weight) || !(e.weight > 0))
      return InvalidArgument("--data-blend weight '" + w + "' of source '" + e.name +
                             "' must be a positive number (weights are normalised to sum to 1)");
    if (!names.insert(e.name).second)
      return InvalidArgument("--data-blend names source '" + e.name +
                             "' twice; give each source once");
    sum += e.weight;
    out.push_back(std::move(e));
  }
  if (out.empty())
    return InvalidArgument(
        "--data-blend is empty; give NAME=WEIGHT:DIR entries (e.g. en=0.7:shards/en)");
  if (!std::isfinite(sum))
    return InvalidArgument("--data-blend weights are too large; use shares such as 0.7 and 0.3");
  for (auto& e : out) e.weight /= sum;
  return out;
}

Result<DataBlend> DataBlend::Create(std::vector<BlendSource> sources) {
  if (sources.empty()) return InternalError("a data blend needs at least one source");
  double sum = 0;
  for (const auto& s : sources) {
    if (!(s.weight > 0) || !std::isfinite(s.weight))
      return InternalError("blend weights must be positive");
    sum += s.weight;
  }
  DataBlend b;
  b.seq_len_ = sources[0].loader.seq_len();
  b.micro_batch_ = sources[0].loader.micro_batch();
  for (auto& s : sources) {
    if (s.loader.seq_len() != b.seq_len_ || s.loader.micro_batch() != b.micro_batch_)
      return InternalError("blend sources must share seq_len and micro_batch");
    s.weight /= sum;
  }
  b.sources_ = std::move(sources);
  return b;
}

int64_t DataBlend::served_total() const {
  int64_t n = 0;
  for (const auto& s : sources_) n += s.loader.served();
  return n;
}

size_t DataBlend::Pick() const {
  const double next = static_cast<double>(served_total() + 1);
  size_t best = 0;
  double best_deficit = -INFINITY;
  for (size_t i = 0; i < sources_.size(); ++i) {
    const double deficit =
        sources_[i].weight * next - static_cast<double>(sources_[i].loader.served());
    if (deficit > best_deficit) {
      best_deficit = deficit;
      best = i;
    }
  }
  return best;
}

Status DataBlend::Next(std::span<int32_t> tokens, std::span<int32_t> targets) {
  if (static_cast<int64_t>(tokens.size()) != seq_len_ * micro_batch_ ||
      tokens.size() != targets.size())
    return InternalError("batch buffers have the wrong size");
  for (int64_t b = 0; b < micro_batch_; ++b) {
    DataLoader& src = sources_[Pick()].loader;
    ESCALE_RETURN_IF_ERROR(
        src.NextWindow(tokens.data() + b * seq_len_, targets.data() + b * seq_len_));
  }
  return Status::Ok();
}

double DataBlend::epochs(size_t i) const {
  return static_cast<double>(served(i)) / static_cast<double>(sources_[i].loader.windows());
}

std::vector<DataCursor> DataBlend::cursors() const {
  std::vector<DataCursor> out;
  for (const auto& s : sources_) out.push_back(s.loader.cursor());
  return out;
}

Status DataBlend::Restore(const std::vector<DataCursor>& cursors) {
  if (cursors.size() != sources_.size())
    return FormatError("the checkpoint holds " + std::to_string(cursors.size()) +
                       " data cursors for " + std::to_string(sources_.size()) +
                       " sources; resume with the same --data or --data-blend");
  for (size_t i = 0; i < sources_.size(); ++i)
    ESCALE_RETURN_IF_ERROR(sources_[i].loader.Restore(cursors[i]));
  return Status::Ok();
}

}  // namespace escale
