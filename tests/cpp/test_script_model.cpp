#include <doctest/doctest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>

#include "cnnviz/capture.hpp"
#include "cnnviz/script_model.hpp"
#include "paths.hpp"

namespace {

std::string data_dir() {
  const char* env = std::getenv("CNNVIZ_DATA");
  std::string dir = env ? env : cnnviz_test::source_dir() + "/../shared/data";
  return std::ifstream(dir + "/README.md").good() ? dir : std::string();
}

// A scripted module built in C++: a conv, then a shared ReLU called twice, in-place after
// the conv, and a linear head.
torch::jit::Module make_scripted() {
  torch::manual_seed(0);
  torch::jit::Module conv("Conv");
  conv.register_parameter("weight", torch::randn({4, 3, 3, 3}) * 0.3, false);
  conv.define(R"(
    def forward(self, x):
        return torch.conv2d(x, self.weight, None, [1, 1], [1, 1])
  )");
  torch::jit::Module relu("Relu");
  relu.define(R"(
    def forward(self, x):
        return torch.relu_(x)
  )");
  torch::jit::Module head("Head");
  head.register_parameter("weight", torch::randn({5, 4}), false);
  head.define(R"(
    def forward(self, x):
        return torch.matmul(x.mean([2, 3]), self.weight.t())
  )");
  torch::jit::Module net("Net");
  net.register_module("conv", conv);
  net.register_module("relu", relu);
  net.register_module("head", head);
  net.define(R"(
    def forward(self, x):
        y = self.relu.forward(self.conv.forward(x))
        z = self.relu.forward(y - 0.5)
        return self.head.forward(z)
  )");
  return net;
}

}  // namespace

TEST_CASE("ScriptModel captures scripted submodules by name and call") {
  auto net = make_scripted();
  cnnviz::ScriptModel model(net);
  auto x = torch::randn({2, 3, 6, 6});
  auto conv_w = net.attr("conv").toModule().attr("weight").toTensor();
  auto conv = torch::conv2d(x, conv_w, {}, 1, 1);
  auto y = torch::relu(conv);
  auto z = torch::relu(y - 0.5);

  cnnviz::CaptureRequest req{{"conv", "relu:0", "relu:1", "relu"}, true, cnnviz::ReluMode::normal};
  auto r = model.capture(x, req);
  CHECK(torch::allclose(r.at("conv"), conv));  // not clipped by the in-place ReLU after it
  CHECK((r.at("conv") < 0).any().item<bool>());
  CHECK(torch::allclose(r.at("relu:0"), y));
  CHECK(torch::allclose(r.at("relu:1"), z));
  CHECK(torch::allclose(r.at("relu"), z));
  CHECK(torch::allclose(r.output, net.forward({x}).toTensor()));

  SUBCASE("gradients flow to captured values and the input") {
    auto xg = x.clone().requires_grad_();
    auto rg = model.capture(xg, req);
    auto grads = torch::autograd::grad({rg.output.sum()}, {rg.at("conv"), xg});
    auto head_w = net.attr("head").toModule().attr("weight").toTensor();
    // d sum(head(z)) / d conv: through two ReLUs, mean over 36 positions.
    auto expected = (conv > 0).to(torch::kFloat) * (y - 0.5 > 0).to(torch::kFloat) *
                    head_w.sum(0).view({1, 4, 1, 1}) / 36.0;
    CHECK(torch::allclose(grads[0], expected, 1e-5, 1e-6));
    CHECK(grads[1].defined());
  }
  SUBCASE("a cut starts the autograd graph at the captured layer") {
    cnnviz::CaptureRequest cut{{"relu:0"}, true, cnnviz::ReluMode::normal};
    cut.cut = true;
    auto rc = model.capture(x, cut);  // x and the parameters need no gradient
    CHECK(rc.at("relu:0").requires_grad());
    CHECK_FALSE(rc.at("relu:0").grad_fn());
    CHECK(torch::allclose(rc.at("relu:0"), y));
    CHECK(torch::allclose(rc.output, r.output));
    auto g = torch::autograd::grad({rc.output.sum()}, {rc.at("relu:0")})[0];
    auto xg = x.clone().requires_grad_();
    auto rg = model.capture(xg, {{"relu:0"}, true, cnnviz::ReluMode::normal});
    CHECK(torch::allclose(g, torch::autograd::grad({rg.output.sum()}, {rg.at("relu:0")})[0]));
  }
  SUBCASE("output not needed: the graph ends at the deepest layer") {
    cnnviz::CaptureRequest early{{"relu:0"}, false, cnnviz::ReluMode::normal};
    auto re = model.capture(x, early);
    CHECK_FALSE(re.output.defined());
    CHECK(torch::allclose(re.at("relu:0"), y));
  }
  SUBCASE("guided ReLUs drop negative gradients") {
    auto xg = x.clone().requires_grad_();
    cnnviz::CaptureRequest guided{{"conv"}, true, cnnviz::ReluMode::guided};
    auto rg = model.capture(xg, guided);
    auto g = torch::autograd::grad({rg.output[0][1]}, {rg.at("conv")})[0];
    auto head_w = net.attr("head").toModule().attr("weight").toTensor();
    auto up = (head_w[1].view({1, 4, 1, 1}) / 36.0).clamp_min(0).expand_as(conv);
    auto expected = (up * (z > 0)).clamp_min(0) * (conv > 0);
    CHECK(torch::allclose(g[0], expected[0], 1e-5, 1e-7));
  }
  SUBCASE("bad requests") {
    CHECK_THROWS_WITH_AS(model.capture(x, {{"conv2"}, true, cnnviz::ReluMode::normal}),
                         doctest::Contains("closest names: conv"), c10::ValueError);
    CHECK_THROWS_WITH_AS(model.capture(x, {{"relu:2"}, true, cnnviz::ReluMode::normal}),
                         doctest::Contains("ran 2 time(s)"), c10::IndexError);
    CHECK_THROWS_AS(model.capture(torch::randn({3, 6, 6}), req), c10::ValueError);
    CHECK_THROWS_WITH_AS(cnnviz::ScriptModel::load("/nonexistent/model.pt"),
                         doctest::Contains("cannot open TorchScript file"), cnnviz::FileNotFoundError);
  }
}

