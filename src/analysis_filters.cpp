// Numeric bodies of the filter analyses: filter statistics, redundancy, CKA.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "cnnviz/analysis/cka.hpp"
#include "cnnviz/analysis/filter_statistics.hpp"
#include "cnnviz/analysis/redundancy.hpp"
#include "cnnviz/capture.hpp"
#include "cnnviz/detail/checked_capture.hpp"
#include "cnnviz/image.hpp"

namespace cnnviz {
namespace {

using torch::indexing::Slice;

constexpr auto kF64 = torch::kDouble;

/// activations (N, C, ...) -> (N, C, P) float32 (a 2-D layer: P = 1), checked.
torch::Tensor channels_by_positions(const torch::Tensor& act, const char* fn) {
  TORCH_CHECK_VALUE(act.defined() && act.dim() >= 2, "cnnviz: ", fn, ": activations must be (N, C, ...), got ",
                    act.defined() ? act.sizes() : c10::IntArrayRef{});
  TORCH_CHECK_VALUE(act.size(0) > 0 && act.size(1) > 0, "cnnviz: ", fn,
                    ": activations have no images or no channels: shape ", act.sizes());
  TORCH_CHECK_VALUE(act.is_floating_point(), "cnnviz: ", fn, ": activations must be floating point, got ",
                    act.scalar_type());
  // float64 stays float64; half precision is widened so sums do not overflow or round away.
  auto a = act.scalar_type() == torch::kDouble ? act.detach() : act.detach().to(torch::kFloat);
  return a.dim() == 2 ? a.unsqueeze(2) : a.flatten(2);
}

/// Chan et al.: merges (n_a, mean_a, m2_a) with (n_b, mean_b, m2_b) in place.
void chan_merge(int64_t na, torch::Tensor& mean, torch::Tensor& m2, int64_t nb, const torch::Tensor& mean_b,
                const torch::Tensor& m2_b) {
  double n = static_cast<double>(na + nb);
  auto delta = mean_b - mean;
  mean = mean + delta * (static_cast<double>(nb) / n);
  m2 = m2 + m2_b + delta * delta * (static_cast<double>(na) * static_cast<double>(nb) / n);
}

/// The k largest rows of values (R, C) per column, with their indices (R, C): exact merge of top-k lists.
void merge_top(torch::Tensor& values, torch::Tensor& indices, const torch::Tensor& new_values,
               const torch::Tensor& new_indices, int64_t k) {
  auto v = torch::cat({values, new_values}, 0), i = torch::cat({indices, new_indices}, 0);
  auto top = v.topk(std::min<int64_t>(k, v.size(0)), 0);
  values = std::get<0>(top);
  indices = i.gather(0, std::get<1>(top));
}

torch::Tensor sorted_by(const torch::Tensor& members, const torch::Tensor& key) {
  if (members.numel() == 0) return members;
  auto order = key.index_select(0, members).argsort(0, /*descending=*/true);
  return members.index_select(0, order);
}

int64_t scalar_count(const std::map<std::string, torch::Tensor>& state, const char* key, const char* fn) {
  auto it = state.find(key);
  TORCH_CHECK_VALUE(it != state.end() && it->second.defined() && it->second.numel() == 1, "cnnviz: ", fn,
                    ": the state has no scalar '", key, "'");
  return it->second.item<int64_t>();
}

torch::Tensor state_tensor(const std::map<std::string, torch::Tensor>& state, const char* key, const char* fn) {
  auto it = state.find(key);
  TORCH_CHECK_VALUE(it != state.end() && it->second.defined(), "cnnviz: ", fn, ": the state has no '", key, "'");
  return it->second.detach().cpu();
}

/// Batches [start, end) of x in steps of batch_size.
template <class F>
void for_batches(const torch::Tensor& x, int64_t batch_size, const char* fn, F&& f) {
  TORCH_CHECK_VALUE(batch_size >= 1, "cnnviz: ", fn, ": batch_size must be at least 1, got ", batch_size);
  for (int64_t s = 0; s < x.size(0); s += batch_size) f(x.slice(0, s, std::min(x.size(0), s + batch_size)));
}

torch::Tensor capture_one(const AnyModel& model, const torch::Tensor& x, const std::string& layer, const char* fn) {
  torch::NoGradGuard no_grad;
  auto r = detail::checked_capture(model, x, CaptureRequest{{layer}, false}, fn);
  return r.activations.front().second;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Filter statistics

FilterStatisticsAccumulator::FilterStatisticsAccumulator(FilterStatisticsOptions options) : options_(options) {
  const auto& o = options_;
  TORCH_CHECK_VALUE(o.top_k() >= 1, "cnnviz: filter_statistics: top_k must be at least 1, got ", o.top_k());
  TORCH_CHECK_VALUE(std::isfinite(o.threshold()), "cnnviz: filter_statistics: threshold must be finite");
  TORCH_CHECK_VALUE(o.consistent_fraction() > 0 && o.consistent_fraction() <= 1 && o.specific_fraction() >= 0 &&
                        o.specific_fraction() < o.consistent_fraction(),
                    "cnnviz: filter_statistics: need 0 <= specific_fraction < consistent_fraction <= 1, got ",
                    o.specific_fraction(), " and ", o.consistent_fraction());
}

void FilterStatisticsAccumulator::update(const torch::Tensor& activations, const torch::Tensor& indices) {
  const char* fn = "filter_statistics";
  auto flat = channels_by_positions(activations, fn);
  const int64_t n = flat.size(0), c = flat.size(1);
  if (count_ == 0 && !mean_.defined()) {
    mean_ = torch::zeros({c}, kF64);
    m2_ = torch::zeros({c}, kF64);
    max_ = torch::full({c}, -std::numeric_limits<double>::infinity(), kF64);
    active_ = torch::zeros({c}, torch::kLong);
    top_values_ = torch::empty({0, c}, kF64);
    top_indices_ = torch::empty({0, c}, torch::kLong);
  }
  TORCH_CHECK_VALUE(mean_.size(0) == c, "cnnviz: ", fn, ": this batch's layer has ", c,
                    " channels, earlier batches had ", mean_.size(0));
  torch::Tensor idx;
  if (indices.defined()) {
    TORCH_CHECK_VALUE(indices.dim() == 1 && indices.size(0) == n, "cnnviz: ", fn, ": indices must be (", n,
                      ",), got ", indices.sizes());
    idx = indices.detach().to(torch::kLong).cpu();
  } else {
    idx = torch::arange(count_, count_ + n, torch::kLong);
  }
  auto m = flat.mean(2).to(kF64).cpu();  // (N, C) responses
  TORCH_CHECK_VALUE(torch::isfinite(m).all().item<bool>(), "cnnviz: ", fn, ": the activations have NaN or "
                    "infinite values");
  auto mean_b = m.mean(0);
  auto m2_b = (m - mean_b).square().sum(0);
  chan_merge(count_, mean_, m2_, n, mean_b, m2_b);
  max_ = torch::maximum(max_, std::get<0>(flat.amax(2).max(0)).to(kF64).cpu());
  auto thr = options_.relative() ? m.mean(1, true) * options_.threshold()
                                 : torch::full({n, 1}, options_.threshold(), kF64);
  active_ += (m > thr).sum(0);
  merge_top(top_values_, top_indices_, m, idx.unsqueeze(1).expand({n, c}), options_.top_k());
  if (options_.keep_per_image()) {
    per_image_.push_back(m.to(torch::kFloat));
    per_image_indices_.push_back(idx);
  }
  count_ += n;
}

void FilterStatisticsAccumulator::merge(const FilterStatisticsAccumulator& other) {
  const auto &a = options_, &b = other.options_;
  TORCH_CHECK_VALUE(a.threshold() == b.threshold() && a.relative() == b.relative() && a.top_k() == b.top_k() &&
                        a.keep_per_image() == b.keep_per_image(),
                    "cnnviz: filter_statistics: merging accumulators with different options (threshold, relative, "
                    "top_k, keep_per_image)");
  if (other.count_ == 0) return;
  if (count_ == 0) {
    auto keep = options_;
    *this = other;
    options_ = keep;
    return;
  }
  TORCH_CHECK_VALUE(mean_.size(0) == other.mean_.size(0), "cnnviz: filter_statistics: merging statistics of ",
                    mean_.size(0), " and ", other.mean_.size(0), " channels");
  chan_merge(count_, mean_, m2_, other.count_, other.mean_, other.m2_);
  max_ = torch::maximum(max_, other.max_);
  active_ = active_ + other.active_;
  merge_top(top_values_, top_indices_, other.top_values_, other.top_indices_, options_.top_k());
  per_image_.insert(per_image_.end(), other.per_image_.begin(), other.per_image_.end());
  per_image_indices_.insert(per_image_indices_.end(), other.per_image_indices_.begin(),
                            other.per_image_indices_.end());
  count_ += other.count_;
}

FilterStatistics FilterStatisticsAccumulator::result() const {
  TORCH_CHECK_VALUE(count_ > 0, "cnnviz: filter_statistics: no images were given (the batches were empty)");
  const double n = static_cast<double>(count_);
  FilterStatistics r;
  r.count = count_;
  r.mean = mean_.clone();
  r.std = count_ > 1 ? (m2_ / (n - 1)).sqrt() : torch::zeros_like(m2_);
  r.max = max_.clone();
  r.fraction_active = active_.to(kF64) / n;
  auto second_moment = mean_.square() + m2_ / n;  // mean of m^2
  if (count_ > 1) {
    auto ratio = torch::where(second_moment > 0, mean_.square() / second_moment, torch::ones_like(mean_));
    r.selectivity = ((1 - ratio) / (1 - 1 / n)).clamp(0, 1);
  } else {
    r.selectivity = torch::zeros_like(mean_);
  }
  auto total = mean_ * n;
  r.top_share = torch::where(total > 0, top_values_[0] / total,
                             torch::full_like(total, std::numeric_limits<double>::quiet_NaN()));
  r.top_values = top_values_.t().contiguous();
  r.top_indices = top_indices_.t().contiguous();
  const auto& o = options_;
  r.consistent = sorted_by(torch::nonzero(r.fraction_active >= o.consistent_fraction()).flatten(), r.mean);
  r.specific = sorted_by(torch::nonzero((active_ > 0) & (r.fraction_active <= o.specific_fraction())).flatten(),
                         r.selectivity);
  if (!per_image_.empty()) {
    auto idx = torch::cat(per_image_indices_);
    auto order = idx.argsort();
    r.per_image = torch::cat(per_image_).index_select(0, order);
    r.per_image_indices = idx.index_select(0, order);
  }
  return r;
}

std::map<std::string, torch::Tensor> FilterStatisticsAccumulator::state() const {
  std::map<std::string, torch::Tensor> s{{"count", torch::tensor(count_, torch::kLong)}};
  if (count_ == 0) return s;
  s["mean"] = mean_;
  s["m2"] = m2_;
  s["max"] = max_;
  s["active"] = active_;
  s["top_values"] = top_values_;
  s["top_indices"] = top_indices_;
  if (!per_image_.empty()) {
    s["per_image"] = torch::cat(per_image_);
    s["per_image_indices"] = torch::cat(per_image_indices_);
  }
  return s;
}

FilterStatisticsAccumulator FilterStatisticsAccumulator::from_state(const std::map<std::string, torch::Tensor>& s,
                                                                    FilterStatisticsOptions options) {
  const char* fn = "FilterStatisticsAccumulator.from_state";
  FilterStatisticsAccumulator acc(options);
  acc.count_ = scalar_count(s, "count", fn);
  TORCH_CHECK_VALUE(acc.count_ >= 0, "cnnviz: ", fn, ": negative count");
  if (acc.count_ == 0) return acc;
  acc.mean_ = state_tensor(s, "mean", fn).to(kF64);
  const int64_t c = acc.mean_.numel();
  acc.m2_ = state_tensor(s, "m2", fn).to(kF64);
  acc.max_ = state_tensor(s, "max", fn).to(kF64);
  acc.active_ = state_tensor(s, "active", fn).to(torch::kLong);
  acc.top_values_ = state_tensor(s, "top_values", fn).to(kF64);
  acc.top_indices_ = state_tensor(s, "top_indices", fn).to(torch::kLong);
  TORCH_CHECK_VALUE(acc.mean_.dim() == 1 && acc.m2_.sizes() == acc.mean_.sizes() &&
                        acc.max_.sizes() == acc.mean_.sizes() && acc.active_.sizes() == acc.mean_.sizes() &&
                        acc.top_values_.dim() == 2 && acc.top_values_.size(1) == c &&
                        acc.top_indices_.sizes() == acc.top_values_.sizes(),
                    "cnnviz: ", fn, ": inconsistent shapes in the state");
  if (s.count("per_image")) {
    TORCH_CHECK_VALUE(options.keep_per_image(), "cnnviz: ", fn, ": the state has per-image responses but "
                      "keep_per_image is off");
    acc.per_image_.push_back(state_tensor(s, "per_image", fn).to(torch::kFloat));
    acc.per_image_indices_.push_back(state_tensor(s, "per_image_indices", fn).to(torch::kLong));
  }
  return acc;
}

FilterStatistics filter_statistics(const AnyModel& model, const torch::Tensor& x, const Layer& layer,
                                   const FilterStatisticsOptions& options) {
  check_image_batch(x);
  detail::check_layers(model, {layer});
  FilterStatisticsAccumulator acc(options);
  for_batches(x, options.batch_size(), "filter_statistics",
              [&](const torch::Tensor& b) { acc.update(capture_one(model, b, layer, "filter_statistics")); });
  return acc.result();
}

// ---------------------------------------------------------------------------------------------
// Redundancy

void ChannelCovarianceAccumulator::update(const torch::Tensor& activations) {
  auto flat = channels_by_positions(activations, "filter_redundancy");
  const int64_t c = flat.size(1);
  auto samples = flat.permute({0, 2, 1}).reshape({-1, c});  // (N * P, C)
  const int64_t n = samples.size(0);
  if (count_ == 0 && !mean_.defined()) {
    mean_ = torch::zeros({c}, kF64);
    comoment_ = torch::zeros({c, c}, kF64);
  }
  TORCH_CHECK_VALUE(mean_.size(0) == c, "cnnviz: filter_redundancy: this batch's layer has ", c,
                    " channels, earlier batches had ", mean_.size(0));
  auto mean_b = samples.sum(0, false, kF64) / static_cast<double>(n);
  // Centred by the batch mean before the float32 product, so large means do not cancel.
  auto centred = samples - mean_b.to(samples.dtype()).to(samples.device());
  auto co_b = centred.t().mm(centred).to(kF64).cpu();
  mean_b = mean_b.cpu();
  TORCH_CHECK_VALUE(torch::isfinite(co_b).all().item<bool>(), "cnnviz: filter_redundancy: the activations have "
                    "NaN or infinite values");
  merge_moments(n, mean_b, co_b);
}

void ChannelCovarianceAccumulator::merge(const ChannelCovarianceAccumulator& other) {
  if (other.count_ == 0) return;
  if (count_ == 0) {
    *this = other;
    return;
  }
  TORCH_CHECK_VALUE(mean_.size(0) == other.mean_.size(0), "cnnviz: filter_redundancy: merging covariances of ",
                    mean_.size(0), " and ", other.mean_.size(0), " channels");
  merge_moments(other.count_, other.mean_, other.comoment_);
}

void ChannelCovarianceAccumulator::merge_moments(int64_t nb, const torch::Tensor& mean_b,
                                                 const torch::Tensor& co_b) {
  if (count_ == 0) {
    mean_ = mean_b.clone();
    comoment_ = co_b.clone();
    count_ = nb;
    return;
  }
  const double na = static_cast<double>(count_), n = na + static_cast<double>(nb);
  auto delta = mean_b - mean_;
  comoment_ = comoment_ + co_b + delta.outer(delta) * (na * static_cast<double>(nb) / n);
  mean_ = mean_ + delta * (static_cast<double>(nb) / n);
  count_ += nb;
}

torch::Tensor ChannelCovarianceAccumulator::covariance() const {
  TORCH_CHECK_VALUE(count_ >= 2, "cnnviz: filter_redundancy: a covariance needs 2 or more samples, got ", count_);
  return comoment_ / static_cast<double>(count_ - 1);
}

torch::Tensor ChannelCovarianceAccumulator::constant_mask() const {
  auto d = comoment_.diagonal();
  // Relative to the largest variance: a dead filter's centred values are rounding noise.
  return d <= d.max().clamp_min(0) * 1e-10;
}

torch::Tensor ChannelCovarianceAccumulator::correlation() const {
  auto cov = covariance();
  auto constant = constant_mask();
  auto sd = torch::where(constant, torch::ones_like(cov.diagonal()), cov.diagonal().sqrt());
  auto r = (cov / sd.outer(sd)).clamp(-1, 1);
  auto keep = (~constant).to(kF64);
  r = r * keep.outer(keep);
  r.diagonal().fill_(1);
  return r;
}

std::map<std::string, torch::Tensor> ChannelCovarianceAccumulator::state() const {
  std::map<std::string, torch::Tensor> s{{"count", torch::tensor(count_, torch::kLong)}};
  if (count_ == 0) return s;
  s["mean"] = mean_;
  s["comoment"] = comoment_;
  return s;
}

ChannelCovarianceAccumulator ChannelCovarianceAccumulator::from_state(
    const std::map<std::string, torch::Tensor>& s) {
  const char* fn = "ChannelCovarianceAccumulator.from_state";
  ChannelCovarianceAccumulator acc;
  acc.count_ = scalar_count(s, "count", fn);
  TORCH_CHECK_VALUE(acc.count_ >= 0, "cnnviz: ", fn, ": negative count");
  if (acc.count_ == 0) return acc;
  acc.mean_ = state_tensor(s, "mean", fn).to(kF64);
  acc.comoment_ = state_tensor(s, "comoment", fn).to(kF64);
  TORCH_CHECK_VALUE(acc.mean_.dim() == 1 && acc.comoment_.dim() == 2 &&
                        acc.comoment_.size(0) == acc.mean_.size(0) && acc.comoment_.size(1) == acc.mean_.size(0),
                    "cnnviz: ", fn, ": inconsistent shapes in the state");
  return acc;
}

std::vector<std::vector<int64_t>> similarity_groups(const torch::Tensor& similarity, double threshold) {
  TORCH_CHECK_VALUE(similarity.dim() == 2 && similarity.size(0) == similarity.size(1),
                    "cnnviz: similarity_groups: need a square (C, C) matrix, got ", similarity.sizes());
  const int64_t c = similarity.size(0);
  auto s = similarity.detach().to(kF64).cpu().contiguous();
  auto a = s.accessor<double, 2>();
  std::vector<int64_t> parent(c);
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&](int64_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  };
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = i + 1; j < c; ++j)
      if (a[i][j] >= threshold) parent[find(i)] = find(j);
  std::map<int64_t, std::vector<int64_t>> members;
  for (int64_t i = 0; i < c; ++i) members[find(i)].push_back(i);
  std::vector<std::vector<int64_t>> groups;
  for (auto& kv : members)
    if (kv.second.size() >= 2) groups.push_back(kv.second);
  std::stable_sort(groups.begin(), groups.end(), [](const auto& x, const auto& y) { return x.size() > y.size(); });
  return groups;
}

double participation_ratio(const torch::Tensor& m) {
  TORCH_CHECK_VALUE(m.dim() == 2 && m.size(0) == m.size(1), "cnnviz: participation_ratio: need a square matrix");
  auto d = m.to(kF64);
  double frob2 = d.square().sum().item<double>();
  if (frob2 <= 0) return 0;
  double tr = d.trace().item<double>();
  return tr * tr / frob2;
}

FilterRedundancy filter_redundancy(const torch::Tensor& weight, const ChannelCovarianceAccumulator& covariance,
                                   const FilterRedundancyOptions& options) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  TORCH_CHECK_VALUE(options.threshold() > 0 && options.threshold() <= 1,
                    "cnnviz: filter_redundancy: threshold must be in (0, 1], got ", options.threshold());
  TORCH_CHECK_VALUE(weight.defined() || covariance.count() > 0,
                    "cnnviz: filter_redundancy: neither weights nor activations to compare");
  FilterRedundancy r;
  r.threshold = options.threshold();
  r.effective_filters_weights = r.effective_filters_activations = nan;
  r.constant_filters = torch::empty({0}, torch::kLong);
  if (weight.defined()) {
    TORCH_CHECK_VALUE(weight.dim() >= 2 && weight.size(0) > 0, "cnnviz: filter_redundancy: the weight must be "
                      "(C, ...) with one row per filter, got shape ", weight.sizes());
    auto w = weight.detach().flatten(1).to(kF64).cpu();
    auto norm = w.norm(2, 1);
    auto live = norm > 0;
    auto unit = w / torch::where(live, norm, torch::ones_like(norm)).unsqueeze(1);
    r.weight_similarity = unit.mm(unit.t()).clamp(-1, 1);
    r.weight_similarity.diagonal().fill_(1);
    auto idx = torch::nonzero(live).flatten();
    r.effective_filters_weights = participation_ratio(r.weight_similarity.index_select(0, idx).index_select(1, idx));
  }
  if (covariance.count() > 0) {
    r.activation_correlation = covariance.correlation();
    r.samples = covariance.count();
    if (weight.defined())
      TORCH_CHECK_VALUE(weight.size(0) == r.activation_correlation.size(0), "cnnviz: filter_redundancy: the "
                        "weight has ", weight.size(0), " filters but the activations ",
                        r.activation_correlation.size(0), " channels");
    auto constant = covariance.constant_mask();
    r.constant_filters = torch::nonzero(constant).flatten();
    auto idx = torch::nonzero(~constant).flatten();
    r.effective_filters_activations =
        participation_ratio(r.activation_correlation.index_select(0, idx).index_select(1, idx));
  }
  r.basis = r.activation_correlation.defined() ? "activations" : "weights";
  r.groups = similarity_groups(r.activation_correlation.defined() ? r.activation_correlation : r.weight_similarity,
                               options.threshold());
  return r;
}

