#pragma once
// The enums more than one area uses (light: no torch).

namespace cnnviz {

/// How values are reduced: over channels (a (N, C, H, W) attribution -> (N, H, W) map of
/// |a|), over positions (a filter's response per image) or over images (a metric).
/// Each function states which values it accepts and refuses the others.
enum class Reduction {
  none,  ///< keep every value (metrics: one per image)
  mean,  ///< the mean
  max,   ///< the maximum
};

/// Which score of the target class a perturbation method compares.
enum class Score { logit, probability };

/// The optimizer of an optimization loop (inversion, maximization, deep dream).
enum class Optimizer {
  sgd,   ///< SGD with (heavy-ball) momentum, as torch.optim.SGD
  adam,  ///< Adam, as torch.optim.Adam (momentum is beta1, beta2 = 0.999, eps = 1e-8)
};

/// Where feature inversion's image starts (InversionOptions::init_image overrides it);
/// here because inversion and the layer-information analysis both use it.
enum class InversionInit {
  noise,    ///< standard normal noise (seeded), as the notebook does
  zeros,    ///< the mean image (0 in normalized space)
  blurred,  ///< x blurred with a Gaussian of init_blur_sigma pixels
};

/// How activation maximization represents the image it optimizes.
enum class Parameterization {
  pixel,    ///< one parameter per pixel and channel
  fourier,  ///< an rfft2 spectrum with 1 / f^decay_power frequency scaling
};

/// The kernel of centered kernel alignment (cka()).
enum class CkaKernel {
  linear,  ///< X X^T: streams over batches (minibatch HSIC)
  rbf,     ///< exp(-|x - y|^2 / (2 sigma^2)): one batch only (its bandwidth comes from the batch)
};

/// Name of a Reduction value, for messages.
inline const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::mean: return "mean";
    case Reduction::max: return "max";
  }
  return "?";
}

}  // namespace cnnviz
