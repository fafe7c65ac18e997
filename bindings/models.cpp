#include "bindings.hpp"

namespace cnnviz {
namespace bindings {
void init_models(py::module_& m) {}
}  // namespace bindings
}  // namespace cnnviz
