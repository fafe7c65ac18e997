// The model adapters' and the capture utilities' bodies (include/cnnviz/model.hpp,
// include/cnnviz/capture.hpp), compiled once here rather than in every user unit.
#include "cnnviz/capture.hpp"

#include <algorithm>
#include <iomanip>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>

#include "cnnviz/detail/checked_capture.hpp"
#include "cnnviz/detail/names.hpp"

namespace cnnviz {

// ---------------------------------------------------------------------------------------
// model.hpp

void check_image_batch(const torch::Tensor& x, const char* what) {
  TORCH_CHECK_VALUE(x.defined(), "cnnviz: ", what, " is undefined");
  TORCH_CHECK_VALUE(x.dim() == 4, "cnnviz: ", what, " must be a batch (N, C, H, W), got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.size(0) >= 1 && x.size(1) >= 1 && x.size(2) >= 1 && x.size(3) >= 1, "cnnviz: ", what,
                    " must not be empty, got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.is_floating_point(), "cnnviz: ", what, " must be a floating point tensor, got ",
                    x.scalar_type());
  TORCH_CHECK_VALUE(torch::isfinite(x).all().item<bool>(), "cnnviz: ", what, " contains NaN or infinite values");
}

namespace {
/// Parameters frozen by running FreezeParameters scopes, with how many hold each: calls
/// that overlap in several threads share one freeze, and the last to end restores it.
struct FrozenRegistry {
  std::mutex mutex;
  std::unordered_map<const c10::TensorImpl*, std::pair<torch::Tensor, int64_t>> held;
  static FrozenRegistry& get() {
    static auto* r = new FrozenRegistry();  // never destroyed: scopes may end at exit
    return *r;
  }
};
}  // namespace

FreezeParameters::FreezeParameters(const AnyModel& model) {
  auto params = model.parameters();
  auto& reg = FrozenRegistry::get();
  std::lock_guard<std::mutex> lock(reg.mutex);
  for (auto& p : params) {
    auto it = reg.held.find(p.unsafeGetTensorImpl());
    if (it != reg.held.end()) {
      ++it->second.second;
    } else if (p.requires_grad()) {
      reg.held.emplace(p.unsafeGetTensorImpl(), std::make_pair(p, int64_t{1}));
      p.requires_grad_(false);
    } else {
      continue;
    }
    frozen_.push_back(p);
  }
}

FreezeParameters::~FreezeParameters() {
  auto& reg = FrozenRegistry::get();
  std::lock_guard<std::mutex> lock(reg.mutex);
  for (auto& p : frozen_) {
    auto it = reg.held.find(p.unsafeGetTensorImpl());
    if (it == reg.held.end() || --it->second.second > 0) continue;
    reg.held.erase(it);
    p.requires_grad_(true);
  }
}

torch::Tensor SequentialModel::forward(const torch::Tensor& x) {
  check_image_batch(x);
  return seq_->forward(x);
}

CaptureResult SequentialModel::capture(const torch::Tensor& x, const CaptureRequest& request) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(request.relu == ReluMode::normal, "cnnviz: SequentialModel does not support guided ReLU");
  std::vector<std::string> names;
  for (auto& l : layers()) names.push_back(l.name);
  auto parsed = detail::parse_requests(request.layers, names);
  // Children run one after another, so only their outputs are observable here; with
  // skip_missing (a summary) a nested module yields an undefined tensor instead.
  auto nested = [](const detail::LayerRequest& p) { return p.name.find('.') != std::string::npos; };
  for (auto& p : parsed)
    TORCH_CHECK_VALUE(request.skip_missing || !nested(p),
                      "cnnviz: SequentialModel captures top-level children only, got '", p.name, "'");
  auto index_of = [](const std::string& name) { return static_cast<size_t>(std::stoul(name)); };
  size_t last_needed = 0;
  for (auto& p : parsed)
    if (!nested(p)) last_needed = std::max(last_needed, index_of(p.name) + 1);
  TORCH_CHECK_INDEX(std::all_of(parsed.begin(), parsed.end(), [](auto& p) { return p.call <= 0; }),
                    "cnnviz: each child of a Sequential runs once; only call index 0 exists");
  std::set<size_t> cuts;
  if (request.cut)
    for (auto& p : parsed)
      if (!nested(p)) cuts.insert(index_of(p.name));
  CaptureResult result;
  std::vector<torch::Tensor> outs;
  torch::Tensor h = x;
  size_t n = request.need_output ? seq_->size() : last_needed;
  for (size_t i = 0; i < n; ++i) {
    h = (seq_->begin() + static_cast<std::ptrdiff_t>(i))->forward(h);
    if (cuts.count(i)) {
      outs.push_back(h.detach().requires_grad_(true));
      h = outs.back().clone();  // an in-place op downstream may not write to a leaf
    } else {
      outs.push_back(h);
    }
  }
  for (auto& p : parsed)
    result.activations.emplace_back(p.spelled, nested(p) ? torch::Tensor() : outs.at(index_of(p.name)));
  if (request.need_output) result.output = h;
  return result;
}

