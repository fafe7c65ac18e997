// Filter statistics, redundancy and CKA against references written out here.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "cnnviz/analysis/cka.hpp"
#include "cnnviz/analysis/filter_statistics.hpp"
#include "cnnviz/analysis/redundancy.hpp"
#include "cnnviz/maximization.hpp"
#include "optimization_fixtures.hpp"

namespace {

using cnnviz::CkaAccumulator;
using cnnviz::CkaKernel;
using cnnviz::CkaOptions;
using cnnviz::FilterStatisticsAccumulator;
using cnnviz::FilterStatisticsOptions;

// Non-negative activations with filters of very different scales and a common offset.
torch::Tensor activations(int64_t n, int64_t c = 6) {
  auto scale = torch::linspace(0.1, 10, c).view({1, c, 1, 1});
  return torch::relu(torch::randn({n, c, 4, 5}, torch::kDouble) * scale + 100).to(torch::kFloat);
}

// Linear CKA as Kornblith et al. write it: centred features, ||Y^T X||^2 / (||X^T X|| ||Y^T Y||).
double textbook_cka(torch::Tensor x, torch::Tensor y) {
  x = x.flatten(1).to(torch::kDouble);
  y = y.flatten(1).to(torch::kDouble);
  x = x - x.mean(0);
  y = y - y.mean(0);
  return (y.t().mm(x).square().sum() / (x.t().mm(x).norm() * y.t().mm(y).norm())).item<double>();
}

// Song et al.'s unbiased HSIC written with explicit sums over the (n, n) kernels.
double unbiased_hsic(const torch::Tensor& k0, const torch::Tensor& l0) {
  const int64_t n = k0.size(0);
  auto k = k0.clone(), l = l0.clone();
  k.fill_diagonal_(0);
  l.fill_diagonal_(0);
  auto ka = k.accessor<double, 2>(), la = l.accessor<double, 2>();
  double trace = 0, sk = 0, sl = 0, cross = 0;
  for (int64_t i = 0; i < n; ++i) {
    double rk = 0, rl = 0;
    for (int64_t j = 0; j < n; ++j) {
      trace += ka[i][j] * la[j][i];
      sk += ka[i][j];
      sl += la[i][j];
      rk += ka[j][i];  // (1^T K)_i
      rl += la[i][j];  // (L 1)_i
    }
    cross += rk * rl;
  }
  return (trace + sk * sl / ((n - 1.0) * (n - 2.0)) - 2.0 / (n - 2.0) * cross) / (n * (n - 3.0));
}

torch::Tensor gram(const torch::Tensor& x) {
  auto f = x.flatten(1).to(torch::kDouble);
  return f.mm(f.t());
}

}  // namespace

TEST_CASE("filter statistics: streaming equals one batch, in any split and any merge order") {
  torch::manual_seed(0);
  auto act = activations(23);
  auto opts = FilterStatisticsOptions().top_k(4).keep_per_image(true);
  FilterStatisticsAccumulator whole(opts);
  whole.update(act);
  auto ref = whole.result();

  // Reference written out from the (N, C) responses (float32 spatial means, like the library).
  auto m = act.mean({2, 3}).to(torch::kDouble);
  CHECK(torch::allclose(ref.mean, m.mean(0), 1e-9, 1e-9));
  CHECK(torch::allclose(ref.std, m.std(0), 1e-5, 1e-7));
  CHECK(torch::allclose(ref.max, act.to(torch::kDouble).amax({0, 2, 3})));
  auto active = (m > m.mean(1, true)).to(torch::kDouble).mean(0);
  CHECK(torch::allclose(ref.fraction_active, active));
  const double n = 23;
  auto tr = (1 - m.mean(0).square() / m.square().mean(0)) / (1 - 1 / n);
  CHECK(torch::allclose(ref.selectivity, tr.clamp(0, 1), 1e-4, 1e-9));
  auto top = m.topk(4, 0);
  CHECK(torch::equal(ref.top_indices, std::get<1>(top).t()));
  CHECK(torch::allclose(ref.top_share, std::get<0>(top)[0] / m.sum(0)));
  CHECK(torch::allclose(ref.per_image, m.to(torch::kFloat)));

  for (std::vector<int64_t> split : {std::vector<int64_t>{1, 22}, {5, 5, 5, 8}, {11, 1, 11}}) {
    FilterStatisticsAccumulator seq(opts), left(opts), right(opts);
    int64_t start = 0;
    for (size_t i = 0; i < split.size(); ++i) {
      auto part = act.slice(0, start, start + split[i]);
      auto idx = torch::arange(start, start + split[i]);
      seq.update(part);
      (i % 2 ? right : left).update(part, idx);
      start += split[i];
    }
    right.merge(left);  // merged out of order: indices keep the images apart
    for (auto* acc : {&seq, &right}) {
      auto r = acc->result();
      CHECK(r.count == 23);
      CHECK(torch::allclose(r.mean, ref.mean, 1e-12, 1e-9));
      CHECK(torch::allclose(r.std, ref.std, 1e-9, 1e-9));
      CHECK(torch::equal(r.max, ref.max));
      CHECK(torch::equal(r.fraction_active, ref.fraction_active));
      CHECK(torch::allclose(r.selectivity, ref.selectivity, 1e-6, 1e-9));
      CHECK(torch::equal(r.top_indices, ref.top_indices));
      CHECK(torch::equal(r.per_image, ref.per_image));
    }
    // The state round-trips.
    auto back = FilterStatisticsAccumulator::from_state(right.state(), opts).result();
    CHECK(torch::equal(back.mean, right.result().mean));
    CHECK(torch::equal(back.top_indices, ref.top_indices));
  }
}

