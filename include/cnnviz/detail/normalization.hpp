#pragma once
// The normalization of a model's input (mean, std per channel) as tensors, and the range
// a normalized pixel can take: [(0 - mean) / std, (1 - mean) / std].

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace cnnviz {
namespace detail {

/// mean and std as (1, C, 1, 1) tensors (one value is broadcast to every channel).
inline std::pair<torch::Tensor, torch::Tensor> normalization(const std::vector<double>& mean,
                                                             const std::vector<double>& std, int64_t channels,
                                                             const torch::TensorOptions& options, const char* fn) {
  auto ok = [&](const std::vector<double>& v) {
    return v.size() == 1 || static_cast<int64_t>(v.size()) == channels;
  };
  TORCH_CHECK_VALUE(ok(mean) && ok(std), "cnnviz: ", fn, ": mean and std need 1 or ", channels,
                    " values, got ", mean.size(), " and ", std.size());
  for (double s : std) TORCH_CHECK_VALUE(std::isfinite(s) && s > 0, "cnnviz: ", fn, ": std must be positive, got ", s);
  for (double m : mean) TORCH_CHECK_VALUE(std::isfinite(m), "cnnviz: ", fn, ": mean must be finite");
  auto as = [&](const std::vector<double>& v) {
    return torch::tensor(v, torch::kDouble).to(options).view({1, -1, 1, 1}).expand({1, channels, 1, 1}).contiguous();
  };
  return {as(mean), as(std)};
}

/// The valid range of normalized pixels, (1, C, 1, 1) each.
inline std::pair<torch::Tensor, torch::Tensor> valid_range(const std::vector<double>& mean,
                                                           const std::vector<double>& std, int64_t channels,
                                                           const torch::TensorOptions& options, const char* fn) {
  auto ms = normalization(mean, std, channels, options, fn);
  return {-ms.first / ms.second, (1 - ms.first) / ms.second};
}

}  // namespace detail
}  // namespace cnnviz
