#pragma once
// Images on the host: decoding and encoding (stb_image, compiled in src/image_codec.cpp),
// the preprocessing that models expect, and rendering of maps and batches.
//
// Conventions: an *image* is an (H, W, 3) uint8 tensor, channels last, as decoded; a model
// input is an (N, 3, H, W) float batch, normalized with a mean and std. Functions that take
// an image also accept (H, W) and (H, W, 1 | 4) tensors (gray is replicated, alpha dropped)
// and floating point images with values in [0, 1].
//
// xtensor is the host-side pixel layer: as_xtensor() adapts a contiguous CPU tensor without
// copying, from_xtensor() evaluates an expression into a new tensor; the colormap lookup,
// the overlay blend (an xtensor expression) and the grid tiling below work on such adaptors.
// Resizing is a separable antialiased filter written here (torch 1.13's is several times
// slower).

#include <torch/torch.h>

#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cnnviz/detail/finite.hpp"
#include "cnnviz/normalization.hpp"
#include "cnnviz/detail/image_colormaps.hpp"

namespace cnnviz {

// ---------------------------------------------------------------------------------------
// Decoding and encoding (src/image_codec.cpp).

/// Limits checked against the dimensions a file declares, before any pixel memory is
/// allocated: untrusted files must not make the decoder allocate gigabytes.
struct DecodeOptions {
  /// Largest width or height accepted.
  TORCH_ARG(int64_t, max_side) = 16384;
  /// Largest width * height accepted (2^28 pixels: 768 MiB as RGB).
  TORCH_ARG(int64_t, max_pixels) = int64_t(1) << 28;
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
/// std::system_error (errno code; OSError in Python); bad contents throw c10::ValueError.
torch::Tensor load_image(const std::string& path, const DecodeOptions& options = {});

/// Encodes an image as "png", "jpeg" (or "jpg") or "bmp". Accepts (H, W) and (H, W, C) with
/// C in {1, 3, 4}, uint8 or float in [0, 1]; one channel is written as a gray image, four
/// as RGBA where the format has alpha. `quality` (1-100) applies to JPEG.
std::vector<uint8_t> encode_image(const torch::Tensor& image, const std::string& format,
                                  int quality = 95);

/// Writes an image to `path`, the format chosen by its extension (.png, .jpg, .jpeg, .bmp;
/// another extension is a c10::ValueError). Accepts what encode_image accepts. Write
/// failures throw std::system_error.
void save_image(const torch::Tensor& image, const std::string& path, int quality = 95);

// ---------------------------------------------------------------------------------------
// Zero-copy adapters between tensors and xtensor.

/// An xtensor view of a contiguous CPU tensor of element type T, sharing its memory (the
/// tensor must outlive the view), with the tensor's shape: e.g. an (H, W, 3) uint8 image.
template <class T>
auto as_xtensor(const torch::Tensor& t) {
  TORCH_CHECK_VALUE(t.defined() && t.device().is_cpu() && t.is_contiguous(),
                    "cnnviz: as_xtensor needs a contiguous CPU tensor");
  TORCH_CHECK_VALUE(t.scalar_type() == c10::CppTypeToScalarType<T>::value,
                    "cnnviz: as_xtensor: element type does not match the tensor's ", t.scalar_type());
  std::vector<size_t> shape(t.sizes().begin(), t.sizes().end());
  return xt::adapt(t.data_ptr<T>(), static_cast<size_t>(t.numel()), xt::no_ownership(), shape);
}

/// Evaluates an xtensor expression into a new CPU tensor of the same shape and element type.
template <class E>
torch::Tensor from_xtensor(const xt::xexpression<E>& expression) {
  const auto& e = expression.derived_cast();
  using T = std::decay_t<typename E::value_type>;
  std::vector<int64_t> shape(e.shape().begin(), e.shape().end());
  auto out = torch::empty(shape, torch::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  auto view = as_xtensor<T>(out);
  xt::noalias(view) = e;
  return out;
}

// ---------------------------------------------------------------------------------------
// Image tensors.

namespace detail {

/// Validates an image and returns it on the CPU as (H, W, C), C in {1, 3} (alpha dropped),
/// dtype unchanged (uint8 or floating point). `what` names the argument in errors.
inline torch::Tensor image_hwc(const torch::Tensor& image, const char* what) {
  TORCH_CHECK_VALUE(image.defined(), "cnnviz: ", what, " is undefined");
  TORCH_CHECK_VALUE(image.dim() == 2 || image.dim() == 3, "cnnviz: ", what,
                    " must be an image (H, W) or (H, W, C), got shape ", image.sizes(),
                    image.dim() == 4 ? "; for a batch (N, C, H, W) use deprocess() or make_grid()" : "");
  auto t = image.dim() == 2 ? image.unsqueeze(-1) : image;
  const int64_t c = t.size(2);
  TORCH_CHECK_VALUE(c == 1 || c == 3 || c == 4, "cnnviz: ", what,
                    " must have 1, 3 or 4 channels last (H, W, C), got shape ", image.sizes(),
                    (t.size(0) == 1 || t.size(0) == 3) ? "; for a (C, H, W) tensor use deprocess()" : "");
  TORCH_CHECK_VALUE(t.size(0) > 0 && t.size(1) > 0, "cnnviz: ", what, " is empty, shape ",
                    image.sizes());
  TORCH_CHECK_VALUE(t.scalar_type() == torch::kUInt8 || t.is_floating_point(), "cnnviz: ", what,
                    " must be uint8, or floating point with values in [0, 1], got ", t.scalar_type());
  t = t.detach().cpu();
  if (c == 4) t = t.narrow(2, 0, 3);
  if (t.is_floating_point())
    TORCH_CHECK_VALUE(detail::all_finite(t), "cnnviz: ", what,
                      " contains NaN or infinite values");
  return t;
}

/// Float values in [0, 1] to uint8, rounding half up as torchvision's save_image does.
inline torch::Tensor to_uint8(const torch::Tensor& x) {
  return x.to(torch::kFloat).mul(255).add_(0.5).clamp_(0, 255).to(torch::kUInt8);
}

/// A validated floating point map (H, W); leading singleton dimensions are dropped.
inline torch::Tensor map_2d(const torch::Tensor& map, const char* what) {
  TORCH_CHECK_VALUE(map.defined(), "cnnviz: ", what, " is undefined");
  auto m = map.detach();
  while (m.dim() > 2 && m.size(0) == 1) m = m.squeeze(0);
  TORCH_CHECK_VALUE(m.dim() == 2, "cnnviz: ", what, " must be a map (H, W) (or (1, 1, H, W)), got shape ",
                    map.sizes());
  TORCH_CHECK_VALUE(m.numel() > 0, "cnnviz: ", what, " is empty, shape ", map.sizes());
  TORCH_CHECK_VALUE(m.scalar_type() != torch::kBool && !m.is_complex(), "cnnviz: ", what,
                    " must be real-valued, got ", m.scalar_type());
  m = m.cpu().to(torch::kFloat);
  TORCH_CHECK_VALUE(detail::all_finite(m), "cnnviz: ", what,
                    " contains NaN or infinite values");
  return m.contiguous();
}

/// Bilinear resize of a float batch (N, C, H, W), antialiased when shrinking (PIL's and
/// torchvision's antialias=True filter).
inline torch::Tensor resize_nchw(const torch::Tensor& x, int64_t height, int64_t width, bool antialias) {
  if (x.size(2) == height && x.size(3) == width) return x;
  namespace F = torch::nn::functional;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(false)
                               .antialias(antialias));
}

/// Per-output-index filter taps of an antialiased bilinear resize from in_size to out_size,
/// for the outputs [first, first + count): the weights of PIL and of torch's antialias=True
/// kernel (a triangle stretched by the scale when shrinking, normalized).
struct ResizeTaps {
  std::vector<int64_t> start, size;
  std::vector<float> weight;  // taps per output
  int64_t taps = 0;
};

inline ResizeTaps resize_taps(int64_t in_size, int64_t out_size, int64_t first, int64_t count) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double support = scale >= 1 ? scale : 1.0;
  const double inv = scale >= 1 ? 1.0 / scale : 1.0;
  ResizeTaps r;
  r.taps = 2 * static_cast<int64_t>(std::ceil(support)) + 1;
  r.start.resize(count);
  r.size.resize(count);
  r.weight.assign(static_cast<size_t>(count * r.taps), 0.0f);
  for (int64_t i = 0; i < count; ++i) {
    const double center = scale * (static_cast<double>(first + i) + 0.5);
    const int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t n = std::min<int64_t>({static_cast<int64_t>(center + support + 0.5), in_size, lo + r.taps}) - lo;
    float* w = &r.weight[static_cast<size_t>(i * r.taps)];
    double total = 0;
    for (int64_t j = 0; j < n; ++j) {
      const double x = std::abs((static_cast<double>(j + lo) - center + 0.5) * inv);
      w[j] = static_cast<float>(x < 1 ? 1 - x : 0);
      total += w[j];
    }
    if (total > 0)
      for (int64_t j = 0; j < n; ++j) w[j] = static_cast<float>(w[j] / total);
    r.start[i] = lo;
    r.size[i] = std::max<int64_t>(n, 0);
  }
  return r;
}

/// Antialiased bilinear resize of a contiguous (H, W, C) uint8 or float image to
/// (out_h, out_w), computing only the window of `rows` x `cols` outputs at (top, left) (a
/// center crop costs only what it keeps). Returns (C, rows, cols) float32 times `gain`.
/// Two separable passes over the pixels, rows in parallel: several times faster than
/// torch 1.13's generic antialiased kernel, with the same weights.
template <class T>
torch::Tensor resize_crop_chw(const torch::Tensor& hwc, int64_t out_h, int64_t out_w, int64_t top, int64_t left,
                              int64_t rows, int64_t cols, float gain) {
  const int64_t w = hwc.size(1), c = hwc.size(2);
  const T* src = hwc.data_ptr<T>();
  const auto ty = resize_taps(hwc.size(0), out_h, top, rows), tx = resize_taps(w, out_w, left, cols);
  const int64_t row0 = ty.start.front(), row1 = ty.start.back() + ty.size.back();
  // Horizontal pass over the input rows the window needs: (row1 - row0, cols, C).
  std::vector<float> mid(static_cast<size_t>((row1 - row0) * cols * c));
  at::parallel_for(row0, row1, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* in = src + r * w * c;
      float* out = mid.data() + (r - row0) * cols * c;
      for (int64_t j = 0; j < cols; ++j) {
        const float* wt = &tx.weight[static_cast<size_t>(j * tx.taps)];
        const T* p = in + tx.start[j] * c;
        for (int64_t ch = 0; ch < c; ++ch) {
          float acc = 0;
          for (int64_t k = 0; k < tx.size[j]; ++k) acc += wt[k] * static_cast<float>(p[k * c + ch]);
          out[j * c + ch] = acc;
        }
      }
    }
  });
  // Vertical pass, written channels first.
  auto result = torch::empty({c, rows, cols}, torch::kFloat);
  float* dst = result.data_ptr<float>();
  at::parallel_for(0, rows, 16, [&](int64_t i0, int64_t i1) {
    std::vector<float> acc(static_cast<size_t>(cols * c));
    for (int64_t i = i0; i < i1; ++i) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      const float* wt = &ty.weight[static_cast<size_t>(i * ty.taps)];
      for (int64_t k = 0; k < ty.size[i]; ++k) {
        const float* line = mid.data() + (ty.start[i] + k - row0) * cols * c;
        const float wk = wt[k] * gain;
        for (int64_t q = 0; q < cols * c; ++q) acc[static_cast<size_t>(q)] += wk * line[q];
      }
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t j = 0; j < cols; ++j) dst[(ch * rows + i) * cols + j] = acc[static_cast<size_t>(j * c + ch)];
    }
  });
  return result;
}

