// Image similarity metrics: SSIM, PSNR. Options bound from their C++ rows.
#include "bindings.hpp"
#include "cnnviz/metrics.hpp"
#include "options_bridge.hpp"

namespace cnnviz {
namespace bindings {

void init_metrics(py::module_& m) {
  bind_options<SsimOptions>(m, "SsimOptions", "The parameters of ssim() and ssim_map() (Wang et al.'s defaults).");
  bind_options<PsnrOptions>(m, "PsnrOptions", "The parameters of psnr().");

  m.def("ssim", [](const torch::Tensor& a, const torch::Tensor& b, const SsimOptions& o) {
    py::gil_scoped_release nogil;
    return ssim(a, b, o);
  }, py::arg("a"), py::arg("b"), py::arg("options") = SsimOptions());
  m.def("ssim_map", [](const torch::Tensor& a, const torch::Tensor& b, const SsimOptions& o) {
    py::gil_scoped_release nogil;
    return ssim_map(a, b, o);
  }, py::arg("a"), py::arg("b"), py::arg("options") = SsimOptions());
  m.def("psnr", [](const torch::Tensor& a, const torch::Tensor& b, const PsnrOptions& o) {
    py::gil_scoped_release nogil;
    return psnr(a, b, o);
  }, py::arg("a"), py::arg("b"), py::arg("options") = PsnrOptions());
}

}  // namespace bindings
}  // namespace cnnviz
