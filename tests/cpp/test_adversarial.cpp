#include <doctest/doctest.h>
#include <torch/torch.h>

#include "cnnviz/adversarial.hpp"

namespace {

/// A linear classifier over (N, 3, 4, 4) inputs with 3 classes, in double.
struct Linear {
  torch::Tensor w = torch::randn({3, 48}, torch::kDouble);
  cnnviz::AnyModel model() {
    auto weight = w;
    return cnnviz::FunctionModel([weight](const torch::Tensor& x) { return x.flatten(1).matmul(weight.t()); });
  }
};

torch::Tensor pixels_to_input(const torch::Tensor& p, const cnnviz::Normalization& n) {
  auto [mean, std] = cnnviz::detail::normalization_stats(n, p, "test");
  return (p - mean) / std;
}

}  // namespace

TEST_CASE("FGSM takes one signed step in pixel space") {
  torch::manual_seed(0);
  Linear lin;
  auto model = lin.model();
  cnnviz::Normalization norm;
  auto pixels = torch::rand({4, 3, 4, 4}, torch::kDouble) * 0.8 + 0.1;  // away from 0 and 1
  auto x = pixels_to_input(pixels, norm);
  const double eps = 2.0 / 255;
  auto r = cnnviz::fgsm(model, x, {}, cnnviz::FgsmOptions().eps(eps));
  // Reference: gradient of the cross-entropy for the predicted class, by autograd, in pixels.
  auto p = pixels.clone().requires_grad_(true);
  auto logits = pixels_to_input(p, norm).flatten(1).matmul(lin.w.t());
  auto pred = logits.argmax(1);
  auto loss = torch::nn::functional::cross_entropy(logits, pred, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  auto g = torch::autograd::grad({loss}, {p})[0];
  CHECK(torch::allclose(r.perturbation, eps * g.sign(), 1e-9, 1e-12));
  CHECK(r.steps == 1);
  CHECK(torch::allclose(r.adversarial, pixels_to_input(pixels + eps * g.sign(), norm), 1e-9, 1e-12));
  CHECK(torch::equal(r.prediction_before, pred));
  CHECK(torch::equal(r.target, pred));
  CHECK(torch::equal(r.success, r.prediction_after.ne(pred)));
  // The loss grows.
  auto after = torch::nn::functional::cross_entropy(r.logits_after, pred);
  auto before = torch::nn::functional::cross_entropy(r.logits_before, pred);
  CHECK(after.item<double>() > before.item<double>());
  // Pixels stay in [0, 1].
  auto big = cnnviz::fgsm(model, x, {}, cnnviz::FgsmOptions().eps(0.5));
  auto adv_pixels = big.adversarial * cnnviz::detail::normalization_stats(norm, x, "test").second +
                    cnnviz::detail::normalization_stats(norm, x, "test").first;
  CHECK(adv_pixels.min().item<double>() >= -1e-9);
  CHECK(adv_pixels.max().item<double>() <= 1 + 1e-9);

  CHECK_THROWS_WITH_AS(cnnviz::fgsm(model, x, {}, cnnviz::FgsmOptions().eps(-1)), doctest::Contains("eps"),
                       c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::fgsm(model, x, {}, cnnviz::FgsmOptions().targeted(true)),
                       doctest::Contains("targeted attack needs a target"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::fgsm(model, x, 3), c10::IndexError);
  CHECK_THROWS_AS(cnnviz::fgsm(model, x, {}, cnnviz::FgsmOptions().normalization(cnnviz::Normalization().std({0, 1, 1}))),
                  c10::ValueError);
}

TEST_CASE("PGD stays in the eps-ball and in [0, 1], and reaches a target") {
  torch::manual_seed(1);
  Linear lin;
  auto model = lin.model();
  cnnviz::Normalization norm;
  auto pixels = torch::rand({4, 3, 4, 4}, torch::kDouble);
  auto x = pixels_to_input(pixels, norm);
  auto [mean, std] = cnnviz::detail::normalization_stats(norm, x, "test");
  const double eps = 4.0 / 255;
  int64_t steps_seen = 0;
  auto r = cnnviz::pgd(model, x, {}, cnnviz::PgdOptions().eps(eps).step(1.0 / 255).steps(8).progress(
                                         [&](int64_t, int64_t, double) { return ++steps_seen > 0; }));
  CHECK(steps_seen == 8);
  CHECK(r.steps == 8);
  CHECK_FALSE(r.stopped_early);
  CHECK_FALSE(r.interrupted);
  CHECK(r.perturbation.abs().max().item<double>() <= eps + 1e-9);
  auto adv_pixels = r.adversarial * std + mean;
  CHECK(adv_pixels.min().item<double>() >= -1e-9);
  CHECK(adv_pixels.max().item<double>() <= 1 + 1e-9);
  CHECK(torch::allclose(adv_pixels - pixels, r.perturbation, 1e-9, 1e-12));
  // Targeted, large budget: the linear model reaches the target.
  auto t = (r.prediction_before + 1).remainder(3);
  auto tr = cnnviz::pgd(model, x, cnnviz::Target(t), cnnviz::PgdOptions().eps(1).step(0.1).steps(30).targeted(true));
  CHECK(torch::equal(tr.prediction_after, t));
  CHECK(tr.success.all().item<bool>());
  // Stopping early returns the current iterate.
  auto stopped = cnnviz::pgd(model, x, {}, cnnviz::PgdOptions().steps(5).progress([](int64_t i, int64_t, double) { return i < 2; }));
  CHECK(stopped.stopped_early);
  CHECK(stopped.steps == 2);
  // The iterate after two steps: the same run stopped by its step count agrees.
  torch::manual_seed(5);
  auto two = cnnviz::pgd(model, x, {}, cnnviz::PgdOptions().steps(2).random_start(false));
  torch::manual_seed(5);
  auto stopped2 = cnnviz::pgd(model, x, {}, cnnviz::PgdOptions().steps(5).random_start(false).progress(
                                                [](int64_t i, int64_t, double) { return i < 2; }));
  CHECK(torch::allclose(two.adversarial, stopped2.adversarial));
  CHECK_FALSE(two.stopped_early);
  CHECK_THROWS_AS(cnnviz::pgd(model, x, {}, cnnviz::PgdOptions().steps(0)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::pgd(model, x, {}, cnnviz::PgdOptions().step(-1)), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::pgd(model, x, {}, cnnviz::PgdOptions().eps(NAN)), c10::ValueError);
}

TEST_CASE("layer_divergence is the relative L2 change per layer") {
  torch::manual_seed(2);
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::Flatten(), torch::nn::Linear(4 * 16, 3));
  seq->to(torch::kDouble);
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto clean = torch::randn({2, 3, 4, 4}, torch::kDouble), adv = clean + 0.1 * torch::randn({2, 3, 4, 4}, torch::kDouble);
  auto d = cnnviz::layer_divergence(model, clean, adv, {"0", "3"});
  REQUIRE(d.size() == 2);
  auto conv = seq[0]->as<torch::nn::Conv2d>();
  auto a = conv->forward(clean).flatten(1), b = conv->forward(adv).flatten(1);
  CHECK(torch::allclose(d[0].second, (b - a).norm(2, 1) / a.norm(2, 1)));
  // One name, a vector and a brace list name the same layers.
  auto one = cnnviz::layer_divergence(model, clean, adv, "0");
  REQUIRE(one.size() == 1);
  CHECK(torch::equal(one[0].second, d[0].second));
  auto vec = cnnviz::layer_divergence(model, clean, adv, std::vector<std::string>{"0", "3"});
  REQUIRE(vec.size() == 2);
  CHECK(vec[1].first == "3");
  CHECK(torch::equal(vec[1].second, d[1].second));
  CHECK(cnnviz::layer_divergence(model, clean, clean, {"1"})[0].second.abs().max().item<double>() == 0);
  CHECK_THROWS_AS(cnnviz::layer_divergence(model, clean, adv.slice(0, 0, 1), {"0"}), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::layer_divergence(model, clean, adv, {}), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::layer_divergence(model, clean, adv, {"nope"}), c10::ValueError);
}
