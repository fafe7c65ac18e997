#pragma once
// Redundant filters of a layer: cosine similarity of their weights, correlation of their
// activations (a streaming covariance: update(batch) / merge(other) / result()), groups of
// near-duplicates and the effective number of filters.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cnnviz/model.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

/// Options of filter_redundancy(): every default lives here.
#define CNNVIZ_FILTER_REDUNDANCY_OPTIONS(X)                                                                 \
  X(double, threshold, 0.9,                                                                                 \
    "Filters whose similarity (activation correlation when images are given, else weight cosine) is at "    \
    "least this are joined; groups are the connected components.")                                          \
  X(int64_t, batch_size, 32, "Images per forward pass when filter_redundancy() is given one tensor.")
struct FilterRedundancyOptions {
  CNNVIZ_OPTIONS(FilterRedundancyOptions, CNNVIZ_FILTER_REDUNDANCY_OPTIONS)
};

/// Streaming covariance of a layer's channels, every position of every image one sample of
/// the C-vector. Chan et al.'s pairwise merge, float64.
class ChannelCovarianceAccumulator {
 public:
  /// Adds activations (N, C, ...) or (N, C).
  void update(const torch::Tensor& activations);
  void merge(const ChannelCovarianceAccumulator& other);
  int64_t count() const { return count_; }  ///< samples (positions x images)
  torch::Tensor mean() const { return mean_; }        ///< (C,) float64
  torch::Tensor covariance() const;                   ///< (C, C) float64, sample covariance
  /// (C, C) float64 correlation; rows and columns of constant channels are 0 (diagonal 1).
  torch::Tensor correlation() const;
  /// (C,) bool: channels whose variance is 0 up to rounding (dead or constant filters).
  torch::Tensor constant_mask() const;
  /// State: count, mean (C,), comoment (C, C) (the sum of centred outer products).
  std::map<std::string, torch::Tensor> state() const;
  static ChannelCovarianceAccumulator from_state(const std::map<std::string, torch::Tensor>& state);

 private:
  void merge_moments(int64_t n, const torch::Tensor& mean, const torch::Tensor& comoment);
  int64_t count_ = 0;
  torch::Tensor mean_, comoment_;
};

/// What filter_redundancy() returns (C filters). No `stopped_early` / `interrupted`: it
/// takes no progress callback and `samples` says what a stream covered (Python's
/// FilterRedundancy carries `interrupted` for a Ctrl-C during its stream).
struct FilterRedundancy {
  torch::Tensor weight_similarity;       ///< (C, C) float64 cosine of flattened weights; undefined without weights
  torch::Tensor activation_correlation;  ///< (C, C) float64; undefined without images
  std::string basis;                     ///< "activations" or "weights": what the groups were formed from
  double threshold = 0;
  std::vector<std::vector<int64_t>> groups;  ///< near-duplicate groups of 2 or more, largest first
  /// Participation ratio (sum l)^2 / sum l^2 of the eigenvalues l of the weight cosine matrix,
  /// and of the activation correlation matrix: C for orthogonal / uncorrelated filters, 1 when
  /// all are copies. NaN where not available.
  double effective_filters_weights = 0;
  double effective_filters_activations = 0;
  torch::Tensor constant_filters;  ///< (n,) int64: filters whose activation never varies (dead)
  int64_t samples = 0;             ///< positions x images behind the correlation
};

/// Connected components of the graph with an edge where similarity (C, C) >= threshold
/// (diagonal ignored); components of 2 or more, largest first, members ascending.
std::vector<std::vector<int64_t>> similarity_groups(const torch::Tensor& similarity, double threshold);

/// (sum l)^2 / sum l^2 over the eigenvalues of a symmetric (C, C) matrix, via its trace and
/// Frobenius norm (no eigendecomposition).
double participation_ratio(const torch::Tensor& symmetric);

/// Redundancy from a weight (C, ...) (undefined: none) and a channel covariance (count 0:
/// none); at least one must be given.
FilterRedundancy filter_redundancy(const torch::Tensor& weight, const ChannelCovarianceAccumulator& covariance,
                                   const FilterRedundancyOptions& options = {});

/// Redundancy of `layer`'s filters from its `weight` parameter (when it has one of 2-D or
/// more) and an accumulated covariance of its activations (count 0: none).
FilterRedundancy filter_redundancy(const AnyModel& model, const Layer& layer,
                                   const ChannelCovarianceAccumulator& covariance,
                                   const FilterRedundancyOptions& options = {});

/// Redundancy of `layer`'s filters: its `weight` parameter when it has one (2-D or more),
/// and, when x (N, C, H, W) is defined, the correlation of its activations over x.
FilterRedundancy filter_redundancy(const AnyModel& model, const Layer& layer, const torch::Tensor& x = {},
                                   const FilterRedundancyOptions& options = {});

}  // namespace cnnviz
