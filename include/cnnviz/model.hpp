#pragma once
// The Model concept: what every algorithm needs from a network, and the adapters for
// C++ frontend modules and plain callables. Algorithms take an AnyModel, which any
// adapter (or any type modelling the concept) converts to implicitly, so each algorithm
// is compiled once.
//
// A Model type M provides
//   torch::Tensor forward(const torch::Tensor& x);                  // logits (N, K)
//   CaptureResult capture(const torch::Tensor& x, const CaptureRequest& request);
//   std::vector<LayerInfo> layers() const;                          // named_modules order
// and optionally (a type without them has no parameters to freeze or show)
//   std::vector<torch::Tensor> parameters() const;
//   torch::Tensor parameter(const std::string& layer, const std::string& name) const;
// A class with some but not all of the required members fails to convert to AnyModel
// with a static_assert naming the missing one.

#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/detail/names.hpp"
#include "cnnviz/layers.hpp"

namespace cnnviz {

/// How ReLUs behave in the backward pass of a capture.
enum class ReluMode {
  normal,  ///< autograd as usual
  guided,  ///< guided backprop: pass only positive gradients through active units
};

/// What a forward pass should capture.
struct CaptureRequest {
  /// Qualified module names as `named_modules()` gives them; `name:k` picks the k-th call
  /// (0-based) of a module that runs several times, plain `name` its last call.
  std::vector<std::string> layers;
  /// False lets the adapter stop the forward pass once the last requested layer has run.
  bool need_output = true;
  ReluMode relu = ReluMode::normal;
  /// True: a requested layer that never runs yields an undefined tensor instead of an
  /// error (used by summaries of models with unused branches).
  bool skip_missing = false;
  /// True: each captured activation is a leaf of the autograd graph (requires grad, no
  /// history) from which the rest of the forward continues, so a backward from the output
  /// stops at it, and with an input and parameters that do not require grad nothing below
  /// it is recorded. A gradient with respect to one layer then no longer flows through
  /// another captured one: meant for a request of one layer (Grad-CAM). Honoured by the
  /// adapters whose ModelBase::can_cut() is true (PyModel where the layer returns a tensor,
  /// ScriptModel, SequentialModel); others capture as usual.
  bool cut = false;
};

/// The result of a capture: the output (undefined when not requested) and one tensor per
/// requested layer, in request order, live in the autograd graph of the input.
struct CaptureResult {
  torch::Tensor output;
  std::vector<std::pair<std::string, torch::Tensor>> activations;