/// resize_crop_chw for a validated (H, W, C) CPU image of either dtype; values of uint8
/// images are scaled to [0, 1].
inline torch::Tensor resize_crop(const torch::Tensor& hwc, int64_t out_h, int64_t out_w, int64_t top, int64_t left,
                                 int64_t rows, int64_t cols) {
  if (hwc.scalar_type() == torch::kUInt8)
    return resize_crop_chw<uint8_t>(hwc.contiguous(), out_h, out_w, top, left, rows, cols, 1.0f / 255.0f);
  return resize_crop_chw<float>(hwc.to(torch::kFloat).contiguous(), out_h, out_w, top, left, rows, cols, 1.0f);
}

/// The lookup table of a colormap, by name.
inline const uint8_t* colormap_lut(const std::string& name) {
  for (const auto& lut : colormap_luts())
    if (name == lut.name) return reinterpret_cast<const uint8_t*>(lut.rgb);
  std::string known;
  for (const auto& lut : colormap_luts()) known += (known.empty() ? "" : ", ") + std::string(lut.name);
  TORCH_CHECK_VALUE(false, "cnnviz: unknown colormap '", name, "'; known: ", known);
}

/// Colors values in [0, 1] (any shape S) with a lookup table, giving (S..., 3) uint8. The
/// index is matplotlib's: floor(v * 256) clipped to 255.
inline torch::Tensor apply_lut(const torch::Tensor& unit, const uint8_t* lut) {
  auto v = unit.to(torch::kFloat).contiguous();
  auto sizes = v.sizes().vec();
  sizes.push_back(3);
  auto out = torch::empty(sizes, torch::kUInt8);
  auto src = as_xtensor<float>(v);
  auto dst = as_xtensor<uint8_t>(out);
  uint8_t* d = dst.data();
  const float* s = src.data();
  for (size_t i = 0; i < src.size(); ++i) {
    const float x = std::min(std::max(s[i], 0.0f), 1.0f) * 256.0f;
    const int idx = std::min(static_cast<int>(x), 255);
    std::memcpy(d + 3 * i, lut + 3 * idx, 3);
  }
  return out;
}

}  // namespace detail