FilterRedundancy filter_redundancy(const AnyModel& model, const Layer& layer,
                                   const ChannelCovarianceAccumulator& covariance,
                                   const FilterRedundancyOptions& options) {
  detail::check_layers(model, {layer});
  auto w = model.parameter(layer, "weight");
  if (w.defined() && w.dim() < 2) w = torch::Tensor();  // a norm layer's per-channel scale is no filter bank
  TORCH_CHECK_VALUE(w.defined() || covariance.count() > 0, "cnnviz: filter_redundancy: layer '", layer,
                    "' has no filter weights (2-D or more); give images to compare its activations");
  return filter_redundancy(w, covariance, options);
}

FilterRedundancy filter_redundancy(const AnyModel& model, const Layer& layer, const torch::Tensor& x,
                                   const FilterRedundancyOptions& options) {
  detail::check_layers(model, {layer});
  ChannelCovarianceAccumulator cov;
  if (x.defined()) {
    check_image_batch(x);
    for_batches(x, options.batch_size(), "filter_redundancy",
                [&](const torch::Tensor& b) { cov.update(capture_one(model, b, layer, "filter_redundancy")); });
    TORCH_CHECK_VALUE(cov.count() >= 2, "cnnviz: filter_redundancy: a correlation needs 2 or more samples "
                      "(positions x images); layer '", layer, "' gave ", cov.count());
  }
  return filter_redundancy(model, layer, cov, options);
}

