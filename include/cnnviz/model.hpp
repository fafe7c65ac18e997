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
#include <mutex>
#include <string>
#include <unordered_map>
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

namespace detail {
/// Parameters frozen by running FreezeParameters scopes, with how many hold each: calls
/// that overlap in several threads share one freeze, and the last to end restores it.
struct FrozenRegistry {
  std::mutex mutex;
  std::unordered_map<const c10::TensorImpl*, std::pair<torch::Tensor, int64_t>> held;
  static FrozenRegistry& get() {
    static auto* r = new FrozenRegistry();  // never destroyed: scopes may end at exit
    return *r;
  }
};
}  // namespace detail

/// Sets requires_grad=false on every parameter for its lifetime and restores the flags
/// after, so algorithms differentiate with respect to their inputs only. Overlapping
/// scopes in several threads are counted: the flags come back when the last one ends.
/// (Meanwhile the model's own forwards in other threads see requires_grad=false: their
/// values are unchanged, but they build no graph through the parameters.)
class FreezeParameters {
 public:
  explicit FreezeParameters(const AnyModel& model) {
    auto params = model.parameters();
    auto& reg = detail::FrozenRegistry::get();
    std::lock_guard<std::mutex> lock(reg.mutex);
    for (auto& p : params) {
      auto it = reg.held.find(p.unsafeGetTensorImpl());
      if (it != reg.held.end()) {
        ++it->second.second;
      } else if (p.requires_grad()) {
        reg.held.emplace(p.unsafeGetTensorImpl(), std::make_pair(p, int64_t{1}));
        p.requires_grad_(false);
      } else {
        continue;
      }
      frozen_.push_back(p);
    }
  }
  ~FreezeParameters() {
    auto& reg = detail::FrozenRegistry::get();
    std::lock_guard<std::mutex> lock(reg.mutex);
    for (auto& p : frozen_) {
      auto it = reg.held.find(p.unsafeGetTensorImpl());
      if (it == reg.held.end() || --it->second.second > 0) continue;
      reg.held.erase(it);
      p.requires_grad_(true);
    }
  }
  FreezeParameters(const FreezeParameters&) = delete;
  FreezeParameters& operator=(const FreezeParameters&) = delete;

 private:
  std::vector<torch::Tensor> frozen_;
};

/// Checks a batch of images: (N, C, H, W), floating point, finite, N >= 1.
inline void check_image_batch(const torch::Tensor& x, const char* what = "x") {
  TORCH_CHECK_VALUE(x.defined(), "cnnviz: ", what, " is undefined");
  TORCH_CHECK_VALUE(x.dim() == 4, "cnnviz: ", what, " must be a batch (N, C, H, W), got shape ",
                    x.sizes());
  TORCH_CHECK_VALUE(x.size(0) >= 1 && x.size(1) >= 1 && x.size(2) >= 1 && x.size(3) >= 1,
                    "cnnviz: ", what, " must not be empty, got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.is_floating_point(), "cnnviz: ", what,
                    " must be a floating point tensor, got ", x.scalar_type());
  TORCH_CHECK_VALUE(torch::isfinite(x).all().item<bool>(), "cnnviz: ", what,
                    " contains NaN or infinite values");
}

// ---------------------------------------------------------------------------------------
// Adapters for C++ frontend modules and callables.

/// Any C++ frontend module whose children run in order (torch::nn::Sequential and the
/// like). Layer names are the children's qualified names ("0", "3", "block.1").
/// Capture runs the top-level children one by one and stops after the last requested one
/// when the output is not needed; only top-level children can be captured.
class SequentialModel final : public ModelBase {
 public:
  explicit SequentialModel(torch::nn::Sequential seq) : seq_(std::move(seq)) {}

  torch::Tensor forward(const torch::Tensor& x) override {
    check_image_batch(x);
    return seq_->forward(x);
  }

