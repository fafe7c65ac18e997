#include <doctest/doctest.h>
#include <torch/torch.h>

#include "cnnviz/detail/gaussian_filter.hpp"
#include "cnnviz/detail/optimizer.hpp"
#include "cnnviz/inversion.hpp"
#include "optimization_fixtures.hpp"

namespace {

cnnviz::InversionOptions plain_sgd(double lr, double momentum, int64_t iterations) {
  return cnnviz::InversionOptions().optimizer(cnnviz::Optimizer::sgd).iterations(iterations).learning_rate(lr).momentum(momentum).clamp_pixels(false);
}

}  // namespace

TEST_CASE("invert: the loss falls and an early layer reconstructs the image") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(1);
  auto x = torch::randn({1, 3, 16, 16});
  auto opts = cnnviz::InversionOptions().iterations(150).optimizer(cnnviz::Optimizer::adam).learning_rate(0.1)
                  .lambda_alpha(0).lambda_tv(0);
  auto r = cnnviz::invert(model, x, "1", opts);
  REQUIRE(r.losses.size(0) == 150);
  CHECK(r.image.sizes() == x.sizes());
  CHECK(r.layer == "1");
  CHECK(r.losses[-1].item<double>() < 0.05 * r.losses[0].item<double>());
  CHECK(r.final_loss < 0.05 * r.losses[0].item<double>());
  // Closer to x than the start noise (relative squared error well below 1).
  double rel = ((r.image - x).pow(2).sum() / x.pow(2).sum()).item<double>();
  CHECK(rel < 0.5);
  CHECK_FALSE(r.stopped_early);
}

TEST_CASE("invert: SGD steps equal torch::optim::SGD on the plain-autograd objective") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(2);
  auto x = torch::randn({1, 3, 16, 16});
  auto z0 = torch::randn({1, 3, 16, 16});
  const double la = 1e-3, lt = 1e-2, lr = 0.5;
  for (double momentum : {0.0, 0.9}) {
    CAPTURE(momentum);
    auto opts = plain_sgd(lr, momentum, 3).lambda_alpha(la).lambda_tv(lt).alpha(3).tv_beta(1.5).init_image(z0);
    auto r = cnnviz::invert(model, x, "3", opts);

    auto target = fixtures::run_upto(seq, x, 3).detach();
    auto z = z0.clone().requires_grad_(true);
    torch::optim::SGD sgd({z}, torch::optim::SGDOptions(lr).momentum(momentum));
    std::vector<double> ref_losses;
    for (int i = 0; i < 3; ++i) {
      sgd.zero_grad();
      auto loss = fixtures::reference_inversion_loss(target, fixtures::run_upto(seq, z, 3), z, la, 3, lt, 1.5);
      loss.backward();
      sgd.step();
      ref_losses.push_back(loss.item<double>());
    }
    CHECK(torch::allclose(r.image, z.detach(), 1e-4, 1e-5));
    for (int i = 0; i < 3; ++i) CHECK(r.losses[i].item<double>() == doctest::Approx(ref_losses[i]).epsilon(1e-4));
  }
  // The model's parameters got no gradients and keep requires_grad (the reference above
  // gave them gradients: clear those first).
  for (auto& p : seq->parameters()) p.mutable_grad() = torch::Tensor();
  cnnviz::invert(model, x, "3", plain_sgd(0.1, 0.9, 2));
  for (auto& p : seq->parameters()) {
    CHECK(p.requires_grad());
    CHECK_FALSE(p.grad().defined());
  }
}

TEST_CASE("invert: Adam steps equal torch::optim::Adam") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(3);
  auto x = torch::randn({1, 3, 16, 16});
  auto z0 = torch::randn({1, 3, 16, 16});
  auto opts = cnnviz::InversionOptions().iterations(4).optimizer(cnnviz::Optimizer::adam).learning_rate(0.05)
                  .lambda_alpha(0).lambda_tv(0).init_image(z0).clamp_pixels(false);
  auto r = cnnviz::invert(model, x, "6", opts);
  auto target = fixtures::run_upto(seq, x, 6).detach();
  auto z = z0.clone().requires_grad_(true);
  torch::optim::Adam adam({z}, torch::optim::AdamOptions(0.05));
  for (int i = 0; i < 4; ++i) {
    adam.zero_grad();
    fixtures::reference_inversion_loss(target, fixtures::run_upto(seq, z, 6), z, 0, 6, 0, 2).backward();
    adam.step();
  }
  CHECK(torch::allclose(r.image, z.detach(), 1e-4, 1e-5));
}

