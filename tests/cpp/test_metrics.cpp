#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

#include "cnnviz/metrics.hpp"

namespace {

// SSIM of two (H, W) maps written out as Wang et al. describe it: a normalized 2-D Gaussian
// window, weighted means, variances and covariance at each fully-inside position.
double reference_ssim(const torch::Tensor& a, const torch::Tensor& b, double range, int ws = 11, double sigma = 1.5) {
  auto x = a.to(torch::kDouble).contiguous(), y = b.to(torch::kDouble).contiguous();
  const int64_t h = x.size(0), w = x.size(1), r = ws / 2;
  std::vector<double> win(ws * ws);
  double total = 0;
  for (int i = 0; i < ws; ++i)
    for (int j = 0; j < ws; ++j) total += win[i * ws + j] = std::exp(-((i - r) * (i - r) + (j - r) * (j - r)) / (2 * sigma * sigma));
  for (auto& v : win) v /= total;
  const double c1 = std::pow(0.01 * range, 2), c2 = std::pow(0.03 * range, 2);
  auto px = x.accessor<double, 2>(), py = y.accessor<double, 2>();
  double sum = 0;
  int64_t count = 0;
  for (int64_t i = r; i < h - r; ++i)
    for (int64_t j = r; j < w - r; ++j) {
      double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
      for (int u = 0; u < ws; ++u)
        for (int v = 0; v < ws; ++v) {
          const double k = win[u * ws + v], vx = px[i - r + u][j - r + v], vy = py[i - r + u][j - r + v];
          mx += k * vx;
          my += k * vy;
          sxx += k * vx * vx;
          syy += k * vy * vy;
          sxy += k * vx * vy;
        }
      const double vx = sxx - mx * mx, vy = syy - my * my, cxy = sxy - mx * my;
      sum += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
      ++count;
    }
  return sum / static_cast<double>(count);
}

}  // namespace

TEST_CASE("metrics: ssim matches a direct implementation of Wang et al.") {
  torch::manual_seed(0);
  auto a = torch::rand({2, 3, 20, 17}, torch::kDouble);
  auto b = (a + 0.2 * torch::randn_like(a)).clamp(0, 1);
  auto per_image = cnnviz::ssim(a, b, cnnviz::SsimOptions().reduction(cnnviz::Reduction::none));
  REQUIRE(per_image.sizes() == torch::IntArrayRef({2}));
  for (int n = 0; n < 2; ++n) {
    double ref = 0;
    for (int c = 0; c < 3; ++c) ref += reference_ssim(a[n][c], b[n][c], 1.0) / 3;
    CHECK(per_image[n].item<double>() == doctest::Approx(ref).epsilon(1e-9));
  }
  CHECK(cnnviz::ssim(a, b).item<double>() == doctest::Approx(per_image.mean().item<double>()).epsilon(1e-12));
  CHECK(cnnviz::ssim_map(a, b).sizes() == torch::IntArrayRef({2, 3, 10, 7}));

  // uint8 images (H, W, 3) use the range 255; float32 agrees with float64.
  auto u = (a[0].permute({1, 2, 0}) * 255).round().to(torch::kUInt8);
  auto v = (b[0].permute({1, 2, 0}) * 255).round().to(torch::kUInt8);
  double ref_u = 0;
  for (int c = 0; c < 3; ++c) ref_u += reference_ssim(u.select(2, c), v.select(2, c), 255.0) / 3;
  CHECK(cnnviz::ssim(u, v).item<double>() == doctest::Approx(ref_u).epsilon(1e-5));
  CHECK(cnnviz::ssim(a.to(torch::kFloat), b.to(torch::kFloat)).item<double>() ==
        doctest::Approx(cnnviz::ssim(a, b).item<double>()).epsilon(1e-5));
  // Other window parameters.
  auto m = cnnviz::ssim(a[0][0], b[0][0], cnnviz::SsimOptions().window_size(7).sigma(1.0));
  CHECK(m.item<double>() == doctest::Approx(reference_ssim(a[0][0], b[0][0], 1.0, 7, 1.0)).epsilon(1e-9));
}

