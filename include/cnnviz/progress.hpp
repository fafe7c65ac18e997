#pragma once
// Progress reporting for long loops: a callback per step that can also stop the loop.

#include <cstdint>
#include <functional>

namespace cnnviz {

/// Called after each step with the 1-based step, the total and the current loss (or
/// objective). Returning false stops the loop; the algorithm then returns what it has,
/// with its result's `stopped_early` set.
using ProgressCallback = std::function<bool(int64_t step, int64_t total, double loss)>;

namespace detail {
/// Calls the callback if there is one; true means "go on".
inline bool report(const ProgressCallback& cb, int64_t step, int64_t total, double loss) {
  return !cb || cb(step, total, loss);
}
}  // namespace detail

}  // namespace cnnviz
