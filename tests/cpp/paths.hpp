// Where the source tree is, for tests that read the sample data or the shipped labels.
#pragma once

#include <string>

namespace cnnviz_test {
/// The project's source directory (absolute).
std::string source_dir();
}  // namespace cnnviz_test
