// cnnviz._C: deletion/insertion, the randomization sanity check, rank correlation, layer
// information and the adversarial report (include/cnnviz/analysis/).
#include "attribution_util.hpp"

#include <sstream>

#include "cnnviz/analysis/adversarial_report.hpp"
#include "cnnviz/analysis/faithfulness.hpp"
#include "cnnviz/analysis/layer_information.hpp"

namespace cnnviz {
namespace bindings {

CNNVIZ_ENUM_NAMES(Attack, {Attack::fgsm, "fgsm"}, {Attack::pgd, "pgd"});

namespace {

/// "[0.12, 0.34, ...]": the first values of a tensor, for reprs.
std::string brief(const torch::Tensor& t, int64_t k = 4) {
  if (!t.defined()) return "None";
  auto f = t.detach().to(torch::kCPU, torch::kDouble).flatten();
  std::ostringstream os;
  os.precision(3);
  os << "[";
  for (int64_t i = 0; i < std::min<int64_t>(k, f.numel()); ++i) os << (i ? ", " : "") << f[i].item<double>();
  if (f.numel() > k) os << ", ...";
  os << "]";
  return os.str();
}

void bind_deletion_insertion(py::module_& m) {
  bind_options<DeletionInsertionOptions>(m, "DeletionInsertionOptions", "Options of deletion_insertion().");
  py::class_<DeletionInsertionResult>(m, "DeletionInsertionResult", py::dynamic_attr(),
                                      "Deletion and insertion curves of an attribution map, with their areas.")
      .def_readonly("fractions", &DeletionInsertionResult::fractions)
      .def_readonly("deletion", &DeletionInsertionResult::deletion)
      .def_readonly("insertion", &DeletionInsertionResult::insertion)
      .def_readonly("deletion_auc", &DeletionInsertionResult::deletion_auc)
      .def_readonly("insertion_auc", &DeletionInsertionResult::insertion_auc)
      .def_readonly("target", &DeletionInsertionResult::target)
      .def_readonly("logits", &DeletionInsertionResult::logits)
      .def_readonly("batch_size", &DeletionInsertionResult::batch_size)
      .def_readonly("stopped_early", &DeletionInsertionResult::stopped_early)
      .def_readwrite("interrupted", &DeletionInsertionResult::interrupted)
      .def("__repr__", [](const DeletionInsertionResult& r) {
        std::ostringstream os;
        os << "DeletionInsertionResult(images=" << r.deletion.size(0) << ", steps=" << r.fractions.numel() - 1
           << ", deletion_auc=" << brief(r.deletion_auc) << ", insertion_auc=" << brief(r.insertion_auc)
           << ", target=" << brief(r.target) << (r.stopped_early ? ", stopped_early=True" : "") << ")";
        return os.str();
      });
  m.def("deletion_insertion", [](py::object model, const torch::Tensor& x, const torch::Tensor& attribution,
                                 py::object target, DeletionInsertionOptions o, py::object progress) {
    auto mdl = to_model(model);
    auto t = to_target(target);
    return with_progress(progress, [&](ProgressCallback cb) {
      return cnnviz::deletion_insertion(mdl, x, attribution, t, o.progress(cb));
    });
  });
  m.def("deletion_insertion_batch_size", &cnnviz::deletion_insertion_batch_size, py::arg("x"),
        py::arg("options") = DeletionInsertionOptions());
  m.def("rank_correlation", &cnnviz::rank_correlation, py::call_guard<py::gil_scoped_release>());
}

void bind_sanity_check(py::module_& m) {
  bind_options<SanityCheckOptions>(m, "SanityCheckOptions", "Options of sanity_check().");
  py::class_<SanityCheckResult>(m, "SanityCheckResult", py::dynamic_attr(),
                                "The model-parameter randomization test: maps and their similarity per step.")
      .def_readonly("steps", &SanityCheckResult::steps)
      .def_readonly("target", &SanityCheckResult::target)
      .def_readonly("original", &SanityCheckResult::original)
      .def_readonly("maps", &SanityCheckResult::maps)
      .def_readonly("rank_correlation", &SanityCheckResult::rank_correlation)
      .def_property_readonly("ssim", [](const SanityCheckResult& r) -> py::object {
        return r.ssim.defined() ? py::cast(r.ssim) : py::none();
      })
      .def_readonly("stopped_early", &SanityCheckResult::stopped_early)
      .def_readwrite("interrupted", &SanityCheckResult::interrupted)
      .def("__repr__", [](const SanityCheckResult& r) {
        std::ostringstream os;
        os << "SanityCheckResult(steps=" << r.steps.size();
        if (!r.steps.empty()) os << " ('" << r.steps.front() << "' ... '" << r.steps.back() << "')";
        os << ", mean rank_correlation per step=" << brief(r.rank_correlation.mean(1), 6)
           << (r.stopped_early ? ", stopped_early=True" : "") << ")";
        return os.str();
      });
  // method(model, x, target) -> (N, h, w) is called with `model` for the original map and
  // with `copy` after each re-initialization.
  m.def("sanity_check", [](py::object method, py::object model, py::object copy, const torch::Tensor& x,
                           py::object target, SanityCheckOptions o, py::object progress) {
    auto original = to_model(model), copied = to_model(copy);
    auto t = to_target(target);
    AttributionFn fn = [method, model, copy, copied](const AnyModel& which, const torch::Tensor& xx,
                                                       const torch::Tensor& tt) {
      py::gil_scoped_acquire gil;
      py::object r = method(&which.impl() == &copied.impl() ? copy : model, xx, tt);
      TORCH_CHECK_VALUE(THPVariable_Check(r.ptr()), "cnnviz: sanity_check: the method must return a tensor, got ",
                        std::string(py::str(r.get_type())));
      return THPVariable_Unpack(r.ptr());
    };
    return with_progress(progress, [&](ProgressCallback cb) {
      return cnnviz::sanity_check(fn, original, copied, x, t, o.progress(cb));
    });
  });
}

void bind_layer_information(py::module_& m) {
  bind_options<LayerInformationOptions>(m, "LayerInformationOptions", "Options of layer_information().");
  py::class_<LayerInformation>(m, "LayerInformation", py::dynamic_attr(),
                               "What each layer keeps of an image: inversions, SSIM, PSNR, MSE, the bottleneck.")
      .def_readonly("layers", &LayerInformation::layers)
      .def_readonly("inversions", &LayerInformation::inversions)
      .def_readonly("ssim", &LayerInformation::ssim)
      .def_readonly("psnr", &LayerInformation::psnr)
      .def_readonly("mse", &LayerInformation::mse)
      .def_readonly("channels", &LayerInformation::channels)
      .def_readonly("height", &LayerInformation::height)
      .def_readonly("width", &LayerInformation::width)
      .def_readonly("ssim_drop", &LayerInformation::ssim_drop)
      .def_readonly("bottleneck", &LayerInformation::bottleneck)
      .def_readonly("bottleneck_layer", &LayerInformation::bottleneck_layer)
      .def_readonly("stopped_early", &LayerInformation::stopped_early)
      .def_readwrite("interrupted", &LayerInformation::interrupted)
      .def("__repr__", [](const LayerInformation& r) {
        std::ostringstream os;
        os.precision(3);
        os << "LayerInformation(";
        auto s = r.ssim.mean(1), p = r.psnr.mean(1);
        for (size_t l = 0; l < r.layers.size(); ++l)
          os << (l ? ", " : "") << "'" << r.layers[l] << "' " << r.channels[l].item<int64_t>() << "x"
             << r.height[l].item<int64_t>() << "x" << r.width[l].item<int64_t>() << ": ssim " << s[l].item<double>()
             << " psnr " << p[l].item<double>();
        os << "; bottleneck='" << r.bottleneck_layer << "'" << (r.stopped_early ? ", stopped_early=True" : "") << ")";
        return os.str();
      });
  m.def("layer_information", [](py::object model, const torch::Tensor& x, const std::vector<std::string>& layers,
                                LayerInformationOptions o, py::object progress) {
    auto mdl = to_model(model);
    return with_progress(progress, [&](ProgressCallback cb) {
      o.inversion().progress(cb);
      return cnnviz::layer_information(mdl, x, layers, o);
    });
  });
}

void bind_adversarial_report(py::module_& m) {
  bind_options<AdversarialReportOptions>(m, "AdversarialReportOptions", "Options of adversarial_report().");
  py::class_<AdversarialReport>(m, "AdversarialReport", py::dynamic_attr(),
                                "An attack and what it changed: predictions, saliency, layer divergence.")
      .def_readonly("attack", &AdversarialReport::attack)
      .def_readonly("probabilities_before", &AdversarialReport::probabilities_before)
      .def_readonly("probabilities_after", &AdversarialReport::probabilities_after)
      .def_readonly("saliency_before", &AdversarialReport::saliency_before)
      .def_readonly("saliency_after", &AdversarialReport::saliency_after)
      .def_readonly("saliency_correlation", &AdversarialReport::saliency_correlation)
      .def_readonly("layers", &AdversarialReport::layers)
      .def_readonly("divergence", &AdversarialReport::divergence)
      .def_readonly("most_affected", &AdversarialReport::most_affected)
      .def_property_readonly("most_affected_layer", [](const AdversarialReport& r) -> py::object {
        return r.most_affected >= 0 ? py::cast(r.layers[static_cast<size_t>(r.most_affected)]) : py::none();
      })
      // The attack's: a stopped PGD leaves a partial attack, reported on like a whole one.
      .def_readonly("stopped_early", &AdversarialReport::stopped_early)
      .def_readwrite("interrupted", &AdversarialReport::interrupted)
      .def("__repr__", [](const AdversarialReport& r) {
        std::ostringstream os;
        os << "AdversarialReport(prediction " << brief(r.attack.prediction_before) << " -> "
           << brief(r.attack.prediction_after) << ", success=" << brief(r.attack.success)
           << ", saliency_correlation=" << brief(r.saliency_correlation);
        if (r.most_affected >= 0) os << ", most_affected='" << r.layers[static_cast<size_t>(r.most_affected)] << "'";
        os << ")";
        return os.str();
      });
  m.def("adversarial_report", [](py::object model, const torch::Tensor& x, py::object target,
                                 AdversarialReportOptions o, py::object progress) {
    auto mdl = to_model(model);
    auto t = to_target(target);
    return with_progress(progress, [&](ProgressCallback cb) {
      o.pgd().progress(cb);
      return cnnviz::adversarial_report(mdl, x, t, o);
    });
  });
}

}  // namespace

void init_analysis_faithfulness(py::module_& m) {
  bind_deletion_insertion(m);
  bind_sanity_check(m);
  bind_layer_information(m);
  bind_adversarial_report(m);
}

}  // namespace bindings
}  // namespace cnnviz
