// Image similarity metrics: SSIM, PSNR.
#include "bindings.hpp"
#include "cnnviz/metrics.hpp"

namespace cnnviz {
namespace bindings {

void init_metrics(py::module_& m) {
  const SsimOptions sopt;
  const PsnrOptions popt;
  py::dict defaults;
  defaults["window_size"] = sopt.window_size();
  defaults["sigma"] = sopt.sigma();
  defaults["k1"] = sopt.k1();
  defaults["k2"] = sopt.k2();
  defaults["reduction"] = sopt.reduction();
  m.attr("_metrics_defaults") = defaults;

  auto ssim_options = [](int64_t window_size, double sigma, double k1, double k2, c10::optional<double> data_range,
                         const std::string& reduction) {
    return SsimOptions().window_size(window_size).sigma(sigma).k1(k1).k2(k2).data_range(data_range).reduction(reduction);
  };
  m.def("ssim", [ssim_options](const torch::Tensor& a, const torch::Tensor& b, c10::optional<double> data_range,
                               int64_t window_size, double sigma, double k1, double k2, const std::string& reduction) {
    py::gil_scoped_release nogil;
    return ssim(a, b, ssim_options(window_size, sigma, k1, k2, data_range, reduction));
  }, py::arg("a"), py::arg("b"), py::arg("data_range") = py::none(), py::arg("window_size") = sopt.window_size(),
     py::arg("sigma") = sopt.sigma(), py::arg("k1") = sopt.k1(), py::arg("k2") = sopt.k2(),
     py::arg("reduction") = sopt.reduction());
  m.def("ssim_map", [ssim_options](const torch::Tensor& a, const torch::Tensor& b, c10::optional<double> data_range,
                                   int64_t window_size, double sigma, double k1, double k2) {
    py::gil_scoped_release nogil;
    return ssim_map(a, b, ssim_options(window_size, sigma, k1, k2, data_range, "mean"));
  }, py::arg("a"), py::arg("b"), py::arg("data_range") = py::none(), py::arg("window_size") = sopt.window_size(),
     py::arg("sigma") = sopt.sigma(), py::arg("k1") = sopt.k1(), py::arg("k2") = sopt.k2());
  m.def("psnr", [](const torch::Tensor& a, const torch::Tensor& b, c10::optional<double> data_range,
                   const std::string& reduction) {
    py::gil_scoped_release nogil;
    return psnr(a, b, PsnrOptions().data_range(data_range).reduction(reduction));
  }, py::arg("a"), py::arg("b"), py::arg("data_range") = py::none(), py::arg("reduction") = popt.reduction());
}

}  // namespace bindings
}  // namespace cnnviz
