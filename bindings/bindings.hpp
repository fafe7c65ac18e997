#pragma once
// Shared by the binding files: pybind11 with torch's type casters, and the init function
// of each area.
#include <torch/extension.h>

namespace cnnviz {
namespace bindings {
namespace py = pybind11;

void init_image(py::module_& m);          // image.cpp
void init_regularizers(py::module_& m);   // regularizers.cpp
void init_models(py::module_& m);         // models.cpp
void init_optimization(py::module_& m);   // optimization.cpp: invert, maximize, deep_dream
void init_attribution(py::module_& m);    // attribution.cpp
void init_adversarial(py::module_& m);    // adversarial.cpp
void init_metrics(py::module_& m);        // metrics.cpp
void init_analysis_faithfulness(py::module_& m);  // analysis_faithfulness.cpp: deletion/insertion, sanity check, layer information, adversarial report
void init_analysis_filters(py::module_& m);  // analysis_filters.cpp: filter statistics, redundancy, CKA

}  // namespace bindings
}  // namespace cnnviz