/// Any image as a contiguous (H, W, 3) uint8 tensor on the CPU: (H, W) and (H, W, 1) gray is
/// replicated, (H, W, 4) loses its alpha, floating point values in [0, 1] are scaled by 255
/// and rounded (values outside are clamped).
inline torch::Tensor as_image_tensor(const torch::Tensor& image, const char* what = "image") {
  auto t = detail::image_hwc(image, what);
  if (t.is_floating_point()) t = detail::to_uint8(t);
  if (t.size(2) == 1) t = t.expand({t.size(0), t.size(1), 3});
  return t.contiguous();
}

/// Resizes an image (H, W, C) or a map (H, W) to (height, width) with bilinear
/// interpolation, antialiased when shrinking. uint8 stays uint8 (rounded); floating point
/// stays floating point.
inline torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width,
                                  bool antialias = true) {
  TORCH_CHECK_VALUE(height > 0 && width > 0, "cnnviz: resize_image: the size must be positive, got (",
                    height, ", ", width, ")");
  TORCH_CHECK_VALUE(image.defined() && (image.dim() == 2 || image.dim() == 3),
                    "cnnviz: resize_image takes an image (H, W, C) or a map (H, W), got ",
                    image.defined() ? image.sizes() : torch::IntArrayRef{});
  TORCH_CHECK_VALUE(image.scalar_type() == torch::kUInt8 || image.is_floating_point(),
                    "cnnviz: resize_image takes uint8 or floating point, got ", image.scalar_type());
  TORCH_CHECK_VALUE(image.numel() > 0, "cnnviz: resize_image: the image is empty, shape ", image.sizes());
  auto hwc = (image.dim() == 2 ? image.unsqueeze(-1) : image).detach().cpu();
  torch::Tensor chw;
  if (antialias) {
    chw = image.scalar_type() == torch::kUInt8
              ? detail::resize_crop_chw<uint8_t>(hwc.contiguous(), height, width, 0, 0, height, width, 1.0f)
              : detail::resize_crop_chw<float>(hwc.to(torch::kFloat).contiguous(), height, width, 0, 0, height, width,
                                               1.0f);
  } else {
    chw = detail::resize_nchw(hwc.to(torch::kFloat).permute({2, 0, 1}).unsqueeze(0), height, width, false).squeeze(0);
  }
  auto y = chw.permute({1, 2, 0});
  if (image.scalar_type() == torch::kUInt8) y = y.round().clamp(0, 255).to(torch::kUInt8);
  else y = y.to(image.scalar_type());
  if (image.dim() == 2) y = y.squeeze(-1);
  return y.contiguous();
}