TEST_CASE("layers, summary, predict and filter weights through ScriptModel") {
  cnnviz::AnyModel model = cnnviz::ScriptModel(make_scripted());
  auto names = model.layer_names();
  CHECK(names == std::vector<std::string>{"conv", "relu", "head"});
  auto rows = cnnviz::summary(model, {3, 6, 6});
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].output_shape == std::vector<int64_t>{1, 4, 6, 6});
  CHECK(rows[0].num_parameters == 108);
  CHECK(rows[2].output_shape == std::vector<int64_t>{1, 5});
  CHECK(cnnviz::format_summary(rows).find("total parameters: 128") != std::string::npos);

  auto x = torch::randn({3, 3, 6, 6});
  auto top = cnnviz::predict(model, x, 2, {"a", "b", "c", "d", "e"});
  auto probs = model.forward(x).softmax(1);
  CHECK(top.size() == 3);
  CHECK(top[2][0].probability == doctest::Approx(probs[2].max().item<double>()));
  CHECK(top[2][0].label == std::string(1, static_cast<char>('a' + probs[2].argmax().item<int64_t>())));
  CHECK_THROWS_AS(cnnviz::predict(model, x, 6), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::predict(model, x, 0), c10::ValueError);

  auto f = cnnviz::filter_weights(model, "conv");
  CHECK(f.mean.sizes() == torch::IntArrayRef({4, 3, 3}));
  CHECK(f.rgb.sizes() == torch::IntArrayRef({4, 3, 3, 3}));
  CHECK_THROWS_WITH_AS(cnnviz::filter_weights(model, "relu"), doctest::Contains("no weight"), c10::ValueError);

  auto maps = cnnviz::feature_maps(model, x);
  CHECK(maps.size() == 3);
}

TEST_CASE("the pretrained traced ResNet-20 from the sample data") {
  auto dir = data_dir();
  if (dir.empty()) {
    MESSAGE("sample data not found; set CNNVIZ_DATA");
    return;
  }
  auto model = cnnviz::ScriptModel::load(dir + "/weights/resnet20_cifar10_traced.pt");
  auto x = torch::randn({2, 3, 32, 32});
  cnnviz::CaptureRequest req{{"layer1.0.conv1", "layer2", "layer3.2", "linear"}, true,
                             cnnviz::ReluMode::normal};
  auto r = model.capture(x, req);
  CHECK(r.at("layer1.0.conv1").sizes() == torch::IntArrayRef({2, 16, 32, 32}));
  CHECK(r.at("layer2").sizes() == torch::IntArrayRef({2, 32, 16, 16}));
  CHECK(r.at("layer3.2").sizes() == torch::IntArrayRef({2, 64, 8, 8}));
  CHECK(torch::allclose(r.at("linear"), r.output));
  CHECK(torch::allclose(r.output, model.forward(x), 1e-5, 1e-5));
}

TEST_CASE("ScriptModel keeps the module behind a pointer: module() is the caller's module, copies share it") {
  auto net = make_scripted();
  cnnviz::ScriptModel model(net);
  auto w = net.attr("conv").toModule().attr("weight").toTensor();
  CHECK(model.module().attr("conv").toModule().attr("weight").toTensor().is_same(w));
  cnnviz::ScriptModel copy = model;
  CHECK(&copy.module() == &model.module());
  auto x = torch::randn({1, 3, 6, 6});
  CHECK(torch::equal(copy.forward(x), net.forward({x}).toTensor()));
}