TEST_CASE("filter statistics: consistent and image-specific filters, absolute threshold") {
  // Filter 0 fires for every image, filter 1 for image 3 only, filter 2 never.
  auto act = torch::zeros({10, 3, 2, 2});
  act.select(1, 0).fill_(1);
  act[3][1].fill_(5);
  FilterStatisticsAccumulator acc(FilterStatisticsOptions().threshold(0).relative(false).top_k(2));
  acc.update(act);
  auto s = acc.result();
  CHECK(s.consistent.numel() == 1);
  CHECK(s.consistent[0].item<int64_t>() == 0);
  CHECK(s.specific.numel() == 1);
  CHECK(s.specific[0].item<int64_t>() == 1);
  CHECK(s.selectivity[1].item<double>() == doctest::Approx(1.0));
  CHECK(s.selectivity[0].item<double>() == doctest::Approx(0.0));
  CHECK(s.top_indices[1][0].item<int64_t>() == 3);
  CHECK(s.top_share[1].item<double>() == doctest::Approx(1.0));
}

TEST_CASE("filter statistics: bad input") {
  FilterStatisticsAccumulator acc;
  CHECK_THROWS_WITH_AS(acc.result(), doctest::Contains("no images"), c10::ValueError);
  CHECK_THROWS_WITH_AS(acc.update(torch::randn({4})), doctest::Contains("(N, C, ...)"), c10::ValueError);
  acc.update(torch::randn({2, 3, 4, 4}));
  CHECK_THROWS_WITH_AS(acc.update(torch::randn({2, 5, 4, 4})), doctest::Contains("5 channels"), c10::ValueError);
  CHECK_THROWS_AS(FilterStatisticsAccumulator(FilterStatisticsOptions().top_k(0)), c10::ValueError);
  FilterStatisticsAccumulator other(FilterStatisticsOptions().top_k(2));
  CHECK_THROWS_WITH_AS(acc.merge(other), doctest::Contains("different options"), c10::ValueError);
}

TEST_CASE("filter_statistics and filter_redundancy on a model: batching changes nothing") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(1);
  auto x = torch::randn({9, 3, 16, 16});
  auto a = cnnviz::filter_statistics(model, x, "3", FilterStatisticsOptions().batch_size(4));
  auto b = cnnviz::filter_statistics(model, x, "3", FilterStatisticsOptions().batch_size(9));
  CHECK(torch::allclose(a.mean, b.mean, 1e-5, 1e-6));  // float32 convolutions differ slightly by batch size
  CHECK(torch::equal(a.top_indices, b.top_indices));
  auto act = fixtures::run_upto(seq, x, 3).detach().to(torch::kDouble);
  CHECK(torch::allclose(a.mean, act.mean({2, 3}).mean(0), 1e-6, 1e-7));

  auto r = cnnviz::filter_redundancy(model, "2", x, cnnviz::FilterRedundancyOptions().batch_size(4));
  auto samples = fixtures::run_upto(seq, x, 2).detach().to(torch::kDouble).permute({0, 2, 3, 1}).reshape({-1, 8});
  auto ref = torch::corrcoef(samples.t());
  CHECK(torch::allclose(r.activation_correlation, ref, 1e-5, 1e-6));
  CHECK(r.samples == 9 * 16 * 16);
  auto w = seq[2]->as<torch::nn::Conv2d>()->weight.detach().flatten(1).to(torch::kDouble);
  auto wn = w / w.norm(2, 1, true);
  CHECK(torch::allclose(r.weight_similarity, wn.mm(wn.t()), 1e-9, 1e-9));
  CHECK(r.basis == "activations");
  CHECK_THROWS_WITH_AS(cnnviz::filter_redundancy(model, "1"), doctest::Contains("no filter weights"),
                       c10::ValueError);
}