  CaptureResult capture(const torch::Tensor& x, const CaptureRequest& request) override {
    check_image_batch(x);
    TORCH_CHECK_VALUE(request.relu == ReluMode::normal,
                      "cnnviz: SequentialModel does not support guided ReLU");
    auto names = layer_names_();
    auto parsed = detail::parse_requests(request.layers, names);
    // Children run one after another, so only their outputs are observable here.
    for (auto& p : parsed)
      TORCH_CHECK_VALUE(p.name.find('.') == std::string::npos,
                        "cnnviz: SequentialModel captures top-level children only, got '",
                        p.name, "'");
    size_t last_needed = 0;
    for (auto& p : parsed) last_needed = std::max(last_needed, index_of_(p.name) + 1);
    TORCH_CHECK_INDEX(std::all_of(parsed.begin(), parsed.end(), [](auto& p) { return p.call <= 0; }),
                      "cnnviz: each child of a Sequential runs once; only call index 0 exists");
    CaptureResult result;
    std::vector<torch::Tensor> outs;
    torch::Tensor h = x;
    size_t n = request.need_output ? seq_->size() : last_needed;
    for (size_t i = 0; i < n; ++i) {
      h = (seq_->begin() + static_cast<std::ptrdiff_t>(i))->forward(h);
      outs.push_back(h);
    }
    for (auto& p : parsed) result.activations.emplace_back(p.spelled, outs.at(index_of_(p.name)));
    if (request.need_output) result.output = h;
    return result;
  }

  std::vector<LayerInfo> layers() const override {
    std::vector<LayerInfo> out;
    for (auto& item : seq_->named_modules("", /*include_self=*/false)) {
      LayerInfo info;
      info.name = item.key();
      info.type = item.value()->name();
      for (auto& p : item.value()->named_parameters(/*recurse=*/false)) info.num_parameters += p.value().numel();
      info.is_leaf = item.value()->children().empty();
      out.push_back(info);
    }
    return out;
  }

  std::vector<torch::Tensor> parameters() const override { return seq_->parameters(); }

  torch::Tensor parameter(const std::string& layer, const std::string& name) const override {
    for (auto& item : seq_->named_modules("", false))
      if (item.key() == layer)
        for (auto& p : item.value()->named_parameters(false))
          if (p.key() == name) return p.value();
    return {};
  }

  std::string describe() const override { return "SequentialModel"; }

 private:
  std::vector<std::string> layer_names_() const {
    std::vector<std::string> names;
    for (auto& l : layers()) names.push_back(l.name);
    return names;
  }
  size_t index_of_(const std::string& name) const { return static_cast<size_t>(std::stoul(name)); }

  torch::nn::Sequential seq_;
};

/// Any callable Tensor -> Tensor (output only: capture supports no layers).
class FunctionModel final : public ModelBase {
 public:
  explicit FunctionModel(std::function<torch::Tensor(const torch::Tensor&)> fn)
      : fn_(std::move(fn)) {
    TORCH_CHECK_VALUE(static_cast<bool>(fn_), "cnnviz: FunctionModel needs a callable");
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    check_image_batch(x);
    return fn_(x);
  }
  CaptureResult capture(const torch::Tensor& x, const CaptureRequest& request) override {
    TORCH_CHECK_VALUE(request.layers.empty(),
                      "cnnviz: FunctionModel has no layers to capture (asked for '",
                      request.layers.front(), "'); wrap the network in an adapter with layers");
    TORCH_CHECK_VALUE(request.relu == ReluMode::normal,
                      "cnnviz: FunctionModel does not support guided ReLU");
    CaptureResult r;
    r.output = forward(x);
    return r;
  }
  std::vector<LayerInfo> layers() const override { return {}; }
  std::vector<torch::Tensor> parameters() const override { return {}; }
  torch::Tensor parameter(const std::string&, const std::string&) const override { return {}; }
  std::string describe() const override { return "FunctionModel"; }

 private:
  std::function<torch::Tensor(const torch::Tensor&)> fn_;
};

}  // namespace cnnviz
