#pragma once
// How many intra-op threads a call uses. One small CNN image (ResNet-20 on 32x32: one
// forward/backward of about 0.1 GFLOP) costs per-op overhead, and torch runs a batch of
// one down its native convolution, whose BLAS threads compete with a second OpenMP thread:
// here it takes about 10 ms on one thread and 38 ms on two. Large work (a 224x224 image,
// a batch of path points) gains from every thread. So each call estimates its work and
// runs small work on one thread, restoring the caller's count after.

#include <torch/torch.h>

#include <cstdint>
#include <limits>

#include "cnnviz/detail/thread_scope.hpp"
#include "cnnviz/model.hpp"

namespace cnnviz {

/// The work of a call that forwards `rows` images like x (N, C, H, W) per pass: input
/// elements per pass times the model's parameters, a proxy for FLOPs that needs no pass.
/// A model that shows no parameters (a FunctionModel, a Python callable wrapping a network)
/// has unknown work: infinity, so it runs at the caller's count rather than being taken for
/// a tiny network and held to one thread.
inline double estimated_work(const AnyModel& model, const torch::Tensor& x, int64_t rows) {
  double params = 0;
  for (const auto& p : model.parameters()) params += static_cast<double>(p.numel());
  if (params == 0) return std::numeric_limits<double>::infinity();
  const double per_image = x.dim() >= 1 && x.size(0) > 0 ? static_cast<double>(x.numel() / x.size(0)) : 0.0;
  return static_cast<double>(rows < 1 ? 1 : rows) * per_image * params;
}

/// A ThreadScope at the count the policy chooses for this model and work: see
/// detail::choose_num_threads (explicit setting, CNNVIZ_NUM_THREADS, then the size of the
/// work against the caller's torch thread count).
inline int policy_threads(const AnyModel& model, const torch::Tensor& x, int64_t rows) {
  return detail::choose_num_threads(estimated_work(model, x, rows), detail::current_num_threads());
}

}  // namespace cnnviz
