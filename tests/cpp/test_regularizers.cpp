#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "cnnviz/regularizers.hpp"

namespace {
using torch::Tensor;
using Impl = cnnviz::detail::RegularizerImpl;
namespace I = torch::indexing;

// Independent references: the plain autograd expressions.
Tensor ref_alpha(const Tensor& x, double a) { return x.abs().pow(a).sum(); }
Tensor ref_tv(const Tensor& x, double b) {
  auto c = x.index({"...", I::Slice(0, -1), I::Slice(0, -1)});
  auto r = x.index({"...", I::Slice(0, -1), I::Slice(1, I::None)});
  auto d = x.index({"...", I::Slice(1, I::None), I::Slice(0, -1)});
  return ((r - c).pow(2) + (d - c).pow(2)).pow(b / 2).sum();
}
Tensor ref_euclid(const Tensor& t, const Tensor& c) { return (c - t).pow(2).sum() / t.pow(2).sum(); }

Tensor grad_of(const Tensor& y, const Tensor& x) { return torch::autograd::grad({y}, {x})[0]; }
double max_abs(const Tensor& x) { return x.abs().max().item<double>(); }

void check_close(const Tensor& a, const Tensor& b, double rtol, double atol) {
  CHECK((a.scalar_type() == b.scalar_type()));
  CHECK(a.sizes() == b.sizes());
  const bool ok = torch::allclose(a, b, rtol, atol);
  if (!ok) MESSAGE("max abs diff ", (a - b).abs().max().item<double>());
  CHECK(ok);
}

double rtol_of(torch::Dtype t) { return t == torch::kFloat ? 2e-4 : 1e-10; }

// Values and gradients of a regularizer f(x) (through both implementations) against a
// reference r(x); the reference is evaluated in double.
template <class F, class R>
void check_against(const Tensor& x0, const F& f, const R& r) {
  auto xd = x0.to(torch::kDouble).requires_grad_();
  auto vr = r(xd);
  auto gr = grad_of(vr, xd);
  for (auto impl : {Impl::fused, Impl::composed}) {
    CAPTURE(static_cast<int>(impl));
    auto x = x0.detach().clone().requires_grad_();
    auto v = f(x, impl);
    CHECK(v.dim() == 0);
    CHECK((v.scalar_type() == x.scalar_type()));
    CHECK(v.requires_grad());
    const double rt = rtol_of(x.scalar_type());
    check_close(v.to(torch::kDouble), vr.detach(), rt, 0);
    check_close(grad_of(v, x).to(torch::kDouble), gr, rt, rt * max_abs(gr));
  }
}

struct ThreadCount {
  int saved = at::get_num_threads();
  explicit ThreadCount(int n) { at::set_num_threads(n); }
  ~ThreadCount() { at::set_num_threads(saved); }
};
}  // namespace

TEST_CASE("alpha_norm matches |x|^alpha summed, with its gradient") {
  torch::manual_seed(0);
  for (auto dtype : {torch::kFloat, torch::kDouble})
    for (double a : {1.0, 1.5, 2.0, 3.0, 5.0, 6.0, 8.0, 2.5, 9.0}) {
      CAPTURE(a);
      auto x = torch::randn({2, 3, 17, 19}, dtype);
      check_against(
          x, [&](const Tensor& t, Impl impl) { return cnnviz::detail::alpha_norm(t, a, impl); },
          [&](const Tensor& t) { return ref_alpha(t, a); });
    }
  // Any shape, also a 0-dim tensor; the public function.
  auto s = torch::tensor(-2.0, torch::kDouble);
  CHECK(cnnviz::alpha_norm(s, 3).item<double>() == doctest::Approx(8));
  CHECK(cnnviz::alpha_norm(torch::ones({5}), 2).item<float>() == doctest::Approx(5));
}

