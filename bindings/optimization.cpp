// cnnviz._C: feature inversion, activation maximization, top filters, deep dream. Options
// classes carry the defaults; the Python wrappers (cnnviz/optimization.py) fill them.
#include "attribution_util.hpp"

#include <pybind11/functional.h>  // on_snapshot: a Python callable, called with the GIL taken

#include "cnnviz/inversion.hpp"
#include "cnnviz/maximization.hpp"
#include "cnnviz/threads.hpp"

namespace cnnviz {
namespace bindings {

CNNVIZ_ENUM_NAMES(Objective::Kind, {Objective::Kind::channel, "channel"}, {Objective::Kind::neuron, "neuron"},
                  {Objective::Kind::logit, "logit"}, {Objective::Kind::direction, "direction"});

namespace {

void bind_inversion(py::module_& m) {
  bind_options<InversionOptions>(m, "InversionOptions", "Options of invert() and invert_layers().")
      .def_static("notebook", &InversionOptions::notebook, "The notebook's settings: SGD, lr 1e3, momentum 0.9.");

  py::class_<InversionResult>(m, "InversionResult")
      .def_readonly("layer", &InversionResult::layer, "The layer matched.")
      .def_readonly("image", &InversionResult::image, "(N, C, H, W) the reconstruction, normalized like x.")
      .def_readonly("losses", &InversionResult::losses, "(steps,) float64: the loss before each update.")
      .def_readonly("snapshots", &InversionResult::snapshots, "(N, C, H, W) copies after steps snapshot_steps.")
      .def_readonly("snapshot_steps", &InversionResult::snapshot_steps, "The steps of the snapshots.")
      .def_readonly("final_loss", &InversionResult::final_loss, "The loss of image (no jitter): feature_loss + prior_loss.")
      .def_readonly("feature_loss", &InversionResult::feature_loss, "The feature term of final_loss: euclidean_loss summed over images.")
      .def_readonly("prior_loss", &InversionResult::prior_loss, "The priors' part of final_loss.")
      .def_readonly("stopped_early", &InversionResult::stopped_early, "The progress callback stopped the loop.")
      .def_readwrite("interrupted", &InversionResult::interrupted, "Ctrl-C stopped the loop (partial result).")
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
  bind_options<MaximizeOptions>(m, "MaximizeOptions", "Options of maximize().");

  py::class_<MaximizeResult>(m, "MaximizeResult")
      .def_readonly("image", &MaximizeResult::image, "(B, 3, H, W) normalized like the model's input.")
      .def_readonly("objective", &MaximizeResult::objective, "(B,) the objective at image (no transforms).")
      .def_readonly("initial_objective", &MaximizeResult::initial_objective, "(B,) the objective at the start image.")
      .def_readonly("losses", &MaximizeResult::losses, "(steps,) float64: mean over images of -objective + priors.")
      .def_readonly("snapshots", &MaximizeResult::snapshots, "(B, 3, H, W) copies after steps snapshot_steps.")
      .def_readonly("snapshot_steps", &MaximizeResult::snapshot_steps, "The steps of the snapshots.")
      .def_readonly("stopped_early", &MaximizeResult::stopped_early, "The progress callback stopped the loop.")
      .def_readwrite("interrupted", &MaximizeResult::interrupted, "Ctrl-C stopped the loop (partial result).")
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
      .def_readonly("channels", &TopFilters::channels, "(N, k) int64: per image, highest score first.")
      .def_readonly("scores", &TopFilters::scores, "(N, k) float64: the ranking score.")
      .def_readonly("activations", &TopFilters::activations, "(N, k) float64: the channels' mean or max activation.")
      .def_readonly("stopped_early", &TopFilters::stopped_early, "Always False: one forward pass, no loop.")
      .def_readonly("interrupted", &TopFilters::interrupted, "Always False: one forward pass, no loop.")
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
    auto r = enum_value<Reduction>(reduction, "reduction");
    py::gil_scoped_release release;
    return cnnviz::top_filters(any, x, layer, k, r, ref);
  });
}

void bind_deep_dream(py::module_& m) {
  bind_options<DeepDreamOptions>(m, "DeepDreamOptions", "Options of deep_dream().");

  py::class_<DeepDreamResult>(m, "DeepDreamResult")
      .def_readonly("image", &DeepDreamResult::image, "(N, C, H, W) normalized like x.")
      .def_readonly("losses", &DeepDreamResult::losses, "(steps,) float64: sum over layers of mean(activation^2).")
      .def_readonly("snapshots", &DeepDreamResult::snapshots, "(N, C, h, w) copies at the octave's size after steps snapshot_steps.")
      .def_readonly("snapshot_steps", &DeepDreamResult::snapshot_steps, "The steps of the snapshots (over all octaves).")
      .def_readonly("stopped_early", &DeepDreamResult::stopped_early, "The progress callback stopped the loop.")
      .def_readwrite("interrupted", &DeepDreamResult::interrupted, "Ctrl-C stopped the loop (partial result).")
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
