// cnnviz._C: saliency, SmoothGrad, guided backprop, the CAM family, integrated gradients,
// occlusion, LIME. Options classes carry the defaults; the Python wrappers fill them.
#include "attribution_util.hpp"

#include "cnnviz/threads.hpp"

namespace cnnviz {
namespace bindings {
namespace {

std::vector<Target> to_targets(const py::sequence& targets) {
  std::vector<Target> out;
  for (auto t : targets) out.push_back(to_target(t));
  return out;
}

void bind_options(py::module_& m) {
  {
    py::class_<SaliencyOptions> c(m, "SaliencyOptions");
    c.def(py::init<>());
    CNNVIZ_OPTION(c, SaliencyOptions, reduction);
  }
  {
    py::class_<SmoothGradOptions> c(m, "SmoothGradOptions");
    c.def(py::init<>());
    CNNVIZ_OPTION(c, SmoothGradOptions, samples);
    CNNVIZ_OPTION(c, SmoothGradOptions, noise_level);
    CNNVIZ_OPTION(c, SmoothGradOptions, batch_size);
    CNNVIZ_OPTION(c, SmoothGradOptions, reduction);
  }
  {
    py::class_<GuidedBackpropOptions> c(m, "GuidedBackpropOptions");
    c.def(py::init<>());
    CNNVIZ_OPTION(c, GuidedBackpropOptions, reduction);
  }
  {
    py::class_<GuidedGradCamOptions> c(m, "GuidedGradCamOptions");
    c.def(py::init<>());
    CNNVIZ_OPTION(c, GuidedGradCamOptions, reduction);
  }
  {
    py::class_<CamOptions> c(m, "CamOptions");
    c.def(py::init<>());
    CNNVIZ_OPTION(c, CamOptions, relu);
    CNNVIZ_OPTION(c, CamOptions, batch_size);
  }
  {
    py::class_<IntegratedGradientsOptions> c(m, "IntegratedGradientsOptions");
    c.def(py::init<>());
    CNNVIZ_OPTION(c, IntegratedGradientsOptions, steps);
    CNNVIZ_OPTION(c, IntegratedGradientsOptions, method);
    CNNVIZ_OPTION(c, IntegratedGradientsOptions, baseline);
    CNNVIZ_OPTION(c, IntegratedGradientsOptions, custom_baseline);
    CNNVIZ_OPTION(c, IntegratedGradientsOptions, blur_sigma);
    CNNVIZ_OPTION(c, IntegratedGradientsOptions, batch_size);
    CNNVIZ_OPTION(c, IntegratedGradientsOptions, reduction);
    CNNVIZ_OPTION(c, IntegratedGradientsOptions, tolerance);
    CNNVIZ_OPTION(c, IntegratedGradientsOptions, initial_steps);
    CNNVIZ_OPTION(c, IntegratedGradientsOptions, max_passes);
    normalization_options(c);
  }
  {
    py::class_<OcclusionOptions> c(m, "OcclusionOptions");
    c.def(py::init<>());
    CNNVIZ_OPTION(c, OcclusionOptions, window);
    CNNVIZ_OPTION(c, OcclusionOptions, stride);
    CNNVIZ_OPTION(c, OcclusionOptions, baseline);
    CNNVIZ_OPTION(c, OcclusionOptions, score);
    CNNVIZ_OPTION(c, OcclusionOptions, batch_size);
  }
  {
    py::class_<LimeOptions> c(m, "LimeOptions");
    c.def(py::init<>());
    CNNVIZ_OPTION(c, LimeOptions, segmentation);
    option(c, "segments", "", [](const LimeOptions& o) { return o.superpixels().segments(); },
           [](LimeOptions& o, int64_t v) { o.superpixels().segments(v); });
    option(c, "compactness", "", [](const LimeOptions& o) { return o.superpixels().compactness(); },
           [](LimeOptions& o, double v) { o.superpixels().compactness(v); });
    option(c, "slic_iterations", "", [](const LimeOptions& o) { return o.superpixels().iterations(); },
           [](LimeOptions& o, int64_t v) { o.superpixels().iterations(v); });
    CNNVIZ_OPTION(c, LimeOptions, custom_segments);
    CNNVIZ_OPTION(c, LimeOptions, samples);
    CNNVIZ_OPTION(c, LimeOptions, keep_probability);
    CNNVIZ_OPTION(c, LimeOptions, kernel_width);
    CNNVIZ_OPTION(c, LimeOptions, ridge);
    CNNVIZ_OPTION(c, LimeOptions, baseline);
    CNNVIZ_OPTION(c, LimeOptions, score);
    CNNVIZ_OPTION(c, LimeOptions, batch_size);
    normalization_options(c);
  }
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
      .def_property_readonly("map", [](const CamResult& r) { return r.front().map; })
      .def_property_readonly("upsampled", [](const CamResult& r) { return r.front().upsampled; })
      .def_property_readonly("target", [](const CamResult& r) { return r.front().target; });
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
  bind_options(m);
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
  m.def("slic", [](const torch::Tensor& rgb, const LimeOptions& o) { return cnnviz::slic(rgb, o.superpixels()); },
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