TEST_CASE("total_variation matches the Mahendran-Vedaldi sum, with its gradient") {
  torch::manual_seed(1);
  for (auto dtype : {torch::kFloat, torch::kDouble})
    for (double b : {1.0, 2.0, 3.0, 4.0, 6.0, 0.5, 1.5, 2.5}) {
      CAPTURE(b);
      for (auto shape : {std::vector<int64_t>{2, 3, 13, 11}, std::vector<int64_t>{3, 9, 16}}) {
        auto x = torch::randn(shape, dtype);
        check_against(
            x,
            [&](const Tensor& t, Impl impl) { return cnnviz::detail::total_variation(t, b, impl); },
            [&](const Tensor& t) { return ref_tv(t, b); });
      }
    }
}

TEST_CASE("total_variation handles a small hand-computed image and thin images") {
  // x = [[0, 1], [3, 5]]: the only term is (1 - 0)^2 + (3 - 0)^2 = 10.
  auto x = torch::tensor({0.0, 1.0, 3.0, 5.0}, torch::kDouble).reshape({1, 2, 2}).requires_grad_();
  auto v = cnnviz::total_variation(x, 2);
  CHECK(v.item<double>() == doctest::Approx(10));
  // d/dx00 = -2(1) - 2(3) = -8, d/dx01 = 2, d/dx10 = 6, the corner 0.
  check_close(grad_of(v, x), torch::tensor({-8.0, 2.0, 6.0, 0.0}, torch::kDouble).reshape({1, 2, 2}), 0, 1e-12);
  CHECK(cnnviz::total_variation(x, 1).item<double>() == doctest::Approx(std::sqrt(10.0)));
  // One row or one column: no terms.
  for (auto shape : {std::vector<int64_t>{1, 3, 1, 8}, std::vector<int64_t>{3, 8, 1}}) {
    auto t = torch::randn(shape).requires_grad_();
    auto tv = cnnviz::total_variation(t, 2);
    CHECK(tv.item<float>() == 0);
    CHECK(grad_of(tv, t).abs().sum().item<float>() == 0);
  }
}

TEST_CASE("euclidean_loss matches ||c - t||^2 / ||t||^2 in both arguments") {
  torch::manual_seed(2);
  // A small odd size (vector tails) and an image (several blocks and float runs per block).
  for (auto shape : {std::vector<int64_t>{2, 8, 7, 5}, std::vector<int64_t>{1, 3, 224, 224}}) {
    for (auto dtype : {torch::kFloat, torch::kDouble})
      for (auto impl : {Impl::fused, Impl::composed}) {
        auto t0 = torch::randn(shape, dtype), c0 = torch::randn(shape, dtype);
        auto td = t0.to(torch::kDouble).requires_grad_(), cd = c0.to(torch::kDouble).requires_grad_();
        auto vr = ref_euclid(td, cd);
        auto gr = torch::autograd::grad({vr}, {td, cd});
        auto t = t0.clone().requires_grad_(), c = c0.clone().requires_grad_();
        auto v = cnnviz::detail::euclidean_loss(t, c, impl);
        CHECK(v.dim() == 0);
        auto g = torch::autograd::grad({v}, {t, c});
        const double rt = rtol_of(dtype);
        check_close(v.to(torch::kDouble), vr.detach(), rt, 0);
        check_close(g[0].to(torch::kDouble), gr[0], rt, rt * max_abs(gr[0]));
        check_close(g[1].to(torch::kDouble), gr[1], rt, rt * max_abs(gr[1]));
        // Only the current image needs a gradient, as in feature inversion.
        auto c2 = c0.clone().requires_grad_();
        check_close(grad_of(cnnviz::detail::euclidean_loss(t0, c2, impl), c2).to(torch::kDouble), gr[1],
                    rt, rt * max_abs(gr[1]));
      }
  }
}

