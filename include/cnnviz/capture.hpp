#pragma once
// What a network computes, made visible: activations by layer name, feature maps, filter
// weights, a layer summary and top-k predictions. The bodies are compiled once into the
// library (src/capture.cpp).

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/errors.hpp"
#include "cnnviz/layers.hpp"
#include "cnnviz/model.hpp"

namespace cnnviz {

/// Activations of `layers` for a batch x (N, C, H, W), in request order, live in the
/// autograd graph of x. The forward stops after the last requested layer.
CaptureResult capture(const AnyModel& model, const torch::Tensor& x, const Layers& layers);

/// Feature maps of the named layers, or of every leaf layer when `layers` is empty, in
/// one forward pass without autograd: x (N, C, H, W) -> name -> (N, C', H', W') (or
/// whatever shape the layer produces). Leaf layers that never run are left out.
std::vector<std::pair<std::string, torch::Tensor>> feature_maps(const AnyModel& model, const torch::Tensor& x,
                                                                 const Layers& which = {});

/// One row of a model summary.
struct LayerSummary {
  std::string name;
  std::string type;
  std::vector<int64_t> output_shape;  ///< empty when the layer did not run
  int64_t num_parameters = 0;         ///< owned directly, not by children (at the depth cut: with everything below)
  bool is_leaf = true;
};

/// Every module with its output shape for an input of `input_size` ((C, H, W) or
/// (N, C, H, W)), from one forward pass of zeros. `depth` > 0 keeps the modules at most
/// that many levels deep (1: the top-level children; "features.3" is level 2); a module at
/// the cut counts the parameters of everything below it, so the rows still add up to the
/// model's total. 0: every module.
std::vector<LayerSummary> summary(const AnyModel& model, std::vector<int64_t> input_size, int64_t depth = 0);

/// A summary as a fixed-width table. `total_parameters` (the model's, e.g. from an
/// unfiltered summary; negative: the sum of the rows) is printed as the total; when the
/// rows (a filtered summary) hold fewer, their sum is printed as "parameters in these rows"
/// next to it, never as the total.
std::string format_summary(const std::vector<LayerSummary>& rows, int64_t total_parameters = -1);

/// The parameter count of the rows of an unfiltered summary (every module's own).
int64_t total_parameters(const std::vector<LayerSummary>& rows);

/// A conv layer's filters ready to show.
struct FilterWeights {
  torch::Tensor weight;  ///< (O, I, kH, kW) as stored, detached
  torch::Tensor mean;    ///< (O, kH, kW): mean over input channels
  torch::Tensor rgb;     ///< (O, 3, kH, kW) in [0, 1], each filter min-max scaled; undefined unless I == 3
};

/// The filters of `layer` (a module with a 4-D `weight`, e.g. Conv2d). A block (a module
/// without a weight, e.g. MobileNetV2's "features.0") is refused with the name of its first
/// convolution ("features.0.0").
FilterWeights filter_weights(const AnyModel& model, const Layer& layer);

/// One class of a top-k prediction.
struct Prediction {
  int64_t index = 0;
  std::string label;
  double probability = 0;
};

namespace detail {
/// load_labels with `package_dir` (may be null) searched after $CNNVIZ_LABELS_DIR: the
/// installed CMake package passes its own share/cnnviz/labels (src/labels.cpp).
std::vector<std::string> load_labels(const std::string& source, const char* package_dir);
}  // namespace detail

/// Class names, one a line: `source` is a file path, or the name of a label set installed
/// with cnnviz ("imagenet": 1000 ImageNet classes in torchvision's order, "cifar10"), looked
/// up in $CNNVIZ_LABELS_DIR, then in the installed package's share/cnnviz/labels, then
/// where the build would install them, then in the source tree. A missing file or set is
/// cnnviz::FileNotFoundError.
inline std::vector<std::string> load_labels(const std::string& source) {
#ifdef CNNVIZ_LABELS_DIR  // set by cnnvizConfig.cmake of an installed package
  return detail::load_labels(source, CNNVIZ_LABELS_DIR);
#else
  return detail::load_labels(source, nullptr);
#endif
}

/// Top-k classes by softmax probability for each image of x (N, C, H, W) -> N lists of k.
/// `labels` (empty: names are the indices) must have one name per class. For one image,
/// predict_one() returns the list itself.
std::vector<std::vector<Prediction>> predict(const AnyModel& model, const torch::Tensor& x, int64_t k = 5,
                                             const std::vector<std::string>& labels = {});

/// Top-k classes of one image: x (C, H, W) or (1, C, H, W) -> k predictions. The
/// single-image form of predict(), returned by value so that
/// `for (auto& p : predict_one(model, x))` owns what it iterates.
std::vector<Prediction> predict_one(const AnyModel& model, const torch::Tensor& x, int64_t k = 5,
                                    const std::vector<std::string>& labels = {});

}  // namespace cnnviz