  /// The activation captured for `layer` (as spelled in the request).
  const torch::Tensor& at(const std::string& layer) const {
    for (const auto& kv : activations)
      if (kv.first == layer) return kv.second;
    TORCH_CHECK_INDEX(false, "cnnviz: layer '", layer, "' was not captured");
  }
};

/// One module of a model, as `named_modules()` lists it.
struct LayerInfo {
  std::string name;  ///< qualified name, e.g. "features.28" or "layer4.1.conv2"
  std::string type;  ///< module type, e.g. "Conv2d"
  int64_t num_parameters = 0;  ///< parameters owned directly (not by children)
  bool is_leaf = true;         ///< has no child modules
};

/// The type-erased interface behind AnyModel. Adapters derive from it.
class ModelBase {
 public:
  virtual ~ModelBase() = default;
  /// Logits of a batch: x (N, C, H, W) -> (N, K).
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  /// A forward pass that also returns the requested activations.
  virtual CaptureResult capture(const torch::Tensor& x, const CaptureRequest& request) = 0;
  /// Every module, in `named_modules()` order, the root ("") excluded.
  virtual std::vector<LayerInfo> layers() const = 0;
  /// Every parameter (for freezing them while an algorithm runs).
  virtual std::vector<torch::Tensor> parameters() const = 0;
  /// A named parameter of one layer ("weight", "bias"); undefined tensor if absent.
  virtual torch::Tensor parameter(const std::string& layer, const std::string& name) const = 0;
  /// A short description for error messages.
  virtual std::string describe() const { return "model"; }
  /// Whether capture honours CaptureRequest::cut.
  virtual bool can_cut() const { return false; }
};

namespace detail {
template <class M, class = void>
struct has_forward : std::false_type {};
template <class M>
struct has_forward<M, std::void_t<decltype(std::declval<M&>().forward(std::declval<torch::Tensor>()))>>
    : std::true_type {};
template <class M, class = void>
struct has_capture : std::false_type {};
template <class M>
struct has_capture<M, std::void_t<decltype(std::declval<M&>().capture(std::declval<torch::Tensor>(),
                                                                      std::declval<CaptureRequest>()))>>
    : std::true_type {};
template <class M, class = void>
struct has_layers : std::false_type {};
template <class M>
struct has_layers<M, std::void_t<decltype(std::declval<const M&>().layers())>> : std::true_type {};
template <class M, class = void>
struct has_parameters : std::false_type {};
template <class M>
struct has_parameters<M, std::void_t<decltype(std::declval<const M&>().parameters())>> : std::true_type {};
template <class M, class = void>
struct has_parameter : std::false_type {};
template <class M>
struct has_parameter<M, std::void_t<decltype(std::declval<const M&>().parameter(std::string(), std::string()))>>
    : std::true_type {};

/// The documented Model concept: forward, capture and layers (parameters and parameter
/// are optional).
template <class M>
struct is_model : std::bool_constant<has_forward<M>::value && has_capture<M>::value && has_layers<M>::value> {};

/// A class that means to be a Model (it has at least one of the required members); the
/// AnyModel constructor then names what is missing instead of failing overload resolution.
template <class M>
struct looks_like_model
    : std::bool_constant<std::is_class_v<M> && (has_forward<M>::value || has_capture<M>::value || has_layers<M>::value)> {};

template <class M>
class ModelAdapter final : public ModelBase {
 public:
  explicit ModelAdapter(M model) : model_(std::move(model)) {}
  torch::Tensor forward(const torch::Tensor& x) override { return model_.forward(x); }
  CaptureResult capture(const torch::Tensor& x, const CaptureRequest& r) override {
    return model_.capture(x, r);
  }
  std::vector<LayerInfo> layers() const override { return model_.layers(); }
  /// Optional: without it nothing is frozen while an algorithm runs.
  std::vector<torch::Tensor> parameters() const override {
    if constexpr (has_parameters<M>::value) {
      return model_.parameters();
    } else {
      return {};
    }
  }
  /// Optional: without it every layer has no parameters (filter_weights refuses).
  torch::Tensor parameter(const std::string& layer, const std::string& name) const override {
    if constexpr (has_parameter<M>::value) {
      return model_.parameter(layer, name);
    } else {
      (void)layer;
      (void)name;
      return {};
    }
  }

 private:
  mutable M model_;
};
}  // namespace detail

/// A model of any adapter type, shared by reference (copies share the same network).
class AnyModel {
 public:
  AnyModel() = default;
  template <class M, class = std::enable_if_t<std::is_base_of_v<ModelBase, M>>>
  AnyModel(std::shared_ptr<M> impl) : impl_(std::move(impl)) {}  // NOLINT: implicit by design
  template <class M, class = std::enable_if_t<std::is_base_of_v<ModelBase, std::decay_t<M>>>,
            class = void>
  AnyModel(M model)  // NOLINT: implicit by design
      : impl_(std::make_shared<std::decay_t<M>>(std::move(model))) {}
  template <class M, class = std::enable_if_t<!std::is_base_of_v<ModelBase, std::decay_t<M>> &&
                                              detail::looks_like_model<std::decay_t<M>>::value>>
  AnyModel(M model)  // NOLINT: implicit by design
      : impl_(make_adapter(std::move(model))) {}

