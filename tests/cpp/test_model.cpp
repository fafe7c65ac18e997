#include <doctest/doctest.h>
#include <torch/torch.h>

#include <memory>
#include <thread>
#include <vector>

#include "cnnviz/detail/checked_size.hpp"
#include "cnnviz/model.hpp"

TEST_CASE("SequentialModel captures children in order") {
  torch::manual_seed(0);
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1)),
                            torch::nn::ReLU(), torch::nn::Flatten(), torch::nn::Linear(4 * 8 * 8, 5));
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  auto x = torch::randn({2, 3, 8, 8});
  auto r = model.capture(x, {{"0", "1"}, true, cnnviz::ReluMode::normal});
  CHECK(r.output.sizes() == torch::IntArrayRef({2, 5}));
  CHECK(torch::allclose(r.at("0"), seq[0]->as<torch::nn::Conv2d>()->forward(x)));
  CHECK(torch::allclose(r.at("1"), torch::relu(r.at("0"))));
  CHECK_THROWS_WITH_AS(model.capture(x, {{"7"}, true, cnnviz::ReluMode::normal}),
                       doctest::Contains("unknown layer '7'"), c10::ValueError);
}

TEST_CASE("FreezeParameters: overlapping scopes in several threads restore the flags once") {
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)), torch::nn::ReLU());
  auto params = seq->parameters();
  params[1].requires_grad_(false);  // the user's own freeze is kept
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  {
    auto first = std::make_unique<cnnviz::FreezeParameters>(model);
    CHECK_FALSE(params[0].requires_grad());
    cnnviz::FreezeParameters second(model);
    first.reset();  // the first scope ends while the second still runs
    CHECK_FALSE(params[0].requires_grad());
  }
  CHECK(params[0].requires_grad());
  CHECK_FALSE(params[1].requires_grad());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        cnnviz::FreezeParameters f(model);
        CHECK_FALSE(params[0].requires_grad());
      }
    });
  for (auto& t : threads) t.join();
  CHECK(params[0].requires_grad());
  CHECK_FALSE(params[1].requires_grad());
}

TEST_CASE("checked_product refuses counts that overflow int64") {
  CHECK(cnnviz::detail::checked_product(3, 4, "f", "a", "b") == 12);
  CHECK_THROWS_AS(cnnviz::detail::checked_product(int64_t(1) << 62, 2, "smooth_grad", "images", "samples"),
                  c10::ValueError);
  CHECK(cnnviz::detail::scaled(int64_t(1) << 62, 3, 4) == (int64_t(3) << 60));
}
