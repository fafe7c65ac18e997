#include <doctest/doctest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cnnviz/detail/optimization.hpp"
#include "cnnviz/detail/parameterization.hpp"
#include "cnnviz/detail/transforms.hpp"
#include "cnnviz/inversion.hpp"
#include "cnnviz/maximization.hpp"
#include "optimization_fixtures.hpp"

namespace {

using cnnviz::Objective;

/// Pixel parameterization, no colour mixing, no sigmoid, no transforms: the image is the
/// parameter (up to the normalization), so steps are easy to reproduce.
cnnviz::MaximizeOptions plain(int64_t iterations) {
  return cnnviz::MaximizeOptions()
      .iterations(iterations)
      .size({16, 16})
      .parameterization(cnnviz::Parameterization::pixel)
      .decorrelate(false)
      .sigmoid(false)
      .transforms(false);
}

}  // namespace

TEST_CASE("parameterization: to_rgb inverts from_rgb; Fourier scaling as Lucent's") {
  torch::manual_seed(0);
  auto rgb = torch::rand({2, 3, 12, 10}) * 0.9 + 0.05;
  for (auto kind : {cnnviz::Parameterization::pixel, cnnviz::Parameterization::fourier})
    for (bool decorrelate : {false, true})
      for (bool sigmoid : {false, true}) {
        CAPTURE(decorrelate);
        CAPTURE(sigmoid);
        cnnviz::detail::ImageParameterization p(kind, 2, 12, 10, decorrelate, sigmoid, 1.0, torch::kFloat);
        auto param = p.from_rgb(rgb);
        CHECK(param.sizes().vec() == p.shape());
        CHECK(torch::allclose(p.to_rgb(param), rgb, 1e-4, 1e-5));
      }
  // |f| per rfft2 bin: numpy's fftfreq (k / n, negative in the upper half of the rows).
  auto f = cnnviz::detail::rfft2_frequencies(4, 6);
  CHECK(f.sizes() == torch::IntArrayRef({4, 4}));
  CHECK(f[0][0].item<double>() == 0);
  CHECK(f[3][0].item<double>() == doctest::Approx(0.25));  // row 3 of 4: -1/4
  CHECK(f[1][3].item<double>() == doctest::Approx(std::sqrt(0.25 * 0.25 + 0.5 * 0.5)));
  // A single spectral bin gives the Lucent image: irfft2(ortho) of scale * value / 4.
  cnnviz::detail::ImageParameterization p(cnnviz::Parameterization::fourier, 1, 8, 8, false, false, 1.0,
                                          torch::kFloat);
  auto param = torch::zeros({1, 3, 8, 5, 2});
  param[0][0][1][2][0] = 1;
  double scale = 1.0 / std::sqrt(1.0 / 64 + 4.0 / 64);  // f = sqrt((1/8)^2 + (2/8)^2)
  auto ys = torch::arange(8).view({8, 1}).to(torch::kDouble), xs = torch::arange(8).view({1, 8}).to(torch::kDouble);
  // irfft2 ortho of one bin X at (1, 2) (and its implied conjugate) = 2 X cos(2 pi (y/8 + 2x/8)) / 8.
  auto expected = 2 * scale / 4 * torch::cos(2 * M_PI * (ys / 8 + 2 * xs / 8)) / 8 + 0.5;
  CHECK(torch::allclose(p.to_rgb(param)[0][0].to(torch::kDouble), expected, 1e-5, 1e-6));
  // The colour matrix has largest column norm 1.
  CHECK(cnnviz::detail::color_correlation_sqrt().norm(2, {0}).max().item<double>() == doctest::Approx(1.0));
}

