#include <doctest/doctest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "cnnviz/attribution.hpp"
#include "cnnviz/detail/adaptive_panels.hpp"
#include "cnnviz/detail/attribution.hpp"
#include "cnnviz/detail/slic.hpp"
#include "cnnviz/script_model.hpp"

namespace {

using cnnviz::AnyModel;
using cnnviz::SequentialModel;
using cnnviz::Target;

/// conv-relu-conv-relu-pool-flatten-linear in double: children "0".."6", "3" spatial.
torch::nn::Sequential small_net() {
  torch::manual_seed(0);
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 5, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(5, 3));
  seq->to(torch::kDouble);
  seq->eval();
  return seq;
}

/// Runs children [begin, end) of a Sequential on h.
torch::Tensor run_children(torch::nn::Sequential& seq, torch::Tensor h, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i) h = (seq->begin() + static_cast<std::ptrdiff_t>(i))->forward(h);
  return h;
}

torch::Tensor grad_of(const torch::Tensor& y, const torch::Tensor& x) { return torch::autograd::grad({y}, {x})[0]; }

}  // namespace

TEST_CASE("Target resolves predicted, shared and per-sample classes") {
  auto logits = torch::tensor({{0.1, 2.0, 0.3}, {5.0, 0.0, 1.0}});
  CHECK(torch::equal(Target().resolve(logits), torch::tensor({1, 0}, torch::kLong)));
  CHECK(torch::equal(Target(2).resolve(logits), torch::tensor({2, 2}, torch::kLong)));
  CHECK(torch::equal(Target(std::vector<int64_t>{0, 1}).resolve(logits), torch::tensor({0, 1}, torch::kLong)));
  CHECK(torch::equal(Target(torch::tensor(1)).resolve(logits), torch::tensor({1, 1}, torch::kLong)));
  CHECK_THROWS_WITH_AS(Target(3).resolve(logits), doctest::Contains("out of range"), c10::IndexError);
  CHECK_THROWS_WITH_AS(Target(-1).resolve(logits), doctest::Contains("out of range"), c10::IndexError);
  CHECK_THROWS_WITH_AS(Target(std::vector<int64_t>{0, 1, 2}).resolve(logits), doctest::Contains("3 targets"),
                       c10::ValueError);
  CHECK_THROWS_AS(Target(torch::ones({2}, torch::kFloat)), c10::ValueError);
}