std::vector<LayerInfo> SequentialModel::layers() const {
  std::vector<LayerInfo> out;
  for (auto& item : seq_->named_modules("", /*include_self=*/false)) {
    LayerInfo info;
    info.name = item.key();
    info.type = item.value()->name();
    for (auto& p : item.value()->named_parameters(/*recurse=*/false)) info.num_parameters += p.value().numel();
    info.is_leaf = item.value()->children().empty();
    out.push_back(info);
  }
  return out;
}

std::vector<torch::Tensor> SequentialModel::parameters() const { return seq_->parameters(); }

torch::Tensor SequentialModel::parameter(const std::string& layer, const std::string& name) const {
  for (auto& item : seq_->named_modules("", false))
    if (item.key() == layer)
      for (auto& p : item.value()->named_parameters(false))
        if (p.key() == name) return p.value();
  return {};
}

FunctionModel::FunctionModel(std::function<torch::Tensor(const torch::Tensor&)> fn) : fn_(std::move(fn)) {
  TORCH_CHECK_VALUE(static_cast<bool>(fn_), "cnnviz: FunctionModel needs a callable");
}

torch::Tensor FunctionModel::forward(const torch::Tensor& x) {
  check_image_batch(x);
  return fn_(x);
}

CaptureResult FunctionModel::capture(const torch::Tensor& x, const CaptureRequest& request) {
  TORCH_CHECK_VALUE(request.layers.empty(), "cnnviz: FunctionModel has no layers to capture (asked for '",
                    request.layers.front(), "'); wrap the network in an adapter with layers");
  TORCH_CHECK_VALUE(request.relu == ReluMode::normal, "cnnviz: FunctionModel does not support guided ReLU");
  CaptureResult r;
  r.output = forward(x);
  return r;
}

// ---------------------------------------------------------------------------------------
// capture.hpp

CaptureResult capture(const AnyModel& model, const torch::Tensor& x, const Layers& layers) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: capture needs at least one layer name");
  CaptureRequest request;
  request.layers = layers;
  request.need_output = false;
  return model.capture(x, request);  // the model's own errors pass through unchanged
}

std::vector<std::pair<std::string, torch::Tensor>> feature_maps(const AnyModel& model, const torch::Tensor& x,
                                                                 const Layers& which) {
  check_image_batch(x);
  std::vector<std::string> layers = which;
  bool all = layers.empty();
  if (all)
    for (auto& l : model.layers())
      if (l.is_leaf) layers.push_back(l.name);
  TORCH_CHECK_VALUE(!layers.empty(), "cnnviz: the model lists no layers");
  torch::NoGradGuard no_grad;
  CaptureRequest request;
  request.layers = layers;
  request.need_output = false;
  request.skip_missing = all;
  auto r = detail::checked_capture(model, x, request, "feature_maps");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& kv : r.activations)
    if (kv.second.defined()) out.push_back(kv);
  return out;
}