TEST_CASE("filter redundancy: planted duplicates are grouped; effective number of filters") {
  torch::manual_seed(2);
  auto w = torch::randn({10, 4, 3, 3}, torch::kDouble);
  w[7] = w[2] * 3;    // a scaled copy
  w[9] = w[2] + 1e-3 * torch::randn({4, 3, 3}, torch::kDouble);
  w[5] = w[0];
  auto r = cnnviz::filter_redundancy(w, cnnviz::ChannelCovarianceAccumulator(), {});
  REQUIRE(r.groups.size() == 2);
  CHECK(r.groups[0] == std::vector<int64_t>{2, 7, 9});
  CHECK(r.groups[1] == std::vector<int64_t>{0, 5});
  CHECK(r.basis == "weights");
  CHECK(std::isnan(r.effective_filters_activations));
  // Participation ratio equals the one from the eigenvalues.
  auto ev = torch::linalg::eigvalsh(r.weight_similarity, "L");
  CHECK(r.effective_filters_weights ==
        doctest::Approx((ev.sum().square() / ev.square().sum()).item<double>()).epsilon(1e-9));
  CHECK(r.effective_filters_weights < 10);
  // Orthogonal filters: C effective filters; all copies: 1.
  auto q = std::get<0>(torch::linalg::qr(torch::randn({6, 6}, torch::kDouble)));
  CHECK(cnnviz::filter_redundancy(q, {}, {}).effective_filters_weights == doctest::Approx(6));
  auto copies = torch::randn({1, 5}, torch::kDouble).expand({4, 5}).contiguous();
  CHECK(cnnviz::filter_redundancy(copies, {}, {}).effective_filters_weights == doctest::Approx(1));

  // Activations: channel 3 duplicates channel 1 up to scale and offset, channel 4 is dead.
  cnnviz::ChannelCovarianceAccumulator cov, part1, part2;
  auto act = torch::randn({12, 5, 3, 3});
  act.select(1, 3).copy_(act.select(1, 1) * 2 + 7);
  act.select(1, 4).zero_();
  cov.update(act);
  part1.update(act.slice(0, 0, 5));
  part2.update(act.slice(0, 5, 12));
  part2.merge(part1);
  CHECK(torch::allclose(part2.covariance(), cov.covariance(), 1e-6, 1e-6));
  auto restored = cnnviz::ChannelCovarianceAccumulator::from_state(part2.state());
  CHECK(torch::allclose(restored.correlation(), cov.correlation()));
  auto ra = cnnviz::filter_redundancy(torch::Tensor(), cov, {});
  REQUIRE(ra.groups.size() == 1);
  CHECK(ra.groups[0] == std::vector<int64_t>{1, 3});
  REQUIRE(ra.constant_filters.numel() == 1);
  CHECK(ra.constant_filters[0].item<int64_t>() == 4);
  CHECK(ra.effective_filters_activations < 3.2);  // 3 independent channels plus a copy among 4 live ones
  CHECK_THROWS_WITH_AS(cnnviz::filter_redundancy(torch::Tensor(), cnnviz::ChannelCovarianceAccumulator(), {}),
                       doctest::Contains("neither weights nor activations"), c10::ValueError);
  CHECK_THROWS_AS(cnnviz::filter_redundancy(w, {}, cnnviz::FilterRedundancyOptions().threshold(1.5)), c10::ValueError);
}