TEST_CASE("transforms: identity, integer shifts, padding and rotation in one grid_sample") {
  torch::manual_seed(1);
  auto x = torch::randn({2, 3, 8, 8});
  using cnnviz::detail::AffineParams;
  auto same = cnnviz::detail::affine_transform(x, {AffineParams{}, AffineParams{}}, 0);
  CHECK(torch::allclose(same, x, 1e-5, 1e-5));
  // A shift moves the content down/right and fills zeros.
  AffineParams shift;
  shift.dy = 2;
  shift.dx = -1;
  auto moved = cnnviz::detail::affine_transform(x, {shift, AffineParams{}}, 0);
  auto expected = torch::zeros_like(x[0]);
  expected.narrow(1, 2, 6).narrow(2, 0, 7).copy_(x[0].narrow(1, 0, 6).narrow(2, 1, 7));
  CHECK(torch::allclose(moved[0], expected, 1e-5, 1e-5));
  CHECK(torch::allclose(moved[1], x[1], 1e-5, 1e-5));
  // Padding centres the image on a larger zero canvas.
  auto padded = cnnviz::detail::affine_transform(x, {AffineParams{}, AffineParams{}}, 3);
  CHECK(padded.sizes() == torch::IntArrayRef({2, 3, 14, 14}));
  CHECK(torch::allclose(padded.narrow(2, 3, 8).narrow(3, 3, 8), x, 1e-5, 1e-5));
  CHECK(padded.narrow(2, 0, 3).abs().max().item<double>() < 1e-6);
  // A quarter turn is rot90 (clockwise as displayed).
  AffineParams quarter;
  quarter.radians = M_PI / 2;
  auto turned = cnnviz::detail::affine_transform(x, {quarter, quarter}, 0);
  CHECK(torch::allclose(turned, torch::rot90(x, -1, {2, 3}), 1e-4, 1e-4));
  // Zoom by 2 about the centre of a linear ramp halves its slope.
  auto ramp = torch::arange(8, torch::kFloat).view({1, 1, 1, 8}).expand({1, 1, 8, 8}).contiguous();
  AffineParams zoom;
  zoom.scale = 2;
  auto zoomed = cnnviz::detail::affine_transform(ramp, {zoom}, 0);
  CHECK((zoomed[0][0][4][5] - zoomed[0][0][4][4]).item<double>() == doctest::Approx(0.5));
  // The random draws are reproducible and within range.
  std::mt19937_64 a(3), b(3);
  cnnviz::detail::TransformRanges ranges{2, 4, 0.9, 1.1, 10};
  auto pa = cnnviz::detail::draw_affine(ranges, 5, a), pb = cnnviz::detail::draw_affine(ranges, 5, b);
  for (size_t i = 0; i < 5; ++i) {
    CHECK(pa[i].dx == pb[i].dx);
    CHECK(std::abs(pa[i].dy) <= 4);
    CHECK(pa[i].scale >= 0.9);
    CHECK(pa[i].scale <= 1.1);
    CHECK(std::abs(pa[i].radians) <= 10 * M_PI / 180 + 1e-12);
  }
  CHECK(cnnviz::detail::random_transform(x, cnnviz::detail::TransformRanges{}, a).is_same(x));
}

