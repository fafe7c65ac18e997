// The only test unit compiled with the checkout's absolute path, so that the other units (and
// their precompiled header) are the same in every checkout and ccache serves them from any clone.
#include "paths.hpp"

namespace cnnviz_test {
std::string source_dir() { return CNNVIZ_SOURCE_DIR; }
}  // namespace cnnviz_test