// ---------------------------------------------------------------------------------------------
// CKA

torch::Tensor gram_matrix(const torch::Tensor& activations, const CkaOptions& options) {
  TORCH_CHECK_VALUE(activations.defined() && activations.dim() >= 1 && activations.size(0) > 0,
                    "cnnviz: cka: activations must be (n, ...) with n > 0");
  TORCH_CHECK_VALUE(activations.is_floating_point(), "cnnviz: cka: activations must be floating point");
  auto x = activations.detach().reshape({activations.size(0), -1});
  if (options.kernel() == CkaKernel::linear) {
    auto xf = x.to(torch::kFloat);
    // Centring the features leaves both HSIC estimators unchanged and keeps float32 products accurate.
    auto xc = xf - xf.mean(0, true);
    return xc.mm(xc.t()).to(kF64).cpu();
  }
  TORCH_CHECK_VALUE(options.kernel() == CkaKernel::rbf, "cnnviz: cka: unknown kernel value ",
                    static_cast<int>(options.kernel()));
  TORCH_CHECK_VALUE(options.rbf_sigma() > 0, "cnnviz: cka: rbf_sigma must be positive, got ", options.rbf_sigma());
  auto xd = x.to(kF64).cpu();
  xd = xd - xd.mean(0, true);
  auto sq = xd.square().sum(1);
  auto d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * xd.mm(xd.t())).clamp_min(0);
  const int64_t n = xd.size(0);
  double median = 0;
  if (n > 1) {
    auto off = d2.masked_select(~torch::eye(n, torch::kBool));
    median = off.median().item<double>();
  }
  if (median <= 0) return torch::ones({n, n}, kF64);  // all samples equal: a constant kernel
  return torch::exp(-d2 / (2 * options.rbf_sigma() * options.rbf_sigma() * median));
}

