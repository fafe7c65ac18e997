#pragma once
// Shared by the binding files of the areas that take targets (attribution, adversarial,
// analysis): targets from Python objects, this area's enum names, the thread policy's
// batch sizes and `with_progress`. Options are bound with bind_options (options_bridge.hpp).
#include "options_bridge.hpp"
#include "py_model.hpp"

#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cnnviz/attribution.hpp"

namespace cnnviz {
namespace bindings {

/// None -> the predicted class, an int -> one class for all, a tensor or a sequence of
/// ints -> one class per sample (a 0-d tensor: one for all).
inline Target to_target(const py::handle& obj) {
  if (obj.is_none()) return Target();
  if (THPVariable_Check(obj.ptr())) return Target(THPVariable_Unpack(obj.ptr()));
  TORCH_CHECK_VALUE(!py::isinstance<py::bool_>(obj), "cnnviz: a target must be a class index, not a bool");
  if (py::hasattr(obj, "__index__")) return Target(py::int_(obj.attr("__index__")()).cast<int64_t>());
  if (py::isinstance<py::sequence>(obj) && !py::isinstance<py::str>(obj)) {
    std::vector<int64_t> v;
    for (auto item : obj) {
      TORCH_CHECK_VALUE(py::hasattr(item, "__index__") && !py::isinstance<py::bool_>(item),
                        "cnnviz: per-sample targets must be integers, got ", std::string(py::repr(item)));
      v.push_back(py::int_(item.attr("__index__")()).cast<int64_t>());
    }
    return Target(std::move(v));
  }
  TORCH_CHECK_VALUE(false, "cnnviz: a target must be None, an int, a sequence of ints or an integer "
                    "tensor, got ", std::string(py::str(obj.get_type())));
}

// Names of this area's enums (the shared ones are in options_bridge.hpp).
CNNVIZ_ENUM_NAMES(IntegrationMethod, {IntegrationMethod::riemann_trapezoid, "riemann_trapezoid"},
                  {IntegrationMethod::gauss_legendre, "gauss_legendre"});
CNNVIZ_ENUM_NAMES(BaselineKind, {BaselineKind::zeros, "zeros"}, {BaselineKind::black, "black"},
                  {BaselineKind::blur, "blur"}, {BaselineKind::uniform, "uniform"},
                  {BaselineKind::custom, "custom"});
CNNVIZ_ENUM_NAMES(Segmentation, {Segmentation::slic, "slic"}, {Segmentation::grid, "grid"});
CNNVIZ_ENUM_NAMES(CamMethod, {CamMethod::grad_cam, "grad_cam"}, {CamMethod::grad_cam_pp, "grad_cam_pp"},
                  {CamMethod::layer_cam, "layer_cam"}, {CamMethod::score_cam, "score_cam"});

/// The rows of a batch x (N, ...), 1 for anything else (the method's own checks report it).
inline int64_t batch_rows(const torch::Tensor& x) { return x.defined() && x.dim() >= 1 ? x.size(0) : 1; }

/// The largest forward pass of a method that expands each of x's N images `expansion`
/// times in batches of `batch_size`: what the thread policy sizes the call by.
inline int64_t pass_rows(const torch::Tensor& x, int64_t expansion, int64_t batch_size) {
  const double n = static_cast<double>(batch_rows(x));
  const double rows = std::min(n * static_cast<double>(std::max<int64_t>(expansion, 1)),
                               static_cast<double>(std::max<int64_t>(batch_size, 1)));
  return static_cast<int64_t>(std::min(std::max(rows, n), 1e12));
}

/// Whether a result struct has an `interrupted` flag.
template <class R, class = void>
struct HasInterrupted : std::false_type {};
template <class R>
struct HasInterrupted<R, std::void_t<decltype(std::declval<R&>().interrupted = true)>> : std::true_type {};

/// Runs `fn(callback)` without the GIL, the callback driving Python progress (tqdm, a
/// user's callable, Ctrl-C); marks the result `interrupted` when Ctrl-C stopped it. A result
/// struct with an `interrupted` field comes back as itself (so the stub types it); anything
/// else as a Python object with an `interrupted` attribute.
template <class Fn>
auto with_progress(py::object progress, Fn fn) {
  using R = decltype(fn(ProgressCallback()));
  ProgressBridge bridge(std::move(progress));
  auto cb = bridge.callback();
  if constexpr (HasInterrupted<R>::value) {
    R r = [&] {
      py::gil_scoped_release release;
      return fn(cb);
    }();
    r.interrupted = bridge.interrupted();
    return r;
  } else {
    py::object result;
    {
      auto r = [&] {
        py::gil_scoped_release release;
        return fn(cb);
      }();
      result = py::cast(std::move(r));
    }
    result.attr("interrupted") = bridge.interrupted();
    return result;
  }
}

}  // namespace bindings
}  // namespace cnnviz