  bool defined() const { return static_cast<bool>(impl_); }
  ModelBase& impl() const {
    TORCH_CHECK_VALUE(impl_, "cnnviz: the model is empty");
    return *impl_;
  }
  torch::Tensor forward(const torch::Tensor& x) const { return impl().forward(x); }
  CaptureResult capture(const torch::Tensor& x, const CaptureRequest& r) const {
    return impl().capture(x, r);
  }
  std::vector<LayerInfo> layers() const { return impl().layers(); }
  bool can_cut() const { return impl().can_cut(); }
  std::vector<torch::Tensor> parameters() const { return impl().parameters(); }
  torch::Tensor parameter(const std::string& layer, const std::string& name) const {
    return impl().parameter(layer, name);
  }
  std::vector<std::string> layer_names() const {
    std::vector<std::string> names;
    for (auto& l : layers()) names.push_back(l.name);
    return names;
  }

 private:
  template <class M>
  static std::shared_ptr<ModelBase> make_adapter(M model) {
    static_assert(detail::has_forward<M>::value,
                  "cnnviz: a Model needs `torch::Tensor forward(const torch::Tensor& x)`");
    static_assert(detail::has_capture<M>::value,
                  "cnnviz: a Model needs `CaptureResult capture(const torch::Tensor& x, const CaptureRequest& r)`");
    static_assert(detail::has_layers<M>::value, "cnnviz: a Model needs `std::vector<LayerInfo> layers() const`");
    if constexpr (detail::is_model<M>::value) {
      return std::make_shared<detail::ModelAdapter<M>>(std::move(model));
    } else {
      return {};
    }
  }

  std::shared_ptr<ModelBase> impl_;
};

/// Sets requires_grad=false on every parameter for its lifetime and restores the flags
/// after, so algorithms differentiate with respect to their inputs only. Overlapping
/// scopes in several threads are counted: the flags come back when the last one ends.
/// (Meanwhile the model's own forwards in other threads see requires_grad=false: their
/// values are unchanged, but they build no graph through the parameters.)
class FreezeParameters {
 public:
  explicit FreezeParameters(const AnyModel& model);
  ~FreezeParameters();
  FreezeParameters(const FreezeParameters&) = delete;
  FreezeParameters& operator=(const FreezeParameters&) = delete;

 private:
  std::vector<torch::Tensor> frozen_;
};

/// Checks a batch of images: (N, C, H, W), floating point, finite, N >= 1.
void check_image_batch(const torch::Tensor& x, const char* what = "x");

// ---------------------------------------------------------------------------------------
// Adapters for C++ frontend modules and callables (bodies in src/capture.cpp).

/// Any C++ frontend module whose children run in order (torch::nn::Sequential and the
/// like). Layer names are the children's qualified names ("0", "3", "block.1").
/// Capture runs the top-level children one by one and stops after the last requested one
/// when the output is not needed; only top-level children can be captured.
class SequentialModel final : public ModelBase {
 public:
  explicit SequentialModel(torch::nn::Sequential seq) : seq_(std::move(seq)) {}
  torch::Tensor forward(const torch::Tensor& x) override;
  CaptureResult capture(const torch::Tensor& x, const CaptureRequest& request) override;
  std::vector<LayerInfo> layers() const override;
  std::vector<torch::Tensor> parameters() const override;
  torch::Tensor parameter(const std::string& layer, const std::string& name) const override;
  std::string describe() const override { return "SequentialModel"; }
  bool can_cut() const override { return true; }

 private:
  torch::nn::Sequential seq_;
};

/// Any callable Tensor -> Tensor (output only: capture supports no layers).
class FunctionModel final : public ModelBase {
 public:
  explicit FunctionModel(std::function<torch::Tensor(const torch::Tensor&)> fn);
  torch::Tensor forward(const torch::Tensor& x) override;
  CaptureResult capture(const torch::Tensor& x, const CaptureRequest& request) override;
  std::vector<LayerInfo> layers() const override { return {}; }
  std::vector<torch::Tensor> parameters() const override { return {}; }
  torch::Tensor parameter(const std::string&, const std::string&) const override { return {}; }
  std::string describe() const override { return "FunctionModel"; }

 private:
  std::function<torch::Tensor(const torch::Tensor&)> fn_;
};

}  // namespace cnnviz
