#pragma once
// Occlusion (Zeiler & Fergus 2014): how much the target's score drops when a window of the
// input is replaced by a baseline value, for every window position, in batches.

#include <torch/torch.h>

#include <vector>

#include "cnnviz/attribution_common.hpp"

namespace cnnviz {

struct OcclusionOptions {
  /// Window (height, width) in pixels; one value means a square.
  TORCH_ARG(std::vector<int64_t>, window) = std::vector<int64_t>({16, 16});
  /// Step between windows (height, width); one value means the same in both directions.
  TORCH_ARG(std::vector<int64_t>, stride) = std::vector<int64_t>({8, 8});
  /// The value occluded pixels get, in the input's (normalized) space: 0 is the mean color.
  TORCH_ARG(double, baseline) = 0.0;
  /// Compare logits or softmax probabilities.
  TORCH_ARG(Score, score) = Score::logit;
  /// Occluded copies per forward pass (bounds memory).
  TORCH_ARG(int64_t, batch_size) = 32;
  /// Called after each batch; returning false stops (windows not yet run count as no drop).
  TORCH_ARG(ProgressCallback, progress) = nullptr;
};

struct OcclusionResult {
  torch::Tensor map;     ///< (N, H, W): mean drop of the windows covering each pixel (0 if none)
  torch::Tensor scores;  ///< (N, nh, nw): drop f(x) - f(x occluded) per window position
  torch::Tensor target;  ///< (N,) int64
  torch::Tensor logits;  ///< (N, K) for x
  bool stopped_early = false;
  bool interrupted = false;    ///< Ctrl-C stopped the loop (set by the Python bindings)
};

namespace detail {

/// A (height, width) pair from one or two positive values.
inline std::pair<int64_t, int64_t> pair_option(const std::vector<int64_t>& v, const char* name) {
  TORCH_CHECK_VALUE(v.size() == 1 || v.size() == 2, "cnnviz: ", name, " must have 1 or 2 values, got ",
                    v.size());
  int64_t a = v[0], b = v.size() == 2 ? v[1] : v[0];
  TORCH_CHECK_VALUE(a >= 1 && b >= 1, "cnnviz: ", name, " must be positive, got ", v);
  return {a, b};
}

/// The target class's score from logits (N, K), as logits or probabilities.
inline torch::Tensor class_score(const torch::Tensor& logits, const torch::Tensor& target, Score s) {
  auto v = s == Score::probability ? logits.softmax(1) : logits;
  return v.gather(1, target.view({-1, 1})).squeeze(1);
}

}  // namespace detail

/// Occlusion sensitivity of x (N, C, H, W): every window (all channels) at positions
/// 0, stride, 2 stride, ... that fit in the image is set to `baseline`, and the drop of the
/// target's score is recorded per position (N, nh, nw) and averaged per pixel (N, H, W).
inline OcclusionResult occlusion(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                                 const OcclusionOptions& options = {}) {
  check_image_batch(x);
  auto [wh, ww] = detail::pair_option(options.window(), "window");
  auto [sh, sw] = detail::pair_option(options.stride(), "stride");
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  TORCH_CHECK_VALUE(wh <= h && ww <= w, "cnnviz: the occlusion window (", wh, ", ", ww,
                    ") is larger than the image (", h, ", ", w, ")");
  detail::check_batch_size(options.batch_size());
  FreezeParameters frozen(model);
  torch::NoGradGuard no_grad;
  const int64_t nh = (h - wh) / sh + 1, nw = (w - ww) / sw + 1;
  const int64_t positions = detail::checked_product(nh, nw, "occlusion", "window rows", "window columns");
  const int64_t items = detail::checked_product(n, positions, "occlusion", "images", "window positions");
  OcclusionResult r;
  r.logits = detail::logits_of(model, x);
  r.target = target.resolve(r.logits);
  auto clean = detail::class_score(r.logits, r.target, options.score());
  auto drops = torch::zeros({items}, x.options());
  auto sum = torch::zeros({n, h, w}, x.options());
  auto count = torch::zeros({n, h, w}, x.options());
  auto rows = torch::arange(h, x.options().dtype(torch::kLong)).view({1, h});
  auto cols = torch::arange(w, x.options().dtype(torch::kLong)).view({1, w});
  // Item k is window position k % P of image k / P.
  bool done = detail::for_each_batch(items, options.batch_size(), options.progress(),
                                     [&](int64_t b, int64_t e) {
    auto idx = torch::arange(b, e, x.options().dtype(torch::kLong));
    auto img = idx.div(positions, "floor"), pos = idx.remainder(positions);
    auto top = (pos.div(nw, "floor") * sh).view({-1, 1}), left = (pos.remainder(nw) * sw).view({-1, 1});
    auto in_rows = (rows >= top) & (rows < top + wh), in_cols = (cols >= left) & (cols < left + ww);
    auto mask = in_rows.unsqueeze(2) & in_cols.unsqueeze(1);  // (B, H, W)
    auto occluded = torch::where(mask.unsqueeze(1), torch::full({}, options.baseline(), x.options()),
                                 x.index_select(0, img));
    auto logits = detail::checked_logits(model.forward(occluded), e - b).to(x.scalar_type());
    auto drop = clean.index_select(0, img) - detail::class_score(logits, r.target.index_select(0, img), options.score());
    drops.slice(0, b, e).copy_(drop);
    auto m = mask.to(x.scalar_type());
    sum.index_add_(0, img, m * drop.view({-1, 1, 1}));
    count.index_add_(0, img, m);
    return 0.0;
  });
  r.stopped_early = !done;
  r.scores = drops.view({n, nh, nw});
  r.map = sum / count.clamp_min(1);
  return r;
}

}  // namespace cnnviz
