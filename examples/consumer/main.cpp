// Links cnnviz::cnnviz from an installed package and runs a capture end to end, the
// installed label sets included.
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
  // The class names ship with the package (share/cnnviz/labels).
  auto imagenet = cnnviz::load_labels("imagenet");
  auto cifar10 = cnnviz::load_labels("cifar10");
  std::cout << "consumer: " << imagenet.size() << " ImageNet labels, " << cifar10.size() << " CIFAR-10 labels\n";
  for (const auto& p : cnnviz::predict_one(model, x[0], 2, cifar10))
    std::cout << "consumer: " << p.label << " " << p.probability << "\n";
  bool ok = r.at("1").min().item<float>() >= 0 && r.output.size(1) == 10 && imagenet.size() == 1000 &&
            cifar10.size() == 10 && cifar10[3] == "cat";
  return ok ? 0 : 1;
}
