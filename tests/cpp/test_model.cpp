#include <doctest/doctest.h>
#include <torch/torch.h>

#include <memory>
#include <thread>
#include <vector>

#include "cnnviz/detail/checked_size.hpp"
#include "cnnviz/model.hpp"
#include "paths.hpp"

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

  SUBCASE("a cut starts the autograd graph at the captured child") {
    for (auto& p : seq->parameters()) p.requires_grad_(false);
    CHECK(model.can_cut());
    cnnviz::CaptureRequest cut{{"0"}, true, cnnviz::ReluMode::normal};
    cut.cut = true;
    auto rc = model.capture(x, cut);
    CHECK(rc.at("0").requires_grad());
    CHECK_FALSE(rc.at("0").grad_fn());
    CHECK(torch::allclose(rc.output, r.output));
    auto g = torch::autograd::grad({rc.output.sum()}, {rc.at("0")})[0];
    auto xg = x.clone().requires_grad_();
    auto rg = model.capture(xg, {{"0"}, true, cnnviz::ReluMode::normal});
    CHECK(torch::allclose(g, torch::autograd::grad({rg.output.sum()}, {rg.at("0")})[0]));
    for (auto& p : seq->parameters()) p.requires_grad_(true);
  }
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

// ---------------------------------------------------------------------------------------
// Layer arguments: a name, a vector and a brace list reach the same layers.

#include "cnnviz/capture.hpp"
#include "cnnviz/cam.hpp"
#include "cnnviz/inversion.hpp"

// The single-layer functions take a Layer (which rejects brace lists at compile time, see
// tests/compile_fail), the many-layer ones Layers.
static_assert(std::is_same_v<decltype(&cnnviz::invert),
                             cnnviz::InversionResult (*)(const cnnviz::AnyModel&, const torch::Tensor&,
                                                         const cnnviz::Layer&, const cnnviz::InversionOptions&)>);
static_assert(std::is_same_v<decltype(&cnnviz::filter_weights),
                             cnnviz::FilterWeights (*)(const cnnviz::AnyModel&, const cnnviz::Layer&)>);
static_assert(!std::is_constructible_v<cnnviz::Layer, std::initializer_list<std::string>>);
static_assert(!std::is_convertible_v<std::nullptr_t, cnnviz::Layers>);

namespace {
torch::nn::Sequential conv_net() {
  torch::manual_seed(0);
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 4, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(4, 3));
  seq->eval();
  return seq;
}
}  // namespace

TEST_CASE("layer arguments: a name, a std::string, a vector and a brace list") {
  cnnviz::AnyModel model = cnnviz::SequentialModel(conv_net());
  auto x = torch::rand({1, 3, 6, 6});
  const std::string name = "1";
  const std::vector<std::string> both = {"1", "3"};
  auto a = cnnviz::grad_cam(model, x, "1");
  auto b = cnnviz::grad_cam(model, x, name);
  auto c = cnnviz::grad_cam(model, x, both);
  auto d = cnnviz::grad_cam(model, x, {"1", "3"});
  auto e = cnnviz::grad_cam(model, x, {"1", "3"}, {cnnviz::Target(0), cnnviz::Target(2)});
  CHECK(a.maps.size() == 1);
  CHECK(b.maps.size() == 1);
  CHECK(c.maps.size() == 2);
  REQUIRE(d.maps.size() == 2);
  CHECK(d.maps[0].layer == "1");
  CHECK(d.maps[1].layer == "3");
  CHECK(e.maps.size() == 4);
  CHECK(torch::allclose(a.front().map, d.at("1").map));
  CHECK(torch::allclose(c.at("3").map, d.at("3").map));
  CHECK(cnnviz::grad_cam_pp(model, x, {"1", "3"}).maps.size() == 2);
  CHECK(cnnviz::layer_cam(model, x, {"1", "3"}).maps.size() == 2);
  CHECK(cnnviz::score_cam(model, x, {"1", "3"}).maps.size() == 2);
  CHECK(cnnviz::capture(model, x, {"0", "2"}).activations.size() == 2);
  CHECK(cnnviz::feature_maps(model, x, {"0", "2"}).size() == 2);
  CHECK(cnnviz::feature_maps(model, x, "0").size() == 1);
  auto o = cnnviz::InversionOptions().iterations(2);
  CHECK(cnnviz::invert_layers(model, x, {"1", "3"}, o).size() == 2);
  CHECK(cnnviz::invert_layers(model, x, "1", o).size() == 1);
  CHECK(cnnviz::invert(model, x, name, o).losses.size(0) == 2);
  cnnviz::Layers empty;
  CHECK_THROWS_WITH_AS(cnnviz::grad_cam(model, x, empty), doctest::Contains("at least one layer"), c10::ValueError);
}