torch::Tensor hsic_matrix(const torch::Tensor& grams, bool unbiased) {
  TORCH_CHECK_VALUE(grams.dim() == 3 && grams.size(1) == grams.size(2), "cnnviz: cka: grams must be (G, n, n)");
  const int64_t g = grams.size(0), n = grams.size(1);
  auto k = grams.to(kF64);
  const double nd = static_cast<double>(n);
  if (unbiased) {
    TORCH_CHECK_VALUE(n >= 4, "cnnviz: cka: the unbiased HSIC needs 4 or more samples per batch, got ", n);
    k = k * (1 - torch::eye(n, kF64)).unsqueeze(0);  // zero diagonals
    auto f = k.reshape({g, n * n});
    auto rows = k.sum(2);                  // (G, n)
    auto totals = rows.sum(1, true);       // (G, 1)
    auto h = f.mm(f.t()) + totals.mm(totals.t()) / ((nd - 1) * (nd - 2)) - rows.mm(rows.t()) * (2 / (nd - 2));
    return h / (nd * (nd - 3));
  }
  TORCH_CHECK_VALUE(n >= 2, "cnnviz: cka: HSIC needs 2 or more samples per batch, got ", n);
  auto kc = k - k.mean(1, true) - k.mean(2, true) + k.mean({1, 2}, true);
  auto f = kc.reshape({g, n * n});
  return f.mm(f.t()) / ((nd - 1) * (nd - 1));
}

