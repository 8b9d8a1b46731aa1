#include "data/megatron_dataset.h"

#include <cstring>

namespace escale::tok {

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr size_t kFixedHeader = 9 + 8 + 1 + 8 + 8;

template <class T>
T ReadLe(const std::byte* p) {
  T v{};
  std::memcpy(&v, p, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  return v;
}

int WidthOf(uint8_t code) {
  switch (code) {
    case 1:
    case 2:
      return 1;  // uint8, int8
    case 3:
    case 8:
      return 2;  // int16, uint16
    case 4:
      return 4;  // int32
    case 5:
      return 8;  // int64
    default:
      return 0;  // 6 float64, 7 float32, anything else
  }
}

bool MulAdd(uint64_t a, uint64_t b, uint64_t& acc) {
  uint64_t m;
  return !__builtin_mul_overflow(a, b, &m) && !__builtin_add_overflow(acc, m, &acc);
}

}  // namespace

Result<MegatronDataset> MegatronDataset::Open(const std::string& prefix, int64_t vocab_size) {
  const std::string idx_path = prefix + ".idx", bin_path = prefix + ".bin";
  ESCALE_ASSIGN_OR_RETURN(auto idx, MappedFile::Open(idx_path));
  ESCALE_ASSIGN_OR_RETURN(auto bin, MappedFile::Open(bin_path));
  const std::byte* p = idx->data();
  const uint64_t size = idx->size();
  if (size < kFixedHeader)
    return FormatError(idx_path + ": " + std::to_string(size) +
                       " bytes is too small for a Megatron index");
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) {
    return FormatError(idx_path + ": not a Megatron index (magic is not \"MMIDIDX\\0\\0\")");
  }
  const auto version = ReadLe<uint64_t>(p + 9);
  if (version != 1)
    return Unsupported(idx_path + ": index version " + std::to_string(version) +
                       " (only 1 is known)");
  MegatronDataset d;
  d.dtype_ = std::to_integer<uint8_t>(p[17]);
  d.width_ = WidthOf(d.dtype_);
  if (d.width_ == 0) {
    return Unsupported(
        idx_path + ": dtype code " + std::to_string(d.dtype_) +
        " is not an integer token type (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 8 uint16)");
  }
  const auto s_count = ReadLe<uint64_t>(p + 18);
  const auto d_count = ReadLe<uint64_t>(p + 26);
  uint64_t need = kFixedHeader;
  if (!MulAdd(s_count, 12, need) || !MulAdd(d_count, 8, need)) {
    return FormatError(idx_path + ": sequence/document counts overflow");
  }
  if (size != need && size != need + s_count) {  // + S int8 modes for multimodal datasets
    return FormatError(idx_path + ": " + std::to_string(s_count) + " sequences and " +
                       std::to_string(d_count) + " document entries need " + std::to_string(need) +
                       " bytes, file has " + std::to_string(size));
  }
  if (d_count < 1)
    return FormatError(idx_path + ": document index is empty (it must start with 0)");
  const std::byte* q = p + kFixedHeader;
  d.lengths_.resize(s_count);
  d.pointers_.resize(s_count);
  d.doc_index_.resize(d_count);
  if (s_count > 0) {
    std::memcpy(d.lengths_.data(), q, s_count * 4);
    std::memcpy(d.pointers_.data(), q + s_count * 4, s_count * 8);
  }
  std::memcpy(d.doc_index_.data(), q + s_count * 12, d_count * 8);
  uint64_t expect_ptr = 0;
  for (uint64_t i = 0; i < s_count; ++i) {
    if (d.lengths_[i] < 0)
      return FormatError(idx_path + ": sequence " + std::to_string(i) + " has negative length");
    if (static_cast<uint64_t>(d.pointers_[i]) != expect_ptr) {
      return FormatError(idx_path + ": sequence " + std::to_string(i) + " starts at byte " +
                         std::to_string(d.pointers_[i]) + ", expected " +
                         std::to_string(expect_ptr) + " (sequences must be contiguous)");
    }
    expect_ptr +=
        static_cast<uint64_t>(d.lengths_[i]) * static_cast<uint64_t>(d.width_);  // < 2^31 * 8 each
    d.total_tokens_ += static_cast<uint64_t>(d.lengths_[i]);
  }
  if (expect_ptr != bin->size()) {
    return FormatError(bin_path + ": index describes " + std::to_string(expect_ptr) +
                       " bytes of tokens, file has " + std::to_string(bin->size()) +
                       ": truncated or mismatched");
  }
  if (d.doc_index_[0] != 0) return FormatError(idx_path + ": document index must start with 0");
  for (uint64_t i = 1; i < d_count; ++i) {
    if (d.doc_index_[i] < d.doc_index_[i - 1]) {
      return FormatError(idx_path + ": document index decreases at entry " + std::to_string(i));
    }
  }
  if (static_cast<uint64_t>(d.doc_index_.back()) != s_count) {
    return FormatError(idx_path + ": document index ends at " +
                       std::to_string(d.doc_index_.back()) + ", expected " +
                       std::to_string(s_count) + " sequences");
  }
  d.bin_ = std::move(bin);
  if (vocab_size > 0) {
    for (uint64_t off = 0; off < expect_ptr; off += static_cast<uint64_t>(d.width_)) {
      const int64_t id = d.TokenAt(off);
      if (id < 0 || id >= vocab_size) {
        return FormatError(bin_path + ": token " + std::to_string(id) + " at byte " +
                           std::to_string(off) + " is outside the vocabulary [0, " +
                           std::to_string(vocab_size) + ")");
      }
    }
  }
  return d;
}

int64_t MegatronDataset::TokenAt(uint64_t off) const {
  const std::byte* p = bin_->data() + off;
  switch (dtype_) {
    case 1:
      return std::to_integer<uint8_t>(p[0]);
    case 2:
      return static_cast<int8_t>(std::to_integer<uint8_t>(p[0]));
    case 3:
      return ReadLe<int16_t>(p);
    case 8:
      return ReadLe<uint16_t>(p);
    case 4:
      return ReadLe<int32_t>(p);
    default:
      return ReadLe<int64_t>(p);
  }
}

std::vector<int64_t> MegatronDataset::Sequence(uint64_t i) const {
  std::vector<int64_t> out;
  if (i >= lengths_.size()) return out;
  out.reserve(static_cast<size_t>(lengths_[i]));
  for (int32_t k = 0; k < lengths_[i]; ++k) {
    out.push_back(TokenAt(static_cast<uint64_t>(pointers_[i]) +
                          static_cast<uint64_t>(k) * static_cast<uint64_t>(width_)));
  }
  return out;
}

}  // namespace escale::tok
