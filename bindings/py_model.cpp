// PyModel: any torch.nn.Module as a Model, capturing through forward hooks.
#include "py_model.hpp"

#include <map>
#include <set>

#include "cnnviz/detail/names.hpp"
#include "cnnviz/script_model.hpp"

namespace cnnviz {
namespace bindings {
namespace {

/// Thrown from a hook to end the forward pass once every requested layer has run.
struct StopForward : std::exception {
  const char* what() const noexcept override { return "cnnviz: forward stopped after capture"; }
};

py::handle stop_forward_type() {
  // Registered once, on first use, in the _C module.
  static py::handle type = [] {
    auto m = py::module_::import("cnnviz._C");
    return py::handle(py::register_exception<StopForward>(m, "_StopForward").ptr());
  }();
  return type;
}

/// Module -> {layer name: number of calls in its last complete forward}. Lets a later
/// capture stop early even for requests of the last call ("name").
py::object& call_count_cache() {
  static auto* cache = new py::object(py::module_::import("weakref").attr("WeakKeyDictionary")());
  return *cache;
}

/// module -> {layer name: whether a later op of the forward writes its output in place}.
/// Only such layers hand a copy downstream; the others skip a copy per captured layer.
py::object& inplace_cache() {
  static auto* cache = new py::object(py::module_::import("weakref").attr("WeakKeyDictionary")());
  return *cache;
}

/// The first tensor in a module's output (tensor, tuple/list, dict, namedtuple).
torch::Tensor first_tensor(const py::handle& out) {
  if (THPVariable_Check(out.ptr())) return THPVariable_Unpack(out.ptr());
  if (py::isinstance<py::tuple>(out) || py::isinstance<py::list>(out)) {
    for (auto item : out) {
      auto t = first_tensor(item);
      if (t.defined()) return t;
    }
  } else if (py::isinstance<py::dict>(out)) {
    for (auto item : out.cast<py::dict>()) {
      auto t = first_tensor(item.second);
      if (t.defined()) return t;
    }
  }
  return {};
}

/// A model's logits from its output: a tensor, `.logits` (GoogLeNet/Inception outputs in
/// training mode, other wrappers), `["out"]` (segmentation models), or the first tensor.
torch::Tensor logits_of(const py::object& out) {
  if (THPVariable_Check(out.ptr())) return THPVariable_Unpack(out.ptr());
  if (py::hasattr(out, "logits")) return logits_of(out.attr("logits"));
  if (py::isinstance<py::dict>(out) && out.contains("out")) return logits_of(out["out"]);
  auto t = first_tensor(out);
  TORCH_CHECK_VALUE(t.defined(), "cnnviz: the model's output holds no tensor (got ",
                    std::string(py::str(out.get_type())), ")");
  return t;
}

/// Removes hook handles however the scope ends (success, exception, KeyboardInterrupt).
class HookGuard {
 public:
  ~HookGuard() {
    for (auto& h : handles_) {
      try {
        h.attr("remove")();
      } catch (py::error_already_set& e) {
        e.discard_as_unraisable(__func__);
      }
    }
    if (mode_) {
      try {
        mode_.attr("__exit__")(py::none(), py::none(), py::none());
      } catch (py::error_already_set& e) {
        e.discard_as_unraisable(__func__);
      }
    }
  }
  void add(py::object handle) { handles_.push_back(std::move(handle)); }
  void enter(py::object mode) {
    mode.attr("__enter__")();
    mode_ = std::move(mode);
  }