TEST_CASE("maximize: channel, neuron, logit and direction objectives rise far above the start") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto opts = cnnviz::MaximizeOptions().iterations(40).size({24, 24}).learning_rate(0.1).pad(2).jitter(2);
  std::vector<Objective> objectives = {Objective::channels("6", {0, 3, 5}), Objective::neuron("5", 2),
                                       Objective::logits({1, 4}), Objective::direction("6", torch::randn({12}))};
  for (auto& obj : objectives) {
    CAPTURE(static_cast<int>(obj.kind));
    auto r = cnnviz::maximize(model, obj, opts);
    CHECK(r.image.sizes() == torch::IntArrayRef({obj.batch_size(), 3, 24, 24}));
    CHECK(r.objective.sizes() == torch::IntArrayRef({obj.batch_size()}));
    CHECK(r.losses.size(0) == 40);
    // Far above the start, and above the best of 16 noise images.
    auto noise = (torch::rand({16, 3, 24, 24}) - 0.45) / 0.225;
    Objective on16 = obj;
    if (obj.kind != Objective::Kind::direction) on16.indices = std::vector<int64_t>(16, obj.indices[0]);
    auto best_noise = cnnviz::detail::objective_values(model, noise, on16, "test").max();
    auto margin = torch::clamp_min(5 * r.initial_objective.abs(), 0.1);
    CHECK((r.objective > r.initial_objective + margin).all().item<bool>());
    CHECK((r.objective > best_noise).all().item<bool>());
    CHECK(r.losses[-1].item<double>() < r.losses[0].item<double>());
    // The reported objective is that of the returned image, recomputed here.
    auto again = cnnviz::detail::objective_values(model, r.image, obj, "test");
    CHECK(torch::allclose(again, r.objective, 1e-4, 1e-5));
  }
  // Channel objective by hand: mean of channel 3 of layer 6 for image 1.
  auto r = cnnviz::maximize(model, objectives[0], cnnviz::MaximizeOptions(opts).iterations(2));
  auto act = fixtures::run_upto(seq, r.image, 6);
  CHECK(act[1][3].mean().item<double>() == doctest::Approx(r.objective[1].item<double>()).epsilon(1e-4));
}

TEST_CASE("maximize: one SGD step on pixels equals plain autograd; deterministic for a seed") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(2);
  auto x0 = torch::randn({1, 3, 16, 16}) * 0.5;
  const double lr = 0.3;
  auto r = cnnviz::maximize(model, Objective::channel("3", 4),
                            plain(1).optimizer(cnnviz::Optimizer::sgd).momentum(0).learning_rate(lr).init_image(x0)
                                .lambda_tv(0.01).lambda_alpha(0.001).alpha(2));
  // image = (p + 0.5 - mean) / std, so the step in image space is lr * g / std^2.
  auto x = x0.clone().requires_grad_(true);
  auto c = x.narrow(2, 0, 15).narrow(3, 0, 15);
  auto tv = ((x.narrow(2, 0, 15).narrow(3, 1, 15) - c).pow(2) + (x.narrow(2, 1, 15).narrow(3, 0, 15) - c).pow(2)).sum();
  auto objective = fixtures::run_upto(seq, x, 3)[0][4].mean() - 0.01 * tv - 0.001 * x.pow(2).sum();
  auto g = torch::autograd::grad({objective}, {x})[0];
  auto std = torch::tensor(cnnviz::kImageNetStd).view({1, 3, 1, 1});
  CHECK(torch::allclose(r.image, x0 + lr * g / std.pow(2), 1e-4, 1e-5));
  CHECK(r.initial_objective[0].item<double>() ==
        doctest::Approx(fixtures::run_upto(seq, x0, 3)[0][4].mean().item<double>()).epsilon(1e-4));

  auto opts = cnnviz::MaximizeOptions().iterations(5).size({16, 16}).seed(3);
  auto a = cnnviz::maximize(model, Objective::channel("3", 1), opts);
  auto b = cnnviz::maximize(model, Objective::channel("3", 1), opts);
  auto d = cnnviz::maximize(model, Objective::channel("3", 1), cnnviz::MaximizeOptions(opts).seed(4));
  CHECK(torch::equal(a.image, b.image));
  CHECK_FALSE(torch::allclose(a.image, d.image));
  // Snapshots, and the progress callback stops the loop.
  auto snap = cnnviz::maximize(model, Objective::channel("3", 1), cnnviz::MaximizeOptions(opts).snapshot_every(2));
  CHECK(snap.snapshot_steps == std::vector<int64_t>{2, 4});
  std::vector<int64_t> seen_steps;
  std::vector<torch::Tensor> seen;
  cnnviz::maximize(model, Objective::channel("3", 1), cnnviz::MaximizeOptions(opts).snapshot_every(2).on_snapshot(
      [&](int64_t step, const at::Tensor& img) { seen_steps.push_back(step), seen.push_back(img); }));
  CHECK(seen_steps == snap.snapshot_steps);
  REQUIRE(seen.size() == 2);
  CHECK(torch::equal(seen[1], snap.snapshots[1]));
  auto stopped = cnnviz::maximize(model, Objective::channel("3", 1), cnnviz::MaximizeOptions(opts).progress(
      [](int64_t step, int64_t, double) { return step < 2; }));
  CHECK(stopped.stopped_early);
  CHECK(stopped.losses.size(0) == 2);
  // Priors: a strong blur prior leaves a smoother image than none.
  auto rough = cnnviz::maximize(model, Objective::channel("1", 0), plain(30).learning_rate(0.05));
  auto smooth = cnnviz::maximize(model, Objective::channel("1", 0), plain(30).learning_rate(0.05).lambda_blur(5));
  CHECK(cnnviz::total_variation(smooth.image, 2).item<double>() <
        cnnviz::total_variation(rough.image, 2).item<double>());
}

