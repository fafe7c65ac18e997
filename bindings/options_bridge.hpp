#pragma once
// The one C++ -> Python bridge for options: enums as strings, tensors as tensors or None,
// a Normalization field as `mean` and `std`, and `bind_options<O>` exposing an Options
// struct declared with CNNVIZ_OPTIONS (cnnviz/options.hpp) as a class whose properties
// read and write its fields. The field list is the C++ one: nothing here names a field.
// Python wrappers take their defaults from default-constructed Options.
#include "bindings.hpp"

#include <pybind11/functional.h>  // callback fields (on_snapshot): one caster in every binding unit

#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cnnviz/enums.hpp"
#include "cnnviz/image.hpp"
#include "cnnviz/metrics.hpp"
#include "cnnviz/normalization.hpp"
#include "cnnviz/progress.hpp"

namespace cnnviz {
namespace bindings {

/// The names of an enum's values, for properties and arguments that speak strings.
template <class E>
struct EnumNames;
#define CNNVIZ_ENUM_NAMES(E, ...)                                                   \
  template <>                                                                       \
  struct EnumNames<E> {                                                             \
    static std::vector<std::pair<E, const char*>> values() { return {__VA_ARGS__}; } \
  }
CNNVIZ_ENUM_NAMES(Reduction, {Reduction::none, "none"}, {Reduction::mean, "mean"}, {Reduction::max, "max"});
CNNVIZ_ENUM_NAMES(Score, {Score::logit, "logit"}, {Score::probability, "probability"});
CNNVIZ_ENUM_NAMES(Optimizer, {Optimizer::sgd, "sgd"}, {Optimizer::adam, "adam"});
CNNVIZ_ENUM_NAMES(Parameterization, {Parameterization::pixel, "pixel"}, {Parameterization::fourier, "fourier"});
CNNVIZ_ENUM_NAMES(CkaKernel, {CkaKernel::linear, "linear"}, {CkaKernel::rbf, "rbf"});
CNNVIZ_ENUM_NAMES(InversionInit, {InversionInit::noise, "noise"}, {InversionInit::zeros, "zeros"},
                  {InversionInit::blurred, "blurred"});

template <class E>
std::string enum_name(E e) {
  for (auto& kv : EnumNames<E>::values())
    if (kv.first == e) return kv.second;
  return "?";
}

template <class E>
E enum_value(const std::string& name, const char* what) {
  std::string known;
  for (auto& kv : EnumNames<E>::values()) {
    if (name == kv.second) return kv.first;
    known += (known.empty() ? "'" : ", '") + std::string(kv.second) + "'";
  }
  TORCH_CHECK_VALUE(false, "cnnviz: ", what, " must be one of ", known, ", got '", name, "'");
}

/// A struct declared with CNNVIZ_OPTIONS (it has `for_each_option`).
template <class T, class = void>
struct is_options : std::false_type {};
template <class T>
struct is_options<T, std::void_t<typename T::CnnvizOptionsSelf>>
    : std::is_same<T, typename T::CnnvizOptionsSelf> {};

/// How a nested Options field reads in Python: by default as one property holding the
/// nested class's own binding (which must be bound first: bind_options refuses otherwise).
/// A class listed here is flattened instead: its fields become properties `<field>_<name>`
/// of the outer class, so a wrapper's keywords stay flat (`ssim_window_size`).
template <class T>
struct flatten_when_nested : std::false_type {};
template <>
struct flatten_when_nested<SsimOptions> : std::true_type {};  // LayerInformationOptions.ssim

template <class T>
bool flattened(const char* field) {
  if constexpr (is_options<T>::value && !std::is_same_v<T, Normalization>) {
    if (flatten_when_nested<T>::value) return true;
    if (py::detail::get_type_info(typeid(T)) == nullptr)
      throw std::logic_error(std::string("cnnviz bindings: the Options class of nested field '") + field +
                             "' must be bound before the class that holds it");
    return false;
  } else {
    return false;
  }
}

/// The Python names of an Options class's properties, in declaration order (a Normalization
/// field reads as `mean`, `std`; a flattened nested Options as `<field>_<name>`; a progress
/// callback is not an option in Python: the functions take `progress=` themselves).
template <class O>
std::vector<std::string> option_names() {
  std::vector<std::string> names;
  O::for_each_option([&](const char* name, const char*, auto get, auto) {
    using T = std::decay_t<decltype(get(std::declval<const O&>()))>;
    if constexpr (std::is_same_v<T, Normalization>) {
      names.emplace_back("mean");
      names.emplace_back("std");
    } else if constexpr (std::is_same_v<T, ProgressCallback>) {
      // not a property
    } else if constexpr (is_options<T>::value) {
      if (flattened<T>(name)) {
        for (auto& inner : option_names<T>()) names.push_back(std::string(name) + "_" + inner);
      } else {
        names.emplace_back(name);
      }
    } else {
      names.emplace_back(name);
    }
  });
  return names;
}

/// One property of an Options class: enums read and write as strings, tensors as tensors
/// or None, a Normalization as two properties `mean` and `std`, nested Options as objects.
template <class O, class Get, class Set>
void option(py::class_<O>& cls, const char* name, const char* doc, Get get, Set set) {
  using T = std::decay_t<decltype(get(std::declval<const O&>()))>;
  if constexpr (std::is_enum_v<T>) {
    cls.def_property(
        name, [get](const O& o) { return enum_name(get(o)); },
        [set, name](O& o, const std::string& v) { set(o, enum_value<T>(v, name)); }, doc);
  } else if constexpr (std::is_same_v<T, torch::Tensor>) {
    cls.def_property(
        name, [get](const O& o) -> py::object { return get(o).defined() ? py::cast(get(o)) : py::none(); },
        [set, name](O& o, py::object v) {
          TORCH_CHECK_VALUE(v.is_none() || THPVariable_Check(v.ptr()), "cnnviz: ", name,
                            " must be a tensor or None");
          set(o, v.is_none() ? torch::Tensor() : THPVariable_Unpack(v.ptr()));
        },
        doc);
  } else if constexpr (std::is_same_v<T, Normalization>) {
    cls.def_property(
        "mean", [get](const O& o) { return get(o).mean(); },
        [get, set](O& o, const std::vector<double>& v) { set(o, Normalization(v, get(o).std())); },
        "Per-channel mean of the input normalization (pixels in [0, 1]).");
    cls.def_property(
        "std", [get](const O& o) { return get(o).std(); },
        [get, set](O& o, const std::vector<double>& v) { set(o, Normalization(get(o).mean(), v)); },
        "Per-channel std of the input normalization.");
  } else if constexpr (std::is_same_v<T, OutputSize>) {
    // A size set from Python is always given: Python warns about its own defaults.
    cls.def_property(
        name, [get](const O& o) { return get(o).values(); },
        [set](O& o, const std::vector<int64_t>& v) { set(o, OutputSize(v)); }, doc);
  } else if constexpr (std::is_same_v<T, ProgressCallback>) {
    // Python passes progress to the function (tqdm, callables, Ctrl-C): see with_progress.
  } else if constexpr (is_options<T>::value) {
    if (flattened<T>(name)) {
      // Each inner option becomes `<name>_<inner>` on the outer class, reading and writing
      // through a copy of the nested struct.
      T::for_each_option([&](const char* inner, const char* inner_doc, auto iget, auto iset) {
        using I = std::decay_t<decltype(iget(std::declval<const T&>()))>;
        auto* full = new std::string(std::string(name) + "_" + inner);  // lives as long as the class
        auto oget = [get, iget](const O& o) -> I { return iget(get(o)); };
        auto oset = [get, set, iset](O& o, I v) {
          T nested = get(o);
          iset(nested, std::move(v));
          set(o, std::move(nested));
        };
        option(cls, full->c_str(), inner_doc, oget, oset);
      });
    } else {
      cls.def_property(name, [get](const O& o) { return get(o); }, [set](O& o, const T& v) { set(o, v); }, doc);
    }
  } else {
    cls.def_property(name, [get](const O& o) { return get(o); }, [set](O& o, const T& v) { set(o, v); }, doc);
  }
}

/// Binds an Options struct declared with CNNVIZ_OPTIONS: a default constructor, one property
/// per option, `_fields` (the property names) and a repr listing every value.
template <class O>
py::class_<O> bind_options(py::module_& m, const char* name, const char* doc) {
  py::class_<O> cls(m, name, doc);
  cls.def(py::init<>());
  O::for_each_option([&](const char* field, const char* field_doc, auto get, auto set) {
    option(cls, field, field_doc, get, set);
  });
  auto names = option_names<O>();
  cls.attr("_fields") = py::tuple(py::cast(names));
  cls.def("__repr__", [name, names](py::object self) {
    std::string s = std::string(name) + "(";
    for (size_t i = 0; i < names.size(); ++i)
      s += (i ? ", " : "") + names[i] + "=" + std::string(py::repr(self.attr(names[i].c_str())));
    return s + ")";
  });
  return cls;
}

}  // namespace bindings
}  // namespace cnnviz