TEST_CASE("metrics: identities") {
  torch::manual_seed(1);
  auto a = torch::rand({1, 3, 16, 16});
  CHECK(cnnviz::ssim(a, a).item<double>() == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(std::isinf(cnnviz::psnr(a, a).item<double>()));
  CHECK(cnnviz::ssim(a, 1 - a).item<double>() < 0.5);
  // PSNR of a constant error e in [0, 1] data is -20 log10(e).
  auto z = torch::zeros({2, 1, 4, 4});
  CHECK(cnnviz::psnr(z, z + 0.1).item<double>() == doctest::Approx(20.0).epsilon(1e-6));
  CHECK(cnnviz::psnr(z, z + 25.5, 255.0).item<double>() == doctest::Approx(20.0).epsilon(1e-6));
  auto u = torch::zeros({4, 4, 3}, torch::kUInt8);
  CHECK(cnnviz::psnr(u, u + 51).item<double>() == doctest::Approx(-20 * std::log10(0.2)).epsilon(1e-6));
  auto per = cnnviz::psnr(z, torch::cat({z.slice(0, 0, 1) + 0.1, z.slice(0, 1, 2) + 0.01}),
                          cnnviz::PsnrOptions().reduction(cnnviz::Reduction::none));
  CHECK(per[0].item<double>() == doctest::Approx(20.0).epsilon(1e-6));
  CHECK(per[1].item<double>() == doctest::Approx(40.0).epsilon(1e-6));
}

TEST_CASE("metrics: ssim is differentiable") {
  auto a = torch::rand({1, 1, 12, 12}, torch::kDouble).requires_grad_(true);
  auto b = torch::rand({1, 1, 12, 12}, torch::kDouble);
  auto grad = torch::autograd::grad({cnnviz::ssim(a, b)}, {a})[0];
  CHECK(grad.abs().sum().item<double>() > 0);
  // Finite-difference check of one coordinate.
  const double eps = 1e-6;
  auto ap = a.detach().clone(), am = a.detach().clone();
  ap[0][0][5][6] += eps;
  am[0][0][5][6] -= eps;
  const double fd = (cnnviz::ssim(ap, b).item<double>() - cnnviz::ssim(am, b).item<double>()) / (2 * eps);
  CHECK(grad[0][0][5][6].item<double>() == doctest::Approx(fd).epsilon(1e-5));
}

TEST_CASE("metrics: bad inputs") {
  auto a = torch::rand({1, 3, 16, 16});
  CHECK_THROWS_WITH_AS(cnnviz::ssim(a, torch::rand({1, 3, 16, 15})), doctest::Contains("differ in shape"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::ssim(a, a.to(torch::kDouble)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::ssim(torch::rand({1, 3, 8, 8}), torch::rand({1, 3, 8, 8})), c10::ValueError);  // < window
  CHECK_THROWS_AS(cnnviz::ssim(a, a, cnnviz::SsimOptions().window_size(10)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::ssim(a, a, cnnviz::SsimOptions().sigma(0)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::ssim(a, a, cnnviz::SsimOptions().data_range(0.0)), c10::ValueError);
  // The metrics reduce over images by mean or not at all; max is refused, naming the way to it.
  CHECK_THROWS_WITH_AS(cnnviz::ssim(a, a, cnnviz::SsimOptions().reduction(cnnviz::Reduction::max)),
                       doctest::Contains("reduction must be 'mean' or 'none', got 'max'"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::psnr(a, a, cnnviz::PsnrOptions().reduction(cnnviz::Reduction::max)),
                       doctest::Contains("psnr: reduction must be 'mean' or 'none'"), c10::ValueError);
  // ssim_map does not reduce: the option is ignored there.
  CHECK(cnnviz::ssim_map(a, a, cnnviz::SsimOptions().reduction(cnnviz::Reduction::max)).sizes() ==
        torch::IntArrayRef({1, 3, 6, 6}));
  CHECK_THROWS_AS(cnnviz::ssim(torch::rand({3, 16, 16}), torch::rand({3, 16, 16})), c10::ValueError);  // (C, H, W)
  CHECK_THROWS_AS(cnnviz::ssim(torch::full({16, 16}, NAN), torch::rand({16, 16})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::ssim(torch::zeros({16, 16}, torch::kInt64), torch::zeros({16, 16}, torch::kInt64)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::ssim(torch::Tensor(), a), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::psnr(a, a, -1.0), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::psnr(torch::rand({5}), torch::rand({5})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::psnr(torch::rand({0, 3, 4, 4}), torch::rand({0, 3, 4, 4})), c10::ValueError);
}
