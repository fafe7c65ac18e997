#pragma once
// Centered kernel alignment (Kornblith et al. 2019) between every pair of layers of two
// models (or of one), from minibatch HSIC estimates (Nguyen et al. 2021, "Do wide and deep
// networks learn the same things?"):
//   CKA(a, b) = sum_i HSIC(K_i, L_i) / sqrt(sum_i HSIC(K_i, K_i) * sum_i HSIC(L_i, L_i))
// over batches i, with K_i, L_i the batch's (n, n) Gram matrices of layers a and b. The
// unbiased HSIC estimator (Song et al. 2012) makes the minibatch estimate converge to the
// full-data CKA; with `unbiased` false and a single batch it is the textbook formula
// ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F). The state is three sums: all-reduce it.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cnnviz/enums.hpp"
#include "cnnviz/model.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

/// Options of cka(): every default lives here.
#define CNNVIZ_CKA_OPTIONS(X)                                                                                    \
  X(CkaKernel, kernel, CkaKernel::linear,                                                                        \
    "linear (streams over batches) or rbf (one batch only: its bandwidth comes from the batch).")                \
  X(double, rbf_sigma, 1.0,                                                                                      \
    "RBF bandwidth: sigma^2 = rbf_sigma^2 * median squared distance between distinct samples.")                  \
  X(bool, unbiased, true,                                                                                        \
    "Unbiased HSIC (needs 4 or more samples per batch); false: the biased (textbook) HSIC, whose minibatch "     \
    "average depends on the batch size.")                                                                        \
  X(int64_t, batch_size, 64, "Images per forward pass when cka() is given one tensor.")
struct CkaOptions {
  CNNVIZ_OPTIONS(CkaOptions, CNNVIZ_CKA_OPTIONS)
};

/// What cka() returns. No `stopped_early` / `interrupted`: cka() takes no progress callback
/// (each batch is one forward pass per model); a stream cut short is fewer `batches`
/// (Python's CKAResult carries `interrupted` for a Ctrl-C during its stream).
struct CkaResult {
  torch::Tensor matrix;   ///< (La, Lb) float64 CKA of layers_a[i] and layers_b[j]
  torch::Tensor hsic_ab;  ///< (La, Lb) float64 summed HSIC estimates
  torch::Tensor hsic_aa;  ///< (La,) float64
  torch::Tensor hsic_bb;  ///< (Lb,) float64
  int64_t batches = 0;
  int64_t samples = 0;
  int64_t skipped_samples = 0;  ///< samples of batches too small for the unbiased estimator (< 4)
};

/// Streaming accumulator of CKA between La layers of one model and Lb of another.
class CkaAccumulator {
 public:
  CkaAccumulator(int64_t layers_a, int64_t layers_b, CkaOptions options = {});
  /// Adds one batch: activations a[i] (n, ...) of La layers, b[j] (n, ...) of Lb layers,
  /// all with the same n. `b` empty: the same layers as a (CKA within one model).
  void update(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b = {});
  void merge(const CkaAccumulator& other);
  CkaResult result() const;
  /// State: hsic_ab (La, Lb), hsic_aa (La,), hsic_bb (Lb,), batches, samples, skipped (sums).
  std::map<std::string, torch::Tensor> state() const;
  static CkaAccumulator from_state(const std::map<std::string, torch::Tensor>& state, CkaOptions options = {});

 private:
  CkaOptions options_;
  int64_t la_, lb_;
  torch::Tensor hsic_ab_, hsic_aa_, hsic_bb_;
  int64_t batches_ = 0, samples_ = 0, skipped_ = 0;
};

/// HSIC estimates between every pair of G Gram matrices grams (G, n, n): (G, G) float64.
torch::Tensor hsic_matrix(const torch::Tensor& grams, bool unbiased);

/// The (n, n) Gram matrix of activations (n, ...) flattened to (n, p): linear or RBF.
torch::Tensor gram_matrix(const torch::Tensor& activations, const CkaOptions& options = {});

/// CKA between layers_a of model_a and layers_b of model_b (nullptr: model_a, and
/// layers_b empty: layers_a) over images x (N, C, H, W), in batches of options.batch_size;
/// each model runs one forward per batch for all its layers.
CkaResult cka(const AnyModel& model_a, const AnyModel* model_b, const torch::Tensor& x,
              const std::vector<std::string>& layers_a, const std::vector<std::string>& layers_b,
              const CkaOptions& options = {});

}  // namespace cnnviz
