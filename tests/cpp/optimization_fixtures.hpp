#pragma once
// Small random networks and reference objectives shared by test_inversion.cpp and
// test_maximization.cpp.
#include <torch/torch.h>

#include "cnnviz/model.hpp"

namespace fixtures {

/// conv-relu-conv-relu-pool-conv-relu-pool-flatten-linear on 3 x 16 x 16 inputs, seeded,
/// with He initialization so activations keep a unit scale through the layers.
inline torch::nn::Sequential small_cnn(int64_t classes = 5) {
  torch::manual_seed(0);
  using namespace torch::nn;
  Sequential seq(Conv2d(Conv2dOptions(3, 8, 3).padding(1)), ReLU(),             // 0, 1
                 Conv2d(Conv2dOptions(8, 8, 3).padding(1)), ReLU(), MaxPool2d(2),  // 2, 3, 4
                 Conv2d(Conv2dOptions(8, 12, 3).padding(1)), ReLU(),            // 5, 6
                 AdaptiveAvgPool2d(2), Flatten(), Linear(12 * 4, classes));      // 7, 8, 9
  torch::NoGradGuard no_grad;
  for (auto& p : seq->named_parameters()) {
    if (p.key().find("weight") != std::string::npos)
      torch::nn::init::kaiming_normal_(p.value(), 0, torch::kFanIn, torch::kReLU);
    else
      p.value().fill_(0.05);
  }
  return seq;
}

/// The Mahendran & Vedaldi objective written with plain ATen ops (independent of the
/// fused regularizers): ||a - t||^2 / ||t||^2 + la sum |z|^alpha + lt TV_beta(z).
inline torch::Tensor reference_inversion_loss(const torch::Tensor& target, const torch::Tensor& act,
                                              const torch::Tensor& z, double la, double alpha, double lt,
                                              double beta) {
  auto feat = (act - target).pow(2).sum() / target.pow(2).sum();
  auto an = z.abs().pow(alpha).sum();
  auto c = z.narrow(2, 0, z.size(2) - 1).narrow(3, 0, z.size(3) - 1);
  auto right = z.narrow(2, 0, z.size(2) - 1).narrow(3, 1, z.size(3) - 1);
  auto down = z.narrow(2, 1, z.size(2) - 1).narrow(3, 0, z.size(3) - 1);
  auto tv = ((right - c).pow(2) + (down - c).pow(2)).pow(beta / 2).sum();
  return feat + la * an + lt * tv;
}

/// The output of the first `upto` + 1 children of seq.
inline torch::Tensor run_upto(torch::nn::Sequential& seq, const torch::Tensor& x, size_t upto) {
  auto h = x;
  for (size_t i = 0; i <= upto; ++i) h = (seq->begin() + static_cast<std::ptrdiff_t>(i))->forward(h);
  return h;
}

}  // namespace fixtures