std::vector<LayerSummary> summary(const AnyModel& model, std::vector<int64_t> input_size, int64_t depth) {
  TORCH_CHECK_VALUE(input_size.size() == 3 || input_size.size() == 4,
                    "cnnviz: input_size must be (C, H, W) or (N, C, H, W), got ", input_size.size(), " numbers");
  TORCH_CHECK_VALUE(depth >= 0, "cnnviz: summary: depth must be 0 (every module) or positive, got ", depth);
  if (input_size.size() == 3) input_size.insert(input_size.begin(), 1);
  for (auto s : input_size) TORCH_CHECK_VALUE(s > 0, "cnnviz: input_size must be positive");
  auto params = model.parameters();
  auto opts = torch::TensorOptions().dtype(torch::kFloat);
  if (!params.empty()) opts = opts.device(params.front().device()).dtype(params.front().dtype());
  auto infos = model.layers();
  std::vector<std::string> names;
  for (auto& l : infos) names.push_back(l.name);
  torch::NoGradGuard no_grad;
  CaptureRequest request;
  request.layers = names;
  request.need_output = names.empty();
  request.skip_missing = true;
  auto r = model.capture(torch::zeros(input_size, opts), request);
  std::vector<LayerSummary> rows;
  for (size_t i = 0; i < infos.size(); ++i) {
    LayerSummary s{infos[i].name, infos[i].type, {}, infos[i].num_parameters, infos[i].is_leaf};
    auto& t = r.activations[i].second;
    if (t.defined()) s.output_shape = t.sizes().vec();
    rows.push_back(std::move(s));
  }
  if (depth == 0) return rows;
  auto level = [](const std::string& name) { return static_cast<int64_t>(std::count(name.begin(), name.end(), '.')) + 1; };
  std::vector<LayerSummary> kept;
  for (const auto& row : rows) {
    int64_t l = level(row.name);
    if (l < depth) {
      kept.push_back(row);
    } else if (l == depth) {
      LayerSummary cut = row;
      const std::string prefix = row.name + ".";
      for (const auto& below : rows)
        if (below.name.compare(0, prefix.size(), prefix) == 0) cut.num_parameters += below.num_parameters;
      kept.push_back(std::move(cut));
    }
  }
  return kept;
}

int64_t total_parameters(const std::vector<LayerSummary>& rows) {
  int64_t total = 0;
  for (auto& r : rows) total += r.num_parameters;
  return total;
}

std::string format_summary(const std::vector<LayerSummary>& rows, int64_t total_parameters) {
  size_t wn = 5, wt = 4;
  for (auto& r : rows) {
    wn = std::max(wn, r.name.size());
    wt = std::max(wt, r.type.size());
  }
  std::ostringstream os;
  os << std::left << std::setw(static_cast<int>(wn + 2)) << "layer" << std::setw(static_cast<int>(wt + 2)) << "type"
     << std::setw(22) << "output shape" << std::right << std::setw(12) << "params" << "\n";
  os << std::string(wn + wt + 38, '-') << "\n";
  for (auto& r : rows) {
    std::ostringstream shape;
    if (r.output_shape.empty()) {
      shape << "(not run)";
    } else {
      shape << "(";
      for (size_t i = 0; i < r.output_shape.size(); ++i) shape << (i ? ", " : "") << r.output_shape[i];
      shape << ")";
    }
    os << std::left << std::setw(static_cast<int>(wn + 2)) << r.name << std::setw(static_cast<int>(wt + 2)) << r.type
       << std::setw(22) << shape.str() << std::right << std::setw(12) << r.num_parameters << "\n";
  }
  const int64_t shown = cnnviz::total_parameters(rows);
  os << std::string(wn + wt + 38, '-') << "\n";
  if (total_parameters < 0 || shown == total_parameters) {
    os << "total parameters: " << shown << "\n";
  } else {
    os << "parameters in these rows: " << shown << " (model total: " << total_parameters << ")\n";
  }
  return os.str();
}

