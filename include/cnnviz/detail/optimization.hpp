#pragma once
// Internals of the optimization loops that tests check directly (declarations only; the
// bodies are in src/optimization.cpp).

#include <torch/torch.h>

#include <cstdint>
#include <utility>

#include "cnnviz/maximization.hpp"

namespace cnnviz {
namespace detail {

/// The objective for each image of x (B, 3, H, W): (B,), in the autograd graph of x.
/// `base` is the (h, w) of the layer's activation for the untransformed image: a neuron
/// position refers to it, and is shifted by half the growth of a padded canvas.
torch::Tensor objective_values(const AnyModel& model, const torch::Tensor& x, const Objective& o, const char* fn,
                               std::pair<int64_t, int64_t> base = {-1, -1});

}  // namespace detail
}  // namespace cnnviz
