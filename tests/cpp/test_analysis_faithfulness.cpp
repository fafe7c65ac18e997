// analysis/faithfulness.hpp, analysis/layer_information.hpp, analysis/adversarial_report.hpp
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <vector>

#include "cnnviz/analysis/adversarial_report.hpp"
#include "cnnviz/analysis/faithfulness.hpp"
#include "cnnviz/analysis/layer_information.hpp"
#include "cnnviz/detail/gaussian_filter.hpp"
#include "cnnviz/script_model.hpp"
#include "optimization_fixtures.hpp"
#include "paths.hpp"

namespace {

/// Pearson correlation of two vectors (the reference for Spearman on ranks).
double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  double ma = std::accumulate(a.begin(), a.end(), 0.0) / n, mb = std::accumulate(b.begin(), b.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

/// Textbook average ranks by counting: rank = #smaller + (#equal - 1) / 2.
std::vector<double> naive_ranks(const std::vector<double>& v) {
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    double smaller = 0, equal = 0;
    for (double u : v) {
      smaller += u < v[i];
      equal += u == v[i];
    }
    r[i] = smaller + (equal - 1) / 2;
  }
  return r;
}

std::string data_dir() {
  const char* env = std::getenv("CNNVIZ_DATA");
  std::string dir = env ? env : cnnviz_test::source_dir() + "/../shared/data";
  return std::ifstream(dir + "/README.md").good() ? dir : std::string();
}

std::vector<double> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

TEST_CASE("rank_correlation is Spearman's rho with average ranks for ties") {
  torch::manual_seed(1);
  auto a = torch::randint(0, 5, {3, 40}, torch::kDouble);  // many ties
  auto b = a + torch::randn({3, 40}, torch::kDouble);
  auto rho = cnnviz::rank_correlation(a, b);
  REQUIRE(rho.sizes() == torch::IntArrayRef({3}));
  for (int64_t i = 0; i < 3; ++i)
    CHECK(rho[i].item<double>() == doctest::Approx(pearson(naive_ranks(to_vector(a[i])), naive_ranks(to_vector(b[i]))))
                                       .epsilon(1e-12));
  // Invariant to monotone transforms; -1 for reversed order.
  auto x = torch::randn({2, 5, 5}, torch::kDouble);
  CHECK(torch::allclose(cnnviz::rank_correlation(x, x.exp() * 3), torch::ones({2}, torch::kDouble)));
  CHECK(torch::allclose(cnnviz::rank_correlation(x, -x), -torch::ones({2}, torch::kDouble)));
  CHECK_THROWS_WITH_AS(cnnviz::rank_correlation(x, x.flatten(1)), doctest::Contains("differ in shape"),
                       c10::ValueError);
  CHECK_THROWS_AS(cnnviz::rank_correlation(torch::randn({3, 1}), torch::randn({3, 1})), c10::ValueError);
}

TEST_CASE("deletion_insertion equals a per-step loop, and its areas the trapezoid rule") {
  auto seq = fixtures::small_cnn();
  seq->to(torch::kDouble);
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(2);
  auto x = torch::randn({2, 3, 16, 16}, torch::kDouble);
  auto map = torch::rand({2, 16, 16}, torch::kDouble);  // no ties
  const int64_t steps = 7, p = 256;
  auto o = cnnviz::DeletionInsertionOptions().steps(steps).batch_size(5).deletion_baseline(cnnviz::BaselineKind::zeros)
               .insertion_baseline(cnnviz::BaselineKind::blur).blur_sigma(2.0);
  auto r = cnnviz::deletion_insertion(model, x, map, {}, o);
  REQUIRE(r.deletion.sizes() == torch::IntArrayRef({2, steps + 1}));
  REQUIRE(r.insertion.sizes() == torch::IntArrayRef({2, steps + 1}));
  CHECK_FALSE(r.stopped_early);

  // Reference: one image per step, pixels sorted by a plain argsort.
  torch::NoGradGuard no_grad;
  auto blurred = cnnviz::detail::gaussian_filter(x, 2.0);
  for (int64_t i = 0; i < 2; ++i) {
    int64_t target = seq->forward(x.slice(0, i, i + 1)).argmax(1).item<int64_t>();
    CHECK(r.target[i].item<int64_t>() == target);
    auto order = map[i].flatten().argsort(0, /*descending=*/true);
    std::vector<double> del, ins, fr;
    for (int64_t k = 0; k <= steps; ++k) {
      const int64_t m = static_cast<int64_t>(std::llround(static_cast<double>(k) * p / steps));
      auto mask = torch::zeros({p}, torch::kBool);
      mask.index_fill_(0, order.slice(0, 0, m), true);
      mask = mask.view({1, 1, 16, 16});
      auto deleted = torch::where(mask, torch::zeros({1}, torch::kDouble), x.slice(0, i, i + 1));
      auto inserted = torch::where(mask, x.slice(0, i, i + 1), blurred.slice(0, i, i + 1));
      del.push_back(seq->forward(deleted).softmax(1)[0][target].item<double>());
      ins.push_back(seq->forward(inserted).softmax(1)[0][target].item<double>());
      fr.push_back(static_cast<double>(m) / p);
    }
    for (int64_t k = 0; k <= steps; ++k) {
      CHECK(r.deletion[i][k].item<double>() == doctest::Approx(del[k]).epsilon(1e-9));
      CHECK(r.insertion[i][k].item<double>() == doctest::Approx(ins[k]).epsilon(1e-9));
      CHECK(r.fractions[k].item<double>() == doctest::Approx(fr[k]));
    }
    double auc_del = 0, auc_ins = 0;
    for (int64_t k = 0; k < steps; ++k) {
      auc_del += (fr[k + 1] - fr[k]) * (del[k] + del[k + 1]) / 2;
      auc_ins += (fr[k + 1] - fr[k]) * (ins[k] + ins[k + 1]) / 2;
    }
    CHECK(r.deletion_auc[i].item<double>() == doctest::Approx(auc_del).epsilon(1e-9));
    CHECK(r.insertion_auc[i].item<double>() == doctest::Approx(auc_ins).epsilon(1e-9));
  }
  // Step 0 of deletion and the last step of insertion are x itself.
  auto probs = seq->forward(x).softmax(1).gather(1, r.target.view({-1, 1})).squeeze(1);
  CHECK(torch::allclose(r.deletion.select(1, 0), probs));
  CHECK(torch::allclose(r.insertion.select(1, steps), probs));

  // A coarse map (a CAM) is upsampled bilinearly; the same as passing it upsampled.
  auto coarse = torch::rand({2, 4, 4}, torch::kDouble);
  auto up = torch::nn::functional::interpolate(
                coarse.unsqueeze(1), torch::nn::functional::InterpolateFuncOptions()
                                         .size(std::vector<int64_t>{16, 16}).mode(torch::kBilinear).align_corners(false))
                .squeeze(1).to(torch::kFloat);
  auto rc = cnnviz::deletion_insertion(model, x, coarse, {}, o);
  auto ru = cnnviz::deletion_insertion(model, x, up, {}, o);
  CHECK(torch::allclose(rc.deletion, ru.deletion));
  CHECK(torch::allclose(rc.insertion_auc, ru.insertion_auc));
  // Batch size does not change the result; a logit score is the logit.
  auto rb = cnnviz::deletion_insertion(model, x, map, {}, cnnviz::DeletionInsertionOptions(o).batch_size(64));
  CHECK(torch::allclose(rb.deletion, r.deletion));
  auto rl = cnnviz::deletion_insertion(model, x, map, {}, cnnviz::DeletionInsertionOptions(o).score(cnnviz::Score::logit));
  CHECK(torch::allclose(rl.deletion.select(1, 0), seq->forward(x).gather(1, r.target.view({-1, 1})).squeeze(1)));
  // Stopping after the first batch leaves NaN behind.
  auto rs = cnnviz::deletion_insertion(model, x, map, {},
                                       cnnviz::DeletionInsertionOptions(o).progress([](int64_t, int64_t, double) { return false; }));
  CHECK(rs.stopped_early);
  CHECK(torch::isnan(rs.insertion).any().item<bool>());
}

TEST_CASE("deletion_insertion's batch size: from the image size unless given") {
  using cnnviz::deletion_insertion_batch_size;
  // Unset: on a CPU, one batch's input stays under 2^19 values, 1 to 32 images.
  CHECK(deletion_insertion_batch_size(torch::zeros({2, 3, 224, 224})) == 3);
  CHECK(deletion_insertion_batch_size(torch::zeros({1, 3, 32, 32})) == 32);
  CHECK(deletion_insertion_batch_size(torch::zeros({1, 3, 512, 512})) == 1);
  CHECK(deletion_insertion_batch_size(torch::zeros({1, 1, 128, 128})) == 32);
  CHECK(deletion_insertion_batch_size(torch::zeros({1, 3, 224, 224}), cnnviz::DeletionInsertionOptions().batch_size(16)) ==
        16);
  CHECK_THROWS_WITH_AS(deletion_insertion_batch_size(torch::zeros({1, 3, 8, 8}),
                                                     cnnviz::DeletionInsertionOptions().batch_size(-2)),
                       doctest::Contains("batch_size must be at least 1"), c10::ValueError);
  CHECK_THROWS_WITH_AS(deletion_insertion_batch_size(torch::Tensor()), doctest::Contains("(N, C, H, W)"),
                       c10::ValueError);
  // The result says which batch size ran.
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto x = torch::randn({1, 3, 16, 16});
  auto map = torch::rand({1, 16, 16});
  CHECK(cnnviz::deletion_insertion(model, x, map, {}, cnnviz::DeletionInsertionOptions().steps(4)).batch_size == 32);
  CHECK(cnnviz::deletion_insertion(model, x, map, {}, cnnviz::DeletionInsertionOptions().steps(4).batch_size(3))
            .batch_size == 3);
}

TEST_CASE("deletion_insertion rejects bad maps and options") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto x = torch::randn({2, 3, 16, 16});
  auto ok = torch::rand({2, 16, 16});
  CHECK_THROWS_WITH_AS(cnnviz::deletion_insertion(model, x, torch::rand({2, 16, 12})),
                       doctest::Contains("does not fit the image"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deletion_insertion(model, x, torch::rand({2, 32, 32})),
                       doctest::Contains("does not fit the image"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deletion_insertion(model, x, torch::rand({3, 16, 16})),
                       doctest::Contains("3 attribution maps for a batch of 2"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deletion_insertion(model, x, torch::rand({16, 16})),
                       doctest::Contains("batch of one image"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deletion_insertion(model, x, torch::rand({2, 3, 16, 16})),
                       doctest::Contains(".map"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deletion_insertion(model, x, torch::full({2, 16, 16}, NAN)),
                       doctest::Contains("NaN"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deletion_insertion(model, x, ok, {}, cnnviz::DeletionInsertionOptions().steps(0)),
                       doctest::Contains("steps must be positive"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::deletion_insertion(model, x, ok, {}, cnnviz::DeletionInsertionOptions().batch_size(0)),
                       doctest::Contains("batch_size"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::deletion_insertion(model, x, ok, 99), c10::IndexError);
  CHECK_THROWS_WITH_AS(
      cnnviz::deletion_insertion(model, x, ok, {},
                                 cnnviz::DeletionInsertionOptions().deletion_baseline(cnnviz::BaselineKind::custom)),
      doctest::Contains("custom baseline"), c10::ValueError);
}

TEST_CASE("sanity_check randomizes a copy from the output back and leaves the model alone") {
  auto seq = fixtures::small_cnn();
  auto copy = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(seq->clone());
  REQUIRE(copy);
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  cnnviz::AnyModel copied = cnnviz::SequentialModel(torch::nn::Sequential(copy));
  std::vector<torch::Tensor> before;
  for (auto& p : seq->parameters()) before.push_back(p.detach().clone());
  torch::manual_seed(3);
  auto x = torch::randn({2, 3, 16, 16});
  cnnviz::AttributionFn sal = [](const cnnviz::AnyModel& m, const torch::Tensor& xx, const torch::Tensor& t) {
    return cnnviz::saliency(m, xx, cnnviz::Target(t)).map;
  };
  auto r = cnnviz::sanity_check(sal, model, copied, x);
  // Parameterized modules 9 (Linear), 5, 2, 0 (convs), from the output back.
  CHECK(r.steps == std::vector<std::string>({"9", "5", "2", "0"}));
  REQUIRE(r.rank_correlation.sizes() == torch::IntArrayRef({4, 2}));
  REQUIRE(r.ssim.sizes() == torch::IntArrayRef({4, 2}));
  REQUIRE(r.maps.sizes() == torch::IntArrayRef({4, 2, 16, 16}));
  // The original map is the model's saliency; the correlation per step is that of the maps.
  CHECK(torch::allclose(r.original, cnnviz::saliency(model, x).map));
  for (int64_t k = 0; k < 4; ++k)
    CHECK(torch::allclose(r.rank_correlation[k], cnnviz::rank_correlation(r.original, r.maps[k])));
  // Fully randomized, the map no longer resembles the original.
  CHECK(r.rank_correlation[3].abs().max().item<double>() < 0.9);
  // The model is untouched, the copy changed.
  auto params = seq->parameters();
  for (size_t i = 0; i < params.size(); ++i) CHECK(torch::equal(params[i], before[i]));
  CHECK_FALSE(torch::equal(copy->parameters()[0], before[0]));

  // layers_from_top, named layers, groups.
  auto copy2 = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(seq->clone());
  cnnviz::AnyModel copied2 = cnnviz::SequentialModel(torch::nn::Sequential(copy2));
  auto r2 = cnnviz::sanity_check(sal, model, copied2, x, {}, cnnviz::SanityCheckOptions().layers_from_top(2).ssim(false));
  CHECK(r2.steps == std::vector<std::string>({"9", "5"}));
  CHECK_FALSE(r2.ssim.defined());
  // Same seed, same cascade: the same maps as the first two steps above.
  CHECK(torch::allclose(r2.maps, r.maps.slice(0, 0, 2)));

  CHECK_THROWS_WITH_AS(cnnviz::sanity_check(sal, model, model, x), doctest::Contains("the copy is the model itself"),
                       c10::ValueError);
  cnnviz::AnyModel shared = cnnviz::SequentialModel(seq);
  CHECK_THROWS_WITH_AS(cnnviz::sanity_check(sal, model, shared, x), doctest::Contains("shares parameters"),
                       c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::sanity_check(sal, model, copied2, x, {}, cnnviz::SanityCheckOptions().layers({"nope"})),
                       doctest::Contains("unknown layer 'nope'"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::sanity_check(sal, model, copied2, x, {}, cnnviz::SanityCheckOptions().layers({"1"})),
                       doctest::Contains("owns no parameters"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::sanity_check(sal, model, copied2, x, {}, cnnviz::SanityCheckOptions().layers_from_top(0)),
                       doctest::Contains("layers_from_top must be positive"), c10::ValueError);
  cnnviz::AttributionFn bad = [](const cnnviz::AnyModel&, const torch::Tensor& xx, const torch::Tensor&) {
    return xx;
  };
  CHECK_THROWS_WITH_AS(cnnviz::sanity_check(bad, model, copied2, x), doctest::Contains("(N, h, w)"), c10::ValueError);
}

TEST_CASE("layer_information compares each layer's inversion with the input in pixels") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(4);
  auto pixels = torch::rand({1, 3, 16, 16});
  auto [mean, std] = cnnviz::detail::normalization(cnnviz::kImageNetMean, cnnviz::kImageNetStd, 3, pixels.options(), "t");
  auto x = (pixels - mean) / std;
  auto inv = cnnviz::InversionOptions().iterations(30).optimizer(cnnviz::Optimizer::adam).learning_rate(0.1);
  auto r = cnnviz::layer_information(model, x, {"1", "4", "8"}, cnnviz::LayerInformationOptions().inversion(inv));
  REQUIRE(r.layers == std::vector<std::string>({"1", "4", "8"}));
  CHECK(torch::equal(r.channels, torch::tensor({8, 8, 48}, torch::kLong)));
  CHECK(torch::equal(r.height, torch::tensor({16, 8, 1}, torch::kLong)));
  CHECK(torch::equal(r.width, torch::tensor({16, 8, 1}, torch::kLong)));
  REQUIRE(r.ssim.sizes() == torch::IntArrayRef({3, 1}));
  // The same numbers from the inversions, by the metrics written out here.
  auto expect = cnnviz::invert_layers(model, x, {"1", "4", "8"}, inv);
  for (int64_t l = 0; l < 3; ++l) {
    auto pz = (expect[l].image * std + mean).clamp(0, 1).to(torch::kDouble);
    auto mse = (pz - pixels.to(torch::kDouble)).pow(2).mean().item<double>();
    CHECK(r.mse[l][0].item<double>() == doctest::Approx(mse).epsilon(1e-6));
    CHECK(r.psnr[l][0].item<double>() == doctest::Approx(-10 * std::log10(mse)).epsilon(1e-6));
    CHECK(r.ssim[l][0].item<double>() ==
          doctest::Approx(cnnviz::ssim(pz, pixels.to(torch::kDouble), cnnviz::SsimOptions().data_range(1.0)).item<double>())
              .epsilon(1e-6));
  }
  auto mean_ssim = r.ssim.mean(1);
  CHECK(r.ssim_drop[0].item<double>() == doctest::Approx(1 - mean_ssim[0].item<double>()));
  CHECK(r.ssim_drop[2].item<double>() == doctest::Approx(mean_ssim[1].item<double>() - mean_ssim[2].item<double>()));
  CHECK(r.bottleneck == r.ssim_drop.argmax().item<int64_t>());
  CHECK(r.bottleneck_layer == r.layers[r.bottleneck]);

  CHECK_THROWS_WITH_AS(cnnviz::layer_information(model, x, {"1", "nope"}), doctest::Contains("unknown layer 'nope'"),
                       c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::layer_information(model, x, {}), doctest::Contains("empty"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::layer_information(model, x, {"1"},
                                            cnnviz::LayerInformationOptions().inversion(cnnviz::InversionOptions().iterations(0))),
                  c10::ValueError);
}

TEST_CASE("adversarial_report gathers the attack, the saliency change and the layer divergence") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(5);
  auto pixels = torch::rand({2, 3, 16, 16}) * 0.8 + 0.1;
  auto [mean, std] = cnnviz::detail::normalization(cnnviz::kImageNetMean, cnnviz::kImageNetStd, 3, pixels.options(), "t");
  auto x = (pixels - mean) / std;
  auto pgd = cnnviz::PgdOptions().eps(8.0 / 255).steps(5).random_start(false);
  auto r = cnnviz::adversarial_report(model, x, {}, cnnviz::AdversarialReportOptions().pgd(pgd).layers({"1", "6"}));
  auto ref = cnnviz::pgd(model, x, {}, pgd);
  CHECK(torch::allclose(r.attack.adversarial, ref.adversarial));
  CHECK(torch::allclose(r.probabilities_after, ref.logits_after.softmax(1)));
  CHECK(torch::allclose(r.saliency_before.map, cnnviz::saliency(model, x, cnnviz::Target(ref.target)).map));
  CHECK(torch::allclose(r.saliency_after.map, cnnviz::saliency(model, ref.adversarial, cnnviz::Target(ref.target)).map));
  CHECK(torch::allclose(r.saliency_correlation, cnnviz::rank_correlation(r.saliency_before.map, r.saliency_after.map)));
  auto div = cnnviz::layer_divergence(model, x, ref.adversarial, {"1", "6"});
  CHECK(torch::allclose(r.divergence[0], div[0].second));
  CHECK(torch::allclose(r.divergence[1], div[1].second));
  CHECK(r.most_affected == r.divergence.mean(1).argmax().item<int64_t>());
  // FGSM, and the default layers: the leaf modules with parameters.
  auto f = cnnviz::adversarial_report(model, x, {}, cnnviz::AdversarialReportOptions().attack(cnnviz::Attack::fgsm));
  CHECK(f.layers == std::vector<std::string>({"0", "2", "5", "9"}));
  CHECK(torch::allclose(f.attack.adversarial, cnnviz::fgsm(model, x).adversarial));
  CHECK_THROWS_WITH_AS(cnnviz::adversarial_report(model, x, {}, cnnviz::AdversarialReportOptions().layers({"nope"})),
                       doctest::Contains("unknown layer"), c10::ValueError);
}

TEST_CASE("sanity_check copies a TorchScript model itself") {
  const auto dir = data_dir();
  if (dir.empty()) {
    MESSAGE("sample data not found (set CNNVIZ_DATA): skipping the TorchScript sanity check");
    return;
  }
  auto script = cnnviz::ScriptModel::load(dir + "/weights/resnet20_cifar10_traced.pt");
  std::vector<torch::Tensor> before;
  for (auto& p : script.parameters()) before.push_back(p.detach().clone());
  torch::manual_seed(6);
  auto x = torch::randn({2, 3, 32, 32});
  cnnviz::AttributionFn sal = [](const cnnviz::AnyModel& m, const torch::Tensor& xx, const torch::Tensor& t) {
    return cnnviz::saliency(m, xx, cnnviz::Target(t)).map;
  };
  auto r = cnnviz::sanity_check(sal, script, x, {}, cnnviz::SanityCheckOptions().group_depth(1).layers_from_top(2));
  CHECK(r.steps == std::vector<std::string>({"linear", "layer3"}));
  CHECK(r.rank_correlation.abs().max().item<double>() < 0.9);
  auto after = script.parameters();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) CHECK(torch::equal(after[i], before[i]));
}

TEST_CASE("a progress callback that returns false stops every looping analysis with what it has") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(6);
  auto pixels = torch::rand({1, 3, 16, 16}) * 0.8 + 0.1;
  auto [mean, std] = cnnviz::detail::normalization(cnnviz::kImageNetMean, cnnviz::kImageNetStd, 3, pixels.options(), "t");
  auto x = (pixels - mean) / std;
  auto stop_after = [](int64_t n) {
    auto calls = std::make_shared<int64_t>(0);
    return cnnviz::ProgressCallback([calls, n](int64_t, int64_t, double) { return ++*calls < n; });
  };
  // sanity_check: one step of four.
  auto copy = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(seq->clone());
  cnnviz::AnyModel copied = cnnviz::SequentialModel(torch::nn::Sequential(copy));
  cnnviz::AttributionFn sal = [](const cnnviz::AnyModel& m, const torch::Tensor& xx, const torch::Tensor& t) {
    return cnnviz::saliency(m, xx, cnnviz::Target(t)).map;
  };
  auto sc = cnnviz::sanity_check(sal, model, copied, x, {}, cnnviz::SanityCheckOptions().ssim(false).progress(stop_after(1)));
  CHECK(sc.stopped_early);
  CHECK_FALSE(sc.interrupted);  // only the Python bindings set it (Ctrl-C)
  CHECK(sc.steps == std::vector<std::string>({"9"}));
  CHECK(sc.maps.size(0) == 1);
  // layer_information: the inversion stops after 3 of 50 steps.
  auto inv = cnnviz::InversionOptions().iterations(50).progress(stop_after(3));
  auto li = cnnviz::layer_information(model, x, {"1", "4"}, cnnviz::LayerInformationOptions().inversion(inv));
  CHECK(li.stopped_early);
  CHECK_FALSE(li.interrupted);
  REQUIRE_FALSE(li.inversions.empty());
  CHECK(li.inversions.back().stopped_early);
  // adversarial_report: PGD stops after 2 of 40 steps; the report is of that partial attack.
  auto pgd = cnnviz::PgdOptions().steps(40).random_start(false).progress(stop_after(2));
  auto rep = cnnviz::adversarial_report(model, x, {}, cnnviz::AdversarialReportOptions().pgd(pgd).layers({"1"}));
  CHECK(rep.stopped_early);
  CHECK(rep.attack.stopped_early);
  CHECK_FALSE(rep.interrupted);
  auto full = cnnviz::adversarial_report(model, x, {}, cnnviz::AdversarialReportOptions().pgd(pgd.progress(nullptr)).layers({"1"}));
  CHECK_FALSE(full.stopped_early);
}