TEST_CASE("top_filters: the channels with the largest mean (or max) activation, per image") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(4);
  auto x = torch::randn({2, 3, 16, 16});
  auto top = cnnviz::top_filters(model, x, "5", 4);
  auto act = fixtures::run_upto(seq, x, 5).detach();
  auto ref = act.mean({2, 3}).topk(4, 1);
  REQUIRE(top.channels.sizes() == torch::IntArrayRef({2, 4}));
  CHECK(torch::equal(top.channels, std::get<1>(ref)));
  CHECK(torch::allclose(top.scores, std::get<0>(ref).to(torch::kDouble), 1e-5, 1e-6));
  auto top_max = cnnviz::top_filters(model, x, "5", 12, cnnviz::Reduction::max);
  CHECK(torch::allclose(top_max.scores.select(1, 0), act.amax({2, 3}).amax(1).to(torch::kDouble), 1e-5, 1e-6));
  CHECK_THROWS_WITH_AS(cnnviz::top_filters(model, x, "5", 13), doctest::Contains("exceeds the 12 channels"),
                       c10::ValueError);
  CHECK_THROWS_AS(cnnviz::top_filters(model, x, "5", 0), c10::ValueError);
  CHECK(top.stopped_early == false);
  CHECK(top.interrupted == false);
  // A ranking needs one score per channel: Reduction::none is refused, by name.
  CHECK_THROWS_WITH_AS(cnnviz::top_filters(model, x, "5", 2, cnnviz::Reduction::none),
                       doctest::Contains("reduction must be mean or max"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::top_filters(model, x, "nope", 2), c10::ValueError);
}