CkaAccumulator::CkaAccumulator(int64_t layers_a, int64_t layers_b, CkaOptions options)
    : options_(std::move(options)), la_(layers_a), lb_(layers_b) {
  TORCH_CHECK_VALUE(la_ >= 1 && lb_ >= 1, "cnnviz: cka: need at least one layer on each side, got ", la_, " and ",
                    lb_);
  TORCH_CHECK_VALUE(options_.kernel() == CkaKernel::linear || options_.kernel() == CkaKernel::rbf,
                    "cnnviz: cka: unknown kernel value ", static_cast<int>(options_.kernel()));
  hsic_ab_ = torch::zeros({la_, lb_}, kF64);
  hsic_aa_ = torch::zeros({la_}, kF64);
  hsic_bb_ = torch::zeros({lb_}, kF64);
}

void CkaAccumulator::update(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  const bool same = b.empty();
  TORCH_CHECK_VALUE(static_cast<int64_t>(a.size()) == la_, "cnnviz: cka: expected ", la_,
                    " activations for layers_a, got ", a.size());
  TORCH_CHECK_VALUE(same ? la_ == lb_ : static_cast<int64_t>(b.size()) == lb_, "cnnviz: cka: expected ", lb_,
                    " activations for layers_b, got ", same ? a.size() : b.size());
  std::vector<torch::Tensor> all(a.begin(), a.end());
  all.insert(all.end(), b.begin(), b.end());
  for (auto& t : all)
    TORCH_CHECK_VALUE(t.defined() && t.dim() >= 1, "cnnviz: cka: every activation must be an (n, ...) tensor");
  const int64_t n = all.front().size(0);
  for (size_t i = 0; i < all.size(); ++i)
    TORCH_CHECK_VALUE(all[i].size(0) == n, "cnnviz: cka: layers of different sample counts in one batch: ",
                      all.front().sizes(), " and ", all[i].sizes(), " (every layer must see the same images)");
  TORCH_CHECK_VALUE(options_.kernel() != CkaKernel::rbf || batches_ == 0, "cnnviz: cka: the RBF kernel takes a single batch "
                    "(its bandwidth depends on the batch); use the linear kernel to stream");
  if (n < (options_.unbiased() ? 4 : 2)) {
    skipped_ += n;
    return;
  }
  std::vector<torch::Tensor> grams;
  for (auto& t : all) grams.push_back(gram_matrix(t, options_));
  auto h = hsic_matrix(torch::stack(grams), options_.unbiased());
  auto diag = h.diagonal();
  if (same) {
    hsic_ab_ += h;
    hsic_aa_ += diag;
    hsic_bb_ += diag;
  } else {
    hsic_ab_ += h.index({Slice(0, la_), Slice(la_, la_ + lb_)});
    hsic_aa_ += diag.slice(0, 0, la_);
    hsic_bb_ += diag.slice(0, la_, la_ + lb_);
  }
  batches_ += 1;
  samples_ += n;
}

