#pragma once
// Image parameterizations for activation maximization (Olah et al., "Feature
// Visualization", Distill 2017; the Lucid/Lucent conventions): the optimizer moves a
// parameter tensor, and the image the network sees is a differentiable function of it.
//
//   pixel:   the parameter is the image itself (before colour mixing and the sigmoid);
//   fourier: the parameter is an rfft2 spectrum scaled by 1 / frequency^decay_power, so
//            plain gradient steps favour low frequencies (a preconditioner, not a prior);
//   decorrelate: the three channels are mixed by the square root of ImageNet's colour
//            correlation, so each parameter channel moves a decorrelated colour direction;
//   sigmoid: maps the result into the valid range (0, 1) smoothly.

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cnnviz/enums.hpp"

namespace cnnviz {

namespace detail {

/// The square root of ImageNet's RGB colour correlation (Lucid's color_correlation_svd_sqrt),
/// scaled so its largest column norm is 1: (3, 3), rgb = M @ decorrelated.
inline torch::Tensor color_correlation_sqrt() {
  auto m = torch::tensor({0.26, 0.09, 0.02, 0.27, 0.00, -0.05, 0.27, -0.09, 0.03}, torch::kDouble).view({3, 3});
  return m / m.norm(2, {0}).max();
}

/// Spatial frequency magnitude of each rfft2 bin of an (h, w) image: (h, w / 2 + 1), cycles
/// per pixel, as numpy's fftfreq gives them.
inline torch::Tensor rfft2_frequencies(int64_t h, int64_t w) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto fy = torch::fft::fftfreq(h, opts).view({-1, 1});
  auto fx = torch::fft::rfftfreq(w, opts).view({1, -1});
  return (fy * fy + fx * fx).sqrt();
}

/// The parameter behind a batch of n images of (3, h, w) and the map to RGB in [0, 1].
class ImageParameterization {
 public:
  ImageParameterization(Parameterization kind, int64_t n, int64_t h, int64_t w, bool decorrelate,
                        bool sigmoid, double decay_power, const torch::TensorOptions& options)
      : kind_(kind), n_(n), h_(h), w_(w), decorrelate_(decorrelate), sigmoid_(sigmoid) {
    auto real = options.dtype(torch::kFloat);
    if (decorrelate_) color_ = color_correlation_sqrt().to(real);
    if (kind_ == Parameterization::fourier) {
      // Lucent's scaling: 1 / max(f, 1 / max(h, w))^decay_power; the spectrum is ortho-
      // normalized and divided by 4 as Lucent does, so unit-scale parameters make a sensible image.
      auto f = rfft2_frequencies(h_, w_).clamp_min(1.0 / static_cast<double>(std::max(h_, w_)));
      scale_ = (f.pow(-decay_power) / kFourierDivisor).to(real).unsqueeze(-1);
    }
  }

  /// The shape of the parameter tensor: (n, 3, h, w) or (n, 3, h, w / 2 + 1, 2).
  std::vector<int64_t> shape() const {
    if (kind_ == Parameterization::pixel) return {n_, 3, h_, w_};
    return {n_, 3, h_, w_ / 2 + 1, 2};
  }

  /// RGB images (n, 3, h, w) in [0, 1] (with the sigmoid; otherwise centred on 0.5 and
  /// unbounded), differentiable with respect to `param`.
  torch::Tensor to_rgb(const torch::Tensor& param) const {
    torch::Tensor t = param;
    if (kind_ == Parameterization::fourier)
      t = torch::fft::irfft2(torch::view_as_complex(param * scale_), c10::IntArrayRef{h_, w_},
                             c10::IntArrayRef{-2, -1}, "ortho");
    if (decorrelate_) t = torch::einsum("ij,njhw->nihw", {color_, t});
    return sigmoid_ ? torch::sigmoid(t) : t + 0.5;
  }

  /// The parameter that reproduces RGB images (n, 3, h, w) in [0, 1] (values are clamped to
  /// [1e-4, 1 - 1e-4] first when the sigmoid is used): the inverse of to_rgb.
  torch::Tensor from_rgb(const torch::Tensor& rgb) const {
    torch::NoGradGuard no_grad;
    auto t = rgb.to(torch::kFloat);
    t = sigmoid_ ? torch::logit(t.clamp(1e-4, 1 - 1e-4)) : t - 0.5;
    if (decorrelate_) t = torch::einsum("ij,njhw->nihw", {torch::inverse(color_), t});
    if (kind_ == Parameterization::pixel) return t.contiguous();
    auto spectrum = torch::view_as_real(torch::fft::rfft2(t, c10::nullopt, c10::IntArrayRef{-2, -1}, "ortho"));
    return (spectrum / scale_).contiguous();
  }

 private:
  static constexpr double kFourierDivisor = 4.0;
  Parameterization kind_;
  int64_t n_, h_, w_;
  bool decorrelate_, sigmoid_;
  torch::Tensor color_, scale_;
};

}  // namespace detail
}  // namespace cnnviz
