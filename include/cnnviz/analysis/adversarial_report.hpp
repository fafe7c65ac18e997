#pragma once
// The notebook's adversarial challenge in one call: an FGSM or PGD example, the predictions
// before and after, how the saliency map changes, and which layers move most.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cnnviz/adversarial.hpp"
#include "cnnviz/attribution_gradients.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

enum class Attack { fgsm, pgd };

#define CNNVIZ_ADVERSARIAL_REPORT_OPTIONS(X)                                                                   \
  X(Attack, attack, Attack::pgd, "The attack: 'pgd' or 'fgsm'.")                                                \
  X(FgsmOptions, fgsm, FgsmOptions(), "FGSM's options (budget, normalization), used when attack is fgsm.")      \
  X(PgdOptions, pgd, PgdOptions(), "PGD's options (budget, steps, normalization), used when attack is pgd.")    \
  X(std::vector<std::string>, layers, {},                                                                       \
    "Layers whose divergence is measured; empty: every leaf module that owns parameters.")                      \
  X(SaliencyOptions, saliency, SaliencyOptions(), "The saliency maps' options (channel reduction).")
struct AdversarialReportOptions {
  CNNVIZ_OPTIONS(AdversarialReportOptions, CNNVIZ_ADVERSARIAL_REPORT_OPTIONS)
};

struct AdversarialReport {
  AdversarialResult attack;             ///< the adversarial batch, perturbation (pixels), predictions
  torch::Tensor probabilities_before;   ///< (N, K) softmax for x
  torch::Tensor probabilities_after;    ///< (N, K) softmax for the adversarial batch
  Attribution saliency_before;          ///< saliency of x for attack.target
  Attribution saliency_after;           ///< saliency of the adversarial batch for the same class
  torch::Tensor saliency_correlation;   ///< (N,) float64: Spearman correlation of the two maps
  std::vector<std::string> layers;      ///< the layers measured, in request order
  torch::Tensor divergence;             ///< (L, N): ||A(adv) - A(x)|| / ||A(x)|| per layer and sample
  int64_t most_affected = -1;           ///< index of the layer with the largest mean divergence (-1: none)
  bool stopped_early = false;           ///< the progress callback stopped PGD (the report is of the partial attack)
  bool interrupted = false;             ///< Ctrl-C stopped the loop (set by the Python bindings)
};

/// Attacks x (N, C, H, W) with FGSM or PGD (untargeted away from `target`, default the
/// predicted class, or toward it when the attack's options say targeted) and reports the
/// perturbation, the predictions and probabilities before and after, the vanilla-gradient
/// saliency of the attacked class before and after with their rank correlation, and each
/// layer's relative activation change.
AdversarialReport adversarial_report(const AnyModel& model, const torch::Tensor& x, const Target& target = {},
                                     const AdversarialReportOptions& options = {});

}  // namespace cnnviz