// ---------------------------------------------------------------------------------------
// Model inputs.

/// How preprocess() turns an image into a model input.
struct PreprocessOptions {
  PreprocessOptions() = default;
  /// A square output size.
  PreprocessOptions(int64_t size) : size_({size, size}) {}  // NOLINT: implicit by design
  /// An output size (height, width).
  PreprocessOptions(int64_t height, int64_t width) : size_({height, width}) {}
  /// Output (height, width). With resize() == 0 the whole image is resized to it (the aspect
  /// ratio may change); otherwise it is the center crop taken after that resize. Empty:
  /// keep the size.
  TORCH_ARG(std::vector<int64_t>, size) = std::vector<int64_t>({224, 224});
  /// When > 0, first resize the shorter side to this (keeping the aspect ratio), then
  /// center-crop size(): the ImageNet evaluation protocol is resize(256) and size 224.
  TORCH_ARG(int64_t, resize) = 0;
  /// Per-channel mean and std subtracted and divided after scaling to [0, 1].
  TORCH_ARG(std::vector<double>, mean) = kImageNetMean;
  TORCH_ARG(std::vector<double>, std) = kImageNetStd;
  /// Antialias when shrinking (as PIL and torchvision's antialias=True do).
  TORCH_ARG(bool, antialias) = true;
};

namespace detail {
inline torch::Tensor channel_stat(const std::vector<double>& v, const char* name, const char* fn) {
  TORCH_CHECK_VALUE(v.size() == 3 || v.size() == 1, "cnnviz: ", fn, ": ", name,
                    " needs 3 values (or 1 for all channels), got ", v.size());
  for (double x : v) TORCH_CHECK_VALUE(std::isfinite(x), "cnnviz: ", fn, ": ", name, " must be finite");
  return torch::tensor(v, torch::kFloat).view({1, -1, 1, 1});
}
}  // namespace detail