TEST_CASE("inversion_loss: value and gradient equal the plain-autograd objective") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(4);
  auto x = torch::randn({1, 3, 16, 16});
  auto z = torch::randn({1, 3, 16, 16}).requires_grad_(true);
  auto opts = cnnviz::InversionOptions().lambda_alpha(1e-4).lambda_tv(1e-3);
  auto loss = cnnviz::inversion_loss(model, x, z, "2", opts);
  auto g = torch::autograd::grad({loss}, {z})[0];
  auto ref = fixtures::reference_inversion_loss(fixtures::run_upto(seq, x, 2).detach(), fixtures::run_upto(seq, z, 2),
                                                z, 1e-4, 6, 1e-3, 2);
  auto g_ref = torch::autograd::grad({ref}, {z})[0];
  CHECK(loss.item<double>() == doctest::Approx(ref.item<double>()).epsilon(1e-5));
  CHECK(torch::allclose(g, g_ref, 1e-4, 1e-7));
}

TEST_CASE("invert: deterministic for a seed; starts, snapshots, clamping, decay") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(5);
  auto x = torch::randn({1, 3, 16, 16}).clamp(-1.5, 1.5);
  auto opts = cnnviz::InversionOptions().iterations(6).learning_rate(50).jitter(2).seed(7);
  auto a = cnnviz::invert(model, x, "3", opts);
  auto b = cnnviz::invert(model, x, "3", opts);
  CHECK(torch::equal(a.image, b.image));
  auto c = cnnviz::invert(model, x, "3", cnnviz::InversionOptions(opts).seed(8));
  CHECK_FALSE(torch::allclose(a.image, c.image));

  // Starts: one step of SGD with lr tiny stays near the start.
  auto tiny = cnnviz::InversionOptions().iterations(1).learning_rate(1e-12);
  auto zeros = cnnviz::invert(model, x, "3", cnnviz::InversionOptions(tiny).init(cnnviz::InversionInit::zeros));
  CHECK(zeros.image.abs().max().item<double>() < 1e-6);
  auto blurred = cnnviz::invert(model, x, "3", cnnviz::InversionOptions(tiny).init(cnnviz::InversionInit::blurred)
                                                   .init_blur_sigma(1));
  CHECK(torch::allclose(blurred.image, cnnviz::detail::gaussian_filter(x, 1), 1e-5, 1e-6));
  CHECK(blurred.image.std().item<double>() < x.std().item<double>());

  auto snap = cnnviz::invert(model, x, "3", cnnviz::InversionOptions(opts).snapshot_every(2));
  CHECK(snap.snapshots.size() == 3);
  CHECK(snap.snapshot_steps == std::vector<int64_t>{2, 4, 6});
  CHECK(torch::equal(snap.snapshots.back(), snap.image));
  // on_snapshot gets each snapshot as it is taken.
  std::vector<int64_t> seen_steps;
  std::vector<torch::Tensor> seen;
  auto live = cnnviz::invert(model, x, "3", cnnviz::InversionOptions(opts).snapshot_every(2).on_snapshot(
      [&](int64_t step, const at::Tensor& img) { seen_steps.push_back(step), seen.push_back(img); }));
  CHECK(seen_steps == std::vector<int64_t>{2, 4, 6});
  REQUIRE(seen.size() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(torch::equal(seen[i], live.snapshots[i]));
  // Batched layers: all L N images at once.
  seen.clear();
  cnnviz::invert_layers(model, x, {"1", "3"}, cnnviz::InversionOptions(opts).batch_layers(true).snapshot_every(3)
      .on_snapshot([&](int64_t, const at::Tensor& img) { seen.push_back(img); }));
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].size(0) == 2);

  auto clamped = cnnviz::invert(model, x, "3", cnnviz::InversionOptions(opts).clamp_pixels(true));
  auto lohi = cnnviz::detail::valid_range(cnnviz::kImageNetMean, cnnviz::kImageNetStd, 3, x.options(), "t");
  CHECK((clamped.image >= lohi.first - 1e-6).all().item<bool>());
  CHECK((clamped.image <= lohi.second + 1e-6).all().item<bool>());

  CHECK(cnnviz::detail::decayed_learning_rate(1.0, 0.1, 40, 39) == doctest::Approx(1.0));
  CHECK(cnnviz::detail::decayed_learning_rate(1.0, 0.1, 40, 80) == doctest::Approx(0.01));
  CHECK(cnnviz::detail::decayed_learning_rate(1.0, 0.1, 0, 80) == doctest::Approx(1.0));
}

TEST_CASE("invert: the progress callback sees every step and can stop") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto x = torch::randn({1, 3, 16, 16});
  std::vector<int64_t> steps;
  auto opts = cnnviz::InversionOptions().iterations(10).learning_rate(10).progress(
      [&](int64_t step, int64_t total, double loss) {
        steps.push_back(step);
        CHECK(total == 10);
        CHECK(std::isfinite(loss));
        return step < 4;
      });
  auto r = cnnviz::invert(model, x, "3", opts);
  CHECK(r.stopped_early);
  CHECK(steps == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(r.losses.size(0) == 4);
}

