// Element types as safetensors names them, with their sizes in bits.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace escale {

// Declaration order follows safetensors' "increasing alignment" order, which its writer sorts by.
enum class DType : uint8_t {
  kBool, kF4, kF6_E2M3, kF6_E3M2, kU8, kI8, kF8_E5M2, kF8_E4M3, kF8_E8M0, kF8_E4M3FNUZ,
  kF8_E5M2FNUZ, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kC64, kF64, kI64, kU64,
};

std::string_view DTypeName(DType t);
std::optional<DType> ParseDType(std::string_view name);
int DTypeBits(DType t);
// Bytes per element for whole-byte types; 0 for sub-byte types (F4, F6).
inline int DTypeSize(DType t) {
  return DTypeBits(t) % 8 == 0 ? DTypeBits(t) / 8 : 0;
}
// The dtypes escale computes with or converts to f32 (F32, F16, BF16, F64).
bool IsConvertibleToF32(DType t);

}  // namespace escale