/// An image (H, W, 3) (or what as_image_tensor accepts; floating point in [0, 1] keeps its
/// precision) as a normalized model input (1, 3, S_h, S_w) float32:
/// resize (or resize the shorter side and center-crop), scale to [0, 1], subtract the
/// mean and divide by the std.
inline torch::Tensor preprocess(const torch::Tensor& image, const PreprocessOptions& options = {}) {
  const auto& size = options.size();
  TORCH_CHECK_VALUE(size.empty() || size.size() == 2, "cnnviz: preprocess: size must be (height, width), got ",
                    size.size(), " values");
  TORCH_CHECK_VALUE(size.empty() || (size[0] > 0 && size[1] > 0), "cnnviz: preprocess: size must be positive, got ",
                    c10::IntArrayRef(size));
  TORCH_CHECK_VALUE(options.resize() >= 0, "cnnviz: preprocess: resize must be >= 0, got ", options.resize());
  auto mean = detail::channel_stat(options.mean(), "mean", "preprocess");
  auto std = detail::channel_stat(options.std(), "std", "preprocess");
  TORCH_CHECK_VALUE((std > 0).all().item<bool>(), "cnnviz: preprocess: std must be positive");

  auto t = detail::image_hwc(image, "image");
  if (t.is_floating_point()) {
    // Float images are [0, 1]; a [0, 255] one would come out about 255 times too bright.
    const double lo = t.min().item<double>(), hi = t.max().item<double>();
    TORCH_CHECK_VALUE(lo >= -1e-3 && hi <= 1 + 1e-3, "cnnviz: preprocess: a floating point image must have "
                      "values in [0, 1], got [", lo, ", ", hi, "]", hi > 2 && lo >= 0 ? "; divide a [0, 255] image by 255"
                      : "");
  }
  const int64_t h = t.size(0), w = t.size(1);
  // The size after resizing, and the window of it that is kept.
  int64_t oh = h, ow = w;
  if (options.resize() > 0) {
    // The shorter side becomes resize(); the longer one is truncated as torchvision does.
    const int64_t s = options.resize();
    oh = h <= w ? s : static_cast<int64_t>(static_cast<double>(s) * h / w);
    ow = h <= w ? static_cast<int64_t>(static_cast<double>(s) * w / h) : s;
  } else if (!size.empty()) {
    oh = size[0];
    ow = size[1];
  }
  int64_t top = 0, left = 0, rows = oh, cols = ow;
  if (options.resize() > 0 && !size.empty()) {
    TORCH_CHECK_VALUE(size[0] <= oh && size[1] <= ow, "cnnviz: preprocess: the crop (", size[0], ", ", size[1],
                      ") is larger than the resized image (", oh, ", ", ow, ")");
    // Offsets rounded half to even, as torchvision's center_crop rounds them.
    top = static_cast<int64_t>(std::nearbyint((oh - size[0]) / 2.0));
    left = static_cast<int64_t>(std::nearbyint((ow - size[1]) / 2.0));
    rows = size[0];
    cols = size[1];
  }
  torch::Tensor x;  // (C, rows, cols) in [0, 1]
  if (oh == h && ow == w) {
    x = t.to(torch::kFloat).permute({2, 0, 1});
    if (t.scalar_type() == torch::kUInt8) x = x / 255.0;
    x = x.narrow(1, top, rows).narrow(2, left, cols);
  } else if (options.antialias()) {
    x = detail::resize_crop(t, oh, ow, top, left, rows, cols);
  } else {
    x = t.to(torch::kFloat).permute({2, 0, 1}).unsqueeze(0);
    if (t.scalar_type() == torch::kUInt8) x = x / 255.0;
    x = detail::resize_nchw(x, oh, ow, false).squeeze(0).narrow(1, top, rows).narrow(2, left, cols);
  }
  x = x.unsqueeze(0);
  if (x.size(1) == 1) x = x.expand({1, 3, rows, cols});
  return ((x - mean) / std).contiguous();
}

