// Models and capture: summary, capture, feature maps, filter weights, predictions.
#include "py_model.hpp"

#include "cnnviz/capture.hpp"
#include "cnnviz/detail/guided.hpp"
#include "cnnviz/script_model.hpp"
#include "cnnviz/threads.hpp"

namespace cnnviz {
namespace bindings {
namespace {

py::dict to_dict(const std::vector<std::pair<std::string, torch::Tensor>>& items) {
  py::dict d;
  for (auto& kv : items) d[py::str(kv.first)] = kv.second.defined() ? py::cast(kv.second) : py::none();
  return d;
}

}  // namespace

void init_models(py::module_& m) {
  init_py_model_state(m);
  m.def("set_num_threads", &cnnviz::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &cnnviz::get_num_threads);
  // OpenBLAS's process-wide thread count (0 without OpenBLAS), which ThreadScope lowers.
  m.def("_blas_num_threads", &detail::blas_num_threads);
  // The count a call of `rows` images like x per pass would run at (for tests and docs).
  m.def("_policy_threads", [](py::object model, const torch::Tensor& x, int64_t rows) {
    return policy_threads(to_model(model), x, rows);
  });
  m.def("layers", [](py::object model) {
    py::list out;
    for (auto& l : to_model(model).layers())
      out.append(py::make_tuple(l.name, l.type, l.num_parameters, l.is_leaf));
    return out;
  });
  m.def("capture", [](py::object model, const torch::Tensor& x, const std::vector<std::string>& layers,
                      bool need_output, bool guided) {
    auto any = to_model(model);
    CaptureResult r;
    if (!need_output && !guided) {
      r = cnnviz::capture(any, x, layers);
    } else {
      check_image_batch(x);
      r = any.capture(x, {layers, need_output, guided ? ReluMode::guided : ReluMode::normal});
    }
    return py::make_tuple(r.output.defined() ? py::cast(r.output) : py::none(), to_dict(r.activations));
  }, py::arg("model"), py::arg("x"), py::arg("layers"), py::arg("need_output") = false,
     py::arg("guided") = false);
  m.def("feature_maps", [](py::object model, const torch::Tensor& x, const std::vector<std::string>& layers) {
    return to_dict(cnnviz::feature_maps(to_model(model), x, layers));
  });
  m.def("summary", [](py::object model, const std::vector<int64_t>& input_size, int64_t depth) {
    py::list out;
    for (auto& r : cnnviz::summary(to_model(model), input_size, depth))
      out.append(py::make_tuple(r.name, r.type, r.output_shape, r.num_parameters, r.is_leaf));
    return out;
  }, py::arg("model"), py::arg("input_size"), py::arg("depth") = 0);
  m.def("format_summary", [](py::list rows, int64_t total_parameters) {
    std::vector<LayerSummary> v;
    for (auto row : rows) {
      auto t = row.cast<py::tuple>();
      v.push_back({t[0].cast<std::string>(), t[1].cast<std::string>(),
                   t[2].cast<std::vector<int64_t>>(), t[3].cast<int64_t>(), t[4].cast<bool>()});
    }
    return format_summary(v, total_parameters);
  }, py::arg("rows"), py::arg("total_parameters") = -1);
  m.def("filter_weights", [](py::object model, const std::string& layer) {
    auto f = cnnviz::filter_weights(to_model(model), layer);
    return py::make_tuple(f.weight, f.mean, f.rgb.defined() ? py::cast(f.rgb) : py::none());
  });
  m.def("predict", [](py::object model, const torch::Tensor& x, int64_t k,
                      const std::vector<std::string>& labels) {
    py::list out;
    for (auto& row : cnnviz::predict(to_model(model), x, k, labels)) {
      py::list r;
      for (auto& p : row) r.append(py::make_tuple(p.index, p.label, p.probability));
      out.append(r);
    }
    return out;
  });
  m.def("_positive_grad", &detail::positive_grad);
}

}  // namespace bindings
}  // namespace cnnviz
