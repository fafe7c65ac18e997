// Image tensors, model preprocessing and rendering (cnnviz/image.hpp). xtensor is the
// host-side pixel layer here: the colormap lookup, the overlay blend (an xtensor
// expression) and the grid tiling work on zero-copy adaptors of the tensors.

#include <torch/torch.h>

#include <xtensor/xmath.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cnnviz/detail/finite.hpp"
#include "cnnviz/detail/image.hpp"
#include "cnnviz/detail/image_colormaps.hpp"
#include "cnnviz/image.hpp"
#include "cnnviz/xtensor.hpp"

namespace cnnviz {
namespace detail {

torch::Tensor image_hwc(const torch::Tensor& image, const char* what) {
  TORCH_CHECK_VALUE(image.defined(), "cnnviz: ", what, " is undefined");
  TORCH_CHECK_VALUE(image.dim() == 2 || image.dim() == 3, "cnnviz: ", what,
                    " must be an image (H, W) or (H, W, C), got shape ", image.sizes(),
                    image.dim() == 4 ? "; for a batch (N, C, H, W) use deprocess() or make_grid()" : "");
  auto t = image.dim() == 2 ? image.unsqueeze(-1) : image;
  const int64_t c = t.size(2);
  if (!(c == 1 || c == 3 || c == 4)) {
    // A (C, H, W) tensor: channels first as ToTensor() makes it (values in [0, 1]: permute
    // it), or a normalized model input (values beyond [0, 1]: deprocess it).
    const char* advice = "";
    if (t.size(0) == 1 || t.size(0) == 3) {
      bool normalized = false;
      if (t.is_floating_point() && t.numel() > 0) {
        torch::NoGradGuard no_grad;
        normalized = (t.min().item<double>() < -1e-3) || (t.max().item<double>() > 1 + 1e-3);
      }
      advice = normalized ? "; its values leave [0, 1], so it looks like a normalized model input (C, H, W): "
                            "use deprocess() to get an image back"
                          : "; it looks channels-first (C, H, W), as ToTensor() makes: pass image.permute({1, 2, 0})";
    }
    TORCH_CHECK_VALUE(false, "cnnviz: ", what, " must have 1, 3 or 4 channels last (H, W, C), got shape ",
                      image.sizes(), advice);
  }
  TORCH_CHECK_VALUE(t.size(0) > 0 && t.size(1) > 0, "cnnviz: ", what, " is empty, shape ", image.sizes());
  TORCH_CHECK_VALUE(t.scalar_type() == torch::kUInt8 || t.is_floating_point(), "cnnviz: ", what,
                    " must be uint8, or floating point with values in [0, 1], got ", t.scalar_type());
  t = t.detach().cpu();
  if (c == 4) t = t.narrow(2, 0, 3);
  if (t.is_floating_point())
    TORCH_CHECK_VALUE(all_finite(t), "cnnviz: ", what, " contains NaN or infinite values");
  return t;
}

torch::Tensor to_uint8(const torch::Tensor& x) {
  return x.to(torch::kFloat).mul(255).add_(0.5).clamp_(0, 255).to(torch::kUInt8);
}

namespace {

/// A validated floating point map (H, W); leading singleton dimensions are dropped.
torch::Tensor map_2d(const torch::Tensor& map, const char* what) {
  TORCH_CHECK_VALUE(map.defined(), "cnnviz: ", what, " is undefined");
  auto m = map.detach();
  while (m.dim() > 2 && m.size(0) == 1) m = m.squeeze(0);
  TORCH_CHECK_VALUE(m.dim() == 2, "cnnviz: ", what, " must be a map (H, W) (or (1, 1, H, W)), got shape ",
                    map.sizes());
  TORCH_CHECK_VALUE(m.numel() > 0, "cnnviz: ", what, " is empty, shape ", map.sizes());
  TORCH_CHECK_VALUE(m.scalar_type() != torch::kBool && !m.is_complex(), "cnnviz: ", what,
                    " must be real-valued, got ", m.scalar_type());
  m = m.cpu().to(torch::kFloat);
  TORCH_CHECK_VALUE(all_finite(m), "cnnviz: ", what, " contains NaN or infinite values");
  return m.contiguous();
}

/// Bilinear resize of a float batch (N, C, H, W), antialiased when shrinking (PIL's and
/// torchvision's antialias=True filter).
torch::Tensor resize_nchw(const torch::Tensor& x, int64_t height, int64_t width, bool antialias) {
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

ResizeTaps resize_taps(int64_t in_size, int64_t out_size, int64_t first, int64_t count) {
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
torch::Tensor resize_crop(const torch::Tensor& hwc, int64_t out_h, int64_t out_w, int64_t top, int64_t left,
                          int64_t rows, int64_t cols) {
  if (hwc.scalar_type() == torch::kUInt8)
    return resize_crop_chw<uint8_t>(hwc.contiguous(), out_h, out_w, top, left, rows, cols, 1.0f / 255.0f);
  return resize_crop_chw<float>(hwc.to(torch::kFloat).contiguous(), out_h, out_w, top, left, rows, cols, 1.0f);
}

/// The lookup table of a colormap, by name.
const uint8_t* colormap_lut(const std::string& name) {
  for (const auto& lut : colormap_luts())
    if (name == lut.name) return reinterpret_cast<const uint8_t*>(lut.rgb);
  std::string known;
  for (const auto& lut : colormap_luts()) known += (known.empty() ? "" : ", ") + std::string(lut.name);
  TORCH_CHECK_VALUE(false, "cnnviz: unknown colormap '", name, "'; known: ", known);
}

/// Colors values in [0, 1] (any shape S) with a lookup table, giving (S..., 3) uint8. The
/// index is matplotlib's: floor(v * 256) clipped to 255.
torch::Tensor apply_lut(const torch::Tensor& unit, const uint8_t* lut) {
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

/// A map (any shape) scaled to [0, 1] by a value range (constant maps give 0, or 0.5 when
/// symmetric).
torch::Tensor unit_range(const torch::Tensor& m, c10::optional<double> vmin, c10::optional<double> vmax,
                         bool symmetric) {
  if (vmin && vmax)
    TORCH_CHECK_VALUE(*vmax > *vmin, "cnnviz: colormap: vmax (", *vmax, ") must be greater than vmin (", *vmin, ")");
  double lo, hi;
  if (symmetric) {
    const double a = m.abs().max().item<double>();
    lo = vmin.value_or(-a);
    hi = vmax.value_or(a);
  } else {
    lo = vmin ? *vmin : m.min().item<double>();
    hi = vmax ? *vmax : m.max().item<double>();
  }
  if (!(hi > lo)) return torch::full_like(m, symmetric ? 0.5 : 0.0);
  return ((m - lo) / (hi - lo)).clamp_(0, 1);
}

/// A Normalization's mean and std as (1, C, 1, 1) float tensors for C channels (one value is
/// broadcast), checked.
std::pair<torch::Tensor, torch::Tensor> stats(const Normalization& n, int64_t channels, const char* fn) {
  TORCH_CHECK_VALUE(channels != 1 || (n.mean().size() == 1 && n.std().size() == 1), "cnnviz: ", fn,
                    ": a one-channel tensor needs one mean and one std value, got ", n.mean().size(), " and ",
                    n.std().size(), " (e.g. Normalization({0.5}, {0.5}))");
  return normalization(n.mean(), n.std(), channels, torch::TensorOptions().dtype(torch::kFloat), fn);
}

}  // namespace
}  // namespace detail

torch::Tensor as_image_tensor(const torch::Tensor& image, const char* what) {
  auto t = detail::image_hwc(image, what);
  if (t.is_floating_point()) t = detail::to_uint8(t);
  if (t.size(2) == 1) t = t.expand({t.size(0), t.size(1), 3});
  return t.contiguous();
}

torch::Tensor resize_image(const torch::Tensor& image, int64_t height, int64_t width, bool antialias) {
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

torch::Tensor preprocess(const torch::Tensor& image, const PreprocessOptions& options) {
  const std::vector<int64_t>& size = options.size().values();
  TORCH_CHECK_VALUE(size.empty() || size.size() == 2, "cnnviz: preprocess: size must be (height, width), got ",
                    size.size(), " values");
  TORCH_CHECK_VALUE(size.empty() || (size[0] > 0 && size[1] > 0), "cnnviz: preprocess: size must be positive, got ",
                    c10::IntArrayRef(size));
  TORCH_CHECK_VALUE(options.resize() >= 0, "cnnviz: preprocess: resize must be >= 0, got ", options.resize());
  auto [mean, std] = detail::stats(options.normalization(), 3, "preprocess");

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
  if (!options.size().given() && 2 * std::max(h, w) <= std::min(rows, cols)) {
    // A size nobody asked for that blows the image up: a CIFAR model fed 224 x 224 answers differently.
    TORCH_WARN("cnnviz: preprocess upscales a ", h, "x", w, " image to ", rows, "x", cols,
               " (the default size); give the size the network expects, e.g. PreprocessOptions(", h, ")");
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

torch::Tensor deprocess(const torch::Tensor& tensor, const Normalization& normalization) {
  TORCH_CHECK_VALUE(tensor.defined(), "cnnviz: deprocess: the tensor is undefined");
  TORCH_CHECK_VALUE((tensor.dim() == 4 && tensor.size(0) == 1) || tensor.dim() == 3,
                    "cnnviz: deprocess takes one image (1, C, H, W) or (C, H, W), got shape ", tensor.sizes(),
                    tensor.dim() == 4 ? "; index the batch, or use make_grid() for several images" : "");
  auto x = tensor.dim() == 4 ? tensor.squeeze(0) : tensor;
  TORCH_CHECK_VALUE(x.size(0) == 1 || x.size(0) == 3, "cnnviz: deprocess: expected 1 or 3 channels (C, H, W), got shape ",
                    tensor.sizes());
  TORCH_CHECK_VALUE(x.size(1) > 0 && x.size(2) > 0, "cnnviz: deprocess: the tensor is empty, shape ", tensor.sizes());
  TORCH_CHECK_VALUE(x.is_floating_point(), "cnnviz: deprocess takes a floating point tensor, got ", x.scalar_type());
  auto [m, s] = detail::stats(normalization, x.size(0), "deprocess");
  x = x.detach().cpu().to(torch::kFloat);
  TORCH_CHECK_VALUE(detail::all_finite(x), "cnnviz: deprocess: the tensor contains NaN or infinite values");
  auto rgb = detail::to_uint8(x * s.squeeze(0) + m.squeeze(0)).permute({1, 2, 0});
  if (rgb.size(2) == 1) rgb = rgb.expand({rgb.size(0), rgb.size(1), 3});
  return rgb.contiguous();
}

std::vector<std::string> colormap_names() {
  std::vector<std::string> names;
  for (const auto& lut : detail::colormap_luts()) names.emplace_back(lut.name);
  return names;
}

torch::Tensor colormap(const torch::Tensor& map, const ColormapOptions& options) {
  const uint8_t* lut = detail::colormap_lut(options.name());
  auto m = detail::map_2d(map, "map");
  return detail::apply_lut(detail::unit_range(m, options.vmin(), options.vmax(), options.symmetric()), lut);
}

torch::Tensor overlay(const torch::Tensor& image, const torch::Tensor& heatmap, const OverlayOptions& options) {
  TORCH_CHECK_VALUE(options.alpha() >= 0 && options.alpha() <= 1, "cnnviz: overlay: alpha must be in [0, 1], got ",
                    options.alpha());
  const uint8_t* lut = detail::colormap_lut(options.colormap());
  auto img = as_image_tensor(image, "image");
  auto m = detail::map_2d(heatmap, "heatmap");
  m = resize_image(m, img.size(0), img.size(1));
  auto colors = detail::apply_lut(detail::unit_range(m, options.vmin(), options.vmax(), false), lut);
  auto out = torch::empty_like(img);
  auto a = static_cast<float>(options.alpha());
  auto xi = as_xtensor<uint8_t>(img);
  auto xc = as_xtensor<uint8_t>(colors);
  auto xo = as_xtensor<uint8_t>(out);
  xt::noalias(xo) = xt::cast<uint8_t>(
      xt::floor((1.0f - a) * xt::cast<float>(xi) + a * xt::cast<float>(xc) + 0.5f));
  return out;
}

torch::Tensor make_grid(const torch::Tensor& images, const GridOptions& options) {
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

torch::Tensor make_grid(const std::vector<torch::Tensor>& images, const GridOptions& options) {
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