/// Undoes preprocess(): a normalized (1, C, H, W) or (C, H, W) tensor, C in {1, 3} matching
/// mean/std, to an (H, W, 3) uint8 image (x * std + mean, clamped to [0, 1]).
inline torch::Tensor deprocess(const torch::Tensor& tensor, const std::vector<double>& mean = kImageNetMean,
                               const std::vector<double>& std = kImageNetStd) {
  TORCH_CHECK_VALUE(tensor.defined(), "cnnviz: deprocess: the tensor is undefined");
  TORCH_CHECK_VALUE((tensor.dim() == 4 && tensor.size(0) == 1) || tensor.dim() == 3,
                    "cnnviz: deprocess takes one image (1, C, H, W) or (C, H, W), got shape ", tensor.sizes(),
                    tensor.dim() == 4 ? "; index the batch, or use make_grid() for several images" : "");
  auto x = tensor.dim() == 4 ? tensor.squeeze(0) : tensor;
  TORCH_CHECK_VALUE(x.size(0) == 1 || x.size(0) == 3, "cnnviz: deprocess: expected 1 or 3 channels (C, H, W), got shape ",
                    tensor.sizes());
  TORCH_CHECK_VALUE(x.size(1) > 0 && x.size(2) > 0, "cnnviz: deprocess: the tensor is empty, shape ", tensor.sizes());
  TORCH_CHECK_VALUE(x.is_floating_point(), "cnnviz: deprocess takes a floating point tensor, got ", x.scalar_type());
  auto m = detail::channel_stat(mean, "mean", "deprocess").squeeze(0);
  auto s = detail::channel_stat(std, "std", "deprocess").squeeze(0);
  TORCH_CHECK_VALUE(m.size(0) == 1 || m.size(0) == x.size(0), "cnnviz: deprocess: ", m.size(0),
                    " mean/std values for ", x.size(0), " channels");
  x = x.detach().cpu().to(torch::kFloat);
  TORCH_CHECK_VALUE(detail::all_finite(x), "cnnviz: deprocess: the tensor contains NaN or infinite values");
  auto rgb = detail::to_uint8(x * s + m).permute({1, 2, 0});
  if (rgb.size(2) == 1) rgb = rgb.expand({rgb.size(0), rgb.size(1), 3});
  return rgb.contiguous();
}

// ---------------------------------------------------------------------------------------
// Rendering.

/// The colormap names colormap() knows (matplotlib's tables).
inline std::vector<std::string> colormap_names() {
  std::vector<std::string> names;
  for (const auto& lut : detail::colormap_luts()) names.emplace_back(lut.name);
  return names;
}

/// How colormap() maps values to colors.
struct ColormapOptions {
  ColormapOptions() = default;
  ColormapOptions(std::string name) : name_(std::move(name)) {}  // NOLINT: implicit by design
  ColormapOptions(const char* name) : name_(name) {}             // NOLINT: implicit by design
  /// One of colormap_names(): gray, hot, jet, viridis, plasma, inferno, magma, cividis, turbo,
  /// coolwarm, bwr, seismic, RdBu_r.
  TORCH_ARG(std::string, name) = "viridis";
  /// The values mapped to the first and last color; unset: the map's min and max.
  TORCH_ARG(c10::optional<double>, vmin) = c10::nullopt;
  TORCH_ARG(c10::optional<double>, vmax) = c10::nullopt;
  /// Center the range on 0 (from -max|v| to max|v|): for signed maps and diverging colormaps.
  TORCH_ARG(bool, symmetric) = false;
};

namespace detail {
/// A map (any shape) scaled to [0, 1] as ColormapOptions say (constant maps give 0, or 0.5
/// when symmetric).
inline torch::Tensor unit_range(const torch::Tensor& m, const ColormapOptions& o) {
  if (o.vmin() && o.vmax())
    TORCH_CHECK_VALUE(*o.vmax() > *o.vmin(), "cnnviz: colormap: vmax (", *o.vmax(),
                      ") must be greater than vmin (", *o.vmin(), ")");
  double lo, hi;
  if (o.symmetric()) {
    const double a = m.abs().max().item<double>();
    lo = o.vmin().value_or(-a);
    hi = o.vmax().value_or(a);
  } else {
    lo = o.vmin() ? *o.vmin() : m.min().item<double>();
    hi = o.vmax() ? *o.vmax() : m.max().item<double>();
  }
  if (!(hi > lo)) return torch::full_like(m, o.symmetric() ? 0.5 : 0.0);
  return ((m - lo) / (hi - lo)).clamp_(0, 1);
}
}  // namespace detail

/// Colors a map (H, W) (or (1, 1, H, W)) into an (H, W, 3) uint8 image. Values are scaled
/// min-max to [0, 1] unless vmin/vmax are set; colors match matplotlib's `imshow(map, cmap)`.
inline torch::Tensor colormap(const torch::Tensor& map, const ColormapOptions& options = {}) {
  const uint8_t* lut = detail::colormap_lut(options.name());
  auto m = detail::map_2d(map, "map");
  return detail::apply_lut(detail::unit_range(m, options), lut);
}

