// cnnviz._C: alpha_norm, total_variation, euclidean_loss. The trailing `impl` argument
// ("automatic", "fused" or "composed") is for tests of the non-CPU fallback.
#include "options_bridge.hpp"

#include "cnnviz/regularizers.hpp"

namespace cnnviz {
namespace bindings {
CNNVIZ_ENUM_NAMES(detail::RegularizerImpl, {detail::RegularizerImpl::automatic, "automatic"},
                  {detail::RegularizerImpl::fused, "fused"}, {detail::RegularizerImpl::composed, "composed"});

namespace {

detail::RegularizerImpl parse_impl(const std::string& impl) { return enum_value<detail::RegularizerImpl>(impl, "impl"); }

}  // namespace

void init_regularizers(py::module_& m) {
  m.def(
      "alpha_norm",
      [](const torch::Tensor& x, double alpha, const std::string& impl) {
        return detail::alpha_norm(x, alpha, parse_impl(impl));
      },
      py::arg("x"), py::arg("alpha"), py::arg("impl") = "automatic",
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "total_variation",
      [](const torch::Tensor& x, double beta, const std::string& impl) {
        return detail::total_variation(x, beta, parse_impl(impl));
      },
      py::arg("x"), py::arg("beta"), py::arg("impl") = "automatic",
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "euclidean_loss",
      [](const torch::Tensor& target, const torch::Tensor& current, const std::string& impl) {
        return detail::euclidean_loss(target, current, parse_impl(impl));
      },
      py::arg("target"), py::arg("current"), py::arg("impl") = "automatic",
      py::call_guard<py::gil_scoped_release>());
}

}  // namespace bindings
}  // namespace cnnviz
