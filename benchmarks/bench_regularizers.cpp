// Fused regularizers against the composed ATen expressions a user would write, forward and
// backward (gradient with respect to the image) on one 3 x 224 x 224 image. The argument
// is the intra-op thread count (at::set_num_threads).
//
//   build/<dir>/benchmarks/bench_regularizers --benchmark_min_time=0.5 \
//       --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//
// glibc returns freed 600 KB buffers to the system when the top of the heap holds enough
// of them, so each temporary of the composed expressions costs page faults; to measure
// with that cost removed, run with
// GLIBC_TUNABLES=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=134217728
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <functional>

#include "cnnviz/regularizers.hpp"

namespace {
using torch::Tensor;
namespace I = torch::indexing;

Tensor aten_alpha_norm(const Tensor& x, double alpha) { return x.abs().pow(alpha).sum(); }

Tensor aten_total_variation(const Tensor& x, double beta) {
  auto c = x.index({"...", I::Slice(0, -1), I::Slice(0, -1)});
  auto dh = x.index({"...", I::Slice(0, -1), I::Slice(1, I::None)}) - c;
  auto dv = x.index({"...", I::Slice(1, I::None), I::Slice(0, -1)}) - c;
  return (dh.pow(2) + dv.pow(2)).pow(beta / 2).sum();
}

Tensor aten_euclidean_loss(const Tensor& t, const Tensor& c) {
  return (c - t).pow(2).sum() / t.pow(2).sum();
}

/// Times value + gradient of f at a fixed image.
void run(benchmark::State& state, const std::function<Tensor(const Tensor&)>& f) {
  const int saved = at::get_num_threads();
  at::set_num_threads(static_cast<int>(state.range(0)));
  torch::manual_seed(0);
  auto x = torch::randn({1, 3, 224, 224}).requires_grad_();
  for (auto _ : state) {
    auto g = torch::autograd::grad({f(x)}, {x})[0];
    benchmark::DoNotOptimize(g.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * x.numel());
  at::set_num_threads(saved);
}

const Tensor& target() {
  static Tensor t = torch::randn({1, 3, 224, 224});
  return t;
}

// The exponents of the notebook (alpha = 6, beta = 2), beta = 1 (square roots) and
// exponents without fast paths (pow).
void BM_alpha_norm_6_fused(benchmark::State& s) { run(s, [](auto& x) { return cnnviz::alpha_norm(x, 6); }); }
void BM_alpha_norm_6_aten(benchmark::State& s) { run(s, [](auto& x) { return aten_alpha_norm(x, 6); }); }
void BM_alpha_norm_2_5_fused(benchmark::State& s) { run(s, [](auto& x) { return cnnviz::alpha_norm(x, 2.5); }); }
void BM_alpha_norm_2_5_aten(benchmark::State& s) { run(s, [](auto& x) { return aten_alpha_norm(x, 2.5); }); }
void BM_total_variation_2_fused(benchmark::State& s) { run(s, [](auto& x) { return cnnviz::total_variation(x, 2); }); }
void BM_total_variation_2_aten(benchmark::State& s) { run(s, [](auto& x) { return aten_total_variation(x, 2); }); }
void BM_total_variation_1_fused(benchmark::State& s) { run(s, [](auto& x) { return cnnviz::total_variation(x, 1); }); }
void BM_total_variation_1_aten(benchmark::State& s) { run(s, [](auto& x) { return aten_total_variation(x, 1); }); }
void BM_total_variation_1_5_fused(benchmark::State& s) { run(s, [](auto& x) { return cnnviz::total_variation(x, 1.5); }); }
void BM_total_variation_1_5_aten(benchmark::State& s) { run(s, [](auto& x) { return aten_total_variation(x, 1.5); }); }
void BM_euclidean_loss_fused(benchmark::State& s) { run(s, [](auto& x) { return cnnviz::euclidean_loss(target(), x); }); }
void BM_euclidean_loss_aten(benchmark::State& s) { run(s, [](auto& x) { return aten_euclidean_loss(target(), x); }); }
// One autograd round trip with the cheapest reduction: the floor under every case above.
void BM_autograd_floor_sum(benchmark::State& s) { run(s, [](auto& x) { return x.sum(); }); }
}  // namespace

#define CNNVIZ_BENCH(name) BENCHMARK(name)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime()
CNNVIZ_BENCH(BM_alpha_norm_6_fused);
CNNVIZ_BENCH(BM_alpha_norm_6_aten);
CNNVIZ_BENCH(BM_alpha_norm_2_5_fused);
CNNVIZ_BENCH(BM_alpha_norm_2_5_aten);
CNNVIZ_BENCH(BM_total_variation_2_fused);
CNNVIZ_BENCH(BM_total_variation_2_aten);
CNNVIZ_BENCH(BM_total_variation_1_fused);
CNNVIZ_BENCH(BM_total_variation_1_aten);
CNNVIZ_BENCH(BM_total_variation_1_5_fused);
CNNVIZ_BENCH(BM_total_variation_1_5_aten);
CNNVIZ_BENCH(BM_euclidean_loss_fused);
CNNVIZ_BENCH(BM_euclidean_loss_aten);
CNNVIZ_BENCH(BM_autograd_floor_sum);

BENCHMARK_MAIN();
