#include "core/dtype.h"

#include <array>

namespace escale {
namespace {
struct DTypeInfo {
  DType type;
  std::string_view name;
  int bits;
  bool floating;
};
constexpr std::array<DTypeInfo, 22> kTable = {{
    {DType::kBool, "BOOL", 8, false},         {DType::kF4, "F4", 4, true},
    {DType::kF6_E2M3, "F6_E2M3", 6, true},    {DType::kF6_E3M2, "F6_E3M2", 6, true},
    {DType::kU8, "U8", 8, false},             {DType::kI8, "I8", 8, false},
    {DType::kF8_E5M2, "F8_E5M2", 8, true},    {DType::kF8_E4M3, "F8_E4M3", 8, true},
    {DType::kF8_E8M0, "F8_E8M0", 8, true},    {DType::kF8_E4M3FNUZ, "F8_E4M3FNUZ", 8, true},
    {DType::kF8_E5M2FNUZ, "F8_E5M2FNUZ", 8, true}, {DType::kI16, "I16", 16, false},
    {DType::kU16, "U16", 16, false},          {DType::kF16, "F16", 16, true},
    {DType::kBF16, "BF16", 16, true},         {DType::kI32, "I32", 32, false},
    {DType::kU32, "U32", 32, false},          {DType::kF32, "F32", 32, true},
    {DType::kC64, "C64", 64, true},           {DType::kF64, "F64", 64, true},
    {DType::kI64, "I64", 64, false},          {DType::kU64, "U64", 64, false},
}};
}  // namespace

std::string_view DTypeName(DType t) { return kTable[static_cast<size_t>(t)].name; }
int DTypeBits(DType t) { return kTable[static_cast<size_t>(t)].bits; }
bool IsFloatingPoint(DType t) { return kTable[static_cast<size_t>(t)].floating; }
bool IsConvertibleToF32(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kF64;
}
std::optional<DType> ParseDType(std::string_view name) {
  for (const auto& e : kTable)
    if (e.name == name) return e.type;
  return std::nullopt;
}

}  // namespace escale
