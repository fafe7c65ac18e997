#pragma once
// The normalization of a model's input: x = (pixel - mean) / std per channel, pixels in
// [0, 1]. One type, used by every Options struct that reasons in pixels and by deprocess.
// Light: torch only.

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "cnnviz/options.hpp"

namespace cnnviz {

/// ImageNet RGB mean and std (torchvision's pretrained models).
inline const std::vector<double> kImageNetMean = {0.485, 0.456, 0.406};
inline const std::vector<double> kImageNetStd = {0.229, 0.224, 0.225};
/// The statistics the sample CIFAR-10 ResNets (resnet20/56_cifar10) were trained with: their
/// training script normalizes with the ImageNet values, not with CIFAR-10's own statistics.
inline const std::vector<double> kCifar10Mean = kImageNetMean;
inline const std::vector<double> kCifar10Std = kImageNetStd;

#define CNNVIZ_NORMALIZATION_OPTIONS(X)                                                         \
  X(std::vector<double>, mean, kImageNetMean, "Per-channel mean (1 or C values) subtracted from pixels in [0, 1].") \
  X(std::vector<double>, std, kImageNetStd, "Per-channel std (1 or C values, positive) dividing after the mean.")

/// How model inputs were normalized from pixels in [0, 1]; ImageNet statistics by default.
struct Normalization {
  CNNVIZ_OPTIONS(Normalization, CNNVIZ_NORMALIZATION_OPTIONS)

  Normalization() = default;
  Normalization(std::vector<double> mean, std::vector<double> std) : mean_(std::move(mean)), std_(std::move(std)) {}
  /// torchvision's ImageNet statistics.
  static Normalization imagenet() { return {kImageNetMean, kImageNetStd}; }
  /// What the sample CIFAR-10 ResNets were trained with.
  static Normalization cifar10() { return {kCifar10Mean, kCifar10Std}; }
  /// No normalization: model inputs are pixels in [0, 1].
  static Normalization identity() { return {{0.0}, {1.0}}; }
};

namespace detail {

/// mean and std as (1, C, 1, 1) tensors (one value is broadcast to every channel); `fn`
/// names the caller in errors.
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

/// mean and std of a normalization as (1, C, 1, 1) tensors like x (N, C, H, W).
inline std::pair<torch::Tensor, torch::Tensor> normalization_stats(const Normalization& n, const torch::Tensor& x,
                                                                   const char* fn) {
  return normalization(n.mean(), n.std(), x.size(1), x.options(), fn);
}

/// The valid range of normalized pixels, [(0 - mean) / std, (1 - mean) / std], (1, C, 1, 1) each.
inline std::pair<torch::Tensor, torch::Tensor> valid_range(const std::vector<double>& mean,
                                                           const std::vector<double>& std, int64_t channels,
                                                           const torch::TensorOptions& options, const char* fn) {
  auto ms = normalization(mean, std, channels, options, fn);
  return {-ms.first / ms.second, (1 - ms.first) / ms.second};
}

}  // namespace detail
}  // namespace cnnviz