// ---------------------------------------------------------------------------------------
// The documented Model concept: forward, capture and layers are enough.

namespace {
/// Only the three required members, forwarding to a Sequential.
struct MinimalModel {
  torch::nn::Sequential seq;
  torch::Tensor forward(const torch::Tensor& x) { return seq->forward(x); }
  cnnviz::CaptureResult capture(const torch::Tensor& x, const cnnviz::CaptureRequest& r) {
    return cnnviz::SequentialModel(seq).capture(x, r);
  }
  std::vector<cnnviz::LayerInfo> layers() const { return cnnviz::SequentialModel(seq).layers(); }
};
}  // namespace

TEST_CASE("a type with forward, capture and layers converts to AnyModel") {
  auto seq = conv_net();
  cnnviz::AnyModel model = MinimalModel{seq};
  CHECK(model.parameters().empty());  // optional member: nothing to freeze
  CHECK_FALSE(model.parameter("0", "weight").defined());
  auto x = torch::rand({2, 3, 6, 6});
  CHECK(torch::allclose(model.forward(x), seq->forward(x)));
  // An algorithm runs on it and matches the full adapter.
  auto r = cnnviz::grad_cam(model, x, "1");
  auto ref = cnnviz::grad_cam(cnnviz::SequentialModel(seq), x, "1");
  CHECK(torch::allclose(r.front().map, ref.front().map));
  CHECK_THROWS_WITH_AS(cnnviz::filter_weights(model, "0"), doctest::Contains("has no weight"), c10::ValueError);
  static_assert(cnnviz::detail::is_model<MinimalModel>::value);
  static_assert(!std::is_convertible_v<int, cnnviz::AnyModel>);
}

// ---------------------------------------------------------------------------------------
// predict_one: one image, predictions by value.

TEST_CASE("predict_one returns the top-k of one image by value") {
  cnnviz::AnyModel model = cnnviz::SequentialModel(conv_net());
  auto x = torch::rand({3, 6, 6});
  std::vector<std::string> names = {"cat", "dog", "bird"};
  int seen = 0;
  for (auto& p : cnnviz::predict_one(model, x, 2, names)) {  // iterates an owned vector
    CHECK(p.label == names[p.index]);
    ++seen;
  }
  CHECK(seen == 2);
  auto batch = cnnviz::predict(model, x.unsqueeze(0), 3, names).front();
  auto one = cnnviz::predict_one(model, x.unsqueeze(0), 3, names);
  REQUIRE(one.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(one[i].index == batch[i].index);
    CHECK(one[i].probability == doctest::Approx(batch[i].probability));
  }
  auto probs = torch::softmax(model.forward(x.unsqueeze(0)), 1)[0];
  CHECK(one[0].probability == doctest::Approx(probs.max().item<double>()).epsilon(1e-5));
  CHECK_THROWS_WITH_AS(cnnviz::predict_one(model, torch::rand({2, 3, 6, 6})), doctest::Contains("one image"),
                       c10::ValueError);
}

// ---------------------------------------------------------------------------------------
// Labels by name, and one file error type from every loader.

#include "cnnviz/image.hpp"
#include "cnnviz/script_model.hpp"

TEST_CASE("load_labels reads the label sets by name and files by path") {
  auto imagenet = cnnviz::load_labels("imagenet");
  auto cifar10 = cnnviz::load_labels("cifar10");
  REQUIRE(imagenet.size() == 1000);
  REQUIRE(cifar10.size() == 10);
  CHECK(cifar10[3] == "cat");
  CHECK(imagenet == cnnviz::load_labels(cnnviz_test::source_dir() + "/python/cnnviz/labels/imagenet_classes.txt"));
  // A NUL byte would cut the path where the C library reads it: refused, as by every loader.
  CHECK_THROWS_WITH_AS(cnnviz::load_labels(std::string("imagenet\0.txt", 13)), doctest::Contains("NUL byte"),
                       c10::ValueError);
}

TEST_CASE("a missing file is cnnviz::FileNotFoundError from every loader") {
  const std::string missing = "/nonexistent/cnnviz/missing";
  auto is_not_found = [](auto&& load) {
    try {
      load();
    } catch (const cnnviz::FileNotFoundError& e) {
      CHECK(e.code() == std::errc::no_such_file_or_directory);
      CHECK(std::string(e.what()).find("missing") != std::string::npos);
      return true;
    } catch (...) {
    }
    return false;
  };
  CHECK(is_not_found([&] { cnnviz::load_labels(missing + ".txt"); }));
  CHECK(is_not_found([&] { cnnviz::load_image(missing + ".png"); }));
  CHECK(is_not_found([&] { cnnviz::ScriptModel::load(missing + ".pt"); }));
  // It is a std::system_error (and so a std::exception) for code that knows only those.
  static_assert(std::is_base_of_v<std::system_error, cnnviz::FileNotFoundError>);
}