TEST_CASE("maximize: bad input gets clear errors") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto opts = cnnviz::MaximizeOptions().iterations(2).size({16, 16});
  CHECK_THROWS_WITH_AS(cnnviz::maximize(model, Objective::channel("3", 8), opts),
                       doctest::Contains("channel 8 is out of range for layer '3' with 8 channels"), c10::IndexError);
  CHECK_THROWS_AS(cnnviz::maximize(model, Objective::channel("3", -1), opts), c10::IndexError);
  CHECK_THROWS_WITH_AS(cnnviz::maximize(model, Objective::logit(5), opts), doctest::Contains("class 5"),
                       c10::IndexError);
  CHECK_THROWS_AS(cnnviz::maximize(model, Objective::neuron("3", 0, 20, 0), opts), c10::IndexError);
  CHECK_THROWS_WITH_AS(cnnviz::maximize(model, Objective::channel("x.3", 0), opts), doctest::Contains("unknown layer"),
                       c10::ValueError);
  CHECK_THROWS_AS(cnnviz::maximize(model, Objective::channels("3", {}), opts), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::maximize(model, Objective::direction("3", torch::randn({5})), opts),
                       doctest::Contains("the direction has 5 entries"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::maximize(model, Objective::direction("3", torch::zeros({8})), opts), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::maximize(model, Objective::channel("3", 0), cnnviz::MaximizeOptions(opts).iterations(0)),
                  c10::ValueError);
  CHECK_THROWS_AS(
      cnnviz::maximize(model, Objective::channel("3", 0), cnnviz::MaximizeOptions(opts).learning_rate(INFINITY)),
      c10::ValueError);
  CHECK_THROWS_AS(cnnviz::maximize(model, Objective::channel("3", 0), cnnviz::MaximizeOptions(opts).size({0, 4})),
                  c10::ValueError);
  CHECK_THROWS_AS(cnnviz::maximize(model, Objective::channel("3", 0), cnnviz::MaximizeOptions(opts).scale_min(2)),
                  c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::maximize(model, Objective::channel("3", 0),
                                        cnnviz::MaximizeOptions(opts).init_image(torch::zeros({1, 3, 8, 8}))),
                       doctest::Contains("init_image"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::maximize(model, Objective::channel("6", 0), cnnviz::MaximizeOptions(opts).size({1, 1})
                                                                                .transforms(false)),
                       doctest::Contains("smaller than the layer needs"), c10::ValueError);
}

TEST_CASE("deep_dream: raises the layer's activation energy and keeps the image valid") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(5);
  auto x = (torch::rand({1, 3, 32, 32}) - 0.45) / 0.225;
  auto opts = cnnviz::DeepDreamOptions().iterations(5).octaves(3).octave_scale(1.3).jitter(4).learning_rate(0.05);
  auto r = cnnviz::deep_dream(model, x, "3", opts);
  CHECK(r.image.sizes() == x.sizes());
  CHECK(r.losses.size(0) == 15);
  auto energy = [&](const torch::Tensor& t) { return fixtures::run_upto(seq, t, 3).pow(2).mean().item<double>(); };
  CHECK(energy(r.image) > 1.5 * energy(x));
  auto lohi = cnnviz::detail::valid_range(cnnviz::kImageNetMean, cnnviz::kImageNetStd, 3, x.options(), "t");
  CHECK((r.image >= lohi.first - 1e-5).all().item<bool>());
  CHECK((r.image <= lohi.second + 1e-5).all().item<bool>());
  // Deterministic; several layers; stopping in an early octave still returns a full-size image.
  CHECK(torch::equal(r.image, cnnviz::deep_dream(model, x, "3", opts).image));
  auto multi = cnnviz::deep_dream(model, x, std::vector<std::string>{"1", "6"}, opts);
  CHECK(multi.image.sizes() == x.sizes());
  auto stopped = cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions(opts).progress(
      [](int64_t step, int64_t total, double) { return step < 3 && total == 15; }));
  CHECK(stopped.stopped_early);
  CHECK(stopped.image.sizes() == x.sizes());
  CHECK(stopped.losses.size(0) == 3);
  // on_snapshot: every 5 steps over the octaves, at each octave's size; the last is the result.
  std::vector<int64_t> seen_steps;
  std::vector<torch::Tensor> seen;
  cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions(opts).snapshot_every(5).on_snapshot(
      [&](int64_t step, const at::Tensor& img) { seen_steps.push_back(step), seen.push_back(img); }));
  CHECK(seen_steps == std::vector<int64_t>{5, 10, 15});
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].size(2) < seen[2].size(2));
  CHECK(torch::equal(seen[2], r.image));
  // The result keeps the same snapshots.
  auto kept = cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions(opts).snapshot_every(5));
  CHECK(kept.snapshot_steps == std::vector<int64_t>{5, 10, 15});
  REQUIRE(kept.snapshots.size() == 3);
  CHECK(torch::equal(kept.snapshots[0], seen[0]));
  CHECK(torch::equal(kept.snapshots[2], r.image));
  CHECK(r.snapshots.empty());
  CHECK_THROWS_AS(cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions().snapshot_every(-1)), c10::ValueError);
  // One step, one octave, no jitter: x + lr * g / mean|g| by plain autograd.
  auto one = cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions().iterations(1).octaves(1).jitter(0)
                                                   .clamp_pixels(false).learning_rate(0.1));
  auto xg = x.clone().requires_grad_(true);
  auto g = torch::autograd::grad({fixtures::run_upto(seq, xg, 3).pow(2).mean()}, {xg})[0];
  CHECK(torch::allclose(one.image, x + 0.1 * g / g.abs().mean(), 1e-3, 1e-4));
}

