// Image I/O and rendering. The argument is the intra-op thread count (at::set_num_threads).
// The resize pairs compare the separable antialiased filter of image.hpp with torch 1.13's
// antialiased interpolate, which computes the same weights. Decoding needs the sample data
// (CNNVIZ_DATA) and is skipped without it.
//
//   build/<dir>/benchmarks/bench_image --benchmark_min_time=1
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cnnviz/image.hpp"
#include "cnnviz/metrics.hpp"

namespace {

struct Threads {
  int saved;
  explicit Threads(int64_t n) : saved(at::get_num_threads()) { at::set_num_threads(static_cast<int>(n)); }
  ~Threads() { at::set_num_threads(saved); }
};

std::vector<uint8_t> sample(const std::string& name) {
  const char* env = std::getenv("CNNVIZ_DATA");
  std::ifstream f(std::string(env ? env : "../shared/data") + "/images/" + name, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void decode(benchmark::State& state, const char* name) {
  Threads threads(state.range(0));
  auto bytes = sample(name);
  if (bytes.empty()) {
    state.SkipWithError("sample data not found (set CNNVIZ_DATA)");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(cnnviz::decode_image(bytes.data(), bytes.size()).data_ptr());
}
void BM_decode_jpeg_768x576(benchmark::State& s) { decode(s, "dog.jpg"); }
void BM_decode_png_512x512(benchmark::State& s) { decode(s, "astronaut.png"); }

torch::Tensor photo() {
  // A smooth 576 x 768 image when the data is missing: resizing cost does not depend on content.
  static torch::Tensor img = [] {
    auto bytes = sample("dog.jpg");
    if (!bytes.empty()) return cnnviz::decode_image(bytes.data(), bytes.size());
    return cnnviz::as_image_tensor(torch::rand({576, 768, 3}));
  }();
  return img;
}

// ImageNet evaluation input: shorter side 256, center 224.
void BM_preprocess_256_224(benchmark::State& state) {
  Threads threads(state.range(0));
  auto img = photo();
  for (auto _ : state)
    benchmark::DoNotOptimize(cnnviz::preprocess(img, cnnviz::PreprocessOptions(224).resize(256)).data_ptr());
}

// The same with torch's antialiased interpolate and a crop.
void BM_preprocess_256_224_torch_interpolate(benchmark::State& state) {
  Threads threads(state.range(0));
  auto img = photo();
  auto mean = torch::tensor(cnnviz::kImageNetMean, torch::kFloat).view({1, 3, 1, 1});
  auto std = torch::tensor(cnnviz::kImageNetStd, torch::kFloat).view({1, 3, 1, 1});
  namespace F = torch::nn::functional;
  for (auto _ : state) {
    auto x = img.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat) / 255.0;
    x = F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<int64_t>{256, 341}).mode(torch::kBilinear)
                              .align_corners(false).antialias(true));
    x = x.narrow(2, 16, 224).narrow(3, 58, 224);
    benchmark::DoNotOptimize(((x - mean) / std).contiguous().data_ptr());
  }
}

void BM_resize_image_to_224(benchmark::State& state) {
  Threads threads(state.range(0));
  auto img = photo();
  for (auto _ : state) benchmark::DoNotOptimize(cnnviz::resize_image(img, 224, 224).data_ptr());
}

void BM_colormap_224(benchmark::State& state) {
  Threads threads(state.range(0));
  auto m = torch::randn({224, 224});
  for (auto _ : state) benchmark::DoNotOptimize(cnnviz::colormap(m, "viridis").data_ptr());
}

void BM_overlay_7x7_on_224(benchmark::State& state) {
  Threads threads(state.range(0));
  auto img = cnnviz::resize_image(photo(), 224, 224);
  auto cam = torch::rand({7, 7});
  for (auto _ : state) benchmark::DoNotOptimize(cnnviz::overlay(img, cam).data_ptr());
}

void BM_make_grid_64x3x32x32(benchmark::State& state) {
  Threads threads(state.range(0));
  auto batch = torch::rand({64, 3, 32, 32});
  for (auto _ : state) benchmark::DoNotOptimize(cnnviz::make_grid(batch).data_ptr());
}

void BM_ssim_Nx3x224x224(benchmark::State& state) {
  Threads threads(state.range(0));
  auto a = torch::rand({state.range(1), 3, 224, 224});
  auto b = (a + 0.1 * torch::randn_like(a)).clamp(0, 1);
  for (auto _ : state) benchmark::DoNotOptimize(cnnviz::ssim(a, b).item<float>());
}

}  // namespace

BENCHMARK(BM_decode_jpeg_768x576)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_png_512x512)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_preprocess_256_224)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_preprocess_256_224_torch_interpolate)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_resize_image_to_224)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_colormap_224)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_overlay_7x7_on_224)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_make_grid_64x3x32x32)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ssim_Nx3x224x224)->Args({1, 1})->Args({1, 8})->Args({2, 8})->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