TEST_CASE("CAM targets: {} is the predicted class, a class index, a vector or a brace list") {
  cnnviz::AnyModel model = cnnviz::SequentialModel(conv_net());
  auto x = torch::rand({2, 3, 6, 6});
  auto predicted = model.forward(x).argmax(1);
  auto a = cnnviz::grad_cam(model, x, "1", {}, cnnviz::CamOptions());
  CHECK(torch::equal(a.front().target, predicted));
  auto b = cnnviz::grad_cam(model, x, "1", 2);
  CHECK(torch::equal(b.front().target, torch::full({2}, 2, torch::kLong)));
  auto c = cnnviz::grad_cam(model, x, {"1", "3"}, {0, 2});
  REQUIRE(c.maps.size() == 4);
  CHECK(c.num_targets == 2);
  CHECK(torch::allclose(c.at("3", 1).map, cnnviz::grad_cam(model, x, "3", 2).front().map));
  auto d = cnnviz::grad_cam(model, x, "1", std::vector<int64_t>{1, 0});  // one class per sample
  CHECK(torch::equal(d.front().target, torch::tensor({1, 0}, torch::kLong)));
}

// ---------------------------------------------------------------------------------------
// summary: depth, and a filtered table that never prints its rows' sum as the total.

#include "cnnviz/capture.hpp"

namespace {
// A conv-BN block (children "0", "1") with a plain forward, so a Sequential can hold it.
struct ConvBnImpl : torch::nn::Module {
  ConvBnImpl() {
    conv = register_module("0", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1)));
    bn = register_module("1", torch::nn::BatchNorm2d(4));
  }
  torch::Tensor forward(torch::Tensor x) { return torch::relu(bn(conv(x))); }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(ConvBn);

torch::nn::Sequential block_net() {
  torch::manual_seed(0);
  return torch::nn::Sequential(ConvBn(), torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 2, 1)),
                               torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(2, 3));
}
}  // namespace

TEST_CASE("summary: every module, or the blocks at a depth with everything below them") {
  auto seq = block_net();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  int64_t total = 0;
  for (auto& p : seq->parameters()) total += p.numel();

  auto all = cnnviz::summary(model, {3, 8, 8});
  CHECK(all.size() == 7);  // 0, 0.0, 0.1, 1, 2, 3, 4
  CHECK(cnnviz::total_parameters(all) == total);
  CHECK(all[1].name == "0.0");
  CHECK(all[1].output_shape.empty());  // a Sequential's nested modules are not observable: "(not run)"
  CHECK(all[3].output_shape == std::vector<int64_t>{1, 2, 8, 8});
  // Asked for directly (not by a summary), a nested module is refused with the reason.
  CHECK_THROWS_WITH_AS(model.capture(torch::zeros({1, 3, 8, 8}), {{"0.0"}, true, cnnviz::ReluMode::normal}),
                       doctest::Contains("top-level children only"), c10::ValueError);

  auto top = cnnviz::summary(model, {3, 8, 8}, 1);
  REQUIRE(top.size() == 5);
  CHECK(top[0].name == "0");
  CHECK(top[0].num_parameters == 3 * 4 * 9 + 4 + 4 + 4);  // conv weight and bias, BN weight and bias
  CHECK(cnnviz::total_parameters(top) == total);
  CHECK(cnnviz::format_summary(top).find("total parameters: " + std::to_string(total)) != std::string::npos);

  // A filtered table states its rows' sum next to the model's total.
  std::vector<cnnviz::LayerSummary> convs;
  for (auto& r : all)
    if (r.type.find("Conv2d") != std::string::npos) convs.push_back(r);
  REQUIRE(convs.size() == 2);
  auto text = cnnviz::format_summary(convs, cnnviz::total_parameters(all));
  int64_t shown = convs[0].num_parameters + convs[1].num_parameters;
  CHECK(text.find("parameters in these rows: " + std::to_string(shown) + " (model total: " + std::to_string(total) +
                  ")") != std::string::npos);
  CHECK(text.find("total parameters:") == std::string::npos);

  CHECK_THROWS_WITH_AS(cnnviz::summary(model, {3, 8, 8}, -1), doctest::Contains("depth"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::summary(model, {8, 8}), doctest::Contains("input_size"), c10::ValueError);
}
