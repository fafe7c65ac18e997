#pragma once
// Statistics of a layer's filters across many images, as a streaming accumulator:
// update(batch) / merge(other) / result(), whose state (a name -> tensor map) can be
// gathered across torch.distributed ranks and merged. Memory is independent of the number
// of images unless per-image responses are kept on request.
//
// A filter's response to an image is its activation averaged over positions, m[n, c]
// (a 2-D (N, C) layer: the unit itself). Mean and variance of m over images accumulate
// with Welford's update and Chan et al.'s parallel merge, in float64.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

#include "cnnviz/model.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

/// Options of filter_statistics(): every default lives here. A filter is active for an
/// image when its response m[n, c] exceeds `threshold` times the image's mean response over
/// the layer's filters (`relative`, the default: scale-free, so it works before or after a
/// ReLU and at any depth), or `threshold` itself when `relative` is false (e.g. 0 after a
/// ReLU: "fires anywhere").
#define CNNVIZ_FILTER_STATISTICS_OPTIONS(X)                                                                     \
  X(double, threshold, 1.0, "Activity threshold: relative to the image's mean response, or absolute.")          \
  X(bool, relative, true, "True: threshold times the image's mean response over filters; false: threshold itself.") \
  X(int64_t, top_k, 5, "The k images with the largest response kept per filter (exactly, also across merges).") \
  X(double, consistent_fraction, 0.9, "Consistently active: active for at least this fraction of the images.")  \
  X(double, specific_fraction, 0.1,                                                                             \
    "Image-specific: active for at least one image and at most this fraction of them.")                         \
  X(bool, keep_per_image, false,                                                                                \
    "Keep m (N, C): memory grows with the number of images (needed for the heatmap plot).")                     \
  X(int64_t, batch_size, 32, "Images per forward pass when filter_statistics() is given one tensor.")
struct FilterStatisticsOptions {
  CNNVIZ_OPTIONS(FilterStatisticsOptions, CNNVIZ_FILTER_STATISTICS_OPTIONS)
};

/// What filter_statistics() returns; C is the layer's channel count, k = min(top_k, count).
/// No `stopped_early` / `interrupted`: filter_statistics() takes no progress callback (each
/// batch is one forward pass) and `count` says how many images a stream covered (Python's
/// FilterStatistics carries `interrupted` for a Ctrl-C during its stream).
struct FilterStatistics {
  int64_t count = 0;                ///< images seen
  torch::Tensor mean;               ///< (C,) float64: mean over images of m[n, c]
  torch::Tensor std;                ///< (C,) float64: sample standard deviation of m over images (0 for one image)
  torch::Tensor max;                ///< (C,) float64: largest activation at any position of any image
  torch::Tensor fraction_active;    ///< (C,) float64: share of the images for which the filter is active
  /// (C,) float64: Treves-Rolls sparsity of m over images, (1 - mean^2 / mean(m^2)) / (1 - 1/N),
  /// in [0, 1] for non-negative responses: 0 = the same response to every image, 1 = one image only.
  torch::Tensor selectivity;
  torch::Tensor top_share;          ///< (C,) float64: top image's response over the summed response
  torch::Tensor top_values;         ///< (C, k) float64: the largest responses, largest first
  torch::Tensor top_indices;        ///< (C, k) int64: their image indices
  torch::Tensor consistent;         ///< (n1,) int64: consistently active filters, largest mean first
  torch::Tensor specific;           ///< (n2,) int64: image-specific filters, most selective first
  torch::Tensor per_image;          ///< (N, C) float32 m, by image index, when kept; else undefined
  torch::Tensor per_image_indices;  ///< (N,) int64 image indices of per_image's rows
};

/// Streaming accumulator of FilterStatistics.
class FilterStatisticsAccumulator {
 public:
  explicit FilterStatisticsAccumulator(FilterStatisticsOptions options = {});

  /// Adds a batch of activations (N, C, ...) (any device; statistics live on the CPU).
  /// `indices` (N,) int64 names the images (e.g. dataset indices on a distributed rank);
  /// undefined: the running count onwards.
  void update(const torch::Tensor& activations, const torch::Tensor& indices = {});
  /// Adds another accumulator's images (same options and channel count).
  void merge(const FilterStatisticsAccumulator& other);
  FilterStatistics result() const;

  /// The state as tensors (count, mean, m2, max, active, top_values, top_indices and,
  /// when kept, per_image / per_image_indices): gather it across ranks and merge.
  std::map<std::string, torch::Tensor> state() const;
  static FilterStatisticsAccumulator from_state(const std::map<std::string, torch::Tensor>& state,
                                                FilterStatisticsOptions options = {});
  int64_t count() const { return count_; }
  const FilterStatisticsOptions& options() const { return options_; }

 private:
  FilterStatisticsOptions options_;
  int64_t count_ = 0;
  torch::Tensor mean_, m2_, max_, active_, top_values_, top_indices_;  // (C,) / (k, C)
  std::vector<torch::Tensor> per_image_, per_image_indices_;
};

/// Filter statistics of `layer` over the images x (N, C, H, W), in batches of
/// options.batch_size, without autograd.
FilterStatistics filter_statistics(const AnyModel& model, const torch::Tensor& x, const Layer& layer,
                                   const FilterStatisticsOptions& options = {});

}  // namespace cnnviz