void CkaAccumulator::merge(const CkaAccumulator& other) {
  TORCH_CHECK_VALUE(la_ == other.la_ && lb_ == other.lb_, "cnnviz: cka: merging accumulators of ", la_, "x", lb_,
                    " and ", other.la_, "x", other.lb_, " layers");
  TORCH_CHECK_VALUE(options_.kernel() == other.options_.kernel() && options_.unbiased() == other.options_.unbiased(),
                    "cnnviz: cka: merging accumulators with different kernels or estimators");
  TORCH_CHECK_VALUE(options_.kernel() != CkaKernel::rbf || batches_ + other.batches_ <= 1,
                    "cnnviz: cka: the RBF kernel takes a single batch; use the linear kernel to stream");
  hsic_ab_ += other.hsic_ab_;
  hsic_aa_ += other.hsic_aa_;
  hsic_bb_ += other.hsic_bb_;
  batches_ += other.batches_;
  samples_ += other.samples_;
  skipped_ += other.skipped_;
}

CkaResult CkaAccumulator::result() const {
  TORCH_CHECK_VALUE(batches_ > 0, "cnnviz: cka: no batch with enough samples was given (",
                    options_.unbiased() ? "4" : "2", " or more per batch; ", skipped_, " samples in smaller batches)");
  CkaResult r;
  r.hsic_ab = hsic_ab_.clone();
  r.hsic_aa = hsic_aa_.clone();
  r.hsic_bb = hsic_bb_.clone();
  auto denom = hsic_aa_.clamp_min(0).outer(hsic_bb_.clamp_min(0)).sqrt();
  // A layer that does not vary over the images has HSIC 0 with everything: CKA is undefined.
  r.matrix = torch::where(denom > 0, hsic_ab_ / denom, torch::full_like(denom, std::numeric_limits<double>::quiet_NaN()));
  r.batches = batches_;
  r.samples = samples_;
  r.skipped_samples = skipped_;
  return r;
}

