#pragma once
// What the attribution methods share: the target classes, the input normalization, the
// result of a gradient method, batched loops.

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cnnviz/detail/checked_size.hpp"
#include "cnnviz/enums.hpp"
#include "cnnviz/normalization.hpp"
#include "cnnviz/image.hpp"
#include "cnnviz/model.hpp"
#include "cnnviz/progress.hpp"

namespace cnnviz {

/// The class whose score a method explains (or an attack moves away from / toward):
/// the predicted class of each sample (default), one class for all samples, or one class
/// per sample.
class Target {
 public:
  /// The predicted class (argmax of the logits) of each sample.
  Target() = default;
  /// One class for every sample.
  template <class I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  Target(I c) : kind_(Kind::all), all_(static_cast<int64_t>(c)) {}  // NOLINT: implicit by design
  /// One class per sample.
  Target(std::vector<int64_t> per_sample)  // NOLINT: implicit by design
      : kind_(Kind::per_sample), per_sample_(torch::tensor(per_sample, torch::kLong)) {}
  /// An integer tensor: a scalar (one class for all) or (N,) (one per sample); undefined
  /// means the predicted class.
  Target(const torch::Tensor& t) {  // NOLINT: implicit by design
    if (!t.defined()) return;
    TORCH_CHECK_VALUE(!t.is_floating_point() && !t.is_complex() && t.scalar_type() != torch::kBool,
                      "cnnviz: a target tensor must hold integers, got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.dim() <= 1, "cnnviz: a target tensor must be a scalar or (N,), got shape ",
                      t.sizes());
    if (t.dim() == 0) {
      kind_ = Kind::all;
      all_ = t.item<int64_t>();
    } else {
      kind_ = Kind::per_sample;
      per_sample_ = t.detach().to(torch::kCPU, torch::kLong);
    }
  }

  bool is_predicted() const { return kind_ == Kind::predicted; }

  /// The classes as an (N,) int64 tensor on the logits' device, checked against the
  /// logits (N, K): one per sample, each in [0, K).
  torch::Tensor resolve(const torch::Tensor& logits) const {
    TORCH_CHECK_VALUE(logits.dim() == 2, "cnnviz: the model must return logits of shape (N, K), got ",
                      logits.sizes());
    const int64_t n = logits.size(0), k = logits.size(1);
    torch::Tensor t;
    switch (kind_) {
      case Kind::predicted:
        return logits.detach().argmax(1);
      case Kind::all:
        check_range(all_, k);
        return torch::full({n}, all_, logits.options().dtype(torch::kLong));
      case Kind::per_sample:
        TORCH_CHECK_VALUE(per_sample_.numel() == n, "cnnviz: ", per_sample_.numel(),
                          " targets for a batch of ", n, " samples");
        if (n > 0) {
          check_range(per_sample_.min().item<int64_t>(), k);
          check_range(per_sample_.max().item<int64_t>(), k);
        }
        return per_sample_.to(logits.device());
    }
    return t;
  }

 private:
  static void check_range(int64_t c, int64_t k) {
    TORCH_CHECK_INDEX(c >= 0 && c < k, "cnnviz: target class ", c, " is out of range for a model with ",
                      k, " classes");
  }
  enum class Kind { predicted, all, per_sample } kind_ = Kind::predicted;
  int64_t all_ = 0;
  torch::Tensor per_sample_;
};

/// One target or several (the CAM methods make a map for each): a Target or anything a
/// Target is made from (a class index, one class per sample, a tensor), a
/// std::vector<Target> or a brace list {Target(3), Target(5)}; `{}` is the predicted class.
class Targets {
 public:
  Targets() : targets_{Target()} {}
  template <class T, std::enable_if_t<std::is_constructible_v<Target, T&&> &&
                                          !std::is_same_v<std::decay_t<T>, Targets> &&
                                          !std::is_same_v<std::decay_t<T>, std::vector<Target>>,
                                      int> = 0>
  Targets(T&& target) : targets_{Target(std::forward<T>(target))} {}  // NOLINT: implicit by design
  Targets(std::vector<Target> targets) : targets_(std::move(targets)) {}  // NOLINT: implicit by design
  Targets(std::initializer_list<Target> targets) : targets_(targets) {}  // NOLINT: implicit by design

  const std::vector<Target>& list() const { return targets_; }
  operator const std::vector<Target>&() const { return targets_; }  // NOLINT: reads as the list

 private:
  std::vector<Target> targets_;
};

/// What a gradient method returns.
struct Attribution {
  torch::Tensor attribution;  ///< (N, C, H, W), signed, like x
  torch::Tensor map;          ///< (N, H, W): |attribution| reduced over channels
  torch::Tensor target;       ///< (N,) int64: the class explained for each sample
  torch::Tensor logits;       ///< (N, K): the model's output for x
  bool stopped_early = false;  ///< the progress callback stopped the loop (partial result; single-pass methods never stop)
  bool interrupted = false;    ///< Ctrl-C stopped the loop (set by the Python bindings)
};

namespace detail {

/// |a| reduced over channels (Reduction::max or Reduction::mean; others are refused):
/// (N, C, H, W) -> (N, H, W).
torch::Tensor reduce_channels(const torch::Tensor& a, Reduction r);

/// The one target-score helper: the score of each row's target class from logits (B, K),
/// as the logit or the softmax probability. target (B,) gives (B,); target (B, T) (several
/// targets per row) gives (B, T).
torch::Tensor class_score(const torch::Tensor& logits, const torch::Tensor& target, Score s = Score::logit);

/// Logits checked against the batch: (N, K) with N = the batch size.
const torch::Tensor& checked_logits(const torch::Tensor& logits, int64_t n);

/// Checks a batch size option.
void check_batch_size(int64_t batch_size);

/// Runs `fn(begin, end)` over [0, total) in the fewest chunks of at most `batch_size`,
/// all of nearly equal size (a remainder of one would run down torch's slower batch-of-one
/// convolution), reporting progress after each chunk with the value `fn` returns. Returns
/// false when the callback stopped the loop.
bool for_each_batch(int64_t total, int64_t batch_size, const ProgressCallback& progress,
                    const std::function<double(int64_t, int64_t)>& fn);

/// Logits of x (N, C, H, W) without autograd, in x's dtype: (N, K).
torch::Tensor logits_of(const AnyModel& model, const torch::Tensor& x);

}  // namespace detail
}  // namespace cnnviz
