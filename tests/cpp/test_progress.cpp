// One stop mechanism for every long loop: the progress callback returning false ends the
// loop after the current step, and the partial result comes back with stopped_early.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <functional>
#include <string>

#include "cnnviz/adversarial.hpp"
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