std::map<std::string, torch::Tensor> CkaAccumulator::state() const {
  return {{"hsic_ab", hsic_ab_},
          {"hsic_aa", hsic_aa_},
          {"hsic_bb", hsic_bb_},
          {"batches", torch::tensor(batches_, torch::kLong)},
          {"samples", torch::tensor(samples_, torch::kLong)},
          {"skipped", torch::tensor(skipped_, torch::kLong)}};
}

CkaAccumulator CkaAccumulator::from_state(const std::map<std::string, torch::Tensor>& s, CkaOptions options) {
  const char* fn = "CkaAccumulator.from_state";
  auto ab = state_tensor(s, "hsic_ab", fn).to(kF64);
  TORCH_CHECK_VALUE(ab.dim() == 2, "cnnviz: ", fn, ": hsic_ab must be (La, Lb)");
  CkaAccumulator acc(ab.size(0), ab.size(1), std::move(options));
  acc.hsic_ab_ = ab;
  acc.hsic_aa_ = state_tensor(s, "hsic_aa", fn).to(kF64);
  acc.hsic_bb_ = state_tensor(s, "hsic_bb", fn).to(kF64);
  TORCH_CHECK_VALUE(acc.hsic_aa_.dim() == 1 && acc.hsic_aa_.size(0) == acc.la_ && acc.hsic_bb_.dim() == 1 &&
                        acc.hsic_bb_.size(0) == acc.lb_,
                    "cnnviz: ", fn, ": inconsistent shapes in the state");
  acc.batches_ = scalar_count(s, "batches", fn);
  acc.samples_ = scalar_count(s, "samples", fn);
  acc.skipped_ = scalar_count(s, "skipped", fn);
  return acc;
}

