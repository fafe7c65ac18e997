#pragma once
// Image helpers shared by the library's image sources (src/image.cpp, src/image_codec.cpp).
// Declarations only; not API.

#include <torch/torch.h>

namespace cnnviz {
namespace detail {

/// Validates an image and returns it on the CPU as (H, W, C), C in {1, 3} (alpha dropped),
/// dtype unchanged (uint8 or floating point). `what` names the argument in errors.
torch::Tensor image_hwc(const torch::Tensor& image, const char* what);

/// Float values in [0, 1] to uint8, rounding half up as torchvision's save_image does.
torch::Tensor to_uint8(const torch::Tensor& x);

}  // namespace detail
}  // namespace cnnviz
