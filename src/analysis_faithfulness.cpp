// The bodies of analysis/faithfulness.hpp, analysis/layer_information.hpp and
// analysis/adversarial_report.hpp: one translation unit, since each pulls in most of torch.
#include "cnnviz/analysis/adversarial_report.hpp"
#include "cnnviz/analysis/faithfulness.hpp"
#include "cnnviz/analysis/layer_information.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <limits>
#include <set>

#include "cnnviz/detail/attribution.hpp"
#include "cnnviz/detail/checked_capture.hpp"
#include "cnnviz/detail/finite.hpp"
#include "cnnviz/normalization.hpp"
#include "cnnviz/detail/optimizer.hpp"
#include "cnnviz/perturbation.hpp"
#include "cnnviz/script_model.hpp"

namespace cnnviz {

namespace detail {

torch::Tensor attribution_pixels(const torch::Tensor& attribution, const torch::Tensor& x, const char* fn) {
  TORCH_CHECK_VALUE(attribution.defined(), "cnnviz: ", fn, ": the attribution map is undefined");
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  auto a = attribution;
  TORCH_CHECK_VALUE(a.is_floating_point() || a.scalar_type() == torch::kUInt8 || a.scalar_type() == torch::kLong ||
                        a.scalar_type() == torch::kInt,
                    "cnnviz: ", fn, ": the attribution map must hold numbers, got ", a.scalar_type());
  if (a.dim() == 2) {
    TORCH_CHECK_VALUE(n == 1, "cnnviz: ", fn, ": a single map (h, w) ", a.sizes(), " fits a batch of one image; x has ",
                      n, " (pass one map per image, (N, h, w))");
    a = a.unsqueeze(0);
  } else if (a.dim() == 4) {
    TORCH_CHECK_VALUE(a.size(1) == 1, "cnnviz: ", fn, ": the attribution has shape ", a.sizes(),
                      "; pass a map (N, h, w) (e.g. the result's .map, which reduces the channels)");
    a = a.squeeze(1);
  }
  TORCH_CHECK_VALUE(a.dim() == 3, "cnnviz: ", fn, ": the attribution map must be (N, h, w), (N, 1, h, w) or (h, w), "
                    "got shape ", attribution.sizes());
  TORCH_CHECK_VALUE(a.size(0) == n, "cnnviz: ", fn, ": ", a.size(0), " attribution maps for a batch of ", n,
                    " images");
  const int64_t mh = a.size(1), mw = a.size(2);
  TORCH_CHECK_VALUE(mh >= 1 && mw >= 1, "cnnviz: ", fn, ": the attribution map is empty, shape ", attribution.sizes());
  a = a.to(x.device(), torch::kFloat);
  TORCH_CHECK_VALUE(all_finite(a), "cnnviz: ", fn, ": the attribution map contains NaN or infinite values");
  if (mh == h && mw == w) return a;
  // A coarser map (a CAM at its layer's resolution) is upsampled; one of another aspect
  // ratio or a larger one cannot be placed on the image without guessing.
  const bool same_aspect = std::abs(static_cast<double>(mh) * w / h - mw) <= 1.0;
  TORCH_CHECK_VALUE(mh <= h && mw <= w && same_aspect, "cnnviz: ", fn, ": the attribution map (", mh, ", ", mw,
                    ") does not fit the image (", h, ", ", w, "): pass a map of the image's size or a coarser one "
                    "of the same aspect ratio");
  return upsample_maps(a, h, w);
}

namespace {

/// Average ranks (0-based) of each row of v (N, P), ties sharing their mean rank.
torch::Tensor average_ranks(const torch::Tensor& v) {
  const int64_t n = v.size(0), p = v.size(1);
  auto ranks = torch::empty({n, p}, torch::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    auto [sorted, order] = v[i].sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
    auto [unique, inverse, counts] = torch::unique_consecutive(sorted, /*return_inverse=*/true,
                                                               /*return_counts=*/true);
    auto c = counts.to(torch::kDouble);
    auto start = c.cumsum(0) - c;  // first rank of each run of equal values
    auto mean_rank = start + (c - 1) / 2;
    ranks[i].index_put_({order}, mean_rank.index_select(0, inverse));
  }
  return ranks;
}

/// A baseline image for deletion_insertion from its kind.
torch::Tensor faithfulness_baseline(const torch::Tensor& x, BaselineKind kind, const DeletionInsertionOptions& o) {
  auto ig = IntegratedGradientsOptions()
                .baseline(kind)
                .custom_baseline(o.custom_baseline())
                .blur_sigma(o.blur_sigma())
                .normalization(o.normalization());
  return make_baseline(x, ig).to(x.scalar_type()).expand_as(x).contiguous();
}

/// The modules that own parameters, in named_modules order.
std::vector<LayerInfo> parameterized(const AnyModel& model) {
  std::vector<LayerInfo> out;
  for (auto& l : model.layers())
    if (l.num_parameters > 0) out.push_back(l);
  return out;
}

/// The first `depth` dot-separated parts of a qualified name (all of it when shorter).
std::string name_prefix(const std::string& name, int64_t depth) {
  if (depth <= 0) return name;
  size_t pos = 0;
  for (int64_t d = 0; d < depth; ++d) {
    pos = name.find('.', pos);
    if (pos == std::string::npos) return name;
    if (d + 1 < depth) ++pos;
  }
  return name.substr(0, pos);
}

/// Redraws the parameters of one module of `copy` (weight and bias) from normals with
/// each tensor's own mean and standard deviation.
void reinitialize(const AnyModel& copy, const LayerInfo& layer, torch::Generator& gen) {
  torch::NoGradGuard no_grad;
  int64_t covered = 0;
  for (const char* name : {"weight", "bias"}) {
    auto p = copy.parameter(layer.name, name);
    if (!p.defined()) continue;
    covered += p.numel();
    auto v = p.detach().to(torch::kDouble);
    double mean = v.mean().item<double>();
    double std = p.numel() > 1 ? v.std().item<double>() : 0.0;
    if (!(std > 0)) std = std::max(std::abs(mean), 1e-2);  // a constant tensor: keep its scale
    auto fresh = torch::empty(p.sizes(), torch::TensorOptions().dtype(torch::kDouble)).normal_(mean, std, gen);
    p.copy_(fresh);
  }
  TORCH_CHECK_VALUE(covered == layer.num_parameters, "cnnviz: sanity_check: module '", layer.name, "' owns ",
                    layer.num_parameters, " parameter values but only ", covered,
                    " are in 'weight' and 'bias'; name the modules to re-initialize in `layers` without it");
}

/// A method's map, checked against x and (when given) the original map's shape.
torch::Tensor checked_map(const AttributionFn& method, const AnyModel& model, const torch::Tensor& x,
                          const torch::Tensor& target, const torch::Tensor& like) {
  auto m = method(model, x, target);
  TORCH_CHECK_VALUE(m.defined(), "cnnviz: sanity_check: the method returned no map");
  if (m.dim() == 4 && m.size(1) == 1) m = m.squeeze(1);
  TORCH_CHECK_VALUE(m.dim() == 3 && m.size(0) == x.size(0), "cnnviz: sanity_check: the method must return maps "
                    "(N, h, w) for a batch of ", x.size(0), ", got shape ", m.sizes());
  TORCH_CHECK_VALUE(!like.defined() || m.sizes() == like.sizes(), "cnnviz: sanity_check: the method's map changed "
                    "shape from ", like.defined() ? like.sizes() : torch::IntArrayRef{}, " to ", m.sizes());
  return m.detach().to(torch::kCPU, torch::kFloat);
}

/// SSIM of two batches of maps (N, h, w), each map scaled to [0, 1] by its own range.
torch::Tensor map_ssim(const torch::Tensor& a, const torch::Tensor& b) {
  auto scale = [](const torch::Tensor& m) {
    auto f = m.flatten(1).to(torch::kDouble);
    auto lo = std::get<0>(f.min(1, true)), hi = std::get<0>(f.max(1, true));
    return ((f - lo) / (hi - lo).clamp_min(1e-30)).view(m.sizes()).unsqueeze(1);
  };
  return ssim(scale(a), scale(b), SsimOptions().data_range(1.0).reduction(Reduction::none));
}

/// Pixels in [0, 1] of a normalized batch.
torch::Tensor to_pixels(const torch::Tensor& x, const std::vector<double>& mean, const std::vector<double>& std,
                        const char* fn) {
  auto [m, s] = normalization(mean, std, x.size(1), x.options(), fn);
  return (x.detach() * s + m).clamp(0, 1);
}

}  // namespace
}  // namespace detail

torch::Tensor rank_correlation(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK_VALUE(a.defined() && b.defined(), "cnnviz: rank_correlation: an input is undefined");
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), "cnnviz: rank_correlation: the inputs differ in shape: ", a.sizes(),
                    " and ", b.sizes());
  TORCH_CHECK_VALUE(a.dim() >= 2 && a.size(0) >= 1 && a.numel() / a.size(0) >= 2,
                    "cnnviz: rank_correlation needs (N, ...) with at least 2 values per sample, got shape ", a.sizes());
  auto fa = a.detach().to(torch::kCPU, torch::kDouble).reshape({a.size(0), -1});
  auto fb = b.detach().to(torch::kCPU, torch::kDouble).reshape({b.size(0), -1});
  TORCH_CHECK_VALUE(detail::all_finite(fa) && detail::all_finite(fb),
                    "cnnviz: rank_correlation: the inputs contain NaN or infinite values");
  auto ra = detail::average_ranks(fa), rb = detail::average_ranks(fb);
  ra = ra - ra.mean(1, true);
  rb = rb - rb.mean(1, true);
  return (ra * rb).sum(1) / (ra.norm(2, 1) * rb.norm(2, 1));  // 0 / 0 = NaN for a constant row
}