TEST_CASE("deep_dream: bad input gets clear errors") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto x = torch::randn({1, 3, 16, 16});
  CHECK_THROWS_AS(cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions().octaves(0)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions().octave_scale(0.5)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions().iterations(-1)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions().learning_rate(NAN)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deep_dream(model, x, std::vector<std::string>{}), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deep_dream(model, x, "6", cnnviz::DeepDreamOptions().octaves(10).octave_scale(1.5)),
                       doctest::Contains("to nothing"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deep_dream(model, x, "3x"), doctest::Contains("unknown layer"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deep_dream(model, torch::randn({1, 16, 16}), "3"), c10::ValueError);
  // Seven octaves of 1.5 shrink a 16 x 16 image to 1 x 1, too small for the pooling.
  CHECK_THROWS_WITH_AS(cnnviz::deep_dream(model, x, "6", cnnviz::DeepDreamOptions().octaves(7).octave_scale(1.5)),
                       doctest::Contains("smaller than the layer needs"), c10::ValueError);
}

namespace {

/// The option names of an Options struct, in declaration order.
template <class O>
std::vector<std::string> option_names() {
  std::vector<std::string> names;
  O::for_each_option([&](const char* name, const char*, auto, auto) { names.emplace_back(name); });
  return names;
}

}  // namespace

TEST_CASE("loop options: invert, maximize and deep_dream share one declaration of the loop rows") {
  // The shared rows come first, in the same order, in every loop's Options.
  const std::vector<std::string> loop = {"iterations",     "learning_rate", "seed",     "jitter",
                                         "normalization",  "snapshot_every", "on_snapshot", "progress"};
  auto inv = option_names<cnnviz::InversionOptions>(), mx = option_names<cnnviz::MaximizeOptions>(),
       dream = option_names<cnnviz::DeepDreamOptions>();
  for (auto* names : {&inv, &mx, &dream}) {
    REQUIRE(names->size() > loop.size());
    CHECK(std::vector<std::string>(names->begin(), names->begin() + static_cast<std::ptrdiff_t>(loop.size())) == loop);
  }
  // The optimizer rows and the priors (invert and maximize only; deep_dream steps by DeepDream's rule).
  for (auto* names : {&inv, &mx}) {
    auto at = [&](const char* n) { return std::find(names->begin(), names->end(), n) != names->end(); };
    CHECK((at("optimizer") && at("momentum") && at("alpha") && at("lambda_alpha") && at("tv_beta") && at("lambda_tv")));
  }
  CHECK(std::find(dream.begin(), dream.end(), "optimizer") == dream.end());
  // Each loop's own defaults for the shared rows.
  cnnviz::InversionOptions io;
  cnnviz::MaximizeOptions mo;
  cnnviz::DeepDreamOptions dd;
  CHECK(io.iterations() == 200);
  CHECK(mo.iterations() == 256);
  CHECK(dd.iterations() == 10);
  CHECK(io.learning_rate() == 0.1);
  CHECK(mo.learning_rate() == 0.05);
  CHECK(dd.learning_rate() == 0.02);
  CHECK(io.jitter() == 0);
  CHECK(mo.jitter() == 8);
  CHECK(dd.jitter() == 32);
  CHECK(io.lambda_alpha() == 1e-7);
  CHECK(mo.lambda_alpha() == 0);
  CHECK((io.optimizer() == cnnviz::Optimizer::adam && mo.optimizer() == cnnviz::Optimizer::adam));
  for (const auto& n : {io.normalization(), mo.normalization(), dd.normalization()}) {
    CHECK(n.mean() == cnnviz::kImageNetMean);
    CHECK(n.std() == cnnviz::kImageNetStd);
  }
  // Chained setters keep working on the shared rows and the notebook's settings are one call away.
  auto nb = cnnviz::InversionOptions::notebook().iterations(3).normalization(cnnviz::Normalization::identity());
  CHECK(nb.optimizer() == cnnviz::Optimizer::sgd);
  CHECK(nb.learning_rate() == 1e3);
  CHECK(nb.iterations() == 3);
  CHECK(nb.normalization().mean() == std::vector<double>{0.0});
}

TEST_CASE("loop options: the normalization row drives clamping and the maximize images; bad ones are refused") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(6);
  auto x = torch::rand({1, 3, 16, 16});
  // Identity normalization: deep_dream keeps pixels in [0, 1].
  auto id = cnnviz::Normalization::identity();
  auto dream = cnnviz::deep_dream(model, x, "3",
                                  cnnviz::DeepDreamOptions().iterations(4).octaves(1).learning_rate(0.5).normalization(id));
  CHECK(dream.image.min().item<double>() >= -1e-6);
  CHECK(dream.image.max().item<double>() <= 1 + 1e-6);
  CHECK(dream.image.max().item<double>() > 0.99);  // the step is large enough to reach the bound
  // maximize: images made in [0, 1] (sigmoid) and normalized with the row: identity gives [0, 1].
  auto mx = cnnviz::maximize(model, Objective::channel("3", 1),
                             cnnviz::MaximizeOptions().iterations(2).size({16, 16}).normalization(id));
  CHECK(mx.image.min().item<double>() >= 0);
  CHECK(mx.image.max().item<double>() <= 1);
  // invert: the clamp follows the row.
  auto inv = cnnviz::invert(model, x, "1",
                            cnnviz::InversionOptions().iterations(3).learning_rate(1.0).normalization(id));
  CHECK(inv.image.min().item<double>() >= 0);
  CHECK(inv.image.max().item<double>() <= 1);
  // A bad normalization is refused by every loop, naming the loop.
  auto bad = cnnviz::Normalization({0.5, 0.5, 0.5}, {0.2, 0.0, 0.2});
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, x, "1", cnnviz::InversionOptions().normalization(bad)),
                       doctest::Contains("invert: std must be positive"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::maximize(model, Objective::channel("3", 1), cnnviz::MaximizeOptions().normalization(bad)),
                       doctest::Contains("maximize: std must be positive"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions().normalization(bad)),
                       doctest::Contains("deep_dream: std must be positive"), c10::ValueError);
  CHECK_THROWS_WITH_AS(
      cnnviz::invert(model, x, "1", cnnviz::InversionOptions().normalization(cnnviz::Normalization({}, {1.0}))),
      doctest::Contains("need at least one value"), c10::ValueError);
  CHECK_THROWS_WITH_AS(
      cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions().normalization({{0.1, 0.2}, {1.0, 1.0, 1.0}})),
      doctest::Contains("mean and std need 1 or 3 values"), c10::ValueError);
  // Shared rows are checked the same way by every loop.
  CHECK_THROWS_WITH_AS(cnnviz::maximize(model, Objective::channel("3", 1), cnnviz::MaximizeOptions().seed(-1)),
                       doctest::Contains("maximize: seed must be >= 0"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deep_dream(model, x, "3", cnnviz::DeepDreamOptions().jitter(-2)),
                       doctest::Contains("deep_dream: jitter must be >= 0"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, x, "1", cnnviz::InversionOptions().snapshot_every(-1)),
                       doctest::Contains("invert: snapshot_every must be >= 0"), c10::ValueError);
}