TEST_CASE("invert_layers: one forward for the targets; batched equals one after another") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(6);
  auto x = torch::randn({2, 3, 16, 16});
  std::vector<std::string> layers = {"1", "3", "6"};
  auto opts = cnnviz::InversionOptions().iterations(5).learning_rate(100).jitter(1);
  auto seq_results = cnnviz::invert_layers(model, x, layers, opts);
  auto batched = cnnviz::invert_layers(model, x, layers, cnnviz::InversionOptions(opts).batch_layers(true));
  REQUIRE(seq_results.size() == 3);
  REQUIRE(batched.size() == 3);
  for (size_t l = 0; l < 3; ++l) {
    CAPTURE(l);
    CHECK(seq_results[l].layer == layers[l]);
    CHECK(batched[l].image.sizes() == x.sizes());
    CHECK(torch::allclose(seq_results[l].image, batched[l].image, 1e-4, 1e-4));
    CHECK(torch::allclose(seq_results[l].losses, batched[l].losses, 1e-4, 1e-6));
    auto single = cnnviz::invert(model, x, layers[l], opts);
    CHECK(torch::allclose(single.image, seq_results[l].image));
  }
  // The callback counts over all layers; stopping leaves later layers out.
  int64_t last_total = 0;
  auto stop = cnnviz::InversionOptions(opts).progress([&](int64_t step, int64_t total, double) {
    last_total = total;
    return step < 7;
  });
  auto partial = cnnviz::invert_layers(model, x, layers, stop);
  CHECK(last_total == 15);
  CHECK(partial.size() == 2);
  CHECK(partial.back().stopped_early);
}

TEST_CASE("invert: bad input gets clear errors") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto x = torch::randn({1, 3, 16, 16});
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, x, "features.3"), doctest::Contains("unknown layer 'features.3'"),
                       c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, x, "3", cnnviz::InversionOptions().iterations(0)),
                       doctest::Contains("iterations must be positive"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, x, "3", cnnviz::InversionOptions().learning_rate(NAN)),
                       doctest::Contains("learning_rate"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, x, "3", cnnviz::InversionOptions().momentum(1.5)),
                       doctest::Contains("momentum"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, x, "3", cnnviz::InversionOptions().alpha(0)),
                       doctest::Contains("alpha"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, x, "3", cnnviz::InversionOptions().init_image(torch::zeros({1, 3, 8, 8}))),
                       doctest::Contains("init_image"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::invert(model, torch::randn({3, 16, 16}), "3"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::invert(model, torch::full({1, 3, 16, 16}, NAN), "3"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::invert_layers(model, x, {}), doctest::Contains("empty"), c10::ValueError);
  // A 1 x 1 image is too small for the pooling before layer 6.
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, torch::randn({1, 3, 1, 1}), "6"),
                       doctest::Contains("smaller than the layer needs"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, torch::randn({1, 4, 16, 16}), "1"),
                       doctest::Contains("the model failed on an input of shape [1, 4, 16, 16]"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::invert(model, x, "3",
                                      cnnviz::InversionOptions().learning_rate(1e30).clamp_pixels(false)),
                       doctest::Contains("the optimization diverged"), c10::ValueError);
  cnnviz::AnyModel fn = cnnviz::FunctionModel([](const torch::Tensor& t) { return t.flatten(1); });
  CHECK_THROWS_WITH_AS(cnnviz::invert(fn, x, "0"), doctest::Contains("unknown layer"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::inversion_loss(model, x, torch::randn({1, 3, 8, 8}), "3"),
                       doctest::Contains("z must have x's shape"), c10::ValueError);
}

TEST_CASE("invert: Adam by default, the notebook's SGD one call away; feature and prior losses apart") {
  cnnviz::InversionOptions d, nb = cnnviz::InversionOptions::notebook();
  CHECK(d.optimizer() == cnnviz::Optimizer::adam);
  CHECK(d.learning_rate() == 0.1);
  CHECK(nb.optimizer() == cnnviz::Optimizer::sgd);
  CHECK(nb.learning_rate() == 1e3);
  CHECK(nb.momentum() == 0.9);
  CHECK(nb.lambda_alpha() == d.lambda_alpha());  // the priors are the same
  torch::manual_seed(0);
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1)), torch::nn::ReLU());
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto x = torch::rand({1, 3, 8, 8});
  auto r = cnnviz::invert(model, x, "1", cnnviz::InversionOptions().iterations(5));
  auto target = seq->forward(x), current = seq->forward(r.image);
  double feature = ((current - target).pow(2).sum() / target.pow(2).sum()).item<double>();
  CHECK(r.feature_loss == doctest::Approx(feature).epsilon(1e-5));
  CHECK(r.prior_loss > 0);
  CHECK(r.feature_loss + r.prior_loss == doctest::Approx(r.final_loss));
}
