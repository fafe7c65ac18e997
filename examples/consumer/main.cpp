// Links cnnviz::cnnviz from an installed package and runs a capture end to end.
#include <cnnviz/cnnviz.hpp>

#include <iostream>

int main() {
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)),
                            torch::nn::ReLU(), torch::nn::AdaptiveAvgPool2d(1),
                            torch::nn::Flatten(), torch::nn::Linear(8, 10));
  cnnviz::AnyModel model = cnnviz::SequentialModel(net);
  auto x = torch::randn({1, 3, 16, 16});
  auto r = model.capture(x, {{"1"}, true, cnnviz::ReluMode::normal});
  std::cout << "consumer: captured '1' with shape " << r.at("1").sizes() << ", logits "
            << r.output.sizes() << "\n";
  return (r.at("1").min().item<float>() >= 0 && r.output.size(1) == 10) ? 0 : 1;
}
