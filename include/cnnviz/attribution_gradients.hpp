#pragma once
// Gradient maps: saliency (Simonyan et al. 2014), SmoothGrad (Smilkov et al. 2017) and
// guided backprop (Springenberg et al. 2015).

#include <torch/torch.h>

#include "cnnviz/attribution_common.hpp"

namespace cnnviz {

struct SaliencyOptions {
  /// Channel reduction of |gradient| for the map.
  TORCH_ARG(ChannelReduction, reduction) = ChannelReduction::max;
};

struct SmoothGradOptions {
  /// Noisy copies averaged per image.
  TORCH_ARG(int64_t, samples) = 50;
  /// Noise standard deviation as a fraction of each image's range (max - min); the paper's
  /// 10-20 % work well.
  TORCH_ARG(double, noise_level) = 0.15;
  /// Noisy copies per forward/backward pass (bounds memory); the first pass also carries
  /// the N clean images when N < batch_size.
  TORCH_ARG(int64_t, batch_size) = 16;
  TORCH_ARG(ChannelReduction, reduction) = ChannelReduction::max;
  /// Called after each batch; returning false stops (the result averages what ran).
  TORCH_ARG(ProgressCallback, progress) = nullptr;
};

struct GuidedBackpropOptions {
  TORCH_ARG(ChannelReduction, reduction) = ChannelReduction::max;
};

/// Vanilla gradient saliency: the gradient of each sample's target score with respect to
/// x (N, C, H, W); `map` (N, H, W) is |gradient| reduced over channels.
inline Attribution saliency(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                            const SaliencyOptions& options = {}) {
  check_image_batch(x);
  FreezeParameters frozen(model);
  auto g = detail::input_gradient(model, x, [&](const torch::Tensor& l) { return target.resolve(l); });
  return {g.grad, detail::reduce_channels(g.grad, options.reduction()), g.target, g.logits};
}

/// SmoothGrad: the gradient averaged over `samples` copies of each image with Gaussian
/// noise of standard deviation noise_level * (max - min) of that image. x (N, C, H, W) ->
/// attribution (N, C, H, W), map (N, H, W) = |attribution| reduced over channels. The
/// target is resolved on the clean images.
inline Attribution smooth_grad(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                               const SmoothGradOptions& options = {}) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(options.samples() >= 1, "cnnviz: samples must be at least 1, got ", options.samples());
  TORCH_CHECK_VALUE(options.noise_level() >= 0, "cnnviz: noise_level must be non-negative, got ",
                    options.noise_level());
  detail::check_batch_size(options.batch_size());
  FreezeParameters frozen(model);
  const int64_t n = x.size(0);
  Attribution r;
  // The clean forward that resolves the target rides in front of the first batch when the
  // batch is larger than N: on a small CNN a forward of its own would cost a third of a
  // 16-sample call, as torch runs a batch of one down a slower convolution path.
  const bool ride = n < options.batch_size();
  if (!ride) {
    r.logits = detail::logits_of(model, x);
    r.target = target.resolve(r.logits);
  }
  auto flat = x.detach().flatten(1);
  // Standard deviation (not variance) per image, broadcast over its pixels.
  auto sigma = ((std::get<0>(flat.max(1)) - std::get<0>(flat.min(1))) * options.noise_level()).view({n, 1, 1, 1});
  auto sum = torch::zeros_like(x);
  auto count = torch::zeros({n}, x.options());
  // Item k is sample k / N of image k % N, so every batch mixes images evenly.
  const int64_t total = detail::checked_product(n, options.samples(), "smooth_grad", "images", "samples");
  bool done = detail::for_each_batch(total, options.batch_size(), options.progress(), [&](int64_t b, int64_t e) {
    const int64_t c = ride && b == 0 ? n : 0;  // clean images in front of this batch
    auto idx = torch::arange(b, e, x.options().dtype(torch::kLong)).remainder(n);
    auto xb = x.detach().index_select(0, idx);
    xb = xb + torch::randn_like(xb) * sigma.index_select(0, idx);
    if (c > 0) xb = torch::cat({x.detach(), xb});
    auto g = detail::input_gradient(model, xb, [&](const torch::Tensor& logits) {
      if (c == 0) return r.target.index_select(0, idx);
      r.logits = logits.slice(0, 0, n).detach().to(x.scalar_type());
      r.target = target.resolve(r.logits);
      return torch::cat({r.target, r.target.index_select(0, idx)});
    });
    sum.index_add_(0, idx, g.grad.slice(0, c));
    count.index_add_(0, idx, torch::ones({e - b}, x.options()));
    return 0.0;
  });
  r.stopped_early = !done;
  r.attribution = sum / count.clamp_min(1).view({n, 1, 1, 1});
  r.map = detail::reduce_channels(r.attribution, options.reduction());
  return r;
}

/// Guided backprop: the gradient of each sample's target score with respect to x
/// (N, C, H, W) where every ReLU passes back only positive gradients through active units.
/// Needs a model whose ReLUs can be guided (PyModel, ScriptModel).
inline Attribution guided_backprop(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                                   const GuidedBackpropOptions& options = {}) {
  check_image_batch(x);
  FreezeParameters frozen(model);
  auto g = detail::input_gradient(model, x, [&](const torch::Tensor& l) { return target.resolve(l); },
                                  ReluMode::guided);
  return {g.grad, detail::reduce_channels(g.grad, options.reduction()), g.target, g.logits};
}

}  // namespace cnnviz
