#pragma once
// Sizes computed from user numbers (samples x batch, steps x batch, window positions,
// octaves x iterations) checked for int64 overflow: an overflowed count loops a wrong
// number of times and returns a wrong (often all-zero) result without an error.

#include <torch/torch.h>

#include <cstdint>

namespace cnnviz {
namespace detail {

/// a * b, or a ValueError naming both factors when it does not fit in int64 (a, b >= 0).
inline int64_t checked_product(int64_t a, int64_t b, const char* fn, const char* a_name, const char* b_name) {
  int64_t out = 0;
  const bool overflow = a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out);
  TORCH_CHECK_VALUE(!overflow, "cnnviz: ", fn, ": ", a_name, " x ", b_name, " (", a, " x ", b,
                    ") is too large: it does not fit in a 64-bit count; choose a smaller ", b_name);
  return out;
}

/// a * b / c without overflow of the intermediate product (0 <= a, b; c > 0; result fits).
inline int64_t scaled(int64_t a, int64_t b, int64_t c) {
  return static_cast<int64_t>(static_cast<__int128>(a) * b / c);
}

}  // namespace detail
}  // namespace cnnviz
