// A user translation unit that calls five cnnviz algorithms on a small network.
#include <cnnviz/cnnviz.hpp>
#include <iostream>
int main() {
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(8, 10));
  cnnviz::AnyModel model = cnnviz::SequentialModel(net);
  auto x = torch::randn({1, 3, 16, 16});
  auto s = cnnviz::saliency(model, x);
  auto c = cnnviz::grad_cam(model, x, "0");
  auto ig = cnnviz::integrated_gradients(model, x);
  auto inv = cnnviz::invert(model, x, "1");
  auto mx = cnnviz::maximize(model, cnnviz::Objective::channel("0", 1));
  std::cout << s.map.sum().item<float>() << ig.attribution.sum().item<float>() << "\n";
}