int64_t deletion_insertion_batch_size(const torch::Tensor& x, const DeletionInsertionOptions& options) {
  if (options.batch_size()) {
    detail::check_batch_size(*options.batch_size());
    return *options.batch_size();
  }
  // Measured (benchmarks/RESULTS.md): above 3 MobileNetV2 images at 224 x 224, or 24 ResNet-20
  // images at 32 x 32, glibc serves the activations from fresh pages on every forward.
  constexpr int64_t cpu_input_values = int64_t{1} << 19, cpu_most = 16, elsewhere = 32;
  TORCH_CHECK_VALUE(x.defined() && x.dim() >= 2, "cnnviz: deletion_insertion_batch_size needs a batch (N, C, H, W)");
  if (!x.device().is_cpu()) return elsewhere;
  const int64_t per_image = std::max<int64_t>(1, x[0].numel());
  return std::clamp<int64_t>(cpu_input_values / per_image, 1, cpu_most);
}

DeletionInsertionResult deletion_insertion(const AnyModel& model, const torch::Tensor& x,
                                           const torch::Tensor& attribution, const Target& target,
                                           const DeletionInsertionOptions& options) {
  const char* fn = "deletion_insertion";
  check_image_batch(x);
  TORCH_CHECK_VALUE(options.steps() >= 1, "cnnviz: ", fn, ": steps must be positive, got ", options.steps());
  TORCH_CHECK_VALUE(options.seed() >= 0, "cnnviz: ", fn, ": seed must be >= 0, got ", options.seed());
  const int64_t batch_size = deletion_insertion_batch_size(x, options);
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3), p = h * w, s = options.steps();
  auto map = detail::attribution_pixels(attribution, x, fn);
  FreezeParameters frozen(model);
  torch::NoGradGuard no_grad;
  auto deletion_base = detail::faithfulness_baseline(x, options.deletion_baseline(), options);
  auto insertion_base = detail::faithfulness_baseline(x, options.insertion_baseline(), options);
  DeletionInsertionResult r;
  r.batch_size = batch_size;
  r.logits = detail::logits_of(model, x);
  r.target = target.resolve(r.logits);

  // rank[i, j]: the position of pixel j in image i's order, most important first; equal
  // values in a random (seeded) order.
  auto gen = detail::seeded_generator(options.seed());
  auto perm = torch::randperm(p, gen, torch::TensorOptions().dtype(torch::kLong)).to(x.device());
  auto shuffled = map.reshape({n, p}).index_select(1, perm);
  auto sorted_idx = std::get<1>(shuffled.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
  auto order = perm.index({sorted_idx});
  auto long_opts = x.options().dtype(torch::kLong);
  auto rank = torch::empty({n, p}, long_opts).scatter_(1, order, torch::arange(p, long_opts).expand({n, p}));
  // Pixels changed at each step.
  auto counts = torch::round(torch::arange(s + 1, torch::kDouble) * p / s).to(torch::kLong);
  r.fractions = counts.to(torch::kDouble) / p;
  auto counts_dev = counts.to(x.device());

  // Deletion's step 0 and insertion's step S are x itself, whose scores the logits above
  // give: only the other 2 N S images run. Item j: curve j / (N S) (0 deletion, 1
  // insertion), image (j / S) % N, step j % S (+ 1 for deletion).
  const int64_t per_curve = n * (s + 1), total = 2 * n * s;
  auto scores = torch::full({2, n, s + 1}, std::numeric_limits<double>::quiet_NaN(), x.options().dtype(torch::kDouble));
  auto own = detail::class_score(r.logits, r.target, options.score()).to(torch::kDouble);
  scores.select(0, 0).select(1, 0).copy_(own);
  scores.select(0, 1).select(1, s).copy_(own);
  auto flat = scores.view({-1});
  auto bases = torch::cat({deletion_base, insertion_base});  // (2 N, C, H, W)
  bool done = detail::for_each_batch(total, batch_size, options.progress(), [&](int64_t b, int64_t e) {
    auto idx = torch::arange(b, e, long_opts);
    auto curve = idx.div(n * s, "floor"), rem = idx.remainder(n * s);
    auto img = rem.div(s, "floor"), step = rem.remainder(s) + curve.eq(0);
    auto changed = rank.index_select(0, img) < counts_dev.index_select(0, step).view({-1, 1});  // (B, P)
    // Deletion takes changed pixels from its baseline, insertion keeps only those from x.
    auto from_base = changed.ne(curve.eq(1).view({-1, 1})).view({-1, 1, h, w});
    auto images = torch::where(from_base, bases.index_select(0, curve * n + img), x.index_select(0, img));
    auto logits = detail::checked_logits(model.forward(images), e - b).to(x.scalar_type());
    flat.index_copy_(0, curve * per_curve + img * (s + 1) + step,
                     detail::class_score(logits, r.target.index_select(0, img), options.score()).to(torch::kDouble));
    return 0.0;
  });
  r.stopped_early = !done;
  scores = scores.to(torch::kCPU);
  r.deletion = scores[0].to(x.scalar_type());
  r.insertion = scores[1].to(x.scalar_type());
  r.deletion_auc = torch::trapz(scores[0], r.fractions, 1);
  r.insertion_auc = torch::trapz(scores[1], r.fractions, 1);
  return r;
}

