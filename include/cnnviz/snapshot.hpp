#pragma once
// Live images from the optimization loops (invert, maximize, deep_dream): a callback that
// receives the current image whenever a loop takes a snapshot.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

namespace cnnviz {

/// Called whenever a loop takes a snapshot (every `snapshot_every` steps) with the 1-based
/// step and the current image (N, C, H, W), detached, normalized like the model's input.
using SnapshotCallback = std::function<void(int64_t step, const at::Tensor& image)>;

}  // namespace cnnviz
