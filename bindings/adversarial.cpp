// cnnviz._C: FGSM, PGD and layer divergence.
#include "attribution_util.hpp"
#include "cnnviz/threads.hpp"

#include "cnnviz/adversarial.hpp"

namespace cnnviz {
namespace bindings {

void init_adversarial(py::module_& m) {
  bind_options<FgsmOptions>(m, "FgsmOptions", "The options of fgsm(): budget, direction, input normalization.");
  bind_options<PgdOptions>(m, "PgdOptions", "The options of pgd(): budget, step, steps, start, normalization.");
  // Field docs and the repr come from python/cnnviz/_results.py, as for every result class.
  py::class_<AdversarialResult>(m, "AdversarialResult", py::dynamic_attr())
      .def_readonly("adversarial", &AdversarialResult::adversarial)
      .def_readonly("perturbation", &AdversarialResult::perturbation)
      .def_readonly("target", &AdversarialResult::target)
      .def_readonly("logits_before", &AdversarialResult::logits_before)
      .def_readonly("logits_after", &AdversarialResult::logits_after)
      .def_readonly("prediction_before", &AdversarialResult::prediction_before)
      .def_readonly("prediction_after", &AdversarialResult::prediction_after)
      .def_readonly("success", &AdversarialResult::success)
      .def_readonly("steps", &AdversarialResult::steps)
      .def_readonly("stopped_early", &AdversarialResult::stopped_early)
      .def_readwrite("interrupted", &AdversarialResult::interrupted);
  m.def("fgsm", [](py::object model, const torch::Tensor& x, py::object target, const FgsmOptions& o) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, x, batch_rows(x)));
    auto t = to_target(target);
    py::gil_scoped_release release;
    return cnnviz::fgsm(mdl, x, t, o);
  });
  m.def("pgd", [](py::object model, const torch::Tensor& x, py::object target, PgdOptions o, py::object progress) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, x, batch_rows(x)));
    auto t = to_target(target);
    return with_progress(progress, [&](ProgressCallback cb) { return cnnviz::pgd(mdl, x, t, o.progress(cb)); });
  });
  m.def("layer_divergence", [](py::object model, const torch::Tensor& clean, const torch::Tensor& adversarial,
                               const std::vector<std::string>& layers) {
    auto mdl = to_model(model);
    ThreadScope threads(policy_threads(mdl, clean, 2 * batch_rows(clean)));
    std::vector<std::pair<std::string, torch::Tensor>> out;
    {
      py::gil_scoped_release release;
      out = cnnviz::layer_divergence(mdl, clean, adversarial, layers);
    }
    py::dict d;
    for (auto& kv : out) d[py::str(kv.first)] = kv.second;
    return d;
  });
}

}  // namespace bindings
}  // namespace cnnviz
