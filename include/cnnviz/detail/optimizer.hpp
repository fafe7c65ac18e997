#pragma once
// The update rules the optimization loops share: SGD with momentum and Adam on one tensor,
// in place, with the same arithmetic as torch.optim.SGD and torch.optim.Adam, so that a
// loop here and a reference loop in PyTorch take the same steps.

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>

#include "cnnviz/enums.hpp"
#include "cnnviz/progress.hpp"

namespace cnnviz {

namespace detail {

/// A CPU generator for reproducible start noise, independent of the global seed.
inline at::Generator seeded_generator(int64_t seed) {
  return at::detail::createCPUGenerator(static_cast<uint64_t>(seed));
}

/// Checks the numbers every loop takes.
inline void check_loop_options(int64_t iterations, double learning_rate, const char* fn) {
  TORCH_CHECK_VALUE(iterations > 0, "cnnviz: ", fn, ": iterations must be positive, got ", iterations);
  TORCH_CHECK_VALUE(std::isfinite(learning_rate) && learning_rate > 0, "cnnviz: ", fn,
                    ": learning_rate must be a positive finite number, got ", learning_rate);
}

/// One optimizer's state for one tensor.
class Stepper {
 public:
  Stepper(Optimizer kind, double learning_rate, double momentum, const char* fn)
      : kind_(kind), lr_(learning_rate), momentum_(momentum) {
    TORCH_CHECK_VALUE(std::isfinite(momentum) && momentum >= 0 && momentum < 1, "cnnviz: ", fn,
                      ": momentum must be in [0, 1), got ", momentum);
  }

  void set_learning_rate(double lr) { lr_ = lr; }
  double learning_rate() const { return lr_; }

  /// p <- p - update(g), in place and outside autograd.
  void step(torch::Tensor& p, const torch::Tensor& g) {
    torch::NoGradGuard no_grad;
    ++t_;
    if (kind_ == Optimizer::sgd) {
      if (momentum_ == 0) {
        p.add_(g, -lr_);
        return;
      }
      // torch.optim.SGD: the first buffer is the gradient itself.
      if (!buf_.defined()) buf_ = g.clone();
      else buf_.mul_(momentum_).add_(g);
      p.add_(buf_, -lr_);
      return;
    }
    constexpr double beta2 = 0.999, eps = 1e-8;
    if (!buf_.defined()) {
      buf_ = torch::zeros_like(g);
      sq_ = torch::zeros_like(g);
    }
    buf_.mul_(momentum_).add_(g, 1 - momentum_);
    sq_.mul_(beta2).addcmul_(g, g, 1 - beta2);
    double bc1 = 1 - std::pow(momentum_, static_cast<double>(t_));
    double bc2 = 1 - std::pow(beta2, static_cast<double>(t_));
    auto denom = (sq_.sqrt() / std::sqrt(bc2)).add_(eps);
    p.addcdiv_(buf_, denom, -lr_ / bc1);
  }

 private:
  Optimizer kind_;
  double lr_;
  double momentum_;
  int64_t t_ = 0;
  torch::Tensor buf_, sq_;
};

/// Step decay: lr * decay^floor(step / every), constant when every == 0.
inline double decayed_learning_rate(double lr, double decay, int64_t every, int64_t step) {
  if (every <= 0) return lr;
  return lr * std::pow(decay, static_cast<double>(step / every));
}

/// Collects per-step losses without a host sync per step unless a progress callback needs
/// the value; converts them once at the end.
class LossLog {
 public:
  explicit LossLog(const ProgressCallback& progress) : progress_(progress) {}
  /// Records the loss of `step` (1-based) of `total`; false means the callback said stop.
  bool record(const torch::Tensor& loss, int64_t step, int64_t total) {
    auto l = loss.detach();
    values_.push_back(l);
    if (!progress_) return true;
    return progress_(step, total, l.item<double>());
  }
  int64_t size() const { return static_cast<int64_t>(values_.size()); }
  /// (steps,) float64 on the CPU.
  torch::Tensor tensor() const {
    if (values_.empty()) return torch::empty({0}, torch::kDouble);
    return torch::stack(values_).to(torch::kCPU, torch::kDouble);
  }

 private:
  const ProgressCallback& progress_;
  std::vector<torch::Tensor> values_;
};

}  // namespace detail
}  // namespace cnnviz
