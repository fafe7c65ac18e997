#include "bindings.hpp"

namespace cnnviz {
namespace bindings {
void init_attribution(py::module_& m) {}
}  // namespace bindings
}  // namespace cnnviz
