#pragma once
// SLIC superpixels (Achanta et al. 2012) on the CPU: k-means in CIELAB color and position,
// each center searching a 2S x 2S window, then connectivity enforced as in the authors' code.

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace cnnviz {
namespace detail {

/// sRGB in [0, 1] (3, H, W) -> CIELAB (H * W * 3, pixel-major), D65 white.
inline std::vector<float> srgb_to_lab(const torch::Tensor& rgb) {
  auto img = rgb.to(torch::kFloat).clamp(0, 1).permute({1, 2, 0}).contiguous();
  const int64_t n = img.size(0) * img.size(1);
  const float* p = img.data_ptr<float>();
  std::vector<float> lab(n * 3);
  auto linear = [](float c) { return c <= 0.04045f ? c / 12.92f : std::pow((c + 0.055f) / 1.055f, 2.4f); };
  auto f = [](float t) { return t > 0.008856f ? std::cbrt(t) : 7.787f * t + 16.0f / 116.0f; };
  for (int64_t i = 0; i < n; ++i) {
    float r = linear(p[3 * i]), g = linear(p[3 * i + 1]), b = linear(p[3 * i + 2]);
    float x = (0.412453f * r + 0.357580f * g + 0.180423f * b) / 0.950456f;
    float y = 0.212671f * r + 0.715160f * g + 0.072169f * b;
    float z = (0.019334f * r + 0.119193f * g + 0.950227f * b) / 1.088754f;
    float fx = f(x), fy = f(y), fz = f(z);
    lab[3 * i] = 116.0f * fy - 16.0f;
    lab[3 * i + 1] = 500.0f * (fx - fy);
    lab[3 * i + 2] = 200.0f * (fy - fz);
  }
  return lab;
}

/// Relabels so that every label is one 4-connected component; components smaller than
/// `min_size` join the neighbouring component met first. Returns the number of labels,
/// which are 0..count-1.
inline int64_t enforce_connectivity(std::vector<int64_t>& labels, int64_t h, int64_t w, int64_t min_size) {
  const int64_t n = h * w;
  std::vector<int64_t> out(n, -1), queue;
  queue.reserve(n);
  const int dy[4] = {-1, 0, 1, 0}, dx[4] = {0, -1, 0, 1};
  int64_t next = 0;
  for (int64_t start = 0; start < n; ++start) {
    if (out[start] >= 0) continue;
    const int64_t y0 = start / w, x0 = start % w;
    int64_t adjacent = -1;
    for (int k = 0; k < 4; ++k) {
      int64_t y = y0 + dy[k], x = x0 + dx[k];
      if (y >= 0 && y < h && x >= 0 && x < w && out[y * w + x] >= 0) adjacent = out[y * w + x];
    }
    queue.clear();
    queue.push_back(start);
    out[start] = next;
    for (size_t q = 0; q < queue.size(); ++q) {
      const int64_t i = queue[q], y = i / w, x = i % w;
      for (int k = 0; k < 4; ++k) {
        int64_t yy = y + dy[k], xx = x + dx[k];
        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
        int64_t j = yy * w + xx;
        if (out[j] < 0 && labels[j] == labels[start]) {
          out[j] = next;
          queue.push_back(j);
        }
      }
    }
    if (static_cast<int64_t>(queue.size()) < min_size && adjacent >= 0) {
      for (int64_t i : queue) out[i] = adjacent;
    } else {
      ++next;
    }
  }
  labels.swap(out);
  return next;
}

/// SLIC superpixels of an sRGB image (3, H, W) with values in [0, 1]: about `segments`
/// regions, `compactness` trading color similarity (low) for square shapes (high).
/// Returns (H, W) int64 labels 0..S-1, each label one connected region.
inline torch::Tensor slic(const torch::Tensor& rgb, int64_t segments, double compactness, int64_t iterations) {
  TORCH_CHECK_VALUE(rgb.dim() == 3 && rgb.size(0) == 3 && rgb.size(1) >= 1 && rgb.size(2) >= 1,
                    "cnnviz: SLIC needs an RGB image (3, H, W), got shape ", rgb.sizes());
  TORCH_CHECK_VALUE(segments >= 1, "cnnviz: segments must be at least 1, got ", segments);
  TORCH_CHECK_VALUE(compactness > 0, "cnnviz: compactness must be positive, got ", compactness);
  TORCH_CHECK_VALUE(iterations >= 1, "cnnviz: SLIC iterations must be at least 1, got ", iterations);
  const int64_t h = rgb.size(1), w = rgb.size(2), n = h * w;
  auto lab = srgb_to_lab(rgb.detach().cpu());
  segments = std::min(segments, n);
  // A grid of ny x nx centers with about `segments` cells of side S.
  const double step = std::sqrt(static_cast<double>(n) / segments);
  const int64_t ny = std::max<int64_t>(1, std::llround(h / step)), nx = std::max<int64_t>(1, std::llround(w / step));
  const double sy = static_cast<double>(h) / ny, sx = static_cast<double>(w) / nx;
  const double s = std::sqrt(sy * sx);
  struct Center { double l, a, b, y, x; };
  std::vector<Center> centers;
  auto color_at = [&](int64_t y, int64_t x) { return &lab[3 * (y * w + x)]; };
  auto gradient = [&](int64_t y, int64_t x) {
    if (y < 1 || x < 1 || y >= h - 1 || x >= w - 1) return std::numeric_limits<double>::infinity();
    double g = 0;
    for (int c = 0; c < 3; ++c) {
      double dyc = color_at(y + 1, x)[c] - color_at(y - 1, x)[c], dxc = color_at(y, x + 1)[c] - color_at(y, x - 1)[c];
      g += dyc * dyc + dxc * dxc;
    }
    return g;
  };
  for (int64_t i = 0; i < ny; ++i)
    for (int64_t j = 0; j < nx; ++j) {
      int64_t y = std::min<int64_t>(h - 1, static_cast<int64_t>((i + 0.5) * sy));
      int64_t x = std::min<int64_t>(w - 1, static_cast<int64_t>((j + 0.5) * sx));
      // Move the seed to the lowest gradient in its 3x3 neighbourhood (off edges).
      int64_t by = y, bx = x;
      double best = gradient(y, x);
      for (int64_t yy = y - 1; yy <= y + 1; ++yy)
        for (int64_t xx = x - 1; xx <= x + 1; ++xx)
          if (yy >= 0 && yy < h && xx >= 0 && xx < w && gradient(yy, xx) < best) {
            best = gradient(yy, xx);
            by = yy;
            bx = xx;
          }
      const float* c = color_at(by, bx);
      centers.push_back({c[0], c[1], c[2], static_cast<double>(by), static_cast<double>(bx)});
    }
  const double spatial = (compactness / s) * (compactness / s);
  const int64_t radius = static_cast<int64_t>(std::ceil(s));
  std::vector<int64_t> labels(n, -1);
  std::vector<double> dist(n);
  for (int64_t it = 0; it < iterations; ++it) {
    std::fill(dist.begin(), dist.end(), std::numeric_limits<double>::infinity());
    for (size_t k = 0; k < centers.size(); ++k) {
      const auto& c = centers[k];
      const int64_t cy = std::llround(c.y), cx = std::llround(c.x);
      for (int64_t y = std::max<int64_t>(0, cy - radius); y <= std::min(h - 1, cy + radius); ++y)
        for (int64_t x = std::max<int64_t>(0, cx - radius); x <= std::min(w - 1, cx + radius); ++x) {
          const float* p = color_at(y, x);
          double dl = p[0] - c.l, da = p[1] - c.a, db = p[2] - c.b, ddy = y - c.y, ddx = x - c.x;
          double d = dl * dl + da * da + db * db + spatial * (ddy * ddy + ddx * ddx);
          if (d < dist[y * w + x]) {
            dist[y * w + x] = d;
            labels[y * w + x] = static_cast<int64_t>(k);
          }
        }
    }
    std::vector<Center> sums(centers.size(), Center{0, 0, 0, 0, 0});
    std::vector<int64_t> counts(centers.size(), 0);
    for (int64_t i = 0; i < n; ++i) {
      if (labels[i] < 0) continue;
      auto& sm = sums[labels[i]];
      const float* p = &lab[3 * i];
      sm.l += p[0];
      sm.a += p[1];
      sm.b += p[2];
      sm.y += static_cast<double>(i / w);
      sm.x += static_cast<double>(i % w);
      ++counts[labels[i]];
    }
    for (size_t k = 0; k < centers.size(); ++k)
      if (counts[k] > 0) {
        double m = static_cast<double>(counts[k]);
        centers[k] = {sums[k].l / m, sums[k].a / m, sums[k].b / m, sums[k].y / m, sums[k].x / m};
      }
  }
  const int64_t min_size = std::max<int64_t>(1, n / static_cast<int64_t>(centers.size()) / 4);
  enforce_connectivity(labels, h, w, min_size);
  return torch::from_blob(labels.data(), {h, w}, torch::kLong).clone();
}

/// A regular grid of about `segments` rectangular cells over (H, W): (H, W) int64 labels.
inline torch::Tensor grid_segments(int64_t h, int64_t w, int64_t segments) {
  TORCH_CHECK_VALUE(segments >= 1, "cnnviz: segments must be at least 1, got ", segments);
  segments = std::min(segments, h * w);
  const double step = std::sqrt(static_cast<double>(h * w) / segments);
  const int64_t ny = std::clamp<int64_t>(std::llround(h / step), 1, h);
  const int64_t nx = std::clamp<int64_t>(std::llround(w / step), 1, w);
  auto rows = torch::arange(h, torch::kLong).mul(ny).div(h, "floor");
  auto cols = torch::arange(w, torch::kLong).mul(nx).div(w, "floor");
  return rows.view({h, 1}) * nx + cols.view({1, w});
}

}  // namespace detail
}  // namespace cnnviz