CkaResult cka(const AnyModel& model_a, const AnyModel* model_b, const torch::Tensor& x,
              const std::vector<std::string>& layers_a, const std::vector<std::string>& layers_b,
              const CkaOptions& options) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(!layers_a.empty(), "cnnviz: cka: layers_a is empty");
  detail::check_layers(model_a, layers_a);
  const bool same = model_b == nullptr && (layers_b.empty() || layers_b == layers_a);
  const auto& mb = model_b ? *model_b : model_a;
  const auto& lb = layers_b.empty() ? layers_a : layers_b;
  if (!same) detail::check_layers(mb, lb);
  CkaAccumulator acc(static_cast<int64_t>(layers_a.size()), static_cast<int64_t>(lb.size()), options);
  auto run = [&](const AnyModel& m, const torch::Tensor& b, const std::vector<std::string>& layers) {
    torch::NoGradGuard no_grad;
    auto r = detail::checked_capture(m, b, CaptureRequest{layers, false}, "cka");
    std::vector<torch::Tensor> out;
    for (auto& kv : r.activations) out.push_back(kv.second);
    return out;
  };
  const int64_t batch = options.kernel() == CkaKernel::rbf ? x.size(0) : options.batch_size();
  for_batches(x, batch, "cka", [&](const torch::Tensor& b) {
    if (same) {
      acc.update(run(model_a, b, layers_a));
    } else if (model_b == nullptr) {  // one model, two layer lists: one forward for both
      std::vector<std::string> both(layers_a);
      both.insert(both.end(), lb.begin(), lb.end());
      auto all = run(model_a, b, both);
      acc.update({all.begin(), all.begin() + layers_a.size()}, {all.begin() + layers_a.size(), all.end()});
    } else {
      acc.update(run(model_a, b, layers_a), run(mb, b, lb));
    }
  });
  return acc.result();
}

}  // namespace cnnviz