SanityCheckResult sanity_check(const AttributionFn& method, const AnyModel& model, const AnyModel& copy,
                               const torch::Tensor& x, const Target& target, const SanityCheckOptions& options) {
  const char* fn = "sanity_check";
  TORCH_CHECK_VALUE(static_cast<bool>(method), "cnnviz: ", fn, ": the method is empty");
  check_image_batch(x);
  TORCH_CHECK_VALUE(&model.impl() != &copy.impl(), "cnnviz: ", fn, ": the copy is the model itself; pass an "
                    "independent copy (copy.deepcopy in Python, Module::deepcopy or clone in C++)");
  TORCH_CHECK_VALUE(options.group_depth() >= 0, "cnnviz: ", fn, ": group_depth must be >= 0, got ",
                    options.group_depth());
  TORCH_CHECK_VALUE(options.seed() >= 0, "cnnviz: ", fn, ": seed must be >= 0, got ", options.seed());
  TORCH_CHECK_VALUE(!options.layers_from_top() || *options.layers_from_top() >= 1, "cnnviz: ", fn,
                    ": layers_from_top must be positive, got ", options.layers_from_top().value_or(0));
  TORCH_CHECK_VALUE(model.layer_names() == copy.layer_names(), "cnnviz: ", fn,
                    ": the copy's layers differ from the model's; pass a copy of the same model");
  {
    std::set<const void*> original;
    for (auto& t : model.parameters()) original.insert(t.data_ptr());
    for (auto& t : copy.parameters())
      TORCH_CHECK_VALUE(!original.count(t.data_ptr()), "cnnviz: ", fn, ": the copy shares parameters with the "
                        "model, so re-initializing it would change the model; pass a deep copy");
  }

  // The cascade: modules in the order they are re-initialized, grouped into steps.
  auto owners = detail::parameterized(copy);
  std::vector<LayerInfo> cascade;
  if (options.layers().empty()) {
    cascade.assign(owners.rbegin(), owners.rend());
    TORCH_CHECK_VALUE(!cascade.empty(), "cnnviz: ", fn, ": the model has no modules with parameters to re-initialize");
  } else {
    auto names = copy.layer_names();
    detail::parse_requests(options.layers(), names);
    for (auto& name : options.layers()) {
      auto it = std::find_if(owners.begin(), owners.end(), [&](auto& l) { return l.name == name; });
      if (it != owners.end()) {
        cascade.push_back(*it);
        continue;
      }
      // A container: its parameterized modules, from the output back.
      size_t before = cascade.size();
      for (auto o = owners.rbegin(); o != owners.rend(); ++o)
        if (o->name.rfind(name + ".", 0) == 0) cascade.push_back(*o);
      TORCH_CHECK_VALUE(cascade.size() > before, "cnnviz: ", fn, ": layer '", name, "' owns no parameters");
    }
  }
  std::vector<std::pair<std::string, std::vector<LayerInfo>>> steps;
  for (auto& l : cascade) {
    auto key = options.group_depth() > 0 ? detail::name_prefix(l.name, options.group_depth()) : l.name;
    if (steps.empty() || steps.back().first != key) steps.push_back({key, {}});
    steps.back().second.push_back(l);
  }
  if (options.layers_from_top() && static_cast<size_t>(*options.layers_from_top()) < steps.size())
    steps.resize(static_cast<size_t>(*options.layers_from_top()));

  SanityCheckResult r;
  r.target = target.resolve(detail::logits_of(model, x));
  r.original = detail::checked_map(method, model, x, r.target, {});
  if (options.ssim())
    TORCH_CHECK_VALUE(r.original.size(1) >= 11 && r.original.size(2) >= 11, "cnnviz: ", fn, ": the maps (",
                      r.original.size(1), "x", r.original.size(2), ") are smaller than SSIM's 11x11 window; "
                      "set ssim=false");
  auto gen = detail::seeded_generator(options.seed());
  std::vector<torch::Tensor> maps, corr, sims;
  const int64_t total = static_cast<int64_t>(steps.size());
  for (int64_t k = 0; k < total; ++k) {
    for (auto& l : steps[k].second) detail::reinitialize(copy, l, gen);
    auto m = detail::checked_map(method, copy, x, r.target, r.original);
    maps.push_back(m);
    corr.push_back(rank_correlation(r.original, m));
    if (options.ssim()) sims.push_back(detail::map_ssim(r.original, m));
    r.steps.push_back(steps[k].first);
    if (!detail::report(options.progress(), k + 1, total, corr.back().mean().item<double>())) {
      r.stopped_early = k + 1 < total;
      break;
    }
  }
  r.maps = torch::stack(maps);
  r.rank_correlation = torch::stack(corr);
  if (options.ssim()) r.ssim = torch::stack(sims);
  return r;
}

