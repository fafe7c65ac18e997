#include "bindings.hpp"

namespace cnnviz {
namespace bindings {
void init_regularizers(py::module_& m) {}
}  // namespace bindings
}  // namespace cnnviz
