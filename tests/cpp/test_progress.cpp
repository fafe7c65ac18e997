// One stop mechanism for every long loop: the progress callback returning false ends the
// loop after the current step, and the partial result comes back with stopped_early.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <functional>
#include <string>

#include "cnnviz/adversarial.hpp"
#include "cnnviz/analysis/adversarial_report.hpp"
#include "cnnviz/analysis/faithfulness.hpp"
#include "cnnviz/analysis/layer_information.hpp"
#include "cnnviz/attribution.hpp"
#include "cnnviz/inversion.hpp"
#include "cnnviz/maximization.hpp"

namespace {

cnnviz::AnyModel small_net() {
  torch::manual_seed(0);
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 6, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(6, 3));
  seq->eval();
  return cnnviz::SequentialModel(seq);
}

/// A callback that stops at its first call and counts how often it was called.
struct StopAtFirst {
  int calls = 0;
  int64_t last_total = 0;
  cnnviz::ProgressCallback callback() {
    return [this](int64_t, int64_t total, double) {
      ++calls;
      last_total = total;
      return false;
    };
  }
};

}  // namespace

TEST_CASE("every batched attribution loop stops when the progress callback says so") {
  auto model = small_net();
  auto x = torch::rand({1, 3, 8, 8});
  SUBCASE("smooth_grad") {
    StopAtFirst s;
    auto r = cnnviz::smooth_grad(model, x, {}, cnnviz::SmoothGradOptions().samples(12).batch_size(3).progress(s.callback()));
    CHECK(s.calls == 1);
    CHECK(s.last_total == 12);
    CHECK(r.stopped_early);
    CHECK(r.attribution.sizes() == x.sizes());
  }
  SUBCASE("integrated_gradients") {
    StopAtFirst s;
    auto r = cnnviz::integrated_gradients(
        model, x, {}, cnnviz::IntegratedGradientsOptions().steps(12).batch_size(3).progress(s.callback()));
    CHECK(s.calls == 1);
    CHECK(r.stopped_early);
    CHECK(r.attribution.sizes() == x.sizes());
  }
  SUBCASE("occlusion") {
    StopAtFirst s;
    auto r = cnnviz::occlusion(
        model, x, {},
        cnnviz::OcclusionOptions().window({2, 2}).stride({2, 2}).batch_size(4).progress(s.callback()));
    CHECK(s.calls == 1);
    CHECK(r.stopped_early);
    CHECK(r.scores.sizes() == torch::IntArrayRef({1, 4, 4}));
  }
  SUBCASE("score_cam") {
    StopAtFirst s;
    auto r = cnnviz::score_cam(model, x, "1", {}, cnnviz::CamOptions().batch_size(2).progress(s.callback()));
    CHECK(s.calls == 1);
    CHECK(r.stopped_early);
    CHECK(r.front().upsampled.sizes() == torch::IntArrayRef({1, 8, 8}));
  }
  SUBCASE("lime") {
    StopAtFirst s;
    auto r = cnnviz::lime(model, x, {},
                          cnnviz::LimeOptions()
                              .segmentation(cnnviz::Segmentation::grid)
                              .superpixels(cnnviz::SlicOptions().segments(4))
                              .samples(40)
                              .batch_size(8)
                              .progress(s.callback()));
    CHECK(s.calls == 1);
    CHECK(r.stopped_early);
    CHECK(r.map.sizes() == torch::IntArrayRef({1, 8, 8}));
  }
}