TEST_CASE("cka: the textbook formula, the unbiased estimator, identities and invariances") {
  torch::manual_seed(3);
  auto x = torch::randn({30, 8}, torch::kDouble);
  auto y = x.mm(torch::randn({8, 5}, torch::kDouble)) + 0.5 * torch::randn({30, 5}, torch::kDouble);
  y = y.to(torch::kFloat);
  auto xf = x.to(torch::kFloat);
  auto biased = CkaOptions().unbiased(false);
  CkaAccumulator acc(1, 1, biased);
  acc.update({xf}, {y});
  CHECK(acc.result().matrix.item<double>() == doctest::Approx(textbook_cka(x, y)).epsilon(1e-5));

  CkaAccumulator unb(1, 1);
  unb.update({xf}, {y});
  auto r = unb.result();
  double hxy = unbiased_hsic(gram(x), gram(y)), hxx = unbiased_hsic(gram(x), gram(x)),
         hyy = unbiased_hsic(gram(y), gram(y));
  CHECK(r.hsic_ab.item<double>() == doctest::Approx(hxy).epsilon(1e-4));
  CHECK(r.matrix.item<double>() == doctest::Approx(hxy / std::sqrt(hxx * hyy)).epsilon(1e-5));

  // Identical layers: 1; an orthogonal transform and an isotropic scaling change nothing.
  auto q = std::get<0>(torch::linalg::qr(torch::randn({8, 8}, torch::kDouble))).to(torch::kFloat);
  for (bool u : {true, false}) {
    CkaAccumulator same(3, 3, CkaOptions().unbiased(u));
    same.update({xf, xf.mm(q), xf * 7.5});
    auto m = same.result().matrix;
    CHECK(torch::allclose(m, torch::ones({3, 3}, torch::kDouble), 1e-5, 1e-5));
    CkaAccumulator inv(1, 3, CkaOptions().unbiased(u));
    inv.update({y}, {xf, xf.mm(q), xf * 0.01});
    auto row = inv.result().matrix[0];
    CHECK(row[1].item<double>() == doctest::Approx(row[0].item<double>()).epsilon(1e-5));
    CHECK(row[2].item<double>() == doctest::Approx(row[0].item<double>()).epsilon(1e-5));
  }

  // RBF: identical layers 1, equal to the formula with the median heuristic.
  CkaAccumulator rbf(1, 1, CkaOptions().kernel(CkaKernel::rbf).unbiased(false));
  rbf.update({xf}, {xf * 3});
  CHECK(rbf.result().matrix.item<double>() == doctest::Approx(1.0).epsilon(1e-6));
  CHECK_THROWS_WITH_AS(rbf.update({xf}, {xf}), doctest::Contains("single batch"), c10::ValueError);
}

TEST_CASE("cka: the minibatch estimate converges to the full-data one; merging is summing") {
  torch::manual_seed(4);
  const int64_t n = 2000;
  auto z = torch::randn({n, 6});
  auto a = torch::cat({z, torch::randn({n, 4})}, 1);
  auto b = z.mm(torch::randn({6, 3})) + torch::randn({n, 3});
  const double full = textbook_cka(a, b);
  CkaAccumulator mini(1, 1), left(1, 1), right(1, 1);
  for (int64_t s = 0; s < n; s += 100) {
    mini.update({a.slice(0, s, s + 100)}, {b.slice(0, s, s + 100)});
    (s < 1000 ? left : right).update({a.slice(0, s, s + 100)}, {b.slice(0, s, s + 100)});
  }
  CHECK(mini.result().matrix.item<double>() == doctest::Approx(full).epsilon(0.03));
  // The biased estimator on the same batches is off by more (it depends on the batch size).
  CkaAccumulator small_biased(1, 1, CkaOptions().unbiased(false));
  for (int64_t s = 0; s < n; s += 10) small_biased.update({a.slice(0, s, s + 10)}, {b.slice(0, s, s + 10)});
  CHECK(std::abs(small_biased.result().matrix.item<double>() - full) >
        std::abs(mini.result().matrix.item<double>() - full));
  left.merge(right);
  CHECK(torch::allclose(left.result().matrix, mini.result().matrix, 1e-12, 1e-12));
  auto back = CkaAccumulator::from_state(left.state());
  CHECK(back.result().samples == n);
  // A batch too small for the unbiased estimator is skipped and counted.
  mini.update({a.slice(0, 0, 3)}, {b.slice(0, 0, 3)});
  CHECK(mini.result().skipped_samples == 3);
}

