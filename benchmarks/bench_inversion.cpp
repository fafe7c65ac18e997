// The inversion step for C++ users, no Python involved: cnnviz::invert on a VGG16-style
// trunk (torch::nn::Sequential, random weights, up to conv4_1 + ReLU, the notebook's
// features.18) against the notebook's loop written in C++ (SGD with momentum,
// loss.backward() with the parameters requiring grad); and maximization's transforms, one
// grid_sample for the batch against Lucent's separate pad / crop / interpolate / rotate ops.
// The argument is the intra-op thread count (at::set_num_threads); times are per step.
//
//   build/<dir>/benchmarks/bench_inversion --benchmark_min_time=2
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cmath>
#include <random>

#include "cnnviz/detail/transforms.hpp"
#include "cnnviz/inversion.hpp"
#include "cnnviz/maximization.hpp"

namespace {
using torch::Tensor;
constexpr int64_t kSteps = 4;
constexpr int64_t kSize = 112;  // half the notebook's 224 keeps a repetition near a second

/// VGG16's features up to index 18 (conv4_1's ReLU).
torch::nn::Sequential vgg16_trunk() {
  using namespace torch::nn;
  torch::manual_seed(0);
  Sequential seq;
  int64_t cin = 3;
  for (auto block : std::vector<std::vector<int64_t>>{{64, 64}, {128, 128}, {256, 256, 256}, {512}}) {
    for (auto cout : block) {
      seq->push_back(Conv2d(Conv2dOptions(cin, cout, 3).padding(1)));
      seq->push_back(ReLU(ReLUOptions().inplace(true)));
      cin = cout;
    }
    if (block.size() > 1) seq->push_back(MaxPool2d(2));
  }
  return seq;  // 19 children: 0 .. 18
}

struct Fixture {
  torch::nn::Sequential seq = vgg16_trunk();
  Tensor x = torch::randn({1, 3, kSize, kSize});
  Tensor noise = torch::randn({1, 3, kSize, kSize});
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void with_threads(benchmark::State& state, const std::function<void()>& body) {
  const int saved = at::get_num_threads();
  at::set_num_threads(static_cast<int>(state.range(0)));
  for (auto _ : state) body();
  state.SetItemsProcessed(state.iterations() * kSteps);  // items/s = steps per second
  at::set_num_threads(saved);
}

void BM_invert_cnnviz(benchmark::State& state) {
  auto& f = fixture();
  cnnviz::AnyModel model = cnnviz::SequentialModel(f.seq);
  auto opts = cnnviz::InversionOptions().iterations(kSteps).init_image(f.noise).clamp_pixels(false);
  with_threads(state, [&] { benchmark::DoNotOptimize(cnnviz::invert(model, f.x, "18", opts).image.data_ptr()); });
}

/// The notebook's feature_inversion in C++: parameters require grad, loss.backward().
void BM_invert_notebook_loop(benchmark::State& state) {
  auto& f = fixture();
  auto upto = [&](Tensor h) {
    for (auto& m : *f.seq) h = m.forward(h);
    return h;
  };
  with_threads(state, [&] {
    Tensor target;
    {
      torch::NoGradGuard no_grad;
      target = upto(f.x);
    }
    auto z = f.noise.clone().requires_grad_(true);
    torch::optim::SGD sgd({z}, torch::optim::SGDOptions(1e3).momentum(0.9));
    for (int64_t i = 0; i < kSteps; ++i) {
      sgd.zero_grad();
      auto a = upto(z);
      auto loss = (a - target).pow(2).sum() / target.pow(2).sum() + 1e-7 * z.pow(6).sum() +
                  1e-8 * ((z.narrow(3, 1, kSize - 1) - z.narrow(3, 0, kSize - 1)).narrow(2, 0, kSize - 1).pow(2) +
                          (z.narrow(2, 1, kSize - 1) - z.narrow(2, 0, kSize - 1)).narrow(3, 0, kSize - 1).pow(2))
                             .sum();
      loss.backward();
      sgd.step();
      benchmark::DoNotOptimize(loss.item<double>());
    }
  });
}

/// Lucent's transforms for a batch of 8 images of 128 x 128, forward and backward.
void transforms_bench(benchmark::State& state, bool fused) {
  const int saved = at::get_num_threads();
  at::set_num_threads(static_cast<int>(state.range(0)));
  auto x = torch::randn({8, 3, 128, 128}).requires_grad_(true);
  std::mt19937_64 rng(0);
  cnnviz::detail::TransformRanges ranges{12, 8, 0.9, 1.1, 10};
  namespace F = torch::nn::functional;
  for (auto _ : state) {
    Tensor y;
    if (fused) {
      y = cnnviz::detail::random_transform(x, ranges, rng);
    } else {
      std::vector<Tensor> out;
      for (int64_t i = 0; i < x.size(0); ++i) {  // per image, as each gets its own draw
        auto t = F::pad(x.narrow(0, i, 1), F::PadFuncOptions({12, 12, 12, 12}));
        std::uniform_int_distribution<int64_t> shift(0, 8);
        t = t.narrow(2, shift(rng), t.size(2) - 8).narrow(3, shift(rng), t.size(3) - 8);
        std::uniform_real_distribution<double> s(0.9, 1.1), a(-10, 10);
        t = F::interpolate(t, F::InterpolateFuncOptions().scale_factor(std::vector<double>{s(rng), s(rng)})
                                  .mode(torch::kBilinear).align_corners(false).recompute_scale_factor(true));
        double r = a(rng) * M_PI / 180;
        auto theta = torch::tensor({std::cos(r), -std::sin(r), 0.0, std::sin(r), std::cos(r), 0.0}).view({1, 2, 3});
        t = F::grid_sample(t, F::affine_grid(theta, t.sizes(), false),
                           F::GridSampleFuncOptions().align_corners(false));
        out.push_back(t.narrow(2, 0, 120).narrow(3, 0, 120));  // common size for cat (>= 0.9 * 140)
      }
      y = torch::cat(out);
    }
    auto g = torch::autograd::grad({y.pow(2).sum()}, {x})[0];
    benchmark::DoNotOptimize(g.data_ptr());
  }
  at::set_num_threads(saved);
}
void BM_transforms_one_grid_sample(benchmark::State& s) { transforms_bench(s, true); }
void BM_transforms_separate_ops(benchmark::State& s) { transforms_bench(s, false); }

}  // namespace

BENCHMARK(BM_invert_cnnviz)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_invert_notebook_loop)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_transforms_one_grid_sample)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_transforms_separate_ops)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