SanityCheckResult sanity_check(const AttributionFn& method, const ScriptModel& model, const torch::Tensor& x,
                               const Target& target, const SanityCheckOptions& options) {
  // Without grad mode: deepcopy clones parameters, which would otherwise come out as
  // non-leaf tensors whose requires_grad flags cannot be frozen.
  auto copy = [&] {
    torch::NoGradGuard no_grad;
    return model.module().deepcopy();
  }();
  return sanity_check(method, AnyModel(model), AnyModel(ScriptModel(copy)), x, target, options);
}

LayerInformation layer_information(const AnyModel& model, const torch::Tensor& x,
                                   const std::vector<std::string>& layers, const LayerInformationOptions& options) {
  const char* fn = "layer_information";
  check_image_batch(x);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: ", fn, ": the list of layers is empty");
  detail::check_layers(model, layers);
  const auto& inv = options.inversion();
  LayerInformation r;
  {
    // The layers' shapes, from one forward pass that stops at the deepest.
    torch::NoGradGuard no_grad;
    auto cap = detail::checked_capture(model, x, CaptureRequest{layers, /*need_output=*/false}, fn);
    std::vector<int64_t> c, hh, ww;
    for (auto& kv : cap.activations) {
      const auto& a = kv.second;
      TORCH_CHECK_VALUE(a.dim() >= 2, "cnnviz: ", fn, ": layer '", kv.first, "' yields shape ", a.sizes(),
                        " without a channel dimension");
      c.push_back(a.size(1));
      hh.push_back(a.dim() >= 3 ? a.size(2) : 1);
      ww.push_back(a.dim() >= 4 ? a.size(3) : 1);
    }
    r.channels = torch::tensor(c, torch::kLong);
    r.height = torch::tensor(hh, torch::kLong);
    r.width = torch::tensor(ww, torch::kLong);
  }
  r.inversions = invert_layers(model, x, layers, inv);
  const int64_t L = static_cast<int64_t>(r.inversions.size());
  r.stopped_early = L < static_cast<int64_t>(layers.size()) || (L > 0 && r.inversions.back().stopped_early);
  r.channels = r.channels.slice(0, 0, L);
  r.height = r.height.slice(0, 0, L);
  r.width = r.width.slice(0, 0, L);
  auto px = detail::to_pixels(x, inv.normalization().mean(), inv.normalization().std(), fn).to(torch::kDouble);
  auto ssim_options = options.ssim();
  ssim_options.data_range(1.0).reduction(Reduction::none);
  TORCH_CHECK_VALUE(x.size(2) >= ssim_options.window_size() && x.size(3) >= ssim_options.window_size(), "cnnviz: ",
                    fn, ": the image (", x.size(2), "x", x.size(3), ") is smaller than SSIM's window (",
                    ssim_options.window_size(), ")");
  std::vector<torch::Tensor> s, ps, ms;
  for (auto& res : r.inversions) {
    r.layers.push_back(res.layer);
    auto pz = detail::to_pixels(res.image, inv.normalization().mean(), inv.normalization().std(), fn).to(torch::kDouble);
    s.push_back(ssim(pz, px, ssim_options).to(torch::kDouble));
    auto mse = (pz - px).pow(2).mean({1, 2, 3});
    ms.push_back(mse);
    ps.push_back(-10.0 * torch::log10(mse));
  }
  if (L == 0) {
    r.ssim = r.psnr = r.mse = torch::empty({0, x.size(0)}, torch::kDouble);
    r.ssim_drop = torch::empty({0}, torch::kDouble);
    return r;
  }
  r.ssim = torch::stack(s).cpu();
  r.psnr = torch::stack(ps).cpu();
  r.mse = torch::stack(ms).cpu();
  auto mean_ssim = r.ssim.mean(1);
  auto previous = torch::cat({torch::ones({1}, torch::kDouble), mean_ssim.slice(0, 0, L - 1)});
  r.ssim_drop = previous - mean_ssim;
  r.bottleneck = r.ssim_drop.argmax().item<int64_t>();
  r.bottleneck_layer = r.layers[static_cast<size_t>(r.bottleneck)];
  return r;
}