TEST_CASE("regularizers take non-contiguous inputs") {
  torch::manual_seed(3);
  auto x = torch::randn({2, 3, 12, 10}, torch::kDouble).contiguous(torch::MemoryFormat::ChannelsLast);
  auto xt = torch::randn({2, 3, 10, 12}, torch::kDouble).transpose(2, 3);
  for (const auto& v : {x, xt}) {
    CHECK_FALSE(v.is_contiguous());
    auto a = v.clone().requires_grad_();
    auto r = v.contiguous().requires_grad_();
    check_close(cnnviz::total_variation(a, 2), ref_tv(r, 2), 1e-12, 0);
    check_close(grad_of(cnnviz::total_variation(a, 2), a), grad_of(ref_tv(r, 2), r), 1e-12, 1e-12);
    check_close(cnnviz::alpha_norm(a, 6), ref_alpha(r, 6), 1e-12, 0);
    check_close(cnnviz::euclidean_loss(v, a * 2), ref_euclid(r, r * 2), 1e-12, 0);
  }
}

TEST_CASE("zero values and zero differences give finite gradients (0 where undefined)") {
  auto x = torch::tensor({0.0, 0.0, 1.5, -2.0, 0.0, 3.0}, torch::kDouble).reshape({1, 1, 2, 3});
  for (auto impl : {Impl::fused, Impl::composed})
    for (double a : {0.3, 0.5, 1.0, 1.5}) {
      CAPTURE(a);
      auto t = x.clone().requires_grad_();
      auto g = grad_of(cnnviz::detail::alpha_norm(t, a, impl), t);
      CHECK(torch::isfinite(g).all().item<bool>());
      CHECK(g[0][0][0][0].item<double>() == 0);
      CHECK(g[0][0][1][1].item<double>() == 0);
      CHECK(g[0][0][0][2].item<double>() == doctest::Approx(a * std::pow(1.5, a - 1)));
      CHECK(g[0][0][1][0].item<double>() == doctest::Approx(-a * std::pow(2.0, a - 1)));
    }
  // A flat image: every difference is 0. A half-flat one: only some are.
  auto flat = torch::full({2, 3, 6, 5}, 0.7);
  auto half = flat.clone();
  half.index_put_({I::Slice(), I::Slice(), I::Slice(3, I::None)}, torch::randn({2, 3, 3, 5}));
  for (auto impl : {Impl::fused, Impl::composed})
    for (double b : {0.5, 1.0, 1.5, 2.0, 2.5}) {
      CAPTURE(b);
      auto t = flat.clone().requires_grad_();
      auto v = cnnviz::detail::total_variation(t, b, impl);
      CHECK(v.item<float>() == 0);
      CHECK(grad_of(v, t).abs().max().item<float>() == 0);
      auto h = half.to(torch::kDouble).requires_grad_();
      auto gh = grad_of(cnnviz::detail::total_variation(h, b, impl), h);
      CHECK(torch::isfinite(gh).all().item<bool>());
      // Away from the flat part the reference gradient is well defined and must agree.
      auto hr = half.to(torch::kDouble).requires_grad_();
      auto grr = grad_of(ref_tv(hr, b), hr);
      auto rows = I::Slice(4, I::None);
      check_close(gh.index({I::Slice(), I::Slice(), rows}), grr.index({I::Slice(), I::Slice(), rows}), 1e-9, 1e-12);
    }
}

TEST_CASE("regularizer results do not depend on the thread count") {
  torch::manual_seed(4);
  auto x = torch::randn({2, 3, 131, 97});
  auto t = torch::randn({2, 3, 131, 97});
  auto run = [&] {
    auto xr = x.clone().requires_grad_();
    std::vector<Tensor> out;
    for (auto v : {cnnviz::alpha_norm(xr, 6), cnnviz::alpha_norm(xr, 2.5), cnnviz::total_variation(xr, 2),
                   cnnviz::total_variation(xr, 1), cnnviz::euclidean_loss(t, xr)}) {
      out.push_back(v.detach());
      out.push_back(grad_of(v, xr));
    }
    return out;
  };
  std::vector<Tensor> one, two;
  {
    ThreadCount tc(1);
    one = run();
  }
  {
    ThreadCount tc(2);
    two = run();
  }
  for (size_t i = 0; i < one.size(); ++i) CHECK(torch::equal(one[i], two[i]));
}

