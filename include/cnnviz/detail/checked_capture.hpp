#pragma once
// A capture whose failures come back as clear errors: an image that went non-finite during
// an optimization says the optimization diverged, and errors raised by the network itself
// (an image too small for the layer, a channel count the first layer does not take) become
// one ValueError naming the input shape and the layer.

#include <torch/torch.h>

#include <exception>
#include <string>
#include <vector>

#include "cnnviz/model.hpp"

namespace cnnviz {
namespace detail {

/// The message of an exception without LibTorch's C++ backtrace.
inline std::string error_text(const std::exception& e) {
  if (auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

/// Validates layer names (unknown names raise the usual ValueError listing close names).
inline void check_layers(const AnyModel& model, const std::vector<std::string>& layers) {
  parse_requests(layers, model.layer_names());
}

/// Raises the "diverged" error when x has non-finite values or values beyond any image's
/// range (1e12: the alpha norm of such values overflows float).
inline void check_not_diverged(const torch::Tensor& x, const char* fn) {
  bool finite = [&] {
    torch::NoGradGuard no_grad;
    return torch::isfinite(x).all().item<bool>() && x.abs().max().item<double>() < 1e12;
  }();
  TORCH_CHECK_VALUE(finite, "cnnviz: ", fn, ": the optimization diverged (the image has NaN or infinite "
                    "values); lower the learning rate or keep the pixels in range (clamp_pixels)");
}

/// f() for one step of an optimization of x: an error while x has diverged says so.
template <class F>
auto guard_divergence(const torch::Tensor& x, const char* fn, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception&) {  // c10::Error, and the std::runtime_error of c10's overflow checks
    check_not_diverged(x, fn);
    throw;
  }
}

/// model.capture(x, request), with clear errors (see above). A KeyboardInterrupt raised in
/// a Python forward passes through unchanged. Costs nothing when the capture succeeds.
inline CaptureResult checked_capture(const AnyModel& model, const torch::Tensor& x,
                                     const CaptureRequest& request, const char* fn) {
  try {
    return model.capture(x, request);
  } catch (const std::exception& e) {
    std::string text = error_text(e);
    if (text.rfind("KeyboardInterrupt", 0) == 0) throw;
    check_not_diverged(x, fn);
    // cnnviz's own checks (unknown layer, bad index) are already clear.
    if (dynamic_cast<const c10::ValueError*>(&e) || dynamic_cast<const c10::IndexError*>(&e)) throw;
    std::string layers;
    for (auto& l : request.layers) layers += (layers.empty() ? "'" : ", '") + l + "'";
    TORCH_CHECK_VALUE(false, "cnnviz: ", fn, ": the model failed on an input of shape ", x.sizes(),
                      layers.empty() ? std::string() : " while computing layer " + layers,
                      " (is the image smaller than the layer needs, or of the wrong channel "
                      "count?): ", text);
  }
}

}  // namespace detail
}  // namespace cnnviz