/// How overlay() blends a heatmap over an image.
struct OverlayOptions {
  /// Weight of the heatmap colors: out = (1 - alpha) * image + alpha * color.
  TORCH_ARG(double, alpha) = 0.5;
  /// Colormap name (see colormap_names()).
  TORCH_ARG(std::string, colormap) = "jet";
  /// Value range of the heatmap; unset: its min and max.
  TORCH_ARG(c10::optional<double>, vmin) = c10::nullopt;
  TORCH_ARG(c10::optional<double>, vmax) = c10::nullopt;
};

/// Blends a heatmap (h, w) (any size: it is resized bilinearly to the image) colored with a
/// colormap over an image (H, W, 3); returns (H, W, 3) uint8.
inline torch::Tensor overlay(const torch::Tensor& image, const torch::Tensor& heatmap,
                             const OverlayOptions& options = {}) {
  TORCH_CHECK_VALUE(options.alpha() >= 0 && options.alpha() <= 1, "cnnviz: overlay: alpha must be in [0, 1], got ",
                    options.alpha());
  const uint8_t* lut = detail::colormap_lut(options.colormap());
  auto img = as_image_tensor(image, "image");
  auto m = detail::map_2d(heatmap, "heatmap");
  m = resize_image(m, img.size(0), img.size(1));
  auto colors = detail::apply_lut(
      detail::unit_range(m, ColormapOptions(options.colormap()).vmin(options.vmin()).vmax(options.vmax())), lut);
  auto out = torch::empty_like(img);
  auto a = static_cast<float>(options.alpha());
  auto xi = as_xtensor<uint8_t>(img);
  auto xc = as_xtensor<uint8_t>(colors);
  auto xo = as_xtensor<uint8_t>(out);
  xt::noalias(xo) = xt::cast<uint8_t>(
      xt::floor((1.0f - a) * xt::cast<float>(xi) + a * xt::cast<float>(xc) + 0.5f));
  return out;
}

/// How make_grid() lays out images (the options of torchvision.utils.make_grid).
struct GridOptions {
  /// Images per row.
  TORCH_ARG(int64_t, nrow) = 8;
  /// Pixels between and around the images.
  TORCH_ARG(int64_t, padding) = 2;
  /// Gray level of the padding, in [0, 1].
  TORCH_ARG(double, pad_value) = 0.0;
  /// Scale the values of all images together min-max to [0, 1].
  TORCH_ARG(bool, normalize) = false;
  /// With normalize(): scale each image by its own min and max (feature maps, filters).
  TORCH_ARG(bool, scale_each) = false;
  /// When not empty, one-channel images are colored with this colormap instead of gray.
  TORCH_ARG(std::string, colormap) = "";
};

