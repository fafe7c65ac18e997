// PyModel: any torch.nn.Module as a Model, capturing through forward hooks.
#include "py_model.hpp"

#include <map>
#include <set>
#include <thread>

#include "cnnviz/detail/names.hpp"
#include "cnnviz/script_model.hpp"

namespace cnnviz {
namespace bindings {
namespace {

/// Thrown from a hook to end the forward pass once every requested layer has run.
struct StopForward : std::exception {
  const char* what() const noexcept override { return "cnnviz: forward stopped after capture"; }
};

py::module_* c_module = nullptr;  // cnnviz._C, set by init_py_model_state

py::handle stop_forward_type() {
  static py::handle type = py::handle(py::register_exception<StopForward>(*c_module, "_StopForward").ptr());
  return type;
}

/// module -> {plan key: {layer name: number of calls in a complete forward} or None}. Lets a
/// later capture stop early even for requests of the last call ("name"). The key holds what
/// decides the number of calls besides tensor values: the input's shape, grad mode, guided
/// ReLUs, and every module's identity and train/eval flag. Values decide it only where the
/// forward reads them into Python (ValueReadMode): such a model's entry is None, and
/// requests of a last call always run the whole forward.
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

/// ScriptModule -> capsule of its ScriptModel (see script_model_for).
py::object& script_model_cache() {
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
    for (auto it = modes_.rbegin(); it != modes_.rend(); ++it) {
      try {
        it->attr("__exit__")(py::none(), py::none(), py::none());
      } catch (py::error_already_set& e) {
        e.discard_as_unraisable(__func__);
      }
    }
  }
  void add(py::object handle) { handles_.push_back(std::move(handle)); }
  void enter(py::object mode) {
    mode.attr("__enter__")();
    modes_.push_back(std::move(mode));
  }

 private:
  std::vector<py::object> handles_;
  std::vector<py::object> modes_;
};

}  // namespace

PyModel::PyModel(py::object module, py::object inference)
    : module_(std::move(module)), inference_(std::move(inference)) {
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
  py::list structure;
  auto nn = py::module_::import("torch.nn.modules");
  py::tuple train_dependent = py::make_tuple(nn.attr("batchnorm").attr("_NormBase"), nn.attr("dropout").attr("_DropoutNd"));
  std::string training_layer;
  for (auto item : module_.attr("modules")()) {
    const bool training = item.attr("training").cast<bool>();
    structure.append(py::make_tuple(py::int_(reinterpret_cast<uintptr_t>(item.ptr())), training));
    if (training && training_layer.empty() && py::isinstance(item, train_dependent))
      training_layer = py::str(item.get_type().attr("__name__"));
  }
  structure_ = py::tuple(structure);
  // In training mode batch norm uses (and updates) batch statistics and dropout is random:
  // explanations then describe another function than the model's predictions.
  if (!training_layer.empty()) {
    std::string msg = "cnnviz: the model is in training mode (its " + training_layer +
                      " layers use batch statistics or random dropout, and batch norm running statistics "
                      "change), so results differ from its eval-mode predictions; call model.eval() first";
    if (PyErr_WarnEx(PyExc_UserWarning, msg.c_str(), 1) != 0) throw py::error_already_set();
  }
}

torch::Tensor PyModel::forward(const torch::Tensor& x) {
  py::gil_scoped_acquire gil;
  check_image_batch(x);
  if (!inference_.is_none() && !torch::GradMode::is_enabled()) return logits_of(inference_(x));
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
  if (!cache.contains(module_)) cache[module_] = py::dict();
  py::dict plans = cache[module_];
  py::tuple key = py::make_tuple(py::tuple(py::cast(x.sizes().vec())), structure_,
                                 at::GradMode::is_enabled(), static_cast<int>(request.relu));
  py::object known = plans.contains(key) ? py::object(plans[key]) : py::object(py::dict());
  const bool data_dependent = known.is_none();
  std::map<std::string, int64_t> last_needed;
  bool can_stop = !request.need_output, learn = false;
  for (auto& r : parsed) {
    int64_t idx = r.call;
    const bool counted = !data_dependent && known.contains(r.name);
    if (idx < 0 && counted) idx = known[py::str(r.name)].cast<int64_t>() - 1;
    if (idx < 0) can_stop = false;
    learn = learn || (!data_dependent && !counted);
    last_needed[r.name] = std::max(last_needed[r.name], idx);
  }
  // A forward that teaches call counts watches for reads of tensor values into Python.
  learn = learn && !can_stop;
  py::object value_reads = learn
                               ? py::module_::import("cnnviz._value_reads").attr("ValueReadMode")()
                               : py::object();

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
    // Hooks act only in this thread: other threads may run the same module meanwhile.
    const auto owner = std::this_thread::get_id();
    for (auto& kv : last_needed) {
      const std::string name = kv.first;
      const bool copy = wants_copy(name);
      // With a cut, every call up to the requested one starts a new graph (a later call may
      // lie downstream of the requested one, so it keeps its history).
      const bool cut = request.cut;
      const int64_t last = kv.second;
      auto hook = py::cpp_function([&calls, &satisfied, &copies, &uncopied, can_stop, copy, cut, last, name, owner](
                                       py::handle, py::handle, py::handle out) -> py::object {
        if (std::this_thread::get_id() != owner) return py::none();
        auto t = first_tensor(out);
        const bool cut_here = cut && t.defined() && THPVariable_Check(out.ptr()) && !t.is_inference() &&
                              (last < 0 || static_cast<int64_t>(calls[name].size()) <= last);
        if (cut_here) t = t.detach().requires_grad_(true);
        calls[name].push_back(t);
        if (can_stop && satisfied()) throw StopForward();
        if (cut_here) return py::cast(t.clone());  // downstream in-place ops may not write to a leaf
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
    if (value_reads) guard.enter(value_reads);
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
    if (value_reads && py::len(plans) >= 64) plans.clear();  // bounded: shapes come and go
    if (value_reads && value_reads.attr("read").cast<bool>()) {
      plans[key] = py::none();
    } else if (value_reads) {
      py::dict merged(known);
      for (auto& kv : calls) merged[py::str(kv.first)] = kv.second.size();
      plans[key] = merged;
    }
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

void init_py_model_state(py::module_& m) {
  c_module = new py::module_(m);
  stop_forward_type();
  call_count_cache();
  inplace_cache();
  script_model_cache();
}

/// One ScriptModel per ScriptModule, kept while the module lives, so its compiled capture
/// graphs serve every later call (weak keys: the entry goes with the module).
AnyModel script_model_for(const py::handle& obj) {
  auto* cache = &script_model_cache();
  using Ptr = std::shared_ptr<ScriptModel>;
  if (cache->contains(obj)) return *static_cast<Ptr*>(py::capsule((*cache)[obj]).get_pointer());
  auto model = std::make_shared<ScriptModel>(py::cast<torch::jit::Module>(obj.attr("_c")));
  (*cache)[obj] = py::capsule(new Ptr(model), [](void* p) { delete static_cast<Ptr*>(p); });
  return model;
}

AnyModel to_model(const py::handle& obj) {
  auto jit = py::module_::import("torch.jit");
  if (py::isinstance(obj, jit.attr("ScriptModule"))) return script_model_for(obj);
  if (py::hasattr(obj, "_cnnviz_forward_plan"))
    return std::make_shared<PyModel>(obj.attr("model"), py::reinterpret_borrow<py::object>(obj));
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
