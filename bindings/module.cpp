// cnnviz._C: wires one init function per area (declared in bindings.hpp).
#include "bindings.hpp"

PYBIND11_MODULE(_C, m) {
  m.doc() = "cnnviz native core (private: use the cnnviz package)";
  m.attr("__version__") = CNNVIZ_VERSION;
  m.attr("built_with_torch") = CNNVIZ_BUILT_WITH_TORCH;
  cnnviz::bindings::init_image(m);
  cnnviz::bindings::init_regularizers(m);
  cnnviz::bindings::init_metrics(m);
  cnnviz::bindings::init_models(m);
  cnnviz::bindings::init_optimization(m);
  cnnviz::bindings::init_attribution(m);
  cnnviz::bindings::init_adversarial(m);
  cnnviz::bindings::init_analysis_faithfulness(m);
  cnnviz::bindings::init_analysis_filters(m);
}
