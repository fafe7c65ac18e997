// cnnviz._C: saliency, SmoothGrad, guided backprop, the CAM family, integrated gradients,
// occlusion, LIME. Options classes carry the defaults; the Python wrappers fill them.
#include "attribution_util.hpp"

#include "cnnviz/detail/attribution.hpp"
#include "cnnviz/threads.hpp"

namespace cnnviz {
namespace bindings {
namespace {

std::vector<Target> to_targets(const py::sequence& targets) {
  std::vector<Target> out;
  for (auto t : targets) out.push_back(to_target(t));
  return out;
}

void bind_all_options(py::module_& m) {
  bind_options<SaliencyOptions>(m, "SaliencyOptions", "Options of saliency.");
  bind_options<SmoothGradOptions>(m, "SmoothGradOptions", "Options of smooth_grad.");
  bind_options<GuidedBackpropOptions>(m, "GuidedBackpropOptions", "Options of guided_backprop.");
  bind_options<GuidedGradCamOptions>(m, "GuidedGradCamOptions", "Options of guided_grad_cam.");
  bind_options<CamOptions>(m, "CamOptions", "Options of the CAM family.");
  bind_options<IntegratedGradientsOptions>(m, "IntegratedGradientsOptions", "Options of integrated_gradients.");
  bind_options<OcclusionOptions>(m, "OcclusionOptions", "Options of occlusion.");
  // Before LimeOptions, whose `superpixels` field holds one.
  bind_options<SlicOptions>(m, "SlicOptions", "Options of SLIC superpixels (slic, lime).");
  bind_options<LimeOptions>(m, "LimeOptions", "Options of lime.");
}

void bind_results(py::module_& m) {
  py::class_<Attribution>(m, "Attribution", py::dynamic_attr())
      .def_readonly("attribution", &Attribution::attribution)
      .def_readonly("map", &Attribution::map)
      .def_readonly("target", &Attribution::target)
      .def_readonly("logits", &Attribution::logits)
      .def_readonly("stopped_early", &Attribution::stopped_early)
      .def_readwrite("interrupted", &Attribution::interrupted);
  py::class_<IntegratedGradientsResult, Attribution>(m, "IntegratedGradientsResult", py::dynamic_attr())
      .def_readonly("baseline", &IntegratedGradientsResult::baseline)
      .def_readonly("delta", &IntegratedGradientsResult::delta)
      .def_readonly("score", &IntegratedGradientsResult::score)
      .def_readonly("baseline_score", &IntegratedGradientsResult::baseline_score)
      .def_readonly("passes", &IntegratedGradientsResult::passes)
      .def_readonly("converged", &IntegratedGradientsResult::converged)
      .def_readonly("relative_error", &IntegratedGradientsResult::relative_error);
  py::class_<CamMap>(m, "CamMap")
      .def_readonly("layer", &CamMap::layer)
      .def_readonly("target", &CamMap::target)
      .def_readonly("map", &CamMap::map)
      .def_readonly("upsampled", &CamMap::upsampled)
      .def("__repr__", [](const CamMap& c) {
        std::ostringstream os;
        os << "CamMap(layer='" << c.layer << "', map=" << c.map.sizes() << ", upsampled=" << c.upsampled.sizes() << ")";
        return os.str();
      });
  py::class_<CamResult>(m, "CamResult", py::dynamic_attr())
      .def_readonly("maps", &CamResult::maps)
      .def_readonly("num_targets", &CamResult::num_targets)
      .def_readonly("logits", &CamResult::logits)
      .def_readonly("stopped_early", &CamResult::stopped_early)
      .def_readwrite("interrupted", &CamResult::interrupted)
      .def("at", &CamResult::at, py::arg("layer"), py::arg("k") = 0, py::return_value_policy::copy)
      .def_property_readonly("map", [](const CamResult& r) { return r.map(); })
      .def_property_readonly("upsampled", [](const CamResult& r) { return r.upsampled(); })
      .def_property_readonly("target", [](const CamResult& r) { return r.target(); });
  py::class_<OcclusionResult>(m, "OcclusionResult", py::dynamic_attr())
      .def_readonly("map", &OcclusionResult::map)
      .def_readonly("scores", &OcclusionResult::scores)
      .def_readonly("target", &OcclusionResult::target)
      .def_readonly("logits", &OcclusionResult::logits)
      .def_readonly("stopped_early", &OcclusionResult::stopped_early)
      .def_readwrite("interrupted", &OcclusionResult::interrupted);
  py::class_<LimeResult>(m, "LimeResult", py::dynamic_attr())
      .def_readonly("segments", &LimeResult::segments)
      .def_readonly("weights", &LimeResult::weights)
      .def_readonly("intercept", &LimeResult::intercept)
      .def_readonly("r2", &LimeResult::r2)
      .def_readonly("map", &LimeResult::map)
      .def_readonly("target", &LimeResult::target)
      .def_readonly("logits", &LimeResult::logits)
      .def_readonly("stopped_early", &LimeResult::stopped_early)
      .def_readwrite("interrupted", &LimeResult::interrupted);
}

}  // namespace

void init_attribution(py::module_& m) {
  bind_all_options(m);
  bind_results(m);
  m.def("saliency", [](py::object model, const torch::Tensor& x, py::object target, const SaliencyOptions& o) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, x, batch_rows(x)));
    auto t = to_target(target);
    py::gil_scoped_release release;
    return cnnviz::saliency(mdl, x, t, o);
  });
  m.def("guided_backprop", [](py::object model, const torch::Tensor& x, py::object target,
                              const GuidedBackpropOptions& o) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, x, batch_rows(x)));
    auto t = to_target(target);
    py::gil_scoped_release release;
    return cnnviz::guided_backprop(mdl, x, t, o);
  });
  m.def("guided_grad_cam", [](py::object model, const torch::Tensor& x, const std::string& layer,
                              py::object target, const GuidedGradCamOptions& o) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, x, batch_rows(x)));
    auto t = to_target(target);
    py::gil_scoped_release release;
    return cnnviz::guided_grad_cam(mdl, x, layer, t, o);
  });
  m.def("smooth_grad", [](py::object model, const torch::Tensor& x, py::object target, SmoothGradOptions o,
                          py::object progress) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, x, pass_rows(x, o.samples(), o.batch_size())));
    auto t = to_target(target);
    return with_progress(progress, [&](ProgressCallback cb) { return cnnviz::smooth_grad(mdl, x, t, o.progress(cb)); });
  });
  m.def("cam", [](py::object model, const torch::Tensor& x, const std::vector<std::string>& layers,
                  py::sequence targets, const std::string& method, CamOptions o, py::object progress) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, x, method == "score_cam" ? pass_rows(x, o.batch_size(), o.batch_size()) : batch_rows(x)));
    auto ts = to_targets(targets);
    auto kind = enum_value<CamMethod>(method, "method");
    return with_progress(progress, [&](ProgressCallback cb) {
      return cnnviz::cam(mdl, x, layers, ts, kind, o.progress(cb));
    });
  });
  m.def("integrated_gradients", [](py::object model, const torch::Tensor& x, py::object target,
                                   IntegratedGradientsOptions o, py::object progress) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, x, pass_rows(x, o.steps(), o.batch_size())));
    auto t = to_target(target);
    return with_progress(progress, [&](ProgressCallback cb) {
      return cnnviz::integrated_gradients(mdl, x, t, o.progress(cb));
    });
  });
  m.def("occlusion", [](py::object model, const torch::Tensor& x, py::object target, OcclusionOptions o,
                        py::object progress) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, x, pass_rows(x, o.batch_size(), o.batch_size())));
    auto t = to_target(target);
    return with_progress(progress, [&](ProgressCallback cb) { return cnnviz::occlusion(mdl, x, t, o.progress(cb)); });
  });
  m.def("lime", [](py::object model, const torch::Tensor& x, py::object target, LimeOptions o,
                   py::object progress) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, x, pass_rows(x, o.samples(), o.batch_size())));
    auto t = to_target(target);
    return with_progress(progress, [&](ProgressCallback cb) { return cnnviz::lime(mdl, x, t, o.progress(cb)); });
  });
  m.def("slic", [](const torch::Tensor& rgb, const SlicOptions& o) { return cnnviz::slic(rgb, o); },
        py::call_guard<py::gil_scoped_release>());
  m.def("grid_segments", &cnnviz::grid_segments, py::call_guard<py::gil_scoped_release>());
  m.def("_weighted_ridge", [](const torch::Tensor& z, const torch::Tensor& y, const torch::Tensor& w, double alpha) {
    auto fit = detail::weighted_ridge(z, y, w, alpha);
    return py::make_tuple(fit.coef, fit.intercept, fit.r2);
  });
  m.def("_quadrature", [](const std::string& method, int64_t steps) {
    return detail::quadrature(enum_value<IntegrationMethod>(method, "method"), steps);
  });
}

}  // namespace bindings
}  // namespace cnnviz
