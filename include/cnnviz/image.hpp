#pragma once
// Images on the host: decoding and encoding (stb_image, src/image_codec.cpp), the
// preprocessing that models expect, and rendering of maps and batches (src/image.cpp).
//
// Conventions: an *image* is an (H, W, 3) uint8 tensor, channels last, as decoded; a model
// input is an (N, 3, H, W) float batch, normalized with a Normalization (mean, std).
// Functions that take an image also accept (H, W) and (H, W, 1 | 4) tensors (gray is
// replicated, alpha dropped) and floating point images with values in [0, 1].
//
// Light: torch only. The zero-copy xtensor adapters are in the opt-in cnnviz/xtensor.hpp.

#include <torch/torch.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "cnnviz/normalization.hpp"
#include "cnnviz/options.hpp"

namespace cnnviz {

// ---------------------------------------------------------------------------------------
// Decoding and encoding (src/image_codec.cpp).

/// The JPEG quality (1-100) of encode_image and save_image when none is given.
inline constexpr int kJpegQuality = 95;

#define CNNVIZ_DECODE_OPTIONS(X)                                                        \
  X(int64_t, max_side, 16384, "Largest width or height accepted.")                       \
  X(int64_t, max_pixels, (int64_t(1) << 28), "Largest width * height accepted (2^28 pixels: 768 MiB as RGB).")

/// Limits checked against the dimensions a file declares, before any pixel memory is
/// allocated: untrusted files must not make the decoder allocate gigabytes.
struct DecodeOptions {
  CNNVIZ_OPTIONS(DecodeOptions, CNNVIZ_DECODE_OPTIONS)
};

/// Decodes a JPEG, PNG, BMP or GIF (first frame) held in memory into an (H, W, 3) uint8
/// image; gray and RGBA are converted to RGB. `source` names the data in error messages.
/// Throws c10::ValueError for data that is not such an image, is truncated or corrupt, or
/// declares dimensions beyond `options`.
torch::Tensor decode_image(const uint8_t* data, size_t size, const DecodeOptions& options = {},
                           const std::string& source = "");

/// Decodes the encoded bytes in a 1-D uint8 tensor (e.g. a file's contents).
torch::Tensor decode_image(const torch::Tensor& bytes, const DecodeOptions& options = {});

/// Reads and decodes an image file into (H, W, 3) uint8. A file that cannot be read throws
/// cnnviz::FileError (a std::system_error with the errno; FileNotFoundError when missing;
/// OSError in Python); bad contents throw c10::ValueError.
torch::Tensor load_image(const std::string& path, const DecodeOptions& options = {});

/// Encodes an image as "png", "jpeg" (or "jpg") or "bmp". Accepts (H, W) and (H, W, C) with
/// C in {1, 3, 4}, uint8 or float in [0, 1]; one channel is written as a gray image, four
/// as RGBA where the format has alpha. `quality` (1-100) applies to JPEG.
std::vector<uint8_t> encode_image(const torch::Tensor& image, const std::string& format,
                                  int quality = kJpegQuality);

/// Writes an image to `path`, the format chosen by its extension (.png, .jpg, .jpeg, .bmp;
/// another extension is a c10::ValueError). Accepts what encode_image accepts. Write
/// failures throw cnnviz::FileError.
void save_image(const torch::Tensor& image, const std::string& path, int quality = kJpegQuality);

// ---------------------------------------------------------------------------------------
// Image tensors (src/image.cpp).

/// Any image as a contiguous (H, W, 3) uint8 tensor on the CPU: (H, W) and (H, W, 1) gray is
/// replicated, (H, W, 4) loses its alpha, floating point values in [0, 1] are scaled by 255
/// and rounded (values outside are clamped). `what` names the argument in errors.
torch::Tensor as_image_tensor(const torch::Tensor& image, const char* what = "image");

/// Resizes an image (H, W, C) or a map (H, W) to (height, width) with bilinear
/// interpolation, antialiased when shrinking (the weights of PIL and of torchvision's
/// antialias=True, by a separable filter several times faster than torch 1.13's). uint8
/// stays uint8 (rounded); floating point stays floating point.
torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width, bool antialias = true);

