// What a torch-only program of the same shape costs to compile: the baseline.
#include <torch/torch.h>
#include <iostream>
int main() {
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(8, 10));
  auto x = torch::randn({1, 3, 16, 16}, torch::requires_grad());
  auto y = net->forward(x);
  y[0][3].backward();
  std::cout << x.grad().abs().sum().item<float>() << "\n";
}
