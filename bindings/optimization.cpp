#include "bindings.hpp"

namespace cnnviz {
namespace bindings {
void init_optimization(py::module_& m) {}
}  // namespace bindings
}  // namespace cnnviz