 private:
  std::vector<py::object> handles_;
  py::object mode_;
};

}  // namespace

PyModel::PyModel(py::object module) : module_(std::move(module)) {
  auto nn_module = py::module_::import("torch.nn").attr("Module");
  TORCH_CHECK_VALUE(py::isinstance(module_, nn_module), "cnnviz: expected a torch.nn.Module, got ",
                    std::string(py::str(module_.get_type())));
  for (auto item : module_.attr("named_modules")()) {
    auto pair = item.cast<py::tuple>();
    auto name = pair[0].cast<std::string>();
    if (name.empty()) continue;
    py::object mod = pair[1];
    LayerInfo info;
    info.name = name;
    info.type = py::str(mod.get_type().attr("__name__"));
    for (auto p : mod.attr("parameters")(py::arg("recurse") = false))
      info.num_parameters += THPVariable_Unpack(p.ptr()).numel();
    info.is_leaf = py::len(py::list(mod.attr("children")())) == 0;
    layers_.push_back(std::move(info));
  }
}

torch::Tensor PyModel::forward(const torch::Tensor& x) {
  py::gil_scoped_acquire gil;
  check_image_batch(x);
  return logits_of(module_(x));
}

CaptureResult PyModel::capture(const torch::Tensor& x, const CaptureRequest& request) {
  py::gil_scoped_acquire gil;
  check_image_batch(x);
  std::vector<std::string> names;
  for (auto& l : layers_) names.push_back(l.name);
  auto parsed = detail::parse_requests(request.layers, names);

  // Which call of each layer finishes the request, where known: lets the forward stop.
  py::object cache = call_count_cache();
  py::dict known = cache.contains(module_) ? py::dict(cache[module_]) : py::dict();
  std::map<std::string, int64_t> last_needed;
  bool can_stop = !request.need_output;
  for (auto& r : parsed) {
    int64_t idx = r.call;
    if (idx < 0) {
      if (known.contains(r.name)) idx = known[py::str(r.name)].cast<int64_t>() - 1;
      else can_stop = false;
    }
    last_needed[r.name] = std::max(last_needed[r.name], idx);
  }

  std::map<std::string, std::vector<torch::Tensor>> calls;
  for (auto& kv : last_needed) calls[kv.first];
  auto satisfied = [&] {
    for (auto& kv : last_needed)
      if (static_cast<int64_t>(calls[kv.first].size()) <= kv.second) return false;
    return true;
  };

  // An in-place op after a captured layer (ReLU(inplace=True)) would change the captured
  // value and break its gradient, so such layers hand a copy downstream. Whether a layer
  // needs it is learnt per model: unknown layers are copied and the copy's version counter
  // says whether anything wrote to it; layers not copied are checked the same way after the
  // forward, and a write found there reruns the capture with a copy.
  py::object icache = inplace_cache();
  if (!icache.contains(module_)) icache[module_] = py::dict();
  py::dict inplace = icache[module_];
  auto wants_copy = [&inplace](const std::string& name) {
    return !inplace.contains(name) || inplace[py::str(name)].cast<bool>();
  };
  std::vector<std::pair<std::string, torch::Tensor>> copies;                    // handed downstream
  std::vector<std::tuple<std::string, torch::Tensor, int64_t>> uncopied;       // with its version

  CaptureResult result;
  bool completed = false;
  {
    HookGuard guard;
    py::object get_submodule = module_.attr("get_submodule");
    for (auto& kv : last_needed) {
      const std::string name = kv.first;
      const bool copy = wants_copy(name);
      auto hook = py::cpp_function([&calls, &satisfied, &copies, &uncopied, can_stop, copy, name](
                                       py::handle, py::handle, py::handle out) -> py::object {
        auto t = first_tensor(out);
        calls[name].push_back(t);
        if (can_stop && satisfied()) throw StopForward();
        if (!t.defined() || !THPVariable_Check(out.ptr())) return py::none();
        if (copy || t.is_inference()) {  // inference tensors have no version counter
          auto c = t.clone();
          if (!t.is_inference()) copies.emplace_back(name, c);
          return py::cast(c);
        }
        uncopied.emplace_back(name, t, t._version());
        return py::none();
      });
      guard.add(get_submodule(name).attr("register_forward_hook")(hook));
    }
    // ReLU modules call the functional forms, so one torch-function mode covers nn.ReLU,
    // nn.ReLU6, in-place ReLUs and F.relu/torch.relu in a forward.
    if (request.relu == ReluMode::guided)
      guard.enter(py::module_::import("cnnviz._guided").attr("GuidedReluMode")());
    stop_forward_type();
    try {
      py::object out = module_(x);
      if (request.need_output) result.output = logits_of(out);
      completed = true;
    } catch (py::error_already_set& e) {
      if (!e.matches(stop_forward_type())) throw;
    }
  }
  bool written = false;
  for (auto& [name, t, version] : uncopied) {
    if (t._version() != version) {
      inplace[py::str(name)] = true;
      written = true;
    }
  }
  if (written) return capture(x, request);  // now with copies for the layers written to
  if (completed) {
    // A forward stopped early never ran the ops after the last layer: learn only from whole ones.
    for (auto& [name, c] : copies) {
      bool w = c._version() != 0;
      if (w || !inplace.contains(name)) inplace[py::str(name)] = w;
    }
    py::dict counts;
    for (auto& kv : calls) counts[py::str(kv.first)] = kv.second.size();
    py::dict merged(known);
    for (auto item : counts) merged[item.first] = item.second;
    cache[module_] = merged;
  }
  for (auto& r : parsed) {
    auto& c = calls[r.name];
    int64_t idx = detail::resolve_call(r, static_cast<int64_t>(c.size()), request.skip_missing);
    torch::Tensor t = idx >= 0 ? c[idx] : torch::Tensor();
    TORCH_CHECK_VALUE(idx < 0 || t.defined(), "cnnviz: layer '", r.name,
                      "' returned no tensor, so it cannot be captured");
    result.activations.emplace_back(r.spelled, t);
  }
  return result;
}

std::vector<LayerInfo> PyModel::layers() const { return layers_; }

std::vector<torch::Tensor> PyModel::parameters() const {
  py::gil_scoped_acquire gil;
  std::vector<torch::Tensor> out;
  for (auto p : module_.attr("parameters")()) out.push_back(THPVariable_Unpack(p.ptr()));
  return out;
}

torch::Tensor PyModel::parameter(const std::string& layer, const std::string& name) const {
  py::gil_scoped_acquire gil;
  std::vector<std::string> names;
  for (auto& l : layers_) names.push_back(l.name);
  detail::parse_requests({layer}, names);
  py::object mod = module_.attr("get_submodule")(layer);
  py::object p = py::getattr(mod, name.c_str(), py::none());
  if (!THPVariable_Check(p.ptr())) return {};
  return THPVariable_Unpack(p.ptr());
}

std::string PyModel::describe() const {
  py::gil_scoped_acquire gil;
  return py::str(module_.get_type().attr("__name__"));
}

/// One ScriptModel per ScriptModule, kept while the module lives, so its compiled capture
/// graphs serve every later call (weak keys: the entry goes with the module).
AnyModel script_model_for(const py::handle& obj) {
  static auto* cache = new py::object(py::module_::import("weakref").attr("WeakKeyDictionary")());
  using Ptr = std::shared_ptr<ScriptModel>;
  if (cache->contains(obj)) return *static_cast<Ptr*>(py::capsule((*cache)[obj]).get_pointer());
  auto model = std::make_shared<ScriptModel>(py::cast<torch::jit::Module>(obj.attr("_c")));
  (*cache)[obj] = py::capsule(new Ptr(model), [](void* p) { delete static_cast<Ptr*>(p); });
  return model;
}

AnyModel to_model(const py::handle& obj) {
  auto jit = py::module_::import("torch.jit");
  if (py::isinstance(obj, jit.attr("ScriptModule"))) return script_model_for(obj);
  if (py::isinstance(obj, py::module_::import("torch.nn").attr("Module")))
    return std::make_shared<PyModel>(py::reinterpret_borrow<py::object>(obj));
  if (!obj.is_none() && PyCallable_Check(obj.ptr())) {
    auto fn = py::reinterpret_borrow<py::object>(obj);
    return FunctionModel([fn](const torch::Tensor& x) {
      py::gil_scoped_acquire gil;
      return logits_of(fn(x));
    });
  }
  TORCH_CHECK_VALUE(false, "cnnviz: expected a torch.nn.Module, a torch.jit.ScriptModule or a "
                    "callable returning logits, got ", std::string(py::str(obj.get_type())));
}

}  // namespace bindings
}  // namespace cnnviz