FilterWeights filter_weights(const AnyModel& model, const Layer& layer) {
  auto w = model.parameter(layer, "weight");
  if (!w.defined()) {
    // A block (e.g. MobileNetV2's "features.0", a Conv-BN-ReLU Sequential): name its first
    // convolution rather than just refusing.
    std::string type, conv;
    for (const auto& l : model.layers()) {
      if (l.name == layer.name()) type = l.type;
      if (conv.empty() && l.name.rfind(layer.name() + ".", 0) == 0) {
        auto cw = model.parameter(l.name, "weight");
        if (cw.defined() && cw.dim() == 4) conv = l.name;
      }
    }
    TORCH_CHECK_VALUE(conv.empty(), "cnnviz: layer '", layer, "' (", type,
                      ") is a block, not a convolution; its first convolution is '", conv, "'");
  }
  TORCH_CHECK_VALUE(w.defined(), "cnnviz: layer '", layer, "' has no weight parameter");
  TORCH_CHECK_VALUE(w.dim() == 4, "cnnviz: layer '", layer, "' is not a 2-D convolution: its weight has shape ",
                    w.sizes());
  FilterWeights f;
  f.weight = w.detach().to(torch::kFloat).cpu();
  f.mean = f.weight.mean(1);
  if (w.size(1) == 3) {
    auto flat = f.weight.flatten(1);
    auto lo = std::get<0>(flat.min(1, true)).view({-1, 1, 1, 1});
    auto hi = std::get<0>(flat.max(1, true)).view({-1, 1, 1, 1});
    f.rgb = (f.weight - lo) / (hi - lo).clamp_min(1e-12);
  }
  return f;
}

std::vector<std::vector<Prediction>> predict(const AnyModel& model, const torch::Tensor& x, int64_t k,
                                             const std::vector<std::string>& labels) {
  check_image_batch(x);
  TORCH_CHECK_VALUE(k >= 1, "cnnviz: k must be at least 1, got ", k);
  torch::NoGradGuard no_grad;
  auto logits = model.forward(x);
  TORCH_CHECK_VALUE(logits.dim() == 2, "cnnviz: predict needs logits of shape (N, K), got ", logits.sizes());
  int64_t classes = logits.size(1);
  TORCH_CHECK_VALUE(k <= classes, "cnnviz: k = ", k, " exceeds the ", classes, " classes");
  TORCH_CHECK_VALUE(labels.empty() || static_cast<int64_t>(labels.size()) == classes, "cnnviz: ", labels.size(),
                    " labels for a model with ", classes, " classes");
  auto probs = logits.to(torch::kFloat).softmax(1).cpu();
  auto top = probs.topk(k, 1);
  auto p = std::get<0>(top).to(torch::kDouble).contiguous(), idx = std::get<1>(top).contiguous();
  auto pa = p.accessor<double, 2>();
  auto ia = idx.accessor<int64_t, 2>();
  std::vector<std::vector<Prediction>> out(static_cast<size_t>(x.size(0)));
  for (int64_t n = 0; n < x.size(0); ++n)
    for (int64_t j = 0; j < k; ++j) {
      int64_t i = ia[n][j];
      out[static_cast<size_t>(n)].push_back(
          {i, labels.empty() ? std::to_string(i) : labels[static_cast<size_t>(i)], pa[n][j]});
    }
  return out;
}

std::vector<Prediction> predict_one(const AnyModel& model, const torch::Tensor& x, int64_t k,
                                    const std::vector<std::string>& labels) {
  TORCH_CHECK_VALUE(x.defined() && (x.dim() == 3 || (x.dim() == 4 && x.size(0) == 1)),
                    "cnnviz: predict_one needs one image (C, H, W) or (1, C, H, W), got shape ",
                    x.defined() ? x.sizes() : torch::IntArrayRef{}, "; use predict() for a batch");
  auto all = predict(model, x.dim() == 3 ? x.unsqueeze(0) : x, k, labels);
  return std::move(all.front());
}

}  // namespace cnnviz