// ---------------------------------------------------------------------------------------
// Model inputs.

/// preprocess()'s output size (height, width); empty keeps the image's size. It converts from
/// a vector or a brace list (`{32, 32}`, `{}`). Only PreprocessOptions' default holds a size
/// nobody asked for (ImageNet's 224 x 224): preprocess() warns when that default upscales an
/// image 2x or more (a 32 x 32 CIFAR image would change a CIFAR model's answer), and never
/// for a size that was given.
class OutputSize {
 public:
  OutputSize(std::initializer_list<int64_t> hw) : hw_(hw) {}   // NOLINT: implicit by design
  OutputSize(std::vector<int64_t> hw) : hw_(std::move(hw)) {}  // NOLINT: implicit by design
  /// The default nobody asked for: 224 x 224.
  static OutputSize imagenet_default() {
    OutputSize s{224, 224};
    s.given_ = false;
    return s;
  }
  const std::vector<int64_t>& values() const { return hw_; }
  operator const std::vector<int64_t>&() const { return hw_; }  // NOLINT: reads as the vector
  /// False only for imagenet_default().
  bool given() const { return given_; }

 private:
  std::vector<int64_t> hw_;
  bool given_ = true;
};

#define CNNVIZ_PREPROCESS_OPTIONS(X)                                                                               \
  X(OutputSize, size, OutputSize::imagenet_default(),                                                              \
    "Output (height, width). With resize 0 the whole image is resized to it (the aspect ratio may change); "       \
    "otherwise it is the center crop taken after that resize. Empty: keep the size. Not given: 224 x 224, with "   \
    "a warning when that upscales the image 2x or more.")                                                          \
  X(int64_t, resize, 0,                                                                                            \
    "When > 0, first resize the shorter side to this (keeping the aspect ratio), then center-crop size: the "      \
    "ImageNet evaluation protocol is resize 256 and size 224.")                                                    \
  X(Normalization, normalization, {}, "Per-channel mean and std (1 or 3 values) applied after scaling to [0, 1].") \
  X(bool, antialias, true, "Antialias when shrinking (as PIL and torchvision's antialias=True do).")

/// How preprocess() turns an image into a model input.
struct PreprocessOptions {
  CNNVIZ_OPTIONS(PreprocessOptions, CNNVIZ_PREPROCESS_OPTIONS)

  PreprocessOptions() = default;
  /// A square output size.
  PreprocessOptions(int64_t size) : size_({size, size}) {}  // NOLINT: implicit by design
  /// An output size (height, width).
  PreprocessOptions(int64_t height, int64_t width) : size_({height, width}) {}
};

/// An image (H, W, 3) (or what as_image_tensor accepts; floating point in [0, 1] keeps its
/// precision) as a normalized model input (1, 3, S_h, S_w) float32: resize (or resize the
/// shorter side and center-crop), scale to [0, 1], subtract the mean and divide by the std.
/// The default size (224) and statistics are ImageNet's: a CIFAR-10 model wants
/// PreprocessOptions(32) (the Python wrapper reads both from the model with model=); the
/// default size warns (TORCH_WARN) when it upscales a side 2x or more.
torch::Tensor preprocess(const torch::Tensor& image, const PreprocessOptions& options = {});

/// Undoes preprocess(): a normalized (1, C, H, W) or (C, H, W) tensor, C in {1, 3} matching
/// the normalization's values, to an (H, W, 3) uint8 image (x * std + mean, clamped to
/// [0, 1]). ImageNet statistics by default.
torch::Tensor deprocess(const torch::Tensor& tensor, const Normalization& normalization = {});

// ---------------------------------------------------------------------------------------
// Rendering.

/// The colormap names colormap() knows (matplotlib's tables).
std::vector<std::string> colormap_names();

