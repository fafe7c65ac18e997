#include <doctest/doctest.h>
#include <torch/torch.h>

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