TEST_CASE("saliency and SmoothGrad equal autograd on a small network") {
  auto seq = small_net();
  AnyModel model = SequentialModel(seq);
  auto x = torch::randn({2, 3, 8, 8}, torch::kDouble);
  auto r = cnnviz::saliency(model, x, std::vector<int64_t>{2, 0});
  auto xr = x.clone().requires_grad_(true);
  auto out = seq->forward(xr);
  auto ref = grad_of(out[0][2] + out[1][0], xr);
  CHECK(torch::allclose(r.attribution, ref, 1e-10, 1e-12));
  CHECK(torch::allclose(r.map, std::get<0>(ref.abs().max(1))));
  CHECK(torch::allclose(cnnviz::saliency(model, x, 1, cnnviz::SaliencyOptions().reduction(cnnviz::Reduction::mean)).map,
                        grad_of(seq->forward(xr).select(1, 1).sum(), xr).abs().mean(1)));
  // Parameters get no gradient and keep requires_grad.
  for (auto& p : seq->parameters()) {
    CHECK(p.requires_grad());
    CHECK(!p.grad().defined());
  }
  // SmoothGrad with zero noise is the saliency, whatever the batching.
  auto s = cnnviz::smooth_grad(model, x, std::vector<int64_t>{2, 0},
                               cnnviz::SmoothGradOptions().samples(5).noise_level(0).batch_size(3));
  CHECK(torch::allclose(s.attribution, ref, 1e-10, 1e-12));
  CHECK_THROWS_AS(cnnviz::smooth_grad(model, x, {}, cnnviz::SmoothGradOptions().samples(0)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::smooth_grad(model, x, {}, cnnviz::SmoothGradOptions().batch_size(0)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::saliency(model, x, 3), c10::IndexError);
  CHECK_THROWS_AS(cnnviz::saliency(model, torch::randn({3, 8, 8}, torch::kDouble)), c10::ValueError);
}

TEST_CASE("SmoothGrad noise has the requested standard deviation") {
  // A linear model that records its inputs: the noise is input - x.
  std::vector<torch::Tensor> seen;
  auto w = torch::randn({3, 16, 16});
  AnyModel model = cnnviz::FunctionModel([&](const torch::Tensor& x) {
    seen.push_back(x.detach().clone());
    return (x * w).sum({1, 2, 3}).unsqueeze(1).repeat({1, 2});
  });
  auto x = torch::rand({1, 3, 16, 16}) * 4 - 1;  // range about 4
  double range = (x.max() - x.min()).item<double>();
  auto r = cnnviz::smooth_grad(model, x, 0, cnnviz::SmoothGradOptions().samples(64).noise_level(0.1).batch_size(16));
  CHECK(torch::allclose(r.attribution, w.unsqueeze(0), 1e-5, 1e-5));  // constant gradient
  // The first batch starts with the clean image (its forward resolves the target).
  auto all = torch::cat(seen);
  CHECK(torch::equal(all[0], x[0]));
  auto noise = all.slice(0, 1) - x;
  CHECK(noise.size(0) == 64);
  CHECK(noise.std().item<double>() == doctest::Approx(0.1 * range).epsilon(0.02));
}

TEST_CASE("for_each_batch covers the range in the fewest nearly equal batches") {
  for (int64_t total : {1, 5, 16, 17, 49, 64}) {
    for (int64_t batch : {1, 4, 16, 32}) {
      CAPTURE(total);
      CAPTURE(batch);
      std::vector<int64_t> sizes;
      int64_t next = 0;
      CHECK(cnnviz::detail::for_each_batch(total, batch, nullptr, [&](int64_t b, int64_t e) {
        CHECK(b == next);
        next = e;
        sizes.push_back(e - b);
        return 0.0;
      }));
      CHECK(next == total);
      CHECK(static_cast<int64_t>(sizes.size()) == (total + batch - 1) / batch);
      CHECK(*std::max_element(sizes.begin(), sizes.end()) <= batch);
      CHECK(*std::max_element(sizes.begin(), sizes.end()) - *std::min_element(sizes.begin(), sizes.end()) <= 1);
    }
  }
}

TEST_CASE("SmoothGrad reports progress in samples and stops when asked") {
  auto w = torch::randn({3, 8, 8});
  AnyModel model = cnnviz::FunctionModel(
      [&](const torch::Tensor& x) { return (x * w).sum({1, 2, 3}).unsqueeze(1).repeat({1, 2}); });
  auto x = torch::randn({2, 3, 8, 8});
  // Batches of 4 carry the 2 clean images in front; with batches of 2 they have their own forward.
  for (int64_t batch : {4, 2}) {
    CAPTURE(batch);
    std::vector<int64_t> steps;
    auto o = cnnviz::SmoothGradOptions().samples(5).batch_size(batch).progress([&](int64_t s, int64_t t, double) {
      CHECK(t == 10);
      steps.push_back(s);
      return true;
    });
    auto r = cnnviz::smooth_grad(model, x, 1, o);
    CHECK(steps.back() == 10);
    CHECK(steps.front() == (batch == 4 ? 3 : 2));  // 10 samples in batches of 3, 3, 4 or of 2
    CHECK_FALSE(r.stopped_early);
    CHECK(torch::allclose(r.attribution, w.expand_as(x), 1e-5, 1e-6));
    CHECK(r.logits.sizes() == torch::IntArrayRef{2, 2});
    CHECK(torch::equal(r.target, torch::ones({2}, torch::kLong)));
    steps.clear();
    o.progress([&](int64_t s, int64_t, double) {
      steps.push_back(s);
      return false;
    });
    r = cnnviz::smooth_grad(model, x, 1, o);
    CHECK(steps.size() == 1);
    CHECK(r.stopped_early);
    CHECK(torch::allclose(r.attribution, w.expand_as(x), 1e-5, 1e-6));
  }
}

TEST_CASE("guided backprop on a ScriptModel applies the guided ReLU rule") {
  torch::manual_seed(1);
  torch::jit::Module m("Guided");
  auto w1 = torch::randn({6, 12}, torch::kDouble), w2 = torch::randn({3, 6}, torch::kDouble);
  m.register_parameter("w1", w1, false);
  m.register_parameter("w2", w2, false);
  m.define(R"(
    def forward(self, x):
        h = torch.relu(torch.matmul(torch.flatten(x, 1), self.w1.t()))
        return torch.matmul(h, self.w2.t())
  )");
  AnyModel model = cnnviz::ScriptModel(m);
  auto x = torch::randn({4, 3, 2, 2}, torch::kDouble);
  auto r = cnnviz::guided_backprop(model, x, 1);
  // Guided rule by hand: dy/dh = w2[1] (for all samples); keep where it is positive and z > 0.
  auto z = x.flatten(1).matmul(w1.t());
  auto gh = w2[1].unsqueeze(0).expand_as(z);
  auto gz = gh * (gh > 0) * (z > 0);
  auto ref = gz.matmul(w1).view_as(x);
  CHECK(torch::allclose(r.attribution, ref, 1e-10, 1e-12));
  // Plain saliency keeps the negative gradients.
  auto s = cnnviz::saliency(model, x, 1);
  CHECK(torch::allclose(s.attribution, (gh * (z > 0)).matmul(w1).view_as(x), 1e-10, 1e-12));
  // A SequentialModel cannot guide its ReLUs: a clear error.
  auto seq = small_net();
  CHECK_THROWS_WITH_AS(cnnviz::guided_backprop(SequentialModel(seq), torch::randn({1, 3, 8, 8}, torch::kDouble)),
                       doctest::Contains("guided"), c10::ValueError);
}

TEST_CASE("CAM family equals the formulas on captured activations and gradients") {
  auto seq = small_net();
  AnyModel model = SequentialModel(seq);
  auto x = torch::randn({2, 3, 8, 8}, torch::kDouble);
  // Reference: the activation of child "2" (conv, with negative values) as a leaf.
  auto a = run_children(seq, x, 0, 3).detach().requires_grad_(true);
  auto out = run_children(seq, a, 3, 7);
  std::vector<int64_t> t0{2, 1};
  auto g = grad_of(out[0][2] + out[1][1], a);
  auto av = a.detach();
  auto gc = (g.mean({2, 3}, true) * av).sum(1).clamp_min(0);
  auto g2 = g * g, g3 = g2 * g;
  auto denom = 2 * g2 + av.sum({2, 3}, true) * g3;
  auto alpha = torch::where(g != 0, g2 / torch::where(denom != 0, denom, torch::ones_like(denom)), torch::zeros_like(g));
  auto pp = ((alpha * g.clamp_min(0)).sum({2, 3}, true) * av).sum(1).clamp_min(0);
  auto lc = (g.clamp_min(0) * av).sum(1).clamp_min(0);

  auto r = cnnviz::grad_cam(model, x, "2", Target(t0));
  CHECK(r.front().map.sizes() == torch::IntArrayRef({2, 8, 8}));
  CHECK(torch::allclose(r.front().map, gc, 1e-8, 1e-12));
  CHECK(torch::allclose(cnnviz::grad_cam_pp(model, x, "2", Target(t0)).front().map, pp, 1e-8, 1e-12));
  CHECK(torch::allclose(cnnviz::layer_cam(model, x, "2", Target(t0)).front().map, lc, 1e-8, 1e-12));
  auto raw = cnnviz::grad_cam(model, x, "2", Target(t0), cnnviz::CamOptions().relu(false));
  CHECK(torch::allclose(raw.front().map, (g.mean({2, 3}, true) * av).sum(1), 1e-8, 1e-12));

  // Several layers and targets in one call equal single calls.
  auto multi = cnnviz::grad_cam(model, x, std::vector<std::string>{"2", "3"}, std::vector<Target>{Target(t0), Target(0)});
  CHECK(multi.maps.size() == 4);
  CHECK(torch::allclose(multi.at("2", 0).map, gc, 1e-8, 1e-12));
  CHECK(torch::allclose(multi.at("3", 1).map, cnnviz::grad_cam(model, x, "3", 0).front().map, 1e-8, 1e-12));
  CHECK(torch::equal(multi.at("3", 1).target, torch::zeros({2}, torch::kLong)));

  // Score-CAM against a loop over channels.
  auto sc = cnnviz::score_cam(model, x, "2", Target(t0), cnnviz::CamOptions().batch_size(3));
  auto ref = torch::zeros({2, 8, 8}, torch::kDouble);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t k = 0; k < av.size(1); ++k) {
      auto mk = av[n][k];
      if ((mk.max() - mk.min()).item<double>() == 0) continue;
      auto mask = (mk - mk.min()) / (mk.max() - mk.min());  // 8x8 layer: upsampling is the identity
      auto p = seq->forward(x[n].unsqueeze(0) * mask).softmax(1)[0][t0[n]];
      ref[n] += p * mk;
    }
  CHECK(torch::allclose(sc.front().map, ref.clamp_min(0), 1e-8, 1e-12));

  // Upsampling: a 4x4 layer map goes to 8x8 bilinearly.
  auto pooled = torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1).stride(2)),
                                      torch::nn::Flatten(), torch::nn::Linear(64, 3));
  pooled->to(torch::kDouble);
  auto up = cnnviz::grad_cam(SequentialModel(pooled), x, "0");
  CHECK(up.front().map.sizes() == torch::IntArrayRef({2, 4, 4}));
  CHECK(up.front().upsampled.sizes() == torch::IntArrayRef({2, 8, 8}));

  CHECK_THROWS_WITH_AS(cnnviz::grad_cam(model, x, "6"), doctest::Contains("not spatial"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::grad_cam(model, x, "9"), doctest::Contains("unknown layer"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::score_cam(model, x, "5"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::grad_cam(model, x, "2", 7), c10::IndexError);
  CHECK_THROWS_AS(cnnviz::grad_cam(model, x, std::vector<std::string>{}, std::vector<Target>{Target()}), c10::ValueError);
}

TEST_CASE("CamResult accessors: map, upsampled and target by layer and target index") {
  auto seq = small_net();
  AnyModel model = SequentialModel(seq);
  auto x = torch::randn({2, 3, 8, 8}, torch::kDouble);
  auto r = cnnviz::grad_cam(model, x, {"2", "3"}, {Target(1), Target(std::vector<int64_t>{0, 2})});
  REQUIRE(r.maps.size() == 4);  // layer-major: (2, t0), (2, t1), (3, t0), (3, t1)
  // Defaults: the first layer and the first target, as Python's result.map / .upsampled / .target.
  CHECK(torch::equal(r.map(), r.maps[0].map));
  CHECK(torch::equal(r.upsampled(), r.maps[0].upsampled));
  CHECK(torch::equal(r.target(), torch::ones({2}, torch::kLong)));
  CHECK(torch::equal(r.target(1), torch::tensor({0, 2}, torch::kLong)));
  CHECK(torch::equal(r.map("3", 1), r.maps[3].map));
  CHECK(torch::equal(r.upsampled("3"), r.maps[2].upsampled));
  CHECK(torch::equal(r.map({}, 1), r.maps[1].map));
  // Each map equals a single call's.
  CHECK(torch::allclose(r.map("3", 1), cnnviz::grad_cam(model, x, "3", std::vector<int64_t>{0, 2}).map()));
  CHECK(r.upsampled().sizes() == torch::IntArrayRef({2, 8, 8}));
  CHECK_THROWS_WITH_AS(r.map("4"), doctest::Contains("no map for layer '4'"), c10::IndexError);
  CHECK_THROWS_WITH_AS(r.target(2), doctest::Contains("target index 2 out of range (2 targets)"), c10::IndexError);
  CHECK_THROWS_WITH_AS(cnnviz::CamResult().map(), doctest::Contains("holds no map"), c10::IndexError);
  CHECK_FALSE(r.stopped_early);
  CHECK_FALSE(r.interrupted);
}

TEST_CASE("Options rows: every option visited once, with its default and a doc") {
  std::vector<std::string> names;
  cnnviz::IntegratedGradientsOptions::for_each_option([&](const char* name, const char* doc, auto get, auto) {
    names.emplace_back(name);
    CHECK(std::string(doc).size() > 10);
  });
  CHECK(names == std::vector<std::string>{"steps", "method", "tolerance", "initial_steps", "max_passes", "baseline",
                                          "custom_baseline", "blur_sigma", "normalization", "batch_size", "reduction",
                                          "progress"});
  cnnviz::IntegratedGradientsOptions o;
  CHECK(o.steps() == 50);
  CHECK(o.reduction() == cnnviz::Reduction::mean);
  CHECK(o.steps(7).batch_size(3).steps() == 7);  // chained setters keep working
  CHECK(cnnviz::SmoothGradOptions().reduction() == cnnviz::Reduction::max);
  CHECK(cnnviz::LimeOptions().superpixels().segments() == 50);
  CHECK(cnnviz::OcclusionOptions().window() == std::vector<int64_t>{16, 16});
  // A reduction the maps do not take is refused with a clear message.
  auto seq = small_net();
  AnyModel model = SequentialModel(seq);
  auto x = torch::randn({1, 3, 8, 8}, torch::kDouble);
  CHECK_THROWS_WITH_AS(cnnviz::saliency(model, x, 0, cnnviz::SaliencyOptions().reduction(cnnviz::Reduction::none)),
                       doctest::Contains("channel reduction must be max or mean, got none"), c10::ValueError);
}

TEST_CASE("the batched-evaluation engine: chunks, target scores, gradients, progress offset and stop") {
  auto seq = small_net();
  AnyModel model = SequentialModel(seq);
  auto x = torch::randn({7, 3, 8, 8}, torch::kDouble);
  auto t = torch::tensor({0, 1, 2, 0, 1, 2, 0}, torch::kLong);
  auto ref_logits = seq->forward(x).detach();
  cnnviz::detail::Evaluation how;
  how.batch_size = 3;
  how.score = cnnviz::Score::probability;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  auto scores = torch::zeros({7}, torch::kDouble);
  auto make = [&](int64_t b, int64_t e) {
    return cnnviz::detail::Rows{x.slice(0, b, e), cnnviz::detail::fixed_target(t.slice(0, b, e))};
  };
  auto run = cnnviz::detail::evaluate_batches(model, 7, how, make,
                                              [&](int64_t b, int64_t e, const cnnviz::detail::Evaluated& ev) {
    chunks.emplace_back(b, e);
    scores.slice(0, b, e).copy_(ev.score);
    CHECK_FALSE(ev.grad.defined());
    return 0.0;
  });
  CHECK(run.done == 7);
  CHECK_FALSE(run.stopped);
  CHECK(chunks == std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {2, 4}, {4, 7}});  // nearly equal, not 3+3+1
  CHECK(torch::allclose(scores, ref_logits.softmax(1).gather(1, t.view({-1, 1})).squeeze(1)));

  // Gradient mode: each row's own input gradient of its target's logit; several targets per row.
  how.gradient = true;
  how.score = cnnviz::Score::logit;
  auto xi = x.clone().requires_grad_(true);
  auto out = seq->forward(xi);
  auto ref_grad = grad_of(out.gather(1, t.view({-1, 1})).sum(), xi);
  auto ev = cnnviz::detail::evaluate_rows(model, make(0, 7), how);
  CHECK(torch::allclose(ev.grad, ref_grad, 1e-10, 1e-12));
  CHECK(torch::allclose(ev.score, ref_logits.gather(1, t.view({-1, 1})).squeeze(1)));
  auto two = torch::stack({t, (t + 1).remainder(3)}, 1);  // (B, 2)
  auto ev2 = cnnviz::detail::evaluate_rows(model, {x, cnnviz::detail::fixed_target(two)}, how);
  CHECK(ev2.score.sizes() == torch::IntArrayRef({7, 2}));
  CHECK(torch::allclose(ev2.score, ref_logits.gather(1, two)));

  // Progress counts from the offset toward the given total; a stop ends the run.
  std::vector<int64_t> steps;
  how.gradient = false;
  how.progress_offset = 100;
  how.progress_total = 1000;
  how.progress = [&](int64_t step, int64_t total, double) {
    CHECK(total == 1000);
    steps.push_back(step);
    return steps.size() < 2;
  };
  run = cnnviz::detail::evaluate_batches(model, 7, how, make,
                                         [&](int64_t, int64_t, const cnnviz::detail::Evaluated&) { return 0.0; });
  CHECK(steps == std::vector<int64_t>{102, 104});
  CHECK(run.done == 4);
  CHECK(run.stopped);
}

TEST_CASE("integrated gradients: quadrature, completeness, baselines") {
  for (auto method : {cnnviz::IntegrationMethod::riemann_trapezoid, cnnviz::IntegrationMethod::gauss_legendre}) {
    auto [nodes, weights] = cnnviz::detail::quadrature(method, 6);
    double sum = 0, cubic = 0;
    for (size_t i = 0; i < nodes.size(); ++i) {
      sum += weights[i];
      cubic += weights[i] * nodes[i] * nodes[i] * nodes[i];
    }
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-12));
    if (method == cnnviz::IntegrationMethod::gauss_legendre) CHECK(cubic == doctest::Approx(0.25).epsilon(1e-12));
  }
  // A linear model: IG is exactly (x - baseline) * w and delta is 0.
  auto w = torch::randn({2, 3, 5, 5}, torch::kDouble);
  AnyModel linear = cnnviz::FunctionModel([&](const torch::Tensor& x) {
    return torch::stack({(x * w[0]).sum({1, 2, 3}), (x * w[1]).sum({1, 2, 3})}, 1);
  });
  auto x = torch::randn({3, 3, 5, 5}, torch::kDouble);
  auto r = cnnviz::integrated_gradients(linear, x, 1, cnnviz::IntegratedGradientsOptions().steps(4).batch_size(5));
  CHECK(torch::allclose(r.attribution, x * w[1], 1e-10, 1e-12));
  CHECK(r.delta.abs().max().item<double>() < 1e-10);
  // A smooth nonlinear model: Gauss-Legendre converges fast, the trapezoid more slowly.
  AnyModel smooth = cnnviz::FunctionModel([&](const torch::Tensor& x) {
    return torch::stack({torch::tanh(x * w[0]).sum({1, 2, 3}), torch::sin(x * w[1]).sum({1, 2, 3})}, 1);
  });
  auto gl = cnnviz::integrated_gradients(smooth, x, 0, cnnviz::IntegratedGradientsOptions().steps(24).method(
                                                            cnnviz::IntegrationMethod::gauss_legendre));
  auto tr = cnnviz::integrated_gradients(smooth, x, 0, cnnviz::IntegratedGradientsOptions().steps(24));
  CHECK(gl.delta.abs().max().item<double>() < 1e-6);
  CHECK(tr.delta.abs().max().item<double>() < 0.05 * (tr.score - tr.baseline_score).abs().max().item<double>());

  auto black = cnnviz::integrated_gradients(linear, x, 0, cnnviz::IntegratedGradientsOptions().steps(2).baseline(cnnviz::BaselineKind::black));
  CHECK(black.baseline[0][1][0][0].item<double>() == doctest::Approx(-0.456 / 0.224));
  auto blur = cnnviz::integrated_gradients(linear, x, 0, cnnviz::IntegratedGradientsOptions().steps(2).baseline(cnnviz::BaselineKind::blur).blur_sigma(1));
  CHECK(blur.baseline.var().item<double>() < x.var().item<double>());
  auto custom = cnnviz::integrated_gradients(linear, x, 0, cnnviz::IntegratedGradientsOptions().steps(2)
      .baseline(cnnviz::BaselineKind::custom).custom_baseline(torch::ones({3, 5, 5}, torch::kDouble)));
  CHECK(torch::allclose(custom.attribution, (x - 1) * w[0], 1e-10, 1e-12));

  CHECK_THROWS_AS(cnnviz::integrated_gradients(linear, x, 0, cnnviz::IntegratedGradientsOptions().steps(0)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::integrated_gradients(linear, x, 0, cnnviz::IntegratedGradientsOptions().steps(1)), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::integrated_gradients(linear, x, 0, cnnviz::IntegratedGradientsOptions()
                           .baseline(cnnviz::BaselineKind::custom).custom_baseline(torch::zeros({3, 4, 4}))),
                       doctest::Contains("baseline must have shape"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::integrated_gradients(linear, x, 2), c10::IndexError);
}

TEST_CASE("adaptive panels: exact panel errors, weights, selection") {
  // f = sin(3a), g = f' = 3 cos(3a): the trapezoid error of each panel against f's difference.
  auto f = [](double a) { return std::sin(3 * a); };
  auto g = [](double a) { return 3 * std::cos(3 * a); };
  cnnviz::detail::AdaptivePanels p;
  for (int j = 0; j <= 4; ++j) p.add(j / 4.0, f(j / 4.0), g(j / 4.0));
  p.connect();
  CHECK(p.panels() == 4);
  double sum = 0, sq = 0;
  for (int64_t q = 0; q < p.panels(); ++q) {
    const double l = p.midpoint(q) - p.width(q) / 2, r = l + p.width(q);
    CHECK(p.error(q) == doctest::Approx(p.width(q) / 2 * (g(l) + g(r)) - (f(r) - f(l))).epsilon(1e-12));
    sum += p.error(q);
    sq += p.error(q) * p.error(q);
  }
  // The panel errors telescope to the composite rule's error.
  CHECK(sum == doctest::Approx(p.integral() - (f(1) - f(0))).epsilon(1e-12));
  CHECK(p.rms_error() == doctest::Approx(std::sqrt(sq)).epsilon(1e-12));
  auto w = p.weights();
  CHECK(std::accumulate(w.begin(), w.end(), 0.0) == doctest::Approx(1.0).epsilon(1e-12));
  // A loose target needs one panel, the worst; an impossible one all of them, capped by the budget.
  auto one = p.select(1e9, 100);
  REQUIRE(one.size() == 1);
  for (int64_t q = 0; q < p.panels(); ++q) CHECK(std::abs(p.error(q)) <= std::abs(p.error(one[0])));
  CHECK(p.select(0, 100).size() == 4);
  CHECK(p.select(0, 3).size() == 3);
  // Bisection keeps the weights a partition of [0, 1] and shrinks the error of a smooth integrand.
  const double before = p.rms_error();
  for (int64_t q : p.select(0, 100)) {
    const double m = p.midpoint(q);
    p.bisect(q, p.add(m, f(m), g(m)));
  }
  CHECK(p.nodes() == 9);
  CHECK(p.rms_error() < before / 4);
  w = p.weights();
  CHECK(std::accumulate(w.begin(), w.end(), 0.0) == doctest::Approx(1.0).epsilon(1e-12));
}

TEST_CASE("integrated gradients to a tolerance: completeness, passes, reference, budget") {
  torch::manual_seed(3);
  auto w = torch::randn({2, 3, 5, 5}, torch::kDouble);
  int64_t grad_rows = 0, plain_rows = 0;
  // Smooth but strongly curved along the path; counts the rows it evaluates with and without
  // gradients (forward+backward path points vs forward-only endpoints).
  AnyModel smooth = cnnviz::FunctionModel([&](const torch::Tensor& x) {
    (x.requires_grad() ? grad_rows : plain_rows) += x.size(0);
    return torch::stack({torch::tanh(3 * x * w[0]).sum({1, 2, 3}), torch::sin(2 * x * w[1]).sum({1, 2, 3})}, 1);
  });
  auto x = torch::randn({3, 3, 5, 5}, torch::kDouble);
  x[1].mul_(0.01);  // nearly linear along its path: converges on the first grid
  const double tol = 1e-3;
  auto r = cnnviz::integrated_gradients(smooth, x, 0, cnnviz::IntegratedGradientsOptions().tolerance(tol).batch_size(7));
  // Independently: f(x) - f(baseline) from plain forwards, the attribution's own sum.
  auto fx = torch::tanh(3 * x * w[0]).sum({1, 2, 3});
  auto gap = fx - torch::tanh(torch::zeros_like(x)).sum({1, 2, 3});
  CHECK(torch::all((r.attribution.sum({1, 2, 3}) - gap).abs() <= tol * gap.abs()).item<bool>());
  CHECK(torch::allclose(r.delta, r.attribution.sum({1, 2, 3}) - gap, 1e-9, 1e-12));
  CHECK(r.converged.all().item<bool>());
  CHECK(torch::all(r.relative_error <= tol).item<bool>());
  // Passes: every forward+backward row the model saw, per image; the endpoints are 2N forward rows.
  CHECK(r.passes.sum().item<int64_t>() == grad_rows);
  CHECK(plain_rows == 2 * x.size(0));
  CHECK(r.passes[1].item<int64_t>() == cnnviz::IntegratedGradientsOptions().initial_steps());
  CHECK(r.passes[0].item<int64_t>() > r.passes[1].item<int64_t>());
  // Close to a 1024-panel trapezoid reference written out here.
  for (int64_t i = 0; i < x.size(0); ++i) {
    auto xi = x[i].unsqueeze(0);
    auto a = torch::linspace(0, 1, 1025, torch::kDouble).view({-1, 1, 1, 1});
    auto path = (a * xi).requires_grad_(true);
    auto grad = torch::autograd::grad({torch::tanh(3 * path * w[0]).sum()}, {path})[0];
    auto wt = torch::full({1025}, 1.0 / 1024, torch::kDouble);
    wt[0] = wt[1024] = 0.5 / 1024;
    auto ref = xi[0] * (grad * wt.view({-1, 1, 1, 1})).sum(0);
    CHECK(((r.attribution[i] - ref).norm() / ref.norm()).item<double>() < 0.01);
  }
  // Each image's result is what it gets alone: batching across images changes nothing.
  auto alone = cnnviz::integrated_gradients(smooth, x.slice(0, 0, 1), 0, cnnviz::IntegratedGradientsOptions().tolerance(tol));
  CHECK(alone.passes[0].item<int64_t>() == r.passes[0].item<int64_t>());
  CHECK(torch::allclose(alone.attribution[0], r.attribution[0], 1e-12, 1e-14));

  // A budget too small: not converged, passes capped, the partial integral still returned.
  auto tight = cnnviz::integrated_gradients(smooth, x, 0, cnnviz::IntegratedGradientsOptions().tolerance(1e-9).max_passes(12));
  CHECK_FALSE(tight.converged.all().item<bool>());
  CHECK(tight.passes.max().item<int64_t>() <= 12);
  CHECK(tight.relative_error[0].item<double>() > 1e-9);
  CHECK(torch::allclose(tight.delta, tight.attribution.sum({1, 2, 3}) - gap, 1e-9, 1e-12));
  // The fixed mode reports its passes too, and no convergence.
  auto fixed = cnnviz::integrated_gradients(smooth, x, 0, cnnviz::IntegratedGradientsOptions().steps(6));
  CHECK(torch::equal(fixed.passes, torch::full({3}, 6, torch::kLong)));
  CHECK_FALSE(fixed.converged.defined());
  // A progress stop mid-way: stopped_early, a partial result, passes as far as evaluated.
  int64_t calls = 0;
  auto stopped = cnnviz::integrated_gradients(smooth, x, 0, cnnviz::IntegratedGradientsOptions().tolerance(tol).batch_size(4)
      .progress([&](int64_t, int64_t, double) { return ++calls < 2; }));
  CHECK(stopped.stopped_early);
  // 27 first-grid points in 7 balanced chunks of at most 4 (3, 4, 4, ...): two chunks are 7.
  CHECK(stopped.passes.sum().item<int64_t>() == 7);

  using O = cnnviz::IntegratedGradientsOptions;
  for (double bad : {0.0, -0.1, std::nan(""), std::numeric_limits<double>::infinity()})
    CHECK_THROWS_WITH_AS(cnnviz::integrated_gradients(smooth, x, 0, O().tolerance(bad)),
                         doctest::Contains("tolerance must be a positive finite number"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::integrated_gradients(smooth, x, 0, O().tolerance(0.01).max_passes(5)),
                       doctest::Contains("max_passes (5) must be at least initial_steps (9)"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::integrated_gradients(smooth, x, 0, O().tolerance(0.01).initial_steps(1)),
                       doctest::Contains("initial_steps must be at least 2"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::integrated_gradients(smooth, x, 0, O().tolerance(0.01).steps(20)),
                       doctest::Contains("give one of them"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::integrated_gradients(smooth, x, 0, O().tolerance(0.01).method(
                           cnnviz::IntegrationMethod::gauss_legendre)),
                       doctest::Contains("method applies to fixed steps only"), c10::ValueError);
}

TEST_CASE("occlusion equals a per-window loop") {
  auto seq = small_net();
  AnyModel model = SequentialModel(seq);
  auto x = torch::randn({2, 3, 8, 8}, torch::kDouble);
  auto o = cnnviz::OcclusionOptions().window({3, 2}).stride({2, 3}).baseline(0.5).batch_size(4);
  auto r = cnnviz::occlusion(model, x, 1, o);
  CHECK(r.scores.sizes() == torch::IntArrayRef({2, 3, 3}));
  auto clean = seq->forward(x).select(1, 1);
  auto sum = torch::zeros({2, 8, 8}, torch::kDouble), count = torch::zeros({2, 8, 8}, torch::kDouble);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      auto xo = x.clone();
      xo.slice(2, 2 * i, 2 * i + 3).slice(3, 3 * j, 3 * j + 2).fill_(0.5);
      auto drop = clean - seq->forward(xo).select(1, 1);
      CHECK(torch::allclose(r.scores.select(1, i).select(1, j), drop, 1e-9, 1e-12));
      sum.slice(1, 2 * i, 2 * i + 3).slice(2, 3 * j, 3 * j + 2) += drop.view({2, 1, 1});
      count.slice(1, 2 * i, 2 * i + 3).slice(2, 3 * j, 3 * j + 2) += 1;
    }
  CHECK(torch::allclose(r.map, sum / count.clamp_min(1), 1e-9, 1e-12));
  CHECK_THROWS_WITH_AS(cnnviz::occlusion(model, x, 0, cnnviz::OcclusionOptions().window({9})),
                       doctest::Contains("larger than the image"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::occlusion(model, x, 0, cnnviz::OcclusionOptions().stride({0})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::occlusion(model, x, 0, cnnviz::OcclusionOptions().window({1, 2, 3})), c10::ValueError);
}

TEST_CASE("SLIC follows color boundaries and yields connected segments") {
  // Four flat quadrants of different colors, 40x40.
  auto img = torch::zeros({3, 40, 40});
  img.slice(1, 0, 20).slice(2, 0, 20)[0] = 1;
  img.slice(1, 0, 20).slice(2, 20, 40)[1] = 1;
  img.slice(1, 20, 40).slice(2, 0, 20)[2] = 1;
  img.slice(1, 20, 40).slice(2, 20, 40).fill_(0.5);
  auto labels = cnnviz::slic(img, cnnviz::SlicOptions().segments(16));
  CHECK(labels.sizes() == torch::IntArrayRef({40, 40}));
  int64_t s = labels.max().item<int64_t>() + 1;
  CHECK(s >= 8);
  CHECK(s <= 32);
  auto counts = torch::bincount(labels.flatten());
  CHECK((counts > 0).all().item<bool>());  // labels are 0..S-1
  // No segment straddles two quadrants.
  auto quadrant = (torch::arange(40).ge(20).view({40, 1}).to(torch::kLong) * 2 + torch::arange(40).ge(20).view({1, 40}).to(torch::kLong));
  for (int64_t k = 0; k < s; ++k) {
    auto q = quadrant.masked_select(labels == k);
    CHECK(q.min().item<int64_t>() == q.max().item<int64_t>());
  }
  // Each label is one 4-connected component: relabelling by connectivity keeps the count.
  std::vector<int64_t> v(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel());
  CHECK(cnnviz::detail::enforce_connectivity(v, 40, 40, 1) == s);

  auto grid = cnnviz::grid_segments(32, 32, 16);
  CHECK(grid.max().item<int64_t>() == 15);
  CHECK(grid[0][31].item<int64_t>() == 3);
  CHECK_THROWS_AS(cnnviz::slic(torch::zeros({2, 8, 8})), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::slic(img, cnnviz::SlicOptions().segments(0)), c10::ValueError);
}

TEST_CASE("weighted ridge regression and LIME on a linear model") {
  auto z = torch::bernoulli(torch::full({50, 6}, 0.5, torch::kDouble));
  auto y = torch::randn({50}, torch::kDouble), w = torch::rand({50}, torch::kDouble);
  auto fit = cnnviz::detail::weighted_ridge(z, y, w, 0.7);
  // Reference: the normal equations of [Z 1] with the penalty on the coefficients only.
  auto za = torch::cat({z, torch::ones({50, 1}, torch::kDouble)}, 1);
  auto pen = torch::eye(7, torch::kDouble) * 0.7;
  pen[6][6] = 0;
  auto sol = torch::linalg_solve(za.t().mm(w.unsqueeze(1) * za) + pen, za.t().mv(w * y));
  CHECK(torch::allclose(fit.coef, sol.slice(0, 0, 6), 1e-9, 1e-12));
  CHECK(fit.intercept == doctest::Approx(sol[6].item<double>()));

  // Score linear in the segment indicators: LIME recovers each segment's contribution.
  auto wt = torch::randn({3, 8, 8}, torch::kDouble);
  AnyModel linear = cnnviz::FunctionModel([&](const torch::Tensor& x) {
    return torch::stack({(x * wt).sum({1, 2, 3}), -(x * wt).sum({1, 2, 3})}, 1);
  });
  auto x = torch::randn({1, 3, 8, 8}, torch::kDouble);
  auto r = cnnviz::lime(linear, x, 0, cnnviz::LimeOptions().segmentation(cnnviz::Segmentation::grid)
      .superpixels(cnnviz::SlicOptions().segments(4)).samples(64).ridge(1e-9).score(cnnviz::Score::logit).batch_size(10));
  auto contrib = torch::zeros({4}, torch::kDouble);
  contrib.index_add_(0, r.segments[0].flatten(), (x[0] * wt).sum(0).flatten());
  CHECK(torch::allclose(r.weights[0], contrib, 1e-6, 1e-8));
  CHECK(r.r2[0].item<double>() == doctest::Approx(1.0));
  CHECK(torch::allclose(r.map[0], contrib.index_select(0, r.segments[0].flatten()).view({8, 8})));
  CHECK_THROWS_AS(cnnviz::lime(linear, x, 0, cnnviz::LimeOptions().samples(1)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::lime(linear, x, 0, cnnviz::LimeOptions().custom_segments(torch::zeros({4, 4}, torch::kLong))),
                  c10::ValueError);
  CHECK_THROWS_AS(cnnviz::lime(linear, x, 0, cnnviz::LimeOptions().keep_probability(1.0)), c10::ValueError);
}