#define CNNVIZ_COLORMAP_OPTIONS(X)                                                                         \
  X(std::string, name, "viridis",                                                                          \
    "One of colormap_names(): gray, hot, jet, viridis, plasma, inferno, magma, cividis, turbo, coolwarm, " \
    "bwr, seismic, RdBu_r.")                                                                               \
  X(c10::optional<double>, vmin, c10::nullopt, "The value mapped to the first color; unset: the map's min.") \
  X(c10::optional<double>, vmax, c10::nullopt, "The value mapped to the last color; unset: the map's max.")  \
  X(bool, symmetric, false,                                                                                \
    "Center the range on 0 (from -max|v| to max|v|): for signed maps and diverging colormaps.")

/// How colormap() maps values to colors.
struct ColormapOptions {
  CNNVIZ_OPTIONS(ColormapOptions, CNNVIZ_COLORMAP_OPTIONS)

  ColormapOptions() = default;
  ColormapOptions(std::string name) : name_(std::move(name)) {}  // NOLINT: implicit by design
  ColormapOptions(const char* name) : name_(name) {}             // NOLINT: implicit by design
};

/// Colors a map (H, W) (or (1, 1, H, W)) into an (H, W, 3) uint8 image. Values are scaled
/// min-max to [0, 1] unless vmin/vmax are set (a constant map gives the first color, or the
/// middle one when symmetric); colors match matplotlib's `imshow(map, cmap)`.
torch::Tensor colormap(const torch::Tensor& map, const ColormapOptions& options = {});

#define CNNVIZ_OVERLAY_OPTIONS(X)                                                                     \
  X(double, alpha, 0.5, "Weight of the heatmap colors: out = (1 - alpha) * image + alpha * color.")   \
  X(std::string, colormap, "jet", "Colormap name (see colormap_names()).")                            \
  X(c10::optional<double>, vmin, c10::nullopt, "The heatmap value of the first color; unset: its min.") \
  X(c10::optional<double>, vmax, c10::nullopt, "The heatmap value of the last color; unset: its max.")

/// How overlay() blends a heatmap over an image.
struct OverlayOptions {
  CNNVIZ_OPTIONS(OverlayOptions, CNNVIZ_OVERLAY_OPTIONS)
};

/// Blends a heatmap (h, w) (any size: it is resized bilinearly to the image) colored with a
/// colormap over an image (H, W, 3); returns (H, W, 3) uint8.
torch::Tensor overlay(const torch::Tensor& image, const torch::Tensor& heatmap, const OverlayOptions& options = {});

#define CNNVIZ_GRID_OPTIONS(X)                                                                    \
  X(int64_t, nrow, 8, "Images per row.")                                                          \
  X(int64_t, padding, 2, "Pixels between and around the images.")                                 \
  X(double, pad_value, 0.0, "Gray level of the padding, in [0, 1].")                              \
  X(bool, normalize, false, "Scale the values of all images together min-max to [0, 1].")         \
  X(bool, scale_each, false, "With normalize: scale each image by its own min and max (feature maps, filters).") \
  X(std::string, colormap, "", "When not empty, one-channel images are colored with this colormap instead of gray.")

/// How make_grid() lays out images (the options of torchvision.utils.make_grid).
struct GridOptions {
  CNNVIZ_OPTIONS(GridOptions, CNNVIZ_GRID_OPTIONS)
};

/// Tiles a batch into one (H', W', 3) uint8 image, images placed row by row. `images` is
/// (N, C, H, W) floating point with values in [0, 1] (or any range with normalize()),
/// C in {1, 3}, or (N, H, W, 3) uint8. One image is returned without padding, as
/// torchvision does.
torch::Tensor make_grid(const torch::Tensor& images, const GridOptions& options = {});

/// Tiles a list of images of one size: each (H, W, C) uint8 image (C in {1, 3, 4}), (C, H, W)
/// or (1, C, H, W) floating point image (C in {1, 3}), or (H, W) floating point map.
torch::Tensor make_grid(const std::vector<torch::Tensor>& images, const GridOptions& options = {});

}  // namespace cnnviz