/// Tiles a batch into one (H', W', 3) uint8 image, images placed row by row. `images` is
/// (N, C, H, W) floating point with values in [0, 1] (or any range with normalize()),
/// C in {1, 3}, or (N, H, W, 3) uint8. One image is returned without padding, as
/// torchvision does.
inline torch::Tensor make_grid(const torch::Tensor& images, const GridOptions& options = {}) {
  TORCH_CHECK_VALUE(options.nrow() >= 1, "cnnviz: make_grid: nrow must be >= 1, got ", options.nrow());
  TORCH_CHECK_VALUE(options.padding() >= 0, "cnnviz: make_grid: padding must be >= 0, got ", options.padding());
  TORCH_CHECK_VALUE(options.pad_value() >= 0 && options.pad_value() <= 1,
                    "cnnviz: make_grid: pad_value must be in [0, 1], got ", options.pad_value());
  const uint8_t* lut = options.colormap().empty() ? nullptr : detail::colormap_lut(options.colormap());
  TORCH_CHECK_VALUE(images.defined() && images.dim() == 4, "cnnviz: make_grid takes a batch (N, C, H, W) or "
                    "(N, H, W, 3) uint8, got ", images.defined() ? images.sizes() : torch::IntArrayRef{});
  auto x = images.detach().cpu();
  if (x.scalar_type() == torch::kUInt8) {
    TORCH_CHECK_VALUE(x.size(3) == 1 || x.size(3) == 3 || x.size(3) == 4,
                      "cnnviz: make_grid: uint8 images must be (N, H, W, C), C in {1, 3, 4}, got ", x.sizes());
    x = x.narrow(3, 0, std::min<int64_t>(x.size(3), 3)).permute({0, 3, 1, 2}).to(torch::kFloat) / 255.0;
  } else {
    TORCH_CHECK_VALUE(x.is_floating_point(), "cnnviz: make_grid takes floating point or uint8 images, got ",
                      x.scalar_type());
    TORCH_CHECK_VALUE(x.size(1) == 1 || x.size(1) == 3, "cnnviz: make_grid: images must have 1 or 3 channels, got "
                      "shape ", x.sizes(), "; to show the C channels of one activation (1, C, H, W) pass "
                      "activation[0].unsqueeze(1) with scale_each");
    x = x.to(torch::kFloat);
  }
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  TORCH_CHECK_VALUE(n > 0 && h > 0 && w > 0, "cnnviz: make_grid: empty batch, shape ", images.sizes());
  TORCH_CHECK_VALUE(detail::all_finite(x), "cnnviz: make_grid: the images contain NaN or infinite values");
  if (options.normalize()) {
    // torchvision's norm_range: (x - min) / max(max - min, 1e-5), over each image or all.
    auto flat = x.reshape({options.scale_each() ? n : 1, -1});
    auto lo = std::get<0>(flat.min(1, true)), hi = std::get<0>(flat.max(1, true));
    x = ((flat - lo) / (hi - lo).clamp_min(1e-5)).view_as(x);
  }
  // Every image as uint8 (N, H, W, 3).
  torch::Tensor tiles;
  if (c == 1 && lut) tiles = detail::apply_lut(x.squeeze(1), lut);
  else tiles = detail::to_uint8(x.expand({n, 3, h, w})).permute({0, 2, 3, 1}).contiguous();
  if (n == 1) return tiles.squeeze(0);

  const int64_t p = options.padding();
  const int64_t cols = std::min(options.nrow(), n), rows = (n + cols - 1) / cols;
  auto grid = torch::full({rows * (h + p) + p, cols * (w + p) + p, 3},
                          detail::to_uint8(torch::tensor(options.pad_value())).item<uint8_t>(), torch::kUInt8);
  // Row by row copies: a tile row is contiguous in both (xt::view assignment of the tiles
  // was 3x slower than torchvision's make_grid here).
  auto g = as_xtensor<uint8_t>(grid);
  auto t = as_xtensor<uint8_t>(tiles);
  const int64_t grid_row = grid.size(1) * 3, tile_row = w * 3;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t y0 = (k / cols) * (h + p) + p, x0 = (k % cols) * (w + p) + p;
    for (int64_t y = 0; y < h; ++y)
      std::memcpy(g.data() + (y0 + y) * grid_row + x0 * 3, t.data() + (k * h + y) * tile_row,
                  static_cast<size_t>(tile_row));
  }
  return grid;
}

/// Tiles a list of images of one size: each (H, W, C) uint8 image (C in {1, 3, 4}), (C, H, W)
/// or (1, C, H, W) floating point image (C in {1, 3}), or (H, W) floating point map.
inline torch::Tensor make_grid(const std::vector<torch::Tensor>& images, const GridOptions& options = {}) {
  TORCH_CHECK_VALUE(!images.empty(), "cnnviz: make_grid: the list of images is empty");
  std::vector<torch::Tensor> chw;
  for (size_t i = 0; i < images.size(); ++i) {
    const auto& im = images[i];
    TORCH_CHECK_VALUE(im.defined(), "cnnviz: make_grid: image ", i, " is undefined");
    torch::Tensor t;
    if (im.scalar_type() == torch::kUInt8) {
      t = as_image_tensor(im, "make_grid image").permute({2, 0, 1}).to(torch::kFloat) / 255.0;
    } else {
      TORCH_CHECK_VALUE(im.is_floating_point(), "cnnviz: make_grid: image ", i,
                        " must be uint8 or floating point, got ", im.scalar_type());
      t = im.dim() == 4 && im.size(0) == 1 ? im.squeeze(0) : im.dim() == 2 ? im.unsqueeze(0) : im;
      TORCH_CHECK_VALUE(t.dim() == 3 && (t.size(0) == 1 || t.size(0) == 3), "cnnviz: make_grid: floating point "
                        "image ", i, " must be (C, H, W) with C in {1, 3} or a map (H, W), got shape ", im.sizes());
      t = t.detach().cpu().to(torch::kFloat);
    }
    if (!chw.empty())
      TORCH_CHECK_VALUE(t.size(1) == chw[0].size(1) && t.size(2) == chw[0].size(2), "cnnviz: make_grid: image ", i,
                        " is ", t.size(1), "x", t.size(2), " but image 0 is ", chw[0].size(1), "x", chw[0].size(2),
                        "; resize them to one size first");
    chw.push_back(t);
  }
  // Mixed gray and color images are shown in color.
  const bool any_color = std::any_of(chw.begin(), chw.end(), [](const auto& t) { return t.size(0) == 3; });
  if (any_color)
    for (auto& t : chw) t = t.expand({3, t.size(1), t.size(2)});
  return make_grid(torch::stack(chw), options);
}

}  // namespace cnnviz
