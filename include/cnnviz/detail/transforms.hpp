#pragma once
// Random transforms applied to an image batch at each step of activation maximization
// (padding, jitter, scaling, rotation), so the optimized image must excite the network
// robustly and does not collapse into high-frequency patterns (Mordvintsev et al.,
// "Feature Visualization", 2017). All of them, for every image of the batch, are one
// affine_grid/grid_sample call.

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace cnnviz {
namespace detail {

/// The random transforms of one step.
struct TransformRanges {
  int64_t pad = 0;         ///< border added on each side (the canvas grows by 2 * pad)
  int64_t jitter = 0;      ///< integer shifts drawn from [-jitter, jitter] pixels
  double scale_min = 1;    ///< zoom factor drawn from [scale_min, scale_max]
  double scale_max = 1;
  double degrees = 0;      ///< rotation drawn from [-degrees, degrees]

  bool identity() const {
    return pad == 0 && jitter == 0 && scale_min == 1 && scale_max == 1 && degrees == 0;
  }
};

/// Per-image parameters of one affine transform.
struct AffineParams {
  double scale = 1;    ///< > 1 zooms in
  double radians = 0;  ///< rotation about the centre (positive: clockwise as displayed, y down)
  double dy = 0, dx = 0;  ///< shift of the content, pixels (positive: down, right)
};

/// affine_grid matrices (N, 2, 3) that map an (H, W) image onto an (H + 2 pad, W + 2 pad)
/// canvas with the centres aligned, then scale, rotate about the centre and shift. Areas
/// outside the image sample zeros (the mean colour of a normalized image).
inline torch::Tensor affine_matrices(const std::vector<AffineParams>& params, int64_t height,
                                     int64_t width, int64_t pad) {
  const double h = static_cast<double>(height), w = static_cast<double>(width);
  const double ho = h + 2.0 * pad, wo = w + 2.0 * pad;
  auto theta = torch::empty({static_cast<int64_t>(params.size()), 2, 3}, torch::kDouble);
  auto a = theta.accessor<double, 3>();
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    // Pixel space: in - c_in = M (out - c_out) - shift, M = R(-angle) / scale (the inverse
    // of the forward zoom and rotation); normalized coordinates rescale each axis.
    double c = std::cos(p.radians) / p.scale, s = std::sin(p.radians) / p.scale;
    a[i][0][0] = c * wo / w;
    a[i][0][1] = s * ho / w;
    a[i][0][2] = -2.0 * p.dx / w;
    a[i][1][0] = -s * wo / h;
    a[i][1][1] = c * ho / h;
    a[i][1][2] = -2.0 * p.dy / h;
  }
  return theta;
}

/// Applies `params` (one per image) to x (N, C, H, W) -> (N, C, H + 2 pad, W + 2 pad) with
/// bilinear sampling; differentiable with respect to x.
inline torch::Tensor affine_transform(const torch::Tensor& x, const std::vector<AffineParams>& params,
                                      int64_t pad) {
  TORCH_CHECK_VALUE(x.dim() == 4 && static_cast<int64_t>(params.size()) == x.size(0),
                    "cnnviz: affine_transform needs one parameter set per image of (N, C, H, W)");
  namespace F = torch::nn::functional;
  auto theta = affine_matrices(params, x.size(2), x.size(3), pad).to(x.options());
  auto grid = F::affine_grid(theta, {x.size(0), x.size(1), x.size(2) + 2 * pad, x.size(3) + 2 * pad},
                             /*align_corners=*/false);
  return F::grid_sample(x, grid, F::GridSampleFuncOptions().mode(torch::kBilinear)
                                     .padding_mode(torch::kZeros).align_corners(false));
}

/// Draws one set of parameters per image from `ranges`.
inline std::vector<AffineParams> draw_affine(const TransformRanges& ranges, int64_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<int64_t> shift(-ranges.jitter, ranges.jitter);
  std::uniform_real_distribution<double> scale(ranges.scale_min, ranges.scale_max);
  std::uniform_real_distribution<double> angle(-ranges.degrees, ranges.degrees);
  std::vector<AffineParams> out(static_cast<size_t>(n));
  for (auto& p : out) {
    p.dy = static_cast<double>(shift(rng));
    p.dx = static_cast<double>(shift(rng));
    p.scale = ranges.scale_min == ranges.scale_max ? ranges.scale_min : scale(rng);
    p.radians = ranges.degrees == 0 ? 0.0 : angle(rng) * M_PI / 180.0;
  }
  return out;
}

/// One random transform per image of x (N, C, H, W); x itself when `ranges` is the identity.
inline torch::Tensor random_transform(const torch::Tensor& x, const TransformRanges& ranges,
                                      std::mt19937_64& rng) {
  if (ranges.identity()) return x;
  return affine_transform(x, draw_affine(ranges, x.size(0), rng), ranges.pad);
}

/// Integer jitter: x rolled by (dy, dx) drawn from [-jitter, jitter] (the same for the whole
/// batch), as feature inversion and deep dream use it.
inline torch::Tensor random_roll(const torch::Tensor& x, int64_t jitter, std::mt19937_64& rng) {
  if (jitter <= 0) return x;
  std::uniform_int_distribution<int64_t> shift(-jitter, jitter);
  int64_t dy = shift(rng), dx = shift(rng);
  if (dy == 0 && dx == 0) return x;
  return torch::roll(x, {dy, dx}, {2, 3});
}

}  // namespace detail
}  // namespace cnnviz
