#include "bindings.hpp"

namespace cnnviz {
namespace bindings {
void init_image(py::module_& m) {}
}  // namespace bindings
}  // namespace cnnviz
