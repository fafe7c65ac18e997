#include "bindings.hpp"

namespace cnnviz {
namespace bindings {
void init_metrics(py::module_& m) {}
}  // namespace bindings
}  // namespace cnnviz