TEST_CASE("double backward matches the reference's second derivatives") {
  torch::manual_seed(5);
  auto x0 = torch::randn({1, 2, 6, 7}, torch::kDouble);
  auto t = torch::randn({1, 2, 6, 7}, torch::kDouble);
  auto u = torch::randn({1, 2, 6, 7}, torch::kDouble);  // direction of the Hessian product
  auto hvp = [&](auto f) {
    auto x = x0.clone().requires_grad_();
    auto g = torch::autograd::grad({f(x)}, {x}, {}, true, true)[0];
    return grad_of((g * u).sum(), x);
  };
  check_close(hvp([](const Tensor& x) { return cnnviz::alpha_norm(x, 6); }),
              hvp([](const Tensor& x) { return ref_alpha(x, 6); }), 1e-10, 1e-10);
  check_close(hvp([](const Tensor& x) { return cnnviz::alpha_norm(x, 2.5); }),
              hvp([](const Tensor& x) { return ref_alpha(x, 2.5); }), 1e-10, 1e-10);
  for (double b : {2.0, 1.0, 3.0}) {
    CAPTURE(b);
    check_close(hvp([&](const Tensor& x) { return cnnviz::total_variation(x, b); }),
                hvp([&](const Tensor& x) { return ref_tv(x, b); }), 1e-9, 1e-10);
  }
  check_close(hvp([&](const Tensor& x) { return cnnviz::euclidean_loss(t, x); }),
              hvp([&](const Tensor& x) { return ref_euclid(t, x); }), 1e-10, 1e-12);
  check_close(hvp([&](const Tensor& x) { return cnnviz::euclidean_loss(x, t); }),
              hvp([&](const Tensor& x) { return ref_euclid(x, t); }), 1e-10, 1e-12);
}

TEST_CASE("regularizers compose with autograd and half precision falls back") {
  torch::manual_seed(6);
  auto x = torch::randn({1, 3, 8, 8}, torch::kDouble).requires_grad_();
  auto t = torch::randn({1, 3, 8, 8}, torch::kDouble);
  auto loss = cnnviz::euclidean_loss(t, x * 2) + 1e-2 * cnnviz::alpha_norm(x, 6) +
              1e-1 * cnnviz::total_variation(x.sin(), 2);
  auto ref = ref_euclid(t, x * 2) + 1e-2 * ref_alpha(x, 6) + 1e-1 * ref_tv(x.sin(), 2);
  check_close(loss, ref, 1e-12, 0);
  check_close(grad_of(loss, x), grad_of(ref, x), 1e-10, 1e-12);
  // bfloat16 and half run the composed expressions in float and return float.
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    auto xh = x.detach().to(dtype).requires_grad_();
    auto v = cnnviz::total_variation(xh, 2);
    CHECK((v.scalar_type() == torch::kFloat));
    auto xf = xh.detach().to(torch::kFloat).requires_grad_();
    check_close(v, ref_tv(xf, 2), 1e-5, 0);
    auto g = grad_of(v, xh);
    CHECK((g.scalar_type() == dtype));
    check_close(g.to(torch::kFloat), grad_of(ref_tv(xf, 2), xf), 2e-2, 2e-2);
    CHECK(cnnviz::alpha_norm(xh, 2).item<float>() == doctest::Approx(xf.pow(2).sum().item<float>()).epsilon(1e-4));
    CHECK(cnnviz::euclidean_loss(xh, xh * 2).item<float>() == doctest::Approx(1).epsilon(1e-6));
  }
}

