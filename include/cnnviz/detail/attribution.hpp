#pragma once
// The machinery behind the attribution methods (declarations; bodies in src/attribution*.cpp):
// the one batched-evaluation engine that SmoothGrad, integrated gradients, occlusion,
// Score-CAM and LIME run their perturbed inputs through, so that each method keeps only
// its perturbation (which rows) and its weighting (what it does with their scores and
// gradients); and the numerical pieces the tests check on their own.

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "cnnviz/attribution_common.hpp"
#include "cnnviz/integrated_gradients.hpp"

namespace cnnviz {
namespace detail {

/// How the engine evaluates rows.
struct Evaluation {
  /// Items per chunk at most; chunks are of nearly equal size (see for_each_batch).
  int64_t batch_size = 32;
  /// Called after each chunk with (offset + items done, total, the consumer's value).
  ProgressCallback progress;
  /// Items reported as done before this run (a method running the engine several times).
  int64_t progress_offset = 0;
  /// The total progress reports; -1: this run's items.
  int64_t progress_total = -1;
  /// Also the gradient of the summed target scores with respect to the rows.
  bool gradient = false;
  /// The ReLU rule of the backward (gradient mode).
  ReluMode relu = ReluMode::normal;
  /// Which score of the target class (class_score).
  Score score = Score::logit;
};

/// The rows of one chunk, made by the method from its items (its perturbation).
struct Rows {
  torch::Tensor input;  ///< (B, C, H, W)
  /// The target class of each row from the chunk's logits (B, K), detached in the rows'
  /// dtype: (B,), or (B, T) for several targets per row.
  std::function<torch::Tensor(const torch::Tensor& logits)> target;
};

/// Rows' target when it does not depend on their logits: t (B,) or (B, T).
std::function<torch::Tensor(const torch::Tensor& logits)> fixed_target(torch::Tensor t);

/// What the model gave for one chunk's rows.
struct Evaluated {
  torch::Tensor logits;  ///< (B, K), detached, in the rows' dtype
  torch::Tensor target;  ///< (B,) or (B, T): the rows' targets
  torch::Tensor score;   ///< class_score(logits, target, score): (B,) or (B, T)
  torch::Tensor grad;    ///< gradient mode: (B, C, H, W) d sum(score) / d rows, in the rows' dtype
};

/// One forward (with gradient mode, and a backward of the summed target scores) of rows.
Evaluated evaluate_rows(const AnyModel& model, const Rows& rows, const Evaluation& how);

/// What a run of the engine did.
struct BatchRun {
  int64_t done = 0;      ///< items evaluated (a prefix of [0, total))
  bool stopped = false;  ///< the progress callback asked to stop (possibly after the last chunk)
};

/// The batched-evaluation engine: items [0, total) in the fewest nearly equal chunks of at
/// most how.batch_size; for each chunk [b, e), `make(b, e)` builds its rows, the model
/// evaluates them (evaluate_rows) and `consume(b, e, evaluated)` accumulates them and
/// returns the value progress reports. Stops early when the callback returns false.
BatchRun evaluate_batches(const AnyModel& model, int64_t total, const Evaluation& how,
                          const std::function<Rows(int64_t begin, int64_t end)>& make,
                          const std::function<double(int64_t begin, int64_t end, const Evaluated&)>& consume);

/// The baseline (N, C, H, W) of integrated gradients for x (N, C, H, W), as o.baseline()
/// says (also the deletion/insertion baselines of analysis/faithfulness.hpp).
torch::Tensor make_baseline(const torch::Tensor& x, const IntegratedGradientsOptions& o);

/// Quadrature nodes in [0, 1] and weights summing to 1 for `steps` points.
std::pair<std::vector<double>, std::vector<double>> quadrature(IntegrationMethod method, int64_t steps);

struct RidgeFit {
  torch::Tensor coef;  // (S,)
  double intercept = 0;
  double r2 = 0;
};

/// Weighted ridge regression y ~ Z coef + intercept, minimizing
/// sum_i w_i (y_i - z_i coef - b)^2 + alpha |coef|^2; Z (M, S), y (M,), w (M,). In double.
RidgeFit weighted_ridge(const torch::Tensor& z, const torch::Tensor& y, const torch::Tensor& w, double alpha);

/// Bilinear resize of maps (N, h, w) -> (N, H, W) (align_corners false): how a CAM at its
/// layer's resolution is placed on the image, by the CAMs and by the faithfulness metrics.
torch::Tensor upsample_maps(const torch::Tensor& maps, int64_t height, int64_t width);

}  // namespace detail
}  // namespace cnnviz