TEST_CASE("cka: bad input") {
  CkaAccumulator acc(2, 1);
  CHECK_THROWS_WITH_AS(acc.update({torch::randn({8, 3}), torch::randn({7, 3})}, {torch::randn({8, 2})}),
                       doctest::Contains("different sample counts"), c10::ValueError);
  CHECK_THROWS_WITH_AS(acc.update({torch::randn({8, 3})}, {torch::randn({8, 2})}),
                       doctest::Contains("expected 2 activations"), c10::ValueError);
  CHECK_THROWS_WITH_AS(acc.result(), doctest::Contains("no batch"), c10::ValueError);
  CHECK_THROWS_AS(CkaAccumulator(1, 1, CkaOptions().kernel(static_cast<CkaKernel>(7))), c10::ValueError);
  CHECK_THROWS_AS(CkaAccumulator(0, 1), c10::ValueError);
}

TEST_CASE("cka on models: one model against itself is 1 on the diagonal") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(5);
  auto x = torch::randn({24, 3, 16, 16});
  auto r = cnnviz::cka(model, nullptr, x, {"1", "3", "6"}, {}, CkaOptions().batch_size(8));
  CHECK(r.batches == 3);
  CHECK(torch::allclose(r.matrix.diagonal(), torch::ones({3}, torch::kDouble), 1e-6, 1e-6));
  CHECK(torch::allclose(r.matrix, r.matrix.t(), 1e-9, 1e-9));
  auto other = cnnviz::cka(model, &model, x, {"1", "3", "6"}, {"6"}, CkaOptions().batch_size(8));
  CHECK(torch::allclose(other.matrix.select(1, 0), r.matrix.select(1, 2), 1e-9, 1e-9));
}

TEST_CASE("top_filters: ranked per image, optionally against a reference") {
  auto seq = fixtures::small_cnn();
  cnnviz::AnyModel model = cnnviz::SequentialModel(seq);
  torch::manual_seed(6);
  auto x = torch::randn({3, 3, 16, 16});
  auto act = fixtures::run_upto(seq, x, 5).detach().to(torch::kDouble);
  auto m = act.mean({2, 3});
  auto top = cnnviz::top_filters(model, x, "5", 4);
  REQUIRE(top.channels.sizes() == torch::IntArrayRef({3, 4}));
  CHECK(torch::equal(top.channels, std::get<1>(m.topk(4, 1))));
  CHECK(torch::allclose(top.scores, std::get<0>(m.topk(4, 1)), 1e-6, 1e-6));
  auto ref = cnnviz::filter_statistics(model, torch::randn({20, 3, 16, 16}), "5");
  auto rel = cnnviz::top_filters(model, x, "5", 4, cnnviz::Reduction::mean, {ref.mean, ref.std, "zscore"});
  auto z = (m - ref.mean) / ref.std;
  CHECK(torch::equal(rel.channels, std::get<1>(z.topk(4, 1))));
  CHECK(torch::allclose(rel.activations, m.gather(1, rel.channels), 1e-6, 1e-6));
  // Ratio on the ReLU after it (non-negative means; a silent filter's mean floored at 1% of the median).
  auto ref6 = cnnviz::filter_statistics(model, torch::randn({20, 3, 16, 16}), "6");
  auto m6 = fixtures::run_upto(seq, x, 6).detach().to(torch::kDouble).mean({2, 3});
  auto ratio = cnnviz::top_filters(model, x, "6", 4, cnnviz::Reduction::mean, {ref6.mean, {}, "ratio"});
  auto floor = ref6.mean.median().item<double>() * 1e-2;
  CHECK(torch::equal(ratio.channels, std::get<1>((m6 / ref6.mean.clamp_min(floor)).topk(4, 1))));
  CHECK_THROWS_WITH_AS(cnnviz::top_filters(model, x, "5", 4, cnnviz::Reduction::max, {ref.mean, ref.std}),
                       doctest::Contains("reduction='mean'"), c10::ValueError);
  CHECK_THROWS_WITH_AS(cnnviz::top_filters(model, x, "5", 4, cnnviz::Reduction::mean, {ref.mean.slice(0, 0, 5), ref.std}),
                       doctest::Contains("must be (12,)"), c10::ValueError);
}
