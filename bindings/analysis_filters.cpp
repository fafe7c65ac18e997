// Filter analyses: filter statistics, redundancy, CKA (streaming accumulators).
#include "attribution_util.hpp"
#include "bindings.hpp"
#include "cnnviz/analysis/cka.hpp"
#include "cnnviz/analysis/filter_statistics.hpp"
#include "cnnviz/analysis/redundancy.hpp"
#include "cnnviz/detail/checked_capture.hpp"
#include "py_model.hpp"

namespace cnnviz {
namespace bindings {
namespace {

using State = std::map<std::string, torch::Tensor>;

py::object tensor_or_none(const torch::Tensor& t) { return t.defined() ? py::cast(t) : py::none(); }

py::dict to_dict(const FilterStatistics& s) {
  py::dict d;
  d["count"] = s.count;
  d["mean"] = s.mean;
  d["std"] = s.std;
  d["max"] = s.max;
  d["fraction_active"] = s.fraction_active;
  d["selectivity"] = s.selectivity;
  d["top_share"] = s.top_share;
  d["top_values"] = s.top_values;
  d["top_indices"] = s.top_indices;
  d["consistent"] = s.consistent;
  d["specific"] = s.specific;
  d["per_image"] = tensor_or_none(s.per_image);
  d["per_image_indices"] = tensor_or_none(s.per_image_indices);
  return d;
}

py::dict to_dict(const FilterRedundancy& r) {
  py::dict d;
  d["weight_similarity"] = tensor_or_none(r.weight_similarity);
  d["activation_correlation"] = tensor_or_none(r.activation_correlation);
  d["basis"] = r.basis;
  d["threshold"] = r.threshold;
  d["groups"] = r.groups;
  d["effective_filters_weights"] = r.effective_filters_weights;
  d["effective_filters_activations"] = r.effective_filters_activations;
  d["constant_filters"] = r.constant_filters;
  d["samples"] = r.samples;
  return d;
}

py::dict to_dict(const CkaResult& r) {
  py::dict d;
  d["matrix"] = r.matrix;
  d["hsic_ab"] = r.hsic_ab;
  d["hsic_aa"] = r.hsic_aa;
  d["hsic_bb"] = r.hsic_bb;
  d["batches"] = r.batches;
  d["samples"] = r.samples;
  d["skipped_samples"] = r.skipped_samples;
  return d;
}

/// Activations of `layers` for x in one forward pass without autograd, in request order.
std::vector<torch::Tensor> capture_layers(const AnyModel& model, const torch::Tensor& x,
                                          const std::vector<std::string>& layers, const char* fn) {
  check_image_batch(x);
  detail::check_layers(model, layers);
  torch::NoGradGuard no_grad;
  auto r = detail::checked_capture(model, x, CaptureRequest{layers, false}, fn);
  std::vector<torch::Tensor> out;
  for (auto& kv : r.activations) out.push_back(kv.second);
  return out;
}

void bind_filter_statistics(py::module_& m) {
  bind_options<FilterStatisticsOptions>(m, "FilterStatisticsOptions", "Options of filter_statistics().");

  py::class_<FilterStatisticsAccumulator>(m, "FilterStatisticsAccumulator")
      .def(py::init<FilterStatisticsOptions>(), py::arg("options"))
      .def("update", [](FilterStatisticsAccumulator& a, const torch::Tensor& act, c10::optional<torch::Tensor> idx) {
        py::gil_scoped_release nogil;
        a.update(act, idx ? *idx : torch::Tensor());
      }, py::arg("activations"), py::arg("indices") = py::none())
      .def("update_from_model", [](FilterStatisticsAccumulator& a, py::object model, const torch::Tensor& x,
                                   const std::string& layer, c10::optional<torch::Tensor> idx) {
        auto any = to_model(model);
        py::gil_scoped_release nogil;
        a.update(capture_layers(any, x, {layer}, "filter_statistics").front(), idx ? *idx : torch::Tensor());
      }, py::arg("model"), py::arg("x"), py::arg("layer"), py::arg("indices") = py::none())
      .def("merge", [](FilterStatisticsAccumulator& a, const FilterStatisticsAccumulator& b) { a.merge(b); })
      .def("result", [](const FilterStatisticsAccumulator& a) { return to_dict(a.result()); })
      .def("state", &FilterStatisticsAccumulator::state)
      .def_static("from_state", &FilterStatisticsAccumulator::from_state, py::arg("state"), py::arg("options"))
      .def_property_readonly("count", &FilterStatisticsAccumulator::count)
      .def_property_readonly("options", &FilterStatisticsAccumulator::options);
}

void bind_redundancy(py::module_& m) {
  bind_options<FilterRedundancyOptions>(m, "FilterRedundancyOptions", "Options of filter_redundancy().");

  py::class_<ChannelCovarianceAccumulator>(m, "ChannelCovarianceAccumulator")
      .def(py::init<>())
      .def("update", [](ChannelCovarianceAccumulator& a, const torch::Tensor& act) {
        py::gil_scoped_release nogil;
        a.update(act);
      })
      .def("update_from_model", [](ChannelCovarianceAccumulator& a, py::object model, const torch::Tensor& x,
                                   const std::string& layer) {
        auto any = to_model(model);
        py::gil_scoped_release nogil;
        a.update(capture_layers(any, x, {layer}, "filter_redundancy").front());
      })
      .def("merge", [](ChannelCovarianceAccumulator& a, const ChannelCovarianceAccumulator& b) { a.merge(b); })
      .def("covariance", &ChannelCovarianceAccumulator::covariance)
      .def("correlation", &ChannelCovarianceAccumulator::correlation)
      .def("mean", &ChannelCovarianceAccumulator::mean)
      .def("state", &ChannelCovarianceAccumulator::state)
      .def_static("from_state", &ChannelCovarianceAccumulator::from_state)
      .def_property_readonly("count", &ChannelCovarianceAccumulator::count);

  m.def("filter_redundancy", [](py::object model, const std::string& layer,
                                const ChannelCovarianceAccumulator& covariance, const FilterRedundancyOptions& o) {
    // Keeps the GIL: reading a Python module's parameter needs it, and the C x C work is small.
    return to_dict(cnnviz::filter_redundancy(to_model(model), layer, covariance, o));
  });
  m.def("filter_redundancy_from_weight", [](c10::optional<torch::Tensor> weight,
                                            const ChannelCovarianceAccumulator& covariance,
                                            const FilterRedundancyOptions& o) {
    py::gil_scoped_release nogil;
    return to_dict(cnnviz::filter_redundancy(weight ? *weight : torch::Tensor(), covariance, o));
  });
  m.def("similarity_groups", &similarity_groups);
  m.def("participation_ratio", &participation_ratio);
}

void bind_cka(py::module_& m) {
  bind_options<CkaOptions>(m, "CkaOptions", "Options of cka().");

  py::class_<CkaAccumulator>(m, "CkaAccumulator")
      .def(py::init<int64_t, int64_t, CkaOptions>(), py::arg("layers_a"), py::arg("layers_b"), py::arg("options"))
      .def("update", [](CkaAccumulator& a, const std::vector<torch::Tensor>& xa,
                        const std::vector<torch::Tensor>& xb) {
        py::gil_scoped_release nogil;
        a.update(xa, xb);
      }, py::arg("a"), py::arg("b") = std::vector<torch::Tensor>())
      .def("update_from_models", [](CkaAccumulator& a, py::object model_a, py::object model_b, const torch::Tensor& x,
                                    const std::vector<std::string>& layers_a,
                                    const std::vector<std::string>& layers_b) {
        // One forward per model for all its layers; model_b None: within model_a.
        auto ma = to_model(model_a);
        AnyModel mb = model_b.is_none() ? ma : to_model(model_b);
        const bool same = model_b.is_none();
        py::gil_scoped_release nogil;
        if (same && (layers_b.empty() || layers_b == layers_a)) {
          a.update(capture_layers(ma, x, layers_a, "cka"));
        } else if (same) {
          std::vector<std::string> both(layers_a);
          both.insert(both.end(), layers_b.begin(), layers_b.end());
          auto all = capture_layers(ma, x, both, "cka");
          auto mid = all.begin() + static_cast<std::ptrdiff_t>(layers_a.size());
          a.update({all.begin(), mid}, {mid, all.end()});
        } else {
          a.update(capture_layers(ma, x, layers_a, "cka"), capture_layers(mb, x, layers_b, "cka"));
        }
      })
      .def("merge", [](CkaAccumulator& a, const CkaAccumulator& b) { a.merge(b); })
      .def("result", [](const CkaAccumulator& a) { return to_dict(a.result()); })
      .def("state", &CkaAccumulator::state)
      .def_static("from_state", &CkaAccumulator::from_state, py::arg("state"), py::arg("options"));

  m.def("gram_matrix", &gram_matrix, py::arg("activations"), py::arg("options"));
  m.def("hsic_matrix", &hsic_matrix, py::arg("grams"), py::arg("unbiased"));
}

}  // namespace

void init_analysis_filters(py::module_& m) {
  bind_filter_statistics(m);
  bind_redundancy(m);
  bind_cka(m);
}

}  // namespace bindings
}  // namespace cnnviz