AdversarialReport adversarial_report(const AnyModel& model, const torch::Tensor& x, const Target& target,
                                     const AdversarialReportOptions& options) {
  check_image_batch(x);
  std::vector<std::string> layers = options.layers();
  if (layers.empty())
    for (auto& l : model.layers())
      if (l.is_leaf && l.num_parameters > 0) layers.push_back(l.name);
  detail::check_layers(model, layers);
  AdversarialReport r;
  r.attack = options.attack() == Attack::fgsm ? fgsm(model, x, target, options.fgsm())
                                              : pgd(model, x, target, options.pgd());
  r.stopped_early = r.attack.stopped_early;
  r.probabilities_before = r.attack.logits_before.softmax(1);
  r.probabilities_after = r.attack.logits_after.softmax(1);
  r.saliency_before = saliency(model, x, Target(r.attack.target), options.saliency());
  r.saliency_after = saliency(model, r.attack.adversarial, Target(r.attack.target), options.saliency());
  r.saliency_correlation = rank_correlation(r.saliency_before.map, r.saliency_after.map);
  r.layers = layers;
  if (!layers.empty()) {
    std::vector<torch::Tensor> d;
    for (auto& kv : layer_divergence(model, x, r.attack.adversarial, layers)) d.push_back(kv.second);
    r.divergence = torch::stack(d);
    r.most_affected = r.divergence.to(torch::kDouble).mean(1).argmax().item<int64_t>();
  } else {
    r.divergence = torch::empty({0, x.size(0)}, x.options());
  }
  return r;
}

}  // namespace cnnviz
