// ScriptModel: capture by editing a copy of a TorchScript forward graph.
#include "cnnviz/script_model.hpp"

#include <torch/script.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/library.h>

#include <cerrno>
#include <cstdio>
#include <set>
#include <sstream>

#include "cnnviz/detail/guided.hpp"
#include "cnnviz/detail/names.hpp"
#include "cnnviz/detail/paths.hpp"
#include "cnnviz/errors.hpp"

// The guided-backprop rule as a TorchScript-callable op, inserted after ReLUs in guided
// capture graphs; `leaf` starts a new autograd graph at a captured value (CaptureRequest::cut).
TORCH_LIBRARY(cnnviz, m) {
  m.def("positive_grad(Tensor x) -> Tensor");
  m.def("leaf(Tensor(a) x) -> Tensor(a)");
}
TORCH_LIBRARY_IMPL(cnnviz, CompositeImplicitAutograd, m) {
  m.impl("positive_grad", [](const at::Tensor& x) { return cnnviz::detail::positive_grad(x); });
  m.impl("leaf", [](const at::Tensor& x) { return x.detach().requires_grad_(true); });
}

namespace cnnviz {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;
namespace attr = c10::attr;
namespace prim = c10::prim;
namespace aten = c10::aten;

struct ScriptModel::Plan {
  std::unique_ptr<torch::jit::GraphFunction> fn;
  bool has_output = false;
  std::vector<bool> present;  // per request: false when the layer never ran (skip_missing)
};

namespace {

/// The module path of a value reached from `self` through GetAttr nodes ("" for self);
/// false when it is not such a value.
bool module_path(Value* v, Value* self, std::string& path) {
  if (v == self) {
    path.clear();
    return true;
  }
  Node* n = v->node();
  if (n->kind() != prim::GetAttr) return false;
  if (!module_path(n->input(0), self, path)) return false;
  path = path.empty() ? n->s(attr::name) : path + "." + n->s(attr::name);
  return true;
}

/// A call of a submodule: `forward`, or `forwardK` with which tracing records the later
/// calls of a module that runs several times.
bool is_forward_call(Node* n) {
  if (n->kind() != prim::CallMethod || !n->input(0)->type()->cast<c10::ClassType>()) return false;
  const std::string& name = n->s(attr::name);
  return name.compare(0, 7, "forward") == 0 &&
         std::all_of(name.begin() + 7, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

torch::jit::GraphFunction& callee_of(Node* n) {
  auto cls = n->input(0)->type()->expect<c10::ClassType>();
  return torch::jit::toGraphFunction(cls->getMethod(n->s(attr::name)));
}

bool is_strict_prefix(const std::string& p, const std::string& target) {
  return target.size() > p.size() && target.compare(0, p.size(), p) == 0 && target[p.size()] == '.';
}

/// Inserts the guided rule after every ReLU-like node (recursively in blocks).
void insert_guided_relus(torch::jit::Block* block, Graph& graph) {
  static const std::set<c10::Symbol> relus = {aten::relu, aten::relu_, aten::relu6,
                                              aten::hardtanh, aten::hardtanh_};
  static const auto op = c10::Symbol::fromQualString("cnnviz::positive_grad");
  for (Node* n : block->nodes()) {
    for (auto* b : n->blocks()) insert_guided_relus(b, graph);
    if (!relus.count(n->kind())) continue;
    torch::jit::WithInsertPoint guard(n->next());
    Value* g = graph.insert(op, {n->output()});
    n->output()->replaceAllUsesAfterNodeWith(g->node(), g);
  }
}

torch::Tensor first_tensor(const c10::IValue& v) {
  if (v.isTensor()) return v.toTensor();
  if (v.isTuple())
    for (auto& e : v.toTupleRef().elements()) {
      auto t = first_tensor(e);
      if (t.defined()) return t;
    }
  if (v.isList())
    for (const auto& e : v.toListRef()) {
      auto t = first_tensor(e);
      if (t.defined()) return t;
    }
  if (v.isGenericDict())
    for (auto& kv : v.toGenericDict()) {
      auto t = first_tensor(kv.value());
      if (t.defined()) return t;
    }
  return {};
}

}  // namespace

ScriptModel::ScriptModel(torch::jit::Module module)
    : module_(std::make_shared<torch::jit::Module>(std::move(module))),
      plans_(std::make_shared<std::map<std::string, std::shared_ptr<Plan>>>()),
      plans_mutex_(std::make_shared<std::mutex>()) {
  TORCH_CHECK_VALUE(module_->find_method("forward").has_value(),
                    "cnnviz: the TorchScript module has no forward method");
  for (const auto& item : module_->named_modules()) {
    if (item.name.empty()) continue;
    LayerInfo info;
    info.name = item.name;
    auto qual = item.value.type()->name() ? item.value.type()->name()->name() : std::string("Module");
    info.type = qual;
    for (const auto& p : item.value.named_parameters(/*recurse=*/false)) info.num_parameters += p.value.numel();
    info.is_leaf = item.value.children().size() == 0;
    layers_.push_back(std::move(info));
  }
}

ScriptModel ScriptModel::load(const std::string& path) {
  detail::check_path(path, "ScriptModel::load");
  // A missing or unreadable file is the loaders' one file error (cnnviz/errors.hpp).
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
  } else {
    throw_file_error(errno, "cnnviz: cannot open TorchScript file '" + path + "'");
  }
  torch::jit::Module m;
  try {
    m = torch::jit::load(path);
  } catch (const c10::Error& e) {
    TORCH_CHECK_VALUE(false, "cnnviz: cannot load TorchScript file '", path,
                      "': ", e.what_without_backtrace());
  }
  return ScriptModel(std::move(m));
}

torch::Tensor ScriptModel::forward(const torch::Tensor& x) {
  check_image_batch(x);
  auto t = first_tensor(module_->forward({x}));
  TORCH_CHECK_VALUE(t.defined(), "cnnviz: the TorchScript module's output holds no tensor");
  return t;
}

std::shared_ptr<ScriptModel::Plan> ScriptModel::plan_for(const CaptureRequest& request) {
  std::ostringstream key;
  for (auto& l : request.layers) key << l << '\n';
  key << request.need_output << static_cast<int>(request.relu) << request.skip_missing << request.cut;
  std::lock_guard<std::mutex> lock(*plans_mutex_);
  auto found = plans_->find(key.str());
  if (found != plans_->end()) return found->second;

  std::vector<std::string> names;
  for (auto& l : layers_) names.push_back(l.name);
  auto parsed = detail::parse_requests(request.layers, names);
  std::set<std::string> targets;
  for (auto& r : parsed) targets.insert(r.name);

  auto graph = toGraphFunction(module_->get_method("forward").function()).graph()->copy();
  TORCH_CHECK(graph->outputs().size() == 1, "cnnviz: expected a forward with one output");
  Value* self = graph->inputs()[0];
  std::map<std::string, std::vector<size_t>> slots;  // path -> output indices, call order

  // Inline calls along the paths to the targets, earliest first, so that call order is
  // kept; a container that is itself a target is recorded before it is inlined.
  for (bool again = true; again;) {
    again = false;
    for (Node* n : graph->block()->nodes()) {
      std::string p;
      if (!is_forward_call(n) || !module_path(n->input(0), self, p)) continue;
      bool prefix = std::any_of(targets.begin(), targets.end(),
                                [&](const std::string& t) { return is_strict_prefix(p, t); });
      if (!prefix) continue;
      if (targets.count(p)) slots[p].push_back(graph->registerOutput(n->output()));
      // One level only (the callee's own graph, calls kept), so paths stay visible.
      torch::jit::inlineCallTo(n, &callee_of(n), /*use_graph=*/false);
      again = true;
      break;
    }
  }
  for (Node* n : graph->block()->nodes()) {
    std::string p;
    if (is_forward_call(n) && module_path(n->input(0), self, p) && targets.count(p))
      slots[p].push_back(graph->registerOutput(n->output()));
  }

  auto plan = std::make_shared<Plan>();
  std::vector<size_t> chosen;
  for (auto& r : parsed) {
    auto& s = slots[r.name];
    int64_t idx = detail::resolve_call(r, static_cast<int64_t>(s.size()), request.skip_missing);
    plan->present.push_back(idx >= 0);
    if (idx >= 0) chosen.push_back(s[idx]);
  }

  if (request.relu == ReluMode::guided) {
    torch::jit::Inline(*graph);
    insert_guided_relus(graph->block(), *graph);
  }

  // Downstream nodes read a copy of each captured value, so in-place ops after a captured
  // layer change neither the captured value nor its gradient. With a cut, the captured
  // value is a new leaf and the copy is taken of it.
  static const auto leaf_op = c10::Symbol::fromQualString("cnnviz::leaf");
  std::set<Value*> cloned;
  for (size_t i : chosen) {
    Value* v = graph->outputs()[i];
    if (cloned.count(v) || v->node()->kind() == prim::Param) continue;
    cloned.insert(v);
    torch::jit::WithInsertPoint guard(v->node()->next());
    Value* captured = request.cut ? graph->insert(leaf_op, {v}) : v;
    Value* c = graph->insert(aten::clone, {captured});
    v->replaceAllUsesAfterNodeWith(c->node(), c);
    for (size_t k = 1; k < graph->outputs().size(); ++k)
      if (graph->outputs()[k] == c) graph->return_node()->replaceInput(k, captured);
  }

  std::vector<Value*> outs;
  plan->has_output = request.need_output;
  if (request.need_output) outs.push_back(graph->outputs()[0]);
  for (size_t i : chosen) {
    Value* v = graph->outputs()[i];
    TORCH_CHECK_VALUE(v->node()->owningBlock() == graph->block(), "cnnviz: a requested layer runs "
                      "inside control flow of the TorchScript graph and cannot be captured");
    outs.push_back(v);
  }
  Value* tuple = graph->insertNode(graph->createTuple(outs))->output();
  while (!graph->outputs().empty()) graph->eraseOutput(graph->outputs().size() - 1);
  graph->registerOutput(tuple);
  torch::jit::EliminateDeadCode(graph);

  plan->fn = std::make_unique<torch::jit::GraphFunction>("cnnviz_capture", graph, nullptr);
  plans_->emplace(key.str(), plan);
  return plan;
}

CaptureResult ScriptModel::capture(const torch::Tensor& x, const CaptureRequest& request) {
  check_image_batch(x);
  auto plan = plan_for(request);
  std::vector<c10::IValue> stack{module_->_ivalue(), x};
  plan->fn->run(stack);
  auto values = stack.back().toTupleRef().elements();
  CaptureResult result;
  size_t k = 0;
  if (plan->has_output) {
    result.output = first_tensor(values[k++]);
    TORCH_CHECK_VALUE(result.output.defined(), "cnnviz: the TorchScript module's output holds no tensor");
  }
  for (size_t i = 0; i < request.layers.size(); ++i) {
    torch::Tensor t;
    if (plan->present[i]) {
      t = first_tensor(values[k++]);
      TORCH_CHECK_VALUE(t.defined(), "cnnviz: layer '", request.layers[i],
                        "' returned no tensor, so it cannot be captured");
    }
    result.activations.emplace_back(request.layers[i], t);
  }
  return result;
}

std::vector<LayerInfo> ScriptModel::layers() const { return layers_; }

std::vector<torch::Tensor> ScriptModel::parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& p : module_->parameters()) out.push_back(p);
  return out;
}

torch::Tensor ScriptModel::parameter(const std::string& layer, const std::string& name) const {
  std::vector<std::string> names;
  for (auto& l : layers_) names.push_back(l.name);
  detail::parse_requests({layer}, names);
  for (const auto& item : module_->named_modules())
    if (item.name == layer)
      for (const auto& p : item.value.named_parameters(false))
        if (p.name == name) return p.value;
  return {};
}

}  // namespace cnnviz