TEST_CASE("regularizers reject bad input") {
  auto x = torch::randn({1, 3, 4, 4});
  for (double bad : {0.0, -1.0, double(NAN), double(INFINITY)}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(cnnviz::alpha_norm(x, bad), doctest::Contains("alpha must be a positive"), c10::ValueError);
    CHECK_THROWS_WITH_AS(cnnviz::total_variation(x, bad), doctest::Contains("beta must be a positive"), c10::ValueError);
  }
  for (auto impl : {Impl::fused, Impl::composed}) {
    auto nan = x.clone().index_put_({0, 1, 2, 2}, NAN);
    CHECK_THROWS_WITH_AS(cnnviz::detail::alpha_norm(nan, 2, impl), doctest::Contains("NaN or infinity"), c10::ValueError);
    CHECK_THROWS_WITH_AS(cnnviz::detail::total_variation(nan, 2, impl), doctest::Contains("NaN or infinity"), c10::ValueError);
    CHECK_THROWS_WITH_AS(cnnviz::detail::euclidean_loss(x, nan, impl), doctest::Contains("current contains NaN"), c10::ValueError);
    CHECK_THROWS_WITH_AS(cnnviz::detail::euclidean_loss(nan, x, impl), doctest::Contains("target contains NaN"), c10::ValueError);
    // The bottom-right corner enters no total-variation term, and is still checked.
    auto corner = x.clone().index_put_({0, 2, 3, 3}, INFINITY);
    CHECK_THROWS_WITH_AS(cnnviz::detail::total_variation(corner, 2, impl), doctest::Contains("NaN or infinity"), c10::ValueError);
    CHECK_THROWS_WITH_AS(cnnviz::detail::total_variation(torch::full({3, 1, 4}, NAN), 2, impl), doctest::Contains("NaN"), c10::ValueError);
    CHECK_THROWS_WITH_AS(cnnviz::detail::euclidean_loss(torch::zeros({3, 4}), torch::randn({3, 4}), impl),
                         doctest::Contains("target is all zeros"), c10::ValueError);
  }
  // A finite input whose value overflows is not an error.
  CHECK(std::isinf(cnnviz::alpha_norm(torch::full({4}, 1e30f), 2).item<float>()));
  CHECK_THROWS_WITH_AS(cnnviz::total_variation(torch::randn({4, 4}), 2), doctest::Contains("(N, C, H, W) or (C, H, W)"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::total_variation(torch::randn({1, 1, 1, 4, 4}), 2), doctest::Contains("got shape"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::euclidean_loss(torch::randn({2, 3}), torch::randn({3, 2})), doctest::Contains("differ in shape"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::euclidean_loss(torch::randn({2, 3}), torch::randn({2, 3}, torch::kDouble)), doctest::Contains("differ in dtype"), c10::TypeError);
  for (auto dtype : {torch::kInt, torch::kLong, torch::kBool, torch::kComplexFloat}) {
    auto xi = torch::ones({1, 3, 4, 4}, dtype);
    CHECK_THROWS_WITH_AS(cnnviz::alpha_norm(xi, 2), doctest::Contains("floating-point"), c10::TypeError);
    CHECK_THROWS_WITH_AS(cnnviz::total_variation(xi, 2), doctest::Contains("floating-point"), c10::TypeError);
    CHECK_THROWS_WITH_AS(cnnviz::euclidean_loss(xi, xi), doctest::Contains("floating-point"), c10::TypeError);
  }
  CHECK_THROWS_WITH_AS(cnnviz::alpha_norm(torch::empty({0, 3}), 2), doctest::Contains("is empty"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::total_variation(torch::empty({0, 3, 4, 4}), 2), doctest::Contains("is empty"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::alpha_norm(Tensor(), 2), doctest::Contains("undefined"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::detail::alpha_norm(x.to(torch::kHalf), 2, Impl::fused), doctest::Contains("CPU float or double"), c10::ValueError);
}
