#pragma once
// File paths from users: a NUL byte would silently cut the path where the C library reads
// it ("dog.jpg\0.x" opens dog.jpg, "out\0.png" writes out), so such paths are refused.

#include <torch/torch.h>

#include <string>

namespace cnnviz {
namespace detail {

/// Raises ValueError for an empty path or one holding a NUL byte. `fn` names the caller.
inline void check_path(const std::string& path, const char* fn) {
  TORCH_CHECK_VALUE(!path.empty(), "cnnviz: ", fn, ": the path is empty");
  const auto nul = path.find('\0');
  TORCH_CHECK_VALUE(nul == std::string::npos, "cnnviz: ", fn, ": the path contains a NUL byte (at position ", nul,
                    ", after '", path.substr(0, nul), "'); refusing it rather than using the part before it");
}

}  // namespace detail
}  // namespace cnnviz
