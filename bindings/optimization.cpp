// cnnviz._C: feature inversion, activation maximization, top filters, deep dream. Options
// classes carry the defaults; the Python wrappers (cnnviz/optimization.py) fill them.
#include "attribution_util.hpp"

#include <pybind11/functional.h>  // on_snapshot: a Python callable, called with the GIL taken

#include "cnnviz/inversion.hpp"
#include "cnnviz/maximization.hpp"
#include "cnnviz/threads.hpp"

namespace cnnviz {
namespace bindings {

CNNVIZ_ENUM_NAMES(InversionInit, {InversionInit::noise, "noise"}, {InversionInit::zeros, "zeros"},
                  {InversionInit::blurred, "blurred"});
template <>
struct EnumNames<Objective::Kind> {
  static std::vector<std::pair<Objective::Kind, const char*>> values() {
    return {{Objective::Kind::channel, "channel"}, {Objective::Kind::neuron, "neuron"},
            {Objective::Kind::logit, "logit"}, {Objective::Kind::direction, "direction"}};
  }
};

namespace {

void bind_inversion(py::module_& m) {
  py::class_<InversionOptions> c(m, "InversionOptions");
  c.def(py::init<>());
  c.def_static("notebook", &InversionOptions::notebook, "The notebook's settings: SGD, lr 1e3, momentum 0.9.");
  CNNVIZ_OPTION(c, InversionOptions, iterations);
  CNNVIZ_OPTION(c, InversionOptions, optimizer);
  CNNVIZ_OPTION(c, InversionOptions, learning_rate);
  CNNVIZ_OPTION(c, InversionOptions, momentum);
  CNNVIZ_OPTION(c, InversionOptions, lr_decay);
  CNNVIZ_OPTION(c, InversionOptions, lr_decay_every);
  CNNVIZ_OPTION(c, InversionOptions, alpha);
  CNNVIZ_OPTION(c, InversionOptions, lambda_alpha);
  CNNVIZ_OPTION(c, InversionOptions, tv_beta);
  CNNVIZ_OPTION(c, InversionOptions, lambda_tv);
  CNNVIZ_OPTION(c, InversionOptions, init);
  CNNVIZ_OPTION(c, InversionOptions, init_image);
  CNNVIZ_OPTION(c, InversionOptions, init_blur_sigma);
  CNNVIZ_OPTION(c, InversionOptions, seed);
  CNNVIZ_OPTION(c, InversionOptions, jitter);
  CNNVIZ_OPTION(c, InversionOptions, clamp_pixels);
  CNNVIZ_OPTION(c, InversionOptions, mean);
  CNNVIZ_OPTION(c, InversionOptions, std);
  CNNVIZ_OPTION(c, InversionOptions, snapshot_every);
  CNNVIZ_OPTION(c, InversionOptions, on_snapshot);
  CNNVIZ_OPTION(c, InversionOptions, batch_layers);

  py::class_<InversionResult>(m, "InversionResult")
      .def_readonly("layer", &InversionResult::layer)
      .def_readonly("image", &InversionResult::image)
      .def_readonly("losses", &InversionResult::losses)
      .def_readonly("snapshots", &InversionResult::snapshots)
      .def_readonly("snapshot_steps", &InversionResult::snapshot_steps)
      .def_readonly("final_loss", &InversionResult::final_loss)
      .def_readonly("feature_loss", &InversionResult::feature_loss)
      .def_readonly("prior_loss", &InversionResult::prior_loss)
      .def_readonly("stopped_early", &InversionResult::stopped_early)
      .def_readwrite("interrupted", &InversionResult::interrupted)
      .def("__repr__", [](const InversionResult& r) {
        return "InversionResult(layer='" + r.layer + "', steps=" + std::to_string(r.losses.size(0)) +
               ", final_loss=" + std::to_string(r.final_loss) + ", feature_loss=" + std::to_string(r.feature_loss) +
               ", prior_loss=" + std::to_string(r.prior_loss) + (r.stopped_early ? ", stopped_early" : "") +
               (r.interrupted ? ", interrupted" : "") + ")";
      });

  m.def("invert", [](py::object model, const torch::Tensor& x, const std::string& layer, InversionOptions o,
                     py::object progress) {
    auto any = to_model(model);
    ThreadScope threads(policy_threads(any, x, batch_rows(x)));
    return with_progress(progress, [&](ProgressCallback cb) {
      return cnnviz::invert(any, x, layer, o.progress(std::move(cb)));
    });
  });
  m.def("invert_layers", [](py::object model, const torch::Tensor& x, const std::vector<std::string>& layers,
                            InversionOptions o, py::object progress) {
    auto any = to_model(model);
    ThreadScope threads(policy_threads(any, x, batch_rows(x)));
    ProgressBridge bridge(std::move(progress));
    std::vector<InversionResult> results;
    {
      py::gil_scoped_release release;
      results = cnnviz::invert_layers(any, x, layers, o.progress(bridge.callback()));
    }
    for (auto& r : results) r.interrupted = bridge.interrupted();
    return results;
  });
  m.def("inversion_loss", [](py::object model, const torch::Tensor& x, const torch::Tensor& z,
                             const std::string& layer, const InversionOptions& o) {
    auto any = to_model(model);
    ThreadScope threads(policy_threads(any, x, batch_rows(x)));
    py::gil_scoped_release release;
    return cnnviz::inversion_loss(any, x, z, layer, o);
  });
}

Objective to_objective(const std::string& kind, const std::string& layer, const std::vector<int64_t>& indices,
                       int64_t y, int64_t x, py::object direction) {
  Objective o;
  o.kind = enum_value<Objective::Kind>(kind, "objective");
  o.layer = layer;
  o.indices = indices;
  o.y = y;
  o.x = x;
  if (!direction.is_none()) {
    TORCH_CHECK_VALUE(THPVariable_Check(direction.ptr()), "cnnviz: direction must be a tensor (C,) or (B, C)");
    o.directions = THPVariable_Unpack(direction.ptr());
  }
  return o;
}

void bind_maximization(py::module_& m) {
  py::class_<MaximizeOptions> c(m, "MaximizeOptions");
  c.def(py::init<>());
  CNNVIZ_OPTION(c, MaximizeOptions, iterations);
  CNNVIZ_OPTION(c, MaximizeOptions, optimizer);
  CNNVIZ_OPTION(c, MaximizeOptions, learning_rate);
  CNNVIZ_OPTION(c, MaximizeOptions, momentum);
  CNNVIZ_OPTION(c, MaximizeOptions, size);
  CNNVIZ_OPTION(c, MaximizeOptions, parameterization);
  CNNVIZ_OPTION(c, MaximizeOptions, decay_power);
  CNNVIZ_OPTION(c, MaximizeOptions, decorrelate);
  CNNVIZ_OPTION(c, MaximizeOptions, sigmoid);
  CNNVIZ_OPTION(c, MaximizeOptions, init_scale);
  CNNVIZ_OPTION(c, MaximizeOptions, init_image);
  CNNVIZ_OPTION(c, MaximizeOptions, seed);
  CNNVIZ_OPTION(c, MaximizeOptions, transforms);
  CNNVIZ_OPTION(c, MaximizeOptions, pad);
  CNNVIZ_OPTION(c, MaximizeOptions, jitter);
  CNNVIZ_OPTION(c, MaximizeOptions, scale_min);
  CNNVIZ_OPTION(c, MaximizeOptions, scale_max);
  CNNVIZ_OPTION(c, MaximizeOptions, rotate);
  CNNVIZ_OPTION(c, MaximizeOptions, lambda_alpha);
  CNNVIZ_OPTION(c, MaximizeOptions, alpha);
  CNNVIZ_OPTION(c, MaximizeOptions, lambda_tv);
  CNNVIZ_OPTION(c, MaximizeOptions, tv_beta);
  CNNVIZ_OPTION(c, MaximizeOptions, lambda_blur);
  CNNVIZ_OPTION(c, MaximizeOptions, blur_sigma);
  CNNVIZ_OPTION(c, MaximizeOptions, mean);
  CNNVIZ_OPTION(c, MaximizeOptions, std);
  CNNVIZ_OPTION(c, MaximizeOptions, snapshot_every);
  CNNVIZ_OPTION(c, MaximizeOptions, on_snapshot);

  py::class_<MaximizeResult>(m, "MaximizeResult")
      .def_readonly("image", &MaximizeResult::image)
      .def_readonly("objective", &MaximizeResult::objective)
      .def_readonly("initial_objective", &MaximizeResult::initial_objective)
      .def_readonly("losses", &MaximizeResult::losses)
      .def_readonly("snapshots", &MaximizeResult::snapshots)
      .def_readonly("snapshot_steps", &MaximizeResult::snapshot_steps)
      .def_readonly("stopped_early", &MaximizeResult::stopped_early)
      .def_readwrite("interrupted", &MaximizeResult::interrupted)
      .def("__repr__", [](const MaximizeResult& r) {
        return "MaximizeResult(images=" + std::to_string(r.image.size(0)) + ", steps=" +
               std::to_string(r.losses.size(0)) + (r.stopped_early ? ", stopped_early" : "") +
               (r.interrupted ? ", interrupted" : "") + ")";
      });

  m.def("maximize", [](py::object model, const std::string& kind, const std::string& layer,
                       const std::vector<int64_t>& indices, int64_t y, int64_t x, py::object direction,
                       MaximizeOptions o, py::object progress) {
    auto any = to_model(model);
    auto objective = to_objective(kind, layer, indices, y, x, std::move(direction));
    return with_progress(progress, [&](ProgressCallback cb) {
      return cnnviz::maximize(any, objective, o.progress(std::move(cb)));
    });
  });

  py::class_<TopFilters>(m, "TopFilters")
      .def_readonly("channels", &TopFilters::channels)
      .def_readonly("scores", &TopFilters::scores)
      .def_readonly("activations", &TopFilters::activations)
      .def("__repr__", [](const TopFilters& t) {
        std::string s = "TopFilters(channels per image=[";
        for (int64_t i = 0; i < t.channels.size(0); ++i) {
          s += i ? ", [" : "[";
          for (int64_t j = 0; j < t.channels.size(1); ++j)
            s += (j ? ", " : "") + std::to_string(t.channels[i][j].item<int64_t>());
          s += "]";
        }
        return s + "])";
      });
  m.def("top_filters", [](py::object model, const torch::Tensor& x, const std::string& layer, int64_t k,
                          const std::string& reduction, c10::optional<torch::Tensor> reference_mean,
                          c10::optional<torch::Tensor> reference_std, const std::string& relative) {
    auto any = to_model(model);
    ThreadScope threads(policy_threads(any, x, batch_rows(x)));
    TopFiltersReference ref;
    if (reference_mean) ref.mean = *reference_mean;
    if (reference_std) ref.std = *reference_std;
    ref.relative = relative;
    py::gil_scoped_release release;
    return cnnviz::top_filters(any, x, layer, k, reduction, ref);
  });
}

void bind_deep_dream(py::module_& m) {
  py::class_<DeepDreamOptions> c(m, "DeepDreamOptions");
  c.def(py::init<>());
  CNNVIZ_OPTION(c, DeepDreamOptions, iterations);
  CNNVIZ_OPTION(c, DeepDreamOptions, octaves);
  CNNVIZ_OPTION(c, DeepDreamOptions, octave_scale);
  CNNVIZ_OPTION(c, DeepDreamOptions, learning_rate);
  CNNVIZ_OPTION(c, DeepDreamOptions, jitter);
  CNNVIZ_OPTION(c, DeepDreamOptions, grad_blur_sigma);
  CNNVIZ_OPTION(c, DeepDreamOptions, clamp_pixels);
  CNNVIZ_OPTION(c, DeepDreamOptions, mean);
  CNNVIZ_OPTION(c, DeepDreamOptions, std);
  CNNVIZ_OPTION(c, DeepDreamOptions, seed);
  CNNVIZ_OPTION(c, DeepDreamOptions, snapshot_every);
  CNNVIZ_OPTION(c, DeepDreamOptions, on_snapshot);

  py::class_<DeepDreamResult>(m, "DeepDreamResult")
      .def_readonly("image", &DeepDreamResult::image)
      .def_readonly("losses", &DeepDreamResult::losses)
      .def_readonly("stopped_early", &DeepDreamResult::stopped_early)
      .def_readwrite("interrupted", &DeepDreamResult::interrupted)
      .def("__repr__", [](const DeepDreamResult& r) {
        return "DeepDreamResult(steps=" + std::to_string(r.losses.size(0)) +
               (r.stopped_early ? ", stopped_early" : "") + (r.interrupted ? ", interrupted" : "") + ")";
      });
  m.def("deep_dream", [](py::object model, const torch::Tensor& x, const std::vector<std::string>& layers,
                         DeepDreamOptions o, py::object progress) {
    auto any = to_model(model);
    ThreadScope threads(policy_threads(any, x, batch_rows(x)));
    return with_progress(progress, [&](ProgressCallback cb) {
      return cnnviz::deep_dream(any, x, layers, o.progress(std::move(cb)));
    });
  });
}

}  // namespace

void init_optimization(py::module_& m) {
  bind_inversion(m);
  bind_maximization(m);
  bind_deep_dream(m);
}

}  // namespace bindings
}  // namespace cnnviz