TEST_CASE("every optimization loop stops when the progress callback says so") {
  auto model = small_net();
  auto x = torch::rand({1, 3, 8, 8});
  SUBCASE("invert") {
    StopAtFirst s;
    auto r = cnnviz::invert(model, x, "1", cnnviz::InversionOptions().iterations(20).progress(s.callback()));
    CHECK(s.calls == 1);
    CHECK(r.stopped_early);
    CHECK(r.losses.size(0) == 1);
  }
  SUBCASE("invert_layers") {
    StopAtFirst s;
    auto r = cnnviz::invert_layers(model, x, {"0", "1"},
                                   cnnviz::InversionOptions().iterations(20).progress(s.callback()));
    CHECK(s.calls == 1);
    REQUIRE(r.size() == 1);
    CHECK(r.front().stopped_early);
  }
  SUBCASE("deep_dream") {
    StopAtFirst s;
    auto r = cnnviz::deep_dream(model, x, {"0", "1"},
                                cnnviz::DeepDreamOptions().iterations(5).octaves(2).progress(s.callback()));
    CHECK(s.calls == 1);
    CHECK(r.stopped_early);
  }
  SUBCASE("pgd") {
    StopAtFirst s;
    auto r = cnnviz::pgd(model, x, {}, cnnviz::PgdOptions().steps(20).progress(s.callback()));
    CHECK(s.calls == 1);
    CHECK(r.stopped_early);
  }
}

TEST_CASE("every analysis loop stops when the progress callback says so") {
  torch::manual_seed(0);
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 6, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 6, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(6, 3));
  seq->eval();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto x = torch::rand({2, 3, 12, 12});
  SUBCASE("deletion_insertion") {
    StopAtFirst s;
    auto r = cnnviz::deletion_insertion(model, x, torch::rand({2, 12, 12}), {},
                                        cnnviz::DeletionInsertionOptions().steps(10).batch_size(4).progress(s.callback()));
    CHECK(s.calls == 1);
    CHECK(s.last_total == 2 * 2 * 10);
    CHECK(r.stopped_early);
    // Scored: x itself (deletion's step 0, insertion's step 10) and the first batch (deletion
    // steps 1-4 of image 0); the rest is NaN.
    CHECK_FALSE(torch::isnan(r.deletion[0].slice(0, 0, 5)).any().item<bool>());
    CHECK(torch::isnan(r.deletion[0].slice(0, 5)).all().item<bool>());
    CHECK(torch::isnan(r.deletion[1].slice(0, 1)).all().item<bool>());
    CHECK(torch::isnan(r.insertion.slice(1, 0, 10)).all().item<bool>());
    CHECK(torch::equal(r.deletion.select(1, 0), r.insertion.select(1, 10)));
  }
  SUBCASE("sanity_check") {
    StopAtFirst s;
    auto copy = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(seq->clone());
    REQUIRE(copy);
    cnnviz::AnyModel copied = cnnviz::SequentialModel(torch::nn::Sequential(copy));
    cnnviz::AttributionFn sal = [](const cnnviz::AnyModel& m, const torch::Tensor& xx, const torch::Tensor& t) {
      return cnnviz::saliency(m, xx, cnnviz::Target(t)).map;
    };
    auto r = cnnviz::sanity_check(sal, model, copied, x, {}, cnnviz::SanityCheckOptions().progress(s.callback()));
    CHECK(s.calls == 1);
    CHECK(s.last_total == 3);  // the Linear and the two convs
    CHECK(r.stopped_early);
    CHECK(r.steps == std::vector<std::string>({"6"}));
    CHECK(r.maps.size(0) == 1);
  }
  SUBCASE("layer_information") {
    StopAtFirst s;
    auto inv = cnnviz::InversionOptions().iterations(20).progress(s.callback());
    auto r = cnnviz::layer_information(model, x, {"1", "3"}, cnnviz::LayerInformationOptions().inversion(inv));
    CHECK(s.calls == 1);
    CHECK(r.stopped_early);
    REQUIRE(r.layers.size() == 1);
    CHECK(r.inversions.front().losses.size(0) == 1);
  }
  SUBCASE("adversarial_report") {
    StopAtFirst s;
    auto r = cnnviz::adversarial_report(model, x, {},
                                        cnnviz::AdversarialReportOptions().pgd(cnnviz::PgdOptions().steps(20).progress(s.callback())));
    CHECK(s.calls == 1);
    CHECK(r.attack.stopped_early);
    CHECK(r.saliency_after.map.sizes() == torch::IntArrayRef({2, 12, 12}));
  }
}
