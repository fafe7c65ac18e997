#pragma once
// Python-facing glue shared by the binding files: turning a Python object into an
// AnyModel, and bridging progress callbacks (tqdm, Ctrl-C) into C++ loops.
#include "bindings.hpp"

#include <optional>
#include <string>
#include <vector>

#include "cnnviz/model.hpp"
#include "cnnviz/progress.hpp"

namespace cnnviz {
namespace bindings {

/// A torch.nn.Module seen as a Model: captures through forward hooks registered from C++,
/// which are removed again however the forward ends (see models.cpp).
class PyModel final : public ModelBase {
 public:
  /// `inference`, where given, serves forward() while autograd is off (a callable giving
  /// the module's logits: cnnviz._plan.ForwardPlan, an optimized copy); captures and
  /// forwards with gradients always run the module.
  explicit PyModel(py::object module, py::object inference = py::none());
  torch::Tensor forward(const torch::Tensor& x) override;
  CaptureResult capture(const torch::Tensor& x, const CaptureRequest& request) override;
  std::vector<LayerInfo> layers() const override;
  std::vector<torch::Tensor> parameters() const override;
  torch::Tensor parameter(const std::string& layer, const std::string& name) const override;
  std::string describe() const override;
  bool can_cut() const override { return true; }

 private:
  py::object module_;
  py::object inference_;           // None, or the no-grad forward
  std::vector<LayerInfo> layers_;  // named_modules() at construction
  py::tuple structure_;            // (id, training) of every module: part of the call-count key
};

/// Creates PyModel's process-wide caches at import: created on first use instead, two
/// threads could deadlock (one holding the GIL waits for the static's initialization, the
/// other for the GIL).
void init_py_model_state(py::module_& m);

/// A model from Python: a torch.jit.ScriptModule becomes a ScriptModel (runs without
/// calling back into Python), a torch.nn.Module a PyModel, a cnnviz._plan.ForwardPlan the
/// PyModel of its module with the plan for no-grad forwards, a plain callable a
/// FunctionModel. Anything else is a ValueError.
AnyModel to_model(const py::handle& obj);

/// Turns an optional Python callable `callback(step, total, loss) -> bool | None` into a
/// ProgressCallback. Each step also checks for pending signals, so Ctrl-C and the Jupyter
/// stop button end the loop cleanly: the loop stops, `interrupted()` turns true, and the
/// caller returns the partial result (Python wrappers warn about it).
class ProgressBridge {
 public:
  explicit ProgressBridge(py::object callback = py::none()) : callback_(std::move(callback)) {}
  ProgressCallback callback() {
    return [this](int64_t step, int64_t total, double loss) -> bool {
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) {
        PyErr_Clear();  // KeyboardInterrupt is reported as `interrupted`, not raised mid-loop
        interrupted_ = true;
        return false;
      }
      if (callback_.is_none()) return true;
      py::object r = callback_(step, total, loss);
      return r.is_none() || r.cast<bool>();
    };
  }
  bool interrupted() const { return interrupted_; }

 private:
  py::object callback_;
  bool interrupted_ = false;
};

}  // namespace bindings
}  // namespace cnnviz
