#include "bindings.hpp"

namespace cnnviz {
namespace bindings {
void init_adversarial(py::module_& m) {}
}  // namespace bindings
}  // namespace cnnviz
